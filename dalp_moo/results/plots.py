"""Figures of a run folder (matplotlib's object-oriented API: no pyplot state, no backend switch).

Every function returns a :class:`matplotlib.figure.Figure` (or None when the run lacks the data);
:func:`save` writes it through an Agg canvas (PNG) or the vector canvases (SVG, PDF).

* :func:`pareto_figure`: 2-D projections of the objectives, points not joined (a projection of an
  n-objective front is not a curve); dominated, non-dominated and infeasible candidates marked
  differently, colour = generation; three objectives give a pairwise grid.
* :func:`gap_figure`: FP32 vs post-training FP16 or bf16 (ptq) vs deployment-aligned (dalp) mIoU per
  candidate, when the run recorded them.
* :func:`history_figure`: hypervolume (against the run's fixed reference point) and front size
  per generation.
* :func:`distributions_figure`: distribution of each objective, initial population vs later
  generations, front values marked.
* :func:`early_exit_figure`: early-exit runs: accuracy vs expected energy-latency product with
  the static networks marked, and the exit fractions of the front's candidates.

Axis labels carry units and how the figure was obtained (emulated / modelled / measured); titles
carry the run name, seed and budget.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import BoundaryNorm
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator

from dalp_moo.application import Objective, finite_float
from dalp_moo.application import feasible as is_feasible
from dalp_moo.errors import DalpError
from dalp_moo.evaluation.record import EvalRecord
from dalp_moo.results.checks import degenerate
from dalp_moo.results.summary import Scoring
from dalp_moo.results.view import RunView, axis_label

FORMATS = ("png", "svg", "pdf")
CMAP = "viridis"
FRONT_MARKER = dict(marker="D", s=58, edgecolors="black", linewidths=1.1, zorder=4)
DOMINATED_MARKER = dict(marker="o", s=22, alpha=0.8, linewidths=0, zorder=3)
INFEASIBLE_MARKER = dict(marker="x", s=30, c="0.45", linewidths=1.2, zorder=2)
DEGENERATE_MARKER = dict(marker="o", s=130, facecolors="none", edgecolors="tab:red", linewidths=0.9, zorder=5)
MAX_CANDIDATES = 30  #: candidates shown in per-candidate panels


def new_figure(width: float, height: float) -> Figure:
    """A Figure attached to an Agg canvas (no pyplot, no global state)."""
    fig = Figure(figsize=(width, height), dpi=110, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def save(fig: Figure, path: str | Path, fmt: str | None = None) -> Path:
    """Write ``fig`` as PNG, SVG or PDF (from ``fmt`` or the suffix); returns the path."""
    path = Path(path)
    fmt = (fmt or path.suffix.lstrip(".") or "png").lower()
    if fmt not in FORMATS:
        raise DalpError(f"figure format {fmt!r}: choose from {', '.join(FORMATS)}")
    path = path.with_suffix(f".{fmt}")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format=fmt, dpi=110)
    return path




def _num(value: Any) -> float:
    v = finite_float(value)
    return math.nan if v is None else v


def _values(records: Sequence[EvalRecord], key: str) -> np.ndarray:
    return np.array([_num(r.metrics.get(key)) for r in records], dtype=float)


def _direction_note(objectives: Sequence[Objective]) -> str:
    up = [o.name for o in objectives if o.direction == "max"]
    down = [o.name for o in objectives if o.direction == "min"]
    parts = []
    if up:
        parts.append(f"{', '.join(up)} maximised")
    if down:
        parts.append(f"{', '.join(down)} minimised")
    return "; ".join(parts)


# -- Pareto projections ---------------------------------------------------------------------------
def front_figure(records: Sequence[EvalRecord], front: Sequence[EvalRecord], scoring: Scoring,
                 generations: Sequence[int] | None = None, title: str = "", n_generations: int | None = None) -> Figure:
    """Pairwise projections of all evaluations (the core of :func:`pareto_figure`).

    Each panel plots two objectives; non-dominated candidates (in all objectives) are diamonds
    with a black edge, dominated feasible ones dots, infeasible ones grey crosses; colour is the
    generation. Failed candidates have no figures and are counted in the legend. Constraint
    bounds on a plotted objective are drawn as dashed lines."""
    records = list(records)
    objectives = list(scoring.objectives)
    gens = np.array(generations if generations is not None else [r.generation or 0 for r in records], dtype=float)
    n_gen = int(n_generations or (int(np.nanmax(gens)) + 1 if len(gens) else 1))
    n_gen = max(n_gen, 1)
    front_ids = {r.arch_id for r in front}
    ok = np.array([r.ok for r in records], dtype=bool)
    feas = np.array([is_feasible(r, scoring.constraints) for r in records], dtype=bool)
    on_front = np.array([r.arch_id in front_ids for r in records], dtype=bool)
    infeasible = np.array([r.status == "infeasible" or (r.ok and not f) for r, f in zip(records, feas, strict=True)],
                          dtype=bool)
    n_failed = int(sum(r.status == "failed" for r in records))
    bad_ids = {r.arch_id for r in degenerate(records)}
    is_degenerate = np.array([r.arch_id in bad_ids for r in records], dtype=bool)
    cmap_norm = BoundaryNorm(np.arange(-0.5, n_gen + 0.5, 1.0), ncolors=256)

    n = len(objectives)
    if n == 1:
        pairs = [(0, 0, objectives[0], objectives[0])]
        rows = cols = 1
    else:
        rows = cols = n - 1
        pairs = [(i, j, objectives[j + 1], objectives[i]) for i in range(n - 1) for j in range(i, n - 1)]
    fig = new_figure(4.4 * cols + (1.2 if n <= 2 else 0), 3.7 * rows + 0.9)
    axes = fig.subplots(rows, cols, squeeze=False)
    mappable = None
    for i in range(rows):
        for j in range(cols):
            if n > 1 and j < i:
                axes[i][j].set_axis_off()
    for i, j, ox, oy in pairs:
        ax = axes[i][j]
        x, y = _values(records, ox.key), _values(records, oy.key)
        shown = np.isfinite(x) & np.isfinite(y)
        dom = shown & ok & feas & ~on_front
        fr = shown & ok & on_front
        inf = shown & infeasible
        if inf.any():
            ax.scatter(x[inf], y[inf], **INFEASIBLE_MARKER)
        if dom.any():
            mappable = ax.scatter(x[dom], y[dom], c=gens[dom], cmap=CMAP, norm=cmap_norm, **DOMINATED_MARKER)
        if fr.any():
            mappable = ax.scatter(x[fr], y[fr], c=gens[fr], cmap=CMAP, norm=cmap_norm, **FRONT_MARKER)
        deg = shown & is_degenerate
        if deg.any():
            ax.scatter(x[deg], y[deg], **DEGENERATE_MARKER)
        for c in scoring.constraints:
            if c.key == ox.key:
                ax.axvline(c.upper, ls="--", c="tab:red", lw=1)
            if c.key == oy.key:
                ax.axhline(c.upper, ls="--", c="tab:red", lw=1)
        ax.set_xlabel(axis_label(ox, records), fontsize=9)
        ax.set_ylabel(axis_label(oy, records), fontsize=9)
        ax.grid(alpha=0.3)
        ax.tick_params(labelsize=8)
    # one legend (and the generation colour bar) for all panels: in the empty lower-left cell
    handles = [
        Line2D([], [], ls="", marker="D", mfc="0.75", mec="black", ms=7,
               label=f"non-dominated in all {n} objectives ({int(on_front.sum())})"),
        Line2D([], [], ls="", marker="o", mfc="0.6", mec="none", ms=5,
               label=f"dominated ({int((ok & feas & ~on_front).sum())})"),
        Line2D([], [], ls="", marker="x", c="0.45", ms=6, label=f"infeasible ({int(infeasible.sum())})"),
    ]
    if any(c.key in {o.key for o in objectives} for c in scoring.constraints):
        handles.append(Line2D([], [], ls="--", c="tab:red", lw=1, label="constraint bound"))
    if n_failed:
        handles.append(Line2D([], [], ls="", label=f"failed: {n_failed} (no figures, not shown)"))
    if bad_ids:
        handles.append(Line2D([], [], ls="", marker="o", mfc="none", mec="tab:red", ms=10, mew=0.9,
                              label=f"degenerate: constant prediction ({int(is_degenerate.sum())})"))
    if n > 2:
        spare = axes[rows - 1][0]
        spare.legend(handles=handles, loc="upper left", fontsize=8, frameon=False, title="colour: generation",
                     title_fontsize=8)
        target_axes = [spare]
    else:
        axes[0][0].legend(handles=handles, loc="best", fontsize=7, framealpha=0.85)
        target_axes = [axes[0][0]]
    if mappable is not None:
        bar = fig.colorbar(mappable, ax=target_axes if n <= 2 else None, cax=None if n <= 2 else _cax(spare),
                           orientation="vertical" if n <= 2 else "horizontal")
        bar.set_label("generation (0 = initial population)", fontsize=8)
        bar.set_ticks(range(n_gen) if n_gen <= 12 else np.linspace(0, n_gen - 1, 6).round())
        bar.ax.tick_params(labelsize=7)
    note = (f"{_direction_note(objectives)}. Points are not joined: a 2-D projection of a {n}-objective "
            "front is not a curve.")
    if n > 2:
        spare.text(0.0, 0.35, _wrap(note, 60), transform=spare.transAxes, fontsize=7, color="0.3", va="top")
        fig.suptitle(_title("", title or "dalp_moo search", 110), fontsize=9)
    else:
        fig.suptitle(_title("", f"{title or 'dalp_moo search'}\n{note}", 110), fontsize=8)
    return fig


def _title(prefix: str, title: str, width: int = 130) -> str:
    """``prefix: title`` with each line wrapped to ``width`` characters."""
    lines = f"{prefix}: {title}".split("\n") if prefix else title.split("\n")
    return "\n".join(_wrap(line, width) for line in lines)


def _wrap(text: str, width: int) -> str:
    import textwrap

    return "\n".join(textwrap.wrap(text, width))


def _cax(spare: Any) -> Any:
    """A horizontal colour-bar axes inside the spare (legend) cell, near its bottom."""
    return spare.inset_axes((0.05, 0.12, 0.8, 0.06))


def pareto_figure(view: RunView) -> Figure:
    """The Pareto projections of a run (see :func:`front_figure`)."""
    generations = view.generations()
    return front_figure(view.records, view.front, view.scoring, generations, view.title,
                        max(view.cfg.search.generations, max(generations, default=0) + 1))


# -- deployment gap -------------------------------------------------------------------------------
#: key, legend label ({fmt}: the run's number format), marker, colour
REGIMES = (("fp32_miou", "FP32 (host)", "o", "0.25"), ("ptq_miou", "post-training {fmt} (ptq)", "s", "tab:blue"),
           ("dalp_miou", "deployment-aligned (dalp)", "^", "tab:orange"))


def gap_figure(view: RunView) -> Figure | None:
    """FP32 vs post-training vs deployment-aligned mIoU per candidate (None when the run did
    not record at least FP32 and post-training figures)."""
    ok = [r for r in view.records if r.ok and math.isfinite(_num(r.metrics.get("fp32_miou")))
          and math.isfinite(_num(r.metrics.get("ptq_miou")))]
    if not ok:
        return None
    tag = "emulated" if any(r.emulated for r in ok) else "measured"
    fmt = view.number_format()
    fig = new_figure(11.5, 5.2)
    left, right = fig.subplots(1, 2, width_ratios=(1, 1.25))
    fp32 = _values(ok, "fp32_miou")
    lo = float(np.nanmin([np.nanmin(_values(ok, k)) for k, *_ in REGIMES if np.isfinite(_values(ok, k)).any()]))
    hi = float(np.nanmax([np.nanmax(_values(ok, k)) for k, *_ in REGIMES if np.isfinite(_values(ok, k)).any()]))
    pad = max(0.02, 0.05 * (hi - lo))
    lim = (max(0.0, lo - pad), min(1.0, hi + pad))
    left.plot(lim, lim, c="0.7", lw=1, label="no deployment loss (y = x)")
    for key, label, marker, colour in REGIMES[1:]:
        y = _values(ok, key)
        if np.isfinite(y).any():
            left.scatter(fp32, y, marker=marker, c=colour, s=24, label=label.format(fmt=fmt), zorder=3)
    left.set_xlim(lim)
    left.set_ylim(lim)
    left.set_xlabel("FP32 mIoU on the host (fraction)", fontsize=9)
    left.set_ylabel(f"mIoU of the {fmt} deployment (fraction, {tag})", fontsize=9)
    left.legend(fontsize=8, loc="upper left")
    left.grid(alpha=0.3)
    left.set_title("every successful candidate", fontsize=9)

    front_ids = {r.arch_id for r in view.front}
    ranked = sorted(ok, key=lambda r: (r.arch_id not in front_ids, -_num(r.metrics.get("deployed_miou"))))
    shown = sorted(ranked[:MAX_CANDIDATES], key=lambda r: _num(r.metrics.get("fp32_miou")))
    ys = np.arange(len(shown))
    for row, r in zip(ys, shown, strict=True):
        vals = [_num(r.metrics.get(k)) for k, *_ in REGIMES]
        vals = [v for v in vals if math.isfinite(v)]
        right.plot([min(vals), max(vals)], [row, row], c="0.75", lw=2, zorder=1)  # one candidate's range
    for key, label, marker, colour in REGIMES:
        x = _values(shown, key)
        if np.isfinite(x).any():
            right.scatter(x, ys, marker=marker, c=colour, s=30, label=label.format(fmt=fmt), zorder=3)
    right.set_yticks(ys, [f"{r.arch_id}{' *' if r.arch_id in front_ids else ''}" for r in shown], fontsize=7,
                     family="monospace")
    right.set_xlabel(f"validation mIoU (fraction; {fmt} figures {tag})", fontsize=9)
    right.grid(alpha=0.3, axis="x")
    right.legend(fontsize=8, loc="lower right")
    more = f"; {len(ok) - len(shown)} more not shown" if len(ok) > len(shown) else ""
    right.set_title(f"per candidate (* = on the Pareto front{more})", fontsize=9)
    fig.suptitle(_title("deployment gap", view.title), fontsize=9)
    return fig


# -- history --------------------------------------------------------------------------------------
def history_figure(view: RunView) -> Figure | None:
    """Hypervolume (fixed reference point) and front size / evaluations per generation."""
    h = view.history
    if h is None or h.empty:
        return None
    fig = new_figure(10.5, 4.0)
    left, right = fig.subplots(1, 2)
    g = h["generation"].to_numpy()
    left.plot(g, h["hypervolume"].to_numpy(), "o-", c="tab:green", ms=5)
    left.set_xlabel("generation (0 = initial population)", fontsize=9)
    ref = ", ".join(f"{o.key} {view.scoring.reference_point.get(o.key, float('nan')):.4g}" for o in view.objectives)
    left.set_ylabel("hypervolume (fraction of the reference box)", fontsize=9)
    left.set_title(f"hypervolume; reference point: {ref}", fontsize=8)
    left.grid(alpha=0.3)
    right.bar(g - 0.2, h["new_evaluations"].to_numpy(), width=0.4, color="0.7", label="new evaluations")
    right.bar(g + 0.2, h["front_size"].to_numpy(), width=0.4, color="tab:red", label="front size")
    if "failed" in h and h["failed"].to_numpy().any():
        right.plot(g, h["failed"].to_numpy(), "kx--", lw=1, label="failed (cumulative)")
    right.set_xlabel("generation (0 = initial population)", fontsize=9)
    right.set_ylabel("candidates", fontsize=9)
    right.yaxis.set_major_locator(MaxNLocator(integer=True))
    right.legend(fontsize=8)
    right.grid(alpha=0.3, axis="y")
    for ax in (left, right):
        ax.set_xticks(g if len(g) <= 15 else np.linspace(g.min(), g.max(), 8).round())
        ax.tick_params(labelsize=8)
    inferred = " (generations inferred from journal order)" if bool(h.get("inferred", [False])[0]) else ""
    fig.suptitle(_title(f"search progress{inferred}", view.title), fontsize=9)
    return fig


# -- distributions --------------------------------------------------------------------------------
def distributions_figure(view: RunView) -> Figure | None:
    """Histogram of each objective over the successful candidates: initial population vs later
    generations; the front's values as ticks along the bottom."""
    ok = [r for r in view.records if r.ok]
    if not ok:
        return None
    gens = dict(zip((r.arch_id for r in view.records), view.generations(), strict=True))
    objectives = view.objectives
    fig = new_figure(4.0 * len(objectives), 3.6)
    axes = fig.subplots(1, len(objectives), squeeze=False)[0]
    front_ids = {r.arch_id for r in view.front}
    for ax, o in zip(axes, objectives, strict=True):
        v = _values(ok, o.key)
        g = np.array([gens.get(r.arch_id, 0) for r in ok])
        finite = np.isfinite(v)
        if not finite.any():
            ax.set_axis_off()
            continue
        bins = np.histogram_bin_edges(v[finite], bins=min(20, max(5, int(math.sqrt(finite.sum())) + 2)))
        first, later = v[finite & (g == 0)], v[finite & (g > 0)]
        ax.hist(first, bins=bins, histtype="stepfilled", alpha=0.45, color="tab:blue",
                label=f"initial population ({len(first)})")
        if len(later):
            ax.hist(later, bins=bins, histtype="step", lw=1.6, color="tab:orange",
                    label=f"later generations ({len(later)})")
        fv = _values([r for r in ok if r.arch_id in front_ids], o.key)
        ax.plot(fv[np.isfinite(fv)], np.zeros(int(np.isfinite(fv).sum())), "|", c="tab:red", ms=14, mew=2,
                label="Pareto front", clip_on=False, zorder=4)
        ax.set_xlabel(axis_label(o, view.records), fontsize=9)
        ax.set_ylabel("candidates", fontsize=9)
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        ax.tick_params(labelsize=8)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.suptitle(_title("objective distributions", view.title), fontsize=9)
    return fig


