"""Latency fidelity of the backends' latency models.

1. Host CPU (OpenVINO): measure batch-1 latency and per-node profiles (``PERF_COUNT``) of a
   fitting set of networks (random U-Net-style CNNs from ``dalp_moo.backends.zoo`` and random
   candidates of the search space), fit the kernel-level host latency model
   (:mod:`dalp_moo.backends.host_model`; written to ``dalp_moo/backends/calibration/`` for this
   CPU model, thread count and ``--precision``), then compare its predictions with end-to-end
   measurements on held-out random search-space candidates (never profiled nor used in fitting):
   share within +-10 % and Kendall tau.
2. Myriad X emulator: leave-one-out error on the four published CNV latencies.
3. Cost of one latency query: measurement (convert + compile + timed runs) vs model (trace +
   predict), ms.

Each network is measured in ``--passes`` passes (median of ``--runs`` timed synchronous
inferences after warm-up) and the minimum over passes is kept. With ``--clock cpu`` (default,
one inference thread) the time of an inference is the process CPU time it used: on a host shared
with other jobs this is the latency without the time spent waiting for a core (wall-clock
medians on a loaded 2-core host are dominated by scheduler time slices). The per-node profile of a
fitting network (wall-clock per node) is repeated when its sum exceeds the end-to-end latency by
more than 5 % (a preempted profile). Prints a table and writes
``benchmarks/results/latency_fidelity.json`` (with the fitting networks' profiles, so that
``--reuse`` can refit without measuring).

    python benchmarks/latency_fidelity.py            # full run (several minutes on 2 cores)
    python benchmarks/latency_fidelity.py --quick    # small smoke run, no calibration written
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
import torch
from scipy.stats import kendalltau

from dalp_moo.backends.graph import trace_graph
from dalp_moo.backends.host_model import HostLatencyModel, calibration_file, host_id
from dalp_moo.backends.myriadx import calibrate
from dalp_moo.backends.openvino_backend import PRECISIONS, OpenVINODeployment, effective_precision, ov_version
from dalp_moo.backends.zoo import random_unet
from dalp_moo.config import SpaceConfig
from dalp_moo.model import ParamCounter, build_model
from dalp_moo.space import SearchSpace

RESULTS = Path(__file__).resolve().parent / "results" / "latency_fidelity.json"


def space_candidates(n: int, seed: int, in_channels: int = 4) -> list[torch.nn.Module]:
    """``n`` random repaired candidates of the default search space (eval mode)."""
    space = SearchSpace(SpaceConfig(), param_cap=100_000, count=ParamCounter(in_channels))
    rng = np.random.default_rng(seed)
    models = []
    for g in space.sample(n, rng):
        arch = space.decode(space.repair(g))
        torch.manual_seed(int(rng.integers(0, 2**31 - 1)))
        models.append(build_model(arch, in_channels).eval())
    return models


def measure(models: list[torch.nn.Module], shapes: list[tuple[int, ...]], threads: int, runs: int,
            warmup: int, passes: int, clock: str, precision: str = "f32", profile: bool = False
            ) -> tuple[np.ndarray, np.ndarray, list[float], list[list[list]]]:
    """(latency ms, spread ms, deploy+first-measure cost ms, per-node profiles if ``profile``) per
    network; latency: min over passes."""
    deps, cost = [], []
    for m, s in zip(models, shapes, strict=True):
        t0 = time.perf_counter()
        d = OpenVINODeployment(m, s, "CPU", threads, runs, warmup, False, "measure", 1e-2, 0,
                               clock=clock, precision=precision)
        deps.append(d)
        d.measure()
        cost.append((time.perf_counter() - t0) * 1e3)
    lat = np.full((passes, len(models)), np.inf)
    spread = np.zeros((passes, len(models)))
    for p in range(passes):
        for i, d in enumerate(deps):
            r = d.measure()
            lat[p, i], spread[p, i] = r.latency_ms, r.spread_ms
    best = lat.argmin(axis=0)
    y = lat.min(axis=0)
    profiles: list[list[list]] = []  # per node: [type, output shape, weight shape or None, ms]
    if profile:
        for d, yi in zip(deps, y, strict=True):
            kept: tuple[float, list[list]] | None = None
            for _ in range(3):
                nodes = [[n["type"], n["out_shape"], n["in_shapes"][1] if len(n["in_shapes"]) > 1 else None,
                          round(n["time_ms"], 6)] for n in d.profile(requests=16, runs=1)
                         if n["type"] not in ("Input", "Output")]
                tot = sum(n[3] for n in nodes)
                if kept is None or tot < kept[0]:
                    kept = (tot, nodes)
                if tot <= 1.05 * yi:
                    break
            profiles.append(kept[1])  # type: ignore[index]
    return y, spread[best, np.arange(len(models))], cost, profiles


def _nodes(profile: list[list]) -> list[dict]:
    """Stored profile records [type, output shape, weight shape or None, ms] -> the node dicts
    :meth:`HostLatencyModel.fit` matches."""
    return [{"type": t, "out_shape": out, "in_shapes": [out, w] if w else [out], "time_ms": ms}
            for t, out, w, ms in profile]


def _dump(out: dict) -> str:
    """JSON with one line per network record."""
    lines = json.dumps({k: v for k, v in out.items() if k not in ("val", "fit")}, indent=2).rstrip("}").rstrip()
    for key in ("val", "fit"):
        rows = ",\n".join("    " + json.dumps(r, separators=(", ", ": ")) for r in out[key])
        lines += f',\n  "{key}": [\n{rows}\n  ]'
    return lines + "\n}\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n-fit-zoo", type=int, default=20, help="random zoo U-Nets for fitting")
    ap.add_argument("--n-fit-space", type=int, default=60, help="search-space candidates for fitting")
    ap.add_argument("--n-val", type=int, default=40, help="held-out search-space candidates")
    ap.add_argument("--sizes", default="64,128", help="tile sizes (pixels), drawn per network")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--passes", type=int, default=2)
    ap.add_argument("--clock", choices=("cpu", "wall"), default="cpu")
    ap.add_argument("--precision", choices=tuple(PRECISIONS), default="f32",
                    help="OpenVINO inference precision (the backend's option; default f32)")
    ap.add_argument("--rounds", type=int, default=80, help="boosting rounds per kernel regressor")
    ap.add_argument("--quick", action="store_true", help="tiny run; does not write the calibration")
    ap.add_argument("--no-write-calibration", action="store_true")
    ap.add_argument("--reuse", type=Path, default=None,
                    help="reuse the measurements of an earlier results JSON (same settings) and only refit")
    args = ap.parse_args()
    if args.quick:
        args.n_fit_zoo, args.n_fit_space, args.n_val, args.runs, args.passes = 10, 10, 8, 10, 1
    if args.clock == "cpu" and args.threads != 1:
        ap.error("--clock cpu needs --threads 1")
    torch.set_num_threads(1)
    sizes = [int(s) for s in args.sizes.split(",")]
    rng = np.random.default_rng(12345)
    load_before = os.getloadavg()

    fit_models = [random_unet(rng) for _ in range(args.n_fit_zoo)] + space_candidates(args.n_fit_space, 1)
    val_models = space_candidates(args.n_val, 2)
    fit_shapes = [(1, 4, int(s), int(s)) for s in rng.choice(sizes, len(fit_models))]
    val_shapes = [(1, 4, int(s), int(s)) for s in rng.choice(sizes, len(val_models))]

    t0 = time.perf_counter()
    if args.reuse is not None:
        old = json.loads(args.reuse.read_text())
        y_fit = np.array([r["measured_ms"] for r in old["fit"]])
        profiles = [r["profile"] for r in old["fit"]]
        y_val = np.array([r["measured_ms"] for r in old["val"]])
        spread_val = np.array([r["spread_ms"] for r in old["val"]])
        measure_cost = [old["query_cost_measure_ms"]]
        load_before = tuple(old["load_avg_before"])
        if [list(s) for s in fit_shapes] != [r["shape"] for r in old["fit"]] or \
                [list(s) for s in val_shapes] != [r["shape"] for r in old["val"]] or \
                old["settings"].get("precision", "f32") != args.precision or "profile" not in old["fit"][0]:
            ap.error(f"--reuse {args.reuse}: measured with other settings (or without profiles)")
    else:
        y_fit, _, _, profiles = measure(fit_models, fit_shapes, args.threads, args.runs, args.warmup,
                                        args.passes, args.clock, args.precision, profile=True)
        y_val, spread_val, measure_cost, _ = measure(val_models, val_shapes, args.threads, args.runs,
                                                     args.warmup, args.passes, args.clock, args.precision)
    t_measure = time.perf_counter() - t0 if args.reuse is None else old["settings"]["measure_wall_s"]
    meta = {"host": host_id(), "openvino": ov_version(), "device": "CPU", "threads": args.threads,
            "clock": args.clock, "precision": args.precision,
            "inference_precision": effective_precision("CPU", args.precision),
            "fitted_on": f"{args.n_fit_zoo} zoo U-Nets + {args.n_fit_space} search-space candidates, "
                         f"tiles {args.sizes}, batch 1"}
    t_fit = time.perf_counter()
    model = HostLatencyModel.fit([trace_graph(m, s) for m, s in zip(fit_models, fit_shapes, strict=True)], y_fit, meta,
                                 profiles=[_nodes(p) for p in profiles], rounds=args.rounds)
    t_fit = time.perf_counter() - t_fit
    if not (args.quick or args.no_write_calibration):
        model.save(calibration_file(args.threads, "CPU", args.precision))

    query_cost = []
    pred = []
    for m, s in zip(val_models, val_shapes, strict=True):
        t = time.perf_counter()
        pred.append(model.predict_graph_of(m, s)[0])
        query_cost.append((time.perf_counter() - t) * 1e3)
    pred_a = np.array(pred)
    rel = pred_a / y_val - 1
    tau = float(kendalltau(pred_a, y_val).statistic)
    myr = calibrate(include_host=False)
    myr_host = calibrate(include_host=True)
    load_after = os.getloadavg() if args.reuse is None else tuple(old["load_avg_after"])

    out = {
        "host_within_10pct": float(np.mean(np.abs(rel) <= 0.10)),
        "host_kendall_tau": tau,
        "host_median_abs_error": float(np.median(np.abs(rel))),
        "host_max_abs_error": float(np.max(np.abs(rel))),
        "host_n_val": len(val_models),
        "host_n_fit": len(fit_models),
        "host_fit_within_10pct": model.meta["fit_within_10pct"],
        "host_val_latency_ms_range": [float(y_val.min()), float(y_val.max())],
        "host_val_median_spread_rel": float(np.median(spread_val / y_val)),
        "myriad_median_abs_error": myr["loo_median_abs_error"],
        "myriad_max_abs_error": myr["loo_max_abs_error"],
        "myriad_points": myr["points"],
        "myriad_with_host_median_abs_error": myr_host["loo_median_abs_error"],
        "myriad_with_host_max_abs_error": myr_host["loo_max_abs_error"],
        "query_cost_measure_ms": float(np.median(measure_cost)),
        "query_cost_model_ms": float(np.median(query_cost)),
        "settings": {**meta, "runs": args.runs, "warmup": args.warmup, "passes": args.passes,
                     "sizes": sizes, "measure_wall_s": t_measure, "fit_wall_s": t_fit,
                     "rounds": args.rounds, "profile": "per node: median over 16 fresh infer requests "
                     "of one inference each", "quick": args.quick, "reused": args.reuse is not None},
        "host_model_fit": {k: model.meta[k] for k in ("fit", "kernels_matched", "kernels_unmatched",
                                                      "kernels_by_kind", "fit_median_abs_rel_error")
                           if k in model.meta},
        "load_avg_before": list(load_before),
        "load_avg_after": list(load_after),
        "val": [{"shape": list(s), "measured_ms": float(m), "spread_ms": float(sp), "predicted_ms": float(p)}
                for s, m, sp, p in zip(val_shapes, y_val, spread_val, pred_a, strict=True)],
        "fit": [{"shape": list(s), "measured_ms": float(m), "profile": p}
                for s, m, p in zip(fit_shapes, y_fit, profiles, strict=True)],
    }
    print(f"{'metric':34s} {'value':>10s}  target")
    rows = [("host within +-10 %", out["host_within_10pct"], ">= 0.90"),
            ("host Kendall tau", tau, ">= 0.90"),
            ("host median |rel err|", out["host_median_abs_error"], ""),
            ("myriad LOO median |rel err|", out["myriad_median_abs_error"], "<= 0.10"),
            ("myriad LOO max |rel err|", out["myriad_max_abs_error"], ""),
            ("myriad+host LOO median |rel err|", out["myriad_with_host_median_abs_error"], ""),
            ("query cost: measure (ms)", out["query_cost_measure_ms"], ""),
            ("query cost: model (ms)", out["query_cost_model_ms"], "")]
    for name, v, target in rows:
        print(f"{name:34s} {v:10.3f}  {target}")
    print(f"load average before {load_before[0]:.2f}, after {load_after[0]:.2f} (2 cores)")
    if not args.quick:
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(_dump(out))
        print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
