"""Early-exit co-design: energy-latency-product (ET) reduction at <= 1 point accuracy loss.

For each data set (the embedded synthetic chip set, scikit-learn's digits, and CIFAR-10 when
``--cifar PATH`` is given):

1. An NSGA-II search of the ``early-exit`` application at 8/8 bit (backbone/exits), with the
   training settings of the default preset (``problems/presets/early_exit/default.toml``).
2. The static network: the same 8-bit backbone with only a one-layer (linear) final classifier
   at 8 bit. Its test accuracy is ``accuracy_static``; its modelled E x L is ET_base.
3. ``best_reduction_at_1pt``: among the searched candidates whose **calibration** accuracy is at
   most 1 point below the static network's calibration accuracy, the one with the largest
   calibration-split reduction 1 - ET_avg / ET_base is selected; its **test**-split reduction
   (and test accuracy loss) is reported. The test split plays no part in the selection. The
   best reduction among candidates within 1 point on the test split itself (an optimistic,
   test-selected figure) is reported alongside, labelled as such.

On the chip set also:

4. The paper's quantisation study: exits at D, F, I and K (one-layer heads) at FP32, 8/8, 8/4,
   4/8 and 4/4 bit: accuracy, fraction of samples reaching the final exit and ET reduction against
   the static network of the same precision, with the threshold fitted on the calibration split
   (the lowest threshold within 1 point of the static network there) and at a fixed 0.90.
5. Cost-model query time per candidate: cold (empty cache: ZigZag runs for every layer, then the
   allocation search), warm from disk (a new model on the same cache folder, as a new process) and
   warm in memory.
6. Evaluations per hour of the search: overall (training included) and after the last training.

All energies and latencies are **modelled** (the ZigZag-based multi-core accelerator model), not
measured. Prints a table and writes ``benchmarks/results/early_exit_edp.json``. Times are
wall-clock on a shared 2-core machine (noisy).

    nice -n 10 python benchmarks/early_exit_edp.py              # full run
    python benchmarks/early_exit_edp.py --quick --out /tmp/x.json   # tiny sizes (a check)
    python benchmarks/early_exit_edp.py --cifar ~/data/cifar-10-batches-py
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from dalp_moo.backends.accelerator import AcceleratorConfig  # noqa: E402
from dalp_moo.config import load_config  # noqa: E402
from dalp_moo.log import configure  # noqa: E402
from dalp_moo.search import run_search  # noqa: E402
from dalp_moo.training.early_exit import exit_statistics, fit_threshold  # noqa: E402
from problems.early_exit import CostModel, EarlyExitEvaluator  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "early_exit_edp.json"
FINAL = 10
DELTA = 0.01
QUANT_STUDY = ((32, 32), (8, 8), (8, 4), (4, 8), (4, 4))
PAPER_FINAL_FRACTION = {"32/32": 0.23, "8/8": 0.28, "8/4": 0.31, "4/8": 0.37, "4/4": 0.32}
STUDY_EXITS = (3, 5, 8, 10)  # D, F, I, K

QUICK = {"search": {"population": 6, "generations": 2},
         "space": {"width": 0.25},
         "data": {"n_samples": 150, "max_train": 0},
         "train": {"epochs": 1, "qat_epochs": 1, "head_epochs": 2}}


CACHE: dict[str, Path] = {}


def _config(source: str, work: Path, quick: bool, seed: int, extra: dict | None = None) -> Any:
    cache = CACHE.get("dir", work / "cache")
    overrides: list[dict] = [{"space": {"backbone_bits": "8", "exit_bits": "8"},
                              "data": {"source": source, "cache_dir": str(cache)},
                              "search": {"seed": seed}}]
    if quick:
        overrides.append(QUICK)
    if extra:
        overrides.append(extra)
    return load_config("default", problem="early-exit", overrides=overrides)


def _static(ev: EarlyExitEvaluator, bits: int, ebits: int) -> dict[str, Any]:
    """Accuracy (calib, test) and ET_base of the static network: backbone + linear final head."""
    calib = ev.bank.statistics((FINAL,), ("linear",), bits, ebits, 0.5, "calib")
    test = ev.bank.statistics((FINAL,), ("linear",), bits, ebits, 0.5, "test")
    e, lat, _ = ev.cost.stages((FINAL,), ("linear",), bits, ebits)
    return {"calib_accuracy": calib.accuracy, "accuracy": test.accuracy, "et_base": e[0] * lat[0],
            "energy_uj": e[0], "latency_ms": lat[0]}


def search_dataset(name: str, source: str, work: Path, quick: bool, seed: int) -> dict[str, Any]:
    """8/8 search on one data set; selection at <= 1 point on calibration, reported on test."""
    cfg = _config(source, work, quick, seed)
    run_dir = work / f"search-{name}"
    t0 = time.perf_counter()
    outcome = run_search(cfg, run_dir, force=True)
    elapsed = time.perf_counter() - t0
    ev = EarlyExitEvaluator(outcome.folder.config())
    static = _static(ev, 8, 8)
    rows = []
    for r in outcome.records:
        if not r.ok:
            continue
        m = r.metrics
        rows.append({
            "arch_id": r.arch_id, "description": r.description, "exits": m["exits"], "heads": m["heads"],
            "threshold": m["threshold"],
            "calib_drop": static["calib_accuracy"] - m["calib_accuracy"],
            "calib_reduction": 1.0 - m["calib_et_avg"] / static["et_base"],
            "test_drop": static["accuracy"] - m["accuracy"],
            "test_reduction": 1.0 - m["et_avg"] / static["et_base"],
            "accuracy": m["accuracy"], "calib_accuracy": m["calib_accuracy"],
            "exit_fractions": m["exit_fractions"], "exit_accuracy": m["exit_accuracy"],
            "reduction_vs_own_static": m["reduction"], "train_time_s": r.train_time_s,
            "ended_at": r.ended_at,
        })
    feasible = [x for x in rows if x["calib_drop"] <= DELTA + 1e-12]
    chosen = max(feasible, key=lambda x: x["calib_reduction"]) if feasible else None
    oracle_pool = [x for x in rows if x["test_drop"] <= DELTA + 1e-12]
    oracle = max(oracle_pool, key=lambda x: x["test_reduction"]) if oracle_pool else None
    # evaluations per hour: overall, and after the last evaluation that trained something
    trained_idx = [i for i, r in enumerate(outcome.records) if r.train_time_s > 0.05]
    last_train = max(trained_idx) if trained_idx else -1
    tail = outcome.records[last_train + 1:]
    tail_s = sum(r.train_time_s + r.eval_time_s for r in tail)
    per_hour = {"overall": 3600.0 * len(outcome.records) / elapsed if elapsed > 0 else None,
                "after_training": 3600.0 * len(tail) / tail_s if tail and tail_s > 0 else None,
                "evaluations": len(outcome.records), "search_s": round(elapsed, 1),
                "training_s": round(sum(r.train_time_s for r in outcome.records), 1),
                "evaluations_after_training": len(tail)}
    out = {
        "source": source, "data": ev.data.describe(), "run_folder": str(run_dir),
        "static": static, "accuracy_static": static["accuracy"],
        "best_reduction_at_1pt": chosen["test_reduction"] if chosen else None,
        "selected": chosen, "test_selected_best": oracle,
        "candidates": len(rows), "feasible_on_calibration": len(feasible),
        "front_size": len(outcome.front), "evaluations_per_hour": per_hour,
    }
    return out


def quantisation_study(work: Path, quick: bool, seed: int) -> dict[str, Any]:
    """Exits D, F, I, K with linear heads at FP32, 8/8, 8/4, 4/8 and 4/4 bit (chip set)."""
    cfg = _config("chips", work, quick, seed, {"space": {"backbone_bits": "4,8,16,32", "exit_bits": "4,8,16,32"}})
    ev = EarlyExitEvaluator(cfg)
    heads = ("linear",) * len(STUDY_EXITS)
    thresholds = ev.space.thresholds
    rows = []
    for bits, ebits in QUANT_STUDY:
        static = _static(ev, bits, ebits)
        energy, latency, _ = ev.cost.stages(STUDY_EXITS, heads, bits, ebits)
        calib_p = ev.bank.candidate_outputs(STUDY_EXITS, heads, bits, ebits, "calib")
        test_p = ev.bank.candidate_outputs(STUDY_EXITS, heads, bits, ebits, "test")
        target = static["calib_accuracy"] - DELTA
        fitted = fit_threshold(calib_p, ev.data.calib.y, thresholds, target)
        row: dict[str, Any] = {"precision": f"{bits}/{ebits}", "accuracy_static": static["accuracy"],
                               "et_base": static["et_base"], "paper_final_fraction": PAPER_FINAL_FRACTION[f"{bits}/{ebits}"]}
        from dalp_moo.backends.accelerator import dynamic_cost

        for label, t in (("fitted", fitted), ("fixed_0.90", 0.90)):
            if t is None:
                row[label] = None
                continue
            st = exit_statistics(test_p, ev.data.test.y, t)
            d = dynamic_cost(energy, latency, st.exit_fractions)
            row[label] = {"threshold": t, "accuracy": st.accuracy, "final_fraction": st.exit_fractions[-1],
                          "exit_fractions": list(st.exit_fractions), "reduction": 1.0 - d.et_avg / static["et_base"],
                          "accuracy_drop": static["accuracy"] - st.accuracy}
        rows.append(row)
    return {"exits": "DFIK", "heads": "linear", "threshold_rule": "lowest threshold with calibration accuracy >= "
            "static - 1 point (fitted), or 0.90 (fixed); reported on the test split", "rows": rows}


def cost_query_times(work: Path, quick: bool, n: int, seed: int) -> dict[str, Any]:
    """Cost-model time per candidate: cold cache, warm from disk (new process), warm in memory."""
    cfg = _config("chips", work, quick, seed)
    space_ev = EarlyExitEvaluator(cfg)
    acc_cfg = cfg.sections["accelerator"]
    rng = np.random.default_rng(seed + 1)
    archs = [space_ev.space.decode(g) for g in space_ev.space.sample(n, rng)]
    data = space_ev.data
    width = cfg.sections["space"].width
    with tempfile.TemporaryDirectory() as tmp:
        fresh = AcceleratorConfig(**{**acc_cfg.to_dict(), "cache_dir": tmp})
        times: dict[str, list[float]] = {"cold": [], "warm_disk": [], "warm_memory": []}
        cold = CostModel(fresh, data.num_classes, data.in_channels, width)
        for a in archs:
            t = time.perf_counter()
            cold.stages(a.positions, a.heads, a.backbone_bits, a.exit_bits)
            times["cold"].append(time.perf_counter() - t)
        disk = CostModel(fresh, data.num_classes, data.in_channels, width)
        for a in archs:
            t = time.perf_counter()
            disk.stages(a.positions, a.heads, a.backbone_bits, a.exit_bits)
            times["warm_disk"].append(time.perf_counter() - t)
        for a in archs:
            t = time.perf_counter()
            disk.stages(a.positions, a.heads, a.backbone_bits, a.exit_bits)
            times["warm_memory"].append(time.perf_counter() - t)
    out = {k: {"median_s": statistics.median(v), "first_s": v[0], "mean_s": statistics.fmean(v)} for k, v in times.items()}
    out["candidates"] = n
    out["allocation"] = acc_cfg.allocation
    out["note"] = ("cold: the first candidate runs ZigZag for every layer, later ones only for layers not seen "
                   "yet; warm_disk: a new model on the same cache folder; warm_memory: the same model again")
    return out


def run_rates(run_dir: Path) -> dict[str, Any]:
    """Evaluations per hour of a finished early-exit run folder (e.g. the default preset's)."""
    from dalp_moo.results.run_folder import RunFolder

    folder = RunFolder.open(run_dir)
    records = folder.records()
    summary = json.loads((Path(run_dir) / "summary.json").read_text())
    elapsed = float(summary.get("elapsed_s") or summary.get("time_s") or 0.0)
    trained = [i for i, r in enumerate(records) if r.train_time_s > 0.05]
    tail = records[(max(trained) if trained else -1) + 1:]
    tail_s = sum(r.train_time_s + r.eval_time_s for r in tail)
    return {"run_folder": str(run_dir), "preset": folder.config().preset, "evaluations": len(records),
            "elapsed_s": elapsed, "overall": 3600.0 * len(records) / elapsed if elapsed else None,
            "training_s": round(sum(r.train_time_s for r in records), 1),
            "after_training": 3600.0 * len(tail) / tail_s if tail and tail_s > 0 else None,
            "evaluations_after_training": len(tail)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes (a check, not a result)")
    parser.add_argument("--cifar", default="", help="folder of CIFAR-10's python layout (cifar-10-batches-py)")
    parser.add_argument("--work", default="", help="work folder (caches, run folders); default: a temporary folder")
    parser.add_argument("--out", default=str(RESULTS), help="result JSON")
    parser.add_argument("--seed", type=int, default=0, help="search and training seed")
    parser.add_argument("--cache", default="", help="trained-model cache to reuse (e.g. the ee_cache folder of a "
                        "default-preset run: same data, widths and training settings give the same models)")
    parser.add_argument("--skip-digits", action="store_true", help="leave out the digits data set")
    parser.add_argument("--run", default="", help="a finished early-exit run folder (e.g. of the default preset): "
                        "its evaluations per hour are reported too")
    args = parser.parse_args()
    configure()
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="early_exit_edp-"))
    work.mkdir(parents=True, exist_ok=True)
    if args.cache:
        CACHE["dir"] = Path(args.cache).resolve()
    t_start = time.perf_counter()
    result: dict[str, Any] = {
        "benchmark": "early_exit_edp",
        "costs": "modelled (ZigZag-based multi-core accelerator model), not measured",
        "quick": args.quick,
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(), "processor": platform.processor(),
                    "note": "shared 2-core machine: times are noisy"},
        "selection": "calibration split (<= 1 point below the static network), reported on the test split",
        "static_network": "8-bit backbone + one-layer (linear) final classifier at 8 bit",
        "target_reduction": 0.60,
        "reused_cache": str(CACHE.get("dir", "")) or None,
    }
    datasets = [("chips", "chips")]
    if not args.skip_digits:
        datasets.append(("digits", "digits"))
    if args.cifar:
        datasets.append(("cifar10", f"cifar10:{args.cifar}"))
    per: dict[str, Any] = {}
    for name, source in datasets:
        per[name] = search_dataset(name, source, work, args.quick, args.seed)
    result["best_reduction_at_1pt"] = per["chips"]["best_reduction_at_1pt"]
    result["accuracy_static"] = per["chips"]["accuracy_static"]
    for name in ("digits", "cifar10"):
        result[f"best_reduction_at_1pt_{name}"] = per[name]["best_reduction_at_1pt"] if name in per else None
        result[f"accuracy_static_{name}"] = per[name]["accuracy_static"] if name in per else None
    result["target_met"] = (result["best_reduction_at_1pt"] or 0.0) >= result["target_reduction"]
    result["quantisation_study"] = quantisation_study(work, args.quick, args.seed)
    result["cost_model_query"] = cost_query_times(work, args.quick, 4 if args.quick else 8, args.seed)
    result["evaluations_per_hour"] = {k: v["evaluations_per_hour"] for k, v in per.items()}
    if args.run:
        result["evaluations_per_hour"]["run"] = run_rates(Path(args.run))
    result["datasets"] = per
    result["total_s"] = round(time.perf_counter() - t_start, 1)

    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2, default=str))
    _print(result)