# -- early exit -----------------------------------------------------------------------------------
def early_exit_figure(view: RunView) -> Figure | None:
    """Early-exit runs (records with ``accuracy``, ``et_avg`` and ``exit_fractions``): test-split
    accuracy vs expected energy-latency product (modelled), the static networks (no early exit,
    same precisions and final head) marked; and the exit fractions of the front's candidates."""
    ok = [r for r in view.records if r.ok and math.isfinite(_num(r.metrics.get("et_avg")))
          and math.isfinite(_num(r.metrics.get("accuracy"))) and r.metrics.get("exit_fractions")]
    if not ok:
        return None
    gens = dict(zip((r.arch_id for r in view.records), view.generations(), strict=True))
    n_gen = max(view.cfg.search.generations, max(gens.values(), default=0) + 1)
    norm = BoundaryNorm(np.arange(-0.5, n_gen + 0.5, 1.0), ncolors=256)
    front_ids = {r.arch_id for r in view.front}
    fig = new_figure(12.5, 5.2)
    left, right = fig.subplots(1, 2, width_ratios=(1.1, 1))
    x, y = _values(ok, "et_avg"), _values(ok, "accuracy")
    g = np.array([gens.get(r.arch_id, 0) for r in ok], dtype=float)
    fr = np.array([r.arch_id in front_ids for r in ok])
    m = left.scatter(x[~fr], y[~fr], c=g[~fr], cmap=CMAP, norm=norm, **DOMINATED_MARKER)
    if fr.any():
        m = left.scatter(x[fr], y[fr], c=g[fr], cmap=CMAP, norm=norm, **FRONT_MARKER)
    static: dict[tuple, tuple[float, float]] = {}
    for r in ok:
        key = (r.metrics.get("precision"), str(r.metrics.get("heads", "")).split(",")[-1])
        sx, sy = _num(r.metrics.get("et_base")), _num(r.metrics.get("accuracy_static"))
        if math.isfinite(sx) and math.isfinite(sy):
            static.setdefault(key, (sx, sy))
    sx, sy = zip(*static.values(), strict=True) if static else ((), ())
    everything = np.r_[x, sx]
    positive = everything[everything > 0]
    log_x = positive.size == everything.size and positive.max() > 100 * positive.min()
    if log_x:  # ET spans decades (early exits at the first blocks): a linear axis piles them at 0
        left.set_xscale("log")
    if static:
        left.scatter(sx, sy, marker="s", s=70, facecolors="none", edgecolors="tab:red", linewidths=1.6, zorder=5)
        lo, hi = np.nanmin(everything), np.nanmax(everything)
        mid = math.sqrt(lo * hi) if log_x else 0.5 * (lo + hi)
        for (prec, head), (px, py) in static.items():
            right_side = px <= mid
            left.annotate(f"static {prec} {head}", (px, py), fontsize=7, color="tab:red",
                          xytext=(6 if right_side else -6, 5), textcoords="offset points",
                          ha="left" if right_side else "right")
    bar = fig.colorbar(m, ax=left, fraction=0.04, pad=0.01)
    bar.set_label("generation", fontsize=8)
    bar.set_ticks(range(n_gen) if n_gen <= 12 else np.linspace(0, n_gen - 1, 6).round())
    bar.ax.tick_params(labelsize=7)
    left.set_xlabel("expected energy-latency product ET_avg (µJ·ms, modelled; test split"
                    f"{'; log scale' if log_x else ''})", fontsize=9)
    left.set_ylabel("accuracy (fraction, test split)", fontsize=9)
    left.grid(alpha=0.3)
    left.legend(handles=[
        Line2D([], [], ls="", marker="D", mfc="0.75", mec="black", ms=7, label="on the Pareto front (calibration)"),
        Line2D([], [], ls="", marker="o", mfc="0.6", mec="none", ms=5, label="other candidates"),
        Line2D([], [], ls="", marker="s", mfc="none", mec="tab:red", ms=8, label="static network (no early exit)"),
    ], fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.13), ncols=3, frameon=False)
    left.set_title("accuracy vs expected cost (search used the calibration split)", fontsize=9)

    shown = sorted((r for r in ok if r.arch_id in front_ids), key=lambda r: _num(r.metrics.get("et_avg")))
    shown = shown[:MAX_CANDIDATES] or sorted(ok, key=lambda r: _num(r.metrics.get("et_avg")))[:MAX_CANDIDATES]
    letters = "ABCDEFGHIJK"
    colours = {c: _exit_colour(i, len(letters)) for i, c in enumerate(letters)}
    used: dict[str, Any] = {}
    for row, r in enumerate(shown):
        fractions = [float(v) for v in r.metrics.get("exit_fractions") or []]
        exits = str(r.metrics.get("exits") or "")
        start = 0.0
        for k, frac in enumerate(fractions):
            letter = exits[k] if k < len(exits) else "?"
            if frac <= 0:
                continue
            h = right.barh(row, frac, left=start, height=0.7, color=colours.get(letter, "0.5"), edgecolor="white",
                           lw=0.5)
            used.setdefault(letter, h)
            if frac >= 0.08:
                right.text(start + frac / 2, row, letter, ha="center", va="center", fontsize=7, color="white")
            start += frac
    right.set_yticks(range(len(shown)), [f"{r.arch_id} ET {_num(r.metrics.get('et_avg')):.3g}" for r in shown],
                     fontsize=7, family="monospace")
    right.set_xlim(0, 1)
    right.set_ylim(max(len(shown), 6) - 0.4, -0.6)  # first (cheapest) candidate on top
    right.set_xlabel("share of test samples leaving at each exit (fraction)", fontsize=9)
    right.set_title("exit fractions of the front's candidates (K = final classifier)", fontsize=9)
    right.legend([used[k] for k in sorted(used)], sorted(used), fontsize=7, ncols=min(6, len(used)),
                 loc="upper center", bbox_to_anchor=(0.5, -0.12), frameon=False, title="exit", title_fontsize=7)
    fig.suptitle(_title("early exit", view.title), fontsize=9)
    return fig


