"""Evaluations per hour with in-process, 1 and 2 local Dask workers, and the framework overhead.

overhead share = 1 - (time spent training + evaluating candidates) / (wall time x workers):
everything that is not candidate work (search, repair, journaling, scheduling, data set-up,
process start) as a fraction of the compute the run had.

    python benchmarks/scaling.py [--population 8] [--tiles 200] [--epochs 1]

Prints a table and writes benchmarks/results/scaling.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

from dalp_moo.config import load_config
from dalp_moo.search import run_search


def measure(workers: int, population: int, tiles: int, epochs: int, seed: int) -> dict:
    cfg = load_config("smoke", overrides=[{
        "search": {"population": population, "generations": 1, "workers": workers, "seed": seed},
        "data": {"n_tiles": tiles, "tile_size": 64},
        "train": {"epochs": epochs, "finetune_epochs": 1},
    }])
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        out = run_search(cfg, Path(tmp) / "run", progress=None)
        wall = time.perf_counter() - t0
    work = sum(r.train_time_s + r.eval_time_s for r in out.records)
    slots = max(workers, 1)
    return {
        "workers": workers,
        "mode": "in-process" if workers == 0 else f"local Dask, {workers} worker(s)",
        "evaluations": len(out.records),
        "wall_s": wall,
        "candidate_work_s": work,
        "evaluations_per_hour": 3600 * len(out.records) / wall,
        "overhead_share": max(0.0, 1 - work / (wall * slots)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--population", type=int, default=8)
    parser.add_argument("--tiles", type=int, default=200)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "scaling.json"))
    args = parser.parse_args()

    rows = [measure(w, args.population, args.tiles, args.epochs, args.seed) for w in (0, 1, 2)]
    print(f"{'mode':28s} {'evals':>5s} {'wall s':>8s} {'evals/h':>9s} {'overhead':>9s}")
    for r in rows:
        print(f"{r['mode']:28s} {r['evaluations']:5d} {r['wall_s']:8.1f} {r['evaluations_per_hour']:9.0f} "
              f"{r['overhead_share']:9.1%}")
    by = {r["workers"]: r for r in rows}
    result = {
        "speedup_2_workers": by[2]["evaluations_per_hour"] / by[1]["evaluations_per_hour"],
        "overhead_share": by[0]["overhead_share"],
        "overhead_share_by_mode": {r["mode"]: r["overhead_share"] for r in rows},
        "rows": rows,
        "settings": vars(args) | {"cores": os.cpu_count(), "python": platform.python_version(),
                                  "load_average_at_end": os.getloadavg()},
    }
    print(f"speedup 2 vs 1 workers: {result['speedup_2_workers']:.2f}x; in-process overhead "
          f"{result['overhead_share']:.1%}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
