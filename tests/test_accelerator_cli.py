"""``python -m dalp_moo accel sweep``: files written, figures labelled as modelled, bad input."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from dalp_moo.cli import main

try:
    import zigzag  # noqa: F401

    HAVE_ZIGZAG = True
except ImportError:  # zigzag-dse needs Python >= 3.11
    HAVE_ZIGZAG = False


@pytest.fixture(scope="module")
def cache_dir(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    """Per-layer ZigZag results persist in pytest's cache folder (a temporary one without it)."""
    cache = getattr(request.config, "cache", None)
    return str(cache.mkdir("dalp_accelerator") if cache is not None else tmp_path_factory.mktemp("accel"))


@pytest.mark.skipif(not HAVE_ZIGZAG, reason="zigzag-dse not installed")
def test_sweep_writes_json_csv_png(tmp_path: Path, cache_dir: str) -> None:
    out = tmp_path / "sweep"
    result = CliRunner().invoke(main, ["accel", "sweep", "--start", "31", "--stop", "34", "--out", str(out),
                                       "--cache-dir", cache_dir, "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "32 vs 33 channels" in result.output and "modelled" in result.output
    data = json.loads((out / "sweep.json").read_text())
    assert data["method"] == "modelled" and data["emulated"] is True and data["unroll"] == 8
    rows = {r["channels"]: r for r in data["rows"]}
    assert sorted(rows) == [31, 32, 33, 34]
    assert rows[33]["latency_cycles"] > rows[32]["latency_cycles"] == rows[31]["latency_cycles"]
    assert rows[33]["utilisation"] < rows[32]["utilisation"]
    with open(out / "sweep.csv", newline="") as f:
        table = list(csv.DictReader(f))
    assert [int(r["channels"]) for r in table] == [31, 32, 33, 34]
    png = (out / "sweep.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000


@pytest.mark.parametrize("args, message", [
    (["--start", "40", "--stop", "20"], "--stop 20 is below --start 40"),
    (["--start", "0"], "--start"),
    (["--mapping", "diagonal"], "--mapping"),
    (["--step", "1", "--start", "1", "--stop", "4000"], "at most 1024"),
])
def test_sweep_bad_input_one_line_exit_2(args: list[str], message: str, tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["accel", "sweep", *args, "--out", str(tmp_path / "x"), "--cache-dir", "",
                                       "--no-progress"])
    assert result.exit_code == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and message in lines[0], result.stderr
    assert not (tmp_path / "x").exists()


def test_sweep_bad_input_through_python_m(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "dalp_moo", "accel", "sweep", "--start", "9", "--stop", "3",
                           "--out", str(tmp_path / "x"), "--no-progress"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and proc.stderr.strip().startswith("error:") and "Traceback" not in proc.stderr
