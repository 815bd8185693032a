"""The ``bf16`` profile: bfloat16 projections in the aligned forward, and the supported real
target ``--backend openvino`` with ``precision="bf16"`` (skipped where the CPU has no bf16)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from dalp_moo.config import load_config
from dalp_moo.errors import ConfigError
from dalp_moo.precision import (
    aligned_training,
    check_profile_backend,
    deploy_fp16,
    get_profile,
    round_profile,
)


def _has_bf16() -> bool:
    from dalp_moo.backends.openvino_backend import device_properties

    return "BF16" in device_properties("CPU").get("OPTIMIZATION_CAPABILITIES", "")


def test_bf16_rounding_keeps_8_significant_bits() -> None:
    prof = get_profile("bf16")
    x = torch.tensor([4095.0, 257.0, 255.0, 1e38, 3.0e38 * 1.2, 1e-39])
    q = round_profile(x, prof)
    assert q[0] == 4096.0  # a raw 12-bit DN keeps 8 significant bits
    assert q[1] == 256.0 and q[2] == 255.0
    assert torch.isfinite(q[3]) and torch.isinf(q[4])  # FP32's range, overflow beyond it
    assert q[5] != 0.0  # subnormals kept unless flush_subnormals
    assert not prof.weights_analysis
    with pytest.raises(ConfigError):
        get_profile("bf16", weights_analysis=True)


def test_bf16_projection_in_the_aligned_forward() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(4, 8, 3, padding=1), nn.GELU(), nn.Conv2d(8, 2, 1)).eval()
    x = torch.round(torch.rand(2, 4, 16, 16) * 4095)
    deployed = deploy_fp16(model, "bf16")(x)
    with torch.no_grad():
        ref = model(x)
        with aligned_training(model, "bf16"):
            aligned = model(x)
    assert torch.equal(aligned, deployed)
    rel = float((deployed - ref).norm() / ref.norm())
    assert 1e-4 < rel < 5e-2  # coarser than FP16 (about 1e-3 relative per op), not broken
    x.requires_grad_(False)
    with aligned_training(model, "bf16"):
        model(x).square().mean().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


def test_profile_and_backend_must_describe_the_same_arithmetic() -> None:
    check_profile_backend("myriadx", "myriadx")
    check_profile_backend("bf16", "openvino", {"precision": "bf16"})
    for args in (("bf16", "myriadx", {}), ("bf16", "openvino", {}),
                 ("myriadx", "openvino", {"precision": "bf16"})):
        with pytest.raises(ConfigError) as exc:
            check_profile_backend(*args)
        assert "\n" not in str(exc.value)


@pytest.mark.skipif(not _has_bf16(), reason="this CPU has no bf16 arithmetic")
def test_openvino_bf16_dalp_combination_is_measured(tmp_path) -> None:  # noqa: ANN001
    """``--backend openvino --set 'backend.options={precision="bf16"}' --profile bf16
    --regime dalp``: one candidate at tiny size; its deployed mIoU comes from the OpenVINO
    runtime in bf16 (not emulated)."""
    from dalp_moo.evaluation import get_evaluator

    cfg = load_config("smoke", overrides=[
        {"backend": {"name": "openvino", "options": {"precision": "bf16", "runs": 3, "warmup": 1}}},
        {"train": {"profile": "bf16", "regime": "dalp", "threads": 1}},
        {"data": {"n_tiles": 20}}])
    evaluator = get_evaluator(cfg)
    assert evaluator.backend_info.emulated is False
    assert evaluator.backend_info.details["inference_precision"] == "bf16"
    genome = evaluator.space.repair(evaluator.space.sample(1, np.random.default_rng(0))[0])
    record, _ = evaluator.evaluate(genome)
    assert record.status == "ok", record.reason
    m = record.metrics
    assert record.emulated is False and m["latency_method"] == "measured"
    assert m["ptq_miou"] is not None and m["dalp_miou"] is not None
    assert m["deployed_miou"] == m["dalp_miou"]


@pytest.mark.skipif(not _has_bf16(), reason="this CPU has no bf16 arithmetic")
def test_openvino_bf16_search_runs_from_the_cli(tmp_path, monkeypatch) -> None:  # noqa: ANN001
    """The documented combination as a search: the reference point's latency estimate needs a
    host calibration, and none is shipped for bf16 (the f32 one stands in, with a warning)."""
    import json

    from click.testing import CliRunner

    from dalp_moo.cli import main

    monkeypatch.setenv("DALP_MOO_CALIBRATION_DIR", str(tmp_path / "no-user-calibrations"))
    result = CliRunner().invoke(main, [
        "run", "--preset", "smoke", "--backend", "openvino",
        "--set", 'backend.options={precision="bf16", runs=3, warmup=1}', "--profile", "bf16", "--regime", "dalp",
        "--population", "2", "--generations", "1", "--set", "data.n_tiles=20", "--no-progress",
        "--out", str(tmp_path / "run")])
    assert result.exit_code == 0, result.output
    assert "evaluations: 2" in result.output and "(emulated)" not in result.output
    meta = json.loads((tmp_path / "run" / "meta.json").read_text())
    assert '"inference_precision": "bf16"' in json.dumps(meta)


def test_cli_on_a_cpu_without_bf16_says_so_in_one_line_and_exits_2(tmp_path, monkeypatch) -> None:
    """The documented bf16 command on a CPU whose OpenVINO plugin lists no BF16 capability. This
    machine family has bf16, so the plugin's capability query is replaced by the answer an
    AVX2-only CPU gives; everything else (config, CLI, backend construction) is real."""
    from click.testing import CliRunner

    from dalp_moo.backends import openvino_backend
    from dalp_moo.cli import main

    real = openvino_backend.device_properties

    def without_bf16(device: str = "CPU") -> dict:
        props = dict(real(device))
        props["OPTIMIZATION_CAPABILITIES"] = "['FP32', 'FP16', 'INT8', 'BIN', 'EXPORT_IMPORT']"
        return props

    monkeypatch.setattr(openvino_backend, "device_properties", without_bf16)
    result = CliRunner().invoke(main, [
        "run", "--preset", "smoke", "--backend", "openvino", "--set", 'backend.options={precision="bf16"}',
        "--profile", "bf16", "--regime", "dalp", "--out", str(tmp_path / "run")])
    assert result.exit_code == 2, (result.exit_code, result.output)
    errors = [ln for ln in result.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and "no bf16 arithmetic" in errors[0], result.stderr
    assert "Traceback" not in result.output
    assert not (tmp_path / "run" / "journal.jsonl").exists()  # refused before any evaluation
