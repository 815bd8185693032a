"""Repair of genomes that exceed the parameter cap. The parameter count is passed in (a
callable, e.g. :class:`dalp_moo.model.ParamCounter`), so the space does not import the model."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from dalp_moo.space.genome import Architecture, SearchSpace


def fit_cap(space: SearchSpace, genome: Any, count: Callable[[Architecture], int], cap: int) -> np.ndarray:
    """Clip ``genome`` into bounds and shrink it until ``count(arch) <= cap`` (parameters).

    Deterministic: repeatedly lowers the largest channel coefficient (ties: the deepest unit),
    then MBConv expansions, then kernel sizes, and finally drops the deepest unit. Returns a
    canonical genome (still over the cap if even the smallest network of the space is).
    """
    g = space.canonical(genome)
    while count(space.decode(g)) > cap:
        n = space.n_units(g)
        channel_genes = [space.channel_gene(i) for i in range(n)]
        values = [g[p] for p in channel_genes]
        if max(values) > 0:
            top = max(values)
            pos = max(p for p in channel_genes if g[p] == top)
            g[pos] -= 1
            continue
        expansion_genes = [space.expansion_gene(i) for i in range(n) if g[space.expansion_gene(i)] > 0]
        if expansion_genes:
            g[expansion_genes[-1]] -= 1
            continue
        kernel_genes = [space.kernel_gene(i) for i in range(n) if g[space.kernel_gene(i)] > 0]
        if kernel_genes:
            g[kernel_genes[-1]] -= 1
            continue
        if g[0] > 0:
            g[0] -= 1
            g = space.canonical(g)
            continue
        break  # smallest network of the space still exceeds the cap: leave it infeasible
    return space.canonical(g)
