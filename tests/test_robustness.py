"""Crash safety, resume, failure isolation and distributed evaluation, for real."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from dalp_moo.config import to_toml
from dalp_moo.evaluation import STATUS_FAILED, STATUS_OK, EvaluationService, evaluate_genome, get_space
from dalp_moo.search import run_search
from problems.vessel_segmentation import OBJECTIVES
from tests.conftest import tiny_config

pytestmark = pytest.mark.integration


def _front(folder: Path) -> list[tuple]:
    df = pd.read_csv(folder / "pareto.csv")
    return sorted(zip(df.arch_id, df.deployed_miou.round(10), df.latency_ms.round(10), df.params, strict=True))


def _journal(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / "journal.jsonl").read_text().splitlines() if line.strip()]


def _replayable(reference: list[dict], journal: list[dict]) -> int:
    """Leading generations of ``reference`` whose candidates are all in ``journal``."""
    have = {d["arch_id"] for d in journal}
    n_gen = max(d["generation"] for d in reference) + 1
    for g in range(n_gen):
        if not {d["arch_id"] for d in reference if d["generation"] == g} <= have:
            return g
    return n_gen


def test_kill_9_then_resume_equals_uninterrupted(tmp_path):
    """kill -9 in the middle of a generation; the resume replays the seeded search against the
    journal (no pickle), retrains nothing that finished, journals and counts nothing twice."""
    cfg = tiny_config(search={"population": 4, "generations": 3}, train={"threads": 1})
    cfg_file = tmp_path / "cfg.toml"
    cfg_file.write_text(to_toml(cfg))
    reference = tmp_path / "reference"
    run_search(cfg, reference)
    n_reference = len((reference / "journal.jsonl").read_text().splitlines())
    assert not (reference / "checkpoint.pkl").exists()

    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "dalp_moo", "-q", "run", "--config", str(cfg_file), "--no-progress", "--out", str(out)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    journal = out / "journal.jsonl"
    deadline = time.time() + 240
    while time.time() < deadline:  # kill in the middle of the second generation
        if journal.exists() and len(journal.read_text().splitlines()) >= 6:
            break
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done_before = len(journal.read_text().splitlines())
    assert 0 < done_before < n_reference
    before = _journal(out)
    replayable = _replayable(_journal(reference), before)

    resumed = subprocess.run([sys.executable, "-m", "dalp_moo", "run", "--resume", str(out), "--no-progress"],
                             capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    lines = _journal(out)
    assert len(lines) == n_reference  # nothing lost, nothing retrained
    assert lines[:done_before] == before  # the journal was only appended to
    assert [d["eval_index"] for d in lines] == list(range(n_reference))
    assert len({d["arch_id"] for d in lines}) == n_reference  # nothing journaled twice
    assert _front(out) == _front(reference)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["evaluations"] == json.loads((reference / "summary.json").read_text())["evaluations"]
    assert f"resuming {out}: {done_before} finished evaluations" in resumed.stderr
    if replayable:  # the message counts the generations answered from the journal
        assert f"replayed generations 1-{replayable} of 3 from the journal" in resumed.stderr, resumed.stderr
        assert f"continuing with generation {replayable + 1}" in resumed.stderr
    cached = [int(n) for n in re.findall(r"evaluating \d+ new candidates \((\d+) cached\)", resumed.stderr)]
    assert sum(cached) >= done_before  # progress shows the journal's evaluations as cached
    assert json.loads((out / "meta.json").read_text())["resumes"][0]["finished_evaluations"] == done_before


def test_resume_extends_a_finished_run(tmp_path):
    """``--resume DIR --generations N`` (or N written into config.toml) continues a finished
    run: the result equals a run started with N generations."""
    from click.testing import CliRunner

    from dalp_moo.cli import main

    short = tiny_config(search={"population": 2, "generations": 1}, train={"threads": 1})
    longer = tiny_config(search={"population": 2, "generations": 2}, train={"threads": 1})
    run_search(longer, tmp_path / "reference")
    expected = [(d["arch_id"], d["generation"]) for d in _journal(tmp_path / "reference")]

    flag = tmp_path / "flag"
    run_search(short, flag)
    result = CliRunner().invoke(main, ["run", "--resume", str(flag), "--generations", "2", "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "search.generations 1 -> 2 (the run is extended)" in result.stderr
    assert "replayed generations 1-1 of 2" in result.stderr
    assert [(d["arch_id"], d["generation"]) for d in _journal(flag)] == expected
    assert _front(flag) == _front(tmp_path / "reference")
    assert "generations = 2" in (flag / "config.toml").read_text()
    meta = json.loads((flag / "meta.json").read_text())
    assert meta["resumes"][-1]["changes"] == {"search.generations": [1, 2]}
    assert meta["config"]["search"]["generations"] == 2

    edited = tmp_path / "edited"
    run_search(short, edited)
    text = (edited / "config.toml").read_text()
    (edited / "config.toml").write_text(text.replace("generations = 1", "generations = 2"))
    run_search(None, edited, resume=True)
    assert [(d["arch_id"], d["generation"]) for d in _journal(edited)] == expected
    assert _front(edited) == _front(tmp_path / "reference")

    journal = (flag / "journal.jsonl").read_bytes()
    shorter = CliRunner().invoke(main, ["run", "--resume", str(flag), "--generations", "1"])
    assert shorter.exit_code == 2 and "journal holds evaluations of 2 generations" in shorter.stderr
    assert (flag / "journal.jsonl").read_bytes() == journal


def test_full_disk_is_one_line_and_resume_after_freeing_space_equals_uninterrupted(tmp_path):
    """A real full disk: the run folder on a 512 KiB tmpfs (in a user and mount namespace, so no
    privileges are needed); the run stops with one line naming the folder, nothing finished is
    lost, and after the tmpfs is grown a resume gives the uninterrupted result."""
    if shutil.which("unshare") is None:
        pytest.skip("needs unshare(1)")
    probe = subprocess.run(["unshare", "-rm", "sh", "-c", f"mount -t tmpfs -o size=1m tmpfs {tmp_path}"],
                           capture_output=True, text=True)
    if probe.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs in a user namespace here: {probe.stderr.strip()}")
    cfg = tiny_config(search={"population": 3, "generations": 2}, train={"threads": 1})
    cfg_file = tmp_path / "cfg.toml"
    cfg_file.write_text(to_toml(cfg))
    reference = tmp_path / "reference"
    run_search(cfg, reference)
    disk, kept = tmp_path / "disk", tmp_path / "kept"
    disk.mkdir()
    run = f"{sys.executable} -m dalp_moo run --config {cfg_file} --no-progress --out {disk}/run"
    resume = f"{sys.executable} -m dalp_moo -q run --resume {disk}/run --no-progress"
    script = f"""
