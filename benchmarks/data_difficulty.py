"""What limits FP32 mIoU on the embedded data? One hard case of the scene generator removed at a
time, more epochs, and training settings, for the 66.5k conv-BN-ReLU U-Net on raw digital numbers
(``data_baseline.BASELINES[0]``) under the balanced recipe.

Every setting trains ``--seeds`` models (training seeds 0..n-1, the same data seed) at the
default preset's budget (6 FP32 epochs, 600 tiles of 64 px, its training settings) unless the
setting names its own epochs, tile count, tile size or ``train`` keys. A setting is a
``data.generator`` table (see ``dalp_moo.data.scene.GeneratorParams``), a named variant
(``synthetic:jittered``, the default data before 2026-12-02), a budget, or ``train`` keys
(``paper lr`` = the constant 1e-3 of the paper); ``compute`` is its training pixels x epochs
relative to the default budget. Scores are test-split (held out) mIoU; ``--fresh`` also scores
every model on the training split of another data seed (420 tiles never seen in training or
model selection).

    python benchmarks/data_difficulty.py [--seeds 3] [--settings 'NAME;NAME'] [--threads 1] [--update] [--fresh]

Prints a table and writes benchmarks/results/data_difficulty.json (``--update``: replace only the
settings run and keep the file's others).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from data_baseline import BASELINES, default_space, genome_for, seed_summary, train_one, write_json  # noqa: E402

from dalp_moo.config import load_config  # noqa: E402
from dalp_moo.data import open_source  # noqa: E402
from dalp_moo.training import evaluate_segmentation  # noqa: E402

#: the paper's constant learning rate, over the default preset's cosine 3e-3
PAPER_LR = {"lr": 1e-3, "schedule": "constant"}

#: name -> (data.source, data.generator changes, epochs, n_tiles, tile_size, train changes);
#: None / {}: the default preset's
SETTINGS: dict[str, tuple[str, dict[str, Any], int | None, int | None, int | None, dict[str, Any]]] = {
    "default": ("synthetic", {}, None, None, None, {}),
    "default, paper lr": ("synthetic", {}, None, None, None, PAPER_LR),
    "jittered (default before 2026-12-02)": ("synthetic:jittered", {}, None, None, None, {}),
    "jittered, paper lr (default before 2026-12-02)": ("synthetic:jittered", {}, None, None, None, PAPER_LR),
    "no misregistration": ("synthetic", {"misregistration_px": 0}, None, None, None, {}),
    "no clouds": ("synthetic", {"p_cloud": 0.0, "small_cloud_density": 0.0}, None, None, None, {}),
    "no land": ("synthetic", {"p_land": 0.0, "rocks_density": 0.0}, None, None, None, {}),
    "no dark/rust hulls": ("synthetic", {"p_dark_hull": 0.0, "p_rust_hull": 0.0}, None, None, None, {}),
    "no glint": ("synthetic", {"p_glint": 0.0, "sparkle_density": 0.0}, None, None, None, {}),
    "no haze": ("synthetic", {"p_haze": 0.0}, None, None, None, {}),
    "no wakes": ("synthetic", {"p_moving": 0.0}, None, None, None, {}),
    "no sensor noise": ("synthetic", {"read_noise_dn": 0.0, "shot_noise": 0.0, "striping_dn": 0.0},
                        None, None, None, {}),
    "clear variant": ("synthetic:clear", {}, None, None, None, {}),
    "default, 12 epochs": ("synthetic", {}, 12, None, None, {}),
    "150 tiles of 128 px": ("synthetic", {}, None, 150, 128, {}),
    "600 tiles of 128 px, 10 epochs": ("synthetic", {}, 10, 600, 128, {}),
}


def main() -> None:
    default = load_config("default")
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, default=3, help="training seeds per setting")
    ap.add_argument("--settings", default="", help="names of SETTINGS separated by ';' (default: all)")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (0 = torch default)")
    ap.add_argument("--out", default="benchmarks/results/data_difficulty.json", help="result JSON")
    ap.add_argument("--update", action="store_true",
                    help="keep the settings of an existing --out file that are not run now")
    ap.add_argument("--fresh", action="store_true",
                    help="also score each model on 420 tiles of another data seed (data.seed + 100)")
    args = ap.parse_args()
    names = [n.strip() for n in args.settings.split(";") if n.strip()] or list(SETTINGS)
    unknown = [n for n in names if n not in SETTINGS]
    if unknown:
        ap.error(f"unknown setting(s) {', '.join(unknown)}; known: {', '.join(SETTINGS)}")
    torch.set_num_threads(args.threads)
    _, space = default_space(default)
    label, block, coeff, kernel, unit, norm = BASELINES[0]
    arch = space.decode(genome_for(space, block, coeff, kernel, unit))
    t_start = time.perf_counter()
    table: dict[str, dict[str, Any]] = {}
    rows: list[dict] = []
    for name in names:
        source, changes, epochs, n_tiles, tile_size, train = SETTINGS[name]
        dcfg = dataclasses.replace(default.data, source=source, generator=changes, normalization=norm,
                                   n_tiles=n_tiles or default.data.n_tiles,
                                   tile_size=tile_size or default.data.tile_size)
        tcfg = dataclasses.replace(default.train, **{"epochs": epochs or default.train.epochs, "regime": "fp32",
                                                     "device": "cpu", "recipe": "balanced", **train})
        fresh = open_source(dataclasses.replace(dcfg, seed=dcfg.seed + 100)) if args.fresh else None
        runs = []
        for seed in range(args.seeds):
            r = train_one(arch, dcfg, tcfg, seed, label, "balanced", keep_model=fresh is not None)
            model = r.pop("model", None)
            if fresh is not None and model is not None:
                r["fresh_miou"] = evaluate_segmentation(model, fresh.split("train"), 2).miou
            r["setting"] = name
            runs.append(r)
            rows.append(r)
        table[name] = {
            "source": source, "generator": changes, "train": train, "lr": tcfg.lr,
            "schedule": tcfg.schedule, "epochs": tcfg.epochs,
            "n_tiles": dcfg.n_tiles, "tile_size": dcfg.tile_size,
            "compute": (dcfg.n_tiles * dcfg.tile_size ** 2 * tcfg.epochs)
            / (default.data.n_tiles * default.data.tile_size ** 2 * default.train.epochs),
            **seed_summary(runs)}
        t = table[name]
        if fresh is not None:
            scores = [r["fresh_miou"] for r in runs if "fresh_miou" in r]
            t["mean_fresh_miou"] = sum(scores) / len(scores) if scores else None
            t["min_fresh_miou"] = min(scores, default=None)
        print(f"{name:30s} ep {t['epochs']:2d} x{t['compute']:4.1f}  test mIoU {t['mean_test_miou']:.3f} "
              f"[{t['min_test_miou']:.3f}, {t['max_test_miou']:.3f}]  val {t['mean_val_miou']:.3f}  "
              f"vessel IoU {t['mean_test_vessel_iou']:.3f}  degenerate {t['degenerate']}"
              + (f"  fresh {t['mean_fresh_miou']:.3f}" if t.get("mean_fresh_miou") is not None else ""),
              flush=True)
    if args.update and Path(args.out).exists():
        old = json.loads(Path(args.out).read_text())
        table = {**{k: v for k, v in old.get("settings", {}).items() if k not in table}, **table}
        rows = [r for r in old.get("rows", []) if r.get("setting") not in names] + rows
        for t in table.values():  # files written before budgets were settings
            t.setdefault("n_tiles", default.data.n_tiles)
            t.setdefault("tile_size", default.data.tile_size)
            t.setdefault("compute", t["epochs"] / default.train.epochs)
    base = table.get("default", {}).get("mean_test_miou")
    for t in table.values():
        t["delta_vs_default"] = (t["mean_test_miou"] - base
                                 if base is not None and t["mean_test_miou"] is not None else None)
    out = {"benchmark": "data_difficulty", "model": {"label": label, "arch": arch.describe(),
                                                     "params": rows[0]["params"] if rows else None},
           "budget": {"epochs": default.train.epochs, "n_tiles": default.data.n_tiles,
                      "tile_size": default.data.tile_size, "recipe": "balanced",
                      "batch_size": default.train.batch_size, "data_seed": default.data.seed},
           "settings": table, "rows": rows, "torch": torch.__version__, "threads": args.threads,
           "wall_s": time.perf_counter() - t_start,  # of this invocation (--update: not of the kept settings)
           "note": "test-split mIoU (held out) of FP32 training; mean over training seeds; "
                   "fresh = the training split of data seed + 100 (never seen in training or model "
                   "selection); the default data and training settings of 2026-12-02 (fixed band "
                   "offsets, cosine schedule at 3e-3) were chosen from this file's first four settings"}
    write_json(out, args.out)


if __name__ == "__main__":
    main()
