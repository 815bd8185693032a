"""Integer-genome operators for pymoo: sampling, reset mutation, cap repair, duplicate check.

All are module-level classes (picklable) parameterised by the :class:`SpaceConfig` and the input
band count, so they work with any pymoo algorithm and any parallel runner.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from pymoo.core.duplicate import DefaultDuplicateElimination
from pymoo.core.mutation import Mutation
from pymoo.core.repair import Repair
from pymoo.core.sampling import Sampling

from dalp_moo.config import SpaceConfig
from dalp_moo.space import SearchSpace, repair


def _rng(random_state: Any) -> np.random.Generator:
    return random_state if isinstance(random_state, np.random.Generator) else np.random.default_rng()


class GenomeSampling(Sampling):
    """Uniform random genomes, repaired to fit the parameter cap."""

    def __init__(self, space_cfg: SpaceConfig, in_channels: int) -> None:
        super().__init__()
        self.space_cfg = space_cfg
        self.in_channels = in_channels

    def _do(self, problem: Any, n_samples: int, *args: Any, random_state: Any = None, **kwargs: Any) -> np.ndarray:
        space = SearchSpace(self.space_cfg)
        X = space.sample(n_samples, _rng(random_state))
        return np.array([repair(space, x, self.in_channels) for x in X])


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


class CapRepair(Repair):
    """Clip genes into bounds, canonicalise, and shrink candidates above the parameter cap."""

    def __init__(self, space_cfg: SpaceConfig, in_channels: int) -> None:
        super().__init__()
        self.space_cfg = space_cfg
        self.in_channels = in_channels

    def _do(self, problem: Any, X: np.ndarray, **kwargs: Any) -> np.ndarray:
        space = SearchSpace(self.space_cfg)
        return np.array([repair(space, x, self.in_channels) for x in np.atleast_2d(X)])


class CanonicalGenomes:
    """Maps a population to canonical genomes, for duplicate elimination by architecture."""

    def __init__(self, space_cfg: SpaceConfig) -> None:
        self.space_cfg = space_cfg

    def __call__(self, pop: Any) -> np.ndarray:
        X = pop.get("X")
        if len(X) == 0:
            return np.zeros((0, 0))
        return SearchSpace(self.space_cfg).canonical_batch(X).astype(float)


def canonical_duplicates(space_cfg: SpaceConfig) -> DefaultDuplicateElimination:
    """Duplicate elimination that treats genomes of the same architecture as duplicates."""
    return DefaultDuplicateElimination(func=CanonicalGenomes(space_cfg))
