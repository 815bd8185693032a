"""Per-generation history: journal stamps, history.csv written per generation, rebuild from the
journal, run state (finished / unfinished)."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import pandas as pd
import pytest

from dalp_moo.evaluation.record import EvalRecord
from dalp_moo.results.checks import degenerate_reason, degenerate_warning, run_state
from dalp_moo.results.history import HISTORY_FILE, history_table, load_history
from dalp_moo.results.run_folder import RunFolder
from dalp_moo.search import run_search
from tests.conftest import tiny_config

pytestmark = pytest.mark.integration
FORMAT1 = Path(__file__).parent / "fixtures" / "run_format1"


def _time(stamp: str) -> datetime:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00"))


def test_journal_lines_carry_generation_index_and_timestamps(results_run):
    lines = [json.loads(line) for line in (results_run / "journal.jsonl").read_text().splitlines()]
    assert [d["eval_index"] for d in lines] == list(range(len(lines)))
    assert {d["generation"] for d in lines} == {0, 1}
    assert [d["generation"] for d in lines] == sorted(d["generation"] for d in lines)
    for d in lines:
        assert d["format"] == 2
        assert _time(d["ended_at"]) >= _time(d["started_at"])


def test_history_csv_per_generation(results_run):
    h = pd.read_csv(results_run / HISTORY_FILE)
    journal = [json.loads(line) for line in (results_run / "journal.jsonl").read_text().splitlines()]
    assert list(h.generation) == [0, 1]
    per_gen = pd.Series([d["generation"] for d in journal]).value_counts().sort_index()
    assert list(h.new_evaluations) == per_gen.tolist()
    assert list(h.evaluations) == per_gen.cumsum().tolist()
    # the front of everything evaluated so far only grows in hypervolume (fixed reference point)
    assert h.hypervolume.is_monotonic_increasing
    summary = json.loads((results_run / "summary.json").read_text())
    assert h.hypervolume.iloc[-1] == pytest.approx(summary["hypervolume"])
    assert h.front_size.iloc[-1] == summary["front_size"]
    assert h.best_deployed_miou.iloc[-1] == pytest.approx(summary["best_deployed_miou"])
    assert {"best_latency_ms", "best_params", "failed", "started_at", "ended_at", "elapsed_s"} <= set(h.columns)


def test_history_rebuilt_from_the_journal_equals_the_file(results_run):
    written = pd.read_csv(results_run / HISTORY_FILE)
    rebuilt = load_history(results_run, rebuild=True)
    for column in ("generation", "new_evaluations", "evaluations", "failed", "front_size"):
        assert written[column].tolist() == rebuilt[column].tolist()
    assert written.hypervolume.tolist() == pytest.approx(rebuilt.hypervolume.tolist())


def test_format1_history_infers_generations_from_journal_order():
    rebuilt = load_history(FORMAT1)  # no history.csv, no generation stamps: population 4
    assert list(rebuilt.generation) == [0, 1] and list(rebuilt.new_evaluations) == [4, 4]
    assert rebuilt.inferred.all()
    assert not (FORMAT1 / HISTORY_FILE).exists()  # rebuilding never writes into the folder


class _StopAfterFirstGeneration:
    """Interrupts the search at the start of its second generation, like Ctrl-C."""

    def __init__(self) -> None:
        self.batches = 0

    def batch_start(self, n_new: int, n_cached: int) -> None:
        self.batches += 1
        if self.batches == 2:
            raise KeyboardInterrupt

    def evaluated(self, record, cached) -> None:  # noqa: ANN001
        return None

    def batch_end(self) -> None:
        return None


@pytest.fixture(scope="module")
def interrupted_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("interrupted") / "run"
    with pytest.raises(KeyboardInterrupt):
        run_search(tiny_config(search={"population": 2, "generations": 2}), out, progress=_StopAfterFirstGeneration())
    return out


def test_interrupted_run_has_history_of_its_finished_generation_and_is_unfinished(interrupted_run):
    h = pd.read_csv(interrupted_run / HISTORY_FILE)
    assert list(h.generation) == [0] and h.evaluations.iloc[0] == 2
    folder = RunFolder.open(interrupted_run)
    state = run_state(folder)
    assert not state.finished and state.generations_done == 1 and state.generations == 2
    assert state.label == "unfinished: 1 of 2 generations done"


def test_finished_run_state(results_run):
    state = run_state(RunFolder.open(results_run))
    assert state.finished and state.label == "finished" and not state.running


def test_history_against_another_reference_point(results_run):
    folder = RunFolder.open(results_run)
    cfg = folder.config()
    scoring = folder.scoring(cfg)
    larger = {**scoring.reference_point, "params": 2 * scoring.reference_point["params"]}
    own = history_table(folder.records(), scoring, 3)
    other = history_table(folder.records(), scoring, 3, reference_point=larger)
    assert (other.hypervolume > own.hypervolume).all()  # a larger box: the front dominates more of it


def test_degenerate_candidates():
    base = dict(arch_id="0" * 12, genome=(1,))
    background = EvalRecord(**base, metrics={"deployed_miou": 0.49, "vessel_iou": 0.0})
    all_vessel = EvalRecord(**base, metrics={"deployed_miou": 0.0107, "vessel_iou": 0.0214})
    fine = EvalRecord(**base, metrics={"deployed_miou": 0.62, "vessel_iou": 0.27})
    failed = EvalRecord(**base, status="failed", metrics={"vessel_iou": 0.0})
    assert "vessel IoU 0" in degenerate_reason(background)
    assert "every pixel called vessel" in degenerate_reason(all_vessel)
    assert degenerate_reason(fine) == "" and degenerate_reason(failed) == ""
    assert degenerate_warning([background, all_vessel, fine]).startswith("2 of 3 successful candidates")
    assert degenerate_warning([background, fine, fine]) == ""  # not most of them


def test_a_held_lock_reads_as_running(results_run):
    holder = RunFolder.open(results_run)
    holder.lock()
    try:
        state = run_state(RunFolder.open(results_run))
        assert state.running and not state.finished and state.label.startswith("running")
    finally:
        holder.unlock()
    assert run_state(RunFolder.open(results_run)).finished


def test_atomic_writes_get_the_usual_permissions(tmp_path):
    import os

    from dalp_moo.results.run_folder import atomic_write_text

    old = os.umask(0o022)
    try:
        atomic_write_text(tmp_path / "summary.json", "{}")
        os.umask(0o077)
        atomic_write_text(tmp_path / "private.json", "{}")
    finally:
        os.umask(old)
    assert (tmp_path / "summary.json").stat().st_mode & 0o777 == 0o644  # shareable, like open(..., "w")
    assert (tmp_path / "private.json").stat().st_mode & 0o777 == 0o600  # the user's umask is respected
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
