"""Tracing torch modules, the quad-core system model, the allocation search and the
dynamic-inference (ET) formulas."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from torch import nn

from dalp_moo.backends.accelerator import (
    AcceleratorConfig,
    AcceleratorModel,
    LayerSpec,
    dynamic_cost,
    et_avg,
    et_base,
    reduction,
    trace_layers,
)
from dalp_moo.errors import BackendError

try:
    import zigzag  # noqa: F401

    HAVE_ZIGZAG = True
except ImportError:  # zigzag-dse needs Python >= 3.11
    HAVE_ZIGZAG = False
needs_zigzag = pytest.mark.skipif(not HAVE_ZIGZAG, reason="zigzag-dse not installed")


class Add(nn.Module):
    cost_op = "add"

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return a + b


class Head(nn.Module):
    cost_branch = "exit"

    def __init__(self, c: int, classes: int = 10) -> None:
        super().__init__()
        self.pool = nn.AdaptiveMaxPool2d(4)
        self.fc = nn.Linear(c * 16, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pool(x).flatten(1))


class Tiny(nn.Module):
    """conv, dwconv, 1x1 conv, residual add, exit head; then a strided 1x1 conv, max-pool, exit head."""

    cost_stage = 0

    def __init__(self, exits: bool = True) -> None:
        super().__init__()
        self.exits = exits
        self.stem = nn.Conv2d(3, 16, 3, padding=1)
        self.bn = nn.BatchNorm2d(16)
        self.dw = nn.Conv2d(16, 16, 3, padding=1, groups=16)
        self.pw = nn.Conv2d(16, 16, 1)
        self.add = Add()
        self.head0 = Head(16)
        self.down = nn.Conv2d(16, 32, 1, stride=2)  # 1x1: few ZigZag loop orderings (fast)
        self.pool = nn.MaxPool2d(2)
        self.head1 = Head(32)
        for m in (self.down, self.pool, self.head1):
            m.cost_stage = 1 if exits else 0
        self.head1.cost_w_bits = 4

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        x = torch.relu(self.bn(self.stem(x)))
        x = self.add(x, self.pw(self.dw(x)))
        outs = (self.head0(x),) if self.exits else ()
        x = self.pool(self.down(x))
        return (*outs, self.head1(x))


@pytest.fixture(scope="module")
def cache_dir(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    """Per-layer ZigZag results persist in pytest's cache folder (a temporary one without it)."""
    cache = getattr(request.config, "cache", None)
    return str(cache.mkdir("dalp_accelerator") if cache is not None else tmp_path_factory.mktemp("accel"))


@pytest.fixture(scope="module")
def tiny_layers() -> list[LayerSpec]:
    return trace_layers(Tiny(), torch.zeros(1, 3, 32, 32))


def test_trace_small_module(tiny_layers: list[LayerSpec]) -> None:
    got = [(s.name, s.op, s.k, s.c, s.ox, s.oy, s.fx, s.stride, s.groups, s.stage, s.branch, s.w_bits)
           for s in tiny_layers]
    assert got == [
        ("stem", "conv", 16, 3, 32, 32, 3, 1, 1, 0, "backbone", 8),
        ("dw", "dwconv", 16, 16, 32, 32, 3, 1, 16, 0, "backbone", 8),
        ("pw", "conv", 16, 16, 32, 32, 1, 1, 1, 0, "backbone", 8),
        ("add", "add", 16, 16, 32, 32, 1, 1, 1, 0, "backbone", 8),
        ("head0.pool", "pool", 16, 16, 4, 4, 8, 8, 1, 0, "exit", 8),
        ("head0.fc", "fc", 10, 256, 1, 1, 1, 1, 1, 0, "exit", 8),
        ("down", "conv", 32, 16, 16, 16, 1, 2, 1, 1, "backbone", 8),
        ("pool", "pool", 32, 32, 8, 8, 2, 2, 1, 1, "backbone", 8),
        ("head1.pool", "pool", 32, 32, 4, 4, 2, 2, 1, 1, "exit", 4),
        ("head1.fc", "fc", 10, 512, 1, 1, 1, 1, 1, 1, "exit", 4),
    ]
    down = tiny_layers[6]
    assert (down.in_x, down.in_y) == (32, 32) and down.macs == 32 * 16 * 16 * 16
    assert tiny_layers[3].input_bits == 16 * 32 * 32 * 8


