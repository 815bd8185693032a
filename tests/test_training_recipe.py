"""Training recipes: losses, vessel-tile sampling, learning-rate schedule, non-finite
validation logits, and the paper's recipe as a named option."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from dalp_moo.config import DataConfig, TrainConfig
from dalp_moo.data.base import ArrayDataset
from dalp_moo.errors import ConfigError
from dalp_moo.training import degenerate_reason, focal_loss, train_model
from dalp_moo.training.losses import (
    NONFINITE_MARGIN,
    dice_loss,
    penalise_nonfinite,
    segmentation_loss,
)
from dalp_moo.training.metrics import confusion_matrix, score_from_confusion
from dalp_moo.training.trainer import lr_factor, train_loader


def _logits_for(pred: torch.Tensor, margin: float = 8.0) -> torch.Tensor:
    """Two-class logits predicting ``pred`` (``[N,H,W]`` of 0/1) with a logit margin."""
    return torch.stack([(pred == 0).float(), (pred == 1).float()], 1) * margin


def test_dice_loss_scores_the_vessel_overlap() -> None:
    target = torch.zeros(2, 8, 8, dtype=torch.long)
    target[0, 2:4, 2:6] = 1
    assert float(dice_loss(_logits_for(target), target)) < 0.01  # perfect overlap
    assert float(dice_loss(_logits_for(torch.zeros_like(target)), target)) > 0.85  # background
    # focal loss barely notices an all-background prediction (8 of 128 pixels are vessel)...
    assert float(focal_loss(_logits_for(torch.zeros_like(target)), target)) < 0.6
    # ...the balanced recipe's loss does
    balanced = segmentation_loss(_logits_for(torch.zeros_like(target)), target, "balanced")
    paper = segmentation_loss(_logits_for(torch.zeros_like(target)), target, "paper")
    assert float(balanced) > float(paper) + 0.85
    assert float(paper) == float(focal_loss(_logits_for(torch.zeros_like(target)), target))


def test_nonfinite_logits_count_as_confident_errors() -> None:
    target = torch.tensor([[[0, 1], [1, 0]]])
    logits = _logits_for(target)
    same, n = penalise_nonfinite(logits, target)
    assert n == 0 and same is logits
    logits[0, 0, 0, 1] = float("nan")
    logits[0, 1, 1, 0] = float("inf")
    fixed, n = penalise_nonfinite(logits, target)
    assert n == 2 and torch.isfinite(fixed).all()
    p_target = torch.softmax(fixed, 1).gather(1, target.unsqueeze(1)).squeeze(1)
    assert float(p_target[0, 0, 1]) < math.exp(-NONFINITE_MARGIN + 1)
    assert float(p_target[0, 1, 1]) > 0.99  # untouched pixel


def test_cosine_schedule_warms_up_and_decays() -> None:
    total = 200
    f = [lr_factor(s, total, "cosine") for s in range(total)]
    assert f[0] == pytest.approx(0.1) and max(f) == pytest.approx(1.0)
    assert all(a <= b for a, b in zip(f[:10], f[1:10], strict=False))  # warm-up
    assert all(a >= b for a, b in zip(f[10:], f[11:], strict=False))  # decay
    assert f[-1] < 1e-3
    assert {lr_factor(s, total, "constant") for s in range(total)} == {1.0}


def test_vessel_tile_sampling_and_determinism() -> None:
    rng = np.random.default_rng(0)
    images = rng.random((40, 2, 8, 8), dtype=np.float32)
    masks = np.zeros((40, 8, 8), np.uint8)
    masks[:10, 3, 3] = 1  # 10 of 40 tiles hold a vessel
    data = ArrayDataset(images, masks)

    def drawn(cfg: TrainConfig, seed: int) -> list[float]:
        return [float(m.flatten(1).amax(1).float().mean()) for _, m in train_loader(data, cfg, seed)]

    balanced = TrainConfig(batch_size=8, vessel_tiles=0.9)
    share = float(np.mean(drawn(balanced, 0)))
    assert share > 0.6  # natural share 0.25
    assert drawn(balanced, 0) == drawn(balanced, 0)  # same seed, same batches
    natural = np.mean(drawn(TrainConfig(batch_size=8), 0))
    assert natural == pytest.approx(0.25)  # shuffled: every tile once
    paper = TrainConfig(batch_size=8, recipe="paper", vessel_tiles=0.9)  # paper ignores it
    assert np.mean(drawn(paper, 0)) == pytest.approx(0.25)


def test_recipe_options_are_validated() -> None:
    for bad in ({"recipe": "fancy"}, {"schedule": "step"}, {"vessel_tiles": 1.0},
                {"dice_weight": -1.0}):
        with pytest.raises(ConfigError):
            TrainConfig(**bad)


def test_validation_under_overflowing_numerics_stays_finite() -> None:
    """A forward context that makes some logits inf (deployment numerics) gives a finite
    validation loss, and the non-finite pixels are reported per epoch."""
    from dalp_moo.data import open_source

    source = open_source(DataConfig(n_tiles=12, tile_size=16, seed=1))
    model = nn.Conv2d(4, 2, 1)

    class Poison:
        def __enter__(self) -> None:
            self.handle = model.register_forward_hook(
                lambda m, i, o: None if m.training else o.index_fill(2, torch.tensor([0]),
                                                                     float("inf")))

        def __exit__(self, *exc: object) -> None:
            self.handle.remove()

    result = train_model(model, source.split("train"), source.split("val"),
                         TrainConfig(epochs=2, batch_size=4), seed=0,
                         device=torch.device("cpu"), forward_context=Poison)
    assert math.isfinite(result.best_val_loss)
    assert all(h["val_nonfinite_pixels"] == len(source.split("val")) * 16 for h in result.history)


def test_output_bias_starts_at_the_class_prior() -> None:
    from dalp_moo.training.trainer import class_frequencies, init_output_prior

    masks = np.zeros((4, 10, 10), np.uint8)
    masks[:, :1, :2] = 1  # 2 % vessel pixels
    data = ArrayDataset(np.zeros((4, 3, 10, 10), np.float32), masks)
    assert class_frequencies(data, 2).tolist() == pytest.approx([0.98, 0.02])

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.body = nn.Conv2d(3, 4, 1)
            self.head = nn.Conv2d(4, 2, 1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.head(self.body(x))

    net = Net()
    with torch.no_grad():
        net.head.weight.zero_()
    assert init_output_prior(net, data)
    p = torch.softmax(net(torch.zeros(1, 3, 2, 2)), 1)[0, :, 0, 0]
    assert p.tolist() == pytest.approx([0.98, 0.02], abs=1e-6)
    assert not init_output_prior(nn.Conv2d(3, 2, 1, bias=False), data)


def test_degenerate_rule_on_scored_constant_predictions() -> None:
    target = torch.zeros(1, 8, 8, dtype=torch.long)
    target[0, 2:4, 2:5] = 1
    for pred, word in ((torch.zeros_like(target), "vessel"), (torch.ones_like(target), "background")):
        score = score_from_confusion(confusion_matrix(pred, target, 2))
        assert degenerate_reason(score.per_class_iou[0], score.per_class_iou[-1]).startswith(f"{word} IoU 0")
    score = score_from_confusion(confusion_matrix(target.clone(), target, 2))
    assert degenerate_reason(score.per_class_iou[0], score.per_class_iou[-1]) == ""


def test_paper_recipe_names_the_settings_a_config_changes(caplog, monkeypatch) -> None:
    from dalp_moo.config import load_config
    from dalp_moo.log import logger

    monkeypatch.setattr(logger, "propagate", True)  # a CLI test earlier in the process turns it off
    from dalp_moo.training.trainer import PAPER_SETTINGS, paper_deviations

    assert PAPER_SETTINGS == {"lr": 1e-3, "focal_alpha": 1.0, "focal_gamma": 2.0, "batch_size": 8, "patience": 3}
    assert paper_deviations(TrainConfig(recipe="paper")) == []  # the defaults are the paper's
    assert paper_deviations(TrainConfig(recipe="balanced", lr=3e-3)) == []
    assert paper_deviations(TrainConfig(recipe="paper", lr=3e-3, batch_size=4)) == [
        "lr 0.003 (paper 0.001)", "batch_size 4 (paper 8)"]
    from dalp_moo import applications

    with caplog.at_level("WARNING", logger="dalp_moo"):
        cfg = load_config("smoke", overrides=[{"train": {"recipe": "paper", "lr": 3e-3}}])
        applications.get(cfg.problem).validate(cfg)
    assert "train.recipe = 'paper' with lr 0.003 (paper 0.001)" in caplog.text
