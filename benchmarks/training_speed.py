"""How much faster does FP32 training run with channels-last (NHWC) tensors than with the NCHW
layout (``train.memory_format``), and does it change what is learned?

Part 1, step time: for the 66.5k reference U-Net and ``--archs`` random architectures of the
search space (seeded), the time of one optimisation step (forward, loss, backward, Adam; batch
``train.batch_size`` of the default preset, ``data.tile_size`` px, 4 bands; median of
``--steps`` steps after 3 warm-up steps) in both layouts, for the plain FP32 forward and for the
deployment-aligned (emulated Myriad X FP16) forward used by fine-tuning.

Part 2, end to end: the reference U-Net trained with ``train_model`` on the embedded default
data at the default budget (``train.epochs``, balanced recipe), ``--seeds`` seeds, in both
layouts: training time (s) and held-out test mIoU.

Timings are wall clock of this process on this CPU (``--threads`` torch threads); ratios are
taken within one run. Nothing here is emulated except the FP16 forward of the aligned rows.

    python benchmarks/training_speed.py [--archs 12] [--steps 15] [--seeds 2] [--threads 1]

Prints a table and writes benchmarks/results/training_speed.json.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from data_baseline import BASELINES, default_space, genome_for, train_one, write_json  # noqa: E402

from dalp_moo.backends.host_model import host_id  # noqa: E402
from dalp_moo.config import load_config  # noqa: E402
from dalp_moo.model import build_model  # noqa: E402
from dalp_moo.precision.emulate import aligned_context  # noqa: E402

LAYOUTS = {"contiguous": torch.contiguous_format, "channels_last": torch.channels_last}


def step_ms(arch: Any, layout: torch.memory_format, aligned: bool, batch: int, tile: int,
            steps: int) -> float:
    """Median time of one optimisation step (ms) of ``arch`` in ``layout``."""
    torch.manual_seed(0)
    model = build_model(arch, 4, 2).to(memory_format=layout)
    gen = torch.Generator().manual_seed(1)
    x = (torch.rand(batch, 4, tile, tile, generator=gen) * 4000).contiguous(memory_format=layout)
    y = (torch.rand(batch, tile, tile, generator=gen) > 0.98).long()
    ctx = aligned_context(model, "myriadx") if aligned else contextlib.nullcontext
    model.train()
    opt = torch.optim.Adam(model.parameters(), 1e-3)
    times = []
    for i in range(steps + 3):
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        with ctx():
            out = model(x)
        torch.nn.functional.cross_entropy(out, y).backward()
        opt.step()
        if i >= 3:
            times.append(time.perf_counter() - t0)
    return 1000 * statistics.median(times)


def main() -> None:
    default = load_config("default")
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--archs", type=int, default=12, help="random architectures of the space")
    ap.add_argument("--steps", type=int, default=15, help="timed steps per case")
    ap.add_argument("--seeds", type=int, default=2, help="training seeds of part 2 (0 skips it)")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (0 = torch default)")
    ap.add_argument("--out", default="benchmarks/results/training_speed.json", help="result JSON")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    count, space = default_space(default)
    label, block, coeff, kernel, units, _ = BASELINES[0]
    archs = [("reference U-Net", space.decode(genome_for(space, block, coeff, kernel, units)))]
    for i, g in enumerate(space.sample(args.archs, np.random.default_rng(2026))):
        archs.append((f"random {i}", space.decode(g)))
    batch, tile = default.train.batch_size, default.data.tile_size
    t_start = time.perf_counter()
    print(f"part 1: ms per training step, batch {batch}, {tile} px, {args.threads} thread(s)")
    print(f"{'architecture':16s} {'params':>8s} {'fp32 NCHW':>10s} {'fp32 NHWC':>10s} {'x':>5s} "
          f"{'fp16 NCHW':>10s} {'fp16 NHWC':>10s} {'x':>5s}")
    rows: list[dict[str, Any]] = []
    for name, arch in archs:
        row: dict[str, Any] = {"label": name, "arch": arch.describe(), "params": count(arch)}
        for forward in ("fp32", "aligned_fp16"):
            for layout, fmt in LAYOUTS.items():
                row[f"{forward}_{layout}_ms"] = step_ms(arch, fmt, forward != "fp32", batch, tile, args.steps)
            row[f"{forward}_speedup"] = row[f"{forward}_contiguous_ms"] / row[f"{forward}_channels_last_ms"]
        rows.append(row)
        print(f"{name:16s} {row['params']:8,d} {row['fp32_contiguous_ms']:10.1f} {row['fp32_channels_last_ms']:10.1f} "
              f"{row['fp32_speedup']:5.2f} {row['aligned_fp16_contiguous_ms']:10.1f} "
              f"{row['aligned_fp16_channels_last_ms']:10.1f} {row['aligned_fp16_speedup']:5.2f}", flush=True)

    def spread(key: str) -> dict[str, float]:
        vals = [r[key] for r in rows]
        return {"median": statistics.median(vals), "min": min(vals), "max": max(vals)}

    summary: dict[str, Any] = {"fp32_speedup": spread("fp32_speedup"),
                               "aligned_fp16_speedup": spread("aligned_fp16_speedup")}
    print(f"fp32 speed-up NHWC/NCHW: median {summary['fp32_speedup']['median']:.2f} "
          f"(range {summary['fp32_speedup']['min']:.2f}-{summary['fp32_speedup']['max']:.2f}); aligned FP16: "
          f"median {summary['aligned_fp16_speedup']['median']:.2f}")

    end_to_end: list[dict[str, Any]] = []
    if args.seeds > 0:
        dcfg = dataclasses.replace(default.data, normalization="raw")
        print(f"part 2: {label} ({archs[0][1].arch_id}), {default.train.epochs} FP32 epochs, "
              f"{dcfg.n_tiles} tiles of {dcfg.tile_size} px")
        for layout in LAYOUTS:
            tcfg = dataclasses.replace(default.train, regime="fp32", device="cpu", recipe="balanced",
                                       memory_format=layout)
            for seed in range(args.seeds):
                r = train_one(archs[0][1], dcfg, tcfg, seed, label, layout)
                end_to_end.append(r)
                print(f"  {layout:14s} seed {seed}: {r['train_s']:6.1f} s  epochs {r.get('epochs_run')}  "
                      f"test mIoU {r.get('test_miou', float('nan')):.3f}", flush=True)
        for layout in LAYOUTS:
            runs = [r for r in end_to_end if r["recipe"] == layout and r.get("trained")]
            summary[f"end_to_end_{layout}"] = {
                "train_s": sum(r["train_s"] for r in runs),
                "mean_test_miou": statistics.mean(r["test_miou"] for r in runs) if runs else None}
        a, b = summary["end_to_end_contiguous"]["train_s"], summary["end_to_end_channels_last"]["train_s"]
        summary["end_to_end_speedup"] = a / b if b else None
        print(f"end to end: {a:.0f} s NCHW vs {b:.0f} s NHWC (x{summary['end_to_end_speedup']:.2f})")

    out = {"benchmark": "training_speed", "host": host_id(), "cores": os.cpu_count(),
           "python": platform.python_version(), "torch": torch.__version__, "threads": args.threads,
           "batch_size": batch, "tile_size": tile, "steps": args.steps,
           "emulated": {"fp32": False, "aligned_fp16": True},
           "note": "wall-clock ms per optimisation step on this CPU (median of --steps); the "
                   "aligned_fp16 forward is the emulated Myriad X FP16 forward of fine-tuning; "
                   "end_to_end rows: train_model on the embedded default data (recipe = layout)",
           "summary": summary, "rows": rows, "end_to_end": end_to_end,
           "wall_s": time.perf_counter() - t_start,
           "command": "python benchmarks/training_speed.py " + " ".join(sys.argv[1:])}
    write_json(out, args.out)


if __name__ == "__main__":
    main()
