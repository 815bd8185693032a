"""The application seam: what a NAS application supplies to the generic framework.

An *application* (vessel segmentation, early-exit classification, ...) is defined in one module
``problems/<name>.py`` that exposes ``APPLICATION``, an instance of an :class:`Application`
subclass. It supplies its config sections, its search space, its candidate evaluator, its named
:class:`Objective` s and :class:`Constraint` s, its table columns and its end-of-run hook. The
framework (config, evaluation service, journal, generic pymoo Problem, search driver, results,
CLI) is written against this module only; :mod:`dalp_moo.applications` maps names to
applications.

Feasibility has one rule everywhere (the Problem's constraint values, the Pareto front, the
evaluator's pre-checks): :func:`feasible` -- the evaluation succeeded and every constraint
violation is <= 0. Maximised objectives are negated in one place: :meth:`Objective.minimised`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, runtime_checkable

import numpy as np

from dalp_moo.compat import tomllib
from dalp_moo.errors import ConfigError

if TYPE_CHECKING:  # pragma: no cover - type hints only
    from dalp_moo.config import RunConfig

DIRECTIONS = ("max", "min")

#: natural value assumed for a constraint metric that is missing or non-finite
MISSING_METRIC = 1e6


def finite_float(value: Any) -> float | None:
    """``value`` as a finite float, or None for None, strings, booleans, NaN, inf and non-numbers."""
    if value is None or isinstance(value, (str, bool)):
        return None
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


@dataclass(frozen=True)
class Objective:
    """A named, directed objective read from ``record.metrics[key]``.

    ``worst`` (natural units) is given to failed candidates and missing values; ``ideal``
    (natural units) is the best attainable value, the origin of the hypervolume normalisation.
    """

    name: str  #: display name, e.g. "on-device mIoU"
    key: str  #: key in ``record.metrics``, e.g. "deployed_miou"
    direction: str  #: "max" or "min"
    unit: str  #: "fraction", "ms", "parameters", ...
    worst: float  #: natural-unit value of failed or missing candidates
    ideal: float = 0.0  #: natural-unit best value (hypervolume origin)

    def __post_init__(self) -> None:
        if self.direction not in DIRECTIONS:
            raise ValueError(f"objective {self.key}: direction must be 'max' or 'min', got {self.direction!r}")

    def natural(self, value: Any) -> float:
        """``value`` in natural units, ``worst`` when missing or non-finite."""
        v = finite_float(value)
        return self.worst if v is None else v

    def minimised(self, value: Any) -> float:
        """The value pymoo minimises: the ONE place where maximised objectives are negated."""
        v = self.natural(value)
        return -v if self.direction == "max" else v

    def normalised(self, value: Any, reference: float) -> float:
        """``value`` mapped linearly so that ``ideal`` -> 0 and ``reference`` -> 1 (hypervolume)."""
        span = self.minimised(reference) - self.minimised(self.ideal)
        if span <= 0:
            raise ValueError(f"objective {self.key}: reference {reference} is not worse than ideal {self.ideal}")
        return (self.minimised(value) - self.minimised(self.ideal)) / span

    def format(self, value: Any) -> str:
        """Short display of a natural value: name, value, unit (``latency 2.161 ms``)."""
        v = finite_float(value)
        if v is None:
            return f"{self.name} -"
        text = f"{v:.0f}" if float(v).is_integer() and abs(v) >= 1000 else f"{v:.4g}"
        unit = "" if self.unit in ("fraction", "", self.name) else f" {self.unit}"
        return f"{self.name} {text}{unit}"


@dataclass(frozen=True)
class Constraint:
    """``metrics[key] <= upper`` (natural units). A missing or non-finite metric counts as
    :data:`MISSING_METRIC` (a large violation)."""

    name: str  #: display name, e.g. "parameter cap"
    key: str  #: key in ``record.metrics``
    upper: float  #: feasible when the metric is <= upper
    unit: str = ""

    def violation(self, metrics: Mapping[str, Any]) -> float:
        """``metrics[key] - upper`` (<= 0: satisfied); missing/non-finite -> large positive."""
        v = finite_float(metrics.get(self.key))
        if v is None:
            return max(MISSING_METRIC - self.upper, 1.0)
        return float(v - self.upper)

    def explain(self, metrics: Mapping[str, Any]) -> str:
        """One line saying how ``metrics`` violate this constraint (for failure reasons)."""
        v = finite_float(metrics.get(self.key))
        shown = "missing" if v is None else f"{v:g}"
        unit = f" {self.unit}" if self.unit else ""
        return f"{self.key} {shown}{unit} > {self.name} {self.upper:g}{unit}"

    def known(self, metrics: Mapping[str, Any]) -> bool:
        """Whether ``metrics`` hold a finite value of this constraint's metric."""
        return finite_float(metrics.get(self.key)) is not None


class RecordLike(Protocol):
    """What the feasibility rule reads from an evaluation record."""

    @property
    def ok(self) -> bool: ...

    metrics: Mapping[str, Any]


def constraint_values(record: RecordLike, constraints: Sequence[Constraint]) -> list[float]:
    """pymoo's ``G`` row of a record (feasible when all are <= 0).

    One value per constraint; a failed candidate violates every constraint by at least 1; an
    application without constraints gets one value, 0 (succeeded) or 1 (failed), so that the
    Problem's feasibility equals :func:`feasible` in every case.
    """
    if not constraints:
        return [0.0 if record.ok else 1.0]
    g = [c.violation(record.metrics) for c in constraints]
    if not record.ok:
        g = [max(v, 1.0) for v in g]
    return g


