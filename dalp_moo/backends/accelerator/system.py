"""The multi-core accelerator around the ZigZag-costed compute cores, costed by this project.

What is modelled (defaults: the Edge-TPU-like quad core of the early-exit paper; see
:class:`AcceleratorConfig`):

- **Compute cores** (4, in a 2x2 mesh) run convolutions, depthwise convolutions and fully
  connected layers; a layer's energy and compute latency on a core come from ZigZag
  (:mod:`.core`), with the layer's weights in the core's 32 KiB weight SRAM and its input and
  output activations in the core's 2 MiB activation SRAM.
- **Weights** do not stay on chip between inferences (1.4 MB at 8 bit for the paper's
  MobileNetV2 against 4 x 32 KiB of weight SRAM): every inference reads each layer's weights
  from DRAM (``dram_read_pj`` per 64-bit access) and writes them into the weight SRAM
  (``weight_sram_write_pj`` per port-wide access) over a NoC link (``noc_bits`` bit/cycle); the
  DRAM port (``dram_port_bits`` bit/cycle) serves ``dram_port_bits // noc_bits`` such streams at
  once. A load may start while the core still computes, as long as the weight SRAM holds the
  weights of the tiles not yet finished plus the new ones (layers larger than the SRAM are
  split into half-SRAM tiles, so tiles are double-buffered).
- **Activations** stay in the activation SRAM of the core that produced them. When the next
  layer runs elsewhere, the tensor is moved over the NoC: ``ceil(bits / noc_bits)`` cycles plus
  ``noc_hop_cycles`` per hop (Manhattan distance between compute cores; the pooling core, the
  SIMD core and DRAM are one hop from every compute core), an SRAM read at a compute-core source
  and an SRAM write at a compute-core destination, and ``noc_pj_per_bit`` per bit and hop
  (0: not counted, as in the paper). The network input is read from DRAM. Activations never
  exceed the 2 MiB SRAM for the networks of interest (a layer whose input plus output does is
  reported with a warning; its spill to DRAM is not modelled).
- **Pooling core**: ``pool_units`` operations per cycle (3x3), ``pool_pj_per_op``; **SIMD
  core**: ``simd_lanes`` additions per cycle, ``simd_pj_per_op``. An addition reads two operand
  tensors over its input link (the residual operand is assumed on the compute core of the
  preceding layer; transfers one after the other).
- **Execution**: batch 1, layer by layer in trace order, each layer waiting for its input (the
  previous backbone layer for backbone layers, the previous layer for exit-head layers).
  Stages (exit k: the backbone since exit k-1 plus head k) run one after another: a sample
  decides at exit k whether to continue, so stage k+1 starts when stage k has finished and
  loads no weights before (no speculation); its latency and energy are its own.
- **Allocation**: the compute core of every conv/dwconv/fc layer is chosen per candidate by a
  configurable inner search (``allocation``): greedy list scheduling (each layer on the core
  where it finishes first), then a small pymoo NSGA-II over allocations on (energy, latency)
  seeded with the greedy, round-robin and single-core allocations; the allocation minimising
  ``allocation_objective`` over everything evaluated is kept. Results are cached per candidate.

Not modelled: overlap of the layers of one stage across cores (layer fusion), contention of NoC
links other than the DRAM port, DRAM spills of activations, writing logits out, control and
static/leakage energy. All figures are modelled (``emulated = True``), not measured.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from dalp_moo.backends.accelerator.cache import DiskCache
from dalp_moo.backends.accelerator.config import AcceleratorConfig
from dalp_moo.backends.accelerator.core import CoreLayerCost, CoreModel
from dalp_moo.backends.accelerator.workload import COMPUTE_OPS, LayerSpec
from dalp_moo.backends.accelerator.zigzag_core import MODEL_VERSION, zigzag_version
from dalp_moo.errors import BackendError
from dalp_moo.log import logger

#: version of the system model (enters the allocation cache key and the reports)
SYSTEM_VERSION = "1"
#: allocations kept in memory per model (least recently used dropped; the disk cache keeps all)
ALLOCATION_MEMO = 4096

__all__ = ["AcceleratorConfig", "AcceleratorModel", "LayerCost", "StageCost", "SystemCost", "SYSTEM_VERSION"]


@dataclass(frozen=True)
class LayerCost:
    """One layer in the schedule of its stage (cycles from the start of the stage; pJ)."""

    name: str
    op: str
    stage: int
    branch: str
    location: str  #: 'core0'..'core3', 'pool' or 'simd'
    energy_pj: float  #: everything below summed
    compute_energy_pj: float  #: ZigZag core energy, or pooling/SIMD operations
    dram_energy_pj: float  #: weight (and network input) reads from DRAM
    weight_fill_energy_pj: float  #: writing loaded weights into the weight SRAM
    transfer_energy_pj: float  #: activation SRAM reads/writes of NoC transfers
    noc_energy_pj: float
    start_cycle: float  #: compute start
    end_cycle: float  #: compute end (output ready)
    latency_cycles: float  #: increase of the stage's critical path caused by this layer
    compute_cycles: float
    weight_load_cycles: float  #: time of its weight loads (possibly overlapped)
    transfer_cycles: float  #: input transfer time
    macs: int
    utilisation: float  #: MACs / (array MACs x compute cycles); pool/add: ops / (units x cycles)
    tiles: int = 1


@dataclass(frozen=True)
class StageCost:
    """Cost of one exit stage: the backbone since the previous exit plus this exit's head."""

    stage: int
    energy_pj: float
    latency_cycles: float
    latency_ms: float
    energy_uj: float
    layers: int


