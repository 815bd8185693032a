"""Typed, frozen run configuration.

A run config is built from, in order of precedence: command-line overrides
(``--set section.key=value`` and named options), a user TOML/YAML file, a preset of the
application (``<preset_dir>/<name>.toml``) and the dataclass defaults. Unknown keys, wrong types
and out-of-range values raise :class:`~dalp_moo.errors.ConfigError` with one readable line.

Layout (TOML)::

    preset = "smoke"
    problem = "vessel-segmentation"     # the application (see dalp_moo.applications)
    [search]       generic: algorithm, population, generations, seed, workers, ...
    [backend]      generic: deployment backend
    [constraints]  the application's constraints (vessel segmentation: param_cap, latency_budget_ms)
    [space] [data] [train] ...   sections supplied by the application

What enters the evaluation hash (the key of cached evaluations) is declared on the fields: every
field does unless it carries ``metadata={"hash": False}`` (threads, cache folders, search size).
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import hashlib
import inspect
import json
import re
import textwrap
import types
import typing
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from dalp_moo import applications
from dalp_moo.compat import tomllib
from dalp_moo.errors import ConfigError
from dalp_moo.log import logger

#: the search algorithms (``dalp_moo.search.algorithms`` builds one per name)
ALGORITHMS = ("nsga2", "random")
#: sections every run config has; applications add theirs
COMMON_SECTIONS = ("search", "backend", "constraints")
_RESERVED = {*COMMON_SECTIONS, "preset", "problem", "sections"}

#: upper bounds of the search size and the seed (the seed also seeds numpy and torch generators)
MAX_POPULATION = 100_000
MAX_GENERATIONS = 100_000
MAX_SEED = 2**31 - 1

#: layouts of FP32 training tensors (``train.memory_format``)
MEMORY_FORMATS = ("channels_last", "contiguous")

#: field metadata of a value that does not change a candidate's evaluation
NO_HASH = {"hash": False}


def nohash(default: Any) -> Any:
    """A dataclass field with ``default`` that does not enter the evaluation hash."""
    return field(default=default, metadata=NO_HASH)


def check(cond: bool, key: str, message: str) -> None:
    """Raise ``ConfigError("config value KEY: MESSAGE")`` unless ``cond``."""
    if not cond:
        raise ConfigError(f"config value {key}: {message}")


def check_choice(value: str, choices: typing.Iterable[str], key: str) -> None:
    """Raise a ConfigError unless ``value`` is one of ``choices``."""
    choices = tuple(choices)
    check(value in choices, key, f"{value!r} is not one of {', '.join(choices)}")


_check, _choice = check, check_choice  # short local names


# -- sections of the built-in layers (the vessel-segmentation application uses them) ----------
@dataclass(frozen=True)
class SpaceConfig:
    """U-Net encoder search space (see :mod:`dalp_moo.space`)."""

    min_units: int = 3  #: fewest encoder units
    max_units: int = 5  #: most encoder units (genome length is fixed by this)
    num_classes: int = 2  #: output classes (background, vessel)

    def __post_init__(self) -> None:
        _check(1 <= self.min_units <= self.max_units <= 6, "space.min_units/max_units",
               f"need 1 <= min_units <= max_units <= 6, got {self.min_units}..{self.max_units}")
        _check(self.num_classes >= 2, "space.num_classes", "must be >= 2")


@dataclass(frozen=True)
class DataConfig:
    """Data source and its pre-processing."""

    source: str = "synthetic"  #: 'synthetic' (embedded generator) or 'airbus:PATH' / 'folder:PATH'
    n_tiles: int = 600  #: synthetic: tiles over all splits (split 70/15/15)
    tile_size: int = 64  #: synthetic: tile edge (pixels); real data are tiled to this size
    bands: int = 4  #: synthetic: spectral bands (blue, green, red, NIR)
    seed: int = 0  #: synthetic: generator seed
    normalization: str = "raw"  #: 'raw' digital numbers, 'standardize' per band, or 'scale'
    scale: float = 1.0 / 4095.0  #: factor applied to inputs when normalization = 'scale'
    cache_dir: str = nohash("")  #: where generated data are cached ('' = in memory only)
    #: synthetic: generator parameters over the variant's (dalp_moo.data.scene.GeneratorParams),
    #: e.g. ``{misregistration_px = 0, p_cloud = 0.1}``; enters the data's cache key
    generator: dict[str, Any] = field(default_factory=dict, metadata={"hash": "unless_default"})

    def __hash__(self) -> int:  # the generator table is a dict: hash the canonical JSON of all fields
        return hash(json.dumps(dataclasses.asdict(self), sort_keys=True, default=str))

    def __post_init__(self) -> None:
        _check(bool(self.source), "data.source", "must not be empty")
        _check(self.n_tiles >= 10, "data.n_tiles", f"must be >= 10, got {self.n_tiles}")
        _check(16 <= self.tile_size <= 1024, "data.tile_size",
               f"must be in 16..1024, got {self.tile_size}")
        _check(1 <= self.bands <= 16, "data.bands", f"must be in 1..16, got {self.bands}")
        _check(0 <= self.seed <= MAX_SEED, "data.seed", f"must be in 0..{MAX_SEED}, got {self.seed}")
        _choice(self.normalization, ("raw", "standardize", "scale"), "data.normalization")
        _check(self.scale > 0, "data.scale", "must be > 0")
        if self.generator:  # names and values are checked by the application (data.scene.with_overrides)
            _check(self.source.partition(":")[0] == "synthetic", "data.generator",
                   f"applies to synthetic sources only, not {self.source!r}")


@dataclass(frozen=True)
class TrainConfig:
    """Training of one candidate (paper: Adam 1e-3, focal loss, batch 8, patience 3).

    ``regime`` and ``profile`` are checked against the precision registries by the application
    (:data:`dalp_moo.precision.REGIMES`, :data:`dalp_moo.precision.PROFILES`).
    """

    epochs: int = 4  #: FP32 training epochs per candidate
    batch_size: int = 8  #: training batch (tiles)
    lr: float = 1e-3  #: Adam learning rate
    focal_alpha: float = 1.0  #: focal loss class weight alpha
    focal_gamma: float = 2.0  #: focal loss focusing exponent gamma (0 = cross-entropy)
    patience: int = 3  #: early stopping on validation loss (epochs without improvement)
    regime: str = "dalp"  #: 'fp32', 'ptq' (post-training FP16) or 'dalp' (deployment-aligned)
    finetune_epochs: int = 1  #: dalp: epochs of fine-tuning under the FP16 profile
    finetune_lr: float = 3e-4  #: dalp: fine-tuning learning rate
    profile: str = "myriadx"  #: deployment numerics profile ('ieee', 'myriadx' or 'bf16')
    #: switches of the profile (dalp_moo.precision.NumericsProfile), e.g. ``{overflow = "saturate"}``
    profile_options: dict[str, Any] = field(default_factory=dict)
    device: str = "auto"  #: 'auto', 'cpu' or 'cuda' (training device)
    threads: int = nohash(0)  #: torch CPU threads per evaluation (0 = torch default)
    #: layout of images and convolution weights in FP32 training: 'channels_last' (NHWC, faster
    #: CPU kernels: benchmarks/training_speed.py) or 'contiguous' (NCHW, the layout before
    #: 2026-12-02); the layouts round differently (over a training, about what another seed
    #: changes); a performance setting like ``threads``, so it does not enter the hash
    memory_format: str = nohash("channels_last")
    max_time_s: float = 0.0  #: per-evaluation time budget in seconds (0 = none)
    max_memory_mb: int = 0  #: per-evaluation memory budget in MB (0 = none; also the Dask worker limit)
    #: 'balanced' (focal + Dice loss, output-bias prior; optional vessel-tile sampling and lr
    #: schedule) or 'paper' (focal loss only); see dalp_moo.training.trainer
    recipe: str = "balanced"
    dice_weight: float = 1.0  #: balanced: weight of the vessel-class soft Dice loss
    vessel_tiles: float = 0.0  #: balanced: share of sampled tiles holding vessels (0 = shuffled order)
    schedule: str = "constant"  #: balanced: lr schedule, 'constant' or 'cosine' (5 % warm-up)
    #: FP32 trainings started again from a new seed (derived from the candidate's) when the model
    #: ends degenerate (vessel or background IoU 0 on the validation split); 0 = never. The record
    #: keeps every restart (``extra["restarts"]``)
    restarts: int = field(default=0, metadata={"hash": "unless_default"})

    def __post_init__(self) -> None:
        _check(self.epochs >= 1, "train.epochs", f"must be >= 1, got {self.epochs}")
        _check(self.batch_size >= 1, "train.batch_size", "must be >= 1")
        _check(0 < self.lr < 1, "train.lr", f"must be in (0, 1), got {self.lr}")
        _check(0 < self.finetune_lr < 1, "train.finetune_lr", "must be in (0, 1)")
        _check(self.focal_gamma >= 0, "train.focal_gamma", "must be >= 0")
        _check(self.focal_alpha > 0, "train.focal_alpha", "must be > 0")
        _check(self.patience >= 1, "train.patience", "must be >= 1")
        _check(self.finetune_epochs >= 0, "train.finetune_epochs", "must be >= 0")
        _choice(self.device, ("auto", "cpu", "cuda"), "train.device")
        _check(self.threads >= 0, "train.threads", "must be >= 0")
        _choice(self.memory_format, MEMORY_FORMATS, "train.memory_format")
        _check(self.max_time_s >= 0, "train.max_time_s", "must be >= 0")
        _check(self.max_memory_mb >= 0, "train.max_memory_mb", "must be >= 0")
        _choice(self.recipe, ("balanced", "paper"), "train.recipe")
        _check(self.dice_weight >= 0, "train.dice_weight", "must be >= 0")
        _check(0 <= self.vessel_tiles < 1, "train.vessel_tiles", "must be in [0, 1)")
        _choice(self.schedule, ("cosine", "constant"), "train.schedule")
        _check(0 <= self.restarts <= 5, "train.restarts", f"must be in 0..5, got {self.restarts}")
        for key, value in self.profile_options.items():
            _check(isinstance(value, (str, int, float, bool)), f"train.profile_options.{key}",
                   f"must be a string, number or boolean, got {type(value).__name__}")


# -- generic sections ------------------------------------------------------------------------
@dataclass(frozen=True)
class BackendConfig:
    """Deployment backend that measures on-device accuracy and latency."""

    name: str = "myriadx"  #: registered backend name (see ``dalp_moo.backends.available()``)
    device: str = "CPU"  #: device for backends that have several (OpenVINO device name)
    export_ir: bool = nohash(True)  #: write OpenVINO IR (FP16 weights) of the front's candidates at the end
    #: backend-specific options, e.g. ``{latency = "model"}`` for openvino, ``{streams = 1}`` for myriadx
    options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _check(bool(self.name), "backend.name", "must not be empty")
        for key, value in self.options.items():
            _check(isinstance(value, (str, int, float, bool)), f"backend.options.{key}",
                   f"must be a string, number or boolean, got {type(value).__name__}")


@dataclass(frozen=True)
class SearchConfig:
    """The multi-objective search. Only ``seed`` changes a candidate's evaluation."""

    algorithm: str = nohash("nsga2")  #: 'nsga2' or 'random' (random-search baseline, same budget)
    population: int = nohash(12)  #: population size (individuals per generation)
    generations: int = nohash(4)  #: generations (initial population included)
    seed: int = 0  #: seed of the search, data split and training
    mutation_prob: float = nohash(0.2)  #: per-gene reset-mutation probability
    crossover_prob: float = nohash(0.9)  #: probability that a mating is crossed over
    workers: int = nohash(0)  #: local Dask workers (0 = evaluate in this process)
    scheduler: str = nohash("")  #: address of an existing Dask scheduler (tcp://HOST:PORT)
    #: shared evaluation cache folder, reused across runs ('' = none; relative = inside the run folder)
    cache_dir: str = nohash("")

    def __post_init__(self) -> None:
        _choice(self.algorithm, ALGORITHMS, "search.algorithm")
        _check(2 <= self.population <= MAX_POPULATION, "search.population",
               f"must be in 2..{MAX_POPULATION}, got {self.population}")
        _check(1 <= self.generations <= MAX_GENERATIONS, "search.generations",
               f"must be in 1..{MAX_GENERATIONS}, got {self.generations}")
        _check(0 <= self.seed <= MAX_SEED, "search.seed", f"must be in 0..{MAX_SEED}, got {self.seed}")
        _check(0 <= self.mutation_prob <= 1, "search.mutation_prob", "must be in [0, 1]")
        _check(0 <= self.crossover_prob <= 1, "search.crossover_prob", "must be in [0, 1]")
        _check(self.workers >= 0, "search.workers", "must be >= 0")
        check_scheduler_address(self.scheduler)
        _check(not (self.workers and self.scheduler), "search.workers",
               "give either workers (local cluster) or scheduler (existing cluster), not both")


