"""One compute core costed by ZigZag (``zigzag-dse``), with its side effects contained.

The project builds ZigZag's layer, accelerator and mapping descriptions itself (no ONNX files)
and runs ZigZag's own stages (workload and accelerator parsers, spatial-mapping generator, LOMA
temporal-mapping search, cost model) without its save and visualisation stages, so that a query
writes no ``./outputs/`` files, imports no matplotlib and shows no progress bar. ZigZag's loggers
are silenced during a query and the logging configuration is restored afterwards. Memory
energies are given explicitly, so ZigZag's CACTI-based SRAM cost calculator (which writes a
shared file inside its package and is not safe with parallel processes) is never called.

The core (defaults: the Edge-TPU-like core of the early-exit paper) as ZigZag sees it:

- MAC array D1 x D2 x D3 x D4 = 8 x 8 x 4 x 4, ``mac_pj`` per MAC at every precision;
- a weight register file per MAC column holding one weight (``w_bits`` wide), shared along
  D3/D4 (weights are broadcast over output pixels), and an output register file holding one
  partial sum (``psum_bits`` = 2x operand bits, at most 32) shared along D2 (the reduction
  dimension); register widths follow the precision, so 16- and 32-bit layers get valid mappings
  (ZigZag's shipped Edge-TPU-like file holds 8-bit weights and 16-bit partial sums only);
- the weight SRAM (top level of weights) and the activation SRAM (top level of inputs and
  outputs). DRAM, the NoC and the loading of weights into the weight SRAM are not ZigZag's: the
  system model adds them (:mod:`dalp_moo.backends.accelerator.system`).

Precision enters through the operand sizes of the layer description: fewer bits mean more
operands per SRAM word, hence fewer SRAM accesses (energy) and less bandwidth (stalls).
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import logging
import os
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from dalp_moo.backends.accelerator.config import AcceleratorConfig
from dalp_moo.errors import BackendError

#: version of this project's ZigZag descriptions and result extraction (enters every cache key)
MODEL_VERSION = "1"

KINDS = ("dense", "depthwise")

# ZigZag queries change process-wide logging state while they run: one at a time per process
# (processes are independent: nothing is shared but the atomic on-disk cache)
_LOCK = threading.Lock()


def zigzag_version() -> str:
    """Installed zigzag-dse version ('' when it is not installed)."""
    try:
        return importlib.metadata.version("zigzag-dse")
    except importlib.metadata.PackageNotFoundError:
        return ""


@dataclass(frozen=True)
class CoreQuery:
    """One ZigZag query: a layer (or a weight tile of it) on one compute core.

    ``kind`` 'dense' (convolution or fully connected: ``g`` groups of ``k`` x ``c`` channels) or
    'depthwise' (``g`` channels, ``k = c = 1``); ``o_bits`` the precision of the written output
    (``a_bits``, or the partial-sum width for a part of a reduction split over weight tiles).
    """

    kind: str
    k: int
    c: int
    g: int
    ox: int
    oy: int
    fx: int
    fy: int
    stride: int
    ix: int
    iy: int
    w_bits: int
    a_bits: int
    o_bits: int

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise BackendError(f"core query kind {self.kind!r} is not one of {', '.join(KINDS)}")

    @property
    def psum_bits(self) -> int:
        """Partial-sum width: twice the widest operand, at most 32 bits."""
        return min(2 * max(self.w_bits, self.a_bits), 32)

    @property
    def macs(self) -> int:
        return self.g * self.k * self.c * self.ox * self.oy * self.fx * self.fy

    @property
    def weight_bits(self) -> int:
        return self.g * self.k * self.c * self.fx * self.fy * self.w_bits

    def workload(self) -> list[dict[str, Any]]:
        """ZigZag's layer description (its user format) of this query."""
        ix = min(self.ix, (self.ox - 1) * self.stride + self.fx)
        iy = min(self.iy, (self.oy - 1) * self.stride + self.fy)
        pad_x = max(0, (self.ox - 1) * self.stride + self.fx - ix)
        pad_y = max(0, (self.oy - 1) * self.stride + self.fy - iy)
        return [{
            "id": 0,
            "name": "layer",
            "operator_type": "Conv",
            "equation": "O[b][g][k][oy][ox]+=W[g][k][c][fy][fx]*I[b][g][c][iy][ix]",
            "dimension_relations": [f"ix={self.stride}*ox+1*fx", f"iy={self.stride}*oy+1*fy"],
            "loop_dims": ["B", "K", "G", "OX", "OY", "C", "FX", "FY"],
            "loop_sizes": [1, self.k, self.g, self.ox, self.oy, self.c, self.fx, self.fy],
            "operand_precision": {"W": self.w_bits, "I": self.a_bits, "O": self.psum_bits,
                                  "O_final": self.o_bits},
            "operand_source": {"I": 0},
            "pr_loop_dims": ["IX", "IY"],
            "pr_loop_sizes": [ix, iy],
            "padding": [[pad_x // 2, pad_x - pad_x // 2], [pad_y // 2, pad_y - pad_y // 2]],
        }]


@dataclass(frozen=True)
class CoreResult:
    """ZigZag's cost of one query: energy (pJ) and latency (cycles) on one core."""

    energy_pj: float  #: MACs, register files and SRAM accesses
    latency_cycles: float  #: including stalls and on/off-loading (ZigZag's latency_total2)
    ideal_cycles: float  #: MACs / array size
    mac_energy_pj: float
    memory_energy_pj: dict[str, float] = field(default_factory=dict)  #: per 'operand@memory'
    utilisation: float = 0.0  #: ideal cycles / latency
    spatial_utilisation: float = 0.0  #: of the spatial unrolling alone
    spatial_mapping: str = ""
    temporal_mapping: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CoreResult:
        return cls(**d)


# -- descriptions --------------------------------------------------------------------------------
def _port(name: str, kind: str, bw_min: int, bw_max: int, alloc: list[str]) -> dict[str, Any]:
    return {"name": name, "type": kind, "bandwidth_min": bw_min, "bandwidth_max": bw_max, "allocation": alloc}


def accelerator_description(cfg: AcceleratorConfig, w_bits: int, psum_bits: int) -> dict[str, Any]:
    """ZigZag accelerator description of one compute core for operands of these widths."""
    d1, d2, d3, d4 = cfg.dims
    wp, ap = cfg.weight_sram_port_bits, cfg.act_sram_port_bits
    memories = {
        "rf_weight": {
            "size": w_bits, "r_cost": cfg.weight_rf_pj, "w_cost": cfg.weight_rf_pj, "area": 0, "latency": 1,
            "auto_cost_extraction": False, "operands": ["I2"],
            "ports": [_port("r_port_1", "read", w_bits, w_bits, ["I2, tl"]),
                      _port("w_port_1", "write", w_bits, w_bits, ["I2, fh"])],
            "served_dimensions": ["D3", "D4"],
        },
        "rf_output": {
            "size": psum_bits, "r_cost": cfg.output_rf_pj, "w_cost": cfg.output_rf_pj, "area": 0, "latency": 1,
            "auto_cost_extraction": False, "operands": ["O"],
            "ports": [_port("r_port_1", "read", psum_bits, psum_bits, ["O, tl"]),
                      _port("r_port_2", "read", psum_bits, psum_bits, ["O, th"]),
                      _port("w_port_1", "write", psum_bits, psum_bits, ["O, fh"]),
                      _port("w_port_2", "write", psum_bits, psum_bits, ["O, fl"])],
            "served_dimensions": ["D2"],
        },
        "sram_weight": {
            "size": cfg.weight_sram_bits, "r_cost": cfg.weight_sram_read_pj, "w_cost": cfg.weight_sram_write_pj,
            "area": 0, "latency": 1, "auto_cost_extraction": False, "operands": ["I2"],
            "ports": [_port("r_port_1", "read", min(64, wp), wp, ["I2, tl"]),
                      _port("w_port_1", "write", min(64, wp), wp, ["I2, fh"])],
            "served_dimensions": ["D1", "D2", "D3", "D4"],
        },
        "sram_activation": {
            "size": cfg.act_sram_bits, "r_cost": cfg.act_sram_read_pj, "w_cost": cfg.act_sram_write_pj,
            "area": 0, "latency": 1, "auto_cost_extraction": False, "operands": ["I1", "O"],
            "ports": [_port("r_port_1", "read", min(64, ap), ap, ["I1, tl", "O, tl", "O, th"]),
                      _port("w_port_1", "write", min(64, ap), ap, ["I1, fh", "O, fh", "O, fl"])],
            "served_dimensions": ["D1", "D2", "D3", "D4"],
        },
    }
    return {
        "name": f"edge_tpu_like_core_w{w_bits}_p{psum_bits}",
        "memories": memories,
        "operational_array": {"unit_energy": cfg.mac_pj, "unit_area": 1.0,
                              "dimensions": ["D1", "D2", "D3", "D4"], "sizes": [d1, d2, d3, d4]},
    }


def spatial_mapping(cfg: AcceleratorConfig, q: CoreQuery) -> dict[str, list[str]] | None:
    """The fixed spatial unrolling of ``q`` (None in 'search' mode: ZigZag generates them).

    Dense: D1 <- K, D2 <- C (reduction), D3 <- OX, D4 <- OY (weight-stationary, as ZigZag's
    Edge-TPU-like example). Depthwise (no K/C reduction): D1 <- G (channels), D2 <- FX (the
    reduction over the kernel width), D3 <- OX, D4 <- OY. Unrollings are clipped to the layer.
    """
    if cfg.spatial_mapping == "search":
        return None
    d1, d2, d3, d4 = cfg.dims
    if q.kind == "depthwise":
        first = [f"G, {min(d1, q.g)}"]
        second = [f"FX, {min(d2, q.fx)}"]
    else:
        first = [f"K, {min(d1, q.k)}"]
        second = [f"C, {min(d2, q.c)}"]
    return {"D1": first, "D2": second, "D3": [f"OX, {min(d3, q.ox)}"], "D4": [f"OY, {min(d4, q.oy)}"]}


def mapping_description(cfg: AcceleratorConfig, q: CoreQuery) -> list[dict[str, Any]]:
    """ZigZag mapping description for ``q`` (entries by operator type and default)."""
    links = {"O": "O", "W": "I2", "I": "I1"}
    sm = spatial_mapping(cfg, q)
    return [{"name": name, "spatial_mapping": sm, "memory_operand_links": links} for name in ("Conv", "default")]


def query_payload(cfg: AcceleratorConfig, q: CoreQuery) -> dict[str, Any]:
    """Everything a query's result depends on (the on-disk cache key)."""
    return {
        "model_version": MODEL_VERSION,
        "zigzag": zigzag_version(),
        "workload": q.workload(),
        "accelerator": accelerator_description(cfg, q.w_bits, q.psum_bits),
        "mapping": mapping_description(cfg, q),
        "opt": cfg.zigzag_opt,
        "lpf_limit": cfg.lpf_limit,
        "spatial_mappings": cfg.spatial_mappings,
    }


# -- containment ---------------------------------------------------------------------------------
class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.messages.append(record.getMessage())
        except Exception:  # pragma: no cover - defensive
            pass


@contextlib.contextmanager
def contained() -> Iterator[_Collect]:
    """Silence ZigZag's loggers and restore the logging state (root and ``dalp_moo``) afterwards.

    ZigZag's API calls ``logging.basicConfig(level=INFO)``; its stages log at INFO/WARNING.
    Warnings and errors are collected (for error messages), not shown.
    """
    root = logging.getLogger()
    zz = logging.getLogger("zigzag")
    ours = logging.getLogger("dalp_moo")
    saved_root = (root.level, list(root.handlers), root.disabled)
    saved_zz = (zz.level, zz.propagate, list(zz.handlers), zz.disabled)
    saved_ours = (ours.level, list(ours.handlers), ours.propagate, ours.disabled)
    collect = _Collect()
    zz.setLevel(logging.WARNING)
    zz.propagate = False
    zz.disabled = False
    zz.addHandler(collect)
    try:
        yield collect
    finally:
        zz.removeHandler(collect)
        zz.setLevel(saved_zz[0])
        zz.propagate = saved_zz[1]
        zz.handlers[:] = saved_zz[2]
        zz.disabled = saved_zz[3]
        root.setLevel(saved_root[0])
        root.handlers[:] = saved_root[1]
        root.disabled = saved_root[2]
        ours.setLevel(saved_ours[0])
        ours.handlers[:] = saved_ours[1]
        ours.propagate = saved_ours[2]
        ours.disabled = saved_ours[3]


def _write_yaml(folder: Path, name: str, data: Any) -> str:
    path = folder / name
    with open(path, "w", encoding="utf-8") as f:
        yaml.safe_dump(data, f, sort_keys=False)
    return str(path)


def _check_no_cacti(description: dict[str, Any]) -> None:
    for name, mem in description["memories"].items():
        if mem.get("auto_cost_extraction") or mem.get("r_cost") is None or mem.get("w_cost") is None:
            raise BackendError(f"memory {name}: energies must be explicit (CACTI is not process-safe)")


def _result(cme: Any) -> CoreResult:
    breakdown: dict[str, float] = {}
    for layer_op, levels in cme.mem_energy_breakdown.items():
        mem_op = cme.memory_operand_links.layer_to_mem_op(layer_op)
        names = [lvl.name for lvl in cme.mem_hierarchy_dict[mem_op]]
        for i, energy in enumerate(levels):
            label = f"{layer_op}@{names[i] if i < len(names) else i}"
            breakdown[label] = breakdown.get(label, 0.0) + float(energy)
    latency = float(cme.latency_total2)
    return CoreResult(
        energy_pj=float(cme.energy_total),
        latency_cycles=latency,
        ideal_cycles=float(cme.ideal_cycle),
        mac_energy_pj=float(cme.mac_energy),
        memory_energy_pj=breakdown,
        utilisation=float(cme.ideal_cycle) / latency if latency > 0 else 0.0,
        spatial_utilisation=float(cme.mac_spatial_utilization),
        spatial_mapping=str(cme.spatial_mapping),
        temporal_mapping=str(cme.temporal_mapping),
    )


def _fail(q: CoreQuery, exc: Exception, collect: _Collect) -> BackendError:
    last = collect.messages[-1] if collect.messages else str(exc).splitlines()[0] if str(exc) else ""
    return BackendError(f"ZigZag found no valid mapping for {q.kind} layer k={q.k} c={q.c} g={q.g} "
                        f"{q.ox}x{q.oy} kernel {q.fx}x{q.fy} at {q.w_bits}/{q.a_bits} bit: "
                        f"{type(exc).__name__} {last}".rstrip())


def require_zigzag() -> None:
    """Raise BackendError (one line) when zigzag-dse cannot be imported."""
    try:
        import zigzag  # noqa: F401
    except ImportError as exc:
        raise BackendError(f"the accelerator cost model needs zigzag-dse (Python >= 3.11): "
                           f"pip install 'zigzag-dse>=3.9.1,<3.10' six ({exc})") from None


def run_query(cfg: AcceleratorConfig, q: CoreQuery) -> CoreResult:
    """Run ZigZag on one query (no cache; 0.1-1 s). Raises BackendError if no mapping is valid."""
    require_zigzag()
    from zigzag.mapping.temporal_mapping import TemporalMappingType
    from zigzag.stages.evaluation.cost_model_evaluation import CostModelStage
    from zigzag.stages.main import MainStage
    from zigzag.stages.mapping.spatial_mapping_generation import SpatialMappingGeneratorStage
    from zigzag.stages.mapping.temporal_mapping_generator_stage import TemporalMappingGeneratorStage
    from zigzag.stages.parser.accelerator_parser import AcceleratorParserStage
    from zigzag.stages.parser.workload_parser import WorkloadParserStage
    from zigzag.stages.results.reduce_stages import MinimalEDPStage, MinimalEnergyStage, MinimalLatencyStage
    from zigzag.stages.workload_iterator import WorkloadStage

    reduce = {"EDP": MinimalEDPStage, "energy": MinimalEnergyStage, "latency": MinimalLatencyStage}[cfg.zigzag_opt]
    description = accelerator_description(cfg, q.w_bits, q.psum_bits)
    _check_no_cacti(description)
    with _LOCK, tempfile.TemporaryDirectory(prefix="dalp-zigzag-") as tmp, contained() as collect:
        folder = Path(tmp)
        accelerator = _write_yaml(folder, "accelerator.yaml", description)
        mapping = _write_yaml(folder, "mapping.yaml", mapping_description(cfg, q))
        stages: list[Any] = [WorkloadParserStage, AcceleratorParserStage, WorkloadStage, reduce,
                             SpatialMappingGeneratorStage, reduce, TemporalMappingGeneratorStage, CostModelStage]
        main = MainStage(
            list_of_callables=stages, accelerator=accelerator, workload=q.workload(), mapping=mapping,
            loma_lpf_limit=cfg.lpf_limit, loma_show_progress_bar=False, nb_mappings_generated=cfg.spatial_mappings,
            enable_mix_spatial_mapping_generation=False, access_same_data_considered_as_no_access=True,
            temporal_mapping_type=TemporalMappingType("uneven"),
        )
        try:
            cmes = main.run()
        except Exception as exc:
            raise _fail(q, exc, collect) from exc
    if not cmes:
        raise BackendError(f"ZigZag returned no cost for {q}")
    return _result(cmes[0][0])


@contextlib.contextmanager
def _mplconfig(folder: Path) -> Iterator[None]:
    saved = os.environ.get("MPLCONFIGDIR")
    if saved is None:
        folder.mkdir(parents=True, exist_ok=True)
        os.environ["MPLCONFIGDIR"] = str(folder)
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop("MPLCONFIGDIR", None)


def reference_query(cfg: AcceleratorConfig, q: CoreQuery) -> tuple[float, float]:
    """The same query through ZigZag's public API ``get_hardware_performance_zigzag``: (energy pJ,
    latency cycles). For cross-checks: its output files go to a temporary folder that is deleted,
    its matplotlib cache to a folder of its own, and the logging state is restored."""
    require_zigzag()
    description = accelerator_description(cfg, q.w_bits, q.psum_bits)
    _check_no_cacti(description)
    mpl = Path(tempfile.gettempdir()) / "dalp_moo-mplconfig"
    with _LOCK, tempfile.TemporaryDirectory(prefix="dalp-zigzag-") as tmp, _mplconfig(mpl), contained():
        from zigzag.api import get_hardware_performance_zigzag

        folder = Path(tmp)
        accelerator = _write_yaml(folder, "accelerator.yaml", description)
        mapping = _write_yaml(folder, "mapping.yaml", mapping_description(cfg, q))
        out = get_hardware_performance_zigzag(
            q.workload(), accelerator, mapping, opt=cfg.zigzag_opt, dump_folder=str(folder / "outputs"),
            lpf_limit=cfg.lpf_limit, nb_spatial_mappings_generated=cfg.spatial_mappings,
            loma_show_progress_bar=False,
        )
    return float(out[0]), float(out[1])
