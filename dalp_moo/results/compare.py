"""Comparison of runs: fronts on common axes, hypervolumes against one shared reference point,
mean and spread over the seeds of one setting.

The shared reference point takes, per objective, the worst of the runs' own (fixed) reference
points, so every run's front lies inside one box and the hypervolumes are comparable. Runs whose
configs differ only in ``search.seed`` form one *setting*; a setting with several seeds gets its
mean, standard deviation (n - 1) and range.

    result = compare(["runs/dalp-s0", "runs/dalp-s1", "runs/ptq-s0", "runs/ptq-s1"])
    result.runs        # DataFrame: one row per run (hypervolume_shared, ...)
    result.settings    # DataFrame: one row per setting (hv_mean, hv_std, hv_min, hv_max, seeds)
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator

from dalp_moo.application import Objective
from dalp_moo.errors import DalpError
from dalp_moo.results.view import RunView, axis_label

MARKERS = ("o", "s", "^", "v", "P", "X", "D", "<", ">", "*")


def shared_reference(views: Sequence[RunView]) -> dict[str, float]:
    """Per objective key the worst of the runs' reference points (natural units)."""
    common: dict[str, float] = {}
    for v in views:
        for o in v.objectives:
            ref = v.scoring.reference_point[o.key]
            if o.key not in common or o.minimised(ref) > o.minimised(common[o.key]):
                common[o.key] = float(ref)
    return common


def _flat(d: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, Mapping):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = json.dumps(v, sort_keys=True, default=str)
    return out


#: config keys that do not make a different setting (execution, not what is searched)
IGNORED_KEYS = ("search.seed", "search.workers", "search.scheduler", "search.cache_dir", "train.threads",
                "train.device", "data.cache_dir", "backend.export_ir", "preset")


def setting_of(view: RunView) -> dict[str, Any]:
    """The run's config, flattened, without its seed and execution keys."""
    flat = _flat(view.cfg.to_dict())
    return {k: v for k, v in flat.items() if k not in IGNORED_KEYS and not k.endswith("cache_dir")}


@dataclass
class Comparison:
    """What :func:`compare` returns."""

    views: list[RunView]
    reference_point: dict[str, float]
    runs: pd.DataFrame
    settings: pd.DataFrame
    histories: dict[str, pd.DataFrame]  #: run name -> history against the shared reference

    def to_dict(self) -> dict[str, Any]:
        return {"reference_point": self.reference_point,
                "emulated": any(v.emulated for v in self.views),
                "runs": json.loads(self.runs.to_json(orient="records")),
                "settings": json.loads(self.settings.to_json(orient="records"))}


def compare(paths: Sequence[str | Path]) -> Comparison:
    """Load the runs, put them on one reference point and group them by setting."""
    if not paths:
        raise DalpError("compare: give at least one run folder")
    views = [RunView.load(p) for p in paths]
    keys = [tuple(o.key for o in v.objectives) for v in views]
    if len(set(keys)) > 1 or len({v.cfg.problem for v in views}) > 1:
        which = "; ".join(f"{v.name}: {v.cfg.problem} {','.join(k)}" for v, k in zip(views, keys, strict=True))
        raise DalpError(f"compare: the runs have different problems or objectives ({which})")
    names = [v.name for v in views]
    if len(set(names)) < len(names):  # same folder name under different parents
        names = [str(v.path) for v in views]
    reference = shared_reference(views)
    own_hv = [v.summary["hypervolume"] for v in views]  # against each run's own reference point
    views = [v.with_reference(reference) for v in views]
    settings = [setting_of(v) for v in views]
    all_keys = sorted(set().union(*settings))
    varying = [k for k in all_keys if len({s.get(k) for s in settings}) > 1]
    groups: dict[str, int] = {}
    labels = []
    for s in settings:
        label = ", ".join(f"{k}={json.loads(s[k]) if k in s else '-'}" for k in varying) or "one setting"
        groups.setdefault(label, len(groups))
        labels.append(label)
    first = views[0].objectives[0]
    rows = []
    for v, name, label, hv_own in zip(views, names, labels, own_hv, strict=True):
        rows.append({
            "run": name, "setting": label, "seed": v.cfg.search.seed, "algorithm": v.cfg.search.algorithm,
            "state": v.state.label, "evaluations": len(v.records), "front_size": len(v.front),
            f"best_{first.key}": v.summary.get(f"best_{first.key}"),
            "hypervolume_own": hv_own,
            "hypervolume_shared": v.summary["hypervolume"], "emulated": v.emulated,
        })
    runs = pd.DataFrame(rows)
    stats = []
    for label, part in runs.groupby("setting", sort=False):
        hv = part["hypervolume_shared"].to_numpy(dtype=float)
        stats.append({"setting": label, "runs": len(part), "seeds": sorted(int(s) for s in part["seed"]),
                      "hv_mean": float(hv.mean()), "hv_std": float(hv.std(ddof=1)) if len(hv) > 1 else 0.0,
                      "hv_min": float(hv.min()), "hv_max": float(hv.max()),
                      "front_size_mean": float(part["front_size"].mean()),
                      f"best_{first.key}_mean": float(pd.to_numeric(part[f"best_{first.key}"]).mean())})
    histories = {name: v.history for v, name in zip(views, names, strict=True)}
    return Comparison(views, reference, runs, pd.DataFrame(stats), histories)


