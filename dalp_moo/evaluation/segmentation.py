"""Evaluator of the vessel-segmentation application: build -> train -> regime pipeline
(:func:`dalp_moo.precision.run_regimes`, deployment through the backend) -> measure.

:class:`SegmentationEvaluator` holds the heavy state of one process (data set, backend, search
space) and is created once per process by :func:`dalp_moo.evaluation.get_evaluator`.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from dalp_moo import backends
from dalp_moo.application import Constraint, first_violated
from dalp_moo.config import RunConfig
from dalp_moo.data import normalization_params, open_source
from dalp_moo.errors import DataError, EvaluationError
from dalp_moo.evaluation.evaluator import candidate_seed, derived_seed
from dalp_moo.evaluation.record import STATUS_INFEASIBLE, EvalRecord
from dalp_moo.log import logger
from dalp_moo.model import InputNorm, build_model
from dalp_moo.precision import run_regimes
from dalp_moo.space import SearchSpace
from dalp_moo.training import (
    degenerate_reason,
    estimate_training_memory_mb,
    evaluate_segmentation,
    resolve_device,
    torch_threads,
    train_model,
)

#: training tiles a backend that calibrates its deployment on data gets (OpenVINO INT8: NNCF's
#: activation statistics); the first tiles of the training split, so the same for every candidate
CALIBRATION_TILES = 128


class SegmentationEvaluator:
    """Per-process evaluation state of one vessel-segmentation :class:`RunConfig`.

    Metrics of a record: ``deployed_miou`` (the objective: validation mIoU of the model as the
    backend runs it), ``fp32_miou`` / ``ptq_miou`` / ``dalp_miou`` (regimes), ``vessel_iou``,
    ``test_miou`` (deployed model, test split), ``nonfinite_fraction``, ``latency_ms``,
    ``latency_spread_ms``, ``energy_mj`` (mJ, None when not modelled), ``latency_method``,
    ``params``, ``epochs``, ``step_ms``. mIoUs are fractions.
    """

    def __init__(self, cfg: RunConfig, space: SearchSpace, constraints: Sequence[Constraint]) -> None:
        self.cfg = cfg
        self.space = space
        self.constraints = tuple(constraints)
        self.source = open_source(cfg.data)
        if space.count is not None and getattr(space.count, "in_channels", self.source.bands) != self.source.bands:
            raise DataError(f"data source {cfg.data.source}: {self.source.bands} bands, the space counts "
                            f"parameters for {space.count.in_channels}")
        self.train_set = self.source.split("train")
        self.val_set = self.source.split("val")
        self.test_set = self.source.split("test")
        image, _ = self.val_set[0]
        self.input_shape = (1, *tuple(image.shape))
        self.norm = normalization_params(cfg.data, self.source.band_stats())
        self.backend = backends.get(cfg.backend.name, device=cfg.backend.device, **cfg.backend.options)
        self.backend_info = self.backend.info()
        from dalp_moo.precision import get_profile

        #: the numerics profile with its switches (``train.profile_options``)
        self.profile = get_profile(cfg.train.profile, **cfg.train.profile_options)
        self.device = resolve_device(cfg.train.device)
        self.config_hash = cfg.evaluation_hash()

    def describe(self) -> dict[str, Any]:
        """Backend, input normalisation and data summary (for meta.json)."""
        return {"backend": self.backend_info.__dict__,
                "input_normalization": {"method": self.cfg.data.normalization, "shift": self.norm[0],
                                        "scale": self.norm[1]},
                "data": self.source.describe()}

    def build(self, genome: np.ndarray | list[int], seed: int | None = None) -> tuple[Any, torch.nn.Module]:
        """Decode ``genome`` and build its (untrained) model with ``seed`` (default: the candidate's)."""
        arch = self.space.decode(np.asarray(genome))
        torch.manual_seed(candidate_seed(self.cfg.search.seed, arch.arch_id) if seed is None else seed)
        model = build_model(arch, self.source.bands, self.cfg.space.num_classes, InputNorm(*self.norm))
        return arch, model

    def _infeasible(self, base: dict[str, Any], metrics: dict[str, Any], violated: Constraint) -> EvalRecord:
        return EvalRecord(status=STATUS_INFEASIBLE, reason=violated.explain(metrics), metrics=metrics, **base)

    def evaluate(self, genome: np.ndarray | list[int]) -> tuple[EvalRecord, dict | None]:
        """Train and deploy one candidate. Returns the record and the artifacts ``{"weights":
        state dict of the deployed model, "diagnostics": per-layer FP16 diagnostics}`` (None for
        infeasible candidates); raises :class:`EvaluationError` on failure."""
        cfg = self.cfg
        arch = self.space.decode(np.asarray(genome))
        metrics: dict[str, Any] = dict(self.space.static_metrics(genome))
        base = dict(arch_id=arch.arch_id, genome=tuple(arch.genome), description=arch.describe(),
                    config_hash=self.config_hash, backend=self.backend_info.name,
                    emulated=self.backend_info.emulated)
        violated = first_violated(metrics, self.constraints)
        if violated is not None:
            return self._infeasible(base, metrics, violated), None
        _, model = self.build(genome)
        latency_constraints = [c for c in self.constraints if c.key == "latency_ms"]
        if latency_constraints:  # skip training candidates that cannot meet the budget
            estimated = {**metrics, "latency_ms": self.backend.estimate_latency_ms(model, self.input_shape),
                         "latency_method": "estimated"}
            violated = first_violated(estimated, latency_constraints)
            if violated is not None:
                return self._infeasible(base, estimated, violated), None
        if cfg.train.max_memory_mb > 0:
            need = estimate_training_memory_mb(model, self.input_shape, cfg.train.batch_size)
            if need > cfg.train.max_memory_mb:
                raise EvaluationError(f"memory budget exceeded: training needs about {need:.0f} MB "
                                      f"> train.max_memory_mb = {cfg.train.max_memory_mb}")
        seed = candidate_seed(cfg.search.seed, arch.arch_id)
        deadline = time.monotonic() + cfg.train.max_time_s if cfg.train.max_time_s > 0 else None

        def finetune(m: torch.nn.Module, ctx: Any) -> Any:
            return train_model(m, self.train_set, self.val_set, cfg.train, seed=seed + 1, device=self.device,
                               epochs=cfg.train.finetune_epochs, lr=cfg.train.finetune_lr,
                               forward_context=ctx, deadline=deadline, label=f"{arch.arch_id} dalp")

        regime = cfg.train.regime
        if regime == "dalp" and cfg.train.finetune_epochs == 0:
            regime = "ptq"  # nothing to fine-tune: the deployed model is the post-training one
        with torch_threads(cfg.train.threads):
            t0 = time.perf_counter()
            fit = train_model(model, self.train_set, self.val_set, cfg.train, seed=seed, device=self.device,
                              deadline=deadline, label=arch.arch_id, init_prior=True)
            restarts = []
            for attempt in range(1, cfg.train.restarts + 1):
                reason = degenerate_fit(self._score(model.cpu().eval()))
                if not reason:
                    break
                restarts.append({"seed": seed, "epochs": fit.epochs_run, "reason": reason})
                seed = restart_seed(seed, attempt)
                logger.info("%s: FP32 training ended degenerate (%s); restart %d/%d from seed %d",
                            arch.arch_id, reason, attempt, cfg.train.restarts, seed)
                _, model = self.build(genome, seed)
                fit = train_model(model, self.train_set, self.val_set, cfg.train, seed=seed, device=self.device,
                                  deadline=deadline, label=f"{arch.arch_id} restart {attempt}", init_prior=True)
            train_time = time.perf_counter() - t0
            on_data = getattr(self.backend, "needs_calibration", False)
            calibration = self.calibration_batch(CALIBRATION_TILES if on_data else 16) \
                if regime == "dalp" or on_data else None
            result = run_regimes(model, self.backend, self.input_shape, self._score, regime, self.profile,
                                 finetune_fn=finetune, calibration=calibration)
            test = self._score(result.predict, "test")
            latency = result.deployment.latency()
            # per-layer FP16/bf16 diagnostics (the emulator's); an int8 deployment has none
            diagnostics = self._diagnostics(model) if regime != "fp32" and self.profile.format != "int8" else None
            extra: dict[str, Any] = {"fp16": diagnostics["summary"]} if diagnostics else {}
            if restarts:
                extra["restarts"] = restarts
            if result.input_rescale_k is not None:
                extra["input_rescale_k"] = result.input_rescale_k
            if getattr(result.deployment, "conversion_error", None) is not None:
                extra["conversion_error"] = float(result.deployment.conversion_error)
                extra["conversion_ok"] = bool(result.deployment.conversion_ok)
            eval_time = time.perf_counter() - t0 - train_time - result.finetune_s
        deployed = result.deployed
        metrics.update(
            deployed_miou=deployed.miou,
            fp32_miou=result.fp32.miou,
            ptq_miou=result.ptq.miou if result.ptq is not None else None,
            dalp_miou=result.dalp.miou if result.dalp is not None else None,
            vessel_iou=deployed.per_class_iou[-1],
            test_miou=test.miou,
            nonfinite_fraction=deployed.nonfinite_fraction,
            latency_ms=latency.latency_ms,
            latency_spread_ms=latency.spread_ms,
            energy_mj=latency.energy_mj,
            latency_method=latency.method,
            epochs=fit.epochs_run,
            step_ms=fit.step_ms,
        )
        record = EvalRecord(**base, metrics=metrics, train_time_s=train_time + result.finetune_s,
                            eval_time_s=eval_time, extra=extra)
        weights = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
        return record, {"weights": weights, "diagnostics": diagnostics}

    def calibration_batch(self, tiles: int = CALIBRATION_TILES) -> torch.Tensor:
        """The first ``tiles`` training tiles as one batch (the same for every candidate)."""
        return torch.stack([self.train_set[i][0] for i in range(min(tiles, len(self.train_set)))])

    def _score(self, predict: Any, split: str = "val") -> Any:
        data = self.val_set if split == "val" else self.test_set
        return evaluate_segmentation(predict, data, self.cfg.space.num_classes)

    def _diagnostics(self, model: torch.nn.Module, n_tiles: int = 4) -> dict[str, Any]:
        """FP16 diagnostics of the deployed model on the first validation tiles (per layer)."""
        from dalp_moo.precision import diagnose

        batch = torch.stack([self.val_set[i][0] for i in range(min(n_tiles, len(self.val_set)))])
        return diagnose(model.cpu().eval(), self.profile, [batch])


def degenerate_fit(score: Any) -> str:
    """Why a scored model (validation split) is degenerate ("" when it is not): see
    :func:`dalp_moo.training.metrics.degenerate_reason`."""
    ious = list(score.per_class_iou)
    reason = degenerate_reason(ious[0], ious[-1])
    return f"{reason} on the validation split" if reason else ""


def restart_seed(seed: int, attempt: int) -> int:
    """Seed of restart ``attempt`` (1, 2, ...) of a training that started from ``seed`` (deterministic)."""
    return derived_seed("restart", seed, attempt)
