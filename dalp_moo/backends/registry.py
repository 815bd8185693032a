"""Registry of named, versioned backends. Adding a backend = one module with ``@register``."""

from __future__ import annotations

import dataclasses
import difflib
import inspect
from dataclasses import dataclass
from typing import Any

from dalp_moo.backends.base import Backend
from dalp_moo.errors import BackendError

_REGISTRY: dict[str, type[Backend]] = {}


def register(cls: type[Backend]) -> type[Backend]:
    """Class decorator: make ``cls`` available under ``cls.name``."""
    if not cls.name:
        raise ValueError(f"{cls.__name__} has no name")
    if cls.name in _REGISTRY and _REGISTRY[cls.name] is not cls:
        raise ValueError(f"backend name {cls.name!r} is already registered")
    _REGISTRY[cls.name] = cls
    return cls


def available() -> dict[str, str]:
    """Registered backend names and their versions."""
    return {name: cls.version for name, cls in sorted(_REGISTRY.items())}


@dataclass(frozen=True)
class BackendOption:
    """One option of a backend (``backend.options.<name>`` in a config)."""

    name: str
    default: Any
    doc: str


def _lookup(name: str) -> type[Backend]:
    if name not in _REGISTRY:
        close = difflib.get_close_matches(name, list(_REGISTRY), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise BackendError(
            f"unknown backend {name!r}{hint}; available: {', '.join(sorted(_REGISTRY))}"
        )
    return _REGISTRY[name]


def options(name: str) -> list[BackendOption]:
    """The options the backend ``name`` accepts, with defaults and documentation: its
    constructor's named parameters (documented in ``option_docs``; ``device`` is the config's
    ``backend.device``) and the fields of its ``extra_options_from`` dataclass (their ``#:``
    comments)."""
    from dalp_moo.config import field_docs

    cls = _lookup(name)
    out = []
    for p in inspect.signature(cls.__init__).parameters.values():
        if p.name in ("self", "device") or p.kind in (p.VAR_KEYWORD, p.VAR_POSITIONAL):
            continue
        out.append(BackendOption(p.name, None if p.default is p.empty else p.default, cls.option_docs.get(p.name, "")))
    extra = cls.extra_options_from
    if extra is not None:
        docs = field_docs(extra)
        out += [BackendOption(f.name, f.default, docs.get(f.name, "")) for f in dataclasses.fields(extra)]
    return out


def get(name: str, **options: Any) -> Backend:
    """Instantiate the backend registered as ``name`` (options go to its constructor)."""
    cls = _lookup(name)
    params = inspect.signature(cls.__init__).parameters.values()
    known = [p.name for p in params if p.name != "self" and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)]
    known += list(cls.extra_options)
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise BackendError(f"backend {name!r} has no option {unknown[0]!r} (options: {', '.join(known)})")
    try:
        return cls(**options)
    except (TypeError, ValueError) as exc:
        raise BackendError(f"backend {name!r}: {str(exc).splitlines()[0]}") from exc
