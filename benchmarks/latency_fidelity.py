"""Latency fidelity of the backends' latency models.

1. Myriad X (emulated; no device is reachable): fit the per-stage latency model
   (:mod:`dalp_moo.backends.myriad_latency`) on the published measurements of the reconstructed
   calibration networks (:mod:`dalp_moo.backends.zoo.myriad_points`) and validate it
   leave-one-family-out (a family = all points of one architecture; its latency/period pairs are
   held out too) and, harder, leave-one-source-out. Median / max absolute error (fraction of the
   measured value), share within +-10 % and Kendall tau over all held-out predictions, with the
   per-point table. The full fit is written to ``dalp_moo/backends/calibration/myriadx.json``.
2. The search's candidates: for random repaired candidates of the default search space at 64 px,
   the predicted device latency (the objective) split by where its constants come from (fitted
   here / published (ANNETTE) / assumed): the share of the candidates' latency range and of its
   variance from each; Spearman of predicted latency with MACs and with parameters; the time of
   one model query (trace + predict, ms).
3. Host CPU (OpenVINO, measured): ``calibrate_host`` (:mod:`dalp_moo.backends.calibrate`, the
   library of ``python -m dalp_moo calibrate host``) with more networks: per-node profiles and
   latencies of the fit networks, the kernel-level host model fitted on them and written to
   ``dalp_moo/backends/calibration/`` for this CPU model, its fidelity on held-out search-space
   candidates (never profiled nor fitted on), and the cost of one latency query measured vs
   modelled. Measurements are kept in ``benchmarks/results/host_state/`` (one JSON line per
   network): a rerun with the same settings refits without measuring.

With ``clock=cpu`` (default, one inference thread) an inference is timed by the process CPU time it
used: on a host shared with other jobs that is the latency without the time spent waiting for a
core. Prints a table and writes ``benchmarks/results/latency_fidelity.json``.

    python benchmarks/latency_fidelity.py                # everything (host part: ~15 min on 2 busy cores)
    python benchmarks/latency_fidelity.py --myriad-only  # parts 1 and 2 (a few minutes), keeps the host parts
    python benchmarks/latency_fidelity.py --host-only    # part 3 on this CPU, keeps the rest
    python benchmarks/latency_fidelity.py --quick        # small smoke run, writes nothing

Each CPU model's host part is kept under ``hosts`` (``host_calibrations`` sums them up), so running
part 3 on another CPU adds that CPU's calibration and fidelity without touching the others'.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy.stats import spearmanr

from dalp_moo.backends import myriad_latency as ml
from dalp_moo.backends.calibrate import HostCalibrationConfig, calibrate_host, space_candidates
from dalp_moo.backends.graph import trace_graph
from dalp_moo.backends.host_model import CALIBRATION_DIR, HostLatencyModel, host_id, host_slug

RESULTS = Path(__file__).resolve().parent / "results" / "latency_fidelity.json"
HOST_STATE = RESULTS.parent / "host_state"


def myriad_part(quick: bool, write: bool) -> dict[str, Any]:
    """Parts 1: fit + cross-validation of the Myriad X model on the published points."""
    t0 = time.perf_counter()
    res = ml.calibrate(write=write and not quick)
    cv, src = res["cv"], res["cv_by_source"]
    return {
        "myriad_cv_median_abs_error": cv["median_abs_error"],
        "myriad_cv_mean_abs_error": cv["mean_abs_error"],
        "myriad_cv_max_abs_error": cv["max_abs_error"],
        "myriad_cv_within_10pct": cv["within_10pct"],
        "myriad_cv_kendall_tau": cv["kendall_tau"],
        "myriad_cv_median_abs_error_high_confidence": cv["median_abs_error_high_confidence"],
        "myriad_cv_median_abs_error_by_quantity": cv["median_abs_error_by_quantity"],
        "myriad_source_cv_median_abs_error": src["median_abs_error"],
        "myriad_source_cv_max_abs_error": src["max_abs_error"],
        "myriad_source_cv_kendall_tau": src["kendall_tau"],
        "myriad_fit_median_abs_error": res["fit_median_abs_error"],
        "myriad_n_points": res["n_points"], "myriad_n_families": res["n_families"],
        "myriad_fitted_params": res["fitted"], "myriad_param_sources": res["sources"],
        "myriad_priors": res["priors"], "myriad_prior_weight": res["prior_weight"],
        "myriad_latency_period_pairs": res["latency_period_pairs"],
        "myriad_points": [{**r, "source_cv_pred_ms": s["cv_pred_ms"], "source_cv_rel_error": s["cv_rel_error"],
                           "fit_rel_error": res["fit_rel_errors"][r["name"]]}
                          for r, s in zip(cv["points"], src["points"], strict=True)],
        "myriad_wall_s": time.perf_counter() - t0,
    }


def candidates_part(n: int, size: int) -> dict[str, Any]:
    """Part 2: where the candidates' predicted latencies (and their differences) come from."""
    params = ml.load_params()
    model = ml.MyriadXLatencyModel(params)
    models = space_candidates(n, 3)
    shape = (1, 4, size, size)
    for m in models[:3]:  # warm-up of the tracer
        model.predict_model(m, shape)
    lat, macs, nparams, parts, q_all, q_cpu, q_pred = [], [], [], [], [], [], []
    for m in models:
        c0 = time.process_time()
        t0 = time.perf_counter()
        g = trace_graph(m, shape)
        t1 = time.perf_counter()
        rep = model.predict(g)
        t2 = time.perf_counter()
        q_cpu.append((time.process_time() - c0) * 1e3)
        q_all.append((t2 - t0) * 1e3)
        q_pred.append((t2 - t1) * 1e3)
        lat.append(rep.latency_ms)
        macs.append(g.total_macs)
        nparams.append(sum(p.numel() for p in m.parameters()))
        parts.append(ml.breakdown(model.table(g), params))
    y = np.array(lat)
    lo, hi = int(np.argmin(y)), int(np.argmax(y))
    srcs = ("fitted", "published", "assumed")
    comp = {s: np.array([p[s] for p in parts]) for s in srcs}
    var = float(np.var(y))
    fixed = params.fixed_ms
    return {
        "n": n, "input": list(shape), "method": "emulated (model prediction, device latency)",
        "latency_ms_range": [float(y.min()), float(y.max())], "latency_ms_median": float(np.median(y)),
        "fixed_ms": fixed, "fixed_share_median": float(np.median(fixed / y)),
        "share_of_range": {s: float((comp[s][hi] - comp[s][lo]) / (y[hi] - y[lo])) for s in srcs},
        "share_of_variance": {s: float(np.cov(comp[s], y)[0, 1] / var) for s in srcs},
        "share_of_latency_median": {s: float(np.median(comp[s] / y)) for s in srcs},
        "spearman_latency_vs_macs": float(spearmanr(y, macs).statistic),
        "spearman_latency_vs_params": float(spearmanr(y, nparams).statistic),
        "params_range": [int(min(nparams)), int(max(nparams))],
        "query_ms_median": float(np.median(q_all)), "query_ms_max": float(np.max(q_all)),
        "query_cpu_ms_median": float(np.median(q_cpu)),
        "predict_only_ms_median": float(np.median(q_pred)),
    }


