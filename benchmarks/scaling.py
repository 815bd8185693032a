"""Evaluations per hour in-process and on 1 and 2 local Dask workers, and why workers were slow.

Steady state: the same candidates (``--population`` genomes sampled with ``--seed``) are
evaluated in this process and on local Dask workers (``DaskExecutor``), each worker (and this
process) warmed up first (data set built, one evaluation), so the timed part is candidate work
plus scheduling, not start-up; start-up (cluster, imports, data set) is reported separately.
Modes run interleaved (order rotated) and repeated, because the figures are only comparable
within one run on a shared machine; the load average is recorded before and after each mode.
CPU time per evaluation (every thread of the worker processes, or of this process) is reported
beside wall time: it is much less sensitive to other processes on the machine.

Diagnostics (``--micro-repeats``): a small conv training step (batch 16, 64 px) in this process,
in a worker started by ``DaskExecutor``, in a worker started with Dask's default environment
(``MALLOC_TRIM_THRESHOLD_=65536``, ``OMP_NUM_THREADS=1``), and in such a worker after
``tune_malloc`` (what ``DaskExecutor``'s task does on workers started by ``dask worker``): median
step wall and CPU time (ms), minor page faults per step and the torch threads inside the task.

    python benchmarks/scaling.py [--population 8] [--tiles 200] [--epochs 1] [--threads 1]
                                 [--repeats 2] [--micro-repeats 3]

Prints a table and writes benchmarks/results/scaling.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import numpy as np

from dalp_moo.config import load_config
from dalp_moo.evaluation import get_space
from dalp_moo.evaluation.dask_executor import DaskExecutor, tune_malloc
from dalp_moo.evaluation.evaluator import evaluate_task, get_evaluator


def _load() -> list[float]:
    return [round(v, 2) for v in os.getloadavg()]


def _warm(cfg, genome: list[int]) -> int:  # noqa: ANN001
    """Build this process's evaluator and run one evaluation (untimed warm-up)."""
    get_evaluator(cfg)
    evaluate_task(cfg, genome)
    return os.getpid()


def _cpu_s(pids: list[int]) -> float:
    """User + system CPU time (s) of the processes ``pids``, all their threads."""
    import psutil

    total = 0.0
    for pid in pids:
        t = psutil.Process(pid).cpu_times()
        total += t.user + t.system
    return total


def steady(workers: int, threads: int, cfg, genomes: list[list[int]]) -> dict:  # noqa: ANN001
    """Time the evaluation of ``genomes`` after start-up and warm-up (0 workers = this process)."""
    load_before = _load()
    t0 = time.perf_counter()
    executor = None
    if workers == 0:
        import torch

        old = torch.get_num_threads()
        torch.set_num_threads(threads)
        _warm(cfg, genomes[0])
    else:
        executor = DaskExecutor(workers=workers, threads=threads)
        # client.run: on every worker at once, so each one builds its own data set
        executor.client.run(_warm, cfg, genomes[0])
    startup = time.perf_counter() - t0
    t0 = time.perf_counter()
    driver0 = time.process_time()
    if executor is None:
        records = [evaluate_task(cfg, g)[0] for g in genomes]
        torch.set_num_threads(old)
        wall = time.perf_counter() - t0
        cpu = time.process_time() - driver0
        driver_cpu = 0.0
    else:
        pids = list(executor.client.run(os.getpid).values())
        cpu0 = _cpu_s(pids)
        records = [r for _, r, _ in executor.map_unordered(cfg, genomes)]
        wall = time.perf_counter() - t0
        cpu = _cpu_s(pids) - cpu0
        driver_cpu = time.process_time() - driver0
        executor.close()
    assert all(r.ok for r in records), [r.reason for r in records if not r.ok]
    work = sum(r.train_time_s + r.eval_time_s for r in records)
    mode = "in-process" if workers == 0 else f"local Dask, {workers} worker(s)"
    return {
        "workers": workers, "threads": threads, "mode": f"{mode}, {threads} torch thread(s)",
        "evaluations": len(records), "startup_s": startup, "wall_s": wall,
        "wall_per_evaluation_s": wall / len(records),
        "candidate_work_per_evaluation_s": work / len(records),
        "cpu_per_evaluation_s": cpu / len(records),
        "driver_cpu_per_evaluation_s": driver_cpu / len(records),
        "evaluations_per_hour": 3600 * len(records) / wall,
        "load_average_before": load_before, "load_average_after": _load(),
    }


