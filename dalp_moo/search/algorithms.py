"""Search algorithms: NSGA-II (pymoo) with the space's operators, and a random-search baseline.

Both are ordinary pymoo algorithms; the baseline spends the same budget (population x
generations evaluations) on uniformly random, repaired, never-repeated architectures.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from pymoo.algorithms.moo.nsga2 import NSGA2
from pymoo.core.algorithm import Algorithm
from pymoo.core.population import Population
from pymoo.util.nds.non_dominated_sorting import NonDominatedSorting

from dalp_moo.application import SearchSpaceProtocol
from dalp_moo.config import RunConfig
from dalp_moo.search.operators import CanonicalGenomes, GenomeSampling, integer_operators


class RandomSearch(Algorithm):
    """Multi-objective random search: ``pop_size`` new unique random architectures per
    generation; ``opt`` is the non-dominated feasible set of everything evaluated."""

    def __init__(self, pop_size: int, sampling: GenomeSampling, canonical: CanonicalGenomes, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.pop_size = pop_size
        self.sampling = sampling
        self.canonical = canonical
        self.seen: set[bytes] = set()

    def _draw(self) -> Population:
        rows: list[np.ndarray] = []
        for _ in range(50):  # bounded retries in a small space
            X = self.sampling.do(self.problem, self.pop_size, random_state=self.random_state).get("X")
            canon = self.canonical(Population.new(X=X))
            for x, c in zip(X, canon, strict=True):
                key = c.astype(np.int64).tobytes()
                if key not in self.seen and len(rows) < self.pop_size:
                    self.seen.add(key)
                    rows.append(x)
            if len(rows) >= self.pop_size:
                break
        return Population.new(X=np.array(rows))

    def _initialize_infill(self) -> Population:
        return self._draw()

    def _infill(self) -> Population:
        return self._draw()

    def _initialize_advance(self, infills: Population | None = None, **kwargs: Any) -> None:
        self.pop = infills

    def _advance(self, infills: Population | None = None, **kwargs: Any) -> None:
        self.pop = Population.merge(self.pop, infills)

    def _set_optimum(self) -> None:
        pop = self.pop
        feasible = pop[pop.get("feas")] if len(pop) else pop
        if len(feasible) == 0:
            self.opt = pop[[]]
            return
        front = NonDominatedSorting().do(feasible.get("F"), only_non_dominated_front=True)
        self.opt = feasible[front]


def _nsga2(cfg: RunConfig, space: SearchSpaceProtocol) -> Algorithm:
    s = cfg.search
    return NSGA2(pop_size=s.population, **integer_operators(space, s.mutation_prob, s.crossover_prob))


def _random(cfg: RunConfig, space: SearchSpaceProtocol) -> Algorithm:
    return RandomSearch(cfg.search.population, GenomeSampling(space), CanonicalGenomes(space))


#: the search algorithms by ``search.algorithm`` name (the names are :data:`dalp_moo.config.ALGORITHMS`)
FACTORIES = {"nsga2": _nsga2, "random": _random}


def make_algorithm(cfg: RunConfig, space: SearchSpaceProtocol) -> Algorithm:
    """The algorithm named by ``cfg.search.algorithm``, with the integer operators of ``space``."""
    return FACTORIES[cfg.search.algorithm](cfg, space)
