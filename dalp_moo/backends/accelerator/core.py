"""Per-layer cost of one compute core: weight tiling, ZigZag queries and their caches.

A compute layer whose weights fit in the weight SRAM is one ZigZag query. A larger layer is
split into weight tiles of at most half the weight SRAM (so that the next tile can be loaded
while the current one computes): first over output channels (depthwise/grouped: over groups),
and, when one output channel's weights alone exceed half the SRAM, also over input channels; the
partial sums of such a split reduction are written (at partial-sum precision, costed by ZigZag)
and read back (costed here) between parts. Tiles of equal shape are one query. Results are
cached per query in memory and on disk (key: layer/tile shape, precision, core description,
mapping-search settings, ZigZag and model versions).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from dalp_moo.backends.accelerator import zigzag_core
from dalp_moo.backends.accelerator.cache import DiskCache
from dalp_moo.backends.accelerator.config import AcceleratorConfig
from dalp_moo.backends.accelerator.workload import COMPUTE_OPS, LayerSpec
from dalp_moo.backends.accelerator.zigzag_core import CoreQuery, CoreResult
from dalp_moo.errors import BackendError
from dalp_moo.log import logger


@dataclass(frozen=True)
class Tile:
    """One weight tile of a layer: its weights (bits), ZigZag result and extra partial-sum costs."""

    query: CoreQuery
    result: CoreResult
    weight_bits: int
    psum_read_pj: float = 0.0  #: reading back partial sums of a split reduction (pJ)
    psum_read_cycles: float = 0.0

    @property
    def energy_pj(self) -> float:
        return self.result.energy_pj + self.psum_read_pj

    @property
    def latency_cycles(self) -> float:
        return self.result.latency_cycles + self.psum_read_cycles


@dataclass(frozen=True)
class CoreLayerCost:
    """Cost of one compute layer on one core, weights already in the weight SRAM."""

    spec: LayerSpec
    tiles: tuple[Tile, ...]
    array_macs: int

    @property
    def energy_pj(self) -> float:
        """MAC, register-file and SRAM energy of all tiles (pJ)."""
        return sum(t.energy_pj for t in self.tiles)

    @property
    def latency_cycles(self) -> float:
        """Compute latency of all tiles one after another (cycles), weight loading excluded."""
        return sum(t.latency_cycles for t in self.tiles)

    @property
    def ideal_cycles(self) -> float:
        return self.spec.macs / self.array_macs

    @property
    def utilisation(self) -> float:
        """MACs / (array MACs x latency)."""
        lat = self.latency_cycles
        return self.ideal_cycles / lat if lat > 0 else 0.0

    @property
    def spatial_utilisation(self) -> float:
        """MAC-weighted spatial utilisation of the tiles' unrollings."""
        macs = sum(t.query.macs for t in self.tiles)
        return sum(t.result.spatial_utilisation * t.query.macs for t in self.tiles) / macs if macs else 0.0


def _query(spec: LayerSpec, kind: str, k: int, c: int, g: int, o_bits: int) -> CoreQuery:
    if spec.op == "fc":
        return CoreQuery(kind, k, c, g, spec.ox, spec.oy, 1, 1, 1, spec.ox, spec.oy, spec.w_bits, spec.a_bits, o_bits)
    return CoreQuery(kind, k, c, g, spec.ox, spec.oy, spec.fx, spec.fy, spec.stride, spec.in_x, spec.in_y,
                     spec.w_bits, spec.a_bits, o_bits)


def _split(total: int, size: int) -> list[int]:
    """``total`` in parts of ``size`` (the last one smaller)."""
    n = math.ceil(total / size)
    return [size] * (n - 1) + [total - size * (n - 1)]


