"""Distributed evaluation on a Dask cluster (local processes or an existing scheduler).

Each worker keeps one :class:`~dalp_moo.evaluation.Evaluator` per configuration (see
:func:`~dalp_moo.evaluation.evaluator.get_evaluator`), so data are generated or read once per
worker, not per evaluation. A task whose worker dies is retried once on another worker; if it
fails again the candidate is recorded as failed and the search goes on. A worker killed for
exceeding its memory limit (``train.max_memory_mb`` for a local cluster) is not retried: the
candidate is recorded as failed with a reason naming the memory limit.

A local worker evaluates as fast as this process: per evaluation 1.02x the wall time (CPU 1.04x,
the worker's event-loop and monitor threads included), and two workers give 1.76x the throughput
of one on an idle 2-core host (``benchmarks/results/scaling.json``). What it takes:

* Dask's nanny starts workers with ``MALLOC_TRIM_THRESHOLD_=65536``. Setting any glibc malloc
  threshold switches off glibc's dynamic mmap threshold, so every tensor buffer above 128 KiB is
  a fresh ``mmap``/``munmap`` whose pages fault in again on every training step (measured on a
  small conv step: 35 900 vs 8 500 minor page faults, 127 vs 69 ms CPU). Local workers
  are started without it (:func:`worker_environ`);
* ``OMP_NUM_THREADS`` / ``MKL_NUM_THREADS`` / ``OPENBLAS_NUM_THREADS`` are the worker's torch
  threads (Dask's default is 1), and the task sets torch's threads in the thread that runs it;
* Dask's statistical profiler (a stack sample every 10 ms; there is no dashboard to show it) is
  off; the memory limit is a kill line only (no pausing or spilling, which would stall a worker
  whose resident torch and data set sit above 80 % of it).

The nanny also writes these variables into this process's environment before it starts a
worker; this process's environment is restored afterwards.

Multi-machine use: start ``dask scheduler`` on one machine and ``dask worker tcp://HOST:8786
--nworkers 1 --nthreads 1`` on each machine (all with dalp_moo installed and the data at the same
path), then ``python -m dalp_moo run --scheduler tcp://HOST:8786``. Such workers have Dask's
``MALLOC_TRIM_THRESHOLD_``; their first task fixes glibc's thresholds at run time instead
(:func:`tune_malloc`: measured in a worker with Dask's defaults, the conv step's page faults
drop from ~36 000 to ~0 per step and its CPU time by about half).
"""

from __future__ import annotations

import ctypes
import logging
import os
import sys
import time
from collections import deque
from collections.abc import Iterator, Sequence
from typing import Any

from dalp_moo.config import RunConfig
from dalp_moo.errors import ConfigError
from dalp_moo.evaluation.evaluator import evaluate_task, failed_record
from dalp_moo.evaluation.record import EvalRecord
from dalp_moo.log import logger

#: how many times a task whose worker died is submitted again (not after a memory kill)
WORKER_RETRIES = 1
#: Dask event topic of a worker restarted by its nanny for exceeding its memory limit
MEMORY_EVENT = "worker-restart-memory"
#: seconds to wait for the nanny's memory event after a worker died
MEMORY_EVENT_WAIT_S = 2.0

#: glibc ``mallopt`` parameters and the values :func:`tune_malloc` sets (bytes): 32 MiB is the
#: upper bound of glibc's dynamic mmap threshold, the trim threshold is twice it, as glibc sets it
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
MMAP_THRESHOLD_BYTES = 32 * 2 ** 20

_malloc_checked = False


def worker_environ(threads: int) -> dict[str, str | None]:
    """Environment the nanny sets before it starts a local worker process: ``threads`` for the
    OpenMP / MKL / OpenBLAS pools, and no ``MALLOC_TRIM_THRESHOLD_`` (``None`` = not set)."""
    n = str(max(1, threads))
    return {"OMP_NUM_THREADS": n, "MKL_NUM_THREADS": n, "OPENBLAS_NUM_THREADS": n,
            "MALLOC_TRIM_THRESHOLD_": None}


