"""Summary numbers of a run: counts, front, best candidate, hypervolume (fixed reference)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from dalp_moo.application import Constraint, Objective
from dalp_moo.evaluation.record import STATUS_FAILED, STATUS_INFEASIBLE, EvalRecord
from dalp_moo.results.pareto import feasible, hypervolume, pareto_front


@dataclass(frozen=True)
class Scoring:
    """How records of one run are judged: its objectives, constraints and hypervolume
    reference point (natural units per objective key, fixed for the run)."""

    objectives: tuple[Objective, ...]
    constraints: tuple[Constraint, ...]
    reference_point: dict[str, float]


def summarise(records: Sequence[EvalRecord], scoring: Scoring,
              elapsed_s: float = 0.0) -> tuple[list[EvalRecord], dict[str, Any]]:
    """Pareto front and summary numbers of ``records``. ``best_*`` describe the feasible
    candidate best on the first objective (with all its objectives under ``best_metrics``)."""
    objectives = scoring.objectives
    feas = feasible(records, scoring.constraints)
    front = pareto_front(records, objectives, scoring.constraints)
    best = min(feas, key=lambda r: r.objectives(objectives)[0]) if feas else None
    first = objectives[0]
    summary: dict[str, Any] = {
        "evaluations": len(records),
        "unique_architectures": len({r.arch_id for r in records}),
        "failed": sum(1 for r in records if r.status == STATUS_FAILED),
        "infeasible": sum(1 for r in records if r.status == STATUS_INFEASIBLE),
        "feasible": len(feas),
        "front_size": len(front),
        "objectives": [{"name": o.name, "key": o.key, "direction": o.direction, "unit": o.unit} for o in objectives],
        "best_objective": first.key,
        f"best_{first.key}": best.metrics.get(first.key) if best else None,
        "best_arch_id": best.arch_id if best else None,
        "best_metrics": {o.key: best.metrics.get(o.key) for o in objectives} if best else None,
        "hypervolume": hypervolume(front, objectives, scoring.reference_point),
        "hypervolume_reference": dict(scoring.reference_point),
        "emulated": any(r.emulated for r in records),
        "elapsed_s": elapsed_s,
    }
    return front, summary


def reference_from(meta: Mapping[str, Any] | None) -> dict[str, float] | None:
    """The hypervolume reference point a run recorded in meta.json (None if absent)."""
    ref = (meta or {}).get("hypervolume_reference")
    return {str(k): float(v) for k, v in ref.items()} if isinstance(ref, dict) else None
