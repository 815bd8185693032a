"""The results commands on a real tiny run: show, plot, report, export (reloaded by OpenVINO and
torch), --pick, the progress bar, run -q."""

from __future__ import annotations

import io
import json
import logging
import re

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from dalp_moo.cli import main
from dalp_moo.results.plots import figures, pareto_figure
from dalp_moo.results.view import RunView

pytestmark = pytest.mark.integration
PNG = b"\x89PNG\r\n\x1a\n"


def cli(*args: str):
    return CliRunner().invoke(main, list(args))


def test_show_rounds_and_marks_the_state(results_run):
    out = cli("show", str(results_run))
    assert out.exit_code == 0, out.output
    assert "UNFINISHED" not in out.output and "hypervolume" in out.output
    assert not re.search(r"\d\.\d{6,}", out.output)  # no raw floats
    data = json.loads(cli("show", str(results_run), "--json").output)
    assert data["state"]["finished"] and data["state"]["generations_done"] == 2
    assert data["summary"]["front_size"] == len(data["front"]) and data["emulated"] is True
    assert [row["generation"] for row in data["history"]] == [0, 1]


def test_show_marks_an_unfinished_run(tmp_path):
    from dalp_moo.search import run_search
    from tests.conftest import tiny_config
    from tests.test_results_history import _StopAfterFirstGeneration

    out = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        run_search(tiny_config(search={"population": 2, "generations": 2}), out, progress=_StopAfterFirstGeneration())
    shown = cli("show", str(out))
    assert shown.exit_code == 0, shown.output
    assert "[UNFINISHED: 1 OF 2 GENERATIONS DONE]" in shown.output
    assert f"--resume {out}" in shown.output
    assert json.loads(cli("show", str(out), "--json").output)["state"]["finished"] is False


def test_plot_writes_every_figure(results_run, tmp_path):
    out = cli("plot", str(results_run), "--out", str(tmp_path / "png"))
    assert out.exit_code == 0, out.output
    names = {p.stem for p in (tmp_path / "png").iterdir()}
    assert names == {"pareto", "deployment_gap", "hypervolume", "distributions"}  # no early-exit figure here
    assert all(p.read_bytes().startswith(PNG) for p in (tmp_path / "png").iterdir())
    svg = cli("plot", str(results_run), "--out", str(tmp_path / "svg"), "--format", "svg")
    assert svg.exit_code == 0 and (tmp_path / "svg" / "pareto.svg").read_text().lstrip().startswith("<?xml")
    assert (results_run / "pareto.png").read_bytes().startswith(PNG)
    bad = cli("plot", str(results_run), "--format", "gif")
    assert bad.exit_code == 2


def test_pareto_projections_are_not_joined_and_labelled(results_run):
    view = RunView.load(results_run)
    fig = pareto_figure(view)
    panels = [ax for ax in fig.axes if ax.get_xlabel()]
    assert len(panels) == 3  # three objectives: a pairwise grid
    for ax in panels:
        for line in ax.get_lines():  # only constraint bounds (constant x or y), never a joined front
            x, y = np.asarray(line.get_xdata(), float), np.asarray(line.get_ydata(), float)
            assert np.ptp(x) == 0 or np.ptp(y) == 0
    labels = " ".join(ax.get_xlabel() + " " + ax.get_ylabel() for ax in panels)
    assert "latency (ms, modelled)" in labels  # the analytic backend's latency is a model
    assert "on-device mIoU (fraction, emulated)" in labels
    title = fig.get_suptitle()
    assert results_run.name in title and "seed 0" in title and "population 3 x 2 generations" in title
    legend_text = " ".join(t.get_text() for ax in fig.axes if ax.get_legend() for t in ax.get_legend().get_texts())
    assert "non-dominated" in legend_text and "dominated" in legend_text and "infeasible" in legend_text


def test_gap_figure_shows_the_three_regimes(results_run):
    figs = figures(RunView.load(results_run))
    texts = [t.get_text() for ax in figs["deployment_gap"].axes if ax.get_legend()
             for t in ax.get_legend().get_texts()]
    assert any("FP32" in t for t in texts) and any("ptq" in t for t in texts) and any("dalp" in t for t in texts)


def test_report_is_self_contained(results_run, tmp_path):
    out = cli("report", str(results_run), "--out", str(tmp_path / "r.html"))
    assert out.exit_code == 0, out.output
    html = (tmp_path / "r.html").read_text()
    assert html.count("data:image/png;base64,") >= 4
    assert "EMULATED" in html and "Resolved configuration" in html and "[search]" in html
    assert "Backend and environment" in html and "torch" in html
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", html)  # nothing fetched from elsewhere
    assert "<script" not in html