def check_scheduler_address(address: str, key: str = "search.scheduler") -> None:
    """Raise a ConfigError unless ``address`` is empty or a Dask scheduler address another process
    can connect to: ``tcp://HOST:PORT``, ``tls://HOST:PORT`` or (with distributed-ucxx installed)
    ``ucx://HOST:PORT``. ``inproc://`` addresses exist only inside one Python process."""
    if not address:
        return
    scheme, sep, rest = address.partition("://")
    _check(bool(sep) and scheme in ("tcp", "tls", "inproc", "ucx"), key,
           f"{address!r} is not a Dask address like tcp://HOST:8786")
    _check(scheme != "inproc", key, f"{address!r}: inproc:// addresses exist only inside one Python process; "
           "give the tcp:// address of a running scheduler")
    host, colon, port = rest.rpartition(":")
    _check(bool(colon) and bool(host) and port.isdigit() and 1 <= int(port) <= 65535, key,
           f"{address!r} needs a host and a port number, like {scheme}://HOST:8786")
    if scheme == "ucx":
        import importlib.util

        _check(importlib.util.find_spec("distributed_ucxx") is not None, key,
               f"{address!r}: the ucx protocol needs the distributed-ucxx package, which is not installed; "
               "use tcp://HOST:PORT")


def _hashed(section: Any) -> dict[str, Any]:
    """The fields of a section dataclass that enter the evaluation hash (a field added after
    the first release, marked ``hash="unless_default"``, only when set, so that older runs
    and caches keep their hashes)."""
    values = dataclasses.asdict(section)
    out = {}
    for f in fields(section):
        mode = f.metadata.get("hash", True)
        if mode is True or (mode == "unless_default" and values[f.name] != _default_of(f)):
            out[f.name] = values[f.name]
    return out


