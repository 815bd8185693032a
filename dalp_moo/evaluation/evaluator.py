"""Evaluation of one candidate: build -> train (regime) -> deploy on a backend -> measure.

:class:`Evaluator` holds the heavy state of one process (data set, backend, search space); it is
created once per process (or Dask worker) by :func:`get_evaluator` and reused for every
candidate. :func:`evaluate_genome` never raises: a failing candidate becomes a record with
``status = "failed"`` and the reason.
"""

from __future__ import annotations

import hashlib
import time
import traceback
from typing import Any

import numpy as np
import torch

from dalp_moo import backends
from dalp_moo.config import RunConfig
from dalp_moo.data import normalization_params, open_source
from dalp_moo.errors import EvaluationError
from dalp_moo.evaluation.record import STATUS_FAILED, STATUS_INFEASIBLE, EvalRecord
from dalp_moo.log import logger
from dalp_moo.model import InputNorm, build_model
from dalp_moo.space import SearchSpace, count_params
from dalp_moo.training import (
    estimate_training_memory_mb,
    evaluate_segmentation,
    resolve_device,
    torch_threads,
    train_model,
)


def candidate_seed(search_seed: int, arch_id: str) -> int:
    """Seed of one candidate's initialisation and data order: depends on the run seed and the
    architecture only, so a cached result equals a recomputed one."""
    digest = hashlib.sha256(f"{search_seed}:{arch_id}".encode()).digest()
    return int.from_bytes(digest[:4], "little")


class Evaluator:
    """Per-process evaluation state for one :class:`RunConfig`."""

    def __init__(self, cfg: RunConfig) -> None:
        self.cfg = cfg
        self.space = SearchSpace(cfg.space)
        self.source = open_source(cfg.data)
        self.train_set = self.source.split("train")
        self.val_set = self.source.split("val")
        self.test_set = self.source.split("test")
        image, _ = self.val_set[0]
        self.input_shape = (1, *tuple(image.shape))
        self.norm = normalization_params(cfg.data, self.source.band_stats())
        self.backend = backends.get(cfg.backend.name, device=cfg.backend.device, **cfg.backend.options)
        self.backend_info = self.backend.info()
        self.device = resolve_device(cfg.train.device)
        self.config_hash = cfg.evaluation_hash()

    def build(self, genome: np.ndarray | list[int]) -> tuple[Any, torch.nn.Module]:
        """Decode ``genome`` and build its (untrained) model with the candidate's seed."""
        arch = self.space.decode(np.asarray(genome))
        torch.manual_seed(candidate_seed(self.cfg.search.seed, arch.arch_id))
        model = build_model(arch, self.source.bands, self.cfg.space.num_classes, InputNorm(*self.norm))
        return arch, model

    def evaluate(self, genome: np.ndarray | list[int]) -> EvalRecord:
        """Train and deploy one candidate; raises :class:`EvaluationError` on failure."""
        return self.evaluate_with_weights(genome)[0]

    def evaluate_with_weights(self, genome: np.ndarray | list[int]) -> tuple[EvalRecord, dict | None]:
        """:meth:`evaluate`, also returning artifacts: ``{"weights": state dict of the deployed
        model, "diagnostics": per-layer FP16 diagnostics}`` (None for infeasible candidates)."""
        cfg = self.cfg
        arch = self.space.decode(np.asarray(genome))
        params = count_params(arch, self.source.bands, cfg.space.num_classes)
        base = dict(arch_id=arch.arch_id, genome=arch.genome, description=arch.describe(),
                    config_hash=self.config_hash, params=params, backend=self.backend_info.name,
                    emulated=self.backend_info.emulated)
        if params > cfg.space.param_cap:
            return EvalRecord(status=STATUS_INFEASIBLE, reason=f"{params} parameters > cap {cfg.space.param_cap}",
                              **base), None
        _, model = self.build(genome)
        if cfg.backend.latency_budget_ms > 0:  # skip training candidates that cannot meet the budget
            estimate = self.backend.estimate_latency_ms(model, self.input_shape)
            if estimate > cfg.backend.latency_budget_ms:
                return EvalRecord(status=STATUS_INFEASIBLE, latency_ms=estimate, latency_method="estimated",
                                  reason=f"estimated latency {estimate:.3f} ms > budget {cfg.backend.latency_budget_ms} ms",
                                  **base), None
        if cfg.train.max_memory_mb > 0:
            need = estimate_training_memory_mb(model, self.input_shape, cfg.train.batch_size)
            if need > cfg.train.max_memory_mb:
                raise EvaluationError(f"memory budget exceeded: training needs about {need:.0f} MB "
                                      f"> train.max_memory_mb = {cfg.train.max_memory_mb}")
        seed = candidate_seed(cfg.search.seed, arch.arch_id)
        deadline = time.monotonic() + cfg.train.max_time_s if cfg.train.max_time_s > 0 else None
        with torch_threads(cfg.train.threads):
            t0 = time.perf_counter()
            result = train_model(model, self.train_set, self.val_set, cfg.train, seed=seed,
                                 device=self.device, deadline=deadline, label=arch.arch_id)
            train_time = time.perf_counter() - t0
            measures, deployment, deployed_score, test, finetune_s = self._regimes(model, seed, deadline, arch.arch_id)
            latency = deployment.latency()
            diagnostics = self._diagnostics(model) if cfg.train.regime != "fp32" else None
            extra: dict[str, Any] = {"fp16": diagnostics["summary"]} if diagnostics else {}
            if "input_rescale_k" in measures:
                extra["input_rescale_k"] = measures.pop("input_rescale_k")
            if getattr(deployment, "conversion_error", None) is not None:
                extra["conversion_error"] = float(deployment.conversion_error)
                extra["conversion_ok"] = bool(deployment.conversion_ok)
            eval_time = time.perf_counter() - t0 - train_time - finetune_s
        record = EvalRecord(
            **base,
            **measures,
            deployed_miou=deployed_score.miou,
            vessel_iou=deployed_score.per_class_iou[-1],
            test_miou=test.miou,
            nonfinite_fraction=deployed_score.nonfinite_fraction,
            latency_ms=latency.latency_ms,
            latency_spread_ms=latency.spread_ms,
            energy_mj=latency.energy_mj,
            latency_method=latency.method,
            epochs=result.epochs_run,
            train_time_s=train_time + finetune_s,
            eval_time_s=eval_time,
            step_ms=result.step_ms,
            extra=extra,
        )
        weights = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
        return record, {"weights": weights, "diagnostics": diagnostics}

    def _score(self, predict: Any, split: str = "val") -> Any:
        data = self.val_set if split == "val" else self.test_set
        return evaluate_segmentation(predict, data, self.cfg.space.num_classes)

    def _regimes(self, model: torch.nn.Module, seed: int, deadline: float | None, label: str) -> tuple:
        """Score ``model`` under the configured regime; ``dalp`` fine-tunes it in place under the
        deployment profile. Returns measures, the deployment, its val and test scores and the
        fine-tuning time (s)."""
        cfg = self.cfg
        model = model.cpu().eval()
        fp32 = self._score(model)
        measures: dict[str, Any] = {"fp32_miou": fp32.miou}
        deployment = self.backend.deploy(model, self.input_shape, profile=cfg.train.profile)
        if cfg.train.regime == "fp32":
            return measures, deployment, fp32, self._score(model, "test"), 0.0
        score = self._score(deployment.predict)
        measures["ptq_miou"] = score.miou
        finetune_s = 0.0
        if cfg.train.regime == "dalp" and cfg.train.finetune_epochs > 0:
            from dalp_moo.precision import aligned_context
            from dalp_moo.precision.headroom import rescale_input_for_headroom

            t0 = time.perf_counter()
            calibration = torch.stack([self.train_set[i][0] for i in range(min(16, len(self.train_set)))])
            measures["input_rescale_k"] = rescale_input_for_headroom(model, calibration, cfg.train.profile)
            train_model(model, self.train_set, self.val_set, cfg.train, seed=seed + 1, device=self.device,
                        epochs=cfg.train.finetune_epochs, lr=cfg.train.finetune_lr,
                        forward_context=aligned_context(model, cfg.train.profile), deadline=deadline,
                        label=f"{label} dalp")
            finetune_s = time.perf_counter() - t0
            model = model.cpu().eval()
            deployment = self.backend.deploy(model, self.input_shape, profile=cfg.train.profile)
            score = self._score(deployment.predict)
            measures["dalp_miou"] = score.miou
        return measures, deployment, score, self._score(deployment.predict, "test"), finetune_s

    def _diagnostics(self, model: torch.nn.Module, n_tiles: int = 4) -> dict[str, Any]:
        """FP16 diagnostics of the deployed model on the first validation tiles (per layer)."""
        from dalp_moo.precision import diagnose

        batch = torch.stack([self.val_set[i][0] for i in range(min(n_tiles, len(self.val_set)))])
        return diagnose(model.cpu().eval(), self.cfg.train.profile, [batch])


