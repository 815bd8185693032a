"""Analysis of finished runs (for notebooks and scripts): load, compare, plot, pick.

    from dalp_moo.results.analysis import load_run, compare_runs, plot_regimes
    df = load_run("runs/default-...")            # one row per evaluation, front flagged
    compare_runs(["runs/a", "runs/b"])            # front size, best objective, hypervolume per run
    plot_regimes(df)                              # FP32 vs deployed mIoU (a matplotlib Figure)

Axes of figures from emulated backends say "emulated" (measured ones "measured"), and the
deployed number format (FP16 or bf16, column ``number_format``) is named. Plotting uses matplotlib's
object-oriented API (no pyplot state, no backend switch), so notebooks show the figures inline.
The figures of the ``plot`` command are in :mod:`dalp_moo.results.plots`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from dalp_moo.evaluation.record import STATUS_OK
from dalp_moo.results.view import RunView


def load_run(path: str | Path) -> pd.DataFrame:
    """All evaluations of a run folder as a DataFrame; ``on_front`` marks the Pareto front,
    ``feasible``, ``generation`` (inferred for format-1 journals) and ``degenerate`` (reason, ""
    when not) are added. For runs that record the three regimes (vessel segmentation),
    ``gap`` / ``recovered`` give the deployment gap (fp32 - ptq; FP16 or bf16, ``number_format``) and its recovered share
    ((dalp - ptq) / gap, where the gap is positive)."""
    df = RunView.load(path).table()
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
    of the runs' reference points), so that runs with different references compare too. See
    :func:`dalp_moo.results.compare.compare` for the grouping by setting (mean and spread over
    seeds) and the figure."""
    from dalp_moo.results.compare import compare

    result = compare(paths)
    first = result.views[0].objectives[0].key
    rows = []
    for v, (_, row) in zip(result.views, result.runs.iterrows(), strict=True):
        rows.append({"run": row["run"], "problem": v.cfg.problem, "algorithm": v.cfg.search.algorithm,
                     "seed": v.cfg.search.seed, "evaluations": row["evaluations"], "front_size": row["front_size"],
                     f"best_{first}": row[f"best_{first}"], "hypervolume": row["hypervolume_own"],
                     "hypervolume_common_reference": row["hypervolume_shared"], "state": row["state"],
                     "emulated": row["emulated"]})
    return pd.DataFrame(rows)


def plot_regimes(df: pd.DataFrame, ax: Any = None) -> Any:
    """FP32 vs deployed mIoU per candidate: post-training conversion (ptq) and
    deployment-aligned (dalp); returns the Figure (``ax`` given: its figure)."""
    if ax is None:
        from dalp_moo.results.plots import new_figure

        fig = new_figure(5.5, 4.5)
        ax = fig.subplots()
    ok = df[df.status == STATUS_OK]
    tag = ""
    if "emulated" in ok:
        tag = ", emulated" if bool(ok["emulated"].astype(bool).any()) else ", measured"
    formats = sorted(set(ok["number_format"].dropna())) if "number_format" in ok else []
    fmt = "/".join(formats) or "low-precision"
    lim = [0, 1]
    ax.plot(lim, lim, c="0.7", lw=1, label="no deployment loss (y = x)")
    ax.scatter(ok.fp32_miou, ok.ptq_miou, s=16, marker="s", label=f"post-training {fmt} (ptq)")
    if ok.dalp_miou.notna().any():
        ax.scatter(ok.fp32_miou, ok.dalp_miou, s=16, marker="^", label="deployment-aligned (dalp)")
    ax.set_xlabel("FP32 mIoU on the host (fraction)")
    ax.set_ylabel(f"mIoU of the {fmt} deployment (fraction{tag})")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return ax.figure
