"""Local Dask workers vs in-process evaluation: cost per evaluation and 2-worker throughput.

Paired measurements, because this is meant to be read on a shared machine where other
processes come and go: all three set-ups stay alive together (this process, a 1-worker and a
2-worker ``DaskExecutor`` cluster, each warmed up: data set built, one evaluation), and

* per evaluation: each candidate (``--population`` genomes sampled with ``--seed``, all within the
  parameter cap) is evaluated in this process and on the 1-worker cluster back to back (order
  alternating); the ratio worker / in-process is taken per pair, for wall time and for CPU time
  (the worker process's every thread; this process's evaluating thread);
* throughput: each pair of candidates is evaluated on the 1-worker cluster (one after the other)
  and on the 2-worker cluster (at once), back to back; speed-up = wall 1 worker / wall 2 workers.

Start-up (cluster, imports, data set per worker) is reported separately; the load average is
recorded around every measurement. CPU time is far less sensitive to other load than wall time;
a 2-worker speed-up needs two otherwise idle cores.

Diagnostics (``--micro-repeats``): a small conv training step (batch 16, 64 px) in this process,
in a worker started by ``DaskExecutor``, in a worker started with Dask's default environment
(``MALLOC_TRIM_THRESHOLD_=65536``, ``OMP_NUM_THREADS=1``), and in such a worker after
``tune_malloc`` (what ``DaskExecutor``'s task does on workers started by ``dask worker``): median
step wall and CPU time (ms), minor page faults per step and the torch threads inside the task.

    python benchmarks/scaling.py [--population 6] [--tiles 200] [--epochs 1] [--threads 1]
                                 [--repeats 2] [--micro-repeats 2]

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

from dalp_moo.backends.host_model import host_id
from dalp_moo.config import load_config
from dalp_moo.evaluation import get_space
from dalp_moo.evaluation.dask_executor import DaskExecutor, tune_malloc
from dalp_moo.evaluation.evaluator import evaluate_task, get_evaluator


def _load() -> float:
    """1-minute load average."""
    return round(os.getloadavg()[0], 2)


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


class Setup:
    """One way of evaluating: this process (``workers == 0``) or a local ``DaskExecutor``."""

    def __init__(self, workers: int, threads: int, cfg, genome: list[int]) -> None:  # noqa: ANN001
        import torch

        self.workers, self.threads, self.cfg = workers, threads, cfg
        t0 = time.perf_counter()
        if workers == 0:
            torch.set_num_threads(threads)
            _warm(cfg, genome)
            self.executor = None
        else:
            self.executor = DaskExecutor(workers=workers, threads=threads)
            # client.run: on every worker at once, so each one builds its own data set
            self.executor.client.run(_warm, cfg, genome)
            self.pids = list(self.executor.client.run(os.getpid).values())
        self.startup_s = time.perf_counter() - t0

    def _cpu(self) -> float:
        if self.executor is None:  # the evaluating thread (1 torch thread) or the whole process
            return time.thread_time() if self.threads == 1 else time.process_time()
        return _cpu_s(self.pids)

    def run(self, genomes: list[list[int]]) -> dict:
        """Evaluate ``genomes``: wall and CPU time (s), load average before/after."""
        load, c0, t0 = _load(), self._cpu(), time.perf_counter()
        if self.executor is None:
            records = [evaluate_task(self.cfg, g)[0] for g in genomes]
        else:
            records = [r for _, r, _ in self.executor.map_unordered(self.cfg, genomes)]
        out = {"wall_s": time.perf_counter() - t0, "cpu_s": self._cpu() - c0, "load": [load, _load()]}
        assert all(r.ok for r in records), [r.reason for r in records if not r.ok]
        return out

    def close(self) -> None:
        if self.executor is not None:
            self.executor.close()


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
    parser.add_argument("--population", type=int, default=6, help="candidates trained per repeat")
    parser.add_argument("--tiles", type=int, default=200, help="tiles generated")
    parser.add_argument("--epochs", type=int, default=1, help="FP32 training epochs per candidate")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per worker / in-process")
    parser.add_argument("--repeats", type=int, default=2, help="in-process / worker evaluation pairs per candidate")
    parser.add_argument("--micro-repeats", type=int, default=2, help="rounds of the single-step timings in each place")
    parser.add_argument("--seed", type=int, default=0, help="sampling and training seed")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "scaling.json"), help="result JSON")
    args = parser.parse_args()

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
            print(f"micro {where:38s} {r['step_ms']:7.1f} ms/step (CPU {r['step_cpu_ms']:6.1f} ms) "
                  f"{r['minor_faults_per_step']:8.0f} faults/step threads {r['torch_threads_in_task']} "
                  f"load {r['load_average_after']}", flush=True)

    setups = {w: Setup(w, args.threads, cfg, genomes[0]) for w in (0, 1, 2)}
    startup = {w: s.startup_s for w, s in setups.items()}
    print("start-up s (incl. warm-up evaluation):", {w: round(v, 1) for w, v in startup.items()}, flush=True)
    pairs, batches = [], []
    try:
        for rep in range(args.repeats):
            for j, g in enumerate(genomes):
                order = (0, 1) if (j + rep) % 2 == 0 else (1, 0)
                res = {w: setups[w].run([g]) for w in order}
                pairs.append({"repeat": rep, "genome": j, "in_process": res[0], "worker": res[1],
                              "wall_ratio": res[1]["wall_s"] / res[0]["wall_s"],
                              "cpu_ratio": res[1]["cpu_s"] / res[0]["cpu_s"]})
                p = pairs[-1]
                print(f"pair {rep}.{j}: in-process {res[0]['wall_s']:6.2f} s (CPU {res[0]['cpu_s']:5.2f}), "
                      f"1 worker {res[1]['wall_s']:6.2f} s (CPU {res[1]['cpu_s']:5.2f}): wall x{p['wall_ratio']:.2f} "
                      f"CPU x{p['cpu_ratio']:.2f} load {res[order[0]]['load'][0]}", flush=True)
            for j in range(0, len(genomes) - 1, 2):
                batch = genomes[j:j + 2]
                order = (1, 2) if (j // 2 + rep) % 2 == 0 else (2, 1)
                res = {w: setups[w].run(batch) for w in order}
                batches.append({"repeat": rep, "genomes": [j, j + 1], "one_worker": res[1], "two_workers": res[2],
                                "speedup": res[1]["wall_s"] / res[2]["wall_s"],
                                "cpu_ratio": res[2]["cpu_s"] / res[1]["cpu_s"]})
                b = batches[-1]
                print(f"batch {rep}.{j // 2}: 1 worker {res[1]['wall_s']:6.2f} s, 2 workers {res[2]['wall_s']:6.2f} s: "
                      f"speed-up x{b['speedup']:.2f} (CPU 2w/1w x{b['cpu_ratio']:.2f}) load {res[order[0]]['load'][0]}",
                      flush=True)
    finally:
        for s in setups.values():
            s.close()

    def micro_med(where: str, key: str) -> float:
        return statistics.median(r[key] for r in micro_rows if r["where"] == where)

    med = statistics.median
    result = {
        "summary": {
            "torch_threads_per_worker": args.threads,
            "one_worker_vs_in_process_wall_per_evaluation_median": med(p["wall_ratio"] for p in pairs),
            "one_worker_vs_in_process_cpu_per_evaluation_median": med(p["cpu_ratio"] for p in pairs),
            "in_process_wall_per_evaluation_s_median": med(p["in_process"]["wall_s"] for p in pairs),
            "one_worker_wall_per_evaluation_s_median": med(p["worker"]["wall_s"] for p in pairs),
            "two_vs_one_worker_speedup_median": med(b["speedup"] for b in batches),
            "two_vs_one_worker_cpu_per_evaluation_median": med(b["cpu_ratio"] for b in batches),
            "startup_s": {"in-process": startup[0], "1 worker": startup[1], "2 workers": startup[2]},
            "micro_step_ms_median": {w: micro_med(w, "step_ms") for w in places},
            "micro_step_cpu_ms_median": {w: micro_med(w, "step_cpu_ms") for w in places},
            "micro_minor_faults_per_step_median": {w: micro_med(w, "minor_faults_per_step") for w in places},
        },
        "pairs": pairs,
        "batches": batches,
        "micro": micro_rows,
        "settings": vars(args) | {
            "cores": os.cpu_count(), "cpu": host_id(),
            "python": platform.python_version(), "load_average_start": load_start, "load_average_end": _load(),
            "note": "ratios are paired (back to back, order alternating); the load average recorded with "
                    "every measurement shows whether other processes shared the machine (the benchmark's own "
                    "processes account for up to about 2 on 2 cores)",
        },
    }
    s = result["summary"]
    print(f"1 worker / in-process per evaluation: wall "
          f"x{s['one_worker_vs_in_process_wall_per_evaluation_median']:.2f}, "
          f"CPU x{s['one_worker_vs_in_process_cpu_per_evaluation_median']:.2f}; 2 / 1 workers speed-up "
          f"x{s['two_vs_one_worker_speedup_median']:.2f}; load average {load_start} -> {_load()}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
