"""Memory layout of FP32 training (``train.memory_format``): channels_last and contiguous train
the same model up to float rounding, the model comes back in NCHW, aligned fine-tuning stays
NCHW, and bad values are refused."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from dalp_moo.config import SpaceConfig, TrainConfig
from dalp_moo.data.base import ArrayDataset
from dalp_moo.errors import ConfigError
from dalp_moo.model import build_model
from dalp_moo.space import SearchSpace
from dalp_moo.training import train_model
from dalp_moo.training.trainer import training_layout


def _data(seed: int, n: int = 16, size: int = 32) -> ArrayDataset:
    rng = np.random.default_rng(seed)
    masks = np.zeros((n, size, size), np.int64)
    images = rng.normal(500.0, 50.0, (n, 4, size, size)).astype(np.float32)
    for i in range(n):
        r, c = rng.integers(2, size - 6, 2)
        masks[i, r:r + 4, c:c + 3] = 1
        images[i, :, r:r + 4, c:c + 3] += 400.0
    return ArrayDataset(images, masks)


def _model() -> torch.nn.Module:
    space = SearchSpace(SpaceConfig(), param_cap=10**9)
    torch.manual_seed(0)
    return build_model(space.decode(space.sample(1, np.random.default_rng(3))[0]), 4, 2)


def _train(fmt: str, forward_context=None) -> tuple[torch.nn.Module, float, list[float]]:
    cfg = TrainConfig(epochs=2, batch_size=4, memory_format=fmt)
    model = _model()
    result = train_model(model, _data(0), _data(1), cfg, seed=5, device=torch.device("cpu"),
                         forward_context=forward_context)
    return model, result.best_val_loss, [h["train_loss"] for h in result.history]


def test_layout_follows_the_config_and_stays_nchw_under_an_aligned_forward() -> None:
    assert training_layout(TrainConfig(), aligned=False) is torch.channels_last  # the default
    assert training_layout(TrainConfig(memory_format="contiguous"), aligned=False) is torch.contiguous_format
    assert training_layout(TrainConfig(), aligned=True) is torch.contiguous_format
    with pytest.raises(ConfigError, match="train.memory_format"):
        TrainConfig(memory_format="nhwc")
    # configs of other applications without the key train in NCHW
    legacy = dataclasses.make_dataclass("Legacy", [("recipe", str, "paper")])()
    assert training_layout(legacy, aligned=False) is torch.contiguous_format


def test_channels_last_trains_the_same_model_up_to_rounding() -> None:
    fast, fast_loss, fast_curve = _train("channels_last")
    plain, plain_loss, plain_curve = _train("contiguous")
    assert np.isfinite(fast_loss)
    assert fast_loss == pytest.approx(plain_loss, rel=1e-3)
    assert fast_curve == pytest.approx(plain_curve, rel=1e-3)
    for (name, a), (_, b) in zip(fast.state_dict().items(), plain.state_dict().items(), strict=True):
        assert torch.allclose(a.float(), b.float(), rtol=1e-3, atol=1e-4), name
    # handed back in the standard layout (deployment and conversion read NCHW weights)
    convs = [m for m in fast.modules() if isinstance(m, torch.nn.Conv2d)]
    assert convs and all(m.weight.is_contiguous() for m in convs)


def test_channels_last_training_is_deterministic() -> None:
    a = _train("channels_last")
    b = _train("channels_last")
    assert a[1] == b[1] and a[2] == b[2]
    for (name, x), (_, y) in zip(a[0].state_dict().items(), b[0].state_dict().items(), strict=True):
        assert torch.equal(x, y), name
