"""Myriad X emulator (latency model, placement, calibration, numerics) and the public estimator
on standard architectures written with plain torch.nn."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from dalp_moo import backends
from dalp_moo.backends.graph import trace_graph
from dalp_moo.backends.host_model import calibration_path
from dalp_moo.backends.myriadx import MyriadXLatencyModel, MyriadXParams, load_params, place
from dalp_moo.backends.zoo import CNV_LATENCY, cnv
from dalp_moo.errors import BackendError


# ---- standard architectures (plain torch.nn) ------------------------------------------------
def vgg16() -> nn.Module:
    layers: list[nn.Module] = []
    c = 3
    for v in [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]:
        if v == "M":
            layers.append(nn.MaxPool2d(2, 2))
        else:
            layers += [nn.Conv2d(c, int(v), 3, padding=1), nn.ReLU(inplace=True)]
            c = int(v)
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(7), nn.Flatten(),
                         nn.Linear(512 * 49, 4096), nn.ReLU(True), nn.Dropout(),
                         nn.Linear(4096, 4096), nn.ReLU(True), nn.Dropout(), nn.Linear(4096, 1000))


class Bottleneck(nn.Module):
    def __init__(self, cin: int, planes: int, stride: int) -> None:
        super().__init__()
        out = planes * 4
        self.conv1 = nn.Conv2d(cin, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, out, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out)
        self.relu = nn.ReLU(inplace=True)
        self.down = None if stride == 1 and cin == out else nn.Sequential(
            nn.Conv2d(cin, out, 1, stride, bias=False), nn.BatchNorm2d(out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        idt = x if self.down is None else self.down(x)
        y = self.relu(self.bn1(self.conv1(x)))
        y = self.relu(self.bn2(self.conv2(y)))
        y = self.bn3(self.conv3(y))
        y += idt
        return self.relu(y)


class ResNet50(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64),
                                  nn.ReLU(inplace=True), nn.MaxPool2d(3, 2, 1))
        blocks: list[nn.Module] = []
        c = 64
        for planes, n, stride in [(64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)]:
            for i in range(n):
                blocks.append(Bottleneck(c, planes, stride if i == 0 else 1))
                c = planes * 4
        self.blocks = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(2048, 1000)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(self.blocks(self.stem(x))), 1))


class InvertedResidual(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, t: int) -> None:
        super().__init__()
        h = cin * t
        layers: list[nn.Module] = []
        if t != 1:
            layers += [nn.Conv2d(cin, h, 1, bias=False), nn.BatchNorm2d(h), nn.ReLU6(inplace=True)]
        layers += [nn.Conv2d(h, h, 3, stride, 1, groups=h, bias=False), nn.BatchNorm2d(h), nn.ReLU6(inplace=True),
                   nn.Conv2d(h, cout, 1, bias=False), nn.BatchNorm2d(cout)]
        self.conv = nn.Sequential(*layers)
        self.res = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x) if self.res else self.conv(x)


class MobileNetV2(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(3, 32, 3, 2, 1, bias=False), nn.BatchNorm2d(32), nn.ReLU6(True)]
        c = 32
        for t, cout, n, s in [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
                              (6, 160, 3, 2), (6, 320, 1, 1)]:
            for i in range(n):
                layers.append(InvertedResidual(c, cout, s if i == 0 else 1, t))
                c = cout
        layers += [nn.Conv2d(c, 1280, 1, bias=False), nn.BatchNorm2d(1280), nn.ReLU6(True)]
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(1280, 1000))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x).mean([2, 3]))


def _on_meta(factory) -> nn.Module:  # no weight memory, no arithmetic: shapes only
    with torch.device("meta"):
        return factory().eval()


STANDARD = {"vgg16": (vgg16, 15.47e9), "resnet50": (ResNet50, 4.09e9), "mobilenetv2": (MobileNetV2, 0.30e9)}
IMAGENET = (1, 3, 224, 224)


@pytest.fixture(scope="module")
def standard() -> dict[str, nn.Module]:
    return {k: _on_meta(f) for k, (f, _) in STANDARD.items()}


@pytest.mark.parametrize("name", list(STANDARD))
def test_traced_macs_match_published_counts(standard: dict[str, nn.Module], name: str) -> None:
    g = trace_graph(standard[name], IMAGENET)
    assert g.total_macs == pytest.approx(STANDARD[name][1], rel=0.03)


def test_estimators_work_on_standard_architectures(standard: dict[str, nn.Module]) -> None:
    names = ["analytic", "myriadx"] + (["openvino"] if calibration_path(1).exists() else [])
    for b in names:
        est = {k: backends.get(b).estimate_latency_ms(m, IMAGENET) for k, m in standard.items()}
        assert all(math.isfinite(v) and v > 0 for v in est.values()), (b, est)
        assert est["vgg16"] > est["resnet50"], (b, est)
    my = {k: backends.get("myriadx").estimate_latency_ms(m, IMAGENET) for k, m in standard.items()}
    # depthwise runs densely on the NCE: MobileNetV2 is far slower per MAC than ResNet-50 (whose
    # residual adds, on two SHAVEs next to the convolutions, are not free either)
    per_mac = {k: (my[k] - 1.8) / STANDARD[k][1] for k in my}
    assert per_mac["mobilenetv2"] > 2.5 * per_mac["resnet50"]


def test_placement_and_fusions_on_resnet50(standard: dict[str, nn.Module]) -> None:
    g = trace_graph(standard["resnet50"], IMAGENET)
    units = place(g)
    by = {(o.kind, o.op): set() for o in g.ops}
    for o, u in zip(g.ops, units):
        by[(o.kind, o.op)].add(u)
    assert by[("conv", "conv2d")] == {"nce"} and by[("linear", "linear")] == {"nce"}
    assert by[("bn", "batch_norm")] == {"fused"}          # folded
    assert by[("act", "relu")] == {"fused"}               # Conv+ReLU and Eltwise+ReLU
    assert by[("eltwise", "add")] == {"shave"}
    assert by[("pool", "max_pool2d")] == {"pool"}         # 3x3 s2 stem pool: not fusable
    assert by[("pool", "adaptive_avg_pool2d")] == {"pool"}


def test_conv3x3_pool_and_nonfusable_activation_placement() -> None:
    m = nn.Sequential(nn.Conv2d(8, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                      nn.Conv2d(32, 32, 3, padding=1), nn.GELU(), nn.MaxPool2d(2), nn.ReLU())
    units = place(trace_graph(m, (1, 8, 32, 32)))
    assert units == ["nce", "fused", "fused", "nce", "shave", "pool", "fused"]


class Functional(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(4, 8, 3, padding=1)
        self.b = nn.Conv2d(4, 8, 1)
        self.fc = nn.Linear(16, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.add(self.a(x), self.b(x))
        y = y + 1.0
        z = torch.cat([y, F.interpolate(F.max_pool2d(y, 2), scale_factor=2.0)], dim=1)
        return self.fc(torch.flatten(z.mean((2, 3)), 1))


def test_functional_ops_are_captured_and_costed() -> None:
    g = trace_graph(Functional(), (1, 4, 16, 16))
    kinds = [o.kind for o in g.ops]
    for k in ("eltwise", "concat", "resize", "reduce", "reshape", "pool", "linear"):
        assert k in kinds
    assert [o.op for o in g.ops if o.kind == "eltwise"] == ["add", "add"]
    cat = next(o for o in g.ops if o.kind == "concat")
    assert len(cat.inputs) == 2 and cat.out_shape == (1, 16, 16, 16)
    rep = MyriadXLatencyModel().predict(g)
    costed = {p["type"]: p for p in rep.per_layer}
    for op in ("add", "cat", "interpolate", "mean"):
        assert costed[op]["unit"] == "shave" and costed[op]["time_ms"] >= 0
        assert costed[op]["time_ms"] > 0 or op == "cat"  # a concat written in place costs nothing


@pytest.mark.parametrize("layer,name", [(nn.Conv3d(1, 2, 3), "Conv3d"), (nn.LSTM(8, 8), "LSTM")])
def test_unsupported_layer_is_named(layer: nn.Module, name: str) -> None:
    model = nn.Sequential(nn.Identity(), layer)
    shape = (1, 1, 4, 8, 8) if name == "Conv3d" else (2, 1, 8)
    for b in ("myriadx", "analytic"):
        with pytest.raises(BackendError) as exc:
            backends.get(b).estimate_latency_ms(model, shape)
        msg = str(exc.value)
        assert f"'1' ({name})" in msg and "\n" not in msg


def test_model_switches_streams_host_energy_and_channel_padding() -> None:
    g = trace_graph(cnv(1.0), (1, 3, 32, 32))
    two = MyriadXLatencyModel(MyriadXParams()).predict(g)
    one = MyriadXLatencyModel(MyriadXParams(streams=1)).predict(g)
    host = MyriadXLatencyModel(MyriadXParams(include_host=True)).predict(g)
    assert one.latency_ms < two.latency_ms
    io_bytes = 4 * (3 * 32 * 32 + 10)  # FP32 input and output over the link
    assert host.latency_ms == pytest.approx(two.latency_ms + 1.5 + io_bytes / 0.30e9 * 1e3)
    assert two.energy_mj == pytest.approx(1.95 * two.latency_ms) and host.energy_mj == pytest.approx(two.energy_mj)
    assert two.method == "emulated" and two.spread_ms == 0.0
    assert sum(p["time_ms"] for p in two.per_layer) == pytest.approx(two.latency_ms)

    def conv_ms(cout: int) -> float:
        rep = MyriadXLatencyModel(MyriadXParams(overlap=0.0)).predict(
            trace_graph(nn.Conv2d(64, cout, 3, padding=1), (1, 64, 32, 32)))
        return next(p for p in rep.per_layer if p["type"] == "conv2d")["time_ms"]

    assert conv_ms(33) / conv_ms(32) > 1.2  # 33 channels occupy two 32-wide blocks


def test_cnv_definition_and_stored_calibration() -> None:
    for s, (mops, _, _) in CNV_LATENCY.items():
        assert 2 * trace_graph(cnv(s), (1, 3, 32, 32)).total_macs / 1e6 == pytest.approx(mops, rel=0.01)
    stored = load_params()
    b = backends.get("myriadx")  # uses the stored calibration
    assert b.params == stored and b.params.fixed_ms != MyriadXParams().fixed_ms
    small, big = (b.estimate_latency_ms(cnv(s), (1, 3, 32, 32)) for s in (0.25, 2.0))
    assert 1.0 < small < big < 10.0  # ms


def test_emulated_deployment_numerics_and_labels() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(4, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 2, 1)).eval()
    b = backends.get("myriadx")
    dep = b.deploy(model, (1, 4, 16, 16), profile="ieee")
    x = torch.rand(3, 4, 16, 16)
    y = dep.predict(x)
    with torch.no_grad():
        ref = model(x)
    assert y.dtype == torch.float32 and y.shape == ref.shape
    assert torch.allclose(y, ref, rtol=1e-2, atol=1e-2)
    assert not torch.equal(y, ref)  # really FP16 arithmetic
    rep = dep.latency()
    assert rep.method == "emulated" and rep.energy_mj > 0
    assert b.info().emulated and b.info().device.endswith("(emulated)")
