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
               path: str | Path, title: str = "", constraints: Sequence[Constraint] = ()) -> Path:
    """Pairwise projections of all evaluations with the front marked (points not joined;
    dominated, non-dominated and infeasible candidates distinguished; colour = generation), as
    PNG/SVG/PDF by the suffix of ``path``; see :func:`dalp_moo.results.plots.front_figure`.
    matplotlib's object-oriented API: no pyplot state, no backend switch."""
    from dalp_moo.results.plots import front_figure, save
    from dalp_moo.results.summary import Scoring

    scoring = Scoring(tuple(objectives), tuple(constraints), {})
    return save(front_figure(records, front, scoring, title=title), path)