def calibration_config(args: argparse.Namespace) -> HostCalibrationConfig:
    """The host calibration settings of the command line."""
    return HostCalibrationConfig(n_fit_zoo=args.n_fit_zoo, n_fit_space=args.n_fit_space, n_val=args.n_val,
                                 sizes=tuple(int(s) for s in args.sizes.split(",")), runs=args.runs,
                                 warmup=args.warmup, passes=args.passes, clock=args.clock,
                                 precision=args.precision, rounds=args.rounds)


def host_part(args: argparse.Namespace) -> dict[str, Any]:
    """Part 3: host calibration on this CPU and its held-out fidelity."""
    cfg = calibration_config(args)
    out = CALIBRATION_DIR if not (args.quick or args.no_write_calibration) else Path("/tmp") / "dalp_quick_cal.json"
    work = HOST_STATE if not args.quick else Path("/tmp") / "dalp_quick_state"
    t0 = time.perf_counter()
    res = calibrate_host(cfg, work_dir=work, out=out)
    model = HostLatencyModel.load(path=res.path)
    from dalp_moo.backends.calibrate import MeasurementStore, networks

    nets = [n for n in networks(cfg) if n.role == "val"]
    q = []
    for n in nets:
        t = time.perf_counter()
        model.predict_graph_of(n.model, n.shape)
        q.append((time.perf_counter() - t) * 1e3)
    recs = MeasurementStore(res.state_file).records
    cost = [r["cost_ms"] for r in recs.values() if r["role"] == "val"]
    y = np.array([r["measured_ms"] for r in res.val])
    spread = np.array([r["spread_ms"] for r in res.val])
    return {
        "host_within_10pct": res.within_10pct, "host_kendall_tau": res.kendall_tau,
        "host_median_abs_error": res.median_abs_error, "host_max_abs_error": res.max_abs_error,
        "host_n_val": res.n_val, "host_n_fit": res.n_fit, "host_fit_within_10pct": res.fit_within_10pct,
        "host_other_calibrations_here": other_calibrations(res, nets, cfg.precision),
        "host_n_retest": res.n_retest, "host_retest_median_abs_diff": res.retest_median_abs_diff,
        "host_retest_max_abs_diff": res.retest_max_abs_diff,
        "host_val_latency_ms_range": [float(y.min()), float(y.max())],
        "host_val_median_spread_rel": float(np.median(spread / y)),
        "query_cost_measure_ms": float(np.median(cost)), "query_cost_model_ms": float(np.median(q)),
        "host_calibration_file": str(res.path.relative_to(RESULTS.parents[2])) if not args.quick else str(res.path),
        "host_state_file": str(res.state_file.relative_to(RESULTS.parents[2])) if not args.quick else "",
        "host_measured_now": res.measured_now, "host_reused": res.reused,
        "host_measure_wall_s": res.measure_s, "host_fit_wall_s": res.fit_s, "host_wall_s": time.perf_counter() - t0,
        "host_settings": {"host": host_id(), **cfg.measurement_key(), "sizes": list(cfg.sizes),
                          "n_fit_zoo": cfg.n_fit_zoo, "n_fit_space": cfg.n_fit_space, "rounds": cfg.rounds,
                          "profile": "per node: median over 16 fresh infer requests of one inference each",
                          "load_avg_before": model.meta.get("load_avg_before"),
                          "load_avg_after": model.meta.get("load_avg_after")},
        "val": res.val,
    }


