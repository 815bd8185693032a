"""Degenerate FP32 trainings restarted from a new seed (``train.restarts``)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from dalp_moo.config import load_config
from dalp_moo.errors import ConfigError
from dalp_moo.evaluation import get_evaluator
from dalp_moo.evaluation.segmentation import degenerate_fit, restart_seed


def test_degenerate_fit_names_the_missing_class() -> None:
    vessel = degenerate_fit(SimpleNamespace(per_class_iou=[0.98, 0.0]))
    assert vessel.startswith("vessel IoU 0") and vessel.endswith("on the validation split")
    background = degenerate_fit(SimpleNamespace(per_class_iou=[0.0, 0.02]))
    assert background.startswith("background IoU 0") and background.endswith("on the validation split")
    assert degenerate_fit(SimpleNamespace(per_class_iou=[0.97, 0.41])) == ""


def test_restart_seeds_are_deterministic_and_new() -> None:
    seeds = [restart_seed(1234, a) for a in (1, 2, 3)]
    assert seeds == [restart_seed(1234, a) for a in (1, 2, 3)]
    assert len(set(seeds) | {1234}) == 4 and restart_seed(1235, 1) not in seeds


def test_restarts_value_is_checked() -> None:
    with pytest.raises(ConfigError, match="train.restarts"):
        load_config("smoke", overrides=[{"train": {"restarts": 9}}])


def _one(restarts: int):  # noqa: ANN202
    # a learning rate of 1e-9 leaves the output at the class prior: background everywhere; the
    # validation split of these 30 tiles holds vessels (asserted), so vessel IoU is 0 there
    cfg = load_config("smoke", overrides=[
        {"train": {"restarts": restarts, "lr": 1e-9, "finetune_lr": 1e-9, "epochs": 1,
                   "finetune_epochs": 1, "threads": 1}},
        {"data": {"n_tiles": 30, "tile_size": 32}}])
    evaluator = get_evaluator(cfg)
    assert evaluator.val_set.masks.any()
    genome = evaluator.space.repair(evaluator.space.sample(1, np.random.default_rng(0))[0])
    record, _ = evaluator.evaluate(genome)
    assert record.status == "ok", record.reason
    return record


def test_a_degenerate_training_is_restarted_and_every_restart_recorded() -> None:
    record = _one(restarts=2)
    restarts = record.extra["restarts"]
    # the first training is degenerate; a restart from another initialisation may or may not be
    assert 1 <= len(restarts) <= 2
    assert all(r["reason"].startswith("vessel IoU 0") and r["reason"].endswith("on the validation split")
               for r in restarts)
    for before, after in zip(restarts, restarts[1:], strict=False):
        assert after["seed"] == restart_seed(before["seed"], 1 + restarts.index(before))
    assert _one(restarts=2).extra["restarts"] == restarts  # deterministic
    assert "restarts" not in _one(restarts=0).extra
