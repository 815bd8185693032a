"""Distributed evaluation on a Dask cluster (local processes or an existing scheduler).

Each worker keeps one :class:`~dalp_moo.evaluation.Evaluator` per configuration (see
:func:`~dalp_moo.evaluation.evaluator.get_evaluator`), so data are generated or read once per
worker, not per evaluation. A task whose worker dies is retried once on another worker; if it
fails again the candidate is recorded as failed and the search goes on.

Multi-machine use: start ``dask scheduler`` on one machine and ``dask worker tcp://HOST:8786
--nworkers 1 --nthreads 1`` on each machine (all with dalp_moo installed and the data at the same
path), then ``python -m dalp_moo run --scheduler tcp://HOST:8786``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from typing import Any

from dalp_moo.config import RunConfig
from dalp_moo.errors import ConfigError
from dalp_moo.evaluation.evaluator import evaluate_task, failed_record
from dalp_moo.evaluation.record import EvalRecord
from dalp_moo.log import logger

#: how many times a task whose worker died is submitted again
WORKER_RETRIES = 1


def _evaluate_on_worker(cfg: RunConfig, genome: list[int], threads: int) -> tuple[EvalRecord, dict | None]:
    import torch

    if threads > 0 and torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    return evaluate_task(cfg, genome)


class DaskExecutor:
    """Evaluates candidates of a generation in parallel on Dask workers."""

    def __init__(self, workers: int = 0, scheduler: str = "", memory_limit_mb: int = 0,
                 connect_timeout_s: float = 5.0) -> None:
        try:
            from distributed import Client, LocalCluster
        except ImportError as exc:  # pragma: no cover - dask is a dependency
            raise ConfigError("distributed evaluation needs dask[distributed]") from exc
        self.cluster: Any = None
        if scheduler:
            try:
                self.client = Client(scheduler, timeout=f"{connect_timeout_s}s")
            except (OSError, TimeoutError) as exc:
                raise ConfigError(f"search.scheduler: cannot reach the Dask scheduler at {scheduler} ({exc})") from exc
            n = len(self.client.scheduler_info().get("workers", {})) or 1
            self.threads = 0  # remote workers: their own --nthreads decides
            logger.info("connected to Dask scheduler %s with %d workers", scheduler, n)
        else:
            cores = os.cpu_count() or 1
            self.threads = max(1, cores // max(workers, 1))
            self.cluster = LocalCluster(
                n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None,
                memory_limit=f"{memory_limit_mb}MB" if memory_limit_mb > 0 else "auto",
                silence_logs=40,
            )
            self.client = Client(self.cluster)
            logger.info("started a local Dask cluster: %d workers x %d torch threads", workers, self.threads)

    def map_unordered(self, cfg: RunConfig, genomes: Sequence[list[int]]) -> Iterator[tuple[int, EvalRecord, dict | None]]:
        from distributed import as_completed

        futures = {}
        for i, genome in enumerate(genomes):
            fut = self.client.submit(_evaluate_on_worker, cfg, genome, self.threads, pure=False, retries=0)
            futures[fut] = (i, 0)
        pending = as_completed(list(futures))
        for fut in pending:
            i, attempts = futures.pop(fut)
            artifacts = None
            try:
                record, artifacts = fut.result()
            except Exception as exc:  # worker died (KilledWorker, lost connection, ...)
                if attempts < WORKER_RETRIES:
                    logger.warning("worker failed on candidate %d (%s): retrying once", i, type(exc).__name__)
                    retry = self.client.submit(_evaluate_on_worker, cfg, genomes[i], self.threads, pure=False)
                    futures[retry] = (i, attempts + 1)
                    pending.add(retry)
                    continue
                record = failed_record(cfg, genomes[i], f"worker died twice: {type(exc).__name__}: {exc}",
                                       attempts=attempts + 1)
            else:
                if attempts:
                    record = _with_attempts(record, attempts + 1)
            yield i, record, artifacts

    def close(self) -> None:
        try:
            self.client.close()
        finally:
            if self.cluster is not None:
                self.cluster.close()


def _with_attempts(record: EvalRecord, attempts: int) -> EvalRecord:
    import dataclasses

    return dataclasses.replace(record, attempts=attempts)