def _is_host_key(key: str) -> bool:
    """Whether ``key`` belonged to the one host part kept at the top level before ``hosts``."""
    return key.startswith(("host_", "query_cost")) and key not in ("host_calibrations", "host_remeasurement") \
        or key == "val"


def _calibration_name(slug: str, part: dict[str, Any]) -> str:
    """File name of the calibration a host part wrote (older files do not record it)."""
    if part.get("host_calibration_file"):
        return Path(part["host_calibration_file"]).name
    st = part["host_settings"]
    return f"openvino_cpu_t{st['threads']}_{st['precision']}_{slug}.json"


def merge_hosts(old: dict[str, Any], part: dict[str, Any] | None) -> dict[str, Any]:
    """``hosts`` (one host part per CPU model; ``part``, when given, replaces this CPU's; a file
    from before the mapping holds its one host part at the top level) and ``host_calibrations``
    (their fidelity in brief)."""
    hosts: dict[str, Any] = dict(old.get("hosts") or {})
    legacy = {k: v for k, v in old.items() if _is_host_key(k)}
    if "host_settings" in legacy:
        hosts.setdefault(host_slug(legacy["host_settings"]["host"]), legacy)
    if part is not None:
        hosts[host_slug()] = part
    summary = {
        slug: {"host": h["host_settings"]["host"], "file": _calibration_name(slug, h),
               "within_10pct": h["host_within_10pct"], "kendall_tau": h["host_kendall_tau"],
               "median_abs_error": h["host_median_abs_error"], "n_val": h["host_n_val"],
               "retest_median_abs_diff": h.get("host_retest_median_abs_diff"), "measured": True}
        for slug, h in sorted(hosts.items())}
    return {"hosts": hosts, "host_calibrations": summary}


def other_calibrations(res: Any, nets: list[Any], precision: str) -> dict[str, Any]:
    """Fidelity of the other CPU models' shipped calibrations on this CPU's held-out measurements
    (does this CPU's own calibration beat using another's?)."""
    from scipy.stats import kendalltau

    y = np.array([r["measured_ms"] for r in res.val])
    out: dict[str, Any] = {}
    for path in sorted(CALIBRATION_DIR.glob(f"openvino_cpu_t1_{precision}_*.json")):
        if path.name == res.path.name:
            continue
        model = HostLatencyModel.load(path=path)
        pred = np.array([model.predict_graph_of(n.model, n.shape)[0] for n in nets])
        rel = pred / y - 1
        out[path.name] = {"fitted_on": model.meta.get("host"), "within_10pct": float(np.mean(np.abs(rel) <= 0.10)),
                          "median_abs_error": float(np.median(np.abs(rel))), "median_error": float(np.median(rel)),
                          "kendall_tau": float(kendalltau(pred, y).statistic)}
    return out


