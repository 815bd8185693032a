"""Analysis of finished runs (for notebooks and scripts): load, compare, plot.

    from dalp_moo.results.analysis import load_run, compare_runs, plot_regimes
    df = load_run("runs/default-...")            # one row per evaluation, front flagged
    compare_runs(["runs/a", "runs/b"])            # front size, best objective, hypervolume per run
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from dalp_moo.evaluation.record import STATUS_OK
from dalp_moo.results.pareto import hypervolume
from dalp_moo.results.run_folder import RunFolder
from dalp_moo.results.summary import summarise


def load_run(path: str | Path) -> pd.DataFrame:
    """All evaluations of a run folder as a DataFrame; ``on_front`` marks the Pareto front. For
    runs that record the three regimes (vessel segmentation), ``gap`` / ``recovered`` give the
    FP16 deployment gap (fp32 - ptq) and its recovered share."""
    folder = RunFolder.open(path)
    records = folder.records()
    front, _ = summarise(records, folder.scoring())
    df = folder.table(records)
    df["on_front"] = df["arch_id"].isin({r.arch_id for r in front})
    df["run"] = folder.path.name
    if {"fp32_miou", "ptq_miou", "dalp_miou"} <= set(df.columns):
        fp32 = pd.to_numeric(df["fp32_miou"], errors="coerce")
        ptq = pd.to_numeric(df["ptq_miou"], errors="coerce")
        dalp = pd.to_numeric(df["dalp_miou"], errors="coerce")
        df["gap"] = fp32 - ptq
        df["recovered"] = np.where(df["gap"] > 0, (dalp - ptq) / df["gap"].where(df["gap"] > 0), np.nan)
    return df


def compare_runs(paths: Sequence[str | Path]) -> pd.DataFrame:
    """One row per run: algorithm, evaluations, front size, best first objective, the run's own
    hypervolume and the hypervolume against one common reference point (per objective the worst
    of the runs' reference points), so that runs with different references compare too."""
    loaded = []
    for p in paths:
        folder = RunFolder.open(p)
        cfg = folder.config()
        loaded.append((folder, cfg, folder.scoring(cfg), folder.records()))
    common: dict[str, float] = {}
    for _, _, scoring, _ in loaded:
        for o in scoring.objectives:
            ref = scoring.reference_point[o.key]
            if o.key not in common or o.minimised(ref) > o.minimised(common[o.key]):
                common[o.key] = ref
    rows = []
    for folder, cfg, scoring, recs in loaded:
        front, summary = summarise(recs, scoring)
        first = scoring.objectives[0].key
        rows.append({
            "run": folder.path.name, "problem": cfg.problem, "algorithm": cfg.search.algorithm,
            "evaluations": len(recs), "front_size": len(front), f"best_{first}": summary[f"best_{first}"],
            "hypervolume": summary["hypervolume"],
            "hypervolume_common_reference": hypervolume(front, scoring.objectives, common),
        })
    return pd.DataFrame(rows)


def plot_regimes(df: pd.DataFrame, ax=None):  # noqa: ANN001, ANN201 - matplotlib types
    """FP32 vs deployed mIoU per candidate: post-training conversion and deployment-aligned."""
    import matplotlib.pyplot as plt

    ax = ax or plt.gca()
    ok = df[df.status == STATUS_OK]
    lim = [0, 1]
    ax.plot(lim, lim, c="0.7", lw=1, label="no deployment loss")
    ax.scatter(ok.fp32_miou, ok.ptq_miou, s=16, label="post-training FP16 (ptq)")
    if ok.dalp_miou.notna().any():
        ax.scatter(ok.fp32_miou, ok.dalp_miou, s=16, label="deployment-aligned (dalp)")
    ax.set_xlabel("FP32 mIoU (host)")
    ax.set_ylabel("on-device mIoU")
    ax.legend(fontsize=8)
    return ax
