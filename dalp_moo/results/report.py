"""A self-contained HTML report of a run folder (``python -m dalp_moo report RUN_DIR``).

One file, viewable offline without a server: figures embedded as base64 PNG, inline CSS, no
scripts, no external resources. Contents: the emulated-or-measured label, warnings (unfinished
run, degenerate candidates, failures), the summary, every figure of
:mod:`dalp_moo.results.plots`, the Pareto front, the per-generation history, all evaluations,
the backend and environment description (meta.json) and the resolved configuration.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
import numbers
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from dalp_moo.results.plots import figures
from dalp_moo.results.run_folder import atomic_write_text
from dalp_moo.results.view import RunView, format_value, with_unit

REPORT_FILE = "report.html"

CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:2em auto;max-width:1200px;color:#222;
     padding:0 1em;line-height:1.4}
h1{font-size:1.35em;margin-bottom:.2em} h2{font-size:1.1em;margin-top:1.8em;border-bottom:1px solid #ccc}
table{border-collapse:collapse;font-size:.82em;margin:.5em 0} td,th{border:1px solid #ddd;padding:2px 6px;
     text-align:right} th{background:#f3f3f3} td.l,th.l{text-align:left}
.badge{display:inline-block;padding:2px 8px;border-radius:4px;font-weight:600;font-size:.9em}
.emulated{background:#fff1d6;color:#8a5a00} .measured{background:#dcf5df;color:#16602a}
.warn{background:#fff4f4;border-left:4px solid #c33;padding:.4em .8em;margin:.4em 0}
pre{background:#f7f7f7;padding:.6em;overflow-x:auto;font-size:.8em}
img{max-width:100%;border:1px solid #eee;margin:.5em 0} .muted{color:#666;font-size:.85em}
details summary{cursor:pointer;color:#225}
"""


def _png(fig: Any) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _cell(value: Any, unit: str = "") -> str:
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else "no"
    if value is None or (isinstance(value, numbers.Real) and not math.isfinite(float(value))):
        return "-"
    if isinstance(value, numbers.Integral):
        return format_value(value, unit) if unit == "parameters" else str(int(value))
    if isinstance(value, numbers.Real):
        return format_value(value, unit) if unit else f"{float(value):.4g}"
    return str(value)