def host_recheck(args: argparse.Namespace) -> dict[str, Any]:
    """Refit on the measurements stored in ``host_state`` (settings of ``args``) into a temporary file
    and evaluate both that refit and the shipped calibration on the stored held-out measurements;
    the shipped calibration is not touched."""
    import tempfile

    from dalp_moo.backends.calibrate import MeasurementStore, networks, state_file

    cfg = calibration_config(args)
    sfile = state_file(cfg, HOST_STATE)
    recs = MeasurementStore(sfile).records if sfile.exists() else {}
    nets = networks(cfg)
    if not nets or any(n.id not in recs for n in nets):
        return {"status": f"no complete measurements in {sfile.name}"}
    with tempfile.TemporaryDirectory() as tmp:
        res = calibrate_host(cfg, work_dir=HOST_STATE, out=Path(tmp) / "refit.json", nets=nets)
    shipped = HostLatencyModel.load(path=CALIBRATION_DIR / f"openvino_cpu_t1_{args.precision}_{host_slug()}.json")
    val = [n for n in nets if n.role == "val"]
    y = np.array([recs[n.id]["measured_ms"] for n in val])
    pred = np.array([shipped.predict_graph_of(n.model, n.shape)[0] for n in val])
    rel = pred / y - 1
    from scipy.stats import kendalltau

    loads = [recs[n.id]["load_avg"] for n in nets if "load_avg" in recs[n.id]]
    return {"state_file": sfile.name, "n_fit": res.n_fit, "n_val": res.n_val,
            "refit_within_10pct": res.within_10pct, "refit_kendall_tau": res.kendall_tau,
            "refit_median_abs_error": res.median_abs_error, "refit_fit_within_10pct": res.fit_within_10pct,
            "profile_to_latency_median": res.profile_to_latency,
            "shipped_within_10pct": float(np.mean(np.abs(rel) <= 0.10)),
            "shipped_kendall_tau": float(kendalltau(pred, y).statistic),
            "shipped_median_abs_error": float(np.median(np.abs(rel))),
            "measured_latency_median_ms": float(np.median(y)),
            "load_avg_while_measuring": [min(loads), max(loads)] if loads else "not recorded"}


