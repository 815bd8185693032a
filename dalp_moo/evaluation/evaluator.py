"""Evaluation of one candidate, for any application.

The application's :class:`~dalp_moo.application.CandidateEvaluator` holds the heavy state of
one process (data set, backend, ...); :func:`get_evaluator` creates it once per process (or Dask
worker) and evaluation config, and reuses it for every candidate. :func:`evaluate_task` is the
unit of work of every executor: it never raises -- a failing candidate becomes a record with
status :data:`~dalp_moo.evaluation.record.STATUS_FAILED` and the reason -- and stamps the
evaluation's start and end times.
"""

from __future__ import annotations

import dataclasses
import hashlib
import time
import traceback
from datetime import datetime, timezone
from typing import Any

import numpy as np

from dalp_moo.config import RunConfig
from dalp_moo.errors import EvaluationError
from dalp_moo.evaluation.record import STATUS_FAILED, EvalRecord
from dalp_moo.log import logger


def derived_seed(*parts: object) -> int:
    """A 32-bit seed derived from ``parts`` (their ``str`` joined by ``:``), the same on every
    machine and Python process (SHA-256, unlike ``hash``)."""
    digest = hashlib.sha256(":".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(digest[:4], "little")


def candidate_seed(search_seed: int, arch_id: str) -> int:
    """Seed of one candidate's initialisation and data order: depends on the run seed and the
    architecture only, so a cached result equals a recomputed one."""
    return derived_seed(search_seed, arch_id)


def utc_now() -> str:
    """The current time as an ISO-8601 UTC string (milliseconds)."""
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")  # noqa: UP017 (3.10)


_EVALUATORS: dict[str, Any] = {}
_SPACES: dict[str, Any] = {}


def _per_config(store: dict[str, Any], cfg: RunConfig, make: Any) -> Any:
    """``make(cfg)``, built once per evaluation config in this process (only the latest kept)."""
    key = cfg.evaluation_hash()
    if key not in store:
        store.clear()
        store[key] = make(cfg)
    return store[key]


def get_evaluator(cfg: RunConfig) -> Any:
    """The process-wide evaluator of ``cfg`` (one per evaluation config; data loaded once)."""
    return _per_config(_EVALUATORS, cfg, lambda c: c.application.evaluator(c))


def get_space(cfg: RunConfig) -> Any:
    """The search space of ``cfg`` (cached per evaluation config)."""
    return _per_config(_SPACES, cfg, lambda c: c.application.space(c))


def static_metrics(space: Any, genome: Any) -> dict[str, Any]:
    """Metrics the space knows without training (``space.static_metrics``, optional); {} when
    the space has none or they cannot be computed."""
    fn = getattr(space, "static_metrics", None)
    if fn is None:
        return {}
    try:
        return dict(fn(genome))
    except Exception as exc:  # a failed record must still be written
        logger.debug("static metrics of a failed candidate unavailable: %s", exc)
        return {}


def failed_record(cfg: RunConfig, genome: np.ndarray | list[int], reason: str, **fields: Any) -> EvalRecord:
    """Record of a candidate whose evaluation failed (it gets the worst objectives); uses only
    the space (decode and static metrics, e.g. parameters with the data source's band count)."""
    space = get_space(cfg)
    arch = space.decode(np.asarray(genome))
    return EvalRecord(arch_id=arch.arch_id, genome=tuple(arch.genome), description=arch.describe(),
                      config_hash=cfg.evaluation_hash(), status=STATUS_FAILED, reason=reason,
                      metrics=static_metrics(space, genome), **fields)


def evaluate_genome(cfg: RunConfig, genome: list[int]) -> EvalRecord:
    """Evaluate one genome in this process; failures are returned as records, never raised."""
    return evaluate_task(cfg, genome)[0]


def evaluate_task(cfg: RunConfig, genome: list[int]) -> tuple[EvalRecord, dict | None]:
    """The unit of work of every executor: ``(record, artifacts or None)``; never raises."""
    started = utc_now()
    t0 = time.perf_counter()
    try:
        record, artifacts = get_evaluator(cfg).evaluate(genome)
    except EvaluationError as exc:
        reason = str(exc)
    except Exception as exc:  # a crashing candidate must not stop the search
        reason = f"{type(exc).__name__}: {exc}"
        logger.debug("candidate crashed:\n%s", traceback.format_exc())
    else:
        return dataclasses.replace(record, started_at=started, ended_at=utc_now()), artifacts
    logger.warning("candidate failed: %s", reason)
    return failed_record(cfg, genome, reason, train_time_s=time.perf_counter() - t0,
                         started_at=started, ended_at=utc_now()), None