def test_trace_modules_called_twice_and_stage_function() -> None:
    conv = nn.Conv2d(4, 4, 1)
    net = nn.Sequential(conv, nn.ReLU(), conv)
    specs = trace_layers(net, torch.zeros(2, 4, 8, 8), w_bits=4, a_bits=4, stage_of=lambda name: 3)
    assert [s.name for s in specs] == ["0", "0#2"]
    assert all(s.stage == 3 and s.w_bits == 4 and s.a_bits == 4 for s in specs)
    with pytest.raises(BackendError, match="dilated"):
        trace_layers(nn.Conv2d(4, 4, 3, dilation=2), torch.zeros(1, 4, 8, 8))


@needs_zigzag
def test_system_cost_per_stage(tiny_layers: list[LayerSpec], cache_dir: str) -> None:
    cfg = AcceleratorConfig(cache_dir=cache_dir)
    cost = AcceleratorModel(cfg).cost(tiny_layers)
    assert cost.emulated and cost.method == "modelled"
    assert [s.stage for s in cost.stages] == [0, 1] and [s.layers for s in cost.stages] == [6, 4]
    assert cost.energy_pj == pytest.approx(sum(cost.stage_energy_pj))
    assert cost.latency_cycles == pytest.approx(sum(cost.stage_latency_cycles))
    assert cost.latency_ms == pytest.approx(cost.latency_cycles / (cfg.clock_mhz * 1e3))
    assert cost.energy_uj == pytest.approx(cost.energy_pj * 1e-6)
    for stage in cost.stages:
        layers = [lc for lc in cost.layers if lc.stage == stage.stage]
        assert stage.energy_pj == pytest.approx(sum(lc.energy_pj for lc in layers))
        assert stage.latency_cycles == pytest.approx(max(lc.end_cycle for lc in layers))
        assert stage.latency_cycles == pytest.approx(sum(lc.latency_cycles for lc in layers))
    by = {lc.name: lc for lc in cost.layers}
    assert by["add"].location == "simd" and by["pool"].location == "pool"
    assert {by[n].location for n in ("stem", "dw", "pw", "head0.fc", "down", "head1.fc")} <= {
        f"core{i}" for i in range(4)}
    for spec in tiny_layers:  # every inference reads each layer's weights from DRAM
        if spec.weights:
            assert by[spec.name].dram_energy_pj >= math.ceil(spec.weight_bits / 64) * cfg.dram_read_pj
    assert by["stem"].dram_energy_pj > math.ceil(tiny_layers[0].weight_bits / 64) * cfg.dram_read_pj  # + input
    assert by["add"].transfer_cycles >= 2 * tiny_layers[3].input_bits / cfg.noc_bits  # two operands over the NoC
    assert by["down"].transfer_cycles > 0  # stage 1 reads the backbone output (SIMD core), not head 0's
    assert by["head0.pool"].transfer_cycles > 0 and by["head0.pool"].start_cycle >= by["add"].end_cycle


@needs_zigzag
def test_allocation_search_and_its_cache(tiny_layers: list[LayerSpec], cache_dir: str, tmp_path: Path) -> None:
    import shutil

    shutil.copytree(Path(cache_dir) / "zigzag", tmp_path / "zigzag")  # per-layer results only
    cfg = AcceleratorConfig(cache_dir=str(tmp_path))
    model = AcceleratorModel(cfg)
    best = model.cost(tiny_layers)
    assert model.allocation_searches == 1 and best.allocation_method.startswith("ga")
    edp = best.energy_pj * best.latency_cycles
    n = len(best.allocation)
    for alloc in ([0] * n, [i % 4 for i in range(n)]):
        other = model.cost(tiny_layers, allocation=alloc)
        assert other.allocation_method == "given"
        assert edp <= other.energy_pj * other.latency_cycles * (1 + 1e-12)
    greedy = AcceleratorModel(AcceleratorConfig(cache_dir=str(tmp_path), allocation="greedy")).cost(tiny_layers)
    assert edp <= greedy.energy_pj * greedy.latency_cycles * (1 + 1e-12)
    again = model.cost(tiny_layers)
    assert model.allocation_searches == 1 and again == best  # cached per candidate in memory
    fresh = AcceleratorModel(cfg)
    assert fresh.cost(tiny_layers) == best and fresh.allocation_searches == 0  # and on disk
    assert fresh.core.zigzag_calls == 0
    with pytest.raises(BackendError, match="allocation has"):
        model.cost(tiny_layers, allocation=[0])


