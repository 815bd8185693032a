"""Deployment gap of low-precision deployment and how much deployment-aligned fine-tuning
recovers, per deployment target, against an FP32 fine-tuning control with the same extra epochs.

For several architectures of the search space (including blocks without batch norm) x seeds, on
the embedded synthetic data at the default preset's size (600 tiles of 64 px, 4 bands, raw
digital numbers), each (architecture, seed) is trained once in FP32 with the default training
recipe and the default preset's epochs, then for every target (``--targets``):

* ``myriadx_inf`` / ``myriadx_saturate``: the emulated Myriad X (``--backend myriadx``, no device:
  emulated), numerics profile ``myriadx`` with ``overflow`` ``inf`` / ``saturate``;
* ``openvino_bf16``: the OpenVINO CPU runtime with ``INFERENCE_PRECISION_HINT=bf16`` (real bf16
  arithmetic, measured; needs AVX512_BF16 or AMX, else skipped), profile ``bf16``;
* ``openvino_int8``: the OpenVINO CPU runtime on the model quantised to INT8 by NNCF post-training
  quantisation from the first ``CALIBRATION_TILES`` training tiles (real int8 arithmetic,
  measured; needs the ``int8`` extra, else skipped), profile ``int8`` (fake-quantised
  fine-tuning, :mod:`dalp_moo.precision.int8`; the same tiles fix its activation ranges).

Scores are test-split mIoU (fraction), all deployed scores of the model as the target's backend
deploys it, through :func:`dalp_moo.precision.run_regimes` (the search's pipeline):

* ``fp32`` / ``ptq``: the FP32 model in FP32 / deployed (post-training conversion);
* ``dalp``: the FP32 model fine-tuned ``finetune_epochs`` under the target's profile
  (straight-through aligned forward), deployed;
* ``ft32`` / ``ft32_ptq`` (control, shared by the targets): the same fine-tuning epochs,
  learning rate, seed and data order in plain FP32, in FP32 / deployed on the target;
* ``gap = fp32 - ptq`` (a case "has a gap" when it exceeds 0.02) and ``gap_recovered_vs_control
  = (dalp - ft32_ptq) / (ft32 - ft32_ptq)`` over cases whose control gap exceeds 0.02;
* ``degenerate``: the FP32 model predicts one class everywhere or has vessel IoU 0 (test);
* ablation: ptq mIoU of the FP32 model under emulated switch variants (``VARIANTS``);
* speed (``--timing``): aligned / FP32 fine-tuning step time per architecture, emulator
  throughput (tiles/s).

The JSON's top-level ``targets`` maps each target to ``emulated``, ``cases``,
``cases_with_gap``, ``mean_fp32_miou``, ``mean_ptq_miou``, ``mean_dalp_miou``,
``gap_recovered_vs_control`` and ``degenerate_cases``; emulated figures are flagged
``emulated: true`` (a target with ``emulated: false`` is measured on real arithmetic).

Usage::

    nice python benchmarks/deployment_gap.py            # full run (5 archs x 3 seeds)
    python benchmarks/deployment_gap.py --quick         # tiny smoke run (2 archs x 1 seed, 40 tiles)
    # split over processes (--archs), then one JSON with the summary over all cases:
    python benchmarks/deployment_gap.py --merge a.json,b.json --out benchmarks/results/deployment_gap.json

Writes benchmarks/results/deployment_gap.json (``--out`` to change), after every case.
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
from dalp_moo.config import SpaceConfig, TrainConfig, load_config
from dalp_moo.data import normalization_params, open_source
from dalp_moo.errors import DalpError
from dalp_moo.model import InputNorm, build_model, count_params
from dalp_moo.precision import (
    NumericsProfile,
    aligned_context,
    deploy_fp16,
    get_profile,
    run_regimes,
)
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
from dalp_moo.training import degenerate_reason, evaluate_segmentation, train_model
from dalp_moo.training.trainer import loss_fn

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


#: post-training (ptq) mIoU of the FP32 model under emulated switch variants (ablation)
VARIANTS = {
    "ieee": ("ieee", {}),
    "myriadx": ("myriadx", {}),
    "myriadx_saturate": ("myriadx", {"overflow": "saturate"}),
    "myriadx_no_wa": ("myriadx", {"weights_analysis": False}),
    "myriadx_no_growing_rule": ("myriadx", {"input_preproc_rule": False}),
    "myriadx_resize_model": ("myriadx", {"resize_mode": "model"}),
    "myriadx_torch_graph": ("myriadx", {"fold_input_scale": False}),
    "myriadx_fp16acc16": ("myriadx", {"accumulation": "fp16", "accum_chunk": 16}),
    "myriadx_ftz": ("myriadx", {"flush_subnormals": True}),
    "myriadx_fp32_input": ("myriadx", {"input_fp16": False}),
    "bf16": ("bf16", {}),
}

#: deployment targets: backend, its options, numerics profile and switches
TARGETS: dict[str, dict[str, Any]] = {
    "myriadx_inf": {"backend": "myriadx", "options": {}, "profile": "myriadx",
                    "switches": {"overflow": "inf"}},
    "myriadx_saturate": {"backend": "myriadx", "options": {}, "profile": "myriadx",
                         "switches": {"overflow": "saturate"}},
    "openvino_bf16": {"backend": "openvino", "options": {"precision": "bf16", "runs": 5, "warmup": 1},
                      "profile": "bf16", "switches": {}},
    "openvino_int8": {"backend": "openvino", "options": {"precision": "int8", "runs": 5, "warmup": 1},
                      "profile": "int8", "switches": {}},
}
#: training tiles that calibrate a target that quantises on data (openvino_int8), as in a search
CALIBRATION_TILES = 128


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
        loss_fn(cfg)(logits, masks).backward()
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


def _mean(values: list) -> float | None:
    vals = [v for v in values if v is not None]
    return statistics.mean(vals) if vals else None


def run_case(name: str, arch: Any, seed: int, source: Any, splits: tuple, norm: tuple,
             cfg: TrainConfig, targets: dict[str, dict], args: argparse.Namespace,
             time_steps: bool) -> tuple[dict, dict | None]:
    """FP32 training of one (architecture, seed), the shared FP32 control, and every target's
    regimes. Returns the case record and, with ``time_steps``, the step timing."""
    train_set, val_set, test_set = splits
    cpu = torch.device("cpu")
    torch.manual_seed(seed)
    model = build_model(arch, source.bands, 2, InputNorm(*norm))
    fit = train_model(model, train_set, val_set, cfg, seed=seed, device=cpu, label=f"{name} fp32",
                      init_prior=True)
    model.eval()
    fp32_model = copy.deepcopy(model)
    input_shape = (1, *tuple(test_set[0][0].shape))

    def finetune(m: torch.nn.Module, ctx: Any = None) -> Any:
        # same seed (= same data order), epochs and lr for dalp and the control
        return train_model(m, train_set, val_set, cfg, seed=seed + 1000, device=cpu,
                           epochs=cfg.finetune_epochs, lr=cfg.finetune_lr, forward_context=ctx,
                           label=f"{name} finetune")

    def score(predict: Any) -> Any:
        return evaluate_segmentation(predict, test_set, 2)

    fp32_score = score(fp32_model)
    degenerate = bool(degenerate_reason(fp32_score.per_class_iou[0], fp32_score.per_class_iou[-1]))
    variants = {v: score(deploy_fp16(fp32_model, get_profile(p, **over))).miou
                for v, (p, over) in VARIANTS.items()} if args.variants else {}

    t0 = time.perf_counter()
    ft32_model = copy.deepcopy(fp32_model)
    finetune(ft32_model)
    ft32_model.eval()
    ft32_s = time.perf_counter() - t0
    ft32 = score(ft32_model).miou
    calib = torch.stack([train_set[i][0] for i in range(min(16, len(train_set)))])
    calib_deploy = torch.stack([train_set[i][0] for i in range(min(CALIBRATION_TILES, len(train_set)))])
    per_target = {}
    for tname, t in targets.items():
        backend, profile = t["backend_obj"], t["profile_obj"]
        regime = t.get("regime", "dalp")
        on_data = calib_deploy if backend.needs_calibration else None
        ft32_ptq = score(backend.deploy(ft32_model, input_shape, profile=profile, calibration=on_data).predict).miou
        dalp_model = copy.deepcopy(fp32_model)
        res = run_regimes(dalp_model, backend, input_shape, score, regime, profile,
                          finetune_fn=finetune, calibration=on_data if on_data is not None else calib,
                          overflow_push=args.overflow_push)
        fp32, ptq = res.fp32.miou, res.ptq.miou
        dalp = res.dalp.miou if res.dalp is not None else None
        gap, ctrl_gap = fp32 - ptq, ft32 - ft32_ptq
        per_target[tname] = {
            "ptq_miou": ptq, "dalp_miou": dalp, "ft32_ptq_miou": ft32_ptq,
            "ptq_vessel_iou": res.ptq.per_class_iou[-1],
            "dalp_vessel_iou": res.dalp.per_class_iou[-1] if res.dalp is not None else None,
            "ptq_nonfinite": res.ptq.nonfinite_fraction,
            "dalp_nonfinite": res.dalp.nonfinite_fraction if res.dalp is not None else None,
            "gap": gap, "control_gap": ctrl_gap,
            "gap_recovered": _frac(dalp - ptq, gap) if dalp is not None else None,
            "gap_recovered_vs_control": _frac(dalp - ft32_ptq, ctrl_gap) if dalp is not None else None,
            "dalp_minus_ft32_ptq": dalp - ft32_ptq if dalp is not None else None,
            "input_rescale_k": res.input_rescale_k, "dalp_finetune_s": res.finetune_s,
            "dalp_step_ms": res.finetune.step_ms if res.finetune is not None else None,
        }
        if backend.needs_calibration:
            per_target[tname]["quantised_ops"] = dict(getattr(res.deployment, "quantised_ops", {}))
    case = {
        "arch": name, "description": arch.describe(), "arch_id": arch.arch_id,
        "params": count_params(arch, source.bands, 2), "seed": seed,
        "fp32_miou": fp32_score.miou, "fp32_vessel_iou": fp32_score.per_class_iou[-1],
        "degenerate": degenerate, "ft32_miou": ft32, "ft32_finetune_s": ft32_s,
        "fp32_epochs": fit.epochs_run, "fp32_train_s": fit.time_s, "fp32_step_ms": fit.step_ms,
        "ptq_variants": variants, "targets": per_target,
    }
    timing = None
    if time_steps:
        first = next(iter(targets.values()))
        timing = {"arch": name, "params": case["params"], "profile": first["profile_obj"].name,
                  **step_time_ratio(copy.deepcopy(fp32_model), train_set, cfg,
                                    first["profile_obj"], steps=args.timing_steps)}
    return case, timing


def summarise_target(cases: list[dict], tname: str, emulated: bool) -> dict:
    """The per-target summary (keys of the JSON's ``targets`` mapping, and more)."""
    rows = [(c, c["targets"][tname]) for c in cases if tname in c["targets"]]
    gaps = [t["gap"] for _, t in rows]
    ctrl = [(c, t) for c, t in rows if t["control_gap"] > GAP_THRESHOLD]
    pooled_den = sum(c["ft32_miou"] - t["ft32_ptq_miou"] for c, t in ctrl)
    diffs = [t["dalp_minus_ft32_ptq"] for _, t in rows if t["dalp_minus_ft32_ptq"] is not None]
    return {
        "emulated": emulated,
        "cases": len(rows),
        "cases_with_gap": sum(g > GAP_THRESHOLD for g in gaps),
        "mean_fp32_miou": _mean([c["fp32_miou"] for c, _ in rows]),
        "mean_ptq_miou": _mean([t["ptq_miou"] for _, t in rows]),
        "mean_dalp_miou": _mean([t["dalp_miou"] for _, t in rows]),
        "mean_ft32_miou": _mean([c["ft32_miou"] for c, _ in rows]),
        "mean_ft32_ptq_miou": _mean([t["ft32_ptq_miou"] for _, t in rows]),
        "mean_gap": _mean(gaps),
        "max_gap": max(gaps) if gaps else None,
        "gap_recovered_vs_control": _mean([t["gap_recovered_vs_control"] for _, t in ctrl]),
        "cases_with_control_gap": len(ctrl),
        "pooled_gap_recovered_vs_control": (
            sum(t["dalp_miou"] - t["ft32_ptq_miou"] for _, t in ctrl) / pooled_den
            if ctrl and pooled_den > 0 and all(t["dalp_miou"] is not None for _, t in ctrl) else None),
        "mean_gap_recovered": _mean([t["gap_recovered"] for _, t in rows]),
        "dalp_minus_ft32_ptq": {"mean": _mean(diffs),
                                "stdev": statistics.stdev(diffs) if len(diffs) > 1 else None,
                                "positive": sum(d > 0 for d in diffs), "n": len(diffs)},
        "mean_ptq_nonfinite": _mean([t["ptq_nonfinite"] for _, t in rows]),
        "degenerate_cases": sum(c["degenerate"] for c, _ in rows),
    }


def _f(v: float | None, pct: bool = False) -> str:
    if v is None:
        return "-"
    return f"{v:.0%}" if pct else f"{v:.3f}"


#: what the figures of the JSON document are (emulated or measured)
LABELS = {
    "targets": "per target: emulated true = numerics emulated on the host (Myriad X); false = deployed "
               "mIoU measured by the OpenVINO runtime on this CPU (openvino_int8: NNCF post-training INT8)",
    "mean_variant_gap": "EMULATED: mean FP32 - post-training mIoU under the host emulation of each "
                        "numerics variant (ablation; its 'bf16' is the emulated bf16 profile, not the "
                        "OpenVINO measurement of target openvino_bf16)",
    "cases[].ptq_variants": "EMULATED: post-training mIoU of the case under each emulated variant",
    "cases[].targets": "per target, emulated or measured as in 'targets'",
}


def build_summary(cases: list[dict], settings: dict, emulated: dict[str, bool], partial: bool,
                  extra: dict | None = None) -> dict:
    """The JSON document: per-target summaries, the mean ptq gap per emulated variant (when every
    case has them), ``extra`` keys and the cases."""
    summary = {"benchmark": "deployment_gap", "partial": partial, "settings": settings,
               "gap_threshold": GAP_THRESHOLD,
               "targets": {k: summarise_target(cases, k, e) for k, e in emulated.items()}}
    if cases and all(c["ptq_variants"] for c in cases):
        summary["mean_variant_gap"] = {v: statistics.mean(c["fp32_miou"] - c["ptq_variants"][v] for c in cases)
                                       for v in VARIANTS}
    summary["variants_emulated"] = True
    summary["labels"] = LABELS
    return {**summary, **(extra or {}), "cases": cases}


def print_summary(summary: dict) -> None:
    """The per-target table (and the mean gap per emulated variant)."""
    print(f"{'target':<18}{'emulated':>9}{'cases':>6}{'gap>':>6}{'fp32':>7}{'ptq':>7}{'dalp':>7}"
          f"{'ft32':>7}{'ft32ptq':>8}{'rec/ctl':>8}{'degen':>6}")
    for k, t in summary["targets"].items():
        print(f"{k:<18}{str(t['emulated']):>9}{t['cases']:>6}{t['cases_with_gap']:>6}"
              f"{_f(t['mean_fp32_miou']):>7}{_f(t['mean_ptq_miou']):>7}{_f(t['mean_dalp_miou']):>7}"
              f"{_f(t['mean_ft32_miou']):>7}{_f(t['mean_ft32_ptq_miou']):>8}"
              f"{_f(t['gap_recovered_vs_control'], True):>8}{t['degenerate_cases']:>6}")
    if "mean_variant_gap" in summary:
        print("mean ptq gap per emulated variant: " + ", ".join(
            f"{k} {v:+.4f}" for k, v in summary["mean_variant_gap"].items()))


def merge(paths: list[str], out: Path) -> None:
    """Recompute the summary of the cases of several runs (same settings except ``archs``)."""
    parts = [json.loads(Path(p).read_text()) for p in paths]
    seen: set[tuple] = set()
    unique = []
    for c in (c for part in parts for c in part["cases"]):
        if (c["arch"], c["seed"]) not in seen:
            seen.add((c["arch"], c["seed"]))
            unique.append(c)
    settings = dict(parts[0]["settings"])
    settings["archs"] = list(dict.fromkeys(c["arch"] for c in unique))
    settings["merged_from"] = [m for path, part in zip(paths, parts, strict=True)
                               for m in part["settings"].get("merged_from", [str(path)])]
    emulated = {k: v["emulated"] for k, v in settings["targets"].items()}
    wanted = {(a, s) for a in settings["archs"] for s in range(int(settings["seeds"]))}
    extra = {"step_timing_per_arch": [t for p in parts for t in p.get("step_timing_per_arch", [])],
             "wall_s_per_part": [w for p in parts for w in p.get("wall_s_per_part", [p.get("wall_s")])]}
    summary = build_summary(unique, settings, emulated, not wanted <= seen, extra)
    out.write_text(json.dumps(summary, indent=2, default=float))
    print_summary(summary)
    print(f"wrote {out} ({len(unique)} cases)")


def main() -> None:
    default = load_config("default")
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="tiny run (2 archs x 1 seed, 40 tiles, 1 epoch)")
    ap.add_argument("--tiles", type=int, default=default.data.n_tiles,
                    help="tiles generated (default: the default preset's)")
    ap.add_argument("--tile-size", type=int, default=default.data.tile_size,
                    help="tile edge (pixels; default: the default preset's)")
    ap.add_argument("--epochs", type=int, default=default.train.epochs,
                    help="FP32 training epochs (default: the default preset's)")
    ap.add_argument("--finetune-epochs", type=int, default=default.train.finetune_epochs,
                    help="fine-tuning epochs of dalp and of the FP32 control")
    ap.add_argument("--finetune-lr", type=float, default=default.train.finetune_lr, help="fine-tuning learning rate")
    ap.add_argument("--recipe", default=default.train.recipe, help="train.recipe of the FP32 training")
    ap.add_argument("--overflow-push", type=float, default=1.0,
                    help='gradient push of the aligned forward on overflow (overflow="inf" targets only)')
    ap.add_argument("--seeds", type=int, default=3, help="training seeds per architecture")
    ap.add_argument("--targets", default=",".join(TARGETS), help="comma-separated deployment targets")
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads (0 = torch default)")
    ap.add_argument("--timing", action="store_true", help="measure step-time ratios and throughput")
    ap.add_argument("--timing-steps", type=int, default=15, help="interleaved step pairs per architecture")
    ap.add_argument("--no-variants", dest="variants", action="store_false",
                    help="skip the ptq switch-variant ablation")
    ap.add_argument("--archs", default="", help="comma-separated subset of architecture names")
    ap.add_argument("--note", default="", help="text stored with the results (conditions, labels)")
    ap.add_argument("--merge", default="", help="comma-separated result JSONs to merge into --out")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "deployment_gap.json"), help="result JSON")
    args = ap.parse_args()
    if args.merge:
        merge([p for p in args.merge.split(",") if p], Path(args.out))
        return
    archs = [a for a in ARCHITECTURES if not args.archs or a[0] in args.archs.split(",")]
    if args.quick:
        args.tiles, args.epochs, args.finetune_epochs, args.seeds, args.timing_steps = 40, 1, 1, 1, 3
        archs = archs[:2]
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    t_start = time.perf_counter()
    data_cfg = dataclasses.replace(default.data, n_tiles=args.tiles, tile_size=args.tile_size)
    source = open_source(data_cfg)
    splits = tuple(source.split(s) for s in ("train", "val", "test"))
    norm = normalization_params(data_cfg, source.band_stats())
    cfg = dataclasses.replace(default.train, epochs=args.epochs, finetune_epochs=args.finetune_epochs,
                              finetune_lr=args.finetune_lr, recipe=args.recipe, device="cpu")
    space = SearchSpace(SpaceConfig())
    targets: dict[str, dict] = {}
    skipped: dict[str, str] = {}
    for tname in [t for t in args.targets.split(",") if t]:
        t = dict(TARGETS[tname])
        try:
            t["backend_obj"] = backends.get(t["backend"], **t["options"])
        except DalpError as exc:  # e.g. no bf16 arithmetic on this CPU
            skipped[tname] = str(exc)
            print(f"target {tname} skipped: {exc}", flush=True)
            continue
        t["profile_obj"] = get_profile(t["profile"], **t["switches"])
        info = t["backend_obj"].info()
        t["emulated"] = bool(info.emulated)
        t["device"] = info.device
        targets[tname] = t
    settings = {"source": data_cfg.source, "tiles": args.tiles, "tile_size": args.tile_size,
                "bands": source.bands, "normalization": data_cfg.normalization,
                "epochs": args.epochs, "patience": cfg.patience, "batch_size": cfg.batch_size,
                "recipe": cfg.recipe, "train": dataclasses.asdict(cfg),
                "finetune_epochs": args.finetune_epochs, "finetune_lr": args.finetune_lr,
                "overflow_push": args.overflow_push, "seeds": args.seeds,
                "threads": torch.get_num_threads(), "quick": args.quick,
                "archs": [a[0] for a in archs], "note": args.note,
                "targets": {k: {"backend": v["backend"], "options": v["options"],
                                "profile": v["profile_obj"].to_dict(), "emulated": v["emulated"],
                                "device": v["device"]} for k, v in targets.items()},
                "skipped_targets": skipped}
    labels = ", ".join(f"{k} ({'emulated' if v['emulated'] else 'measured'})" for k, v in targets.items())
    print(f"data: {data_cfg.source} {data_cfg.normalization}, {args.tiles} tiles of {args.tile_size} px "
          f"(train/val/test {'/'.join(str(len(s)) for s in splits)}); FP32 epochs {args.epochs} "
          f"({cfg.recipe} recipe), fine-tune epochs {args.finetune_epochs} (lr {args.finetune_lr}); "
          f"targets {labels}; "
          f"{torch.get_num_threads()} threads", flush=True)
    head = f"{'arch':<15}{'seed':>5}{'params':>7}{'fp32':>7}{'ft32':>7}" + "".join(
        f"{k[:14]:>24}" for k in targets) + "     s"
    print(head + "\n" + " " * 41 + "".join(f"{'ptq':>8}{'dalp':>8}{'ft32ptq':>8}" for _ in targets))
    cases: list[dict] = []
    timings: list[dict] = []
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)

    emulated = {k: v["emulated"] for k, v in targets.items()}

    def write(partial: bool, extra: dict | None = None) -> dict:
        summary = build_summary(cases, settings, emulated, partial,
                                {**(extra or {}), "step_timing_per_arch": timings,
                                 "wall_s": time.perf_counter() - t_start})
        out.write_text(json.dumps(summary, indent=2, default=float))
        return summary

    for name, units in archs:
        arch = space.decode(genome_of(space, units))
        for seed in range(args.seeds):
            t0 = time.perf_counter()
            case, timing = run_case(name, arch, seed, source, splits, norm, cfg, targets, args,
                                    time_steps=args.timing and seed == 0)
            cases.append(case)
            if timing is not None:
                timings.append(timing)
            cols = "".join(f"{_f(t['ptq_miou']):>8}{_f(t['dalp_miou']):>8}{_f(t['ft32_ptq_miou']):>8}"
                           for t in case["targets"].values())
            print(f"{name:<15}{seed:>5}{case['params']:>7}{_f(case['fp32_miou']):>7}"
                  f"{_f(case['ft32_miou']):>7}{cols}{time.perf_counter() - t0:>6.0f}"
                  + ("  DEGENERATE" if case["degenerate"] else ""), flush=True)
            write(True)
    extra: dict[str, Any] = {}
    if args.timing and timings:
        extra["step_time_ratio"] = statistics.median(t["ratio_median"] for t in timings)
        first = next(iter(targets.values()))
        thr_model = build_model(space.decode(genome_of(space, archs[0][1])), source.bands, 2, InputNorm(*norm))
        extra["throughput"] = {**throughput(thr_model, splits[2], first["profile_obj"]), "arch": archs[0][0],
                               "tile_size": args.tile_size,
                               "note": "untrained weights (throughput does not depend on them)"}
    summary = write(False, extra)
    print()
    print_summary(summary)
    print(f"wall {summary['wall_s']:.0f} s; wrote {out}")


if __name__ == "__main__":
    main()
