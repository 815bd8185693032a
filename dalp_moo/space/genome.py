"""The U-Net encoder search space as a fixed-length integer genome.

Genome layout (each gene is an index into its choice list)::

    [n_units, unit_0 genes..., unit_1 genes..., ..., unit_{max_units-1} genes...]

with per-unit genes ``block, activation, kernel, channels, expansion, reduction, pooling``.
Unit ``i`` outputs ``channel_coefficient * (i + 1)`` channels (linear multiplicative growth).
Genes of units beyond ``n_units``, and genes a block type does not use (expansion outside MBConv,
reduction outside ResNet/SE/DenseNet), do not change the network; the canonical genome sets them
to 0 and the architecture ID is a hash of the canonical genome.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from dalp_moo.config import SpaceConfig

BLOCKS = ("conv_act", "conv_bn_act", "se_conv", "mbconv", "mbconv_res", "resnet", "densenet")
ACTIVATIONS = ("relu", "relu6", "gelu")
KERNELS = (3, 5)
CHANNEL_COEFFICIENTS = (4, 5, 6, 7, 8, 9, 10, 11, 12)
EXPANSIONS = (3, 4, 5, 6)
REDUCTIONS = (2, 3, 4)
POOLINGS = ("max", "avg")

UNIT_GENES: tuple[tuple[str, tuple], ...] = (
    ("block", BLOCKS),
    ("activation", ACTIVATIONS),
    ("kernel", KERNELS),
    ("channels", CHANNEL_COEFFICIENTS),
    ("expansion", EXPANSIONS),
    ("reduction", REDUCTIONS),
    ("pooling", POOLINGS),
)
GENES_PER_UNIT = len(UNIT_GENES)
_GENE_INDEX = {name: i for i, (name, _) in enumerate(UNIT_GENES)}
USES_EXPANSION = {"mbconv", "mbconv_res"}
USES_REDUCTION = {"resnet", "se_conv", "densenet"}


@dataclass(frozen=True)
class UnitSpec:
    """One encoder unit: a conv block then a 2x2 pooling (halves the resolution)."""

    block: str
    activation: str
    kernel: int
    out_channels: int
    expansion: int  #: MBConv expansion ratio (1 when unused)
    reduction: int  #: ResNet bottleneck / SE / DenseNet growth reduction (1 when unused)
    pooling: str

    def label(self) -> str:
        extra = ""
        if self.block in USES_EXPANSION:
            extra = f"/e{self.expansion}"
        elif self.block in USES_REDUCTION:
            extra = f"/r{self.reduction}"
        return f"{self.block}/{self.activation}/k{self.kernel}/c{self.out_channels}{extra}/{self.pooling}"


@dataclass(frozen=True)
class Architecture:
    """A decoded candidate: its encoder units (the decoder is derived from them)."""

    units: tuple[UnitSpec, ...]
    genome: tuple[int, ...]  #: canonical genome

    @property
    def arch_id(self) -> str:
        """Canonical architecture ID: 12 hex digits of a hash of the canonical genome."""
        return hashlib.sha1(",".join(map(str, self.genome)).encode()).hexdigest()[:12]

    def describe(self) -> str:
        """Human-readable summary, one unit per ``|``."""
        return " | ".join(u.label() for u in self.units)


class SearchSpace:
    """Genome bounds, decoding, canonicalisation, sampling and repair for a :class:`SpaceConfig`
    (a :class:`~dalp_moo.application.SearchSpaceProtocol`).

    ``count`` (``Architecture -> parameters``, e.g. :class:`dalp_moo.model.ParamCounter`) and
    ``param_cap`` (parameters, 0 = none) drive :meth:`repair` and :meth:`static_metrics`; without
    them repair only clips and canonicalises.
    """

    def __init__(self, cfg: SpaceConfig, param_cap: int = 0,
                 count: Callable[[Architecture], int] | None = None) -> None:
        self.cfg = cfg
        self.param_cap = int(param_cap)
        self.count = count
        self.unit_counts = tuple(range(cfg.min_units, cfg.max_units + 1))
        upper = [len(self.unit_counts) - 1]
        for _ in range(cfg.max_units):
            upper.extend(len(choices) - 1 for _, choices in UNIT_GENES)
        self.xl = np.zeros(len(upper), dtype=int)
        self.xu = np.array(upper, dtype=int)

    def repair(self, genome: Any) -> np.ndarray:
        """Clip, canonicalise and shrink ``genome`` to the parameter cap (see
        :func:`dalp_moo.space.repair.fit_cap`)."""
        from dalp_moo.space.repair import fit_cap

        if self.count is None or self.param_cap <= 0:
            return self.canonical(genome)
        return fit_cap(self, genome, self.count, self.param_cap)

    def static_metrics(self, genome: Any) -> dict[str, int]:
        """Metrics known without training: ``{"params": parameters}`` (empty without a counter)."""
        if self.count is None:
            return {}
        return {"params": int(self.count(self.decode(genome)))}

    @property
    def n_var(self) -> int:
        """Genome length."""
        return len(self.xu)

    def gene_names(self) -> list[str]:
        """Name of every gene position, e.g. ``u2.kernel``."""
        names = ["n_units"]
        for i in range(self.cfg.max_units):
            names.extend(f"u{i}.{name}" for name, _ in UNIT_GENES)
        return names

    def clip(self, genome: np.ndarray) -> np.ndarray:
        """Round and clip a genome into the bounds."""
        return np.clip(np.rint(np.asarray(genome, dtype=float)), self.xl, self.xu).astype(int)

    def n_units(self, genome: np.ndarray) -> int:
        return self.unit_counts[int(genome[0])]

    def canonical(self, genome: np.ndarray) -> np.ndarray:
        """Genome with every gene that does not change the network set to 0."""
        g = self.clip(genome)
        n = self.n_units(g)
        for i in range(self.cfg.max_units):
            base = 1 + i * GENES_PER_UNIT
            if i >= n:
                g[base:base + GENES_PER_UNIT] = 0
                continue
            block = BLOCKS[g[base + _GENE_INDEX["block"]]]
            if block not in USES_EXPANSION:
                g[base + _GENE_INDEX["expansion"]] = 0
            if block not in USES_REDUCTION:
                g[base + _GENE_INDEX["reduction"]] = 0
        return g

    def canonical_batch(self, X: np.ndarray) -> np.ndarray:
        """:meth:`canonical` for every row of ``X``."""
        return np.array([self.canonical(x) for x in np.atleast_2d(X)])

    def decode(self, genome: np.ndarray) -> Architecture:
        """Genome -> :class:`Architecture` (genes are clipped into bounds first)."""
        g = self.canonical(genome)
        units = []
        for i in range(self.n_units(g)):
            base = 1 + i * GENES_PER_UNIT
            values = {name: choices[g[base + j]] for j, (name, choices) in enumerate(UNIT_GENES)}
            block = values["block"]
            units.append(UnitSpec(
                block=block,
                activation=values["activation"],
                kernel=values["kernel"],
                out_channels=values["channels"] * (i + 1),
                expansion=values["expansion"] if block in USES_EXPANSION else 1,
                reduction=values["reduction"] if block in USES_REDUCTION else 1,
                pooling=values["pooling"],
            ))
        return Architecture(units=tuple(units), genome=tuple(int(v) for v in g))

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """``n`` uniformly random genomes (not repaired)."""
        return rng.integers(self.xl, self.xu + 1, size=(n, self.n_var))

    def channel_gene(self, unit: int) -> int:
        """Position of unit ``unit``'s channel-coefficient gene."""
        return 1 + unit * GENES_PER_UNIT + _GENE_INDEX["channels"]

    def expansion_gene(self, unit: int) -> int:
        """Position of unit ``unit``'s MBConv expansion gene."""
        return 1 + unit * GENES_PER_UNIT + _GENE_INDEX["expansion"]

    def kernel_gene(self, unit: int) -> int:
        """Position of unit ``unit``'s kernel-size gene."""
        return 1 + unit * GENES_PER_UNIT + _GENE_INDEX["kernel"]
