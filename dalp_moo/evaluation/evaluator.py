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
from dalp_moo.data import open_source
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


def input_normalization(cfg: RunConfig, source: Any) -> tuple[list[float], list[float]]:
    """Per-band ``(shift, scale)`` with ``x_norm = (x - shift) * scale`` for the data config."""
    bands = source.bands
    if cfg.data.normalization == "raw":
        return [0.0] * bands, [1.0] * bands
    if cfg.data.normalization == "scale":
        return [0.0] * bands, [cfg.data.scale] * bands
    stats = source.band_stats()
    return list(stats.mean), [1.0 / s for s in stats.std]


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
        self.norm = input_normalization(cfg, self.source)
        self.backend = backends.get(cfg.backend.name, device=cfg.backend.device)
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
        cfg = self.cfg
        arch = self.space.decode(np.asarray(genome))
        params = count_params(arch, self.source.bands, cfg.space.num_classes)
        base = dict(arch_id=arch.arch_id, genome=arch.genome, description=arch.describe(),
                    config_hash=self.config_hash, params=params, backend=self.backend_info.name,
                    emulated=self.backend_info.emulated)
        if params > cfg.space.param_cap:
            return EvalRecord(status=STATUS_INFEASIBLE, reason=f"{params} parameters > cap {cfg.space.param_cap}", **base)
        _, model = self.build(genome)
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
            t1 = time.perf_counter()
            model = model.cpu().eval()
            fp32 = evaluate_segmentation(model, self.val_set, cfg.space.num_classes)
            measures: dict[str, Any] = {"fp32_miou": fp32.miou}
            if cfg.train.regime == "fp32":
                deployed_score = fp32
                deployment = self.backend.deploy(model, self.input_shape, profile=cfg.train.profile)
                test = evaluate_segmentation(model, self.test_set, cfg.space.num_classes)
            else:
                deployment = self.backend.deploy(model, self.input_shape, profile=cfg.train.profile)
                deployed_score = evaluate_segmentation(deployment.predict, self.val_set, cfg.space.num_classes)
                measures["ptq_miou"] = deployed_score.miou
                if cfg.train.regime == "dalp":
                    raise EvaluationError("regime 'dalp' needs dalp_moo.precision (not installed)")
                test = evaluate_segmentation(deployment.predict, self.test_set, cfg.space.num_classes)
            latency = deployment.latency()
            eval_time = time.perf_counter() - t1
        return EvalRecord(
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
            train_time_s=train_time,
            eval_time_s=eval_time,
            step_ms=result.step_ms,
        )


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
    t0 = time.perf_counter()
    try:
        return get_evaluator(cfg).evaluate(genome)
    except EvaluationError as exc:
        reason = str(exc)
    except Exception as exc:  # a crashing candidate must not stop the search
        reason = f"{type(exc).__name__}: {exc}"
        logger.debug("candidate crashed:\n%s", traceback.format_exc())
    logger.warning("candidate failed: %s", reason)
    return failed_record(cfg, genome, reason, train_time_s=time.perf_counter() - t0)