@dataclass(frozen=True)
class SystemCost:
    """Modelled cost of one inference of a candidate on the multi-core accelerator."""

    layers: tuple[LayerCost, ...]
    stages: tuple[StageCost, ...]
    energy_pj: float  #: all stages (a sample that reaches the last exit)
    latency_cycles: float
    latency_ms: float
    energy_uj: float
    allocation: tuple[int, ...]  #: compute core of each conv/dwconv/fc layer, in order
    allocation_method: str
    clock_mhz: float
    emulated: bool = True  #: a model of hardware, not a measurement
    method: str = "modelled"
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def stage_energy_pj(self) -> tuple[float, ...]:
        return tuple(s.energy_pj for s in self.stages)

    @property
    def stage_latency_cycles(self) -> tuple[float, ...]:
        return tuple(s.latency_cycles for s in self.stages)

    @property
    def stage_latency_ms(self) -> tuple[float, ...]:
        return tuple(s.latency_ms for s in self.stages)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# -- the schedule --------------------------------------------------------------------------------
@dataclass
class _Plan:
    """Per-candidate data the scheduler needs (costs looked up once)."""

    specs: list[LayerSpec]
    core: dict[int, CoreLayerCost]  # layer index -> core cost (compute layers)
    compute_index: list[int]  # layer indices of the compute layers (allocation genes)
    # per layer, precomputed: ((weight bits, compute cycles) per tile), energy pJ, cycles, utilisation
    tiles: list[tuple[tuple[int, float], ...]] = field(default_factory=list)
    op_energy: list[float] = field(default_factory=list)
    op_cycles: list[float] = field(default_factory=list)
    op_util: list[float] = field(default_factory=list)

    def __post_init__(self) -> None:
        for i in range(len(self.specs)):
            lc = self.core.get(i)
            if lc is not None:
                self.tiles.append(tuple((t.weight_bits, t.latency_cycles) for t in lc.tiles))
                self.op_energy.append(lc.energy_pj)
                self.op_cycles.append(lc.latency_cycles)
                self.op_util.append(lc.utilisation)
            else:
                self.tiles.append(())
                self.op_energy.append(0.0)
                self.op_cycles.append(0.0)
                self.op_util.append(0.0)