mount -t tmpfs -o size=512k tmpfs {disk} || exit 99
{run} 2> {tmp_path}/full.err; echo $? > {tmp_path}/full.rc
cp {disk}/run/journal.jsonl {tmp_path}/journal-at-full
mount -o remount,size=64m {disk}
{resume} 2> {tmp_path}/resume.err; echo $? > {tmp_path}/resume.rc
cp -a {disk}/run {kept}
"""
    done = subprocess.run(["unshare", "-rm", "bash", "-c", script], capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr
    err = (tmp_path / "full.err").read_text()
    errors = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert (tmp_path / "full.rc").read_text().strip() == "2", err
    assert len(errors) == 1 and "the disk is full" in errors[0] and f"{disk}/run" in errors[0], err
    assert "Traceback" not in err
    raw = (tmp_path / "journal-at-full").read_text()
    at_full = raw.splitlines() if raw.endswith("\n") else raw.splitlines()[:-1]  # a torn line is redone
    n_reference = len(_journal(reference))
    assert 0 < len(at_full) < n_reference
    assert (tmp_path / "resume.rc").read_text().strip() == "0", (tmp_path / "resume.err").read_text()
    final = (kept / "journal.jsonl").read_text().splitlines()
    assert final[:len(at_full)] == at_full and len(final) == n_reference  # nothing lost, nothing twice
    assert _front(kept) == _front(reference)


def test_failed_candidates_are_recorded_and_search_goes_on(tmp_path):
    # real failures: a memory budget that the larger candidates exceed
    cfg = tiny_config(search={"population": 6, "generations": 2}, train={"max_memory_mb": 13})
    out = run_search(cfg, tmp_path / "run")
    statuses = [r.status for r in out.records]
    assert STATUS_FAILED in statuses and STATUS_OK in statuses
    failed = [r for r in out.records if r.status == STATUS_FAILED]
    assert all("memory budget exceeded" in r.reason for r in failed)
    assert all(r.objectives(OBJECTIVES) == (0.0, 1e6, 1e9) for r in failed)
    space = get_space(cfg)  # failed records count parameters with the data source's bands
    assert all(r.metrics["params"] == space.static_metrics(r.genome)["params"] for r in failed)
    assert all(r.started_at and r.ended_at >= r.started_at for r in out.records)
    assert out.summary["front_size"] >= 1
    assert all(r.ok for r in out.front)


def test_crashing_candidate_becomes_a_record():
    # 5 units need tiles of at least 32 px: at 16 px the fifth pooling raises inside torch
    cfg = tiny_config(data={"tile_size": 16})
    space = get_space(cfg)
    genome = space.canonical(np.zeros(space.n_var, dtype=int))
    genome[0] = 2  # 5 units
    record = evaluate_genome(cfg, genome.tolist())
    assert record.status == STATUS_FAILED and "RuntimeError" in record.reason
    assert record.metrics["params"] > 0


def test_divergence_is_detected():
    import torch

    from dalp_moo.data import open_source
    from dalp_moo.errors import EvaluationError
    from dalp_moo.model import build_model
    from dalp_moo.training import train_model

    cfg = tiny_config()
    space = get_space(cfg)
    model = build_model(space.decode(np.zeros(space.n_var, dtype=int)), 4)
    with torch.no_grad():  # a candidate whose outputs overflow FP32 on raw inputs
        model.head.weight.fill_(1e38)
    source = open_source(cfg.data)
    with pytest.raises(EvaluationError, match="non-finite training loss"):
        train_model(model, source.split("train"), source.split("val"), cfg.train, seed=0,
                    device=torch.device("cpu"))


def test_shared_cache_across_runs(tmp_path):
    cache = str(tmp_path / "shared-cache")
    cfg = tiny_config(search={"cache_dir": cache})
    first = run_search(cfg, tmp_path / "one")
    service_hits = []

    class Counting:
        def batch_start(self, n_new, n_cached):
            service_hits.append((n_new, n_cached))

        def evaluated(self, record, cached):
            pass

        def batch_end(self):
            pass

    second = run_search(cfg, tmp_path / "two", progress=Counting())
    assert sum(new for new, _ in service_hits) == 0  # everything came from the shared cache
    assert [r.arch_id for r in second.records] == [r.arch_id for r in first.records]
    assert _front(tmp_path / "two") == _front(tmp_path / "one")


def test_relative_cache_dir_cannot_escape(tmp_path):
    from dalp_moo.errors import ConfigError

    cfg = tiny_config(search={"cache_dir": "../../elsewhere"})
    with pytest.raises(ConfigError, match="escapes the run folder"):
        run_search(cfg, tmp_path / "run")
    cfg = tiny_config(data={"cache_dir": "../outside"})
    with pytest.raises(ConfigError, match="escapes the run folder"):
        run_search(cfg, tmp_path / "run2")
    cfg = tiny_config(data={"cache_dir": "data-cache", "seed": 7}, search={"population": 2, "generations": 1})
    run_search(cfg, tmp_path / "run3")
    assert any((tmp_path / "run3" / "data-cache").iterdir())


def test_two_worker_local_dask_cluster(tmp_path):
    cfg = tiny_config(search={"population": 4, "generations": 1, "workers": 2}, train={"threads": 1})
    out = run_search(cfg, tmp_path / "dask")
    assert len(out.records) == 4 and all(r.ok for r in out.records)
    serial = run_search(tiny_config(search={"population": 4, "generations": 1}, train={"threads": 1}),
                        tmp_path / "serial")
    by_id = {r.arch_id: r for r in serial.records}
    for r in out.records:
        assert r.objectives(OBJECTIVES) == by_id[r.arch_id].objectives(OBJECTIVES)


def test_evaluation_service_deduplicates_rows():
    cfg = tiny_config()
    service = EvaluationService(cfg)
    space = service.space
    g = space.canonical(np.zeros(space.n_var, dtype=int))
    same_arch = g.copy()
    same_arch[-1] = space.xu[-1]  # a gene of a switched-off unit
    records = service.evaluate_many(np.array([g, same_arch]))
    assert service.n_evaluated == 1 and records[0] is records[1]


def test_artifacts_saved_and_loaded_safely(tmp_path):
    import torch

    from dalp_moo.errors import RunFolderError
    from dalp_moo.evaluation.artifacts import ArtifactStore

    cfg = tiny_config(search={"population": 2, "generations": 1}, train={"regime": "dalp"})
    out = run_search(cfg, tmp_path / "run")
    store = ArtifactStore(tmp_path / "run")
    for r in out.records:
        weights = store.weights(r.arch_id)
        assert all(isinstance(v, torch.Tensor) for v in weights.values())
        diag = store.diagnostics(r.arch_id)
        assert diag["summary"]["profile"] == "myriadx" and diag["layers"]
        assert all(r.metrics[k] is not None for k in ("dalp_miou", "ptq_miou", "fp32_miou"))
    with pytest.raises(RunFolderError, match="not an architecture ID"):
        store.weights("../../etc/passwd")
    # a pickle that would run code is refused by weights_only loading
    evil = store.weights_dir / "0123456789ab.pt"

    class Boom:
        def __reduce__(self):
            return (os.system, ("true",))

    torch.save({"x": Boom()}, evil)
    with pytest.raises(RunFolderError, match="unreadable"):
        store.weights("0123456789ab")
