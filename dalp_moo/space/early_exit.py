"""The ``early-exit`` search space: exit placement, head types, exit threshold and precisions on
the fixed CIFAR-style MobileNetV2 backbone (see :mod:`dalp_moo.model.mobilenetv2_ee`).

Genome layout (integer genes)::

    [exit_A .. exit_J,            10 placement bits: an exit after blocks 0..9 (K always exists)
     head_A .. head_J, head_K,    head type index per exit position (space.head_types)
     threshold,                   index of the softmax-confidence threshold
     backbone_bits, exit_bits]    indices into space.backbone_bits / space.exit_bits

Head genes of absent exits do not change the network and the threshold does not matter when
only the final exit exists: the canonical genome sets such genes to 0, and the candidate ID is a
hash of the canonical genome.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from dalp_moo.errors import ConfigError

EXIT_LETTERS = "ABCDEFGHIJK"  #: exit positions; K is the final exit
EARLY_EXITS = 10  #: optional exit positions A..J
HEAD_TYPES = ("linear", "mlp")  #: exit head types (see dalp_moo.model.mobilenetv2_ee.ExitHead)
PRECISIONS: tuple[int, ...] = (4, 8, 16, 32)  #: supported bit widths of backbone and exits
INTEGER_BITS: tuple[int, ...] = (4, 8)  #: bit widths trained with integer QAT
N_POSITIONS = EARLY_EXITS + 1  #: exit positions A..K
FINAL = EARLY_EXITS  #: position index of the final exit K


def _check(cond: bool, key: str, message: str) -> None:
    if not cond:
        raise ConfigError(f"config value space.{key}: {message}")


def parse_list(text: str, key: str, kind: type = int) -> tuple:
    """``"4,8,16"`` -> ``(4, 8, 16)`` (a :class:`ConfigError` names ``key`` on bad input)."""
    try:
        values = tuple(kind(v.strip()) for v in text.split(",") if v.strip())
    except ValueError:
        raise ConfigError(f"config value space.{key}: {text!r} is not a comma-separated list") from None
    _check(bool(values), key, "must not be empty")
    _check(len(set(values)) == len(values), key, f"{text!r} repeats a value")
    return values


@dataclass(frozen=True)
class EarlyExitSpaceConfig:
    """The early-exit search space (the ``[space]`` section of the early-exit application)."""

    width: float = 1.0  #: backbone width multiplier (channels rounded to multiples of 8)
    backbone_bits: str = "4,8,16,32"  #: allowed backbone precisions (bits)
    exit_bits: str = "4,8,16,32"  #: allowed exit-head precisions (bits)
    head_types: str = "linear,mlp"  #: allowed head types
    threshold_min: float = 0.50  #: lowest softmax-confidence threshold
    threshold_max: float = 0.99  #: highest threshold
    threshold_step: float = 0.01  #: threshold resolution
    min_exits: int = 2  #: fewest exits, the final one included
    max_exits: int = N_POSITIONS  #: most exits, the final one included

    def __post_init__(self) -> None:
        _check(0.1 <= self.width <= 2.0, "width", f"must be in 0.1..2.0, got {self.width}")
        for key in ("backbone_bits", "exit_bits"):
            for b in parse_list(getattr(self, key), key):
                _check(b in PRECISIONS, key, f"{b} is not one of {', '.join(map(str, PRECISIONS))}")
        for h in parse_list(self.head_types, "head_types", str):
            _check(h in HEAD_TYPES, "head_types", f"{h!r} is not one of {', '.join(HEAD_TYPES)}")
        _check(0.0 < self.threshold_min <= self.threshold_max < 1.0, "threshold_min/threshold_max",
               f"need 0 < min <= max < 1, got {self.threshold_min}..{self.threshold_max}")
        _check(0.0 < self.threshold_step <= 0.5, "threshold_step", "must be in (0, 0.5]")
        _check(1 <= self.min_exits <= self.max_exits <= N_POSITIONS, "min_exits/max_exits",
               f"need 1 <= min_exits <= max_exits <= {N_POSITIONS}, got {self.min_exits}..{self.max_exits}")

    @property
    def backbone_choices(self) -> tuple[int, ...]:
        return parse_list(self.backbone_bits, "backbone_bits")

    @property
    def exit_choices(self) -> tuple[int, ...]:
        return parse_list(self.exit_bits, "exit_bits")

    @property
    def head_choices(self) -> tuple[str, ...]:
        return parse_list(self.head_types, "head_types", str)

    @property
    def thresholds(self) -> tuple[float, ...]:
        """The searched threshold values, ascending."""
        n = int(round((self.threshold_max - self.threshold_min) / self.threshold_step)) + 1
        return tuple(round(min(self.threshold_min + i * self.threshold_step, self.threshold_max), 6)
                     for i in range(n))


@dataclass(frozen=True)
class EarlyExitArchitecture:
    """A decoded early-exit candidate.

    ``positions``: exit position indices (0 = A ... 10 = K), increasing, ending with 10;
    ``heads``: head type per exit; ``threshold``: softmax confidence needed to leave early;
    ``backbone_bits`` / ``exit_bits``: precisions (bits).
    """

    positions: tuple[int, ...]
    heads: tuple[str, ...]
    threshold: float
    backbone_bits: int
    exit_bits: int
    genome: tuple[int, ...]  #: canonical genome

    @property
    def arch_id(self) -> str:
        """Canonical candidate ID: 12 hex digits of a hash of the canonical genome."""
        return hashlib.sha1(("ee:" + ",".join(map(str, self.genome))).encode()).hexdigest()[:12]

    @property
    def letters(self) -> str:
        """Exit letters, e.g. ``"AEFHK"``."""
        return "".join(EXIT_LETTERS[p] for p in self.positions)

    @property
    def n_exits(self) -> int:
        return len(self.positions)

    @property
    def precision(self) -> str:
        """``"backbone/exits"`` bits, e.g. ``"8/8"``."""
        return f"{self.backbone_bits}/{self.exit_bits}"

    def describe(self) -> str:
        """E.g. ``exits A:linear E:mlp K:linear | t=0.90 | 8/8 bit``."""
        exits = " ".join(f"{EXIT_LETTERS[p]}:{h}" for p, h in zip(self.positions, self.heads, strict=True))
        return f"exits {exits} | t={self.threshold:.2f} | {self.precision} bit"


class EarlyExitSpace:
    """Genome bounds, decoding, canonicalisation, sampling and repair (picklable)."""

    def __init__(self, cfg: EarlyExitSpaceConfig | None = None) -> None:
        self.cfg = cfg or EarlyExitSpaceConfig()
        self.heads = self.cfg.head_choices
        self.thresholds = self.cfg.thresholds
        self.backbone_bits = self.cfg.backbone_choices
        self.exit_bits = self.cfg.exit_choices
        upper = [1] * EARLY_EXITS + [len(self.heads) - 1] * N_POSITIONS
        upper += [len(self.thresholds) - 1, len(self.backbone_bits) - 1, len(self.exit_bits) - 1]
        self.xl = np.zeros(len(upper), dtype=int)
        self.xu = np.array(upper, dtype=int)
        self.head_gene0 = EARLY_EXITS
        self.threshold_gene = EARLY_EXITS + N_POSITIONS
        self.backbone_gene = self.threshold_gene + 1
        self.exit_gene = self.threshold_gene + 2

    @property
    def n_var(self) -> int:
        """Genome length (24)."""
        return len(self.xu)

    def gene_names(self) -> list[str]:
        """Name of every gene position, e.g. ``exit_C``, ``head_K``."""
        return ([f"exit_{c}" for c in EXIT_LETTERS[:EARLY_EXITS]] + [f"head_{c}" for c in EXIT_LETTERS]
                + ["threshold", "backbone_bits", "exit_bits"])

    def clip(self, genome: np.ndarray) -> np.ndarray:
        """Round and clip a genome into the bounds."""
        g = np.asarray(genome, dtype=float).reshape(-1)
        if g.size != self.n_var:
            raise ValueError(f"early-exit genome needs {self.n_var} genes, got {g.size}")
        return np.clip(np.rint(g), self.xl, self.xu).astype(int)

    def canonical(self, genome: np.ndarray) -> np.ndarray:
        """Genome with the genes that do not change the candidate set to 0."""
        g = self.clip(genome)
        for i in range(EARLY_EXITS):
            if g[i] == 0:
                g[self.head_gene0 + i] = 0
        if not g[:EARLY_EXITS].any():
            g[self.threshold_gene] = 0
        return g

    def canonical_batch(self, X: np.ndarray) -> np.ndarray:
        """:meth:`canonical` for every row of ``X``."""
        return np.array([self.canonical(x) for x in np.atleast_2d(X)])

    def decode(self, genome: np.ndarray) -> EarlyExitArchitecture:
        """Genome -> :class:`EarlyExitArchitecture` (genes are clipped into bounds first)."""
        g = self.canonical(genome)
        positions = tuple(int(i) for i in range(EARLY_EXITS) if g[i]) + (FINAL,)
        heads = tuple(self.heads[g[self.head_gene0 + p]] for p in positions)
        return EarlyExitArchitecture(
            positions=positions, heads=heads, threshold=self.thresholds[g[self.threshold_gene]],
            backbone_bits=self.backbone_bits[g[self.backbone_gene]],
            exit_bits=self.exit_bits[g[self.exit_gene]], genome=tuple(int(v) for v in g))

    def encode(self, letters: str, heads: str | tuple[str, ...] = "linear", threshold: float = 0.9,
               backbone_bits: int = 8, exit_bits: int = 8) -> np.ndarray:
        """The genome of exits ``letters`` (e.g. ``"DFIK"``; K is added), one head type or one per
        exit, and the nearest allowed threshold. Unknown choices raise :class:`ConfigError`."""
        letters = letters.upper()
        if "K" not in letters:
            letters += "K"
        if any(c not in EXIT_LETTERS for c in letters):
            raise ConfigError(f"exit letters {letters!r}: use A..K")
        positions = sorted({EXIT_LETTERS.index(c) for c in letters})
        head_list = (heads,) * len(positions) if isinstance(heads, str) else tuple(heads)
        if len(head_list) != len(positions):
            raise ConfigError(f"{len(head_list)} head types for {len(positions)} exits")
        for name, value, choices in (("head type", None, self.heads), ("backbone bits", backbone_bits,
                                     self.backbone_bits), ("exit bits", exit_bits, self.exit_bits)):
            for v in (head_list if value is None else (value,)):
                if v not in choices:
                    raise ConfigError(f"{name} {v!r} is not allowed by this space ({choices})")
        g = np.zeros(self.n_var, dtype=int)
        for p, h in zip(positions, head_list, strict=True):
            if p < EARLY_EXITS:
                g[p] = 1
            g[self.head_gene0 + p] = self.heads.index(h)
        g[self.threshold_gene] = int(np.argmin([abs(t - threshold) for t in self.thresholds]))
        g[self.backbone_gene] = self.backbone_bits.index(backbone_bits)
        g[self.exit_gene] = self.exit_bits.index(exit_bits)
        return self.canonical(g)

    def repair(self, genome: np.ndarray) -> np.ndarray:
        """Clip, then bring the number of exits into ``min_exits..max_exits``: surplus early exits
        are removed, and missing ones added, at evenly spaced positions (deterministic)."""
        g = self.clip(genome)
        present = [i for i in range(EARLY_EXITS) if g[i]]
        lo, hi = self.cfg.min_exits - 1, self.cfg.max_exits - 1  # early exits
        if len(present) > hi:
            keep = {present[int(round(j))] for j in np.linspace(0, len(present) - 1, hi)} if hi else set()
            for i in present:
                if i not in keep:
                    g[i] = 0
        elif len(present) < lo:
            absent = [i for i in range(EARLY_EXITS) if not g[i]]
            need = lo - len(present)
            for j in np.linspace(0, len(absent) - 1, need + 2)[1:-1] if need < len(absent) else range(len(absent)):
                g[absent[int(round(j))]] = 1
            # evenly spaced picks may collide after rounding: top up from the start
            for i in absent:
                if int(g[:EARLY_EXITS].sum()) >= lo:
                    break
                g[i] = 1
        return g

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """``n`` uniformly random genomes, repaired."""
        X = rng.integers(self.xl, self.xu + 1, size=(n, self.n_var))
        return np.array([self.repair(x) for x in X])

    def static_metrics(self, genome: np.ndarray) -> dict[str, object]:
        """Metrics known without training: exits, head types, threshold, precisions."""
        arch = self.decode(genome)
        return {"exits": arch.letters, "n_exits": arch.n_exits, "threshold": arch.threshold,
                "backbone_bits": arch.backbone_bits, "exit_bits": arch.exit_bits,
                "heads": ",".join(arch.heads)}
