"""Do a search's best candidates hold up when trained again from new seeds?

From a finished vessel-segmentation run folder, the ``--top`` candidates with the highest
validation FP32 mIoU (the figure the run measured; optionally only those with ``--params``
parameters) are trained again in FP32 at the run's own budget and recipe from ``--seeds`` new
training seeds, next to the 66.5k reference conv-BN-ReLU U-Net (``data_baseline.BASELINES[0]``),
and scored on the held-out test split, which the search never saw. This separates what the search
found from the luck of one training seed and from selection on the validation split.

    python benchmarks/search_winners.py RUN_DIR [--top 3] [--seeds 3] [--params 60000,100000]
        [--threads 1] [--out FILE]

Prints a table and writes benchmarks/results/search_winners.json. FP32 training and scoring on
this CPU: nothing here is emulated (the run's deployed figures, quoted for reference, are).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from data_baseline import BASELINES, genome_for, seed_summary, train_one, write_json  # noqa: E402

from dalp_moo.backends.host_model import host_id  # noqa: E402
from dalp_moo.config import load_config  # noqa: E402
from dalp_moo.model import ParamCounter  # noqa: E402
from dalp_moo.space import SearchSpace  # noqa: E402

#: training seeds of the re-trainings start here (a candidate's own seed is derived from its ID)
SEED_BASE = 1000


def winners(evaluations: pd.DataFrame, top: int, params: tuple[int, int] | None) -> pd.DataFrame:
    """The ``top`` finished candidates with the highest validation FP32 mIoU (within ``params``)."""
    ok = evaluations[(evaluations["status"] == "ok") & evaluations["fp32_miou"].notna()]
    if params is not None:
        ok = ok[(ok["params"] >= params[0]) & (ok["params"] <= params[1])]
    return ok.sort_values("fp32_miou", ascending=False).head(top)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("run", type=Path, help="finished vessel-segmentation run folder")
    ap.add_argument("--top", type=int, default=3, help="candidates to train again")
    ap.add_argument("--seeds", type=int, default=3, help="new training seeds per candidate")
    ap.add_argument("--params", default="", help="parameter range MIN,MAX of the candidates (default: any)")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (0 = torch default)")
    ap.add_argument("--out", default="benchmarks/results/search_winners.json", help="result JSON")
    args = ap.parse_args()
    table = args.run / "evaluations.csv"
    if not table.exists():
        ap.error(f"{table} not found: give a finished run folder")
    params = tuple(int(v) for v in args.params.split(",")) if args.params else None
    torch.set_num_threads(args.threads)
    cfg = load_config(path=args.run / "config.toml")
    count = ParamCounter(cfg.data.bands, cfg.space.num_classes)
    space = SearchSpace(cfg.space, param_cap=cfg.constraints.param_cap, count=count)
    chosen = winners(pd.read_csv(table), args.top, params)
    tcfg = dataclasses.replace(cfg.train, regime="fp32", device="cpu")
    label, block, coeff, kernel, units, _ = BASELINES[0]
    entries: list[tuple[str, Any, dict[str, Any]]] = [
        (f"reference {label}", space.decode(genome_for(space, block, coeff, kernel, units)), {})]
    for _, row in chosen.iterrows():
        arch = space.decode(np.array([int(g) for g in str(row["genome"]).split()]))
        entries.append((f"winner {row['arch_id']}", arch, {
            "run_val_fp32_miou": float(row["fp32_miou"]), "run_val_deployed_miou": float(row["deployed_miou"]),
            "run_test_deployed_miou": float(row["test_miou"]), "run_deployed_emulated": bool(row["emulated"])}))
    print(f"{args.run}: {len(chosen)} candidates; budget {tcfg.epochs} FP32 epochs ({tcfg.recipe} recipe), "
          f"{cfg.data.n_tiles} tiles of {cfg.data.tile_size} px; {args.seeds} new seeds each", flush=True)
    t_start = time.perf_counter()
    rows: list[dict] = []
    results: list[dict[str, Any]] = []
    for name, arch, run_figures in entries:
        runs = [train_one(arch, cfg.data, tcfg, SEED_BASE + s, name, "fp32") for s in range(args.seeds)]
        rows += runs
        summary = {"label": name, "arch_id": arch.arch_id, "arch": arch.describe(), "params": count(arch),
                   **run_figures, **seed_summary(runs)}
        results.append(summary)
        run_val = run_figures.get("run_val_fp32_miou", float("nan"))
        print(f"{name:44s} {summary['params']:7,d} p  run val FP32 {run_val:.3f}  "
              f"new seeds: val {summary['mean_val_miou']:.3f}  test {summary['mean_test_miou']:.3f} "
              f"[{summary['min_test_miou']:.3f}, {summary['max_test_miou']:.3f}]  ({summary['train_s']:.0f} s)",
              flush=True)
    out = {"benchmark": "search_winners", "run": str(args.run), "host": host_id(), "torch": torch.__version__,
           "threads": args.threads, "seeds": [SEED_BASE + s for s in range(args.seeds)],
           "params_range": list(params) if params else None,
           "budget": {"epochs": tcfg.epochs, "recipe": tcfg.recipe, "n_tiles": cfg.data.n_tiles,
                      "tile_size": cfg.data.tile_size, "memory_format": tcfg.memory_format},
           "note": "FP32 re-training from new seeds, test split held out (measured on this CPU); run_* "
                   "figures are the run's own (validation split; deployed = emulated Myriad X when "
                   "run_deployed_emulated)", "results": results, "rows": rows,
           "wall_s": time.perf_counter() - t_start,
           "command": "python benchmarks/search_winners.py " + " ".join(sys.argv[1:])}
    write_json(out, args.out)


if __name__ == "__main__":
    main()
