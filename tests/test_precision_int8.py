"""Real INT8 target: NNCF post-training quantisation, run by the OpenVINO CPU runtime."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from dalp_moo import backends
from dalp_moo.backends import openvino_backend
from dalp_moo.config import SpaceConfig, load_config
from dalp_moo.errors import BackendError, ConfigError
from dalp_moo.model import ParamCounter, build_model
from dalp_moo.space import SearchSpace

pytest.importorskip("nncf")

SHAPE = (1, 4, 32, 32)


def _has_int8() -> bool:
    return "INT8" in str(openvino_backend.device_properties("CPU").get("OPTIMIZATION_CAPABILITIES", ""))


pytestmark = pytest.mark.skipif(not _has_int8(), reason="the OpenVINO CPU plugin lists no INT8 capability")


@pytest.fixture(scope="module")
def candidate() -> torch.nn.Module:
    space = SearchSpace(SpaceConfig(min_units=2, max_units=3), param_cap=100_000, count=ParamCounter(4))
    torch.manual_seed(0)
    return build_model(space.decode(space.repair(space.sample(1, np.random.default_rng(3))[0])), 4).eval()


def _inputs(n: int, seed: int) -> torch.Tensor:
    return torch.rand((n, *SHAPE[1:]), generator=torch.Generator().manual_seed(seed)) * 3.0


def test_int8_deployment_quantises_and_runs_in_int8(candidate: torch.nn.Module) -> None:
    backend = backends.get("openvino", precision="int8", runs=3, warmup=1)
    assert backend.needs_calibration and backends.get("openvino").needs_calibration is False
    dep = backend.deploy(candidate, SHAPE, calibration=_inputs(16, 1))
    assert dep.inference_precision == "int8"
    # the plugin really runs the convolutions in an 8-bit type (u8/i8), not in f32
    assert dep.quantised_ops and set(dep.quantised_ops) <= {"u8", "i8"}, dep.quantised_ops
    assert dep.conversion_ok  # the check is on the FP32 IR, before quantisation
    x = _inputs(4, 2)
    with torch.no_grad():
        ref = candidate(x)
    out = dep.predict(x)
    assert out.shape == ref.shape and torch.isfinite(out).all()
    rel = float((out - ref).norm() / ref.norm())
    assert 0 < rel < 0.3, rel  # quantisation changes the outputs, within what 8 bits allow
    assert dep.latency().latency_ms > 0
    info = backend.info().details
    assert info["inference_precision"] == "int8" and "NNCF" in info["int8"]["quantiser"]


def test_int8_without_calibration_or_capability_is_one_line(candidate: torch.nn.Module,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(BackendError, match="needs calibration inputs") as exc:
        backends.get("openvino", precision="int8").deploy(candidate, SHAPE)
    assert "\n" not in str(exc.value)
    real = openvino_backend.device_properties

    def without_int8(device: str = "CPU") -> dict:
        props = dict(real(device))
        props["OPTIMIZATION_CAPABILITIES"] = "['FP32', 'BIN']"
        return props

    monkeypatch.setattr(openvino_backend, "device_properties", without_int8)
    with pytest.raises(BackendError, match="no int8 inference"):
        backends.get("openvino", precision="int8")


def test_int8_profile_and_int8_deployment_go_together() -> None:
    from dalp_moo.precision import check_profile_backend

    check_profile_backend("int8", "openvino", {"precision": "int8"})
    for args in (("int8", "openvino", {}), ("int8", "myriadx", {}), ("ieee", "openvino", {"precision": "int8"})):
        with pytest.raises(ConfigError) as exc:
            check_profile_backend(*args)
        assert "\n" not in str(exc.value)
    load_config("smoke", overrides=[{"backend": {"name": "openvino", "options": {"precision": "int8"}}},
                                    {"train": {"regime": "dalp", "profile": "int8"}}])


def test_int8_search_from_the_cli_is_measured(tmp_path, monkeypatch) -> None:  # noqa: ANN001
    from click.testing import CliRunner

    from dalp_moo.cli import main

    monkeypatch.setenv("DALP_MOO_CALIBRATION_DIR", str(tmp_path / "no-user-calibrations"))
    result = CliRunner().invoke(main, [
        "run", "--preset", "smoke", "--backend", "openvino",
        "--set", 'backend.options={precision="int8", runs=3, warmup=1}', "--regime", "dalp", "--profile", "int8",
        "--population", "2", "--generations", "1", "--set", "data.n_tiles=20", "--no-progress",
        "--out", str(tmp_path / "run")])
    assert result.exit_code == 0, result.output
    assert "evaluations: 2" in result.output and "(emulated)" not in result.output
    meta = json.loads((tmp_path / "run" / "meta.json").read_text())
    assert meta["backend"]["details"]["inference_precision"] == "int8"
    records = [json.loads(line) for line in (tmp_path / "run" / "journal.jsonl").read_text().splitlines()]
    ok = [r for r in records if r.get("status") == "ok"]
    assert ok and all(r["emulated"] is False and r["metrics"]["ptq_miou"] is not None
                      and r["metrics"]["dalp_miou"] is not None for r in ok)
    # the front's IR is the quantised model the figures were measured on
    irs = sorted((tmp_path / "run" / "ir").glob("*.xml"))
    assert irs and all("FakeQuantize" in p.read_text() for p in irs)
    # a single export carries the FP32 IR (checked against torch) and the deployed INT8 IR
    arch_id = irs[0].stem
    result = CliRunner().invoke(main, ["export", str(tmp_path / "run"), "--candidate", arch_id,
                                       "--out", str(tmp_path / "exp")])
    assert result.exit_code == 0, result.output
    card = json.loads((tmp_path / "exp" / "model_card.json").read_text())
    assert card["check"]["ok"] and card["files"]["ir_int8"] == f"{arch_id}_int8.xml"
    assert "FakeQuantize" in (tmp_path / "exp" / f"{arch_id}_int8.xml").read_text()
    assert "FakeQuantize" not in (tmp_path / "exp" / f"{arch_id}.xml").read_text()


def test_fake_quant_grid_rounding_and_straight_through_gradient() -> None:
    from dalp_moo.precision.int8 import activation_grid, fake_quant, weight_scale

    x = torch.tensor([-1.0, 0.26, 0.25, 0.75, 2.0, 3.0], requires_grad=True)
    y = fake_quant(x, 0.5, 0, 4)  # grid 0, 0.5, ..., 2.0
    # clamped below and above; 0.52 -> 1 step; 0.5 and 1.5 steps round half to even (0 and 2)
    assert y.tolist() == [0.0, 0.5, 0.0, 1.0, 2.0, 2.0]
    y.sum().backward()
    assert x.grad.tolist() == [0.0, 1.0, 1.0, 1.0, 1.0, 0.0]
    w = torch.tensor([[1.26, -2.54], [0.1, 0.0], [0.0, 0.0]])
    s = weight_scale(w)
    assert torch.allclose(s.flatten(), torch.tensor([0.02, 0.1 / 127, 1.0]))
    q = fake_quant(w, s, -127, 127)
    assert torch.allclose(q, w, atol=1e-6)  # channel maxima and zeros are on the grid
    assert activation_grid(0.0, 2.55) == pytest.approx((0.01, 0, 255))
    assert activation_grid(-1.0, 1.27) == pytest.approx((0.01, -128, 127))


def test_int8_context_quantises_conv_inputs_from_calibration_ranges() -> None:
    from dalp_moo.precision import aligned_context
    from dalp_moo.precision.int8 import calibrate_ranges

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(2, 3, 3), torch.nn.ReLU(), torch.nn.Conv2d(3, 2, 1))
    calib = torch.rand(8, 2, 8, 8)
    ranges = calibrate_ranges(model, calib)
    first, second = model[0].weight, model[2].weight
    assert ranges[id(first)] == pytest.approx((float(calib.min()), float(calib.max())))
    assert ranges[id(second)][0] >= 0  # after ReLU: unsigned grid
    ctx = aligned_context(model, "int8", calibration=calib)
    with torch.no_grad():
        plain = model(calib)
    with torch.no_grad(), ctx():
        aligned = model(calib)
    # inputs and weights of both convolutions move onto 8-bit grids: the outputs differ a little
    diff = float((aligned - plain).abs().max())
    assert 0 < diff < 0.05 * float(plain.abs().max())
    # gradients flow to the weights through the fake quantisation
    with ctx():
        model(calib).sum().backward()
    assert first.grad is not None and float(first.grad.abs().sum()) > 0


def test_int8_profile_has_no_host_emulation_and_is_refused_for_early_exit() -> None:
    from dalp_moo.precision import deploy_fp16
    from dalp_moo.training.early_exit import EarlyExitTrainConfig

    with pytest.raises(ConfigError, match="no host emulation"):
        deploy_fp16(torch.nn.Conv2d(1, 1, 1), "int8").prepare(torch.zeros(1, 1, 2, 2))
    with pytest.raises(ConfigError, match="int8 deployment profile"):
        EarlyExitTrainConfig(profile="int8")
