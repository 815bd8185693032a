"""The paper's claim at search level: does a search whose candidates are trained
deployment-aligned (``dalp``) find a better deployed front than one whose candidates are trained
in FP32 and deployed by post-training conversion (``ptq``)?

Three settings with the same search budget and seeds, all judged by deployed (emulated Myriad X:
no device here) mIoU, latency and parameters:

* ``dalp``: ``train.epochs`` FP32 epochs, then ``train.finetune_epochs`` epochs under the FP16
  profile, deployed;
* ``ptq``: ``train.epochs`` FP32 epochs, deployed by post-training conversion;
* ``ptq_control``: ``train.epochs + train.finetune_epochs`` FP32 epochs (the same number of extra
  epochs as ``dalp``'s fine-tuning, in FP32), deployed by post-training conversion.

Per setting and seed one NSGA-II run (a real search: training, deployment, journal). Reported:
hypervolume of each run's front against one shared reference point (per objective the worst of
the runs' own fixed reference points; they agree here: same backend and parameter cap), mean and
spread over seeds; the share of the ``ptq`` (and ``ptq_control``) front dominated by the
``dalp`` front of the same seed (and the reverse); the share of degenerate candidates (constant
prediction, vessel IoU 0), without which the fronts say nothing.

The default budget is **reduced** (population 4, 2 generations, 100 tiles of 32 px, 2 + 1 epochs,
3 seeds) so that it completes on a shared, overloaded 2-core machine (about 50 s of CPU per
evaluation there); the default preset's budget (12 x 4, 600 tiles of 64 px, 6 + 2 epochs) or the
paper's (``paper`` preset) are what the claim needs: at the reduced budget most candidates are
degenerate (constant prediction), which the JSON reports. All figures are **emulated** (Myriad X
numerics and latency emulated on the host). The committed ``benchmarks/results/search_alignment.json``
comes from ``--tiles 200 --tile-size 64 --epochs 4 --finetune-epochs 2`` (10.5 min on 2 cores,
two searches at a time with one torch thread each), where 4 % of the candidates are degenerate.

Usage::

    nice -n 10 python benchmarks/search_alignment.py [--work DIR] [--seeds 0 1 2] [--population 4]
        [--generations 2] [--tiles 100] [--tile-size 32] [--epochs 2] [--finetune-epochs 1]

Run folders go to ``--work`` (default: a folder under the system temp dir); finished runs are
reused and interrupted ones resumed, so the script can be restarted. Prints a table and writes
``benchmarks/results/search_alignment.json`` (``--out``), with top-level keys ``hv_dalp``,
``hv_ptq``, ``hv_ptq_control``, ``ptq_front_dominated_share``,
``ptq_control_front_dominated_share``, ``seeds``, ``emulated``, ``reduced_budget``.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from dalp_moo.config import load_config
from dalp_moo.log import configure, logger
from dalp_moo.results.checks import degenerate
from dalp_moo.results.compare import compare, compare_figure
from dalp_moo.results.plots import save
from dalp_moo.results.view import RunView
from dalp_moo.search import run_search

ROOT = Path(__file__).resolve().parents[1]
SETTINGS = ("dalp", "ptq", "ptq_control")


def setting_overrides(name: str, args: argparse.Namespace) -> dict[str, Any]:
    """Config overrides of one setting."""
    train: dict[str, Any] = {"epochs": args.epochs, "finetune_epochs": args.finetune_epochs, "threads": args.threads}
    if name == "dalp":
        train["regime"] = "dalp"
    elif name == "ptq":
        train["regime"] = "ptq"
    else:  # the control: as many extra FP32 epochs as dalp's fine-tuning epochs
        train.update(regime="ptq", epochs=args.epochs + args.finetune_epochs)
    return {"search": {"population": args.population, "generations": args.generations},
            "data": {"n_tiles": args.tiles, "tile_size": args.tile_size},
            "backend": {"name": "myriadx", "export_ir": False}, "train": train}


def ensure_run(folder: Path, name: str, seed: int, args: argparse.Namespace) -> float:
    """Run (or resume, or reuse) the search of ``name`` with ``seed``; returns seconds spent. A
    folder made with another configuration (its ``meta.json`` evaluation hash) is started over."""
    t0 = time.perf_counter()
    overrides = setting_overrides(name, args)
    overrides["search"]["seed"] = seed
    cfg = load_config("default", overrides=[overrides])
    meta = folder / "meta.json"
    same = meta.is_file() and json.loads(meta.read_text()).get("config_hash") == cfg.evaluation_hash()
    if same and (folder / "summary.json").is_file() and RunView.load(folder).state.finished:
        logger.info("reusing the finished run %s", folder)
        return 0.0
    if same and (folder / "journal.jsonl").is_file():
        logger.info("resuming %s", folder)
        run_search(None, folder, resume=True)
    else:
        if folder.exists():
            logger.info("%s holds another configuration: starting over", folder)
        logger.info("running %s (seed %d) into %s", name, seed, folder)
        run_search(cfg, folder, force=folder.exists())
    return time.perf_counter() - t0


def _minimised(view: RunView) -> np.ndarray:
    return np.array([r.objectives(view.objectives) for r in view.front], dtype=float).reshape(-1, len(view.objectives))


def dominated_share(by: RunView, of: RunView) -> float | None:
    """Share of ``of``'s front points dominated (Pareto: no worse in every objective, better in
    one) by at least one point of ``by``'s front; None when ``of`` has an empty front."""
    a, b = _minimised(by), _minimised(of)
    if len(b) == 0:
        return None
    if len(a) == 0:
        return 0.0
    dominated = [bool(np.any(np.all(a <= p, axis=1) & np.any(a < p, axis=1))) for p in b]
    return float(np.mean(dominated))


