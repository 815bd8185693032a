"""Pareto front, hypervolume and plots of evaluation records."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from pymoo.indicators.hv import HV
from pymoo.util.nds.non_dominated_sorting import NonDominatedSorting

from dalp_moo.evaluation.record import EvalRecord

#: reference point of the normalised hypervolume (objectives scaled to [0, 1])
HV_REF = (1.1, 1.1, 1.1)


def feasible(records: Sequence[EvalRecord], param_cap: int, latency_budget_ms: float = 0.0) -> list[EvalRecord]:
    """Successful records that meet the parameter cap (and the latency budget if set)."""
    out = []
    for r in records:
        if not r.ok or r.params > param_cap:
            continue
        if latency_budget_ms > 0 and (r.latency_ms is None or r.latency_ms > latency_budget_ms):
            continue
        out.append(r)
    return out


def unique_by_arch(records: Sequence[EvalRecord]) -> list[EvalRecord]:
    """First record of each architecture ID."""
    seen: dict[str, EvalRecord] = {}
    for r in records:
        seen.setdefault(r.arch_id, r)
    return list(seen.values())


def pareto_front(records: Sequence[EvalRecord]) -> list[EvalRecord]:
    """Non-dominated records by their objectives, sorted by descending deployed mIoU."""
    records = unique_by_arch(records)
    if not records:
        return []
    F = np.array([r.objectives() for r in records])
    idx = NonDominatedSorting().do(F, only_non_dominated_front=True)
    front = [records[i] for i in idx]
    return sorted(front, key=lambda r: -(r.deployed_miou or 0.0))


def normalisation(records: Sequence[EvalRecord], param_cap: int) -> np.ndarray:
    """Scale of each objective for the hypervolume: 1 (mIoU), max latency seen (ms), cap."""
    lat = max((r.latency_ms or 0.0) for r in records) if records else 1.0
    return np.array([1.0, max(lat, 1e-9), float(param_cap)])


def hypervolume(front: Sequence[EvalRecord], scale: np.ndarray) -> float:
    """Hypervolume of ``front`` with objectives divided by ``scale`` and reference :data:`HV_REF`."""
    if not front:
        return 0.0
    F = np.array([r.objectives() for r in front]) / scale
    return float(HV(ref_point=np.array(HV_REF))(F))


def plot_front(records: Sequence[EvalRecord], front: Sequence[EvalRecord], path: str | Path, title: str = "") -> None:
    """Scatter of all evaluations (mIoU vs latency, mIoU vs parameters), front highlighted."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ok = [r for r in records if r.ok and r.deployed_miou is not None]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    front_ids = {r.arch_id for r in front}
    emulated = any(r.emulated for r in ok)
    for ax, key, label in ((axes[0], "latency_ms", "latency (ms, batch 1)"), (axes[1], "params", "parameters")):
        xs = [getattr(r, key) for r in ok if r.arch_id not in front_ids]
        ys = [r.deployed_miou for r in ok if r.arch_id not in front_ids]
        ax.scatter(xs, ys, s=18, c="0.6", label="evaluated")
        fx = [getattr(r, key) for r in front]
        fy = [r.deployed_miou for r in front]
        order = np.argsort(fx) if fx else []
        ax.plot(np.array(fx)[order] if fx else [], np.array(fy)[order] if fy else [], "o-", c="tab:red",
                ms=5, lw=1, label="Pareto front (3 objectives)")
        ax.set_xlabel(label)
        ax.set_ylabel("on-device mIoU" + (" (emulated)" if emulated else ""))
        ax.grid(alpha=0.3)
    axes[0].legend(loc="lower right", fontsize=8)
    fig.suptitle(title or "dalp_moo search")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