def _default_of(f: dataclasses.Field) -> Any:
    return f.default_factory() if f.default is dataclasses.MISSING else f.default


@dataclass(frozen=True)
class RunConfig:
    """Everything that defines a run. ``preset`` records where the defaults came from,
    ``problem`` names the application; ``sections`` holds the application's sections, which are
    also attributes (``cfg.train``). Missing sections get their defaults."""

    preset: str = ""
    problem: str = applications.DEFAULT
    search: SearchConfig = field(default_factory=SearchConfig)
    backend: BackendConfig = field(default_factory=BackendConfig)
    constraints: Any = None  #: the application's constraints dataclass (None = its defaults)
    sections: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.problem, str) or not self.problem:
            raise ConfigError(f"config value problem: expected a non-empty string, got {self.problem!r}")
        app = applications.get(self.problem)
        for name in app.sections:
            if name in _RESERVED:
                raise ConfigError(f"application {app.name}: section name {name!r} is reserved")
        unknown = sorted(set(self.sections) - set(app.sections))
        if unknown:
            raise _unknown(unknown[0], sorted([*COMMON_SECTIONS, *app.sections]), "section ")
        filled = {name: self.sections[name] if self.sections.get(name) is not None else cls()
                  for name, cls in app.sections.items()}
        object.__setattr__(self, "sections", filled)
        if self.constraints is None:
            object.__setattr__(self, "constraints", app.constraints_section())

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        sections = self.__dict__.get("sections") or {}
        if name in sections:
            return sections[name]
        raise AttributeError(f"{type(self).__name__} of problem {self.__dict__.get('problem')!r} "
                             f"has no section {name!r}")

    @property
    def application(self) -> Any:
        """The :class:`~dalp_moo.application.Application` named by ``problem``."""
        return applications.get(self.problem)

    def section_items(self) -> list[tuple[str, Any]]:
        """``(name, dataclass)`` of every section: the common ones, then the application's."""
        return [("search", self.search), ("backend", self.backend), ("constraints", self.constraints),
                *self.sections.items()]

    def replace(self, section: str, **changes: Any) -> RunConfig:
        """A copy with ``changes`` applied to one section (validated like any config)."""
        if section in COMMON_SECTIONS:
            return dataclasses.replace(self, **{section: dataclasses.replace(getattr(self, section), **changes)})
        if section not in self.sections:
            raise _unknown(section, sorted([*COMMON_SECTIONS, *self.sections]), "section ")
        sections = dict(self.sections)
        sections[section] = dataclasses.replace(sections[section], **changes)
        return dataclasses.replace(self, sections=sections)

    def to_dict(self) -> dict[str, Any]:
        """``{"preset", "problem", section: {key: value}}`` (the TOML layout)."""
        out: dict[str, Any] = {"preset": self.preset, "problem": self.problem}
        for name, section in self.section_items():
            out[name] = dataclasses.asdict(section)
        return out

    def evaluation_hash(self) -> str:
        """Hash of everything that changes one candidate's evaluation: the application and its
        version, and every section field not marked ``metadata={"hash": False}`` (of the search
        section only the seed)."""
        payload: dict[str, Any] = {"problem": self.problem, "version": self.application.version}
        for name, section in self.section_items():
            payload[name] = _hashed(section)
        blob = json.dumps(payload, sort_keys=True, default=str).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


