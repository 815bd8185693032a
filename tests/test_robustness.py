"""Crash safety, resume, failure isolation and distributed evaluation, for real."""

from __future__ import annotations

import os
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


def test_kill_9_then_resume_equals_uninterrupted(tmp_path):
    cfg = tiny_config(search={"population": 4, "generations": 3}, train={"threads": 1})
    cfg_file = tmp_path / "cfg.toml"
    cfg_file.write_text(to_toml(cfg))
    reference = tmp_path / "reference"
    run_search(cfg, reference)
    n_reference = len((reference / "journal.jsonl").read_text().splitlines())

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

    resumed = subprocess.run([sys.executable, "-m", "dalp_moo", "-q", "run", "--resume", str(out), "--no-progress"],
                             capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    lines = journal.read_text().splitlines()
    assert len(lines) == n_reference  # nothing lost, nothing retrained
    assert _front(out) == _front(reference)


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