def _best(run) -> str:  # noqa: ANN001
    return json.loads((run / "summary.json").read_text())["best_arch_id"]


def test_export_reloads_in_openvino_and_torch(results_run, tmp_path):
    import openvino as ov

    from dalp_moo.results.export import load_exported

    arch_id = _best(results_run)
    out = cli("export", str(results_run), "--candidate", arch_id, "--out", str(tmp_path / "exp"))
    assert out.exit_code == 0, out.output
    exp = tmp_path / "exp"
    card = json.loads((exp / "model_card.json").read_text())
    assert card["arch_id"] == arch_id and card["genome"] and card["check"]["ok"]
    assert card["numerics_profile"]["name"] == "myriadx" and card["numerics_profile"]["switches"]
    assert card["data_normalisation"]["in_network"]["shift"] is not None
    assert {o["key"] for o in card["objectives"]} == {"deployed_miou", "latency_ms", "params"}
    core = ov.Core()
    model = core.read_model(str(exp / f"{arch_id}.xml"))
    constants = [op for op in model.get_ops() if op.get_type_name() == "Constant"]
    assert any(op.get_element_type() == ov.Type.f16 for op in constants)  # FP16 weights
    compiled = core.compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    x = torch.rand(card["input"]["shape"]) * 1000
    ir_out = compiled(x.numpy())[0]
    state = torch.load(exp / f"{arch_id}.pt", weights_only=True)
    assert state and all(isinstance(v, torch.Tensor) for v in state.values())
    net = load_exported(exp)
    with torch.no_grad():
        ref = net(x).numpy()
    assert ir_out.shape == ref.shape == tuple(card["output"]["shape"])
    # the IR holds the same network with weights rounded to FP16
    assert np.abs(ir_out - ref).max() <= 1e-2 * max(np.abs(ref).max(), 1e-6)


def test_export_pick_knee_and_budget(results_run, tmp_path):
    view = RunView.load(results_run)
    front_ids = {r.arch_id for r in view.front}
    out = cli("export", str(results_run), "--pick", "knee", "--out", str(tmp_path / "knee"))
    assert out.exit_code == 0, out.output
    assert json.loads((tmp_path / "knee" / "model_card.json").read_text())["arch_id"] in front_ids
    budget = max(r.metrics["latency_ms"] for r in view.front)
    out = cli("export", str(results_run), "--pick", f"best:{budget}", "--out", str(tmp_path / "best"))
    assert out.exit_code == 0, out.output
    card = json.loads((tmp_path / "best" / "model_card.json").read_text())
    assert card["arch_id"] in front_ids
    assert card["metrics"]["deployed_miou"] == max(r.metrics["deployed_miou"] for r in view.front)
    tight = min(r.metrics["latency_ms"] for r in view.front) / 2
    refused = cli("export", str(results_run), "--pick", f"best:{tight}")
    assert refused.exit_code == 2 and "no front candidate" in refused.output
    assert cli("export", str(results_run)).exit_code == 2  # neither --candidate nor --pick
    assert cli("export", str(results_run), "--pick", "median").exit_code == 2


def test_progress_bar_over_all_generations_keeps_log_lines_apart(results_run):
    from dalp_moo.log import logger
    from dalp_moo.results.console import TqdmProgress

    records = RunView.load(results_run).records
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    logger.addHandler(handler)
    old = logger.level
    logger.setLevel(logging.INFO)
    try:
        with TqdmProgress(RunView.load(results_run).objectives, total=6, generations=2, file=stream) as bar:
            bar.batch_start(3, 0)
            for r in records[:3]:
                bar.evaluated(r, cached=False)
            bar.batch_end()
            logger.info("generation 1/2: a log line")
            bar.batch_start(2, 1)
            assert bar.eta_s() is not None and bar.bar.total == 6 and bar.bar.n == 3
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old)
    text = stream.getvalue()
    assert "gen 1/2" in text and "gen 2/2" in text and "ETA" in text and "3/6" in text
    assert "\ngeneration 1/2: a log line\n" in text.replace("\r", "\n")  # on its own line, not inside the bar


def test_run_accepts_quiet():
    out = cli("run", "-q", "--population", "0")
    assert out.exit_code == 2 and "no such option" not in out.output.lower()
    assert "search.population" in out.output