def _stats(values: list[float | None]) -> dict[str, Any]:
    v = [x for x in values if x is not None]
    if not v:
        return {"mean": None, "std": None, "min": None, "max": None, "values": values}
    return {"mean": statistics.fmean(v), "std": statistics.stdev(v) if len(v) > 1 else 0.0, "min": min(v),
            "max": max(v), "values": values}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "dalp_moo-search-alignment",
                   help="folder of the searches' run folders")
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "search_alignment.json",
                   help="result JSON")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="search seeds")
    p.add_argument("--population", type=int, default=4, help="NSGA-II population")
    p.add_argument("--generations", type=int, default=2, help="NSGA-II generations")
    p.add_argument("--tiles", type=int, default=100, help="tiles generated")
    p.add_argument("--tile-size", type=int, default=32, help="tile edge (pixels)")
    p.add_argument("--epochs", type=int, default=2, help="FP32 training epochs per candidate")
    p.add_argument("--finetune-epochs", type=int, default=1, help="aligned fine-tuning epochs per candidate")
    p.add_argument("--threads", type=int, default=1, help="torch threads per evaluation (not in the hash)")
    args = p.parse_args()
    configure(logging.INFO)
    args.work.mkdir(parents=True, exist_ok=True)
    seconds: dict[str, float] = {}
    folders: dict[tuple[str, int], Path] = {}
    for seed in args.seeds:
        for name in SETTINGS:
            folder = args.work / f"{name}-s{seed}"
            folders[(name, seed)] = folder
            seconds[f"{name}-s{seed}"] = ensure_run(folder, name, seed, args)

    result = compare([folders[(n, s)] for n in SETTINGS for s in args.seeds])
    views = {(n, s): v for (n, s), v in zip(((n, s) for n in SETTINGS for s in args.seeds), result.views,
                                            strict=True)}
    hv = {n: _stats([float(views[(n, s)].summary["hypervolume"]) for s in args.seeds]) for n in SETTINGS}
    dom = {
        "ptq_by_dalp": _stats([dominated_share(views[("dalp", s)], views[("ptq", s)]) for s in args.seeds]),
        "dalp_by_ptq": _stats([dominated_share(views[("ptq", s)], views[("dalp", s)]) for s in args.seeds]),
        "ptq_control_by_dalp": _stats([dominated_share(views[("dalp", s)], views[("ptq_control", s)])
                                       for s in args.seeds]),
        "dalp_by_ptq_control": _stats([dominated_share(views[("ptq_control", s)], views[("dalp", s)])
                                       for s in args.seeds]),
    }
    per_run = []
    for (n, s), v in views.items():
        ok = [r for r in v.records if r.ok]
        best = v.summary.get("best_deployed_miou")
        per_run.append({
            "setting": n, "seed": s, "folder": str(v.path), "evaluations": len(v.records),
            "failed": v.summary["failed"], "front_size": len(v.front), "hypervolume": v.summary["hypervolume"],
            "best_deployed_miou": best, "degenerate_share": len(degenerate(ok)) / len(ok) if ok else None,
            "front_degenerate": len(degenerate(v.front)),
            "mean_fp32_miou": _mean(r.metrics.get("fp32_miou") for r in ok),
            "mean_ptq_miou": _mean(r.metrics.get("ptq_miou") for r in ok),
            "mean_dalp_miou": _mean(r.metrics.get("dalp_miou") for r in ok),
            "seconds": seconds[f"{n}-s{s}"],
        })
    out = {
        "benchmark": "search_alignment",
        "emulated": True,
        "label": "EMULATED (Myriad X numerics and latency emulated on the host); REDUCED budget",
        "reduced_budget": True,
        "budget": {"population": args.population, "generations": args.generations, "tiles": args.tiles,
                   "tile_size": args.tile_size, "epochs": args.epochs, "finetune_epochs": args.finetune_epochs,
                   "control_epochs": args.epochs + args.finetune_epochs, "preset": "default (overridden)"},
        "seeds": list(args.seeds),
        "reference_point": result.reference_point,
        "hv_dalp": hv["dalp"], "hv_ptq": hv["ptq"], "hv_ptq_control": hv["ptq_control"],
        "ptq_front_dominated_share": dom["ptq_by_dalp"],
        "ptq_control_front_dominated_share": dom["ptq_control_by_dalp"],
        "dalp_front_dominated_by_ptq_share": dom["dalp_by_ptq"],
        "dalp_front_dominated_by_ptq_control_share": dom["dalp_by_ptq_control"],
        "runs": per_run,
        "note": ("hypervolume: dominated fraction of the box between the ideal point (mIoU 1, 0 ms, 0 parameters) "
                 "and the shared reference point; dominated share: per seed, share of that setting's front points "
                 "Pareto-dominated by the other setting's front (3 objectives)."),
        "wall_s": sum(seconds.values()),
        "written": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2, default=float))
    figure = save(compare_figure(result), args.out.with_suffix(".png"))

    print(f"search alignment ({out['label']}): population {args.population} x {args.generations} generations, "
          f"{args.tiles} tiles, {args.epochs}+{args.finetune_epochs} epochs, seeds {args.seeds}")
    print(f"{'setting':12s} {'HV mean':>8s} {'HV std':>8s} {'HV per seed':>28s} {'degenerate':>10s}")
    for n in SETTINGS:
        deg = _mean(r["degenerate_share"] for r in per_run if r["setting"] == n)
        values = " ".join(f"{v:.4f}" for v in hv[n]["values"])
        shown = "-" if deg is None else f"{deg:.2f}"
        print(f"{n:12s} {hv[n]['mean']:8.4f} {hv[n]['std']:8.4f} {values:>28s} {shown:>10s}")
    for key, label in (("ptq_by_dalp", "ptq front dominated by dalp"), ("dalp_by_ptq", "dalp front dominated by ptq"),
                       ("ptq_control_by_dalp", "ptq_control front dominated by dalp"),
                       ("dalp_by_ptq_control", "dalp front dominated by ptq_control")):
        d = dom[key]
        shown = "-" if d["mean"] is None else f"{d['mean']:.2f} (per seed {d['values']})"
        print(f"{label:38s} {shown}")
    print(f"written: {args.out}, {figure}")


def _mean(values: Any) -> float | None:
    v = [float(x) for x in values if isinstance(x, (int, float))]
    return statistics.fmean(v) if v else None


if __name__ == "__main__":
    main()
