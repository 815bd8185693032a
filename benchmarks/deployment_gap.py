"""Deployment gap of FP16 deployment, how much deployment-aligned fine-tuning recovers, and
whether the recovery is explained by extra training or by the input rescaling.

For several architectures of the search space (including blocks without batch norm) x seeds, on
the embedded synthetic data with the ``DataConfig()`` defaults (600 tiles of 64 px, 4 bands, raw
digital numbers), all scores are test-split mIoU (fraction) under the ``myriadx`` profile:

* ``fp32`` / ``ptq``: FP32 training, scored in FP32 / deployed (post-training conversion);
  fp32, ptq and dalp come from :func:`dalp_moo.precision.run_regimes`, the pipeline the search's
  evaluator runs, and every "deployed" score is of the model as the backend (``--backend``,
  default: the search's default, the emulated ``myriadx``) deploys it;
* ``dalp``: the FP32 model, input-headroom rescaling, then ``finetune_epochs`` of fine-tuning
  under the profile (straight-through FP16 forward), deployed;
* ``ft32`` / ``ft32_ptq`` (control): the same fine-tuning epochs, learning rate, seed and data
  order in plain FP32 (no profile, no rescaling), scored in FP32 / deployed;
* ``ft32r_ptq`` (second control): rescaling, then the same plain FP32 fine-tuning, deployed: dalp
  minus this isolates the effect of the FP16-aware forward;
* ``rescale_only``: the FP32 model with the input-headroom rescaling only (no training), deployed;
* ``gap_recovered = (dalp - ptq) / (fp32 - ptq)`` (the paper's definition; cases with a gap
  > 0.02) and ``gap_recovered_vs_control = (dalp - ft32_ptq) / (ft32 - ft32_ptq)`` (cases whose
  control has a gap > 0.02);
* ablation: ptq mIoU under switch variants (ieee, myriadx without weights analysis, FP16
  accumulation, flush-to-zero, FP32 input);
* speed: dalp fine-tuning step time / FP32 step time per architecture (interleaved Adam steps on
  the same model and batch, median of per-pair ratios) and emulator throughput (tiles/s).

Usage::

    python benchmarks/deployment_gap.py            # full run (about 30 min on 2 cores)
    python benchmarks/deployment_gap.py --quick    # tiny smoke run (2 archs x 1 seed, 40 tiles)

Writes benchmarks/results/deployment_gap.json (``--out`` to change).
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dalp_moo import backends
from dalp_moo.config import BackendConfig, DataConfig, SpaceConfig, TrainConfig
from dalp_moo.data import normalization_params, open_source
from dalp_moo.model import InputNorm, build_model, count_params
from dalp_moo.precision import (
    NumericsProfile,
    aligned_context,
    deploy_fp16,
    diagnose,
    gap_recovered,
    get_profile,
    run_regimes,
)
from dalp_moo.precision.headroom import rescale_input_for_headroom
from dalp_moo.space import SearchSpace
from dalp_moo.space.genome import (
    ACTIVATIONS,
    BLOCKS,
    CHANNEL_COEFFICIENTS,
    EXPANSIONS,
    KERNELS,
    POOLINGS,
    REDUCTIONS,
)
from dalp_moo.training import evaluate_segmentation, focal_loss, train_model

#: a deployment gap (mIoU, fraction) below this counts as no gap
GAP_THRESHOLD = 0.02

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


def step_time_ratio(model: torch.nn.Module, data, cfg: TrainConfig, profile: NumericsProfile,
                    steps: int) -> dict:
    """Median time (ms) of one Adam step in FP32 and under the aligned forward, interleaved on
    the same model and batch (``model`` is trained in place at a tiny lr; pass a copy)."""
    loader = torch.utils.data.DataLoader(data, batch_size=cfg.batch_size, shuffle=False)
    images, masks = next(iter(loader))
    opt = torch.optim.Adam(model.parameters(), lr=1e-6)
    ctx = aligned_context(model, profile)

    def one(aligned: bool) -> float:
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        if aligned:
            with ctx():
                logits = model(images)
        else:
            logits = model(images)
        focal_loss(logits, masks, cfg.focal_alpha, cfg.focal_gamma).backward()
        opt.step()
        return time.perf_counter() - t0

    model.train()
    for _ in range(2):  # warm-up (and the aligned probe)
        one(False), one(True)
    fp32, dalp, ratios = [], [], []
    for i in range(steps):
        if i % 2:  # alternate which of the pair runs first
            b, a = one(True), one(False)
        else:
            a, b = one(False), one(True)
        fp32.append(a)
        dalp.append(b)
        ratios.append(b / a)
    return {"fp32_step_ms": 1e3 * statistics.median(fp32), "dalp_step_ms": 1e3 * statistics.median(dalp),
            "ratio_median": statistics.median(ratios), "steps": steps, "batch": list(images.shape)}


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


def _frac(num: float, den: float) -> float | None:
    return num / den if den > GAP_THRESHOLD else None


def run_case(name: str, arch: Any, seed: int, source: Any, splits: tuple, norm: tuple, cfg: TrainConfig,
             profile: NumericsProfile, backend: Any, args: argparse.Namespace,
             time_steps: bool) -> tuple[dict, dict | None]:
    """All regimes of one (architecture, seed); ``norm`` is the input normalisation
    ``(shift, scale)`` per band. Returns the case record and, with ``time_steps``, the step timing
    of the architecture."""
    train_set, val_set, test_set = splits
    cpu = torch.device("cpu")
    torch.manual_seed(seed)
    model = build_model(arch, source.bands, 2, InputNorm(*norm))
    fit = train_model(model, train_set, val_set, cfg, seed=seed, device=cpu, label=f"{name} fp32")
    model.eval()
    fp32_model = copy.deepcopy(model)  # the FP32-trained weights every regime starts from

    def finetune(m: torch.nn.Module, ctx: Any = None) -> Any:
        # same seed (= same data order), epochs and lr for dalp and both controls
        return train_model(m, train_set, val_set, cfg, seed=seed + 1000, device=cpu,
                           epochs=cfg.finetune_epochs, lr=cfg.finetune_lr, forward_context=ctx,
                           label=f"{name} finetune")

    def score(predict: Any) -> float:
        return evaluate_segmentation(predict, test_set, 2).miou

    input_shape = (1, *tuple(test_set[0][0].shape))

    def deployed(m: torch.nn.Module) -> Any:  # the model as the backend runs it
        return backend.deploy(m.eval(), input_shape, profile=profile.name).predict

    variants = {v: score(deploy_fp16(fp32_model, get_profile(p, **over))) for v, (p, over) in VARIANTS.items()}
    probe = torch.stack([test_set[i][0] for i in range(min(8, len(test_set)))])
    calib = torch.stack([train_set[i][0] for i in range(min(16, len(train_set)))])
    diag = diagnose(fp32_model, profile, probe)["summary"]

    # rescaling alone (function-preserving in FP32, no training)
    rescaled = copy.deepcopy(fp32_model)
    k_rescale = rescale_input_for_headroom(rescaled, calib, profile)

    # dalp: rescaling + FP16-aware fine-tuning (the search's regime pipeline)
    dalp_model = copy.deepcopy(fp32_model)
    res = run_regimes(dalp_model, backend, input_shape, score, "dalp", profile, finetune_fn=finetune,
                      calibration=calib, overflow_push=args.overflow_push)
    rescale_only = score(deployed(rescaled)) if k_rescale else res.ptq
    after = diagnose(dalp_model, profile, probe)["summary"]

    # control: the same fine-tuning in plain FP32, then post-training conversion
    t0 = time.perf_counter()
    ft32_model = copy.deepcopy(fp32_model)
    finetune(ft32_model)
    ft32_model.eval()
    ft32_s = time.perf_counter() - t0
    ft32, ft32_ptq = score(ft32_model), score(deployed(ft32_model))

    # second control: rescaling + plain FP32 fine-tuning (only the FP16-aware forward differs from dalp)
    ft32r_ptq = None
    if args.rescaled_control:
        if k_rescale:
            ft32r_model = copy.deepcopy(fp32_model)
            rescale_input_for_headroom(ft32r_model, calib, profile)
            finetune(ft32r_model)
            ft32r_model.eval()
            ft32r_ptq = score(deployed(ft32r_model))
        else:  # no rescaling happened: identical to the first control
            ft32r_ptq = ft32_ptq

    fp32, ptq, dalp = res.fp32, res.ptq, res.dalp
    gap, ctrl_gap = fp32 - ptq, ft32 - ft32_ptq
    case = {
        "arch": name, "description": arch.describe(), "arch_id": arch.arch_id,
        "params": count_params(arch, source.bands, 2), "seed": seed,
        "fp32_miou": fp32, "ptq_miou": ptq, "dalp_miou": dalp,
        "ft32_miou": ft32, "ft32_ptq_miou": ft32_ptq, "ft32_rescaled_ptq_miou": ft32r_ptq,
        "rescale_only_miou": rescale_only, "input_rescale_k": k_rescale,
        "gap": gap, "gap_recovered": gap_recovered(fp32, ptq, dalp) if gap > GAP_THRESHOLD else None,
        "control_gap": ctrl_gap,
        "gap_recovered_vs_control": _frac(dalp - ft32_ptq, ctrl_gap),
        "gap_recovered_by_rescale_only": _frac(rescale_only - ptq, gap),
        "gap_recovered_by_ft32": _frac(ft32_ptq - ptq, gap),
        "gap_recovered_by_ft32_rescaled": None if ft32r_ptq is None else _frac(ft32r_ptq - ptq, gap),
        "fp32_epochs": fit.epochs_run, "fp32_train_s": fit.time_s, "fp32_step_ms": fit.step_ms,
        "dalp_finetune_s": res.finetune_s, "dalp_step_ms": res.finetune.step_ms,
        "ft32_finetune_s": ft32_s,
        "ptq_variants": variants,
        "ptq_overflow": diag["overflow"], "ptq_nonfinite_output": diag["output_nonfinite_fraction"],
        "dalp_overflow": after["overflow"], "dalp_nonfinite_output": after["output_nonfinite_fraction"],
    }
    timing = None
    if time_steps:
        timed = copy.deepcopy(fp32_model)
        rescale_input_for_headroom(timed, calib, profile)  # what dalp fine-tuning runs on
        timing = {"arch": name, "params": case["params"],
                  **step_time_ratio(timed, train_set, cfg, profile, steps=args.timing_steps)}
    return case, timing


def _mean(values: list) -> float | None:
    vals = [v for v in values if v is not None]
    return statistics.mean(vals) if vals else None


def summarise(cases: list[dict], timings: list[dict]) -> dict:
    """Aggregates over cases (gap-recovery means only over cases with a gap > GAP_THRESHOLD)."""
    keys = ("fp32_miou", "ptq_miou", "dalp_miou", "ft32_miou", "ft32_ptq_miou", "ft32_rescaled_ptq_miou",
            "rescale_only_miou", "gap", "control_gap")
    per_arch = {}
    for name in dict.fromkeys(c["arch"] for c in cases):
        cs = [c for c in cases if c["arch"] == name]
        per_arch[name] = {"params": cs[0]["params"], "seeds": len(cs),
                          **{k: _mean([c[k] for c in cs]) for k in keys},
                          "input_rescale_k": [c["input_rescale_k"] for c in cs]}
    diffs = {
        "dalp_minus_ptq": [c["dalp_miou"] - c["ptq_miou"] for c in cases],
        "dalp_minus_ft32_ptq": [c["dalp_miou"] - c["ft32_ptq_miou"] for c in cases],
        "dalp_minus_ft32_rescaled_ptq": [c["dalp_miou"] - c["ft32_rescaled_ptq_miou"] for c in cases
                                         if c["ft32_rescaled_ptq_miou"] is not None],
        "ft32_minus_fp32": [c["ft32_miou"] - c["fp32_miou"] for c in cases],
        "rescale_only_minus_ptq": [c["rescale_only_miou"] - c["ptq_miou"] for c in cases],
    }
    paired = {k: {"mean": _mean(v), "stdev": statistics.stdev(v) if len(v) > 1 else None,
                  "positive": sum(x > 0 for x in v), "n": len(v)} for k, v in diffs.items()}
    ratios = [t["ratio_median"] for t in timings]
    return {
        "mean_gap_recovered": _mean([c["gap_recovered"] for c in cases]),
        "mean_gap_recovered_vs_control": _mean([c["gap_recovered_vs_control"] for c in cases]),
        "mean_gap_recovered_by_rescale_only": _mean([c["gap_recovered_by_rescale_only"] for c in cases]),
        "mean_gap_recovered_by_ft32": _mean([c["gap_recovered_by_ft32"] for c in cases]),
        "mean_gap_recovered_by_ft32_rescaled": _mean([c["gap_recovered_by_ft32_rescaled"] for c in cases]),
        "cases_with_gap": sum(c["gap"] > GAP_THRESHOLD for c in cases),
        "cases_with_control_gap": sum(c["control_gap"] > GAP_THRESHOLD for c in cases),
        "gap_threshold": GAP_THRESHOLD,
        "mean_miou": {k: _mean([c[k] for c in cases]) for k in keys},
        "paired_differences": paired,
        "mean_variant_gap": {v: statistics.mean(c["fp32_miou"] - c["ptq_variants"][v] for c in cases)
                             for v in VARIANTS} if cases else {},
        "step_time_ratio": statistics.median(ratios) if ratios else None,
        "step_timing_per_arch": timings,
        "per_arch": per_arch,
    }


def _f(v: float | None, pct: bool = False) -> str:
    if v is None:
        return "-"
    return f"{v:.0%}" if pct else f"{v:.3f}"


def retime(args: argparse.Namespace, archs: list, space: SearchSpace, source: Any, splits: tuple, norm: tuple,
           cfg: TrainConfig, profile: NumericsProfile) -> None:
    """Re-measure the per-architecture step-time ratio (after 1 FP32 epoch and the input rescaling)
    and replace the timing keys of the JSON at ``args.out`` (the first measurement is kept under
    ``step_timing_first_pass``)."""
    out = Path(args.out)
    summary = json.loads(out.read_text())
    calib = torch.stack([splits[0][i][0] for i in range(min(16, len(splits[0])))])
    timings = []
    for name, units in archs:
        arch = space.decode(genome_of(space, units))
        torch.manual_seed(0)
        model = build_model(arch, source.bands, 2, InputNorm(*norm))
        train_model(model, splits[0], splits[1], dataclasses.replace(cfg, epochs=1), seed=0,
                    device=torch.device("cpu"))
        rescale_input_for_headroom(model, calib, profile)
        t = {"arch": name, "params": count_params(arch, source.bands, 2),
             **step_time_ratio(model, splits[0], cfg, profile, steps=args.timing_steps)}
        timings.append(t)
        print(f"{name:<15} dalp/fp32 step {t['ratio_median']:.2f} ({t['dalp_step_ms']:.0f}/{t['fp32_step_ms']:.0f} ms)",
              flush=True)
    summary.setdefault("step_timing_first_pass", summary.get("step_timing_per_arch"))
    summary["step_timing_previous"] = {k: summary.get(k) for k in
                                       ("step_time_ratio", "step_timing_per_arch", "step_timing_note")}
    summary["step_timing_per_arch"] = timings
    summary["step_time_ratio"] = statistics.median(t["ratio_median"] for t in timings)
    summary["step_timing_note"] = (
        f"re-measured on {time.strftime('%Y-%m-%d')} with --retime --timing-steps {args.timing_steps} "
        f"({torch.get_num_threads()} threads) on models trained 1 FP32 epoch (seed 0) after the input rescaling"
        + (f"; {args.timing_note}" if args.timing_note else "")
        + "; step_timing_previous holds the measurement this one replaced, step_timing_first_pass the first "
          "pass (trained models, partly beside other jobs)")
    print(f"median dalp/fp32 step ratio: {summary['step_time_ratio']:.3f}")
    out.write_text(json.dumps(summary, indent=2, default=float))
    print(f"updated {out}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    defaults = DataConfig()
    ap.add_argument("--quick", action="store_true", help="tiny run (2 archs x 1 seed, 40 tiles, 1 epoch)")
    ap.add_argument("--tiles", type=int, default=defaults.n_tiles)
    ap.add_argument("--tile-size", type=int, default=defaults.tile_size)
    ap.add_argument("--epochs", type=int, default=8, help="FP32 training epochs (early stopping, patience 3)")
    ap.add_argument("--finetune-epochs", type=int, default=2)
    ap.add_argument("--finetune-lr", type=float, default=3e-4)
    ap.add_argument("--overflow-push", type=float, default=1.0)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--profile", default="myriadx")
    ap.add_argument("--backend", default=BackendConfig().name,
                    help="deployment backend of the deployed scores (default: the search's default)")
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads (0 = torch default)")
    ap.add_argument("--timing-steps", type=int, default=15, help="interleaved step pairs per architecture")
    ap.add_argument("--no-rescaled-control", dest="rescaled_control", action="store_false",
                    help="skip the rescaling + plain FP32 fine-tuning control")
    ap.add_argument("--retime", action="store_true",
                    help="only re-measure the step times (models trained 1 FP32 epoch, seed 0) and update "
                         "the timing keys of the existing --out JSON")
    ap.add_argument("--timing-note", default="",
                    help="with --retime: text added to step_timing_note (e.g. the conditions of the measurement)")
    ap.add_argument("--archs", default="", help="comma-separated subset of architecture names")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "deployment_gap.json"))
    args = ap.parse_args()
    archs = [a for a in ARCHITECTURES if not args.archs or a[0] in args.archs.split(",")]
    if args.quick:
        args.tiles, args.epochs, args.finetune_epochs, args.seeds, args.timing_steps = 40, 1, 1, 1, 3
        archs = archs[:2]
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    t_start = time.perf_counter()
    data_cfg = DataConfig(n_tiles=args.tiles, tile_size=args.tile_size)
    source = open_source(data_cfg)
    splits = tuple(source.split(s) for s in ("train", "val", "test"))
    norm = normalization_params(data_cfg, source.band_stats())
    cfg = TrainConfig(epochs=args.epochs, batch_size=8, patience=3, finetune_epochs=args.finetune_epochs,
                      finetune_lr=args.finetune_lr, profile=args.profile, device="cpu")
    space = SearchSpace(SpaceConfig())
    profile = get_profile(args.profile)
    backend = backends.get(args.backend)
    if args.retime:
        retime(args, archs, space, source, splits, norm, cfg, profile)
        return
    settings = {"source": data_cfg.source, "tiles": args.tiles, "tile_size": args.tile_size, "bands": source.bands,
                "normalization": data_cfg.normalization, "epochs": args.epochs, "patience": cfg.patience,
                "finetune_epochs": args.finetune_epochs, "finetune_lr": args.finetune_lr,
                "overflow_push": args.overflow_push, "seeds": args.seeds, "batch_size": cfg.batch_size,
                "threads": torch.get_num_threads(), "quick": args.quick, "backend": args.backend,
                "backend_emulated": backend.info().emulated,
                "archs": [a[0] for a in archs], "timing_steps": args.timing_steps,
                "rescaled_control": args.rescaled_control}
    print(f"data: {data_cfg.source} {data_cfg.normalization}, {args.tiles} tiles of {args.tile_size} px "
          f"(train/val/test {'/'.join(str(len(s)) for s in splits)}); FP32 epochs {args.epochs}, "
          f"fine-tune epochs {args.finetune_epochs} (lr {args.finetune_lr}); profile {profile.name}; "
          f"{torch.get_num_threads()} threads", flush=True)
    cols = ("fp32", "ptq", "dalp", "ft32", "ft32ptq", "ft32rptq", "resc", "k", "recov", "rec/ctl")
    head = f"{'arch':<15}{'seed':>5}{'params':>7}" + "".join(f"{c:>9}" for c in cols) + "   s"
    print(head)
    print("-" * len(head))
    cases: list[dict] = []
    timings: list[dict] = []
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    for name, units in archs:
        arch = space.decode(genome_of(space, units))
        for seed in range(args.seeds):
            t0 = time.perf_counter()
            case, timing = run_case(name, arch, seed, source, splits, norm, cfg, profile, backend, args,
                                    time_steps=seed == 0)
            cases.append(case)
            if timing is not None:
                timings.append(timing)
            vals = [case["fp32_miou"], case["ptq_miou"], case["dalp_miou"], case["ft32_miou"],
                    case["ft32_ptq_miou"], case["ft32_rescaled_ptq_miou"], case["rescale_only_miou"]]
            print(f"{name:<15}{seed:>5}{case['params']:>7}" + "".join(f"{_f(v):>9}" for v in vals)
                  + f"{case['input_rescale_k']:>9}{_f(case['gap_recovered'], True):>9}"
                  + f"{_f(case['gap_recovered_vs_control'], True):>9}{time.perf_counter() - t0:>6.0f}"
                  + (f"   step ratio {timing['ratio_median']:.2f}" if timing else ""), flush=True)
            out.write_text(json.dumps({"benchmark": "deployment_gap", "partial": True, "settings": settings,
                                       "step_timing_per_arch": timings, "cases": cases}, indent=2, default=float))
    agg = summarise(cases, timings)
    thr_model = build_model(space.decode(genome_of(space, archs[0][1])), source.bands, 2, InputNorm(*norm))
    thr = throughput(thr_model, splits[2], profile)
    summary = {"benchmark": "deployment_gap", "partial": False, "profile": profile.to_dict(),
               "settings": settings,
               "mean_gap_recovered": agg.pop("mean_gap_recovered"),
               "mean_gap_recovered_vs_control": agg.pop("mean_gap_recovered_vs_control"),
               "step_time_ratio": agg.pop("step_time_ratio"),
               **agg,
               "throughput": {**thr, "arch": archs[0][0], "tile_size": args.tile_size,
                              "note": "untrained weights (throughput does not depend on them)"},
               "wall_s": time.perf_counter() - t_start, "cases": cases}
    print()
    print(f"{'arch':<15}{'params':>7}" + "".join(f"{c:>9}" for c in cols[:7]) + f"{'step':>7}")
    for name, row in summary["per_arch"].items():
        step = next((t["ratio_median"] for t in timings if t["arch"] == name), None)
        print(f"{name:<15}{row['params']:>7}" + "".join(f"{_f(row[k]):>9}" for k in (
            "fp32_miou", "ptq_miou", "dalp_miou", "ft32_miou", "ft32_ptq_miou", "ft32_rescaled_ptq_miou",
            "rescale_only_miou")) + f"{(f'{step:.2f}' if step else '-'):>7}")
    print()
    print(f"cases with gap > {GAP_THRESHOLD}: {summary['cases_with_gap']} of {len(cases)}; mean gap recovered "
          f"(paper's definition): {_f(summary['mean_gap_recovered'], True)}")
    print(f"cases with control gap > {GAP_THRESHOLD}: {summary['cases_with_control_gap']}; mean gap recovered vs "
          f"control: {_f(summary['mean_gap_recovered_vs_control'], True)}")
    print(f"share of the gap recovered by rescaling only {_f(summary['mean_gap_recovered_by_rescale_only'], True)}, "
          f"by plain FP32 fine-tuning {_f(summary['mean_gap_recovered_by_ft32'], True)}, by rescaling + plain "
          f"fine-tuning {_f(summary['mean_gap_recovered_by_ft32_rescaled'], True)}")
    for k, v in summary["paired_differences"].items():
        print(f"  {k:<30} mean {_f(v['mean'])}  sd {_f(v['stdev'])}  positive {v['positive']}/{v['n']}")
    print("mean gap per ptq variant: " + ", ".join(f"{k} {v:+.4f}" for k, v in summary["mean_variant_gap"].items()))
    print(f"dalp step / fp32 step (median over archs): {_f(summary['step_time_ratio'])}; per arch: "
          + ", ".join(f"{t['arch']} {t['ratio_median']:.2f} ({t['dalp_step_ms']:.0f}/{t['fp32_step_ms']:.0f} ms)"
                      for t in timings))
    print(f"throughput: fp32 {thr['fp32_tiles_per_s']:.1f} tiles/s, emulated {thr['emulated_tiles_per_s']:.1f} "
          f"tiles/s ({args.tile_size} px); wall {summary['wall_s']:.0f} s")
    out.write_text(json.dumps(summary, indent=2, default=float))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
