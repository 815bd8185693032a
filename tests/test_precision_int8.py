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


def test_int8_with_the_aligned_regime_is_refused() -> None:
    with pytest.raises(ConfigError, match="no int8 training profile"):
        load_config("smoke", overrides=[{"backend": {"name": "openvino", "options": {"precision": "int8"}}},
                                        {"train": {"regime": "dalp"}}])
    load_config("smoke", overrides=[{"backend": {"name": "openvino", "options": {"precision": "int8"}}},
                                    {"train": {"regime": "ptq", "profile": "ieee"}}])


def test_int8_search_from_the_cli_is_measured(tmp_path, monkeypatch) -> None:  # noqa: ANN001
    from click.testing import CliRunner

    from dalp_moo.cli import main

    monkeypatch.setenv("DALP_MOO_CALIBRATION_DIR", str(tmp_path / "no-user-calibrations"))
    result = CliRunner().invoke(main, [
        "run", "--preset", "smoke", "--backend", "openvino",
        "--set", 'backend.options={precision="int8", runs=3, warmup=1}', "--regime", "ptq", "--profile", "ieee",
        "--population", "2", "--generations", "1", "--set", "data.n_tiles=20", "--no-progress",
        "--out", str(tmp_path / "run")])
    assert result.exit_code == 0, result.output
    assert "evaluations: 2" in result.output and "(emulated)" not in result.output
    meta = json.loads((tmp_path / "run" / "meta.json").read_text())
    assert meta["backend"]["details"]["inference_precision"] == "int8"
    records = [json.loads(line) for line in (tmp_path / "run" / "journal.jsonl").read_text().splitlines()]
    ok = [r for r in records if r.get("status") == "ok"]
    assert ok and all(r["emulated"] is False and r["metrics"]["ptq_miou"] is not None for r in ok)
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