def resolve_write_path(path: str, run_dir: str | Path) -> Path:
    """A folder the run writes to, from a config value. Relative paths live inside the run
    folder and may not escape it (``..``); absolute paths are the user's explicit choice."""
    p = Path(path)
    if p.is_absolute():
        return p
    base = Path(run_dir).resolve()
    target = (base / p).resolve()
    if base != target and base not in target.parents:
        raise ConfigError(f"path {path!r} escapes the run folder {run_dir}")
    return target


def _unknown(key: str, known: list[str], where: str) -> ConfigError:
    close = difflib.get_close_matches(key, known, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else f" (known: {', '.join(known)})"
    return ConfigError(f"unknown config key {where}{key!r}{hint}")


def _coerce(value: Any, typ: Any, key: str) -> Any:
    """Check ``value`` against the annotation ``typ``; ints are accepted for floats."""
    if isinstance(typ, str):
        typ = eval(typ, {"float": float, "int": int, "str": str, "bool": bool, "dict": dict,  # noqa: S307
                         "Any": Any, "tuple": tuple, "list": list})
    origin = typing.get_origin(typ)
    if origin in (typing.Union, types.UnionType):
        for option in typing.get_args(typ):
            try:
                return _coerce(value, option, key)
            except ConfigError:
                continue
        raise ConfigError(f"config value {key}: {value!r} has the wrong type")
    if typ is Any:
        return value
    if typ is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if typ is type(None) and value is None:
        return None
    if typ in (int, float, str, bool) and (type(value) is typ):
        return value
    if origin is dict and isinstance(value, dict):
        return dict(value)
    if origin is tuple and isinstance(value, (list, tuple)):
        return tuple(value)
    name = getattr(typ, "__name__", str(typ))
    raise ConfigError(f"config value {key}: expected {name}, got {type(value).__name__} {value!r}")


def _build_section(cls: type, values: dict[str, Any], section: str) -> Any:
    known = {f.name: f for f in fields(cls)}
    kwargs = {}
    for key, value in values.items():
        if key not in known:
            raise _unknown(key, sorted(known), f"{section}.")
        kwargs[key] = _coerce(value, known[key].type, f"{section}.{key}")
    try:
        return cls(**kwargs)
    except TypeError as exc:  # pragma: no cover - defensive
        raise ConfigError(f"config section {section}: {exc}") from exc


def _problem_of(values: dict[str, Any], default: str | None = None) -> str:
    problem = values.get("problem", default) or applications.DEFAULT
    if not isinstance(problem, str):
        raise ConfigError(f"config value problem: expected a string, got {problem!r}")
    return problem


def migrate(values: dict[str, Any], problem: str | None = None) -> dict[str, Any]:
    """Move keys of older config formats (the application's ``moved_keys``, e.g. format-1
    ``space.param_cap`` -> ``constraints.param_cap``) to their new place, with a warning."""
    app = applications.get(_problem_of(values, problem))
    out = {k: dict(v) if isinstance(v, dict) else v for k, v in values.items()}
    for old, new in app.moved_keys.items():
        old_section, old_key = old.split(".", 1)
        new_section, new_key = new.split(".", 1)
        content = out.get(old_section)
        if isinstance(content, dict) and old_key in content:
            target = out.setdefault(new_section, {})
            if isinstance(target, dict):
                target.setdefault(new_key, content.pop(old_key))
                logger.warning("config key %s has moved to %s (older config format); using it there", old, new)
    return out


def build_config(values: dict[str, Any], preset: str = "", problem: str | None = None) -> RunConfig:
    """Build and validate a :class:`RunConfig` from a nested mapping ``{section: {key: value}}``
    (top-level ``problem`` names the application)."""
    problem = _problem_of(values, problem)
    app = applications.get(problem)
    values = migrate(values, problem)
    classes: dict[str, type] = {"search": SearchConfig, "backend": BackendConfig,
                                "constraints": app.constraints_section, **app.sections}
    built: dict[str, Any] = {}
    for section, content in values.items():
        if section in ("preset", "problem"):
            continue
        if section not in classes:
            raise _unknown(section, sorted(classes), "section ")
        if not isinstance(content, dict):
            raise ConfigError(f"config section {section!r} must be a table of keys")
        built[section] = _build_section(classes[section], content, section)
    common = {k: built.pop(k) for k in COMMON_SECTIONS if k in built}
    backend_values = values.get("backend")
    if app.default_backend and not (isinstance(backend_values, dict) and "name" in backend_values):
        common["backend"] = dataclasses.replace(common.get("backend", BackendConfig()), name=app.default_backend)
    cfg = RunConfig(preset=preset, problem=problem, sections=built, **common)
    app.validate(cfg)
    return cfg


def _put(table: dict[str, Any], key: str, value: Any, where: str) -> None:
    """Set ``table[key] = value``; a dotted key (``options.precision``) sets one entry of a
    table-valued field, keeping its other entries."""
    if "." not in key:
        table[key] = value
        return
    head, rest = key.split(".", 1)
    inner = table.get(head)
    if inner is None:
        inner = {}
    elif not isinstance(inner, dict):
        raise ConfigError(f"config value {where}.{head}: is not a table, so {where}.{key} cannot be set")
    inner = dict(inner)
    _put(inner, rest, value, f"{where}.{head}")
    table[head] = inner


def merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    """Deep-merge ``update`` into a copy of ``base`` (two levels: section, key). A dotted key
    inside a section (``{"backend": {"options.precision": "f16"}}``, from ``--set
    backend.options.precision=f16``) sets one entry of a table-valued field."""
    out = {k: dict(v) if isinstance(v, dict) else v for k, v in base.items()}
    for key, value in update.items():
        if isinstance(value, dict) and (key not in out or isinstance(out[key], dict)):
            section = out.setdefault(key, {})
            for name, item in value.items():
                _put(section, name, item, key)
        else:
            out[key] = value
    return out


def read_file(path: str | Path) -> dict[str, Any]:
    """Read a TOML (``.toml``) or YAML (``.yaml``/``.yml``) config file into a mapping."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file {p}: not found")
    try:
        if p.suffix in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(p.read_text()) or {}
        else:
            data = tomllib.loads(p.read_text())
    except (tomllib.TOMLDecodeError, ValueError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config file {p}: cannot parse: {exc}".splitlines()[0]) from exc
    except Exception as exc:  # yaml.YAMLError and friends
        raise ConfigError(f"config file {p}: cannot parse: {str(exc).splitlines()[0]}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"config file {p}: top level must be a table of sections")
    return data


def presets(problem: str | None = None) -> tuple[str, ...]:
    """Preset names of the application ``problem`` (default: the default application)."""
    return applications.get(problem).presets()


def preset_values(name: str, problem: str | None = None) -> dict[str, Any]:
    """The mapping stored in the named preset of the application ``problem``."""
    return applications.get(problem).preset_values(name)


def parse_override(text: str) -> dict[str, Any]:
    """Parse ``section.key=value`` (value in TOML syntax; bare words are strings). The key may
    be dotted to set one entry of a table: ``backend.options.precision=f16``."""
    if "=" not in text or "." not in text.split("=", 1)[0]:
        raise ConfigError(f"override {text!r}: expected section.key=value")
    dotted, raw = text.split("=", 1)
    section, key = dotted.strip().split(".", 1)
    try:
        value = tomllib.loads(f"v = {raw.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw.strip()
    return {section: {key: value}}


def load_config(
    preset: str | None = None,
    path: str | Path | None = None,
    overrides: list[dict[str, Any]] | None = None,
    problem: str | None = None,
) -> RunConfig:
    """Resolve preset <- file <- overrides into a validated :class:`RunConfig`.

    ``problem`` (else the file's ``problem``, else the default application) selects the
    application; ``preset`` (else the file's ``preset``, else the application's default preset)
    selects its preset. Keys of older formats are migrated per layer (see :func:`migrate`).
    """
    file_values = read_file(path) if path is not None else {}
    problem = problem or _problem_of(file_values)
    app = applications.get(problem)
    file_preset = file_values.get("preset")
    if file_preset is not None and not isinstance(file_preset, str):
        raise ConfigError(f"config value preset: expected a string, got {file_preset!r}")
    preset = preset or file_preset or (app.default_preset if app.presets() else "")
    values = app.preset_values(preset) if preset else {}
    layers = [{k: v for k, v in file_values.items() if k not in ("preset", "problem")}, *(overrides or [])]
    for layer in layers:
        values = merge(values, migrate(layer, problem))
    return build_config(values, preset=preset, problem=problem)


_FIELD_LINE = re.compile(r"^(\s*)([A-Za-z_]\w*)\s*:")


@functools.cache
def field_docs(cls: type) -> dict[str, str]:
    """Documentation of each field of the dataclass ``cls`` (and its dataclass bases): the
    ``#:`` comment lines just above the field and the ``#:`` comment at the end of its line,
    joined. Fields without such a comment are missing from the mapping."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass):
            continue
        try:
            source = textwrap.dedent(inspect.getsource(klass))
        except (OSError, TypeError):  # no source file (e.g. a class built at run time)
            continue
        names = {f.name for f in fields(klass)}
        pending: list[str] = []
        for line in source.splitlines()[1:]:
            stripped = line.strip()
            if stripped.startswith("#:"):
                pending.append(stripped[2:].strip())
                continue
            match = _FIELD_LINE.match(line)
            if match and match.group(2) in names and len(match.group(1)) == 4:
                parts = [*pending]
                if "#:" in line:
                    parts.append(line.split("#:", 1)[1].strip())
                if parts:
                    docs[match.group(2)] = " ".join(p for p in parts if p)
            pending = []
    return docs


def to_toml(cfg: RunConfig, comments: bool = False) -> str:
    """Serialise a config as TOML (readable, and loadable by :func:`load_config`). With
    ``comments``, each section opens with its class's summary line and each key is preceded by
    its documentation (:func:`field_docs`)."""
    lines = [f"preset = {json.dumps(cfg.preset)}", f"problem = {json.dumps(cfg.problem)}", ""]
    classes = {name: type(section) for name, section in cfg.section_items()}
    for section, content in cfg.to_dict().items():
        if not isinstance(content, dict):
            continue
        docs = field_docs(classes[section]) if comments and section in classes else {}
        if comments and section in classes:
            summary = (inspect.getdoc(classes[section]) or "").split("\n\n")[0].replace("\n", " ")
            lines.extend(f"# {text}" for text in textwrap.wrap(summary, 96))
        lines.append(f"[{section}]")
        for key, value in content.items():
            if key in docs:
                lines.extend(f"# {text}" for text in textwrap.wrap(docs[key], 96))
            if value is None:  # TOML has no null: the field's default (None) applies on loading
                lines.append(f"# {key} = (none)")
                continue
            if isinstance(value, dict):
                inner = ", ".join(f"{k} = {json.dumps(v)}" for k, v in value.items())
                lines.append(f"{key} = {{{inner}}}")
            else:
                lines.append(f"{key} = {json.dumps(value)}")
        lines.append("")
    return "\n".join(lines)