def plan_tiles(spec: LayerSpec, cfg: AcceleratorConfig) -> list[tuple[CoreQuery, int, bool]]:
    """Weight tiles of a compute layer in execution order: (query, weight bits, reads partial sums)."""
    if spec.op not in COMPUTE_OPS:
        raise BackendError(f"layer {spec.name}: {spec.op} does not run on a compute core")
    d1 = cfg.dims[0]
    cap = cfg.weight_sram_bits
    if spec.op == "dwconv":
        kind, k, c, g = "depthwise", 1, 1, spec.k
    else:
        kind, g = "dense", spec.groups
        k, c = spec.k // g, spec.c // g
    whole = _query(spec, kind, k, c, g, spec.a_bits)
    if whole.weight_bits <= cap:
        return [(whole, whole.weight_bits, False)]
    budget = cap // 2
    per_unit = whole.weight_bits // (g if g > 1 else k)  # one group (channel) or one output channel
    if g > 1:  # depthwise or grouped: tile over groups
        if per_unit > budget:
            raise BackendError(f"layer {spec.name}: one group's weights exceed half the weight SRAM")
        step = budget // per_unit
        step = step // d1 * d1 if step >= d1 else step
        out = []
        for part in _split(g, step):
            q = _query(spec, kind, k, c, part, spec.a_bits)
            out.append((q, q.weight_bits, False))
        return out
    per_in = spec.w_bits * (spec.fx * spec.fy if spec.op != "fc" else 1)  # one input channel of one output
    if per_unit <= budget:
        c_parts = [c]
        step = budget // per_unit
    else:
        c_step = max(1, budget // per_in)
        c_parts = _split(c, c_step)
        step = 1 if budget // (c_step * per_in) < 1 else budget // (c_step * per_in)
    step = step // d1 * d1 if step >= d1 else step
    out = []
    for kk in _split(k, step):
        for j, cc in enumerate(c_parts):
            last = j == len(c_parts) - 1
            q = _query(spec, kind, kk, cc, 1, spec.a_bits if last else whole.psum_bits)
            out.append((q, q.weight_bits, j > 0))
    return out


class CoreModel:
    """Per-layer cost of one compute core via ZigZag, cached in memory and on disk."""

    def __init__(self, cfg: AcceleratorConfig, cache: DiskCache | None = None) -> None:
        self.cfg = cfg
        self.cache = cache if cache is not None else DiskCache(cfg.cache_dir or None)
        self._memo: dict[CoreQuery, CoreResult] = {}
        self.zigzag_calls = 0  #: ZigZag runs made by this model (cache misses)
        self.zigzag_seconds = 0.0

    def query(self, q: CoreQuery) -> CoreResult:
        """ZigZag's result for ``q``: from memory, the disk cache, or a ZigZag run."""
        hit = self._memo.get(q)
        if hit is not None:
            return hit
        key = zigzag_core.query_payload(self.cfg, q)
        stored = self.cache.get("zigzag", key)
        if stored is not None:
            try:
                result = CoreResult.from_dict(stored)
            except TypeError:
                result = None
            if result is not None:
                self._memo[q] = result
                return result
        import time

        t0 = time.perf_counter()
        result = zigzag_core.run_query(self.cfg, q)
        dt = time.perf_counter() - t0
        self.zigzag_calls += 1
        self.zigzag_seconds += dt
        logger.debug("ZigZag %s k=%d c=%d g=%d %dx%d %dx%d %d/%d bit: %.0f pJ %.0f cycles (%.2f s)", q.kind, q.k,
                     q.c, q.g, q.ox, q.oy, q.fx, q.fy, q.w_bits, q.a_bits, result.energy_pj, result.latency_cycles, dt)
        self.cache.put("zigzag", key, result.to_dict())
        self._memo[q] = result
        return result

    def layer_cost(self, spec: LayerSpec) -> CoreLayerCost:
        """Energy and compute latency of a conv/dwconv/fc layer on one core (weights in place)."""
        tiles = []
        cfg = self.cfg
        for q, wbits, reads_psum in plan_tiles(spec, cfg):
            result = self.query(q)
            extra_pj = extra_cycles = 0.0
            if reads_psum:
                bits = q.g * q.k * q.ox * q.oy * q.psum_bits
                words = math.ceil(bits / cfg.act_sram_port_bits)
                extra_pj, extra_cycles = words * cfg.act_sram_read_pj, float(words)
            tiles.append(Tile(q, result, wbits, extra_pj, extra_cycles))
        return CoreLayerCost(spec, tuple(tiles), cfg.array_macs)
