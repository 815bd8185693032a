"""The real pipeline (generator, training, FP16 deployment, pymoo) at tiny size."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pandas as pd
import pytest
from pymoo.algorithms.moo.nsga2 import NSGA2
from pymoo.optimize import minimize

from dalp_moo.evaluation import EvaluationService
from dalp_moo.search import integer_operators, run_search
from problems import VesselSegmentationProblem
from problems.vessel_segmentation import OBJECTIVES
from tests.conftest import tiny_config

pytestmark = pytest.mark.integration


def test_smoke_search_writes_run_folder(tmp_path):
    cfg = tiny_config()
    out = run_search(cfg, tmp_path / "run")
    folder = tmp_path / "run"
    for name in ("config.toml", "meta.json", "journal.jsonl", "progress.json", "evaluations.csv",
                 "pareto.csv", "pareto.png", "summary.json"):
        assert (folder / name).is_file(), name
    table = pd.read_csv(folder / "evaluations.csv")
    assert len(table) == len(out.records) >= cfg.search.population
    assert table["arch_id"].is_unique  # duplicates are never re-evaluated
    assert (table["params"] <= cfg.constraints.param_cap).all()
    assert list(table["eval_index"]) == list(range(len(table)))
    assert set(table["generation"]) == {0, 1}
    ok = table[table.status == "ok"]
    assert ok["deployed_miou"].between(0, 1).all() and (ok["latency_ms"] > 0).all()
    assert (ok["train_time_s"] > 0).all()
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["front_size"] == len(pd.read_csv(folder / "pareto.csv")) >= 1
    assert 0 < summary["hypervolume"] <= 1
    ref = summary["hypervolume_reference"]
    assert ref["params"] == cfg.constraints.param_cap and ref["deployed_miou"] == 0.0 and ref["latency_ms"] > 0
    assert json.loads((folder / "meta.json").read_text())["hypervolume_reference"] == ref
    assert summary["emulated"] is True  # the analytic backend is not real hardware
    assert (folder / "pareto.png").stat().st_size > 5000
    front_ids = set(pd.read_csv(folder / "pareto.csv").arch_id)
    assert {p.stem for p in (folder / "ir").glob("*.xml")} == front_ids  # FP16 IR of the front
    assert summary["ir_exported"] == len(front_ids)


def test_same_seed_same_results(tmp_path):
    cfg = tiny_config(search={"population": 3, "generations": 1})
    a = run_search(cfg, tmp_path / "a").records
    b = run_search(cfg, tmp_path / "b").records
    assert [r.arch_id for r in a] == [r.arch_id for r in b]
    assert [r.objectives(OBJECTIVES) for r in a] == [r.objectives(OBJECTIVES) for r in b]
    assert [r.metrics["fp32_miou"] for r in a] == [r.metrics["fp32_miou"] for r in b]


def test_random_baseline(tmp_path):
    cfg = tiny_config(search={"algorithm": "random", "population": 3, "generations": 2})
    out = run_search(cfg, tmp_path / "r")
    assert len(out.records) == 6
    assert len({r.arch_id for r in out.records}) == 6


def test_readme_example_plain_nsga2_returns_integer_genomes():
    """pymoo's default real-valued operators: the Problem rounds and clips X, and writes the
    evaluated integer genomes back, so the result holds integer genomes."""
    cfg = tiny_config()
    problem = VesselSegmentationProblem(cfg)
    res = minimize(problem, NSGA2(pop_size=3), ("n_gen", 1), seed=1, verbose=False)
    X = np.atleast_2d(res.pop.get("X"))
    assert np.array_equal(X, np.rint(X)) and (X >= problem.xl).all() and (X <= problem.xu).all()
    assert res.F.shape[1] == 3 and np.all(res.F[:, 0] <= 0.0)  # -mIoU


def test_readme_example_integer_operators():
    cfg = tiny_config()
    problem = VesselSegmentationProblem(cfg)
    res = minimize(problem, NSGA2(pop_size=3, **integer_operators(problem.space)), ("n_gen", 2), seed=1,
                   verbose=False)
    X = np.atleast_2d(res.X)
    assert np.issubdtype(X.dtype, np.integer)
    assert all(problem.space.static_metrics(x)["params"] <= cfg.constraints.param_cap for x in X)
    assert {r.generation for r in problem.service.cache.values()} == {0, 1}


def test_problem_pickles_without_heavy_state():
    cfg = tiny_config()
    problem = VesselSegmentationProblem(cfg, service=EvaluationService(cfg))
    problem.service.evaluate_many(np.array([problem.xl]))
    blob = pickle.dumps(problem)
    assert len(blob) < 20_000
    clone = pickle.loads(blob)
    assert clone._service is None and clone.config == cfg


def test_cache_answers_duplicates_without_training():
    cfg = tiny_config()
    service = EvaluationService(cfg)
    x = np.array(service.space.xl)
    first = service.evaluate_many(np.array([x, x]), generation=0)
    assert service.n_evaluated == 1 and first[0] is first[1]
    again = service.evaluate_many(np.array([x]))
    assert service.n_evaluated == 1 and again[0] is first[0]