_EVALUATORS: dict[str, Evaluator] = {}


def get_evaluator(cfg: RunConfig) -> Evaluator:
    """The process-wide :class:`Evaluator` for ``cfg`` (data loaded once per process)."""
    key = cfg.evaluation_hash()
    if key not in _EVALUATORS:
        _EVALUATORS.clear()
        _EVALUATORS[key] = Evaluator(cfg)
    return _EVALUATORS[key]


def failed_record(cfg: RunConfig, genome: np.ndarray | list[int], reason: str, **extra: Any) -> EvalRecord:
    """Record of a candidate whose evaluation failed (infeasible objectives)."""
    space = SearchSpace(cfg.space)
    arch = space.decode(np.asarray(genome))
    return EvalRecord(arch_id=arch.arch_id, genome=arch.genome, description=arch.describe(),
                      config_hash=cfg.evaluation_hash(), status=STATUS_FAILED, reason=reason,
                      params=count_params(arch, cfg.data.bands, cfg.space.num_classes), **extra)


def evaluate_genome(cfg: RunConfig, genome: list[int]) -> EvalRecord:
    """Evaluate one genome in this process; failures are returned as records, never raised."""
    return evaluate_task(cfg, genome)[0]


def evaluate_task(cfg: RunConfig, genome: list[int]) -> tuple[EvalRecord, dict | None]:
    """The unit of work of every executor: ``(record, trained weights or None)``; never raises."""
    t0 = time.perf_counter()
    try:
        return get_evaluator(cfg).evaluate_with_weights(genome)
    except EvaluationError as exc:
        reason = str(exc)
    except Exception as exc:  # a crashing candidate must not stop the search
        reason = f"{type(exc).__name__}: {exc}"
        logger.debug("candidate crashed:\n%s", traceback.format_exc())
    logger.warning("candidate failed: %s", reason)
    return failed_record(cfg, genome, reason, train_time_s=time.perf_counter() - t0), None
