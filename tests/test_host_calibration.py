"""Host latency calibration on this machine (real OpenVINO CPU plugin, tiny networks): the
round trip measure -> fit -> file -> load, resuming from the state file, the CLI command, its bad
input, and the openvino backend's choice of calibration and handling of device properties."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from click.testing import CliRunner

from dalp_moo.backends import host_model as hm
from dalp_moo.backends import openvino_backend as ovb
from dalp_moo.backends.calibrate import HostCalibrationConfig, MeasurementStore, calibrate_host, networks
from dalp_moo.backends.host_model import HostLatencyModel
from dalp_moo.cli import main
from dalp_moo.errors import BackendError, ConfigError

TINY = dict(n_fit_zoo=2, n_fit_space=2, n_val=2, sizes=(32,), runs=2, warmup=0, rounds=0)


@pytest.fixture(scope="module")
def calibrated(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    root = tmp_path_factory.mktemp("cal")
    cfg = HostCalibrationConfig(**TINY)
    seen: list[tuple[int, int, bool]] = []
    result = calibrate_host(cfg, work_dir=root / "work", out=root / "out",
                            progress=lambda done, n, _id, measured: seen.append((done, n, measured)))
    return cfg, root, result, seen


def test_calibration_round_trip(calibrated) -> None:  # type: ignore[no-untyped-def]
    cfg, root, result, seen = calibrated
    # 6 networks, then the 2 held-out ones measured again (repeatability)
    assert [s[0] for s in seen] == list(range(1, 9)) and all(s[1] == 8 and s[2] for s in seen)
    assert result.measured_now == 6 and result.reused == 0 and result.n_fit == 4 and result.n_val == 2
    assert result.path == hm.calibration_file(1, "CPU", "f32", directory=root / "out")
    saved = json.loads(result.path.read_text())
    assert saved["meta"]["host"] == hm.host_id() and saved["meta"]["held_out"]["n_val"] == 2
    assert saved["meta"]["calibrated_by"] == "python -m dalp_moo calibrate host"
    records = MeasurementStore(result.state_file).records
    val_ids = [n.id for n in networks(cfg) if n.role == "val"]
    diffs = [abs(records["retest-" + i]["measured_ms"] / records[i]["measured_ms"] - 1) for i in val_ids]
    assert result.n_retest == 2 and saved["meta"]["repeatability"]["n"] == 2
    assert result.retest_median_abs_diff == pytest.approx(sorted(diffs)[0] / 2 + sorted(diffs)[1] / 2)
    assert result.retest_max_abs_diff == pytest.approx(max(diffs))
    model = HostLatencyModel.load(path=result.path)
    for row, net in zip(result.val, [n for n in networks(cfg) if n.role == "val"], strict=True):
        assert model.predict_graph_of(net.model, net.shape)[0] == pytest.approx(row["predicted_ms"], rel=1e-6)
        assert row["measured_ms"] > 0
    assert 0.0 <= result.within_10pct <= 1.0 and -1.0 <= result.kendall_tau <= 1.0


def test_resume_reuses_stored_measurements_and_skips_a_torn_line(calibrated, caplog) -> None:  # type: ignore[no-untyped-def]
    cfg, root, first, _ = calibrated
    with first.state_file.open("a") as f:
        f.write('{"id": "fit-torn", "measured')  # an interrupted write
    with caplog.at_level(logging.WARNING, logger="dalp_moo"):
        again = calibrate_host(cfg, work_dir=root / "work", out=root / "again.json")
    assert "unreadable measurement skipped" in caplog.text
    assert again.measured_now == 0 and again.reused == 6 and again.path == root / "again.json"
    assert [r["measured_ms"] for r in again.val] == [r["measured_ms"] for r in first.val]
    assert again.retest_median_abs_diff == first.retest_median_abs_diff  # retests reused too
    assert len(MeasurementStore(first.state_file).records) == 8


def test_cli_command_prints_held_out_fidelity(calibrated, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    _, root, first, _ = calibrated
    monkeypatch.setenv("DALP_MOO_CALIBRATION_DIR", str(root / "user"))
    args = ["calibrate", "host", "--work-dir", str(root / "work"), "--n-fit-zoo", "2", "--n-fit-space", "2",
            "--n-val", "2", "--sizes", "32", "--runs", "2", "--warmup", "0"]
    res = CliRunner().invoke(main, args)  # same settings: every measurement comes from the state file
    assert res.exit_code == 0, res.output
    written = hm.calibration_file(1, "CPU", "f32", directory=root / "user")
    assert f"calibration: {written}" in res.output and "measured 0 networks now, 6 from" in res.output
    assert "held-out fidelity on 2 search-space candidates" in res.output and "Kendall tau" in res.output
    assert "repeatability: 2 of them measured again" in res.output
    res = CliRunner().invoke(main, args + ["--json"])
    summary = json.loads(res.stdout)
    assert summary["reused"] == 6 and summary["n_val"] == 2 and 0.0 <= summary["within_10pct"] <= 1.0


def test_cli_bad_input_is_one_line_exit_2(tmp_path: Path) -> None:
    res = CliRunner().invoke(main, ["calibrate", "host", "--sizes", "30", "--work-dir", str(tmp_path)])
    assert res.exit_code == 2
    assert "sizes must be multiples of 32" in res.output and res.output.strip().count("\n") == 0
    with pytest.raises(ConfigError, match="clock='cpu' needs threads=1"):
        HostCalibrationConfig(threads=2)


def test_supported_properties_of_an_unknown_device_are_an_error() -> None:
    assert "INFERENCE_NUM_THREADS" in ovb._supported("CPU")
    with pytest.raises(BackendError) as exc:
        ovb._supported("NO_SUCH_DEVICE")
    assert "NO_SUCH_DEVICE" in str(exc.value) and "\n" not in str(exc.value)


def test_options_a_device_does_not_accept_are_reported(caplog: pytest.LogCaptureFixture) -> None:
    ovb._WARNED_OPTIONS.clear()
    with caplog.at_level(logging.WARNING, logger="dalp_moo"):
        cfg = ovb.compile_config("AUTO", threads=1, precision="f32")
    assert "INFERENCE_NUM_THREADS" not in cfg
    assert "does not accept INFERENCE_NUM_THREADS" in caplog.text and "precision='f32'" in caplog.text
    assert ovb.compile_config("CPU", threads=1, precision="f32")["INFERENCE_NUM_THREADS"] == 1


def test_backend_says_which_calibration_it_uses(calibrated, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    _, root, result, _ = calibrated
    monkeypatch.setenv("DALP_MOO_CALIBRATION_DIR", str(root / "out"))
    b = ovb.OpenVINOBackend(latency="model")
    used = b.host_calibration()
    assert used == {"file": str(result.path), "fitted_on": hm.host_id(), "this_cpu": hm.host_id()}
    assert b.info().details["host_latency_calibration"]["file"] == str(result.path)
    assert b.host_model().meta["calibration_file"] == str(result.path)


def test_an_unrepeatable_host_is_warned_about(calibrated, tmp_path: Path, caplog,  # type: ignore[no-untyped-def]
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    from dalp_moo.log import logger

    monkeypatch.setattr(logger, "propagate", True)  # a CLI test before may have turned it off
    cfg, _, first, _ = calibrated
    work = tmp_path / "work"
    work.mkdir()
    lines = []
    for line in first.state_file.read_text().splitlines():
        if not line.endswith("}"):  # the torn line an earlier test appends
            continue
        rec = json.loads(line)
        if rec["id"].startswith("retest-"):
            rec["measured_ms"] = 1.5 * MeasurementStore(first.state_file).records[rec["id"][7:]]["measured_ms"]
        lines.append(json.dumps(rec))
    (work / first.state_file.name).write_text("\n".join(lines) + "\n")
    with caplog.at_level(logging.WARNING, logger="dalp_moo"):
        noisy = calibrate_host(cfg, work_dir=work, out=tmp_path / "noisy.json")
    assert noisy.measured_now == 0 and noisy.retest_median_abs_diff == pytest.approx(0.5)
    assert "latency is not repeatable" in caplog.text and "median 50.0 %" in caplog.text
    assert json.loads((tmp_path / "noisy.json").read_text())["meta"]["repeatability"]["median_abs_diff"] == \
        pytest.approx(0.5)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="dalp_moo"):
        calibrate_host(cfg, work_dir=first.state_file.parent, out=tmp_path / "quiet.json")
    assert ("not repeatable" in caplog.text) == (first.retest_median_abs_diff > 0.05)
