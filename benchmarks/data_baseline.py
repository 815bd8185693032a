"""Baseline check of the embedded data: train U-Nets from the search space in FP32 and report
vessel IoU and mIoU on the validation and test splits (the data must be learnable but not
trivially easy; the paper's FP32 mIoU is 0.85).

    python benchmarks/data_baseline.py [--epochs 10] [--n-tiles 600] [--tile-size 64]
        [--source synthetic:clear] [--only N] [--out FILE]

Prints a table and writes benchmarks/results/data_baseline.json.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from dalp_moo.config import DataConfig, SpaceConfig, TrainConfig
from dalp_moo.data import normalization_params, open_source
from dalp_moo.model import InputNorm, build_model
from dalp_moo.space import SearchSpace, count_params
from dalp_moo.space.genome import BLOCKS, CHANNEL_COEFFICIENTS, GENES_PER_UNIT, KERNELS
from dalp_moo.training import evaluate_segmentation, train_model

#: (label, block, channel coefficient, kernel, units, normalisation)
BASELINES = (
    ("conv_bn_act c8 k3 x4, standardize", "conv_bn_act", 8, 3, 4, "standardize"),
    ("conv_bn_act c8 k3 x4, raw DN", "conv_bn_act", 8, 3, 4, "raw"),
    ("conv_act c6 k3 x4, scale", "conv_act", 6, 3, 4, "scale"),
)


def genome_for(space: SearchSpace, block: str, coeff: int, kernel: int, units: int) -> np.ndarray:
    g = np.zeros(space.n_var, dtype=int)
    g[0] = space.unit_counts.index(units)
    for i in range(units):
        base = 1 + i * GENES_PER_UNIT
        g[base + 0] = BLOCKS.index(block)
        g[base + 2] = KERNELS.index(kernel)
        g[base + 3] = CHANNEL_COEFFICIENTS.index(coeff)
    return g


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--n-tiles", type=int, default=600)
    ap.add_argument("--tile-size", type=int, default=64)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--source", default="synthetic", help="data.source (e.g. synthetic:clear)")
    ap.add_argument("--only", type=int, default=-1, help="run only baseline number N")
    ap.add_argument("--out", default="benchmarks/results/data_baseline.json")
    args = ap.parse_args()
    torch.set_num_threads(1)
    space = SearchSpace(SpaceConfig())
    rows = []
    for k, (label, block, coeff, kernel, units, norm) in enumerate(BASELINES):
        if args.only >= 0 and k != args.only:
            continue
        dcfg = DataConfig(source=args.source, n_tiles=args.n_tiles, tile_size=args.tile_size,
                          seed=args.seed, normalization=norm)
        source = open_source(dcfg)
        tcfg = TrainConfig(epochs=args.epochs, regime="fp32", patience=3)
        arch = space.decode(genome_for(space, block, coeff, kernel, units))
        torch.manual_seed(args.seed)
        shift, scale = normalization_params(dcfg, source.band_stats())
        model = build_model(arch, source.bands, 2, InputNorm(shift, scale))
        t0 = time.perf_counter()
        result = train_model(model, source.split("train"), source.split("val"), tcfg,
                             seed=args.seed, device=torch.device("cpu"), label=label)
        model.eval()
        val = evaluate_segmentation(model, source.split("val"), 2)
        test = evaluate_segmentation(model, source.split("test"), 2)
        rows.append({
            "baseline": label, "params": count_params(arch, source.bands, 2),
            "epochs_run": result.epochs_run, "train_s": round(time.perf_counter() - t0, 1),
            "val_miou": val.miou, "val_vessel_iou": val.per_class_iou[-1],
            "test_miou": test.miou, "test_vessel_iou": test.per_class_iou[-1],
        })
        r = rows[-1]
        print(f"{label:38s} {r['params']:7d} params  ep {r['epochs_run']:2d}  "
              f"val mIoU {r['val_miou']:.3f} vessel {r['val_vessel_iou']:.3f}  "
              f"test mIoU {r['test_miou']:.3f} vessel {r['test_vessel_iou']:.3f}  "
              f"({r['train_s']:.0f} s)", flush=True)
    out = {"data": {"source": args.source, "n_tiles": args.n_tiles, "tile_size": args.tile_size, "seed": args.seed,
                    "describe": open_source(DataConfig(source=args.source,
                                                       n_tiles=args.n_tiles,
                                                       tile_size=args.tile_size,
                                                       seed=args.seed)).describe()},
           "epochs": args.epochs, "rows": rows, "torch": torch.__version__}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
