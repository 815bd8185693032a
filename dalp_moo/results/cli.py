"""Commands that look at results: ``show``, ``plot``, ``compare``, ``report``, ``export``.

Registered on the main command group by :mod:`dalp_moo.cli`. Input errors are one line, exit 2
(:class:`~dalp_moo.errors.DalpError` through the group's handler).
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

import click

from dalp_moo.errors import DalpError

FORMAT_CHOICE = click.Choice(["png", "svg", "pdf"])


def _json_default(value: Any) -> Any:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return str(value)
    return v if math.isfinite(v) else None


def _run_dir() -> Any:
    return click.argument("run_dir", type=click.Path(file_okay=False))


@click.command()
@_run_dir()
@click.option("--json", "as_json", is_flag=True, help="Print JSON (state, summary, front, history, warnings).")
def show(run_dir: str, as_json: bool) -> None:
    """Summary and Pareto front of a run folder (rounded; says when the run is unfinished)."""
    from dalp_moo.results.console import show_data, show_text
    from dalp_moo.results.view import RunView

    view = RunView.load(run_dir)
    if as_json:
        click.echo(json.dumps(show_data(view), indent=2, default=_json_default))
    else:
        click.echo(show_text(view))


@click.command()
@_run_dir()
@click.option("--out", type=click.Path(file_okay=False), help="Folder of the figures [default: RUN_DIR/plots].")
@click.option("--format", "fmt", type=FORMAT_CHOICE, default="png", show_default=True, help="Figure format.")
def plot(run_dir: str, out: str | None, fmt: str) -> None:
    """Figures of a run: Pareto projections, deployment gap, hypervolume per generation,
    objective distributions, early exit (when recorded)."""
    from dalp_moo.results.plots import plot_run

    for path in plot_run(run_dir, out, fmt):
        click.echo(str(path))


@click.command()
@click.argument("run_dirs", nargs=-1, required=True, type=click.Path(file_okay=False))
@click.option("--out", type=click.Path(file_okay=False),
              help="Folder of compare.csv/json and the figure [default: runs/compare-<time>].")
@click.option("--format", "fmt", type=FORMAT_CHOICE, default="png", show_default=True, help="Figure format.")
def compare(run_dirs: tuple[str, ...], out: str | None, fmt: str) -> None:
    """Compare runs: fronts on common axes, hypervolumes against one shared reference point,
    mean and spread over the seeds of one setting."""
    from dalp_moo.results.compare import compare as run_compare
    from dalp_moo.results.compare import write_comparison

    result = run_compare(list(run_dirs))
    target = out or str(Path("runs") / f"compare-{time.strftime('%Y%m%d-%H%M%S')}")
    paths = write_comparison(result, target, fmt)
    ref = ", ".join(f"{k} {v:.4g}" for k, v in result.reference_point.items())
    click.echo(f"shared hypervolume reference: {ref}" + (" (emulated figures)" if any(v.emulated for v in result.views)
                                                           else ""))
    runs = result.runs.copy()
    for c in ("hypervolume_own", "hypervolume_shared"):
        runs[c] = runs[c].map(lambda v: f"{v:.4f}")
    click.echo(runs.drop(columns=["emulated"]).to_string(index=False))
    click.echo("")
    settings = result.settings.copy()
    for c in ("hv_mean", "hv_std", "hv_min", "hv_max"):
        settings[c] = settings[c].map(lambda v: f"{v:.4f}")
    click.echo(settings.to_string(index=False))
    click.echo(f"written: {', '.join(str(p) for p in paths)}")


@click.command()
@_run_dir()
@click.option("--out", type=click.Path(), help="HTML file (or folder) [default: RUN_DIR/report.html].")
def report(run_dir: str, out: str | None) -> None:
    """One self-contained HTML report of a run (figures embedded; viewable offline)."""
    from dalp_moo.results.report import write_report

    click.echo(str(write_report(run_dir, out)))


@click.command()
@_run_dir()
@click.option("--candidate", "arch_id", help="Architecture ID to export.")
@click.option("--pick", help="Choose from the front instead: knee, best, best:BUDGET (latency ms) or "
                             "best:KEY<=VALUE.")
@click.option("--out", type=click.Path(file_okay=False), help="Export folder [default: RUN_DIR/export/<ID>].")
def export(run_dir: str, arch_id: str | None, pick: str | None, out: str | None) -> None:
    """Export one candidate: OpenVINO IR (FP16 weights), torch state dict, config and a model
    card (JSON: genome, objectives, numerics profile, data normalisation); the IR is read
    back by OpenVINO and checked against torch."""
    from dalp_moo.results.export import export_candidate, pick_candidate
    from dalp_moo.results.view import RunView, format_value

    if (arch_id is None) == (pick is None):
        raise DalpError("export: give exactly one of --candidate ID or --pick knee|best[:BUDGET]")
    view = RunView.load(run_dir)
    if pick is not None:
        record, why = pick_candidate(view.front, view.scoring, pick)
        arch_id = record.arch_id
        click.echo(f"picked {arch_id} ({why})")
    assert arch_id is not None
    target = Path(out) if out else view.path / "export" / arch_id
    card = export_candidate(run_dir, arch_id, target)
    shown = ", ".join(f"{o['key']} {format_value(o['value'], o['unit'])}" for o in card["objectives"])
    click.echo(f"exported {arch_id} to {target}: {shown}")
    click.echo(f"files: {', '.join(card['files'].values())}, model_card.json; IR check: relative error "
               f"{card['check']['max_relative_error']:.2g} ({'ok' if card['check']['ok'] else 'ABOVE TOLERANCE'})")


COMMANDS = (show, plot, compare, report, export)