def conv_step(threads: int, reps: int = 20) -> dict:
    """Median time (ms) and minor page faults of a small conv training step, where it runs."""
    import resource
    import threading

    import torch
    from torch import nn

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    m = nn.Sequential(nn.Conv2d(4, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
                      nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.Conv2d(32, 2, 1))
    opt = torch.optim.SGD(m.parameters(), lr=0.01)
    x = torch.randn(16, 4, 64, 64)
    y = torch.randint(0, 2, (16, 64, 64))

    def step() -> None:
        opt.zero_grad()
        nn.functional.cross_entropy(m(x), y).backward()
        opt.step()

    for _ in range(3):
        step()
    times, cpu = [], []
    f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(reps):
        t0, c0 = time.perf_counter(), time.thread_time()
        step()
        times.append(time.perf_counter() - t0)
        cpu.append(time.thread_time() - c0)
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0
    return {"step_ms": 1000 * statistics.median(times), "step_cpu_ms": 1000 * statistics.median(cpu),
            "minor_faults_per_step": faults / reps,
            "torch_threads_in_task": torch.get_num_threads(),
            "main_thread": threading.current_thread() is threading.main_thread(),
            "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"),
            "MALLOC_TRIM_THRESHOLD_": os.environ.get("MALLOC_TRIM_THRESHOLD_")}


