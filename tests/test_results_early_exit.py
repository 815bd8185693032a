"""Results of an early-exit run: the early-exit figure (accuracy vs expected ET, static networks
marked, exit fractions), the report, and export refusing a run without stored weights."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from dalp_moo.cli import main
from dalp_moo.config import load_config
from dalp_moo.results.plots import early_exit_figure, figures
from dalp_moo.results.view import RunView
from dalp_moo.search import run_search

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def early_exit_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("ee") / "run"
    cfg = load_config("smoke", problem="early-exit",
                      overrides=[{"search": {"population": 3, "generations": 2}, "data": {"n_samples": 80}}])
    run_search(cfg, out)
    return out


def test_early_exit_figures(early_exit_run):
    view = RunView.load(early_exit_run)
    figs = figures(view)
    assert {"pareto", "early_exit", "hypervolume", "distributions"} <= set(figs)
    assert "deployment_gap" not in figs  # no FP32 / post-training mIoUs in this application
    left, right = [ax for ax in early_exit_figure(view).axes if ax.get_xlabel()][:2]
    assert "modelled" in left.get_xlabel() and "test split" in left.get_ylabel()
    legend = [t.get_text() for t in left.get_legend().get_texts()]
    assert any("static network" in t for t in legend)
    assert "exit" in right.get_xlabel() and right.patches  # one bar segment per exit of the shown candidates
    fractions = {}
    for patch in right.patches:
        row = round(patch.get_y() + patch.get_height() / 2)
        fractions[row] = fractions.get(row, 0.0) + patch.get_width()
    assert all(total == pytest.approx(1.0, abs=1e-3) for total in fractions.values())  # exit shares sum to 1


def test_early_exit_plot_report_and_export_refusal(early_exit_run, tmp_path):
    out = CliRunner().invoke(main, ["plot", str(early_exit_run), "--out", str(tmp_path)])
    assert out.exit_code == 0, out.output
    assert (tmp_path / "early_exit.png").is_file()
    assert CliRunner().invoke(main, ["report", str(early_exit_run)]).exit_code == 0
    refused = CliRunner().invoke(main, ["export", str(early_exit_run), "--pick", "knee"])
    assert refused.exit_code == 2 and "no stored weights" in refused.output