def local_cluster_config(threads: int) -> dict[str, Any]:
    """Dask configuration of a local cluster started by :class:`DaskExecutor`."""
    return {
        "distributed.nanny.pre-spawn-environ": worker_environ(threads),
        "distributed.worker.profile.enabled": False,
        # the memory limit kills a worker (at the limit); Dask's data store holds only records
        "distributed.worker.memory.target": False,
        "distributed.worker.memory.spill": False,
        "distributed.worker.memory.pause": False,
        "distributed.worker.memory.terminate": 1.0,
        # a task whose worker died fails at once: WORKER_RETRIES decides (and memory kills are
        # not retried), instead of Dask's 3 silent restarts (map_unordered keeps one task per
        # worker thread in flight, so a worker's death fails only the task it was running)
        "distributed.scheduler.allowed-failures": 0,
    }


def worker_state() -> dict[str, Any]:
    """What a task sees in its worker: torch threads of the calling thread, the thread-count
    and malloc variables, whether it is the main thread, the process id (for diagnostics and
    ``benchmarks/scaling.py``)."""
    import threading

    import torch

    return {"torch_threads": torch.get_num_threads(), "pid": os.getpid(),
            "main_thread": threading.current_thread() is threading.main_thread(),
            **{k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS",
                                              "MALLOC_TRIM_THRESHOLD_")}}