def compare_figure(result: Comparison) -> Figure:
    """Fronts of all runs on common axes (colour = setting, marker = seed; every feasible
    evaluation faint) and hypervolume per generation against the shared reference (mean and
    range per setting)."""
    from dalp_moo.results.plots import _values, new_figure

    views = result.views
    objectives: list[Objective] = list(views[0].objectives)
    records = [r for v in views for r in v.records]
    n = len(objectives)
    cells = max(n - 1, 1)
    rows = cells + (1 if n <= 2 else 0)
    fig = new_figure(4.6 * cells, 3.8 * rows + 0.6)
    axes = fig.subplots(rows, cells, squeeze=False)
    settings = list(dict.fromkeys(result.runs["setting"]))
    colours = {s: f"C{i % 10}" for i, s in enumerate(settings)}
    seeds = sorted({int(s) for s in result.runs["seed"]})
    markers = {s: MARKERS[i % len(MARKERS)] for i, s in enumerate(seeds)}
    pairs = ([] if n == 1 else [(0, 0, objectives[1], objectives[0])] if n == 2 else
             [(i, j, objectives[j + 1], objectives[i]) for i in range(n - 1) for j in range(i, n - 1)])
    for i, j, ox, oy in pairs:
        ax = axes[i][j]
        for v, (_, row) in zip(views, result.runs.iterrows(), strict=True):
            colour, marker = colours[row["setting"]], markers[int(row["seed"])]
            ok = [r for r in v.records if r.ok]
            ax.scatter(_values(ok, ox.key), _values(ok, oy.key), s=8, c=colour, alpha=0.35, linewidths=0)
            ax.scatter(_values(v.front, ox.key), _values(v.front, oy.key), s=40, c=colour, marker=marker,
                       edgecolors="black", linewidths=0.7, zorder=3)
        ax.set_xlabel(axis_label(ox, records), fontsize=9)
        ax.set_ylabel(axis_label(oy, records), fontsize=9)
        ax.grid(alpha=0.3)
        ax.tick_params(labelsize=8)
    for i in range(cells):
        for j in range(cells):
            if n > 2 and j < i and not (i == cells - 1 and j == 0):
                axes[i][j].set_axis_off()
    hv_ax = axes[cells - 1][0] if n > 2 else axes[rows - 1][0]
    for s in settings:
        names = result.runs.loc[result.runs["setting"] == s, "run"].tolist()
        curves = [result.histories[name].set_index("generation")["hypervolume"] for name in names
                  if not result.histories[name].empty]
        if not curves:
            continue
        table = pd.concat(curves, axis=1).sort_index().ffill()
        g = table.index.to_numpy()
        mean = table.mean(axis=1).to_numpy()
        hv_ax.plot(g, mean, "-o", c=colours[s], ms=4, label=f"{s} (n={len(curves)})")
        if len(curves) > 1:
            hv_ax.fill_between(g, table.min(axis=1).to_numpy(), table.max(axis=1).to_numpy(), color=colours[s],
                               alpha=0.2, lw=0)
    hv_ax.set_xlabel("generation (0 = initial population)", fontsize=9)
    hv_ax.set_ylabel("hypervolume, shared reference", fontsize=9)
    hv_ax.set_title("mean over seeds; band: min-max", fontsize=8)
    hv_ax.grid(alpha=0.3)
    hv_ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    hv_ax.tick_params(labelsize=8)
    handles = [Line2D([], [], ls="", marker="s", mfc=colours[s], mec="black", ms=7, label=s) for s in settings]
    handles += [Line2D([], [], ls="", marker=markers[sd], mfc="0.8", mec="black", ms=6, label=f"seed {sd}")
                for sd in seeds]
    fig.legend(handles=handles, loc="outside lower center", ncols=min(4, len(handles)), fontsize=8, frameon=False)
    ref = ", ".join(f"{k} {v:.4g}" for k, v in result.reference_point.items())
    tag = " (emulated)" if any(v.emulated for v in views) else ""
    fig.suptitle(f"{len(views)} runs{tag}: fronts (edged markers) and all successful evaluations (faint)\n"
                 f"shared hypervolume reference: {ref}", fontsize=9)
    return fig


def write_comparison(result: Comparison, out: str | Path, fmt: str = "png") -> list[Path]:
    """``compare.csv`` (runs), ``compare_settings.csv``, ``compare.json`` and the figure."""
    from dalp_moo.results.plots import save

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    result.runs.to_csv(out / "compare.csv", index=False)
    result.settings.to_csv(out / "compare_settings.csv", index=False)
    (out / "compare.json").write_text(json.dumps(result.to_dict(), indent=2, default=_json_default))
    return [out / "compare.csv", out / "compare_settings.csv", out / "compare.json",
            save(compare_figure(result), out / "compare", fmt)]


def _json_default(value: Any) -> Any:
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return None if not math.isfinite(float(value)) else float(value)
    return str(value)
