"""Integer-genome operators for pymoo: sampling, reset mutation, repair, duplicate check.

All are module-level classes (picklable) that take the search space (any
:class:`~dalp_moo.application.SearchSpaceProtocol`), so they work with any application, any
pymoo algorithm and any parallel runner. :func:`integer_operators` bundles them for
``NSGA2(**integer_operators(space))``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from pymoo.core.duplicate import DefaultDuplicateElimination
from pymoo.core.mutation import Mutation
from pymoo.core.repair import Repair
from pymoo.core.sampling import Sampling
from pymoo.operators.crossover.pntx import SinglePointCrossover

from dalp_moo.application import SearchSpaceProtocol


def _rng(random_state: Any) -> np.random.Generator:
    return random_state if isinstance(random_state, np.random.Generator) else np.random.default_rng()


def _repair_all(space: SearchSpaceProtocol, X: np.ndarray) -> np.ndarray:
    return np.array([space.repair(x) for x in np.atleast_2d(X)], dtype=int)


class GenomeSampling(Sampling):
    """Uniform random genomes of the space, repaired (e.g. to fit a parameter cap)."""

    def __init__(self, space: SearchSpaceProtocol) -> None:
        super().__init__()
        self.space = space

    def _do(self, problem: Any, n_samples: int, *args: Any, random_state: Any = None, **kwargs: Any) -> np.ndarray:
        return _repair_all(self.space, self.space.sample(n_samples, _rng(random_state)))


class ResetMutation(Mutation):
    """Per-gene reset: each gene is redrawn uniformly from its choices with probability ``rate``."""

    def __init__(self, rate: float = 0.2) -> None:
        super().__init__(prob=1.0)
        self.rate = rate

    def _do(self, problem: Any, X: np.ndarray, *args: Any, random_state: Any = None, **kwargs: Any) -> np.ndarray:
        rng = _rng(random_state)
        X = np.asarray(X).astype(int).copy()
        mask = rng.random(X.shape) < self.rate
        fresh = rng.integers(problem.xl.astype(int), problem.xu.astype(int) + 1, size=X.shape)
        X[mask] = fresh[mask]
        return X


class SpaceRepair(Repair):
    """The space's repair for every row: clip into bounds, canonicalise, fit its constraints."""

    def __init__(self, space: SearchSpaceProtocol) -> None:
        super().__init__()
        self.space = space

    def _do(self, problem: Any, X: np.ndarray, **kwargs: Any) -> np.ndarray:
        return _repair_all(self.space, X)


class CanonicalGenomes:
    """Maps a population to canonical genomes, for duplicate elimination by candidate."""

    def __init__(self, space: SearchSpaceProtocol) -> None:
        self.space = space

    def __call__(self, pop: Any) -> np.ndarray:
        X = pop.get("X")
        if len(X) == 0:
            return np.zeros((0, 0))
        return self.space.canonical_batch(X).astype(float)


def canonical_duplicates(space: SearchSpaceProtocol) -> DefaultDuplicateElimination:
    """Duplicate elimination that treats genomes of the same candidate as duplicates."""
    return DefaultDuplicateElimination(func=CanonicalGenomes(space))


def integer_operators(space: SearchSpaceProtocol, mutation_prob: float = 0.2,
                      crossover_prob: float = 0.9) -> dict[str, Any]:
    """Keyword arguments of a pymoo genetic algorithm (e.g. ``NSGA2(pop_size=8, **ops)``) that keep
    genomes integer: space sampling, single-point crossover, reset mutation, space repair and
    duplicate elimination by canonical genome."""
    return {
        "sampling": GenomeSampling(space),
        "crossover": SinglePointCrossover(prob=crossover_prob, vtype=int),
        "mutation": ResetMutation(rate=mutation_prob),
        "repair": SpaceRepair(space),
        "eliminate_duplicates": canonical_duplicates(space),
    }
