"""Do candidates learn at the default preset's budget? FP32 training of U-Nets from the search
space on the embedded data, under the paper's recipe (before) and the balanced recipe (after).

For each recipe (``train.recipe``: ``paper`` = Adam 1e-3, focal loss alpha 1 gamma 2, batch 8,
patience 3, constant lr, shuffled tiles; ``balanced`` = a vessel-class Dice loss added
and the output bias starting at the class prior, with the default preset's learning rate and
schedule (cosine at 3e-3 since 2026-12-02), see ``dalp_moo.training.trainer``; further
settings with ``--variant``), at the default preset's budget
(its ``train.epochs`` and data size unless overridden):

* the reference U-Nets (``BASELINES``: a conv-BN-ReLU U-Net of 66.5k parameters on raw digital
  numbers, the default input, and on standardised inputs; a plain conv+act U-Net) x ``--seeds``;
* ``--random-archs`` random feasible architectures of the search space (the kind of population
  a search starts from), one seed each, to count degenerate candidates: vessel IoU 0 or one
  class predicted everywhere on the test split.

Scores are test-split (held out) and validation-split mIoU / vessel IoU (fraction).

    python benchmarks/data_baseline.py [--recipes paper,balanced] [--seeds 3]
        [--random-archs 12] [--epochs N] [--n-tiles N] [--tile-size N] [--out FILE]
        [--variant NAME=KEY:VALUE,KEY:VALUE ...]

``--variant`` adds a named training setting (``train`` keys over the default preset's), e.g.
``--variant cosine3=recipe:balanced,schedule:cosine,lr:0.003``; list it in ``--recipes`` to run it.

Prints a table and writes benchmarks/results/data_baseline.json.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dalp_moo.config import DataConfig, SpaceConfig, load_config, parse_override
from dalp_moo.data import normalization_params, open_source
from dalp_moo.model import InputNorm, ParamCounter, build_model, count_params
from dalp_moo.space import SearchSpace
from dalp_moo.space.genome import BLOCKS, CHANNEL_COEFFICIENTS, GENES_PER_UNIT, KERNELS
from dalp_moo.training import degenerate_reason, evaluate_segmentation, train_model
from dalp_moo.training.trainer import PAPER_SETTINGS

#: (label, block, channel coefficient, kernel, units, normalisation)
BASELINES = (
    ("conv_bn_act c8 k3 x4, raw DN", "conv_bn_act", 8, 3, 4, "raw"),
    ("conv_bn_act c8 k3 x4, standardize", "conv_bn_act", 8, 3, 4, "standardize"),
    ("conv_act c6 k3 x4, raw DN", "conv_act", 6, 3, 4, "raw"),
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


def default_space(default: Any) -> tuple[ParamCounter, SearchSpace]:
    """Parameter counter and search space of the default preset's config ``default`` (the
    space the benchmarks' U-Nets are drawn from)."""
    count = ParamCounter(default.data.bands, 2)
    return count, SearchSpace(SpaceConfig(), param_cap=default.constraints.param_cap, count=count)


def predicted_classes(model: torch.nn.Module, dataset, batch: int = 32) -> set[int]:
    """Classes the model predicts anywhere on ``dataset``."""
    seen: set[int] = set()
    with torch.no_grad():
        for i in range(0, len(dataset), batch):
            x = torch.stack([dataset[j][0] for j in range(i, min(i + batch, len(dataset)))])
            seen |= set(model(x).argmax(1).unique().tolist())
    return seen


def train_one(arch, dcfg: DataConfig, tcfg, seed: int, label: str, setting: str,
              keep_model: bool = False) -> dict:
    """Train ``arch`` in FP32 and score it (a row of the result JSON); ``keep_model``: the row
    also holds the trained model under ``"model"`` (to be popped before writing)."""
    source = open_source(dcfg)
    torch.manual_seed(seed)
    shift, scale = normalization_params(dcfg, source.band_stats())
    model = build_model(arch, source.bands, 2, InputNorm(shift, scale))
    t0 = time.perf_counter()
    row = {"label": label, "arch": arch.describe(), "arch_id": arch.arch_id,
           "params": count_params(arch, source.bands, 2), "normalization": dcfg.normalization,
           "recipe": setting, "seed": seed}
    try:
        result = train_model(model, source.split("train"), source.split("val"), tcfg, seed=seed,
                             device=torch.device("cpu"), label=label, init_prior=True)
    except Exception as exc:  # a candidate that does not train normally (diverged)
        row.update(trained=False, reason=f"{type(exc).__name__}: {exc}")
        return row
    model.eval()
    val = evaluate_segmentation(model, source.split("val"), 2)
    test = evaluate_segmentation(model, source.split("test"), 2)
    classes = predicted_classes(model, source.split("test"))
    row.update(trained=True, epochs_run=result.epochs_run, train_s=round(time.perf_counter() - t0, 1),
               val_miou=val.miou, val_vessel_iou=val.per_class_iou[-1],
               test_miou=test.miou, test_vessel_iou=test.per_class_iou[-1],
               constant_prediction=len(classes) < 2,
               degenerate=bool(degenerate_reason(test.per_class_iou[0], test.per_class_iou[-1])))
    if keep_model:
        row["model"] = model
    return row