def feasible(record: RecordLike, constraints: Sequence[Constraint]) -> bool:
    """THE feasibility rule: the evaluation succeeded and every constraint holds."""
    return record.ok and all(c.violation(record.metrics) <= 0 for c in constraints)


def first_violated(metrics: Mapping[str, Any], constraints: Sequence[Constraint]) -> Constraint | None:
    """The first constraint whose metric is known in ``metrics`` and violated (evaluator
    pre-checks: skip training a candidate that is infeasible already), else None."""
    for c in constraints:
        if c.known(metrics) and c.violation(metrics) > 0:
            return c
    return None


@runtime_checkable
class ArchitectureLike(Protocol):
    """A decoded candidate."""

    @property
    def arch_id(self) -> str: ...  # canonical candidate ID (12 hex digits)

    @property
    def genome(self) -> tuple[int, ...]: ...  # canonical genome

    def describe(self) -> str: ...


@runtime_checkable
class SearchSpaceProtocol(Protocol):
    """An integer-genome search space. Operators (sampling, mutation, repair, duplicate
    elimination) take this object; it must pickle cheaply.

    Optional: ``static_metrics(genome) -> dict`` (metrics known without training, e.g.
    parameters), used for failed records and evaluator pre-checks.
    """

    xl: np.ndarray  # lower bounds (int)
    xu: np.ndarray  # upper bounds (int, inclusive)

    @property
    def n_var(self) -> int: ...

    def decode(self, genome: Any) -> ArchitectureLike: ...

    def canonical(self, genome: Any) -> np.ndarray: ...

    def canonical_batch(self, X: Any) -> np.ndarray: ...

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray: ...

    def repair(self, genome: Any) -> np.ndarray: ...


@runtime_checkable
class CandidateEvaluator(Protocol):
    """Heavy per-process evaluation state of one run config (data, backend, ...).

    ``evaluate`` trains and measures one candidate and returns ``(record, artifacts)``; it may
    raise (the generic ``evaluate_task`` turns exceptions into failed records). Artifacts are
    ``{"weights": state dict, "diagnostics": dict}`` (both optional) or None.
    """

    backend_info: Any  # has .name (str) and .emulated (bool)

    def evaluate(self, genome: Any) -> tuple[Any, dict | None]: ...

    def describe(self) -> dict: ...  # goes to meta.json


@dataclass(frozen=True)
class NoConstraints:
    """The ``[constraints]`` section of an application without configurable constraints."""


class Application:
    """Base class of application definitions (``problems/<name>.py`` subclasses it).

    Class attributes describe the application; methods build its parts from a run config.
    """

    name: ClassVar[str] = ""  #: registry name, e.g. "vessel-segmentation"
    version: ClassVar[str] = "1"  #: enters the evaluation hash: bump when evaluations change
    #: application config sections: TOML section name -> frozen dataclass
    sections: ClassVar[dict[str, type]] = {}
    constraints_section: ClassVar[type] = NoConstraints  #: dataclass of the [constraints] section
    preset_dir: ClassVar[Path | None] = None  #: folder of this application's presets (<name>.toml)
    default_preset: ClassVar[str] = "default"
    table_columns: ClassVar[tuple[str, ...]] = ()  #: metric keys shown in tables after the common fields
    #: config keys that moved (format-1 configs): "old_section.key" -> "new_section.key"
    moved_keys: ClassVar[dict[str, str]] = {}
    #: ``backend.name`` of a config that does not set one ("" = the generic default, myriadx)
    default_backend: ClassVar[str] = ""

    # -- presets ----------------------------------------------------------------------------
    def presets(self) -> tuple[str, ...]:
        """Names of this application's presets (sorted)."""
        if self.preset_dir is None or not Path(self.preset_dir).is_dir():
            return ()
        return tuple(sorted(p.stem for p in Path(self.preset_dir).glob("*.toml")))

    def preset_values(self, name: str) -> dict[str, Any]:
        """The mapping stored in the named preset."""
        names = self.presets()
        if name not in names:
            choices = ", ".join(names) or "none"
            raise ConfigError(f"unknown preset {name!r} for problem {self.name!r} (choose from {choices})")
        return tomllib.loads((Path(self.preset_dir) / f"{name}.toml").read_text())  # type: ignore[arg-type]

    # -- parts ------------------------------------------------------------------------------
    def space(self, cfg: RunConfig) -> SearchSpaceProtocol:
        """The search space of ``cfg`` (cheap to build and to pickle)."""
        raise NotImplementedError

    def objectives(self, cfg: RunConfig) -> tuple[Objective, ...]:
        """The objectives, in the order of pymoo's ``F`` columns."""
        raise NotImplementedError

    def constraints(self, cfg: RunConfig) -> tuple[Constraint, ...]:
        """The constraints, in the order of pymoo's ``G`` columns (may be empty)."""
        return ()

    def reference_point(self, cfg: RunConfig) -> dict[str, float]:
        """Hypervolume reference point, natural units per objective key; must depend on the
        config only (fixed per run, so runs and generations are comparable)."""
        return {o.key: o.worst for o in self.objectives(cfg)}

    def evaluator(self, cfg: RunConfig) -> CandidateEvaluator:
        """A new evaluator for ``cfg`` (heavy; the framework caches one per process)."""
        raise NotImplementedError

    def on_finish(self, folder: Path, cfg: RunConfig, front: Sequence[Any]) -> dict[str, Any]:
        """End-of-run hook (e.g. export of the front); returns additions to summary.json."""
        return {}

    def validate(self, cfg: RunConfig) -> None:
        """Cross-section checks of a built config; raise :class:`ConfigError`."""
        return None

    def __repr__(self) -> str:
        return f"<application {self.name} v{self.version}>"