def table_html(df: pd.DataFrame, units: dict[str, str] | None = None, left: tuple[str, ...] = ()) -> str:
    """A DataFrame as an escaped HTML table, numbers rounded by column unit."""
    units = units or {}
    head = "".join(f"<th class='{'l' if c in left else ''}'>{_esc(c)}</th>" for c in df.columns)
    rows = []
    for _, row in df.iterrows():
        cells = []
        for c in df.columns:
            v = row[c]
            if isinstance(v, float) and math.isnan(v):
                v = None
            cells.append(f"<td class='{'l' if c in left else ''}'>{_esc(_cell(v, units.get(c, '')))}</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><tr>{head}</tr>{''.join(rows)}</table>"


def _kv(pairs: list[tuple[str, Any]]) -> str:
    return "<table>" + "".join(f"<tr><th class='l'>{_esc(k)}</th><td class='l'>{_esc(v)}</td></tr>"
                               for k, v in pairs) + "</table>"


def report_html(view: RunView) -> str:
    """The report of ``view`` as one HTML string."""
    units = {o.key: o.unit for o in view.objectives}
    units.update({f"best_{o.key}": o.unit for o in view.objectives})
    for key in ("fp32_miou", "ptq_miou", "dalp_miou", "vessel_iou", "test_miou", "hypervolume"):
        units.setdefault(key, "fraction")
    s = view.summary
    label = "emulated" if view.emulated else "measured"
    parts = [f"<h1>{_esc(view.name)}</h1>",
             f"<p>{_esc(view.title)}</p>",
             f"<p><span class='badge {label}'>{label.upper()}</span> "
             f"<span class='muted'>{_esc(_label_text(view))}</span></p>",
             f"<p class='muted'>report written {time.strftime('%Y-%m-%d %H:%M:%S')} from {_esc(view.path)}</p>"]
    warnings = list(view.warnings)
    if not view.state.finished:
        warnings.insert(0, f"{view.state.label}: figures describe the evaluations so far "
                           f"(continue with python -m dalp_moo run --resume {view.path})")
    if not view.history.empty and bool(view.history["inferred"].iloc[0]):
        warnings.append("the journal has no generation stamps (older format): generations were inferred from the "
                        "journal order")
    parts.append("<h2>Warnings</h2>" + ("".join(f"<div class='warn'>{_esc(w)}</div>" for w in warnings)
                                        or "<p>none</p>"))
    best = s.get("best_metrics") or {}
    ref = ", ".join(f"{k} {v:.4g}" for k, v in s["hypervolume_reference"].items())
    parts.append("<h2>Summary</h2>" + _kv([
        ("state", view.state.label),
        ("evaluations", f"{s['evaluations']} ({s['unique_architectures']} architectures)"),
        ("failed / infeasible / feasible", f"{s['failed']} / {s['infeasible']} / {s['feasible']}"),
        ("Pareto front", f"{s['front_size']} candidates"),
        ("hypervolume", f"{s['hypervolume']:.4f} (reference point: {ref})"),
        ("best candidate", s.get("best_arch_id") or "-"),
        *((f"best: {o.name}", with_unit(best.get(o.key), o.unit)) for o in view.objectives),
        ("backend", view.backend_label()),
    ]))
    figs = figures(view)
    parts.append("<h2>Figures</h2>")
    for name, fig in figs.items():
        parts.append(f"<h3>{_esc(name.replace('_', ' '))}</h3><img alt='{_esc(name)}' "
                     f"src='data:image/png;base64,{_png(fig)}'>")
    front = view.front_table()
    parts.append(f"<h2>Pareto front ({len(front)})</h2>"
                 + table_html(front, units, left=("arch_id", "description")))
    if not view.history.empty:
        hist = view.history.drop(columns=[c for c in ("inferred",) if c in view.history])
        parts.append("<h2>History per generation</h2><p class='muted'>cumulative; hypervolume against the run's "
                     "fixed reference point</p>" + table_html(hist, units))
    table = view.table().drop(columns=["genome", "run"], errors="ignore")
    parts.append(f"<h2>All evaluations ({len(table)})</h2><details><summary>show the table</summary>"
                 + table_html(table, units, left=("arch_id", "status", "description", "reason", "backend",
                                                  "latency_method", "degenerate")) + "</details>")
    meta = view.meta
    parts.append("<h2>Backend and environment</h2>" + _kv([
        ("backend", json.dumps(meta.get("backend"), default=str)),
        ("software", ", ".join(f"{k} {v}" for k, v in (meta.get("versions") or {}).items())),
        ("application", json.dumps(meta.get("application"), default=str)),
        ("started", meta.get("started", "-")),
        ("evaluation-config hash", meta.get("config_hash", "-")),
        ("resumes", json.dumps(meta.get("resumes", []), default=str)),
    ]))
    for key in ("data", "input_normalization"):
        if key in meta:
            parts.append(f"<h3>{_esc(key.replace('_', ' '))}</h3><pre>{_esc(json.dumps(meta[key], indent=2))}</pre>")
    parts.append(f"<h2>Resolved configuration (config.toml)</h2><pre>{_esc(view.folder.config_path.read_text())}</pre>")
    return ("<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
            f"<title>{_esc(view.name)}: dalp_moo report</title><style>{CSS}</style></head><body>"
            + "\n".join(parts) + "</body></html>")


def _label_text(view: RunView) -> str:
    if view.emulated:
        return ("figures from an emulator or model of the target (backend " + view.backend_label()
                + "), not from real hardware")
    return "figures measured on the backend's real target (" + view.backend_label() + ")"


def write_report(path: str | Path, out: str | Path | None = None) -> Path:
    """Write the report of the run folder ``path`` to ``out`` (default ``<run>/report.html``)."""
    view = RunView.load(path)
    target = Path(out) if out else view.path / REPORT_FILE
    if target.is_dir():
        target = target / REPORT_FILE
    target.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(target, report_html(view))
    return target