def _mean(rows: list[dict], key: str) -> float | None:
    vals = [r[key] for r in rows if r.get("trained")]
    return statistics.mean(vals) if vals else None


def write_json(out: dict, path: str | Path) -> None:
    """Write a benchmark's JSON document to ``path`` (folders created) and say so."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(out, indent=1, default=float))
    print(f"wrote {path}")


def seed_summary(runs: list[dict]) -> dict[str, Any]:
    """Figures over the training seeds of one model and setting (rows of :func:`train_one`):
    runs, trained, degenerate, mean/min/max test mIoU, mean validation mIoU and test vessel IoU
    (over the trained runs; None when none trained) and the training time (s)."""
    test = [r["test_miou"] for r in runs if r.get("trained")]
    return {"seeds": len(runs), "trained": len(test),
            "degenerate": sum(bool(r.get("degenerate")) for r in runs if r.get("trained")),
            "mean_test_miou": _mean(runs, "test_miou"),
            "min_test_miou": min(test, default=None), "max_test_miou": max(test, default=None),
            "mean_val_miou": _mean(runs, "val_miou"),
            "mean_test_vessel_iou": _mean(runs, "test_vessel_iou"),
            "train_s": sum(r.get("train_s", 0.0) for r in runs)}


def main() -> None:
    default = load_config("default")
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--recipes", default="paper,balanced",
                    help="comma-separated train.recipe names or --variant names to run")
    ap.add_argument("--seeds", type=int, default=3, help="seeds per reference U-Net")
    ap.add_argument("--random-archs", type=int, default=12, help="random feasible architectures")
    ap.add_argument("--only", default="", help="comma-separated indices of BASELINES to run")
    ap.add_argument("--epochs", type=int, default=default.train.epochs,
                    help="FP32 training epochs (default: the default preset's)")
    ap.add_argument("--n-tiles", type=int, default=default.data.n_tiles,
                    help="tiles generated (default: the default preset's)")
    ap.add_argument("--tile-size", type=int, default=default.data.tile_size,
                    help="tile edge (pixels; default: the default preset's)")
    ap.add_argument("--source", default=default.data.source, help="data.source (e.g. synthetic:clear)")
    ap.add_argument("--seed", type=int, default=0, help="data seed")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (0 = torch default)")
    ap.add_argument("--out", default="benchmarks/results/data_baseline.json", help="result JSON")
    ap.add_argument("--variant", action="append", default=[],
                    help="NAME=KEY:VALUE,... a named setting of train keys (e.g. cosine3=schedule:cosine,lr:0.003)")
    args = ap.parse_args()
    # paper: its settings in full (the default preset's lr and schedule are the balanced recipe's)
    variants = {"paper": {"recipe": "paper", "schedule": "constant", **PAPER_SETTINGS},
                "balanced": {"recipe": "balanced"}}
    for spec in args.variant:
        name, _, body = spec.partition("=")
        variants[name] = {k: parse_override(f"train.{k}={v}")["train"][k]
                          for k, v in (kv.split(":", 1) for kv in body.split(",") if kv)}
    torch.set_num_threads(args.threads)
    _, space = default_space(default)
    recipes = [r for r in args.recipes.split(",") if r]
    only = {int(i) for i in args.only.split(",") if i}
    base_data = dataclasses.replace(default.data, source=args.source, n_tiles=args.n_tiles,
                                    tile_size=args.tile_size, seed=args.seed)
    rng = np.random.default_rng(12345)
    randoms = []
    while len(randoms) < args.random_archs:
        g = space.repair(space.sample(1, rng)[0])
        arch = space.decode(g)
        if arch.arch_id not in {a.arch_id for a in randoms}:
            randoms.append(arch)
    rows: list[dict] = []
    t_start = time.perf_counter()
    unknown = [r for r in recipes if r not in variants]
    if unknown:
        ap.error(f"unknown setting(s) {', '.join(unknown)}: not paper, balanced or a --variant")
    tcfgs = {r: dataclasses.replace(default.train, **{"epochs": args.epochs, "regime": "fp32", "device": "cpu",
                                                      **variants[r]}) for r in recipes}  # bad keys fail here
    print(f"budget: {args.epochs} FP32 epochs, {args.n_tiles} tiles of {args.tile_size} px "
          f"({args.source}); recipes {', '.join(recipes)}", flush=True)
    for recipe in recipes:
        tcfg = tcfgs[recipe]
        jobs = [(label, space.decode(genome_for(space, b, c, k, u)), norm, seed)
                for i, (label, b, c, k, u, norm) in enumerate(BASELINES)
                if not only or i in only for seed in range(args.seeds)]
        jobs += [(f"random {i}", arch, base_data.normalization, 0) for i, arch in enumerate(randoms)]
        for label, arch, norm, seed in jobs:
            dcfg = dataclasses.replace(base_data, normalization=norm)
            r = train_one(arch, dcfg, tcfg, seed, label, recipe)
            rows.append(r)
            if r["trained"]:
                print(f"{recipe:9s} {label:36s} s{seed} {r['params']:6d}p ep {r['epochs_run']:2d}  "
                      f"val {r['val_miou']:.3f}/{r['val_vessel_iou']:.3f}  test {r['test_miou']:.3f}"
                      f"/{r['test_vessel_iou']:.3f}{'  DEGENERATE' if r['degenerate'] else ''}"
                      f"  ({r['train_s']:.0f} s)", flush=True)
            else:
                print(f"{recipe:9s} {label:36s} s{seed} failed: {r['reason']}", flush=True)
    summary = {}
    for recipe in recipes:
        rr = [r for r in rows if r["recipe"] == recipe]
        per_baseline = {}
        for label, *_ in BASELINES:
            b = [r for r in rr if r["label"] == label]
            if b:
                per_baseline[label] = {"params": b[0]["params"], **seed_summary(b)}
        rnd = [r for r in rr if r["label"].startswith("random")]
        trained = [r for r in rnd if r["trained"]]
        summary[recipe] = {
            "baselines": per_baseline,
            "random_archs": len(rnd), "random_trained_normally": len(trained),
            "random_degenerate": sum(r["degenerate"] for r in trained),
            "random_mean_test_miou": _mean(trained, "test_miou"),
            "random_degenerate_share": (sum(r["degenerate"] for r in trained) / len(trained)
                                        if trained else None)}
    print()
    for recipe, s in summary.items():
        for label, b in s["baselines"].items():
            print(f"{recipe:9s} {label:36s} mean test mIoU {b['mean_test_miou']:.3f} (min "
                  f"{b['min_test_miou']:.3f}, {b['seeds']} seeds), vessel IoU "
                  f"{b['mean_test_vessel_iou']:.3f}, degenerate {b['degenerate']}")
        if s["random_archs"]:
            print(f"{recipe:9s} random architectures: {s['random_degenerate']} of "
                  f"{s['random_trained_normally']} degenerate (trained normally of "
                  f"{s['random_archs']}); mean test mIoU {s['random_mean_test_miou']:.3f}")
    out = {"benchmark": "data_baseline",
           "budget": {"epochs": args.epochs, "patience": default.train.patience,
                      "batch_size": default.train.batch_size, "n_tiles": args.n_tiles,
                      "tile_size": args.tile_size, "source": args.source, "data_seed": args.seed,
                      "from_preset": "default"},
           "recipes": {r: dataclasses.asdict(dataclasses.replace(default.train, **variants[r]))
                       for r in recipes},
           "data": open_source(base_data).describe(),
           "summary": summary, "rows": rows, "torch": torch.__version__,
           "threads": args.threads, "wall_s": time.perf_counter() - t_start,
           "note": "degenerate = vessel IoU 0 or one class predicted everywhere (test split)"}
    write_json(out, args.out)


if __name__ == "__main__":
    main()
