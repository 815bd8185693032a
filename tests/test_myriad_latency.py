"""Myriad X latency model: the plugin's fusions and placement, stream handling, latency vs
throughput vs host quantities, fitting and the calibration round trip, and the reconstructed
calibration networks against their published sizes."""

from __future__ import annotations

import json
import math
from dataclasses import replace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from dalp_moo.backends import myriad_latency as ml
from dalp_moo.backends.graph import trace_graph
from dalp_moo.backends.myriad_latency import MyriadXLatencyModel, MyriadXParams, StageTable, lower
from dalp_moo.backends.zoo.myriad_points import POINTS, MyriadPoint
from dalp_moo.errors import BackendError


def stages(model: nn.Module, shape: tuple[int, ...]) -> list[ml.Stage]:
    return lower(trace_graph(model.eval(), shape))


def kinds(st: list[ml.Stage]) -> list[str]:
    return [s.kind for s in st]


# ---------------------------------------------------------------- fusions and placement


def test_conv_bn_relu_is_one_nce_stage_and_io_conversions_are_added() -> None:
    st = stages(nn.Sequential(nn.Conv2d(4, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU()),
                (1, 4, 16, 16))
    assert kinds(st) == ["convert", "conv", "convert"]
    assert st[1].fused == ("bn", "relu") and len(st[1].ops) == 3
    assert st[0].name == "input_convert" and st[0].elem_ops == 4 * 16 * 16
    assert st[2].name == "output_convert" and st[2].elem_ops == 16 * 16 * 16


def test_conv3x3_pool_fusion_needs_3x3_s1_p1_and_a_single_consumer() -> None:
    fused = stages(nn.Sequential(nn.Conv2d(8, 8, 3, padding=1), nn.ReLU6(), nn.MaxPool2d(2)), (1, 8, 16, 16))
    assert kinds(fused)[1:-1] == ["conv"] and fused[1].fused == ("relu6", "pool")
    k5 = stages(nn.Sequential(nn.Conv2d(8, 8, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2)), (1, 8, 16, 16))
    assert kinds(k5)[1:-1] == ["conv", "pool"]
    no_pad = stages(nn.Sequential(nn.Conv2d(8, 8, 3), nn.MaxPool2d(2)), (1, 8, 16, 16))
    assert kinds(no_pad)[1:-1] == ["conv", "pool"]

    class TwoUses(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(8, 8, 3, padding=1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = torch.relu(self.conv(x))
            return F.max_pool2d(y, 2).mean() + y.mean()  # the conv output is also used elsewhere

    assert "pool" in kinds(stages(TwoUses(), (1, 8, 16, 16)))


def test_shave_placement_and_shave_side_fusions() -> None:
    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a = nn.Conv2d(8, 8, 3, padding=1)
            self.b = nn.Conv2d(8, 8, 1)
            self.bn = nn.BatchNorm2d(16)
            self.dw = nn.Conv2d(16, 16, 3, padding=2, dilation=2, groups=16)
            self.fc = nn.Linear(16, 4)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = torch.relu(self.a(x) + self.b(x))              # Eltwise + ReLU on the SHAVEs
            z = torch.relu(self.bn(torch.cat([y, x], dim=1)))  # stand-alone BN (ScaleShift) + ReLU
            z = F.gelu(self.dw(z))                             # dilated depthwise; GELU not fusable
            z = F.interpolate(z, scale_factor=2.0, mode="bilinear")
            return torch.relu(self.fc(z.mean((2, 3))))         # FC + ReLU

    st = stages(Net(), (1, 8, 16, 16))
    assert kinds(st) == ["convert", "conv", "conv", "shave", "concat", "shave", "dwconv", "shave", "shave",
                         "shave", "fc", "convert"]
    add, bn, dw, gelu, fc = st[3], st[5], st[6], st[7], st[10]
    assert add.fused == ("relu",) and bn.fused == ("relu",) and fc.fused == ("relu",)
    assert dw.attrs["reorder_elems"] > 0 and gelu.fused == () and gelu.attrs["trans_elems"] == 16 * 16 * 16
    assert st[8].elem_ops == 4 * 16 * 32 * 32  # bilinear resize: 4 ops per output element
    units = ml.place(trace_graph(Net().eval(), (1, 8, 16, 16)))
    # NCE: two convs, the depthwise conv, the FC; SHAVE: add, cat, bn, gelu, resize, mean
    assert units.count("nce") == 4 and "fused" in units and units.count("shave") == 6


def test_post_op_stages_and_eltwise_next_to_hardware_run_on_two_shaves() -> None:
    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(8, 8, 1)

        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            y = F.silu(self.conv(x))                   # Swish: a PostOpStage
            z = torch.sigmoid(x) + torch.tanh(x)       # Eltwise between SHAVE stages only: all SHAVEs
            return torch.softmax(z, 1), y + self.conv(x)  # softmax: all SHAVEs; Eltwise fed by a conv: two

    g = trace_graph(Net().eval(), (1, 8, 8, 8))
    st = lower(g)
    few = {s.attrs.get("op"): s.attrs.get("few_shaves") for s in st if s.kind == "shave"}
    assert few == {"silu": True, "sigmoid": True, "tanh": True, "add": True, "softmax": False}
    adds = [s for s in st if s.attrs.get("op") == "add"]
    assert [s.attrs["few_shaves"] for s in adds] == [False, True]
    assert st[0].attrs["few_shaves"] and st[-1].attrs["few_shaves"]  # FP32<->FP16 conversions
    # hand-worked: SiLU of 8 x 8 x 8 = 512 elements in CMX, 2 of 8 SHAVEs:
    # compute 512 x trans_ops 10 / (40 Gops/s x 2/8) = 0.512 us; memory 2 x 1024 B / (400 GB/s x 2/8) = 0.02048 us
    p = MyriadXParams(shave_gops=40.0, trans_ops=10.0, cmx_gbps=400.0, shaves=8, post_op_shaves=2)
    t = StageTable.of(g, 32, st)
    c = ml.stage_costs(t, p)
    i = next(j for j, s in enumerate(st) if s.attrs.get("op") == "silu")
    assert c["compute"][i] == pytest.approx(512 * 10 / (40e9 * 0.25) * 1e3)
    assert c["memory"][i] == pytest.approx(2 * 1024 / (400e9 * 0.25) * 1e3)
    k = next(j for j, s in enumerate(st) if s.attrs.get("op") == "softmax")
    full = ml.stage_costs(t, replace(p, post_op_shaves=8))
    assert full["compute"][i] == pytest.approx(c["compute"][i] / 4) and full["compute"][k] == c["compute"][k]


def test_concat_copies_only_what_the_plugin_cannot_write_in_place() -> None:
    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.c1, self.c2, self.c3 = nn.Conv2d(8, 16, 1), nn.Conv2d(8, 8, 1), nn.Conv2d(8, 8, 1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            a, b = self.c1(x).chunk(2, dim=1)  # slices of a tensor: copies required
            s = F.silu(self.c2(x))             # SHAVE output: written in place
            return torch.cat([a, b, s, self.c3(x)], dim=1)  # hardware output: copied unless in CMX

    p = MyriadXParams(shave_layer_ms=0.02, cmx_gbps=400.0, ddr_gbps=8.0)
    for hw, in_cmx in ((8, True), (128, False)):
        g = trace_graph(Net().eval(), (1, 8, hw, hw))
        st = lower(g)
        i = kinds(st).index("concat")
        cat = st[i]
        assert (cat.attrs["copies"], cat.attrs["copy_elems"]) == (2, 16 * hw * hw)
        assert (cat.attrs["opt_copies"], cat.attrs["opt_copy_elems"]) == (1, 8 * hw * hw)
        c = ml.stage_costs(StageTable.of(g, 32, st), p)
        assert bool(c["cmx"][i]) is in_cmx
        # hand-worked: 8 x 8: the two halves (2 x 8 x 64 FP16 values = 2048 B), read and written in CMX;
        # 128 x 128 (output 1 MB, in + out 2 MB > 1.25 MB): the conv output is copied too, through DDR
        copied = 2 * 16 * hw * hw + (0 if in_cmx else 2 * 8 * hw * hw)
        assert c["memory"][i] == pytest.approx(2 * copied / (400e9 if in_cmx else 8e9) * 1e3)
        assert c["overhead"][i] == pytest.approx((2 if in_cmx else 3) * 0.02)


def test_fully_connected_runs_as_a_1x1_convolution_bound_by_its_weights() -> None:
    t = _table(nn.Linear(1024, 500), (1, 1024))
    p = MyriadXParams(nce_gops=300.0, util_blend=0.5, ddr_gbps=8.0, cmx_gbps=400.0, overlap=0.5)
    c = ml.stage_costs(t, p)
    # hand-worked: 512 000 MAC; util = 0.5 + 0.5 x eff(1024) x eff(500) = 0.5 + 0.5 x 500 / 512;
    # weights 1 024 000 B over DDR at 8 GB/s = 0.128 ms, activations 2 x 1524 B in CMX
    util = 0.5 + 0.5 * 500 / 512
    assert c["compute"][1] == pytest.approx(2 * 512000 / (300e9 * util) * 1e3)
    mem = (2 * 512000 + 500 * 2) / 8e9 * 1e3 + 2 * (1024 + 500) / 400e9 * 1e3  # weights + bias, then in/out
    assert c["memory"][1] == pytest.approx(mem)
    assert c["total"][1] == pytest.approx(p.nce_layer_ms + mem + 0.5 * c["compute"][1])  # weight-bound


def test_every_op_belongs_to_one_stage_on_a_search_space_candidate() -> None:
    from dalp_moo.backends.calibrate import space_candidates

    for m in space_candidates(3, 7):
        g = trace_graph(m, (1, 4, 64, 64))
        owned = sorted(i for s in lower(g) for i in s.ops)
        assert owned == sorted(set(owned)) == sorted(o.index for o in g.ops if o.kind != "reshape" or o.index in owned)
        assert {o.index for o in g.ops if o.kind != "reshape"} <= set(owned)


# ---------------------------------------------------------------- streams, quantities, host


def _table(model: nn.Module, shape: tuple[int, ...]) -> StageTable:
    return StageTable.of(trace_graph(model.eval(), shape))


def test_two_streams_halve_compute_but_not_overheads_or_ddr() -> None:
    big = _table(nn.Sequential(nn.Conv2d(256, 256, 3, padding=1), nn.ReLU()), (1, 256, 16, 16))
    p2, p1 = MyriadXParams(streams=2), MyriadXParams(streams=1)
    c2, c1 = ml.stage_costs(big, p2), ml.stage_costs(big, p1)
    assert c1["compute"][1] == pytest.approx(c2["compute"][1] / 2.0)
    assert c1["overhead"][1] == c2["overhead"][1] == p2.nce_layer_ms
    assert ml.predict_table(big, p1) < ml.predict_table(big, p2)
    tiny = _table(nn.Conv2d(4, 4, 1), (1, 4, 8, 8))
    ratio = ml.predict_table(tiny, p2) / ml.predict_table(tiny, p1)
    assert 1.0 <= ratio < 1.05  # overhead-bound: a second NCE hardly helps
    # a 1.6 MB activation working set spills from one stream's CMX share (1.25 MB), not from the whole CMX
    mid = _table(nn.Conv2d(64, 64, 3, padding=1), (1, 64, 80, 80))
    assert not ml.stage_costs(mid, p2)["cmx"][1] and ml.stage_costs(mid, p1)["cmx"][1]


def test_latency_throughput_and_host_quantities_are_explicit() -> None:
    t = _table(nn.Sequential(nn.Conv2d(3, 32, 3, padding=1), nn.ReLU(), nn.Conv2d(32, 8, 1)), (1, 3, 64, 64))
    p = MyriadXParams(period_ratio=1.6, host_ms=1.2, usb3_gbps=0.3, usb2_gbps=0.03)
    device = ml.predict_table(t, p, "device")
    layers = ml.predict_table(t, p, "device_layers")
    assert device == pytest.approx(layers + p.fixed_ms)
    assert ml.predict_table(t, p, "period") == pytest.approx(device / 1.6)
    io = 4.0 * (3 * 64 * 64 + 8 * 64 * 64)
    assert t.io_bytes == io
    assert ml.predict_table(t, p, "e2e_usb3") == pytest.approx(device + 1.2 + io / 0.3e9 * 1e3)
    assert ml.predict_table(t, p, "e2e_usb2") == pytest.approx(device + 1.2 + io / 0.03e9 * 1e3)
    with pytest.raises(BackendError, match="unknown latency quantity"):
        ml.predict_table(t, p, "fps")
    g = trace_graph(nn.Conv2d(3, 8, 3), (1, 3, 32, 32))
    rep = {m: MyriadXLatencyModel(MyriadXParams(mode=m, period_ratio=1.6)).predict(g)
           for m in ("latency", "throughput")}
    assert rep["throughput"].latency_ms == pytest.approx(rep["latency"].latency_ms / 1.6)
    assert rep["throughput"].energy_mj == rep["latency"].energy_mj  # energy of one inference either way
    assert MyriadXLatencyModel(MyriadXParams(mode="throughput")).quantity == "period"
    assert MyriadXLatencyModel(MyriadXParams(include_host=True, link="usb2")).quantity == "e2e_usb2"


@pytest.mark.parametrize("bad", [{"streams": 3}, {"link": "usb1"}, {"mode": "fps"}, {"util_blend": 1.5},
                                 {"nce_gops": 0.0}, {"fixed_ms": -1.0}])
def test_bad_options_are_one_line_errors(bad: dict) -> None:
    with pytest.raises(BackendError) as exc:
        MyriadXParams(**bad)
    assert "\n" not in str(exc.value)


def test_breakdown_sums_to_the_device_latency() -> None:
    t = _table(nn.Sequential(nn.Conv2d(4, 16, 3, padding=1), nn.GELU(), nn.MaxPool2d(2), nn.Conv2d(16, 2, 1)),
               (1, 4, 64, 64))
    p = MyriadXParams()
    b = ml.breakdown(t, p)
    assert set(b) == {"fitted", "published", "assumed"} and b["fitted"] > 0
    assert sum(b.values()) == pytest.approx(ml.predict_table(t, p, "device"))


# ---------------------------------------------------------------- fitting and calibration round trip


def _synthetic_points(truth: MyriadXParams) -> tuple[list[MyriadPoint], list[StageTable]]:
    """Points of three small families whose 'measurements' come from known parameters."""
    nets = {"a": lambda w: nn.Sequential(nn.Conv2d(3, w, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                                         nn.Conv2d(w, w, 3, padding=1), nn.ReLU(), nn.Conv2d(w, 2, 1)),
            "b": lambda w: nn.Sequential(nn.Conv2d(3, w, 1), nn.ReLU6(), nn.Conv2d(w, w, 3, padding=1, groups=w),
                                         nn.ReLU6(), nn.Conv2d(w, w, 1), nn.SiLU()),
            "c": lambda w: nn.Sequential(nn.Conv2d(3, w, 3, padding=1), nn.ReLU(),
                                         nn.ConvTranspose2d(w, w, 3, stride=2, padding=1, output_padding=1))}
    pts, tabs = [], []
    for fam, make in nets.items():
        for w in (8, 24, 48, 96):
            for s in (32, 96):
                t = _table(make(w), (1, 3, s, s))
                q = "device" if (w + s) % 3 else "period"
                pts.append(MyriadPoint(f"{fam}{w}@{s}", fam, "synthetic", (1, 3, s, s), q,
                                       ml.predict_table(t, truth, q), "test", {"width": w}))
                tabs.append(t)
    return pts, tabs


def test_fit_recovers_synthetic_measurements_and_cross_validates() -> None:
    truth = MyriadXParams(nce_gops=200.0, nce_layer_ms=0.06, dw_gops=20.0, fixed_ms=0.7, shave_layer_ms=0.03,
                          period_ratio=1.75)
    pts, tabs = _synthetic_points(truth)
    p = ml.fit(pts, tabs, names=["nce_gops", "nce_layer_ms", "dw_gops", "fixed_ms", "shave_layer_ms"])
    pred = np.array([ml.predict_table(t, p, pt.quantity) for t, pt in zip(tabs, pts, strict=True)])
    y = np.array([pt.ms for pt in pts])
    assert np.median(np.abs(pred / y - 1)) < 0.03
    assert p.nce_layer_ms == pytest.approx(0.06, rel=0.3) and p.fixed_ms == pytest.approx(0.7, rel=0.3)
    assert p.period_ratio == 1.75  # no measured latency/period pair among these points: the prior
    cv = ml.cross_validate(pts, tabs)
    assert cv["n_points"] == len(pts) and {r["family"] for r in cv["points"]} == {"a", "b", "c"}
    assert all(math.isfinite(r["cv_pred_ms"]) and r["cv_pred_ms"] > 0 for r in cv["points"])
    assert cv["kendall_tau"] > 0.8


def test_period_ratio_comes_from_measured_pairs_only() -> None:
    pairs = ml.latency_period_pairs(POINTS)
    names = {n for n, _ in pairs}
    assert "MobileOne-S0 224 (RVC2)" in names and "YOLOv8n 640 (RVC2)" in names
    assert all(1.0 < r < 2.5 for _, r in pairs)
    assert not any("NCS2" in n for n in names)  # Intel's table has no latencies: never paired


def test_calibration_save_load_round_trip(tmp_path) -> None:
    fitted = {n: v * 1.1 if n not in ("util_blend", "overlap", "spill_eff") else 0.3
              for n, v, _ in ml.FIT_SPEC}
    fitted["period_ratio"] = 1.66
    result = {"format": ml.FORMAT, "fitted": fitted, "cv": {"points": [], "median_abs_error": 0.1},
              "cv_by_source": {"points": [], "median_abs_error": 0.2}}
    path = ml.save_calibration(result, tmp_path / "myriadx.json")
    back = ml.load_params(path)
    for n, v in fitted.items():
        assert getattr(back, n) == pytest.approx(v)
    assert json.loads(path.read_text())["cv_summary"]["median_abs_error"] == 0.1
    assert ml.load_params(path, streams=1).streams == 1
    with pytest.raises(BackendError, match="unknown myriadx option"):
        ml.load_params(path, nonsense=1)
    path.write_text(json.dumps({"format": "old"}))
    with pytest.raises(BackendError, match="corrupt Myriad X calibration"):
        ml.load_params(path)


def test_shipped_calibration_is_loaded_and_fitted() -> None:
    data = json.loads(ml.CALIBRATION_FILE.read_text())
    assert data["format"] == ml.FORMAT and data["n_points"] == len(POINTS)
    p = ml.load_params()
    assert p.nce_gops == pytest.approx(data["fitted"]["nce_gops"])
    assert set(data["fitted"]) == {n for n, _, _ in ml.FIT_SPEC} | {"period_ratio"}
    assert {ml.PARAM_SOURCES[n] for n in data["fitted"]} == {"fitted"}


# ---------------------------------------------------------------- calibration networks


def _params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_reconstructed_networks_match_their_published_sizes() -> None:
    from dalp_moo.backends.zoo.myriad_points import networks

    nets = networks()
    with torch.device("meta"):
        assert _params(nets["prg"](1, (16, 32, 64, 128))) == 745364  # prg_prgncs README
        assert _params(nets["prg"](6, (8, 16, 32, 64))) == 187228
        assert _params(nets["prg"](1, (10, 15, 23, 35, 53, 80, 120))) == 917033
        assert _params(nets["thermo_unet"]()) == 46577                # Piechocki et al. 2022
        assert _params(nets["unet_camvid"]()) == pytest.approx(31.03e6, rel=0.002)   # OMZ model card
        assert _params(nets["mobilenet_ssd"]()) == pytest.approx(5.783e6, rel=0.005)
        yolo8n = nets["yolov8"]("n")
    assert 2 * trace_graph(yolo8n, (1, 3, 640, 640)).total_macs / 1e9 == pytest.approx(8.7, rel=0.01)
    alex = trace_graph(nets["alexnet_1356"](), (1, 3, 224, 224))
    assert [o.out_shape[-1] for o in alex.ops if o.kind == "pool"] == [28, 13, 6]  # as stored by nn-Meter


def test_calibration_points_are_well_formed() -> None:
    assert len({p.name for p in POINTS}) == len(POINTS)
    assert {p.quantity for p in POINTS} <= set(ml.QUANTITIES)
    assert all(p.ms > 0 and p.input_shape[0] == 1 for p in POINTS)
    assert len({p.family for p in POINTS}) >= 10
