"""Pareto front, hypervolume and plots of evaluation records, for any number of objectives.

Feasibility is :func:`dalp_moo.application.feasible` (the rule the Problem's constraint values
encode). The hypervolume is computed on objectives normalised so that each objective's ideal
maps to 0 and the run's fixed reference point to 1 (:meth:`Objective.normalised`): it is the
dominated fraction of the box [ideal, reference], comparable between generations and runs of
the same reference point.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from pymoo.indicators.hv import HV
from pymoo.util.nds.non_dominated_sorting import NonDominatedSorting

from dalp_moo.application import Constraint, Objective
from dalp_moo.application import feasible as is_feasible
from dalp_moo.evaluation.record import EvalRecord


def feasible(records: Sequence[EvalRecord], constraints: Sequence[Constraint]) -> list[EvalRecord]:
    """The records that satisfy :func:`dalp_moo.application.feasible`."""
    return [r for r in records if is_feasible(r, constraints)]


def unique_by_arch(records: Sequence[EvalRecord]) -> list[EvalRecord]:
    """First record of each candidate ID."""
    seen: dict[str, EvalRecord] = {}
    for r in records:
        seen.setdefault(r.arch_id, r)
    return list(seen.values())


def pareto_front(records: Sequence[EvalRecord], objectives: Sequence[Objective],
                 constraints: Sequence[Constraint] = ()) -> list[EvalRecord]:
    """Non-dominated feasible records (one per candidate), sorted by the first objective, best
    first."""
    records = unique_by_arch(feasible(records, constraints))
    if not records:
        return []
    F = np.array([r.objectives(objectives) for r in records])
    idx = NonDominatedSorting().do(F, only_non_dominated_front=True)
    return sorted((records[i] for i in idx), key=lambda r: r.objectives(objectives)[0])


def hypervolume(front: Sequence[EvalRecord], objectives: Sequence[Objective],
                reference_point: Mapping[str, float]) -> float:
    """Hypervolume of ``front`` in the box between the objectives' ideals (0) and
    ``reference_point`` (natural units per objective key, mapped to 1); in [0, 1]."""
    if not front:
        return 0.0
    F = np.array([[o.normalised(r.metrics.get(o.key) if r.ok else None, reference_point[o.key])
                   for o in objectives] for r in front])
    return float(HV(ref_point=np.ones(len(objectives)))(F))


def plot_front(records: Sequence[EvalRecord], front: Sequence[EvalRecord], objectives: Sequence[Objective],
               path: str | Path, title: str = "") -> None:
    """Scatter of all evaluations, the first objective against each other one, front
    highlighted; figures from emulated backends are labelled so. Uses matplotlib's current
    backend (the CLI selects a non-interactive one)."""
    import matplotlib.pyplot as plt

    first, others = objectives[0], list(objectives[1:]) or [objectives[0]]
    ok = [r for r in records if r.ok and r.metrics.get(first.key) is not None]
    fig, axes = plt.subplots(1, len(others), figsize=(5.5 * len(others), 4.2), squeeze=False)
    front_ids = {r.arch_id for r in front}
    emulated = any(r.emulated for r in ok)
    for ax, obj in zip(axes[0], others, strict=True):
        rest = [r for r in ok if r.arch_id not in front_ids]
        ax.scatter([r.metrics.get(obj.key) for r in rest], [r.metrics.get(first.key) for r in rest],
                   s=18, c="0.6", label="evaluated")
        pts = sorted((r.metrics.get(obj.key), r.metrics.get(first.key)) for r in front)
        ax.plot([p[0] for p in pts], [p[1] for p in pts], "o-", c="tab:red", ms=5, lw=1,
                label=f"Pareto front ({len(objectives)} objectives)")
        ax.set_xlabel(f"{obj.name} ({obj.unit})")
        ax.set_ylabel(first.name + (" (emulated)" if emulated else ""))
        ax.grid(alpha=0.3)
    axes[0][0].legend(loc="best", fontsize=8)
    fig.suptitle(title or "dalp_moo search")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
