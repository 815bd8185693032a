"""One generic pymoo Problem for every application.

:class:`ApplicationProblem` is built from a run config: the application named by
``cfg.problem`` supplies the search space (bounds), the objectives (``F``, maximised ones
negated by :meth:`~dalp_moo.application.Objective.minimised`, nowhere else) and the constraints
(``G`` from :func:`~dalp_moo.application.constraint_values`, the same
:class:`~dalp_moo.application.Constraint` objects that results/ uses for feasibility).

**Integer genome.** Genes are integers. Rows of ``X`` that are not integers (pymoo's default
real-valued operators produce such rows) are rounded to the nearest integer and clipped into
``[xl, xu]`` before evaluation, and the rounded genomes are written back to the population
(``out["X"]``), so ``F``/``G`` always belong to the genome that pymoo keeps and any algorithm
returns integer-valued genomes. The space's own operators
(:func:`dalp_moo.search.operators.integer_operators`) keep integer dtype throughout.

The Problem is thin: it holds the config, the space and the objective/constraint definitions;
evaluation is delegated to an :class:`~dalp_moo.evaluation.EvaluationService` that is created
lazily in the process that evaluates and is never pickled.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
from pymoo.core.problem import Problem

from dalp_moo.application import constraint_values
from dalp_moo.config import RunConfig
from dalp_moo.errors import ConfigError
from dalp_moo.evaluation.record import EvalRecord
from dalp_moo.evaluation.service import EvaluationService


def integer_genomes(X: Any, xl: np.ndarray, xu: np.ndarray) -> np.ndarray:
    """``X`` rounded to the nearest integers and clipped into ``[xl, xu]`` (int array)."""
    X = np.atleast_2d(np.asarray(X))
    if np.issubdtype(X.dtype, np.integer):
        return np.clip(X, xl, xu).astype(int)
    return np.clip(np.rint(X.astype(float)), xl, xu).astype(int)


class ApplicationProblem(Problem):
    """The pymoo Problem of the application ``cfg.problem`` (integer genome, named objectives
    and constraints). Subclasses may pin ``application_name``."""

    application_name: ClassVar[str | None] = None

    def __init__(self, config: RunConfig, service: EvaluationService | None = None) -> None:
        if self.application_name is not None and config.problem != self.application_name:
            raise ConfigError(f"{type(self).__name__} needs problem = {self.application_name!r}, "
                              f"the config has {config.problem!r}")
        app = config.application
        self.config = config
        self.space = app.space(config)
        self.objectives = tuple(app.objectives(config))
        self.constraint_defs = tuple(app.constraints(config))
        super().__init__(n_var=self.space.n_var, n_obj=len(self.objectives),
                         n_ieq_constr=max(len(self.constraint_defs), 1),
                         xl=self.space.xl, xu=self.space.xu, vtype=int, requires_kwargs=True,
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

    def F_of(self, records: list[EvalRecord]) -> np.ndarray:
        """Minimised objective values of ``records`` (one row each)."""
        return np.array([r.objectives(self.objectives) for r in records], dtype=float)

    def G_of(self, records: list[EvalRecord]) -> np.ndarray:
        """Constraint values of ``records`` (feasible when all are <= 0)."""
        return np.array([constraint_values(r, self.constraint_defs) for r in records], dtype=float)

    def _evaluate(self, X: np.ndarray, out: dict[str, Any], *args: Any, algorithm: Any = None,
                  **kwargs: Any) -> None:
        Xi = integer_genomes(X, self.space.xl, self.space.xu)
        n_iter = getattr(algorithm, "n_iter", None)
        generation = n_iter - 1 if isinstance(n_iter, int) else None  # 0 = initial population
        records = self.service.evaluate_many(Xi, generation=generation)
        self.last_records = records
        out["F"] = self.F_of(records)
        out["G"] = self.G_of(records)
        if not np.array_equal(Xi, np.atleast_2d(X)):
            out["X"] = Xi

    def __getstate__(self) -> dict[str, Any]:
        state = super().__getstate__()
        state["_service"] = None
        state["last_records"] = []
        return state