class _Schedule:
    """Event-by-event list schedule of a candidate's layers under one allocation."""

    def __init__(self, cfg: AcceleratorConfig, plan: _Plan, record: bool = False) -> None:
        self.cfg = cfg
        self.plan = plan
        self.record = record
        n = cfg.compute_cores
        self.pos = [(i // cfg.mesh_columns, i % cfg.mesh_columns) for i in range(n)]
        self.streams = max(1, cfg.dram_port_bits // cfg.noc_bits)
        self.load_bw = min(cfg.noc_bits, cfg.dram_port_bits)
        self.stage_id: int | None = None
        self.stage_energy: list[float] = []
        self.stage_latency: list[float] = []
        self.stage_layers: list[int] = []
        self.stage_ids: list[int] = []
        self.layers: list[LayerCost] = []
        self.backbone_loc = "dram"
        self.n_in_stage = 0
        self.i = 0  # next layer index
        self._reset_stage()

    def _reset_stage(self) -> None:
        n = self.cfg.compute_cores
        self.core_free = [0.0] * n
        self.load_free = [0.0] * n
        self.tiles: list[list[tuple[int, float]]] = [[] for _ in range(n)]
        self.dram = [0.0] * self.streams
        self.pool_free = 0.0
        self.simd_free = 0.0
        self.backbone_ready = 0.0
        self.prev_loc = self.backbone_loc
        self.prev_ready = 0.0
        self.t_end = 0.0
        self.energy = 0.0

    def clone(self) -> _Schedule:
        new = object.__new__(_Schedule)
        new.__dict__.update(self.__dict__)
        for key in ("core_free", "load_free", "dram", "stage_energy", "stage_latency", "stage_layers", "stage_ids"):
            setattr(new, key, list(getattr(self, key)))
        new.tiles = [list(t) for t in self.tiles]
        new.layers = list(self.layers) if self.record else []
        return new

    # topology
    def hops(self, a: str, b: str) -> int:
        if a == b:
            return 0
        ca, cb = a.startswith("core"), b.startswith("core")
        if ca and cb:
            (ya, xa), (yb, xb) = self.pos[int(a[4:])], self.pos[int(b[4:])]
            return abs(ya - yb) + abs(xa - xb)
        return 1 if ca or cb else 2

    def _finish_stage(self) -> None:
        if self.stage_id is None:
            return
        self.stage_ids.append(self.stage_id)
        self.stage_energy.append(self.energy)
        self.stage_latency.append(self.t_end)
        self.stage_layers.append(self.n_in_stage)

    def step(self, core: int | None) -> None:
        """Schedule the next layer (``core``: its compute core; ignored for pool/add)."""
        cfg = self.cfg
        spec = self.plan.specs[self.i]
        if spec.stage != self.stage_id:
            self._finish_stage()
            self.stage_id = spec.stage
            self.n_in_stage = 0
            self._reset_stage()
        if spec.op == "pool":
            loc = "pool"
        elif spec.op == "add":
            loc = "simd"
        else:
            if core is None or not 0 <= core < cfg.compute_cores:
                raise BackendError(f"layer {spec.name}: no valid compute core {core!r}")
            loc = f"core{core}"
        if spec.branch == "backbone":
            src, ready = self.backbone_loc, self.backbone_ready
        else:
            src, ready = self.prev_loc, self.prev_ready
        # input transfer
        n_in = 2 if spec.op == "add" else 1
        bits = spec.input_bits
        xfer = 0.0
        e_dram = e_fill = e_xfer = e_noc = 0.0
        if src != loc:
            hops = self.hops(src, loc)
            xfer = n_in * math.ceil(bits / cfg.noc_bits) + hops * cfg.noc_hop_cycles
            start = ready
            if src == "dram":
                s = self.dram.index(min(self.dram))
                start = max(ready, self.dram[s])
                self.dram[s] = start + xfer
                e_dram += n_in * math.ceil(bits / cfg.dram_port_bits) * cfg.dram_read_pj
            elif src.startswith("core"):
                e_xfer += n_in * math.ceil(bits / cfg.act_sram_port_bits) * cfg.act_sram_read_pj
            if loc.startswith("core"):
                e_xfer += n_in * math.ceil(bits / cfg.act_sram_port_bits) * cfg.act_sram_write_pj
            e_noc += n_in * bits * hops * cfg.noc_pj_per_bit
            ready = start + xfer
        # the operation
        load_cycles = 0.0
        n_tiles = 1
        if loc.startswith("core"):
            c = core
            assert c is not None
            tiles = self.plan.tiles[self.i]
            n_tiles = len(tiles)
            cap = cfg.weight_sram_bits
            hops = self.hops("dram", loc)
            end = start_c = 0.0
            dram = self.dram
            resident = self.tiles[c]
            for j, (wb, lat) in enumerate(tiles):
                free = 0.0
                acc = wb
                for tb, te in reversed(resident):
                    acc += tb
                    if acc > cap:
                        free = te
                        break
                s = dram.index(min(dram))
                ls = max(dram[s], self.load_free[c], free)
                ld = math.ceil(wb / self.load_bw) + hops * cfg.noc_hop_cycles
                le = ls + ld
                dram[s] = le
                self.load_free[c] = le
                load_cycles += ld
                e_dram += math.ceil(wb / cfg.dram_port_bits) * cfg.dram_read_pj
                e_fill += math.ceil(wb / cfg.weight_sram_port_bits) * cfg.weight_sram_write_pj
                e_noc += wb * hops * cfg.noc_pj_per_bit
                cs = max(le, ready if j == 0 else end, self.core_free[c])
                if j == 0:
                    start_c = cs
                end = cs + lat
                self.core_free[c] = end
                resident.append((wb, end))
            compute = self.plan.op_cycles[self.i]
            e_op = self.plan.op_energy[self.i]
            util = self.plan.op_util[self.i]
        elif loc == "pool":
            start_c = max(ready, self.pool_free)
            compute, end, e_op, util = _vector_op(spec.macs, cfg.pool_units, cfg.pool_pj_per_op, start_c)
            self.pool_free = end
        else:
            start_c = max(ready, self.simd_free)
            compute, end, e_op, util = _vector_op(spec.macs, cfg.simd_lanes, cfg.simd_pj_per_op, start_c)
            self.simd_free = end
        energy = e_op + e_dram + e_fill + e_xfer + e_noc
        self.energy += energy
        increment = max(0.0, end - self.t_end)
        self.t_end = max(self.t_end, end)
        self.prev_loc, self.prev_ready = loc, end
        if spec.branch == "backbone":
            self.backbone_loc, self.backbone_ready = loc, end
        self.n_in_stage += 1
        if self.record:
            self.layers.append(LayerCost(
                name=spec.name, op=spec.op, stage=spec.stage, branch=spec.branch, location=loc, energy_pj=energy,
                compute_energy_pj=e_op, dram_energy_pj=e_dram, weight_fill_energy_pj=e_fill,
                transfer_energy_pj=e_xfer, noc_energy_pj=e_noc, start_cycle=start_c, end_cycle=end,
                latency_cycles=increment, compute_cycles=compute, weight_load_cycles=load_cycles,
                transfer_cycles=xfer, macs=spec.macs, utilisation=util, tiles=n_tiles))
        self.i += 1

    def finish(self) -> tuple[float, float]:
        """Close the last stage; (total energy pJ, total latency cycles)."""
        self._finish_stage()
        self.stage_id = None
        return float(sum(self.stage_energy)), float(sum(self.stage_latency))


def _run(cfg: AcceleratorConfig, plan: _Plan, allocation: Sequence[int], record: bool = False) -> _Schedule:
    sched = _Schedule(cfg, plan, record)
    genes = dict(zip(plan.compute_index, allocation, strict=True))
    for i in range(len(plan.specs)):
        sched.step(int(genes[i]) if i in genes else None)
    sched.finish()
    return sched


def _score(energy: float, latency: float, objective: str) -> float:
    return {"edp": energy * latency, "latency": latency, "energy": energy}[objective]


def greedy_allocation(cfg: AcceleratorConfig, plan: _Plan) -> list[int]:
    """Each compute layer on the core where it finishes first (ties: less energy, lower index)."""
    sched = _Schedule(cfg, plan)
    genes = set(plan.compute_index)
    out: list[int] = []
    for i in range(len(plan.specs)):
        if i not in genes:
            sched.step(None)
            continue
        best: tuple[float, float, int] | None = None
        best_sched = None
        for c in range(cfg.compute_cores):
            trial = sched.clone()
            trial.step(c)
            key = (trial.prev_ready, trial.energy, c)
            if best is None or key < best:
                best, best_sched = key, trial
        assert best is not None and best_sched is not None
        out.append(best[2])
        sched = best_sched
    return out


def ga_allocation(cfg: AcceleratorConfig, plan: _Plan, seeds: list[list[int]]) -> tuple[list[int], int]:
    """Small NSGA-II (pymoo) over allocations on (energy, latency), seeded with ``seeds``.
    Returns the allocation minimising ``cfg.allocation_objective`` over all evaluated ones and
    the number of evaluations."""
    from pymoo.algorithms.moo.nsga2 import NSGA2
    from pymoo.core.problem import Problem
    from pymoo.operators.crossover.sbx import SBX
    from pymoo.operators.mutation.pm import PM
    from pymoo.operators.repair.rounding import RoundingRepair
    from pymoo.optimize import minimize

    n_var = len(plan.compute_index)
    best: dict[str, Any] = {"score": math.inf, "x": list(seeds[0]), "n": 0}

    def evaluate(x: Sequence[int]) -> tuple[float, float]:
        sched = _run(cfg, plan, x)
        e, lat = float(sum(sched.stage_energy)), float(sum(sched.stage_latency))
        s = _score(e, lat, cfg.allocation_objective)
        best["n"] += 1
        if s < best["score"]:  # strict: ties keep the earlier (seeds first)
            best["score"], best["x"] = s, [int(v) for v in x]
        return e, lat

    for s in seeds:
        evaluate(s)
    if n_var == 0 or cfg.compute_cores == 1:
        return best["x"], best["n"]

    class AllocationProblem(Problem):
        def __init__(self) -> None:
            super().__init__(n_var=n_var, n_obj=2, xl=0, xu=cfg.compute_cores - 1, vtype=int)

        def _evaluate(self, X: np.ndarray, out: dict[str, Any], *args: Any, **kwargs: Any) -> None:
            out["F"] = np.array([evaluate(np.round(x).astype(int)) for x in X], dtype=float)

    rng = np.random.default_rng(cfg.seed)
    pop = max(cfg.ga_population, len(seeds))
    X0 = np.array(seeds + [list(rng.integers(0, cfg.compute_cores, n_var)) for _ in range(pop - len(seeds))])
    algorithm = NSGA2(pop_size=pop, sampling=X0,
                      crossover=SBX(prob=0.9, eta=15, vtype=float, repair=RoundingRepair()),
                      mutation=PM(eta=20, vtype=float, repair=RoundingRepair()), eliminate_duplicates=True)
    minimize(AllocationProblem(), algorithm, ("n_gen", cfg.ga_generations), seed=cfg.seed, verbose=False)
    return best["x"], best["n"]


def _vector_op(ops: int, lanes: int, pj_per_op: float, start: float) -> tuple[float, float, float, float]:
    """A pooling or SIMD layer on its unit from cycle ``start``: ``(compute cycles, end, energy pJ,
    utilisation)``."""
    compute = float(math.ceil(ops / lanes))
    util = ops / (lanes * compute) if compute else 0.0
    return compute, start + compute, ops * pj_per_op, util


class AcceleratorModel:
    """Modelled cost of networks on the multi-core accelerator (see the module docstring).

    >>> model = AcceleratorModel(AcceleratorConfig(cache_dir="~/.cache/dalp_moo/accelerator"))
    >>> cost = model.cost(trace_layers(net, torch.zeros(1, 3, 32, 32)))
    >>> cost.stage_energy_pj, cost.stage_latency_cycles
    """

    name = "edgetpu-quad"
    version = f"{SYSTEM_VERSION}.{MODEL_VERSION}"

    def __init__(self, cfg: AcceleratorConfig | None = None) -> None:
        self.cfg = cfg or AcceleratorConfig()
        self.cache = DiskCache(self.cfg.cache_dir or None)
        self.core = CoreModel(self.cfg, self.cache)
        self._allocations: OrderedDict[Any, tuple[list[int], str]] = OrderedDict()  # LRU, per candidate
        self.allocation_seconds = 0.0
        self.allocation_searches = 0

    def info(self) -> dict[str, Any]:
        """Self-description (name, versions, settings); every figure is modelled."""
        return {"name": self.name, "version": self.version, "zigzag_version": zigzag_version(),
                "emulated": True, "method": "modelled", "config": self.cfg.to_dict()}

    def _plan(self, layers: Sequence[LayerSpec]) -> _Plan:
        specs = list(layers)
        if not specs:
            raise BackendError("no layers to cost")
        for a, b in zip(specs, specs[1:], strict=False):
            if b.stage < a.stage:
                raise BackendError(f"layer {b.name}: stage {b.stage} after stage {a.stage}; "
                                   "layers must be in execution order with non-decreasing stages")
        core: dict[int, CoreLayerCost] = {}
        index = []
        for i, s in enumerate(specs):
            if s.op in COMPUTE_OPS:
                core[i] = self.core.layer_cost(s)
                index.append(i)
            if s.op != "fc" and s.input_bits + s.output_bits > self.cfg.act_sram_bits:
                logger.warning("layer %s: input + output (%d bits) exceed the activation SRAM; DRAM spill not "
                               "modelled", s.name, s.input_bits + s.output_bits)
        return _Plan(specs, core, index)

    def _remember(self, key: Any, value: tuple[list[int], str]) -> None:
        self._allocations[key] = value
        while len(self._allocations) > ALLOCATION_MEMO:
            self._allocations.popitem(last=False)

    def allocate(self, layers: Sequence[LayerSpec]) -> tuple[list[int], str]:
        """The compute core of every conv/dwconv/fc layer (cached per candidate) and the method."""
        plan = self._plan(layers)
        return self._allocate(plan)

    def _allocate(self, plan: _Plan) -> tuple[list[int], str]:
        cfg = self.cfg
        key = {"system": SYSTEM_VERSION, "model": MODEL_VERSION, "config": cfg.system_hash(),
               "layers": [list(map(list, s.shape_key())) for s in plan.specs]}
        memo_key = (cfg.system_hash(), tuple(s.shape_key() for s in plan.specs))
        if memo_key in self._allocations:
            self._allocations.move_to_end(memo_key)
            return self._allocations[memo_key]
        stored = self.cache.get("allocation", key)
        if isinstance(stored, dict) and len(stored.get("allocation", [])) == len(plan.compute_index):
            result = ([int(v) for v in stored["allocation"]], str(stored["method"]))
            self._remember(memo_key, result)
            return result
        t0 = time.perf_counter()
        n = len(plan.compute_index)
        if cfg.allocation == "single" or cfg.compute_cores == 1:
            alloc, method = [0] * n, "single"
        elif cfg.allocation == "round-robin":
            alloc, method = [i % cfg.compute_cores for i in range(n)], "round-robin"
        else:
            greedy = greedy_allocation(cfg, plan)
            if cfg.allocation == "greedy":
                alloc, method = greedy, "greedy"
            else:
                seeds = [greedy, [i % cfg.compute_cores for i in range(n)], [0] * n]
                alloc, evaluations = ga_allocation(cfg, plan, seeds)
                method = f"ga ({evaluations} evaluations, greedy seed)"
        self.allocation_seconds += time.perf_counter() - t0
        self.allocation_searches += 1
        result = (alloc, method)
        self._remember(memo_key, result)
        self.cache.put("allocation", key, {"allocation": alloc, "method": method})
        return result

    def cost(self, layers: Sequence[LayerSpec], allocation: Sequence[int] | None = None) -> SystemCost:
        """Energy and latency of one inference, per layer and per exit stage.

        ``allocation`` fixes the compute core of each conv/dwconv/fc layer; by default it is
        optimised (``cfg.allocation``) and cached per candidate.
        """
        cfg = self.cfg
        plan = self._plan(layers)
        if allocation is None:
            alloc, method = self._allocate(plan)
        else:
            alloc, method = [int(v) for v in allocation], "given"
            if len(alloc) != len(plan.compute_index):
                raise BackendError(f"allocation has {len(alloc)} entries for {len(plan.compute_index)} compute layers")
        sched = _run(cfg, plan, alloc, record=True)
        to_ms = 1e-3 / cfg.clock_mhz
        stages = tuple(
            StageCost(stage=sid, energy_pj=e, latency_cycles=lat, latency_ms=lat * to_ms, energy_uj=e * 1e-6,
                      layers=n)
            for sid, e, lat, n in zip(sched.stage_ids, sched.stage_energy, sched.stage_latency, sched.stage_layers,
                                      strict=True))
        energy = float(sum(s.energy_pj for s in stages))
        latency = float(sum(s.latency_cycles for s in stages))
        return SystemCost(
            layers=tuple(sched.layers), stages=stages, energy_pj=energy, latency_cycles=latency,
            latency_ms=latency * to_ms, energy_uj=energy * 1e-6, allocation=tuple(alloc), allocation_method=method,
            clock_mhz=cfg.clock_mhz,
            details={"model": self.name, "version": self.version, "zigzag_version": zigzag_version()})
