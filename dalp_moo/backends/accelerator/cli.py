"""``dalp-moo accel``: the modelled multi-core accelerator (alignment sweep of one layer)."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import click

DEFAULT_CACHE = os.path.join("~", ".cache", "dalp_moo", "accelerator")


@click.group()
def accel() -> None:
    """Modelled Edge-TPU-like multi-core accelerator (ZigZag compute cores)."""


@accel.command()
@click.option("--op", type=click.Choice(["conv", "dwconv", "fc"]), default="conv", show_default=True,
              help="Layer type.")
@click.option("--dim", type=click.Choice(["k", "c"]), default="k", show_default=True,
              help="Swept dimension: output (k) or input (c) channels (dwconv: both).")
@click.option("--start", type=click.IntRange(1, 4096), default=16, show_default=True, help="First channel count.")
@click.option("--stop", type=click.IntRange(1, 4096), default=96, show_default=True, help="Last channel count.")
@click.option("--step", type=click.IntRange(1, 512), default=1, show_default=True,
              help="Channel-count increment of the sweep.")
@click.option("--channels", type=click.IntRange(1, 4096), default=32, show_default=True,
              help="The other (fixed) channel count.")
@click.option("--size", type=click.IntRange(1, 1024), default=16, show_default=True,
              help="Output width = height (pixels; fc: ignored).")
@click.option("--kernel", type=click.IntRange(1, 11), default=1, show_default=True, help="Kernel size.")
@click.option("--stride", type=click.IntRange(1, 4), default=1, show_default=True,
              help="Convolution stride (pixels).")
@click.option("--w-bits", type=click.IntRange(2, 32), default=8, show_default=True, help="Weight precision (bits).")
@click.option("--a-bits", type=click.IntRange(2, 32), default=8, show_default=True,
              help="Activation precision (bits).")
@click.option("--mapping", type=click.Choice(["fixed", "search"]), default="fixed", show_default=True,
              help="Spatial mapping: fixed (K/C/OX/OY) or searched by ZigZag.")
@click.option("--opt", type=click.Choice(["EDP", "energy", "latency"]), default="EDP", show_default=True,
              help="ZigZag's mapping criterion.")
@click.option("--lpf-limit", type=click.IntRange(1, 12), default=4, show_default=True,
              help="ZigZag LOMA loop-prime-factor limit.")
@click.option("--cache-dir", default=DEFAULT_CACHE, show_default=True,
              help="Per-layer ZigZag result cache ('' = none).")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default="accel-sweep", show_default=True,
              help="Folder for sweep.json, sweep.csv and sweep.png.")
@click.option("--progress/--no-progress", default=True, show_default=True, help="Progress bar on stderr.")
def sweep(op: str, dim: str, start: int, stop: int, step: int, channels: int, size: int, kernel: int, stride: int,
          w_bits: int, a_bits: int, mapping: str, opt: str, lpf_limit: int, cache_dir: str, out_dir: str,
          progress: bool) -> None:
    """Latency, energy and utilisation of one layer on one compute core vs its channel count
    (the tensor-alignment sawtooth). Modelled with ZigZag, not measured."""
    from dalp_moo.backends.accelerator.config import AcceleratorConfig
    from dalp_moo.backends.accelerator.core import CoreModel
    from dalp_moo.backends.accelerator.sweep import alignment_sweep, describe, write_sweep
    from dalp_moo.backends.accelerator.workload import LayerSpec
    from dalp_moo.errors import ConfigError

    if stop < start:
        raise ConfigError(f"--stop {stop} is below --start {start}")
    values = list(range(start, stop + 1, step))
    if len(values) > 1024:
        raise ConfigError(f"{len(values)} sweep points; at most 1024 (raise --step)")
    if op == "fc":
        base = LayerSpec("sweep", "fc", channels, channels, w_bits=w_bits, a_bits=a_bits)
    elif op == "dwconv":
        base = LayerSpec("sweep", "dwconv", channels, channels, size, size, kernel, kernel, stride, channels,
                         w_bits=w_bits, a_bits=a_bits)
    else:
        base = LayerSpec("sweep", "conv", channels, channels, size, size, kernel, kernel, stride,
                         w_bits=w_bits, a_bits=a_bits)
    cfg = AcceleratorConfig(spatial_mapping=mapping, zigzag_opt=opt, lpf_limit=lpf_limit,
                            cache_dir=str(Path(cache_dir).expanduser()) if cache_dir else "")
    core = CoreModel(cfg)
    bar: Any = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(values), desc="accel sweep", unit="layer", file=sys.stderr, dynamic_ncols=True)

    def report(n: int, row: dict[str, Any]) -> None:
        if bar is not None:
            bar.set_postfix_str(f"{row['channels']} ch {row['latency_cycles']:.0f} cyc "
                                f"util {100 * row['utilisation']:.0f}%")
            bar.update(1)

    try:
        rows = alignment_sweep(core, base, dim, values, report)
    finally:
        if bar is not None:
            bar.close()
    meta = describe(core, base, dim)
    meta["zigzag_runs"] = core.zigzag_calls
    paths = write_sweep(rows, out_dir, meta)
    by = {r["channels"]: r for r in rows}
    cached = len(rows) - core.zigzag_calls
    click.echo(f"{len(rows)} layers modelled (modelled, not measured): {core.zigzag_calls} ZigZag runs"
               + (f", {cached} from the cache" if cached > 0 else ""))
    unroll = meta["unroll"]
    if unroll:
        multiples = list(range(((start + unroll - 1) // unroll) * unroll, stop + 1, unroll))
        multiples.sort(key=lambda m: (m != 32, m))  # the paper's 32-vs-33 example first when swept
        for m in multiples:
            if m in by and m + 1 in by:
                a, b = by[m], by[m + 1]
                click.echo(f"{m} vs {m + 1} channels: {a['latency_cycles']:.0f} vs {b['latency_cycles']:.0f} cycles "
                           f"({100 * (b['latency_cycles'] / a['latency_cycles'] - 1):+.1f} %), energy "
                           f"{100 * (b['energy_pj'] / a['energy_pj'] - 1):+.1f} %, utilisation "
                           f"{100 * a['utilisation']:.0f} % vs {100 * b['utilisation']:.0f} % (modelled)")
                break
    for kind, path in paths.items():
        click.echo(f"{kind}: {path}")