@needs_zigzag
def test_system_cost_deterministic(tiny_layers: list[LayerSpec], cache_dir: str) -> None:
    a = AcceleratorModel(AcceleratorConfig(cache_dir=cache_dir, seed=3, ga_generations=3))
    b = AcceleratorModel(AcceleratorConfig(cache_dir=cache_dir, seed=3, ga_generations=3))
    a._allocations.clear()
    b._allocations.clear()
    ca, cb = a.cost(tiny_layers), b.cost(tiny_layers)
    assert ca.to_dict() == cb.to_dict()


@needs_zigzag
def test_static_network_and_precision(cache_dir: str) -> None:
    model = AcceleratorModel(AcceleratorConfig(cache_dir=cache_dir, allocation="greedy"))
    static = model.cost(trace_layers(Tiny(exits=False), torch.zeros(1, 3, 32, 32)))
    dynamic = model.cost(trace_layers(Tiny(), torch.zeros(1, 3, 32, 32)))
    assert len(static.stages) == 1
    assert dynamic.energy_pj > static.energy_pj  # the extra head costs energy
    low = model.cost(trace_layers(Tiny(exits=False), torch.zeros(1, 3, 32, 32), w_bits=4, a_bits=4))
    assert low.energy_pj < static.energy_pj and low.latency_cycles < static.latency_cycles


def test_layers_out_of_stage_order_rejected() -> None:
    specs = [LayerSpec("a", "conv", 8, 8, 4, 4, stage=1), LayerSpec("b", "conv", 8, 8, 4, 4, stage=0)]
    with pytest.raises(BackendError, match="non-decreasing"):
        AcceleratorModel().cost(specs)


def test_et_formulas_hand_computed() -> None:
    # stages: E = 1, 2, 3 pJ; L = 10, 20, 30 cycles; exit fractions 0.5, 0.3, 0.2
    d = dynamic_cost([1.0, 2.0, 3.0], [10.0, 20.0, 30.0], [0.5, 0.3, 0.2])
    assert d.e_cum == (1.0, 3.0, 6.0) and d.l_cum == (10.0, 30.0, 60.0)
    assert d.et_k == (10.0, 90.0, 360.0)  # E_cum,k * L_cum,k
    assert d.et_avg == pytest.approx(0.5 * 10 + 0.3 * 90 + 0.2 * 360)  # 104
    assert d.e_avg == pytest.approx(2.6) and d.l_avg == pytest.approx(26.0)
    base = et_base(5.0, 50.0)  # static network: 5 pJ, 50 cycles
    assert base == 250.0
    assert reduction(d.et_avg, base) == pytest.approx(1 - 104 / 250)  # 0.584
    assert et_avg([0.25, 0.75], [4.0, 8.0]) == pytest.approx(7.0)
    with pytest.raises(BackendError, match="sum to 1"):
        dynamic_cost([1.0, 2.0], [1.0, 2.0], [0.5, 0.4])
    with pytest.raises(BackendError, match="one energy"):
        dynamic_cost([1.0, 2.0], [1.0], [1.0])
    with pytest.raises(BackendError, match=">= 0"):
        dynamic_cost([1.0, -2.0], [1.0, 1.0], [0.5, 0.5])
    with pytest.raises(BackendError, match="ET_base"):
        reduction(1.0, 0.0)


def test_trace_brevitas_quant_layers() -> None:
    """brevitas QuantConv2d/QuantLinear (nn.Conv2d/nn.Linear subclasses) are traced, QuantTensors too."""
    qnn = pytest.importorskip("brevitas.nn")
    net = nn.Sequential(qnn.QuantIdentity(return_quant_tensor=True),
                        qnn.QuantConv2d(3, 8, 3, padding=1, weight_bit_width=4, return_quant_tensor=True),
                        qnn.QuantReLU(return_quant_tensor=True), nn.Flatten(),
                        qnn.QuantLinear(8 * 8 * 8, 10, bias=True, weight_bit_width=4))
    specs = trace_layers(net, torch.zeros(1, 3, 8, 8), w_bits=4, a_bits=8)
    assert [(s.op, s.k, s.c, s.ox, s.fx, s.w_bits, s.a_bits) for s in specs] == [
        ("conv", 8, 3, 8, 3, 4, 8), ("fc", 10, 512, 1, 1, 4, 8)]