def _dump(out: dict[str, Any]) -> str:
    """JSON with one line per table row."""
    tables = {k: out[k] for k in ("myriad_points", "val") if k in out}
    head = json.dumps({k: v for k, v in out.items() if k not in tables}, indent=2).rstrip().rstrip("}").rstrip()
    for key, rows in tables.items():
        body = ",\n".join("    " + json.dumps(r, separators=(", ", ": ")) for r in rows)
        head += f',\n  "{key}": [\n{body}\n  ]'
    return head + "\n}\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n-fit-zoo", type=int, default=20, help="random zoo U-Nets for fitting the host model")
    ap.add_argument("--n-fit-space", type=int, default=100, help="search-space candidates for fitting")
    ap.add_argument("--n-val", type=int, default=40, help="held-out search-space candidates")
    ap.add_argument("--sizes", default="64,128", help="tile sizes (pixels), drawn per network")
    ap.add_argument("--runs", type=int, default=30, help="timed inferences per measurement (median)")
    ap.add_argument("--warmup", type=int, default=5, help="untimed inferences before the timed ones")
    ap.add_argument("--passes", type=int, default=20, help="timing passes per network (fastest kept)")
    ap.add_argument("--clock", choices=("cpu", "wall"), default="cpu",
                    help="'cpu' (process CPU time, one thread) or 'wall'")
    ap.add_argument("--precision", default="f32", help="OpenVINO inference precision (default f32)")
    ap.add_argument("--rounds", type=int, default=80, help="boosting rounds per kernel regressor")
    ap.add_argument("--candidates", type=int, default=200, help="search-space candidates for part 2")
    ap.add_argument("--myriad-only", action="store_true", help="parts 1 and 2; keep the stored host part")
    ap.add_argument("--host-only", action="store_true",
                    help="part 3 on this CPU; keep the stored Myriad X parts and other CPUs' host parts")
    ap.add_argument("--recheck-host", action="store_true",
                    help="with --myriad-only: refit on the measurements in host_state/ (not written to the "
                         "shipped calibration) and evaluate the shipped calibration on them")
    ap.add_argument("--quick", action="store_true", help="tiny run; writes neither calibrations nor results")
    ap.add_argument("--no-write-calibration", action="store_true", help="leave the stored calibrations unchanged")
    args = ap.parse_args()
    if args.quick:
        args.n_fit_zoo, args.n_fit_space, args.n_val, args.runs, args.passes, args.candidates = 4, 6, 4, 5, 1, 20
    torch.set_num_threads(1)
    load_before = os.getloadavg()
    if args.myriad_only and args.host_only:
        ap.error("--myriad-only and --host-only exclude each other")
    old = json.loads(RESULTS.read_text()) if RESULTS.exists() and not args.quick else {}
    out: dict[str, Any] = {}
    if args.host_only:
        if "myriad_cv_median_abs_error" not in old:
            ap.error(f"--host-only needs the Myriad X parts in {RESULTS}; run without it first")
        out.update({k: v for k, v in old.items() if k.startswith("myriad_")})
    else:
        out.update(myriad_part(args.quick, write=not args.no_write_calibration))
        out["myriad_candidates"] = candidates_part(args.candidates, 64)
    part = None if args.myriad_only else host_part(args)
    out.update(merge_hosts(old, part))
    if args.recheck_host:  # this CPU's stored measurements against its shipped calibration
        out["host_remeasurement"] = {"host": host_id(), **host_recheck(args)}
    elif "host_remeasurement" in old:  # older files: the recheck of their one (top-level) host
        out["host_remeasurement"] = {"host": old.get("host_settings", {}).get("host"), **old["host_remeasurement"]}
    out["load_avg_before"], out["load_avg_after"] = list(load_before), list(os.getloadavg())
    out["labels"] = {"myriad": "emulated: model of the Myriad X validated on published measurements",
                     "host": "measured on this CPU (OpenVINO CPU plugin) vs the fitted host model"}
    cand = out["myriad_candidates"]
    rows = [("myriad LOFO median |rel err|", out["myriad_cv_median_abs_error"], "<= 0.10"),
            ("myriad LOFO max |rel err|", out["myriad_cv_max_abs_error"], ""),
            ("myriad LOFO within +-10 %", out["myriad_cv_within_10pct"], ""),
            ("myriad LOFO Kendall tau", out["myriad_cv_kendall_tau"], "order right"),
            ("myriad leave-one-source-out median", out["myriad_source_cv_median_abs_error"], ""),
            ("candidates: range share fitted", cand["share_of_range"]["fitted"], ""),
            ("candidates: range share assumed", cand["share_of_range"]["assumed"], ""),
            ("candidates: Spearman vs MACs", cand["spearman_latency_vs_macs"], ""),
            ("candidates: Spearman vs params", cand["spearman_latency_vs_params"], ""),
            ("myriad query (trace+predict) ms", cand["query_ms_median"], "ms"),
            ("myriad query, process CPU ms", cand["query_cpu_ms_median"], "ms")]
    for slug, h in out["hosts"].items():
        rows += [(f"{slug}: within +-10 % (held out)", h["host_within_10pct"], ">= 0.90"),
                 (f"{slug}: Kendall tau (held out)", h["host_kendall_tau"], ">= 0.90"),
                 (f"{slug}: median |rel err|", h["host_median_abs_error"], ""),
                 (f"{slug}: query, measure (ms)", h["query_cost_measure_ms"], ""),
                 (f"{slug}: query, model (ms)", h["query_cost_model_ms"], "")]
        if h.get("host_retest_median_abs_diff") is not None:
            rows.append((f"{slug}: retest median |diff|", h["host_retest_median_abs_diff"], "noise floor"))
    print(f"{'metric':44s} {'value':>10s}  target")
    for name, v, target in rows:
        print(f"{name:44s} {v:10.3f}  {target}")
    print(f"load average before {load_before[0]:.2f}, after {out['load_avg_after'][0]:.2f} (2 cores)")
    if not args.quick:
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(_dump(out))
        print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