def _exit_colour(i: int, n: int) -> tuple:
    from matplotlib import colormaps

    return colormaps["plasma"](0.05 + 0.85 * i / max(n - 1, 1))


# -- all figures ----------------------------------------------------------------------------------
FIGURES = {
    "pareto": pareto_figure,
    "deployment_gap": gap_figure,
    "hypervolume": history_figure,
    "distributions": distributions_figure,
    "early_exit": early_exit_figure,
}


def figures(view: RunView) -> dict[str, Figure]:
    """Every figure that the run has data for, by name."""
    out = {}
    for name, make in FIGURES.items():
        fig = make(view)
        if fig is not None:
            out[name] = fig
    return out


def plot_run(path: str | Path, out: str | Path | None = None, fmt: str = "png") -> list[Path]:
    """Write every figure of the run folder ``path`` into ``out`` (default ``<run>/plots``) as
    ``<name>.<fmt>``; returns the paths."""
    if fmt not in FORMATS:
        raise DalpError(f"figure format {fmt!r}: choose from {', '.join(FORMATS)}")
    view = RunView.load(path)
    out_dir = Path(out) if out else view.path / "plots"
    return [save(fig, out_dir / name, fmt) for name, fig in figures(view).items()]


def write_front_plot(folder: Any, cfg: Any, records: Sequence[EvalRecord], front: Sequence[EvalRecord],
                     scoring: Scoring) -> Path:
    """The run folder's ``pareto.png`` at the end of a search (title: run name, seed, budget),
    drawn from what the driver holds (nothing is read back from the folder)."""
    import pandas as pd

    from dalp_moo.results.checks import RunState

    done = cfg.search.generations
    view = RunView(folder, cfg, scoring, list(records), list(front), {}, {}, pd.DataFrame(),
                   RunState(done, done, len(records), True))
    return save(pareto_figure(view), folder.plot_path, "png")
