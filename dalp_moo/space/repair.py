"""Exact parameter counting and repair of genomes that exceed the parameter cap."""

from __future__ import annotations

import functools

import numpy as np
import torch

from dalp_moo.space.genome import Architecture, SearchSpace


@functools.lru_cache(maxsize=65536)
def _count(arch: Architecture, in_channels: int, num_classes: int) -> int:
    from dalp_moo.model.unet import build_model

    with torch.device("meta"):
        model = build_model(arch, in_channels, num_classes)
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def count_params(arch: Architecture, in_channels: int, num_classes: int = 2) -> int:
    """Exact trainable parameter count of ``arch`` (parameters), equal to torch's count."""
    return _count(arch, in_channels, num_classes)


def repair(space: SearchSpace, genome: np.ndarray, in_channels: int) -> np.ndarray:
    """Clip ``genome`` into bounds and shrink it until the network fits ``space.cfg.param_cap``.

    Deterministic: repeatedly lowers the largest channel coefficient (ties: the deepest unit),
    then MBConv expansions, then kernel sizes, and finally drops the deepest unit. Returns a canonical genome.
    """
    g = space.canonical(genome)
    cap = space.cfg.param_cap
    n_classes = space.cfg.num_classes
    while count_params(space.decode(g), in_channels, n_classes) > cap:
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
