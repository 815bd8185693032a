"""Local Dask workers: their environment (threads, no malloc trim threshold), a worker at the
default preset's data size, and a memory-budget death named as such."""

from __future__ import annotations

import os
import platform
import subprocess
import sys

import numpy as np
import pytest

from dalp_moo.config import load_config
from dalp_moo.evaluation.dask_executor import (
    NANNY_VARIABLES,
    DaskExecutor,
    worker_environ,
    worker_state,
)
from dalp_moo.evaluation.evaluator import evaluate_task
from dalp_moo.space import SearchSpace
from problems.vessel_segmentation import OBJECTIVES
from tests.conftest import tiny_config


def _smallest_genome(cfg) -> list[int]:  # noqa: ANN001
    space = SearchSpace(cfg.space)
    return space.canonical(np.zeros(space.n_var, dtype=int)).tolist()


def test_worker_environ_drops_the_malloc_trim_threshold() -> None:
    env = worker_environ(3)
    assert env["MALLOC_TRIM_THRESHOLD_"] is None
    assert env["OMP_NUM_THREADS"] == env["MKL_NUM_THREADS"] == env["OPENBLAS_NUM_THREADS"] == "3"


_FAULTS = """
import resource, numpy as np
from dalp_moo.evaluation.dask_executor import tune_malloc
def faults():
    f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(50):
        a = np.ones(1 << 19, np.float32)  # 2 MiB (below numpy's huge-page size), every page touched
        del a
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0
before = faults()
tuned = tune_malloc()
faults()
print(before, tuned, faults())
"""


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc malloc only")
def test_tune_malloc_reuses_buffers_under_dasks_trim_threshold() -> None:
    """With Dask's ``MALLOC_TRIM_THRESHOLD_`` every 2 MiB buffer is mapped afresh (its pages fault
    in again); after :func:`tune_malloc` it is reused from the heap."""
    env = dict(os.environ, MALLOC_TRIM_THRESHOLD_="65536")
    out = subprocess.run([sys.executable, "-c", _FAULTS], env=env, capture_output=True, text=True,
                         check=True).stdout.split()
    before, tuned, after = int(out[0]), out[1], int(out[2])
    assert tuned == "True"
    assert before >= 50 * 400  # 512 pages of 4 KiB per buffer
    assert after < before / 20


def test_local_worker_environment_and_this_process_untouched() -> None:
    before = {k: os.environ.get(k) for k in NANNY_VARIABLES}
    executor = DaskExecutor(workers=1, threads=1)
    try:
        assert {k: os.environ.get(k) for k in NANNY_VARIABLES} == before
        state = executor.client.submit(worker_state, pure=False).result()
    finally:
        executor.close()
    assert {k: os.environ.get(k) for k in NANNY_VARIABLES} == before
    assert state["pid"] != os.getpid() and not state["main_thread"]
    assert state["MALLOC_TRIM_THRESHOLD_"] is None
    assert state["OMP_NUM_THREADS"] == "1" and state["torch_threads"] == 1


def test_worker_at_the_default_preset_data_size() -> None:
    """600 tiles of 64 px: the generator's process-pool size, inside a daemonic worker process;
    the worker's record equals the in-process one."""
    cfg = load_config("default", overrides=[{
        "search": {"workers": 1},
        "train": {"epochs": 1, "regime": "ptq", "threads": 1},
    }])
    assert cfg.data.n_tiles * cfg.data.tile_size ** 2 >= 1_000_000
    genome = _smallest_genome(cfg)
    executor = DaskExecutor(workers=1, threads=1)
    try:
        [(index, record, artifacts)] = list(executor.map_unordered(cfg, [genome]))
    finally:
        executor.close()
    assert index == 0 and record.ok, record.reason
    assert artifacts is not None and artifacts["weights"]
    local, _ = evaluate_task(cfg, genome)
    assert record.objectives(OBJECTIVES) == local.objectives(OBJECTIVES)


def test_memory_budget_death_names_the_budget(tmp_path) -> None:  # noqa: ANN001
    from dalp_moo.search import run_search

    cfg = tiny_config(search={"population": 2, "generations": 1, "workers": 1},
                      train={"max_memory_mb": 200})
    out = run_search(cfg, tmp_path / "run", progress=None)
    assert out.records and all(not r.ok for r in out.records)
    for r in out.records:
        assert "memory budget exceeded" in r.reason and "train.max_memory_mb = 200 MB" in r.reason, r.reason
        assert r.attempts == 1  # a memory kill is not retried


def test_worker_death_without_memory_event_is_not_blamed_on_memory() -> None:
    """A worker that dies for another reason (here: it exits) fails the task at once
    (``KilledWorker``); no memory event names it, so no memory budget is blamed."""
    executor = DaskExecutor(workers=1, threads=1, memory_limit_mb=2000)
    try:
        fut = executor.client.submit(os._exit, 1, pure=False)
        with pytest.raises(Exception) as info:
            fut.result()
        assert type(info.value).__name__ == "KilledWorker"
        assert executor._memory_kill(info.value, 0.0) is None
    finally:
        executor.close()