def _pct(v: Any) -> str:
    return "-" if v is None else f"{100 * v:.1f} %"


def _print(r: dict[str, Any]) -> None:
    print("early-exit ET reduction (modelled accelerator), selection on calibration, figures on test")
    print(f"{'data':<8} {'static acc':>10} {'best red. <=1pt':>16} {'its acc drop':>13} {'test-selected':>14} "
          f"{'evals/h':>8} {'evals/h after':>14}")
    for name, d in r["datasets"].items():
        sel, ora, eph = d["selected"], d["test_selected_best"], d["evaluations_per_hour"]
        print(f"{name:<8} {_pct(d['accuracy_static']):>10} {_pct(d['best_reduction_at_1pt']):>16} "
              f"{_pct(sel['test_drop'] if sel else None):>13} {_pct(ora['test_reduction'] if ora else None):>14} "
              f"{eph['overall'] or 0:>8.0f} {eph['after_training'] or 0:>14.0f}")
        if sel:
            print(f"         selected: {sel['description']}  r = {[round(v, 3) for v in sel['exit_fractions']]}")
    print("\nquantisation study, exits D F I K (linear heads); threshold fitted on calibration | fixed 0.90")
    print(f"{'bits':<6} {'static':>7} {'acc':>7} {'r_K':>6} {'paper r_K':>9} {'ET red.':>8} {'t':>5} | "
          f"{'acc':>7} {'r_K':>6} {'ET red.':>8}")
    for row in r["quantisation_study"]["rows"]:
        f, x = row["fitted"], row["fixed_0.90"]
        left = (f"{_pct(f['accuracy']):>7} {f['final_fraction']:>6.2f} {row['paper_final_fraction']:>9.2f} "
                f"{_pct(f['reduction']):>8} {f['threshold']:>5.2f}") if f else f"{'-':>7} {'-':>6} {'-':>9} {'-':>8} {'-':>5}"
        right = f"{_pct(x['accuracy']):>7} {x['final_fraction']:>6.2f} {_pct(x['reduction']):>8}" if x else "-"
        print(f"{row['precision']:<6} {_pct(row['accuracy_static']):>7} {left} | {right}")
    q = r["cost_model_query"]
    print(f"\ncost-model query per candidate ({q['candidates']} candidates, allocation {q['allocation']}): "
          f"cold median {q['cold']['median_s']:.2f} s (first {q['cold']['first_s']:.1f} s), "
          f"warm disk {q['warm_disk']['median_s'] * 1e3:.1f} ms, warm memory {q['warm_memory']['median_s'] * 1e3:.3f} ms")
    print(f"best ET reduction at <= 1 point (chips, 8/8): {_pct(r['best_reduction_at_1pt'])} "
          f"(target {_pct(r['target_reduction'])}: {'met' if r['target_met'] else 'not met'}); total {r['total_s']:.0f} s")


if __name__ == "__main__":
    main()