def micro(where: str, threads: int) -> dict:
    """:func:`conv_step` in this process, in a ``DaskExecutor`` worker, or in a worker with
    Dask's default environment."""
    if where == "in-process":
        out = conv_step(threads)
    elif where == "worker (DaskExecutor)":
        executor = DaskExecutor(workers=1, threads=threads)
        try:
            out = executor.client.submit(conv_step, threads, pure=False).result()
        finally:
            executor.close()
    else:  # Dask's defaults: the configuration this project used before (and `dask worker`'s)
        from distributed import Client, LocalCluster

        saved = dict(os.environ)
        try:
            with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None,
                              silence_logs=50) as cluster, Client(cluster) as client:
                if "tune_malloc" in where:  # what a task of DaskExecutor does on such a worker
                    assert client.submit(tune_malloc, pure=False).result()
                out = client.submit(conv_step, threads, pure=False).result()
        finally:  # the nanny writes its pre-spawn variables into this process's environment
            os.environ.clear()
            os.environ.update(saved)
    return {"where": where, **out, "load_average_after": _load()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--population", type=int, default=8)
    parser.add_argument("--tiles", type=int, default=200)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1, help="torch threads per worker / in-process")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--micro-repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "scaling.json"))
    args = parser.parse_args()

    cores = os.cpu_count() or 1
    cfg = load_config("smoke", overrides=[{
        "search": {"seed": args.seed},
        "data": {"n_tiles": args.tiles, "tile_size": 64},
        "train": {"epochs": args.epochs, "finetune_epochs": 1, "threads": args.threads},
    }])
    space = get_space(cfg)
    feasible = [g.tolist() for g in space.sample(20 * args.population, np.random.default_rng(args.seed))
                if space.static_metrics(g)["params"] <= cfg.constraints.param_cap]
    genomes = feasible[:args.population]  # all trained (an infeasible candidate costs nothing)
    load_start = _load()

    micro_rows = []
    places = ["in-process", "worker (DaskExecutor)", "worker (Dask defaults)", "worker (Dask defaults) + tune_malloc"]
    for rep in range(args.micro_repeats):
        k = rep % len(places)
        for where in places[k:] + places[:k]:
            micro_rows.append({"repeat": rep, **micro(where, args.threads)})
            r = micro_rows[-1]
            print(f"micro {where:24s} {r['step_ms']:7.1f} ms/step (CPU {r['step_cpu_ms']:6.1f} ms) "
                  f"{r['minor_faults_per_step']:8.0f} faults/step "
                  f"threads {r['torch_threads_in_task']} load {r['load_average_after'][0]}", flush=True)

    modes = [(0, args.threads), (1, args.threads), (2, args.threads)]
    if args.threads * 2 <= cores:
        modes.append((0, cores))
    rows = []
    for rep in range(args.repeats):
        k = rep % len(modes)
        for workers, threads in modes[k:] + modes[:k]:
            rows.append({"repeat": rep, **steady(workers, threads, cfg, genomes)})
            r = rows[-1]
            print(f"{r['mode']:40s} {r['wall_per_evaluation_s']:7.2f} s/eval "
                  f"(work {r['candidate_work_per_evaluation_s']:.2f}, CPU {r['cpu_per_evaluation_s']:.2f}) "
                  f"{r['evaluations_per_hour']:7.0f} evals/h "
                  f"start-up {r['startup_s']:5.1f} s load {r['load_average_before'][0]}->"
                  f"{r['load_average_after'][0]}", flush=True)

    def med(key: str, workers: int, threads: int) -> float:
        return statistics.median(r[key] for r in rows if r["workers"] == workers and r["threads"] == threads)

    t = args.threads
    per_eval = {w: med("wall_per_evaluation_s", w, t) for w in (0, 1, 2)}
    work = {w: med("candidate_work_per_evaluation_s", w, t) for w in (0, 1, 2)}
    cpu = {w: med("cpu_per_evaluation_s", w, t) for w in (0, 1, 2)}
    speed = {w: med("evaluations_per_hour", w, t) for w in (0, 1, 2)}
    ratios_1_vs_0 = [a["wall_per_evaluation_s"] / b["wall_per_evaluation_s"]
                     for rep in range(args.repeats)
                     for a in rows if a["repeat"] == rep and a["workers"] == 1
                     for b in rows if b["repeat"] == rep and b["workers"] == 0 and b["threads"] == t]
    ratios_2_vs_1 = [a["evaluations_per_hour"] / b["evaluations_per_hour"]
                     for rep in range(args.repeats)
                     for a in rows if a["repeat"] == rep and a["workers"] == 2
                     for b in rows if b["repeat"] == rep and b["workers"] == 1]

    def micro_med(where: str, key: str) -> float:
        return statistics.median(r[key] for r in micro_rows if r["where"] == where)

    result = {
        "summary": {
            "torch_threads_per_worker": t,
            "one_worker_vs_in_process_wall_per_evaluation": per_eval[1] / per_eval[0],
            "one_worker_vs_in_process_wall_per_evaluation_by_repeat": ratios_1_vs_0,
            "one_worker_vs_in_process_candidate_work_per_evaluation": work[1] / work[0],
            "one_worker_vs_in_process_cpu_per_evaluation": cpu[1] / cpu[0],
            "two_workers_vs_one_cpu_per_evaluation": cpu[2] / cpu[1],
            "two_vs_one_worker_evaluations_per_hour": speed[2] / speed[1],
            "two_vs_one_worker_by_repeat": ratios_2_vs_1,
            "evaluations_per_hour_median": {"in-process": speed[0], "1 worker": speed[1], "2 workers": speed[2]},
            "micro_step_ms_median": {w: micro_med(w, "step_ms") for w in places},
            "micro_step_cpu_ms_median": {w: micro_med(w, "step_cpu_ms") for w in places},
            "micro_minor_faults_per_step_median": {w: micro_med(w, "minor_faults_per_step") for w in places},
        },
        "rows": rows,
        "micro": micro_rows,
        "settings": vars(args) | {
            "cores": cores, "cpu": platform.processor() or platform.machine(), "python": platform.python_version(),
            "load_average_start": load_start, "load_average_end": _load(),
            "note": "shared machine: other processes ran during the measurement (see the load averages); "
                    "ratios are taken within one repeat, modes interleaved",
        },
    }
    s = result["summary"]
    print(f"1 worker / in-process, wall per evaluation: {s['one_worker_vs_in_process_wall_per_evaluation']:.2f} "
          f"(candidate work {s['one_worker_vs_in_process_candidate_work_per_evaluation']:.2f}, CPU time "
          f"{s['one_worker_vs_in_process_cpu_per_evaluation']:.2f}); "
          f"2 / 1 workers, evaluations per hour: {s['two_vs_one_worker_evaluations_per_hour']:.2f}x; "
          f"load average {load_start} -> {_load()}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
