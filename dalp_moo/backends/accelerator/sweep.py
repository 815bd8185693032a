"""Tensor-alignment sweep: cost of one layer on one compute core against its channel count.

The MAC array unrolls layer dimensions spatially (fixed mapping: K over D1 = 8, C over D2 = 8,
OX/OY over 4 x 4); a dimension that is not a multiple of its unrolling leaves part of the array
idle in the last pass, so latency rises in steps (a sawtooth in utilisation) while energy
grows almost linearly. All figures are modelled by ZigZag (weights in place; no DRAM or NoC).
"""

from __future__ import annotations

import csv
import dataclasses
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from dalp_moo.backends.accelerator.core import CoreModel
from dalp_moo.backends.accelerator.workload import LayerSpec
from dalp_moo.backends.accelerator.zigzag_core import MODEL_VERSION, zigzag_version
from dalp_moo.errors import BackendError

DIMS = ("k", "c")
COLUMNS = ("channels", "latency_cycles", "latency_ms", "energy_pj", "utilisation", "spatial_utilisation",
           "ideal_cycles", "macs", "tiles", "spatial_mapping")


def swept_layer(base: LayerSpec, dim: str, channels: int) -> LayerSpec:
    """``base`` with its output (``k``) or input (``c``) channels set; a depthwise layer changes both."""
    if dim not in DIMS:
        raise BackendError(f"sweep dimension {dim!r} is not one of {', '.join(DIMS)}")
    if base.op == "dwconv":
        return dataclasses.replace(base, k=channels, c=channels, groups=channels)
    if base.op in ("pool", "add"):
        raise BackendError(f"a {base.op} layer does not run on a compute core")
    return dataclasses.replace(base, k=channels) if dim == "k" else dataclasses.replace(base, c=channels)


def alignment_sweep(core: CoreModel, base: LayerSpec, dim: str, values: Sequence[int],
                    progress: Callable[[int, dict[str, Any]], None] | None = None) -> list[dict[str, Any]]:
    """One row per channel count: latency (cycles, ms), energy (pJ), utilisation (fractions)."""
    rows = []
    to_ms = 1e-3 / core.cfg.clock_mhz
    for n, v in enumerate(values):
        spec = swept_layer(base, dim, int(v))
        lc = core.layer_cost(spec)
        row = {
            "channels": int(v), "latency_cycles": lc.latency_cycles, "latency_ms": lc.latency_cycles * to_ms,
            "energy_pj": lc.energy_pj, "utilisation": lc.utilisation, "spatial_utilisation": lc.spatial_utilisation,
            "ideal_cycles": lc.ideal_cycles, "macs": spec.macs, "tiles": len(lc.tiles),
            "spatial_mapping": lc.tiles[0].result.spatial_mapping,
        }
        rows.append(row)
        if progress is not None:
            progress(n, row)
    return rows


def unroll_of(core: CoreModel, base: LayerSpec, dim: str) -> int:
    """Spatial unrolling of the swept dimension under the fixed mapping (0 in 'search' mode)."""
    if core.cfg.spatial_mapping != "fixed":
        return 0
    d1, d2 = core.cfg.dims[:2]
    return d1 if base.op == "dwconv" or dim == "k" else d2


def describe(core: CoreModel, base: LayerSpec, dim: str) -> dict[str, Any]:
    """Metadata written with a sweep (the layer, the core, versions; figures are modelled)."""
    return {"method": "modelled", "emulated": True, "model": "ZigZag compute core (Edge-TPU-like)",
            "zigzag_version": zigzag_version(), "model_version": MODEL_VERSION, "dimension": dim,
            "layer": dataclasses.asdict(base), "unroll": unroll_of(core, base, dim),
            "config": {k: v for k, v in core.cfg.to_dict().items() if k != "cache_dir"}}


def plot_sweep(rows: Sequence[dict[str, Any]], path: str | Path, meta: dict[str, Any]) -> Path:
    """Three panels (latency, energy, utilisation vs channels) labelled as modelled; writes PNG."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    x = [r["channels"] for r in rows]
    fig = Figure(figsize=(7.5, 8.0))
    FigureCanvasAgg(fig)
    axes = fig.subplots(3, 1, sharex=True)
    axes[0].plot(x, [r["latency_cycles"] for r in rows], marker=".", color="tab:blue")
    axes[0].set_ylabel("latency (cycles)")
    axes[1].plot(x, [r["energy_pj"] * 1e-3 for r in rows], marker=".", color="tab:orange")
    axes[1].set_ylabel("energy (nJ)")
    axes[2].plot(x, [100 * r["utilisation"] for r in rows], marker=".", color="tab:green", label="MAC utilisation")
    axes[2].plot(x, [100 * r["spatial_utilisation"] for r in rows], ls="--", color="tab:gray",
                 label="spatial utilisation")
    axes[2].set_ylabel("utilisation (%)")
    axes[2].set_ylim(0, 105)
    axes[2].legend(loc="lower right", fontsize=8)
    unroll = int(meta.get("unroll") or 0)
    if unroll:
        for ax in axes:
            for m in range(((min(x) + unroll - 1) // unroll) * unroll, max(x) + 1, unroll):
                ax.axvline(m, color="0.85", lw=0.8, zorder=0)
    layer = meta["layer"]
    dim_name = "output channels K" if meta["dimension"] == "k" else "input channels C"
    if layer["op"] == "dwconv":
        dim_name = "channels (depthwise)"
    axes[2].set_xlabel(dim_name)
    fixed = {"k": "K", "c": "C"}["c" if meta["dimension"] == "k" else "k"]
    shape = (f"{layer['op']} {layer['fx']}x{layer['fy']}, {layer['ox']}x{layer['oy']} output, "
             f"{fixed}={layer['c'] if meta['dimension'] == 'k' else layer['k']}, "
             f"{layer['w_bits']}/{layer['a_bits']} bit")
    cfg = meta["config"]
    fig.suptitle(f"Modelled (ZigZag {meta['zigzag_version']}): {shape}\n"
                 f"one {cfg['array_dims']} core, {cfg['spatial_mapping']} mapping"
                 + (f", unrolling {unroll} (grid lines)" if unroll else ""), fontsize=10)
    fig.text(0.99, 0.005, "modelled, not measured", ha="right", va="bottom", fontsize=7, color="0.4")
    fig.tight_layout(rect=(0, 0.02, 1, 0.97))
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    return out


def write_sweep(rows: Sequence[dict[str, Any]], folder: str | Path, meta: dict[str, Any]) -> dict[str, Path]:
    """Write ``sweep.json`` (metadata + rows), ``sweep.csv`` and ``sweep.png`` into ``folder``."""
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / "sweep.json", "csv": out / "sweep.csv", "png": out / "sweep.png"}
    with open(paths["json"], "w", encoding="utf-8") as f:
        json.dump({**meta, "rows": list(rows)}, f, indent=2)
    with open(paths["csv"], "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(COLUMNS))
        writer.writeheader()
        for r in rows:
            writer.writerow({k: r[k] for k in COLUMNS})
    plot_sweep(rows, paths["png"], meta)
    return paths
