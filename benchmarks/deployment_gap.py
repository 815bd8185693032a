"""Deployment gap of FP16 deployment and how much deployment-aligned fine-tuning recovers.

For several architectures of the search space (including blocks without batch norm) x seeds,
on the embedded synthetic data with raw digital-number inputs (normalization 'raw'):

* FP32 mIoU, ptq mIoU (FP32 training, deployed under the profile), dalp mIoU (FP32 training +
  fine-tuning under the profile with straight-through FP16, deployed), gap recovered
  ``(dalp - ptq) / (fp32 - ptq)``, all on the test split;
* ablation: ptq mIoU under switch variants (ieee, myriadx without weights analysis, FP16
  accumulation, flush-to-zero, FP32 input) to show which switches make a gap;
* speed: dalp fine-tuning step time / FP32 step time (interleaved, same model and batch) and
  emulator throughput (tiles/s).

Usage::

    python benchmarks/deployment_gap.py            # full run (about 10-15 min on 2 cores)
    python benchmarks/deployment_gap.py --quick    # tiny smoke run

Writes benchmarks/results/deployment_gap.json (``--out`` to change).
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from dalp_moo.config import DataConfig, SpaceConfig, TrainConfig
from dalp_moo.data import open_source
from dalp_moo.model import InputNorm, build_model
from dalp_moo.precision import (
    aligned_context,
    deploy_fp16,
    diagnose,
    gap_recovered,
    get_profile,
    run_regimes,
)
from dalp_moo.precision.headroom import rescale_input_for_headroom
from dalp_moo.space import SearchSpace, count_params
from dalp_moo.space.genome import (
    ACTIVATIONS,
    BLOCKS,
    CHANNEL_COEFFICIENTS,
    EXPANSIONS,
    KERNELS,
    POOLINGS,
    REDUCTIONS,
)
from dalp_moo.training import evaluate_segmentation, train_model

#: (name, units: (block, activation, kernel, channel coefficient, expansion, reduction, pooling))
ARCHITECTURES = [
    ("conv_act-96k", [("conv_act", "relu", 3, 12, 3, 2, "max"), ("conv_bn_act", "relu", 3, 11, 3, 2, "max"),
                      ("conv_bn_act", "relu", 3, 11, 3, 2, "max"), ("conv_bn_act", "relu", 3, 8, 3, 2, "max")]),
    ("conv_act-gelu", [("conv_act", "gelu", 5, 6, 3, 2, "avg"), ("conv_act", "gelu", 3, 8, 3, 2, "avg"),
                       ("conv_act", "gelu", 3, 8, 3, 2, "avg")]),
    ("conv_act-relu6", [("conv_act", "relu6", 3, 8, 3, 2, "max"), ("conv_act", "relu", 3, 8, 3, 2, "max"),
                        ("se_conv", "relu", 3, 8, 3, 4, "max")]),
    ("conv_bn_act", [("conv_bn_act", "relu", 3, 8, 3, 2, "max"), ("conv_bn_act", "relu", 3, 8, 3, 2, "max"),
                     ("conv_bn_act", "relu", 3, 8, 3, 2, "max"), ("conv_bn_act", "relu", 3, 8, 3, 2, "max")]),
    ("mixed", [("conv_act", "relu", 3, 6, 3, 2, "max"), ("mbconv_res", "relu6", 3, 6, 3, 2, "max"),
               ("resnet", "relu", 3, 6, 3, 2, "avg"), ("densenet", "relu", 3, 6, 3, 2, "max")]),
]


def genome_of(space: SearchSpace, units: list[tuple]) -> np.ndarray:
    """Genome of an explicit list of units (see ``ARCHITECTURES``)."""
    g = [space.unit_counts.index(len(units))]
    for block, act, k, coeff, exp, red, pool in units:
        g += [BLOCKS.index(block), ACTIVATIONS.index(act), KERNELS.index(k),
              CHANNEL_COEFFICIENTS.index(coeff), EXPANSIONS.index(exp), REDUCTIONS.index(red),
              POOLINGS.index(pool)]
    g += [0] * (space.n_var - len(g))
    return space.canonical(np.array(g))


VARIANTS = {
    "ieee": ("ieee", {}),
    "myriadx": ("myriadx", {}),
    "myriadx_no_wa": ("myriadx", {"weights_analysis": False}),
    "myriadx_fp16acc16": ("myriadx", {"accumulation": "fp16", "accum_chunk": 16}),
    "myriadx_ftz": ("myriadx", {"flush_subnormals": True}),
    "myriadx_fp32_input": ("myriadx", {"input_fp16": False}),
}


def step_time_ratio(model: torch.nn.Module, data, cfg: TrainConfig, profile, steps: int) -> dict:
    """Median time (ms) of one Adam step in FP32 and under the aligned forward, interleaved."""
    loader = torch.utils.data.DataLoader(data, batch_size=cfg.batch_size, shuffle=False)
    images, masks = next(iter(loader))
    opt = torch.optim.Adam(model.parameters(), lr=1e-5)
    ctx = aligned_context(model, profile)
    from dalp_moo.training import focal_loss

    def one(aligned: bool) -> float:
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        if aligned:
            with ctx():
                logits = model(images)
        else:
            logits = model(images)
        focal_loss(logits, masks).backward()
        opt.step()
        return time.perf_counter() - t0

    model.train()
    one(False), one(True)  # warm-up (and the aligned probe)
    fp32, dalp, ratios = [], [], []
    for _ in range(steps):
        a, b = one(False), one(True)
        fp32.append(a)
        dalp.append(b)
        ratios.append(b / a)
    return {"fp32_step_ms": 1e3 * statistics.median(fp32), "dalp_step_ms": 1e3 * statistics.median(dalp),
            "ratio_median": statistics.median(ratios), "steps": steps}


def throughput(model: torch.nn.Module, data, profile) -> dict:
    """Tiles/s of the FP32 model and of the emulated deployed model on ``data`` (batch 16)."""
    images = torch.stack([data[i][0] for i in range(min(len(data), 32))])
    deployed = deploy_fp16(model, profile, example_input=images[:1])
    model.eval()
    out = {}
    for name, fn in (("fp32", model), ("emulated", deployed)):
        with torch.no_grad():
            fn(images[:2])
            t0 = time.perf_counter()
            reps = 0
            while time.perf_counter() - t0 < 2.0:
                for i in range(0, len(images), 16):
                    fn(images[i:i + 16])
                reps += 1
            dt = time.perf_counter() - t0
        out[f"{name}_tiles_per_s"] = reps * len(images) / dt
    out["emulation_slowdown"] = out["fp32_tiles_per_s"] / out["emulated_tiles_per_s"]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="tiny run (2 archs x 1 seed, few tiles)")
    ap.add_argument("--tiles", type=int, default=200)
    ap.add_argument("--tile-size", type=int, default=32)
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--finetune-epochs", type=int, default=2)
    ap.add_argument("--finetune-lr", type=float, default=3e-4)
    ap.add_argument("--overflow-push", type=float, default=1.0)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--profile", default="myriadx")
    ap.add_argument("--archs", default="", help="comma-separated subset of architecture names")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "deployment_gap.json"))
    args = ap.parse_args()
    archs = [a for a in ARCHITECTURES if not args.archs or a[0] in args.archs.split(",")]
    if args.quick:
        args.tiles, args.epochs, args.finetune_epochs, args.seeds = 40, 1, 1, 1
        archs = ARCHITECTURES[:2]
    torch.set_num_threads(max(1, torch.get_num_threads()))
    t_start = time.perf_counter()
    data_cfg = DataConfig(n_tiles=args.tiles, tile_size=args.tile_size, seed=0, normalization="raw")
    source = open_source(data_cfg)
    train_set, val_set, test_set = (source.split(s) for s in ("train", "val", "test"))
    cfg = TrainConfig(epochs=args.epochs, batch_size=8, patience=3, finetune_epochs=args.finetune_epochs,
                      finetune_lr=args.finetune_lr, profile=args.profile, device="cpu")
    space = SearchSpace(SpaceConfig())
    profile = get_profile(args.profile)
    cases = []
    print(f"data: synthetic raw DN, {args.tiles} tiles of {args.tile_size} px "
          f"(train/val/test {len(train_set)}/{len(val_set)}/{len(test_set)}); FP32 epochs "
          f"{args.epochs}, fine-tune epochs {args.finetune_epochs} (lr {args.finetune_lr}); "
          f"profile {profile.name}")
    head = f"{'arch':<15}{'seed':>5}{'params':>8}{'fp32':>8}{'ptq':>8}{'dalp':>8}{'gap':>8}{'recov':>8}  ptq variants"
    print(head)
    print("-" * len(head))
    timing_model = None
    for name, units in archs:
        arch = space.decode(genome_of(space, units))
        params = count_params(arch, source.bands, 2)
        for seed in range(args.seeds):
            torch.manual_seed(seed)
            model = build_model(arch, source.bands, 2, InputNorm([0.0] * source.bands, [1.0] * source.bands))
            fit = train_model(model, train_set, val_set, cfg, seed=seed, device=torch.device("cpu"))

            def finetune(m, ctx, seed=seed):  # noqa: ANN001
                return train_model(m, train_set, val_set, cfg, seed=seed + 1000, device=torch.device("cpu"),
                                   epochs=cfg.finetune_epochs, lr=cfg.finetune_lr, forward_context=ctx)

            def score(predict) -> float:  # noqa: ANN001
                return evaluate_segmentation(predict, test_set, 2).miou

            model.eval()
            variants = {}
            for vname, (pname, over) in VARIANTS.items():
                variants[vname] = score(deploy_fp16(model, get_profile(pname, **over)))
            probe = torch.stack([test_set[i][0] for i in range(min(8, len(test_set)))])
            calib = torch.stack([train_set[i][0] for i in range(min(16, len(train_set)))])
            diag = diagnose(model, profile, probe)["summary"]
            rescaled = copy.deepcopy(model)
            k = rescale_input_for_headroom(rescaled, calib, profile)
            rescale_only = score(deploy_fp16(rescaled, profile)) if k else None
            res = run_regimes(model, finetune, score, "dalp", profile, overflow_push=args.overflow_push,
                              calibration=calib)
            after = diagnose(model, profile, probe)["summary"]
            gap = res["fp32_miou"] - res["ptq_miou"]
            rec = gap_recovered(res["fp32_miou"], res["ptq_miou"], res["dalp_miou"])
            case = {
                "arch": name, "description": arch.describe(), "arch_id": arch.arch_id, "params": params,
                "seed": seed, "fp32_miou": res["fp32_miou"], "ptq_miou": res["ptq_miou"],
                "dalp_miou": res["dalp_miou"], "gap": gap, "gap_recovered": rec,
                "fp32_epochs": fit.epochs_run, "finetune_s": res["finetune_s"],
                "ptq_variants": variants, "input_rescale_k": res["input_rescale_k"],
                "rescale_only_miou": rescale_only,
                "ptq_overflow": diag["overflow"], "ptq_nonfinite_output": diag["output_nonfinite_fraction"],
                "dalp_overflow": after["overflow"], "dalp_nonfinite_output": after["output_nonfinite_fraction"],
            }
            cases.append(case)
            vtxt = " ".join(f"{k.replace('myriadx', 'mx')}={v:.3f}" for k, v in variants.items())
            print(f"{name:<15}{seed:>5}{params:>8}{res['fp32_miou']:>8.3f}{res['ptq_miou']:>8.3f}"
                  f"{res['dalp_miou']:>8.3f}{gap:>8.3f}{(f'{rec:.0%}' if rec is not None else '-'):>8}  {vtxt}",
                  flush=True)
            if timing_model is None or name == "conv_act-96k":
                timing_model = (name, model)
            Path(args.out).parent.mkdir(parents=True, exist_ok=True)
            Path(args.out).write_text(json.dumps({"benchmark": "deployment_gap", "partial": True,
                                                  "cases": cases}, indent=2, default=float))
    big = [c for c in cases if c["gap"] > 0.02]
    mean_rec = statistics.mean(c["gap_recovered"] for c in big) if big else None
    assert timing_model is not None
    timing = step_time_ratio(timing_model[1], train_set, cfg, profile, steps=5 if args.quick else 15)
    thr = throughput(timing_model[1], test_set, profile)
    summary = {
        "benchmark": "deployment_gap",
        "partial": False,
        "profile": profile.to_dict(),
        "settings": {"tiles": args.tiles, "tile_size": args.tile_size, "epochs": args.epochs,
                     "finetune_epochs": args.finetune_epochs, "finetune_lr": args.finetune_lr,
                     "overflow_push": args.overflow_push, "seeds": args.seeds, "normalization": "raw",
                     "batch_size": cfg.batch_size, "threads": torch.get_num_threads(), "quick": args.quick},
        "mean_gap_recovered": mean_rec,
        "cases_with_gap": len(big),
        "mean_gap": statistics.mean(c["gap"] for c in cases),
        "mean_variant_gap": {v: statistics.mean(c["fp32_miou"] - c["ptq_variants"][v] for c in cases)
                             for v in VARIANTS},
        "step_time_ratio": timing["ratio_median"],
        "step_timing": {**timing, "arch": timing_model[0]},
        "throughput": {**thr, "arch": timing_model[0], "tile_size": args.tile_size},
        "wall_s": time.perf_counter() - t_start,
        "cases": cases,
    }
    print()
    print(f"cases with gap > 0.02: {len(big)} of {len(cases)}; mean gap recovered: "
          f"{'-' if mean_rec is None else f'{mean_rec:.1%}'}")
    print("mean gap per ptq variant: " + ", ".join(f"{k} {v:+.4f}" for k, v in summary["mean_variant_gap"].items()))
    print(f"dalp step / fp32 step: {timing['ratio_median']:.2f} ({timing['dalp_step_ms']:.1f} ms / "
          f"{timing['fp32_step_ms']:.1f} ms, {timing_model[0]}, batch {cfg.batch_size})")
    print(f"throughput: fp32 {thr['fp32_tiles_per_s']:.1f} tiles/s, emulated {thr['emulated_tiles_per_s']:.1f} "
          f"tiles/s ({args.tile_size} px); wall {summary['wall_s']:.0f} s")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(summary, indent=2, default=float))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
