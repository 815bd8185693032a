"""compare: one shared hypervolume reference point, mean and spread over the seeds of a setting."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from dalp_moo.cli import main
from dalp_moo.results.compare import compare
from dalp_moo.results.pareto import hypervolume
from dalp_moo.results.run_folder import RunFolder
from dalp_moo.results.view import RunView
from dalp_moo.search import run_search
from tests.conftest import tiny_config

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def other_runs(tmp_path_factory):
    """The session run's setting with seed 1, and a smaller parameter cap (another reference point)."""
    base = tmp_path_factory.mktemp("compare")
    run_search(tiny_config(search={"population": 3, "generations": 2, "seed": 1}, train={"regime": "dalp"}),
               base / "seed1")
    run_search(tiny_config(search={"population": 2, "generations": 1}, constraints={"param_cap": 60000}),
               base / "cap60k")
    return base / "seed1", base / "cap60k"


def test_one_shared_reference_point(results_run, other_runs):
    seed1, cap = other_runs
    result = compare([results_run, seed1, cap])
    own = {p.name: RunFolder.open(p).scoring().reference_point for p in (results_run, seed1, cap)}
    assert own["cap60k"]["params"] == 60000 and own["smoke"]["params"] == 100000
    assert result.reference_point["params"] == 100000  # the worst of the runs' references
    assert result.reference_point["latency_ms"] == max(r["latency_ms"] for r in own.values())
    rows = result.runs.set_index("run")
    view = RunView.load(cap)
    expected = hypervolume(view.front, view.objectives, result.reference_point)
    assert rows.loc["cap60k", "hypervolume_shared"] == pytest.approx(expected)
    assert rows.loc["cap60k", "hypervolume_own"] == pytest.approx(view.summary["hypervolume"])
    assert rows.loc["cap60k", "hypervolume_shared"] != pytest.approx(rows.loc["cap60k", "hypervolume_own"])
    # the shared reference also drives each run's hypervolume per generation
    assert result.histories["cap60k"].hypervolume.iloc[-1] == pytest.approx(expected)


def test_seeds_of_one_setting_get_mean_and_spread(results_run, other_runs):
    seed1, cap = other_runs
    result = compare([results_run, seed1, cap])
    settings = result.settings.set_index("setting")
    assert len(settings) == 2
    pair = settings[settings.runs == 2].iloc[0]
    assert pair.seeds == [0, 1]
    hv = result.runs[result.runs.seed.isin([0, 1]) & (result.runs.run != "cap60k")].hypervolume_shared.to_numpy()
    assert pair.hv_mean == pytest.approx(hv.mean()) and pair.hv_std == pytest.approx(np.std(hv, ddof=1))
    assert pair.hv_min == pytest.approx(hv.min()) and pair.hv_max == pytest.approx(hv.max())
    assert "constraints.param_cap" in settings.index[0] + settings.index[1]  # the differing key names a setting


def test_compare_command_writes_tables_and_figure(results_run, other_runs, tmp_path):
    out = CliRunner().invoke(main, ["compare", str(results_run), *map(str, other_runs), "--out", str(tmp_path)])
    assert out.exit_code == 0, out.output
    assert "shared hypervolume reference" in out.output
    data = json.loads((tmp_path / "compare.json").read_text())
    assert len(data["runs"]) == 3 and data["emulated"] is True
    assert (tmp_path / "compare.png").read_bytes().startswith(b"\x89PNG")
    assert (tmp_path / "compare_settings.csv").is_file()


def test_compare_refuses_one_line_without_runs():
    out = CliRunner().invoke(main, ["compare"])
    assert out.exit_code == 2
