"""``train.profile_options`` reach the deployed forward and the aligned training forward alike
(one profile object per evaluation, with its switches)."""

from __future__ import annotations

import numpy as np

from dalp_moo.config import load_config
from dalp_moo.evaluation import get_evaluator
from dalp_moo.precision import regimes


def test_profile_options_reach_deployment_and_aligned_training(monkeypatch) -> None:
    cfg = load_config("smoke", overrides=[
        {"train": {"regime": "dalp", "epochs": 1, "finetune_epochs": 1, "threads": 1,
                   "profile_options": {"overflow": "saturate", "resize_mode": "model"}}},
        {"data": {"n_tiles": 20, "tile_size": 32}}])
    evaluator = get_evaluator(cfg)
    seen: list[tuple[str, object]] = []
    real_deploy, real_context = evaluator.backend.deploy, regimes.aligned_context

    def deploy(model, input_shape, profile=None, **kw):  # noqa: ANN001, ANN202 (spy: the real call)
        seen.append(("deploy", profile))
        return real_deploy(model, input_shape, profile=profile, **kw)

    def context(model, profile, *args, **kw):  # noqa: ANN001, ANN202
        seen.append(("aligned training", profile))
        return real_context(model, profile, *args, **kw)

    monkeypatch.setattr(evaluator.backend, "deploy", deploy)
    monkeypatch.setattr(regimes, "aligned_context", context)
    genome = evaluator.space.repair(evaluator.space.sample(1, np.random.default_rng(0))[0])
    record, _ = evaluator.evaluate(genome)
    assert record.status == "ok", record.reason
    # ptq deployment, aligned fine-tuning, dalp deployment
    assert [where for where, _ in seen] == ["deploy", "aligned training", "deploy"]
    for _, profile in seen:
        assert profile.name == "myriadx" and profile.weights_analysis
        assert profile.overflow == "saturate" and profile.resize_mode == "model"
