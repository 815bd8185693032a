"""Real OpenVINO runtime: IR round trip, predict, measured latency, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dalp_moo import backends
from dalp_moo.backends.host_model import calibration_path
from dalp_moo.backends.openvino_backend import (
    OpenVINODeployment,
    compile_config,
    core,
    device_properties,
    effective_precision,
    relative_error,
)
from dalp_moo.config import SpaceConfig
from dalp_moo.errors import BackendError
from dalp_moo.model import ParamCounter, build_model
from dalp_moo.space import SearchSpace

SHAPE = (1, 4, 32, 32)


@pytest.fixture(scope="module")
def candidate() -> torch.nn.Module:
    space = SearchSpace(SpaceConfig(min_units=2, max_units=3), param_cap=100_000, count=ParamCounter(4))
    g = space.sample(1, np.random.default_rng(3))[0]
    torch.manual_seed(0)
    model = build_model(space.decode(space.repair(g)), 4).eval()
    with torch.no_grad():  # non-trivial batch-norm statistics
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
    return model


@pytest.fixture(scope="module")
def deployment(candidate: torch.nn.Module) -> OpenVINODeployment:
    return backends.get("openvino", runs=15, warmup=3).deploy(candidate, SHAPE)


def test_ir_round_trip_matches_torch(deployment: OpenVINODeployment, candidate: torch.nn.Module,
                                     tmp_path) -> None:
    assert deployment.conversion_ok and deployment.conversion_error < 1e-2
    xml = deployment.save_ir(tmp_path / "cand")
    assert xml.exists() and xml.with_suffix(".bin").exists()
    # weights are stored as FP16 in the IR
    assert "f16" in xml.read_text()
    # f32 arithmetic asked for explicitly: the plugin's default differs by CPU (bf16 where AMX exists)
    compiled = core().compile_model(core().read_model(str(xml)), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    assert compiled.get_property("INFERENCE_PRECISION_HINT").to_string() == "f32"
    x = torch.rand(SHAPE) * 3.0
    out = compiled({0: x.numpy()})[0]
    with torch.no_grad():
        ref = candidate(x).numpy()
    assert out.shape == ref.shape
    assert relative_error(out, ref) < 1e-2


def test_predict_batches_and_chunks_correctly(deployment: OpenVINODeployment,
                                              candidate: torch.nn.Module) -> None:
    x = torch.rand(5, *SHAPE[1:])
    y = deployment.predict(x, chunk=2)  # chunks of 2, 2, 1
    with torch.no_grad():
        ref = candidate(x)
    assert y.dtype == torch.float32 and y.shape == ref.shape
    assert relative_error(y.numpy(), ref.numpy()) < 1e-2
    # each sample's output depends on that sample only
    y1 = deployment.predict(x[3:4])
    assert torch.allclose(y[3:4], y1, atol=1e-5)
    with pytest.raises(BackendError, match="does not match"):
        deployment.predict(torch.rand(1, 3, 32, 32))


def test_measured_latency_is_positive_with_spread_and_per_layer(deployment: OpenVINODeployment) -> None:
    rep = deployment.latency()
    assert rep.method == "measured"
    assert 0.0 < rep.latency_ms < 1000.0
    assert rep.spread_ms >= 0.0
    assert rep.per_layer and all(p["time_ms"] >= 0 for p in rep.per_layer)
    assert any(p["type"] == "Convolution" for p in rep.per_layer)
    assert deployment.latency() is rep  # cached


def test_throughput_mode_reports_time_per_inference(candidate: torch.nn.Module) -> None:
    rep = backends.get("openvino", runs=10, warmup=2, throughput=True).deploy(candidate, SHAPE).latency()
    assert rep.method == "measured" and rep.latency_ms > 0 and rep.spread_ms >= 0


def test_absent_device_lists_available_ones() -> None:
    with pytest.raises(BackendError) as exc:
        backends.get("openvino", device="NPU")
    msg = str(exc.value)
    assert "'NPU'" in msg and "CPU" in msg and "\n" not in msg


def test_bf16_needs_bf16_arithmetic() -> None:
    from dalp_moo.backends.openvino_backend import require_bf16

    require_bf16(["FP32", "BF16", "INT8"])
    require_bf16("['BF16', 'FP32']")
    with pytest.raises(BackendError) as exc:
        require_bf16(["FP32", "FP16", "INT8"], "CPU")
    msg = str(exc.value)
    assert "no bf16" in msg and "FP32" in msg and "\n" not in msg


def test_bad_options_are_rejected() -> None:
    with pytest.raises(BackendError, match="latency"):
        backends.get("openvino", latency="guess")
    with pytest.raises(BackendError, match="runs"):
        backends.get("openvino", runs=0)
    with pytest.raises(BackendError) as exc:
        backends.get("openvino", precision="fp64")
    msg = str(exc.value)
    assert "precision='fp64'" in msg and "'f32'" in msg and "'auto'" in msg and "\n" not in msg


def test_precision_option_sets_and_records_the_inference_precision(candidate: torch.nn.Module,
                                                                  deployment: OpenVINODeployment) -> None:
    info = backends.get("openvino").info().details
    assert info["precision"] == "f32" and info["inference_precision"] == "f32"
    assert info["plugin_default_precision"] in ("f32", "bf16", "f16")
    assert deployment.precision == "f32" and deployment.inference_precision == "f32"
    assert deployment.config["INFERENCE_PRECISION_HINT"] == "f32"
    auto = backends.get("openvino", precision="auto")
    assert "INFERENCE_PRECISION_HINT" not in compile_config("CPU", 1, precision="auto")
    assert auto.info().details["inference_precision"] == auto.info().details["plugin_default_precision"]
    if "BF16" not in device_properties("CPU").get("OPTIMIZATION_CAPABILITIES", ""):
        with pytest.raises(BackendError, match="no bf16"):
            backends.get("openvino", precision="bf16")
        pytest.skip("this CPU has no bf16 arithmetic")
    dep = backends.get("openvino", runs=3, warmup=1, precision="bf16").deploy(candidate, SHAPE)
    assert dep.inference_precision == "bf16"
    assert effective_precision("CPU", "bf16") == dep.inference_precision
    x = torch.rand(2, *SHAPE[1:])
    with torch.no_grad():
        ref = candidate(x)
    assert relative_error(dep.predict(x).numpy(), ref.numpy()) < 0.1  # bf16: ~3 significant digits


def test_profile_gives_per_node_times_with_shapes(deployment: OpenVINODeployment) -> None:
    nodes = deployment.profile(requests=3)
    convs = [n for n in nodes if n["type"] == "Convolution"]
    assert convs and all(n["time_ms"] >= 0 for n in nodes)
    assert all(len(n["in_shapes"]) >= 2 and len(n["in_shapes"][1]) >= 4 for n in convs)  # weights
    assert nodes[-1]["out_shape"] == [1, 2, *SHAPE[2:]]


@pytest.mark.skipif(not calibration_path(1).exists(), reason="host latency model not calibrated")
def test_model_latency_mode_and_estimate(candidate: torch.nn.Module) -> None:
    b = backends.get("openvino", latency="model")
    rep = b.deploy(candidate, SHAPE).latency()
    assert rep.method == "modelled" and rep.latency_ms > 0
    est = b.estimate_latency_ms(candidate, SHAPE)
    assert est == pytest.approx(rep.latency_ms)
    assert b.estimate_latency_ms(candidate, (1, 4, 128, 128)) > est


def test_cpu_clock_latency_and_its_preconditions(candidate: torch.nn.Module) -> None:
    dep = backends.get("openvino", runs=15, warmup=3, clock="cpu").deploy(candidate, SHAPE)
    rep = dep.latency()
    assert rep.method == "measured" and rep.latency_ms > 0
    # CPU time of a single-thread inference never exceeds its wall time (up to timer granularity)
    assert np.all(dep.last_cpu_times_ms <= dep.last_times_ms + 0.05)
    with pytest.raises(BackendError, match="threads=1"):
        backends.get("openvino", clock="cpu", threads=2)


def test_passes_report_the_fastest_pass(candidate: torch.nn.Module, monkeypatch: pytest.MonkeyPatch) -> None:
    backend = backends.get("openvino", runs=5, warmup=1, passes=3)
    assert backend.info().details["passes"] == 3
    dep = backend.deploy(candidate, SHAPE)
    medians: list[float] = []
    real = dep._measure_pass

    def recording(x: np.ndarray):  # type: ignore[no-untyped-def]
        out = real(x)
        medians.append(out[0].latency_ms)
        return out

    monkeypatch.setattr(dep, "_measure_pass", recording)
    rep = dep.measure()
    assert len(medians) == 3 and rep.latency_ms == min(medians)
    # the reported runs are those of the fastest pass
    assert float(np.median(dep.last_times_ms)) == pytest.approx(rep.latency_ms)
    for bad in (0, 1.5, True):
        with pytest.raises(BackendError, match="passes"):
            backends.get("openvino", passes=bad)


def test_estimates_without_a_calibration_of_the_precision_use_the_f32_one(
        candidate: torch.nn.Module, monkeypatch: pytest.MonkeyPatch, tmp_path, caplog) -> None:  # type: ignore[no-untyped-def]
    import logging

    from dalp_moo.backends import openvino_backend as ovb
    from dalp_moo.log import logger

    monkeypatch.setattr(logger, "propagate", True)
    monkeypatch.setenv("DALP_MOO_CALIBRATION_DIR", str(tmp_path))  # no user calibrations
    # a CPU computing in bf16 (host-independent: the precision the plugin would report)
    monkeypatch.setattr(ovb, "effective_precision", lambda device, precision: "bf16")
    measured = backends.get("openvino")
    with pytest.raises(BackendError, match="precision bf16"):
        measured.host_model()  # no bf16 calibration is shipped
    with caplog.at_level(logging.WARNING, logger="dalp_moo"):
        est = measured.estimate_latency_ms(candidate, SHAPE)
    from dalp_moo.backends.host_model import HostLatencyModel

    f32 = HostLatencyModel.load(threads=1, device="CPU", precision="f32")  # the f32 calibration's prediction
    assert est == pytest.approx(f32.predict_graph_of(candidate, SHAPE)[0])
    assert "no bf16 host latency calibration" in caplog.text
    with pytest.raises(BackendError, match="precision bf16"):  # modelled latencies never fall back
        backends.get("openvino", latency="model").estimate_latency_ms(candidate, SHAPE)
