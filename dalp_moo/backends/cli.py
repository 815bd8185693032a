"""``python -m dalp_moo calibrate``: latency calibrations (a thin layer over
:mod:`dalp_moo.backends.calibrate`)."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import click


@click.group()
def calibrate() -> None:
    """Calibrate latency models on this machine."""


@calibrate.command()
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="Calibration file or folder (default: the user calibration folder, "
                   "$DALP_MOO_CALIBRATION_DIR or ~/.local/share/dalp_moo/calibration).")
@click.option("--work-dir", type=click.Path(path_type=Path), default=None,
              help="Where measurements are kept between runs (default ~/.cache/dalp_moo/calibrate); "
                   "an interrupted calibration resumes from there.")
@click.option("--n-fit-zoo", type=int, default=10, show_default=True, help="Random zoo U-Nets to fit on.")
@click.option("--n-fit-space", type=int, default=22, show_default=True, help="Search-space candidates to fit on.")
@click.option("--n-val", type=int, default=12, show_default=True, help="Held-out search-space candidates.")
@click.option("--sizes", default="64,128", show_default=True, help="Tile sizes (pixels), drawn per network.")
@click.option("--runs", type=int, default=20, show_default=True, help="Timed inferences per network and pass.")
@click.option("--warmup", type=int, default=3, show_default=True, help="Untimed inferences before timing.")
@click.option("--passes", type=int, default=20, show_default=True,
              help="Measurement passes per network (the fastest kept; robust on a host whose speed changes).")
@click.option("--clock", type=click.Choice(["cpu", "wall"]), default="cpu", show_default=True,
              help="cpu: process CPU time per inference (robust on a shared host; needs --threads 1).")
@click.option("--threads", type=int, default=1, show_default=True, help="OpenVINO inference threads.")
@click.option("--precision", type=click.Choice(["f32", "bf16", "f16", "auto"]), default="f32", show_default=True,
              help="OpenVINO inference precision (the openvino backend's option).")
@click.option("--device", default="CPU", show_default=True, help="OpenVINO device.")
@click.option("--retest", type=int, default=8, show_default=True,
              help="Held-out networks measured again at the end: the host's repeatability (0 = none).")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@click.pass_context
def host(ctx: click.Context, out: Path | None, work_dir: Path | None, n_fit_zoo: int, n_fit_space: int, n_val: int,
         sizes: str, runs: int, warmup: int, passes: int, clock: str, threads: int, precision: str, device: str,
         retest: int, as_json: bool) -> None:
    """Profile networks on this CPU with the OpenVINO CPU plugin, fit the host latency model and
    write the calibration file of this CPU model; prints its held-out fidelity."""
    from dalp_moo.backends.calibrate import HostCalibrationConfig, calibrate_host
    from dalp_moo.errors import ConfigError

    try:
        size_list = tuple(int(s) for s in sizes.split(",") if s.strip())
    except ValueError:
        raise ConfigError(f"--sizes {sizes!r}: expected comma-separated integers, e.g. 64,128") from None
    cfg = HostCalibrationConfig(n_fit_zoo=n_fit_zoo, n_fit_space=n_fit_space, n_val=n_val, sizes=size_list,
                                runs=runs, warmup=warmup, passes=passes, clock=clock, threads=threads,
                                precision=precision, device=device, retest=retest)
    show = not as_json and not (ctx.find_root().params.get("quiet"))
    total = n_fit_zoo + n_fit_space + n_val + min(max(retest, 0), n_val)
    with click.progressbar(length=total, label="profiling networks", file=None if show else io.StringIO(),
                           show_pos=True) as bar:
        def progress(done: int, n: int, name: str, measured: bool) -> None:
            bar.update(1)

        result = calibrate_host(cfg, work_dir=work_dir, out=out, progress=progress)
    summary: dict[str, Any] = result.summary()
    if as_json:
        click.echo(json.dumps(summary, indent=2))
        return
    click.echo(f"calibration: {result.path}")
    click.echo(f"CPU: {result.host}; measured {result.measured_now} networks now, {result.reused} from "
               f"{result.state_file} ({result.measure_s:.0f} s measuring, {result.fit_s:.1f} s fitting)")
    click.echo(f"held-out fidelity on {result.n_val} search-space candidates never fitted on: "
               f"{100 * result.within_10pct:.1f} % within +-10 %, median |error| "
               f"{100 * result.median_abs_error:.1f} %, max {100 * result.max_abs_error:.1f} %, "
               f"Kendall tau {result.kendall_tau:.3f}")
    if result.retest_median_abs_diff is not None:
        click.echo(f"repeatability: {result.n_retest} of them measured again at the end differ by a median "
                   f"{100 * result.retest_median_abs_diff:.1f} % (max {100 * result.retest_max_abs_diff:.1f} %), "
                   "the noise floor of any latency figure on this host")
