"""Kernel-level host latency model: kernel emulation, profile matching, fit/predict, persistence,
per-host calibration choice and errors."""

from __future__ import annotations

import json
import logging
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from dalp_moo.backends import host_model as hm
from dalp_moo.backends.graph import trace_graph
from dalp_moo.backends.host_model import HostLatencyModel, kernels, match_profile
from dalp_moo.backends.zoo import random_unet
from dalp_moo.errors import BackendError


class _Res(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Sequential(nn.Conv2d(8, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU())
        self.b = nn.Sequential(nn.Conv2d(8, 8, 1, bias=False), nn.BatchNorm2d(8))
        self.dw = nn.Conv2d(8, 8, 3, padding=1, groups=8)
        self.head = nn.Conv2d(16, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.b(self.a(x)) + x)          # conv+bn+relu | conv+bn+add+relu
        z = F.gelu(self.dw(F.max_pool2d(y, 2)))         # pool | dwconv+gelu
        z = F.interpolate(z, scale_factor=2.0, mode="bilinear")
        return self.head(torch.cat([y, z], dim=1))


def test_kernels_fuse_like_the_cpu_plugin() -> None:
    g = trace_graph(_Res().eval(), (1, 8, 16, 16))
    ks = kernels(g)
    assert [k.kind for k in ks] == ["reorder", "conv", "conv1x1", "pool", "dwconv", "resize", "concat",
                                    "conv1x1", "reorder"]
    conv, proj, dw = ks[1], ks[2], ks[4]
    assert [g.ops[i].kind for i in conv.ops] == ["conv", "bn", "act"]
    assert [g.ops[i].op for i in proj.ops] == ["conv2d", "batch_norm", "add", "relu"]
    assert proj.f["sum"] == 1 and proj.f["tact"] == 0 and dw.f["tact"] == 1
    assert conv.wshape == (8, 8, 3, 3) and dw.wshape == (8, 1, 1, 3, 3)
    # every op except pure reshapes belongs to exactly one kernel
    owned = sorted(i for k in ks for i in k.ops)
    assert owned == sorted(o.index for o in g.ops if o.kind != "reshape")


def _profile(ks: list[hm.Kernel], times: np.ndarray) -> list[dict]:
    """Node records as OpenVINODeployment.profile gives them, for emulated kernels."""
    types = {"conv": "Convolution", "conv1x1": "Convolution", "dwconv": "Convolution", "gconv": "Convolution",
             "deconv": "Deconvolution", "fc": "FullyConnected", "pool": "Pooling", "reduce": "Reduce",
             "resize": "Interpolate", "concat": "Concatenation", "eltwise": "Subgraph", "softmax": "Softmax",
             "norm": "MVN", "copy": "Transpose", "reorder": "Reorder"}
    nodes = [{"type": "Input", "out_shape": list(ks[0].out_shape), "in_shapes": [], "time_ms": 0.0}]
    for k, t in zip(ks, times, strict=True):
        ins = [[1]] + ([list(k.wshape)] if k.wshape else [])
        nodes.append({"type": types[k.kind], "out_shape": list(k.out_shape), "in_shapes": ins, "time_ms": float(t)})
    return nodes


def _true_times(ks: list[hm.Kernel]) -> np.ndarray:
    """A synthetic 'hardware': per-kind costs, output channels in blocks of 16, some non-linearity."""
    out = []
    for k in ks:
        f = k.f
        if k.kind in ("conv", "conv1x1", "dwconv", "deconv"):
            hw = f["hw_in"] if k.kind == "deconv" else f["hw_out"]
            cin = 1 if k.kind == "dwconv" else f["cin"]
            t = 2e-3 + hw * math.ceil(f["cout"] / 16) * 16 * cin * f["k"] * 1.5e-8 * (1.3 if f["k"] == 25 else 1.0)
        else:
            t = 1e-3 + 4e-6 * (f["in"] + f["out"]) / 1e3 * (3.0 if k.kind == "resize" and f.get("linear") else 1.0)
        out.append(t)
    return np.array(out)


@pytest.fixture(scope="module")
def synthetic() -> tuple[list, list, list]:
    rng = np.random.default_rng(0)
    graphs = [trace_graph(random_unet(rng), (1, 4, int(s), int(s)), meta=True) for s in rng.choice([32, 64], 48)]
    profiles, y = [], []
    for g in graphs:
        ks = kernels(g)
        t = _true_times(ks)
        profiles.append(_profile(ks, t))
        y.append(0.05 + 1.02 * t.sum())
    return graphs, profiles, y


def test_match_profile_assigns_every_kernel(synthetic: tuple[list, list, list]) -> None:
    graphs, profiles, _ = synthetic
    ks = kernels(graphs[0])
    times, rest = match_profile(ks, profiles[0])
    assert all(t is not None for t in times) and rest == 0.0
    np.testing.assert_allclose(times, _true_times(ks))


def test_kernel_level_fit_predicts_held_out_networks(synthetic: tuple[list, list, list]) -> None:
    graphs, profiles, y = synthetic
    model = HostLatencyModel.fit(graphs[:36], y[:36], {"host": "test"}, profiles=profiles[:36], rounds=30)
    assert model.meta["fit"] == "kernel-level" and model.meta["kernels_unmatched"] == 0
    assert model.meta["host"] == "test" and model.meta["fit_within_10pct"] == 1.0
    pred = np.array([model.predict(g)[0] for g in graphs[36:]])
    rel = np.abs(pred / np.array(y[36:]) - 1)
    assert np.median(rel) < 0.03 and rel.max() < 0.10
    lat, per_layer = model.predict(graphs[36])
    assert per_layer[0]["type"] == "overhead"
    assert sum(p["time_ms"] for p in per_layer) == pytest.approx(lat)
    assert all(p["time_ms"] > 0 for p in per_layer[1:])


def test_network_level_fit_without_profiles(synthetic: tuple[list, list, list]) -> None:
    graphs, _, y = synthetic
    model = HostLatencyModel.fit(graphs, y)
    assert model.meta["fit"] == "network-level linear terms"
    assert model.meta["fit_median_abs_rel_error"] < 0.10


def test_save_load_round_trip(synthetic: tuple[list, list, list], tmp_path) -> None:
    graphs, profiles, y = synthetic
    model = HostLatencyModel.fit(graphs[:24], y[:24], {"host": hm.host_id()}, profiles=profiles[:24], rounds=10)
    path = model.save(tmp_path / "cal.json")
    d = json.loads(path.read_text())
    assert d["format"] == hm.FORMAT and d["meta"]["host"] == hm.host_id()
    back = HostLatencyModel.load(path=path)
    for g in graphs[24:30]:
        assert back.predict(g)[0] == pytest.approx(model.predict(g)[0], rel=1e-5)
    path.write_text("{}")
    with pytest.raises(BackendError, match="corrupt"):
        HostLatencyModel.load(path=path)


def test_big_networks_extrapolate_with_the_linear_terms(synthetic: tuple[list, list, list]) -> None:
    graphs, profiles, y = synthetic
    model = HostLatencyModel.fit(graphs, y, profiles=profiles, rounds=10)
    small = model.predict(trace_graph(nn.Conv2d(64, 64, 3, padding=1), (1, 64, 56, 56)))[0]
    big = model.predict(trace_graph(nn.Conv2d(256, 256, 3, padding=1), (1, 256, 56, 56)))[0]
    assert big > 8 * small  # 16x the MACs


def test_per_host_calibration_choice(monkeypatch: pytest.MonkeyPatch, tmp_path,
                                     synthetic: tuple[list, list, list], caplog: pytest.LogCaptureFixture) -> None:
    graphs, profiles, y = synthetic
    monkeypatch.setattr(hm, "CALIBRATION_DIR", tmp_path)
    monkeypatch.setenv("DALP_MOO_CALIBRATION_DIR", str(tmp_path / "user"))
    monkeypatch.setattr(hm, "host_id", lambda: "Intel(R) Xeon(R) Platinum 8480+")
    assert hm.host_slug() == "intel-xeon-platinum-8480"
    own = hm.calibration_file(1, "CPU", "f32")
    assert own.name == "openvino_cpu_t1_f32_intel-xeon-platinum-8480.json"
    with pytest.raises(BackendError, match="no host latency calibration"):
        HostLatencyModel.load(threads=1)
    model = HostLatencyModel.fit(graphs[:12], y[:12], {"host": "AMD EPYC 7B13"}, profiles=profiles[:12], rounds=0)
    other = model.save(hm.calibration_file(1, "CPU", "f32", host="AMD EPYC 7B13"))
    assert hm.calibration_path(1) == other  # no calibration of this CPU model: another one's
    with caplog.at_level(logging.WARNING, logger="dalp_moo"):
        HostLatencyModel.load(threads=1)
    assert "AMD EPYC 7B13" in caplog.text
    mine = HostLatencyModel(model.intercept_ms, model.scale, model.regressors,
                            {"host": "Intel(R) Xeon(R) Platinum 8480+"}).save(own)
    assert hm.calibration_path(1) == mine
    assert HostLatencyModel.load(threads=1).meta["host"] == "Intel(R) Xeon(R) Platinum 8480+"
    with pytest.raises(BackendError, match="precision bf16"):  # no silent use of another precision
        HostLatencyModel.load(threads=1, precision="bf16")
    # a calibration the user made on this CPU (calibrate host) takes precedence over the shipped one
    user = HostLatencyModel(model.intercept_ms, 2 * model.scale, model.regressors,
                            {"host": "Intel(R) Xeon(R) Platinum 8480+", "held_out": {"within_10pct": 0.9,
                                                                                  "kendall_tau": 0.95}})
    user_file = user.save(hm.calibration_file(1, "CPU", "f32", directory=hm.user_calibration_dir()))
    assert user_file.parent == tmp_path / "user" and hm.calibration_path(1) == user_file
    with caplog.at_level(logging.INFO, logger="dalp_moo"):
        loaded = HostLatencyModel.load(threads=1)
    assert loaded.scale == pytest.approx(2 * model.scale) and loaded.meta["calibration_file"] == str(user_file)
    assert str(user_file) in caplog.text and "Kendall tau 0.950" in caplog.text


def test_unsupported_layer_is_a_clear_error(synthetic: tuple[list, list, list]) -> None:
    graphs, profiles, y = synthetic
    model = HostLatencyModel.fit(graphs[:12], y[:12], profiles=profiles[:12], rounds=0)
    with pytest.raises(BackendError) as exc:
        model.predict_graph_of(nn.Sequential(nn.Identity(), nn.Conv3d(1, 2, 3)), (1, 1, 4, 8, 8))
    assert "'1' (Conv3d)" in str(exc.value) and "\n" not in str(exc.value)


def test_kinds_without_a_fitted_regressor_fall_back(synthetic: tuple[list, list, list]) -> None:
    graphs, profiles, y = synthetic
    model = HostLatencyModel.fit(graphs[:12], y[:12], profiles=profiles[:12], rounds=0)
    m = nn.Sequential(nn.Conv2d(4, 8, 3, groups=2), nn.Flatten(), nn.Linear(8 * 6 * 6, 10), nn.Softmax(-1))
    lat, per_layer = model.predict_graph_of(m, (1, 4, 8, 8))
    assert math.isfinite(lat) and lat > 0
    assert [p["type"] for p in per_layer[1:]] == ["reorder", "gconv", "fc", "softmax"]
