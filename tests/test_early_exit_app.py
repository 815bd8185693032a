"""The early-exit application: cost annotations seen by the accelerator tracer, candidate metrics
from per-stage costs (hand-computed), config, and a tiny search end to end."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from dalp_moo.backends.accelerator import trace_layers
from dalp_moo.config import load_config
from dalp_moo.errors import ConfigError
from dalp_moo.model.mobilenetv2_ee import build_network
from dalp_moo.space.early_exit import EarlyExitSpace
from dalp_moo.training.early_exit import ExitStatistics
from problems.early_exit import APPLICATION, candidate_metrics


def test_tracer_sees_stages_branches_precisions_and_adds():
    net = build_network((2, 5, 10), ("linear", "mlp", "linear"), 5, width=0.25).annotate_costs(8, 4)
    layers = trace_layers(net, torch.zeros(1, 3, 32, 32))
    stages = [s.stage for s in layers]
    assert stages == sorted(stages) and set(stages) == {0, 1, 2}
    heads = [s for s in layers if s.branch == "exit"]
    assert {s.w_bits for s in heads} == {4} and {s.w_bits for s in layers if s.branch == "backbone"} == {8}
    # each head: max-pool then one (linear) or two (mlp) fully connected layers
    assert [s.op for s in heads] == ["pool", "fc", "pool", "fc", "fc", "pool", "fc"]
    assert sum(s.op == "add" for s in layers) == 5  # residual adds after blocks 2, 4, 6, 8, 10
    # stage 0 ends with head A..C's head: blocks 0-2; stage 1 blocks 3-5; stage 2 blocks 6-11
    first_head = next(i for i, s in enumerate(layers) if s.branch == "exit")
    assert all(s.stage == 0 for s in layers[:first_head])
    assert any(s.op == "dwconv" for s in layers)


def test_candidate_metrics_hand_computed():
    space = EarlyExitSpace()
    arch = space.decode(space.encode("C", threshold=0.9))
    # stage costs: E = (2, 8) uJ, L = (1, 3) ms; static network: E 9 uJ, L 3.5 ms
    stages = ((2.0, 8.0), (1.0, 3.0), "given")
    static = ((9.0,), (3.5,), "given")
    test = ExitStatistics(accuracy=0.9, exit_fractions=(0.6, 0.4), exit_accuracy=(0.95, 0.825),
                          head_accuracy=(0.7, 0.91), accuracy_static=0.91, samples=10)
    calib = ExitStatistics(accuracy=0.85, exit_fractions=(0.5, 0.5), exit_accuracy=(0.9, 0.8),
                           head_accuracy=(0.6, 0.88), accuracy_static=0.88, samples=10)
    m = candidate_metrics(arch, calib, test, stages, static)
    # ET_1 = 2 * 1 = 2, ET_2 = 10 * 4 = 40 (every sample pays the heads it passed); ET_base = 31.5
    assert m["et_k"] == [2.0, 40.0] and m["et_base"] == pytest.approx(31.5)
    assert m["et_avg"] == pytest.approx(0.6 * 2 + 0.4 * 40)
    assert m["calib_et_avg"] == pytest.approx(0.5 * 2 + 0.5 * 40)
    assert m["reduction"] == pytest.approx(1 - 17.2 / 31.5)
    assert m["exit_overhead"] == pytest.approx(40 / 31.5 - 1)
    assert m["calib_accuracy_drop"] == pytest.approx(0.03) and m["accuracy_drop"] == pytest.approx(0.01)
    assert m["exit_fractions"] == [0.6, 0.4] and m["final_fraction"] == 0.4 and m["exits"] == "CK"
    cons = APPLICATION.constraints(load_config("smoke", problem="early-exit"))
    assert cons[0].key == "calib_accuracy_drop" and cons[0].upper == 0.01 and cons[0].violation(m) > 0


def test_config_sections_and_errors():
    cfg = load_config("smoke", problem="early-exit", overrides=[{"constraints": {"accuracy_delta": 0.02}}])
    assert cfg.problem == "early-exit" and cfg.constraints.accuracy_delta == 0.02
    assert set(cfg.sections) == {"space", "data", "train", "accelerator"}
    assert set(APPLICATION.presets()) == {"smoke", "default", "paper"}
    keys = [o.key for o in APPLICATION.objectives(cfg)]
    assert keys == ["calib_accuracy", "calib_et_avg", "exit_overhead"]
    with pytest.raises(ConfigError, match="space.widht|widht"):
        load_config("smoke", problem="early-exit", overrides=[{"space": {"widht": 0.5}}])
    with pytest.raises(ConfigError, match="constraints.accuracy_delta"):
        load_config("smoke", problem="early-exit", overrides=[{"constraints": {"accuracy_delta": 1.5}}])
    # cache folders and threads do not change the evaluation hash; training settings do
    a = load_config("smoke", problem="early-exit")
    b = load_config("smoke", problem="early-exit", overrides=[{"data": {"cache_dir": "/tmp/x"},
                                                                 "train": {"threads": 1}}])
    c = load_config("smoke", problem="early-exit", overrides=[{"train": {"head_epochs": 3}}])
    assert a.evaluation_hash() == b.evaluation_hash() != c.evaluation_hash()


def test_tiny_search_end_to_end(tmp_path):
    from dalp_moo.results.run_folder import RunFolder
    from dalp_moo.search import run_search

    cfg = load_config("smoke", problem="early-exit", overrides=[{
        "search": {"population": 4, "generations": 2},
        "space": {"width": 0.25, "backbone_bits": "32", "exit_bits": "32", "max_exits": 4},
        "data": {"n_samples": 60},
        "train": {"epochs": 1, "qat_epochs": 0, "head_epochs": 1, "threads": 1, "batch_size": 16,
                  "joint_finetune": True, "joint_epochs": 1, "joint_candidates": 1},
        "accelerator": {"allocation": "greedy", "cache_dir": str(tmp_path / "accel")},
    }])
    outcome = run_search(cfg, tmp_path / "run")
    records = outcome.records
    assert len(records) == 8 and all(r.ok for r in records), [r.reason for r in records]
    for r in records:
        m = r.metrics
        n = m["n_exits"]
        assert len(m["exit_fractions"]) == n and sum(m["exit_fractions"]) == pytest.approx(1.0, abs=1e-5)
        assert len(m["exit_accuracy"]) == n and len(m["et_k"]) == n
        for key in ("accuracy", "accuracy_static", "et_avg", "et_base", "reduction", "calib_accuracy",
                    "calib_et_avg", "exit_overhead"):
            assert np.isfinite(m[key]), key
        assert m["reduction"] == pytest.approx(1 - m["et_avg"] / m["et_base"])
        assert r.emulated and r.backend
    # one backbone for the whole run: later candidates train at most heads, no backbone
    folder = RunFolder.open(tmp_path / "run")
    cache = tmp_path / "run" / "ee_cache"
    assert len(list(cache.glob("backbone-*.pt"))) == 1
    assert (tmp_path / "run" / "summary.json").is_file() and (tmp_path / "run" / "evaluations.csv").is_file()
    table = folder.table(records)
    assert {"accuracy", "et_avg", "reduction", "exits"} <= set(table.columns)
    meta = json.loads((tmp_path / "run" / "meta.json").read_text())
    assert "modelled" in json.dumps(meta["backend"])
    # end-of-run hook: joint fine-tuning of the best front candidate, re-measured
    tuned = json.loads((tmp_path / "run" / "finetuned.json").read_text())["candidates"]
    assert len(tuned) == 1 and tuned[0]["arch_id"] in {r.arch_id for r in outcome.front}
    assert 0 <= tuned[0]["after"]["accuracy"] <= 1 and sum(tuned[0]["after"]["exit_fractions"]) == pytest.approx(1.0)
    assert outcome.summary["joint_finetune"]["candidates"] == 1


def test_backend_must_be_the_modelled_accelerator():
    cfg = load_config("smoke", problem="early-exit")
    assert cfg.backend.name == "edgetpu-quad"
    with pytest.raises(ConfigError, match="backend.name"):
        load_config("smoke", problem="early-exit", overrides=[{"backend": {"name": "openvino"}}])
    # an explicit myriadx (the vessel application's default) is refused too, not silently ignored
    with pytest.raises(ConfigError, match="use backend.name = 'edgetpu-quad', not 'myriadx'"):
        load_config("smoke", problem="early-exit", overrides=[{"backend": {"name": "myriadx"}}])
    # a config without a backend name (library use, no preset) gets the application's default
    from dalp_moo.config import build_config
    assert build_config({"backend": {"device": "CPU"}}, problem="early-exit").backend.name == "edgetpu-quad"
    assert build_config({}, problem="vessel-segmentation").backend.name == "myriadx"
