"""Registry of applications: name -> :class:`~dalp_moo.application.Application`.

>>> from dalp_moo import applications
>>> applications.available()                 # {'vessel-segmentation': '1', ...}
>>> app = applications.get("vessel-segmentation")

Applications are found, in this order, among

1. registrations made with :func:`register` (a module path, or an ``Application`` instance);
   ``vessel-segmentation`` is registered as ``problems.vessel_segmentation``;
2. the modules of the ``problems`` package that define ``APPLICATION`` (adding a file
   ``problems/<name>.py`` is all it takes; ``get("early-exit")`` tries ``problems.early_exit``
   first, and only then imports every module of the package);
3. installed packages that declare an entry point in the group ``dalp_moo.applications``
   pointing at a module that defines ``APPLICATION``.

An instance registered at run time exists in this process only: applications evaluated on Dask
workers must be importable there (2 or 3, or ``register(name, "module.path")`` in the worker).
"""

from __future__ import annotations

import difflib
import importlib
import pkgutil
import re
from importlib import metadata

from dalp_moo.application import Application
from dalp_moo.errors import ConfigError
from dalp_moo.log import logger

DEFAULT = "vessel-segmentation"  #: the application of configs without a ``problem`` key
PLUGIN_PACKAGE = "problems"
ENTRY_POINT_GROUP = "dalp_moo.applications"

_BUILTIN = {DEFAULT: f"{PLUGIN_PACKAGE}.vessel_segmentation"}
_MODULES: dict[str, str] = dict(_BUILTIN)  # registered name -> module path (loaded on first use)
_APPS: dict[str, Application] = {}  # loaded applications
_discovered = False


def _from_module(path: str) -> Application:
    module = importlib.import_module(path)
    app = getattr(module, "APPLICATION", None)
    if not isinstance(app, Application):
        raise ConfigError(f"module {path} does not define APPLICATION (an Application instance)")
    return app


def _conventional(name: str) -> Application | None:
    """The application of ``problems/<name with - as _>.py``, or None if there is no such module."""
    if not re.fullmatch(r"[a-z][a-z0-9_-]*", name):
        return None
    path = f"{PLUGIN_PACKAGE}.{name.replace('-', '_')}"
    try:
        return _from_module(path)
    except ModuleNotFoundError as exc:
        if exc.name in (path, PLUGIN_PACKAGE):
            return None
        raise ConfigError(f"problem {name!r}: {path} needs {exc.name!r}, which is not installed") from exc
    except ConfigError:
        return None


def register(name: str, module_path: str | Application) -> None:
    """Make an application available under ``name``: ``module_path`` is the import path of a
    module that defines ``APPLICATION``, or an :class:`Application` instance."""
    if isinstance(module_path, Application):
        if module_path.name != name:
            raise ValueError(f"application {module_path.name!r} registered as {name!r}")
        existing = _APPS.get(name)
        if existing is not None and existing is not module_path:
            raise ValueError(f"application name {name!r} is already registered")
        _APPS[name] = module_path
        return
    if name in _APPS and _MODULES.get(name) not in (None, module_path):
        raise ValueError(f"application name {name!r} is already registered")
    _MODULES[name] = module_path


def unregister(name: str) -> None:
    """Forget a run-time registration (tests); built-in applications stay."""
    _APPS.pop(name, None)
    if name not in _BUILTIN:
        _MODULES.pop(name, None)


def _discover() -> None:
    """Load every application of the ``problems`` package and of installed entry points."""
    global _discovered
    if _discovered:
        return
    _discovered = True
    paths: list[str] = []
    try:
        package = importlib.import_module(PLUGIN_PACKAGE)
        paths += [f"{PLUGIN_PACKAGE}.{m.name}" for m in pkgutil.iter_modules(package.__path__)]
    except ImportError as exc:  # pragma: no cover - the package is part of the distribution
        logger.warning("application package %s not importable: %s", PLUGIN_PACKAGE, exc)
    paths += [ep.value for ep in metadata.entry_points(group=ENTRY_POINT_GROUP)]
    for path in paths:
        try:
            module = importlib.import_module(path)
        except Exception as exc:  # a broken plug-in must not hide the others
            logger.warning("application module %s cannot be imported: %s", path, exc)
            continue
        app = getattr(module, "APPLICATION", None)
        if isinstance(app, Application) and app.name:
            _APPS.setdefault(app.name, app)


def get(name: str | None = None) -> Application:
    """The application registered as ``name`` (default :data:`DEFAULT`)."""
    name = name or DEFAULT
    if name in _APPS:
        return _APPS[name]
    if name in _MODULES:
        app = _from_module(_MODULES[name])
        if app.name != name:
            raise ConfigError(f"module {_MODULES[name]} defines application {app.name!r}, not {name!r}")
        _APPS[name] = app
        return app
    app = _conventional(name)
    if app is not None and app.name == name:
        _APPS[name] = app
        return app
    _discover()
    if name in _APPS:
        return _APPS[name]
    known = sorted(set(_APPS) | set(_MODULES))
    close = difflib.get_close_matches(name, known, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise ConfigError(f"unknown problem {name!r}{hint}; available: {', '.join(known)}")


def available() -> dict[str, str]:
    """Names and versions of all applications."""
    _discover()
    for name in list(_MODULES):
        get(name)
    return {name: app.version for name, app in sorted(_APPS.items())}


def all_presets() -> tuple[str, ...]:
    """Preset names of all applications (sorted, unique)."""
    return tuple(sorted({p for name in available() for p in get(name).presets()}))
