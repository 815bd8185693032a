"""Registry of named, versioned backends. Adding a backend = one module with ``@register``."""

from __future__ import annotations

import difflib
import inspect
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


def get(name: str, **options: Any) -> Backend:
    """Instantiate the backend registered as ``name`` (options go to its constructor)."""
    if name not in _REGISTRY:
        close = difflib.get_close_matches(name, list(_REGISTRY), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise BackendError(
            f"unknown backend {name!r}{hint}; available: {', '.join(sorted(_REGISTRY))}"
        )
    cls = _REGISTRY[name]
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
