"""Which 60k-100k conv-BN-ReLU U-Nets learn best at the default preset's budget? Every plain
U-Net of the search space built from ``conv_bn_act`` units with one kernel size and channel
coefficient for all units (channels c, 2c, 3c, ...) whose size is 60,000-100,000 parameters,
trained in FP32 with the balanced recipe on the embedded data, ``--seeds`` training seeds each.

The family is fixed by that rule before anything is trained (no architecture is added or left
out after seeing a score). The best member is chosen on the validation split and reported on the
held-out test split, so the figure quoted for "the best U-Net" is not selected on the data it is
reported on.

    python benchmarks/unet_family.py [--seeds 3] [--threads 1]

Prints a table and writes benchmarks/results/unet_family.json.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from data_baseline import default_space, genome_for, seed_summary, train_one, write_json  # noqa: E402

from dalp_moo.config import load_config  # noqa: E402
from dalp_moo.model import ParamCounter  # noqa: E402
from dalp_moo.space import SearchSpace  # noqa: E402
from dalp_moo.space.genome import CHANNEL_COEFFICIENTS, KERNELS  # noqa: E402

#: parameter range of the family (parameters, inclusive)
PARAM_RANGE = (60_000, 100_000)


def family(space: SearchSpace, count: ParamCounter) -> list[tuple[str, Any, int]]:
    """(label, architecture, parameters) of every uniform conv-BN-ReLU U-Net in PARAM_RANGE."""
    out = []
    for kernel in KERNELS:
        for units in space.unit_counts:
            for coeff in CHANNEL_COEFFICIENTS:
                arch = space.decode(genome_for(space, "conv_bn_act", coeff, kernel, units))
                n = count(arch)
                if PARAM_RANGE[0] <= n <= PARAM_RANGE[1] and len(arch.units) == units:
                    out.append((f"conv_bn_act c{coeff} k{kernel} x{units}", arch, n))
    return out


def main() -> None:
    default = load_config("default")
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, default=3, help="training seeds per U-Net")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (0 = torch default)")
    ap.add_argument("--out", default="benchmarks/results/unet_family.json", help="result JSON")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    count, space = default_space(default)
    members = family(space, count)
    dcfg = dataclasses.replace(default.data, normalization="raw")
    tcfg = dataclasses.replace(default.train, regime="fp32", device="cpu", recipe="balanced")
    print(f"budget: {tcfg.epochs} FP32 epochs, {dcfg.n_tiles} tiles of {dcfg.tile_size} px; "
          f"{len(members)} U-Nets of {PARAM_RANGE[0]:,}-{PARAM_RANGE[1]:,} parameters", flush=True)
    t_start = time.perf_counter()
    rows: list[dict] = []
    table: dict[str, dict[str, Any]] = {}
    for label, arch, n in members:
        runs = [train_one(arch, dcfg, tcfg, seed, label, "balanced") for seed in range(args.seeds)]
        rows += runs
        table[label] = {"arch": arch.describe(), "params": n, **seed_summary(runs)}
        t = table[label]
        print(f"{label:26s} {n:7,d} p  val {t['mean_val_miou']:.3f}  test {t['mean_test_miou']:.3f} "
              f"[{t['min_test_miou']:.3f}, {t['max_test_miou']:.3f}]  vessel IoU {t['mean_test_vessel_iou']:.3f}  "
              f"degenerate {t['degenerate']}  ({t['train_s']:.0f} s)", flush=True)
    scored = {k: t for k, t in table.items() if t["mean_val_miou"] is not None}
    best = max(scored, key=lambda k: scored[k]["mean_val_miou"]) if scored else None
    if best:
        print(f"best on validation: {best}: test mIoU {table[best]['mean_test_miou']:.3f} "
              f"(mean of {table[best]['trained']} seeds)")
    out = {"benchmark": "unet_family",
           "budget": {"epochs": tcfg.epochs, "n_tiles": dcfg.n_tiles, "tile_size": dcfg.tile_size,
                      "source": dcfg.source, "normalization": dcfg.normalization, "recipe": "balanced",
                      "batch_size": tcfg.batch_size, "data_seed": dcfg.seed, "from_preset": "default"},
           "param_range": list(PARAM_RANGE), "seeds": args.seeds, "members": table,
           "best_on_validation": best,
           "best_test_miou": table[best]["mean_test_miou"] if best else None,
           "rows": rows, "torch": torch.__version__, "threads": args.threads,
           "wall_s": time.perf_counter() - t_start,
           "note": "FP32 training only (nothing emulated); the best member is chosen on the validation "
                   "split, its figure is the held-out test split's"}
    write_json(out, args.out)


if __name__ == "__main__":
    main()
