"""Vessel segmentation NAS as a pymoo Problem.

Objectives (all minimised): ``1 - on-device mIoU`` (fraction), ``latency_ms`` (ms, batch 1 on
the backend's target), ``params`` (parameters). Constraints (feasible when <= 0):
``params - param_cap`` and, when ``backend.latency_budget_ms > 0``, ``latency_ms - budget``.

The Problem holds only its :class:`~dalp_moo.config.RunConfig`; evaluation is delegated to an
:class:`~dalp_moo.evaluation.EvaluationService` that is created lazily in the process that
evaluates and is never pickled, so the Problem pickles cheaply for parallel runners. Any pymoo
algorithm can solve it: ``pymoo.optimize.minimize(VesselSegmentationProblem(cfg), NSGA2(...))``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from pymoo.core.problem import Problem

from dalp_moo.config import RunConfig
from dalp_moo.evaluation.record import EvalRecord
from dalp_moo.evaluation.service import EvaluationService
from dalp_moo.space import SearchSpace

OBJECTIVES = ("1-miou", "latency_ms", "params")


class VesselSegmentationProblem(Problem):
    """Integer-genome U-Net search for vessel segmentation (3 objectives, 1-2 constraints)."""

    def __init__(self, config: RunConfig, service: EvaluationService | None = None) -> None:
        space = SearchSpace(config.space)
        self.config = config
        self.latency_budget_ms = config.backend.latency_budget_ms
        n_ieq = 2 if self.latency_budget_ms > 0 else 1
        super().__init__(n_var=space.n_var, n_obj=len(OBJECTIVES), n_ieq_constr=n_ieq,
                         xl=space.xl, xu=space.xu, vtype=int,
                         exclude_from_serialization=["_service"])
        self._service = service
        self.last_records: list[EvalRecord] = []

    @property
    def service(self) -> EvaluationService:
        """The evaluation service (created on first use in this process)."""
        if self._service is None:
            self._service = EvaluationService(self.config)
        return self._service

    @service.setter
    def service(self, value: EvaluationService) -> None:
        self._service = value

    def constraints(self, record: EvalRecord) -> list[float]:
        """Constraint values of one record (feasible when all are <= 0)."""
        cap = self.config.space.param_cap
        g = [float(record.params - cap)]
        if not record.ok:
            g[0] = max(g[0], 1.0)
        if self.latency_budget_ms > 0:
            lat = record.latency_ms if record.ok and record.latency_ms is not None else 1e6
            g.append(float(lat - self.latency_budget_ms))
        return g

    def _evaluate(self, X: np.ndarray, out: dict[str, Any], *args: Any, **kwargs: Any) -> None:
        records = self.service.evaluate_many(np.asarray(X))
        self.last_records = records
        out["F"] = np.array([r.objectives() for r in records], dtype=float)
        out["G"] = np.array([self.constraints(r) for r in records], dtype=float)

    def __getstate__(self) -> dict[str, Any]:
        state = super().__getstate__()
        state["_service"] = None
        state["last_records"] = []
        return state