def tune_malloc() -> bool:
    """Set glibc's mmap threshold to 32 MiB and its trim threshold to 64 MiB in this process
    (``mallopt``), so tensor buffers are reused from the heap instead of being mapped afresh.
    Returns False where that is not possible (not glibc)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)) and bool(
        mallopt(M_TRIM_THRESHOLD, 2 * MMAP_THRESHOLD_BYTES))


def _evaluate_on_worker(cfg: RunConfig, genome: list[int], threads: int) -> tuple[EvalRecord, dict | None]:
    global _malloc_checked
    import torch

    # torch's OpenMP threads are a setting of the calling thread: set them in the task's thread
    if threads > 0 and torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    if not _malloc_checked:
        _malloc_checked = True
        trim = os.environ.get("MALLOC_TRIM_THRESHOLD_")
        # a worker started with Dask's defaults (``dask worker``): glibc's dynamic mmap
        # threshold is off; fix the thresholds at run time instead
        if trim is not None:
            tuned = tune_malloc()
            logger.info("Dask worker with MALLOC_TRIM_THRESHOLD_=%s: malloc thresholds %s", trim,
                        "fixed at 32 / 64 MiB" if tuned else "left as they are (not glibc)")
    return evaluate_task(cfg, genome)


#: variables a nanny writes into this process's environment before it starts a worker
NANNY_VARIABLES = (*worker_environ(1), "PYTHONHASHSEED")


def _restore_environ(saved: dict[str, str | None]) -> None:
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


class DaskExecutor:
    """Evaluates candidates of a generation in parallel on Dask workers.

    ``workers``: local worker processes (started here) unless ``scheduler`` (an address) is
    given; ``memory_limit_mb``: memory limit of each local worker process (MB, 0 = Dask's
    automatic share of the machine); ``threads``: torch threads per local worker (0 = CPU cores
    divided by ``workers``).
    """

    def __init__(self, workers: int = 0, scheduler: str = "", memory_limit_mb: int = 0,
                 connect_timeout_s: float = 5.0, threads: int = 0) -> None:
        try:
            import dask
            from distributed import Client, LocalCluster
        except ImportError as exc:  # pragma: no cover - dask is a dependency
            raise ConfigError("distributed evaluation needs dask[distributed]") from exc
        self.cluster: Any = None
        self.memory_limit_mb = memory_limit_mb
        self._environ = {k: os.environ.get(k) for k in NANNY_VARIABLES}
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
            self.threads = threads if threads > 0 else max(1, cores // max(workers, 1))
            try:
                with dask.config.set(local_cluster_config(self.threads)):
                    self.cluster = LocalCluster(
                        n_workers=workers, threads_per_worker=1, processes=True,
                        dashboard_address=None, silence_logs=logging.CRITICAL,
                        memory_limit=f"{memory_limit_mb}MB" if memory_limit_mb > 0 else "auto",
                    )
                    self.client = Client(self.cluster)
            finally:
                _restore_environ(self._environ)
            logger.info("started a local Dask cluster: %d workers x %d torch threads", workers, self.threads)

    def _slots(self) -> int:
        """Worker threads of the cluster now (at least 1): tasks in flight at a time."""
        try:
            workers = self.client.scheduler_info().get("workers", {})
        except Exception:  # noqa: BLE001 - the scheduler answers again later
            return 1
        return max(1, sum(int(w.get("nthreads", 1)) for w in workers.values()))

    def map_unordered(self, cfg: RunConfig,
                      genomes: Sequence[list[int]]) -> Iterator[tuple[int, EvalRecord, dict | None]]:
        """Evaluate ``genomes``; yields ``(index, record, artifacts)`` as evaluations finish.

        At most one task per worker thread is in flight, so a worker that dies (killed for its
        memory, crashed) fails only the candidate it was running; the others wait here, not in
        the dead worker's queue."""
        from distributed import as_completed

        waiting = deque(range(len(genomes)))
        futures: dict[Any, tuple[int, int, float]] = {}
        pending = as_completed()

        def submit(i: int, attempts: int) -> None:
            fut = self.client.submit(_evaluate_on_worker, cfg, genomes[i], self.threads, pure=False, retries=0)
            futures[fut] = (i, attempts, time.time())
            pending.add(fut)

        def top_up() -> None:
            slots = self._slots() if waiting else 0
            while waiting and len(futures) < slots:
                submit(waiting.popleft(), 0)

        top_up()
        for fut in pending:
            i, attempts, submitted = futures.pop(fut)
            artifacts = None
            try:
                record, artifacts = fut.result()
            except Exception as exc:  # worker died (KilledWorker, lost connection, ...)
                memory = self._memory_kill(exc, submitted)
                if memory is None and attempts < WORKER_RETRIES:
                    logger.warning("worker failed on candidate %d (%s): retrying once", i, type(exc).__name__)
                    submit(i, attempts + 1)
                    top_up()
                    continue
                if memory is not None:
                    reason = memory
                else:
                    reason = f"worker died twice: {type(exc).__name__}: {exc}"
                logger.warning("candidate %d failed: %s", i, reason)
                record = failed_record(cfg, genomes[i], reason, attempts=attempts + 1)
            else:
                if attempts:
                    record = _with_attempts(record, attempts + 1)
            top_up()
            yield i, record, artifacts

    def _memory_kill(self, exc: BaseException, since: float) -> str | None:
        """The failure reason when the worker that ran the task was killed by its nanny for
        exceeding its memory limit (a Dask ``worker-restart-memory`` event), else None."""
        last = getattr(exc, "last_worker", None)
        address = getattr(last, "address", None)
        if address is None:  # not a KilledWorker: the worker did not die running the task
            return None
        limit_mb = getattr(last, "memory_limit", 0) / 1e6
        deadline = time.monotonic() + MEMORY_EVENT_WAIT_S
        while True:
            try:
                events = self.client.get_events(MEMORY_EVENT)
            except Exception:  # noqa: BLE001 - an old or unreachable scheduler: no evidence
                return None
            for stamp, event in reversed(events):
                if stamp >= since - 1 and isinstance(event, dict) and event.get("worker") == address:
                    rss_mb = float(event.get("rss", 0)) / 1e6
                    budget = (f"train.max_memory_mb = {self.memory_limit_mb} MB" if self.memory_limit_mb > 0
                              else f"{limit_mb:.0f} MB")
                    return (f"memory budget exceeded: the worker process (torch, data set and "
                            f"training) used {rss_mb:.1f} MB, over its memory limit {budget}, "
                            "and was killed")
            if time.monotonic() >= deadline:
                return None
            time.sleep(0.2)

    def close(self) -> None:
        """Close the client and the local cluster (if one was started)."""
        try:
            self.client.close()
        finally:
            if self.cluster is not None:
                self.cluster.close()
            _restore_environ(self._environ)  # a worker restart wrote the nanny's variables again


def _with_attempts(record: EvalRecord, attempts: int) -> EvalRecord:
    import dataclasses

    return dataclasses.replace(record, attempts=attempts)
