"""Command-line interface: a thin layer over the library API.

``python -m dalp_moo run`` searches; ``backends`` and ``problems`` list the registered deployment
backends and applications; ``show`` summarises a run folder. Errors caused by input print one line
and exit 2 (``--debug`` shows the traceback). Choice lists are read from their registries (presets
and problems: :mod:`dalp_moo.applications`; regimes and profiles: :mod:`dalp_moo.precision`;
algorithms: :data:`dalp_moo.config.ALGORITHMS`; backends: :mod:`dalp_moo.backends`).
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import click

from dalp_moo.backends.accelerator.cli import accel
from dalp_moo.backends.cli import calibrate
from dalp_moo.data.cli import data
from dalp_moo.errors import DalpError
from dalp_moo.evaluation.record import EvalRecord
from dalp_moo.log import configure
from dalp_moo.results.cli import COMMANDS as results_commands


def _debug_requested(ctx: click.Context) -> bool:
    return bool((ctx.obj or {}).get("debug")) or "--debug" in sys.argv


class DalpGroup(click.Group):
    """Click group that turns library and usage errors into one readable line."""

    def main(self, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        kwargs["standalone_mode"] = False
        try:
            rv = super().main(*args, **kwargs)
            if isinstance(rv, int) and rv != 0:  # an Exit(code) under standalone_mode=False
                sys.exit(rv)
            return rv
        except click.exceptions.Exit as exc:
            sys.exit(exc.exit_code)
        except click.exceptions.Abort:
            click.echo("aborted", err=True)
            sys.exit(1)
        except click.ClickException as exc:
            hint = f" (see '{exc.ctx.command_path} --help')" if getattr(exc, "ctx", None) else ""
            click.echo(f"error: {exc.format_message()}{hint}", err=True)
            sys.exit(exc.exit_code)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.exceptions.Abort, click.ClickException):
            raise
        except DalpError as exc:
            if _debug_requested(ctx):
                raise
            click.echo(f"error: {exc}", err=True)
            ctx.exit(exc.exit_code)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            ctx.exit(130)
        except Exception as exc:
            if _debug_requested(ctx):
                raise
            first = str(exc).splitlines()[0] if str(exc) else ""
            click.echo(f"error: unexpected {type(exc).__name__}: {first} (rerun with --debug for the traceback)",
                       err=True)
            ctx.exit(1)


@click.group(cls=DalpGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--debug", is_flag=True, help="Show tracebacks and debug logging.")
@click.option("-q", "--quiet", is_flag=True, help="Only warnings and errors.")
@click.version_option(package_name="dalp_moo")
@click.pass_context
def main(ctx: click.Context, debug: bool, quiet: bool) -> None:
    """dalp_moo: hardware-aware NAS with deployment-aligned low-precision training."""
    ctx.ensure_object(dict)
    ctx.obj["debug"] = debug
    configure(logging.DEBUG if debug else logging.WARNING if quiet else logging.INFO)


class RegistryChoice(click.Choice):
    """A :class:`click.Choice` whose choices are read from a registry when first needed (so that
    importing the CLI does not import every application)."""

    def __init__(self, source: Callable[[], Iterable[str]]) -> None:  # noqa: D107 - no super().__init__
        self._source = source
        self._choices: tuple[str, ...] | None = None
        self.case_sensitive = True

    @property
    def choices(self) -> tuple[str, ...]:  # type: ignore[override]
        if self._choices is None:
            self._choices = tuple(self._source())
        return self._choices


def _presets() -> Iterable[str]:
    from dalp_moo import applications

    return applications.all_presets()


def _problems() -> Iterable[str]:
    from dalp_moo import applications

    return applications.available()


def _regimes() -> Iterable[str]:
    from dalp_moo.precision import REGIMES

    return REGIMES


def _profiles() -> Iterable[str]:
    from dalp_moo.precision import PROFILES

    return PROFILES


def _algorithms() -> Iterable[str]:
    from dalp_moo.config import ALGORITHMS

    return ALGORITHMS


def _overrides(options: dict[str, Any], sets: tuple[str, ...]) -> list[dict[str, Any]]:
    from dalp_moo.config import parse_override

    mapping = {
        "algorithm": ("search", "algorithm"), "seed": ("search", "seed"),
        "population": ("search", "population"), "generations": ("search", "generations"),
        "workers": ("search", "workers"), "scheduler": ("search", "scheduler"),
        "epochs": ("train", "epochs"), "regime": ("train", "regime"), "profile": ("train", "profile"),
        "device": ("train", "device"), "data": ("data", "source"), "backend": ("backend", "name"),
        "backend_device": ("backend", "device"), "latency_budget": ("constraints", "latency_budget_ms"),
        "param_cap": ("constraints", "param_cap"),
    }
    out: list[dict[str, Any]] = []
    for name, (section, key) in mapping.items():
        if options.get(name) is not None:
            out.append({section: {key: options[name]}})
    out.extend(parse_override(s) for s in sets)
    return out


@main.command()
@click.option("--problem", type=RegistryChoice(_problems),
              help="Application to search (see `dalp_moo problems`) "
                   "[default: the config file's, else vessel-segmentation].")
@click.option("--preset", type=RegistryChoice(_presets),
              help="Preset of the application, e.g. smoke (CI-sized), default (embedded job), paper (paper's budget) "
                   "[default: the config file's, else default].")
@click.option("--config", "config_path", type=click.Path(dir_okay=False), help="TOML or YAML config file.")
@click.option("--set", "sets", multiple=True, metavar="SECTION.KEY=VALUE",
              help="Override one config value (repeatable).")
@click.option("--out", type=click.Path(file_okay=False), help="Run folder [default: runs/<preset>-<time>].")
@click.option("--algorithm", type=RegistryChoice(_algorithms), help="Search algorithm.")
@click.option("--seed", type=int, help="Seed of search, data and training.")
@click.option("--population", type=int, help="Population size.")
@click.option("--generations", type=int, help="Number of generations (with --resume: extends the run).")
@click.option("--epochs", type=int, help="FP32 training epochs per candidate.")
@click.option("--regime", type=RegistryChoice(_regimes), help="Training/evaluation regime.")
@click.option("--profile", type=RegistryChoice(_profiles),
              help="Deployment numerics profile (bf16 / int8: with --backend openvino, precision bf16 / int8).")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), help="Training device.")
@click.option("--data", help="Data source: synthetic, airbus:PATH or folder:PATH.")
@click.option("--backend", help="Deployment backend (see `dalp_moo backends`).")
@click.option("--backend-device", help="Device of the backend (e.g. OpenVINO CPU).")
@click.option("--latency-budget", type=float,
              help="Latency constraint constraints.latency_budget_ms (ms, 0 = none).")
@click.option("--param-cap", type=int, help="Parameter cap constraints.param_cap (parameters).")
@click.option("--workers", type=int, help="Local Dask workers (0 = in-process).")
@click.option("--scheduler", help="Existing Dask scheduler address tcp://HOST:PORT.")
@click.option("--resume", "resume_dir", type=click.Path(file_okay=False), help="Continue the run in this folder.")
@click.option("--force", is_flag=True, help="Start anew in --out even if it holds a run (old folder is renamed).")
@click.option("--debug", is_flag=True, help="Show tracebacks and debug logging.")
@click.option("--progress/--no-progress", default=True, show_default=True, help="Progress bars on stderr.")
@click.option("-q", "--quiet", is_flag=True, help="Only warnings and errors (the progress bar stays).")
@click.pass_context
def run(ctx: click.Context, problem: str | None, preset: str | None, config_path: str | None,
        sets: tuple[str, ...], out: str | None, resume_dir: str | None, force: bool, debug: bool, progress: bool,
        quiet: bool, **options: Any) -> None:
    """Run a search (NSGA-II by default) and write the run folder."""
    from dalp_moo.config import load_config
    from dalp_moo.search import run_search

    if debug:
        ctx.obj["debug"] = True
        configure(logging.DEBUG)
    elif quiet:
        configure(logging.WARNING)
    overrides = _overrides(options, sets)
    if resume_dir:
        others = [name for name, value in options.items() if value is not None and name != "generations"]
        if others or sets or config_path or preset or problem or out or force:
            raise DalpError("--resume uses the run folder's own config.toml; drop the other options "
                            "(only --generations may be given: it extends the run)")
        from dalp_moo.results import RunFolder

        saved = RunFolder.open(resume_dir).config()
        objectives = tuple(saved.application.objectives(saved))
        with _progress_bar(progress, objectives, saved, options.get("generations")) as bar:
            outcome = run_search(None, resume_dir, resume=True, generations=options.get("generations"), progress=bar)
    else:
        cfg = load_config(preset, config_path, overrides, problem=problem)
        objectives = tuple(cfg.application.objectives(cfg))
        out = out or str(Path("runs") / f"{cfg.preset or cfg.problem}-{time.strftime('%Y%m%d-%H%M%S')}")
        with _progress_bar(progress, objectives, cfg) as bar:
            outcome = run_search(cfg, out, force=force, progress=bar)
    s = outcome.summary
    click.echo(f"run folder: {outcome.folder.path}")
    click.echo(f"evaluations: {s['evaluations']} ({s['unique_architectures']} architectures, {s['failed']} failed)")
    click.echo(f"Pareto front: {s['front_size']} candidates; hypervolume {s['hypervolume']:.4f}")
    click.echo(_best_line(s, objectives))
    click.echo(f"time: {s['elapsed_s']:.0f} s")


def _progress_bar(enabled: bool, objectives: tuple, cfg: Any, generations: int | None = None) -> Any:
    """The run's progress bar (one over all generations; closed at the end), or a null context."""
    import contextlib

    if not enabled:
        return contextlib.nullcontext(None)
    from dalp_moo.results.console import TqdmProgress as Bar

    n_gen = generations or cfg.search.generations
    return Bar(objectives, total=cfg.search.population * n_gen, generations=n_gen)


def _best_line(summary: dict[str, Any], objectives: tuple) -> str:
    """``best on-device mIoU (emulated): 0.7549 (65c1fca739b9, latency_ms 2.282 ms, params 41064)``."""
    first = objectives[0]
    best = summary.get("best_metrics")
    if not best or best.get(first.key) is None:
        return f"best {first.name}: none (no feasible candidate)"
    tag = " (emulated)" if summary["emulated"] else ""
    rest = ", ".join(o.format(best.get(o.key)) for o in objectives[1:])
    return f"best {first.name}{tag}: {best[first.key]:.4f} ({summary['best_arch_id']}{', ' + rest if rest else ''})"


@main.command("config")
@click.option("--problem", type=RegistryChoice(_problems),
              help="Application (see `dalp_moo problems`) [default: the config file's, else vessel-segmentation].")
@click.option("--preset", type=RegistryChoice(_presets),
              help="Preset of the application [default: the config file's, else default].")
@click.option("--config", "config_path", type=click.Path(dir_okay=False), help="TOML or YAML config file.")
@click.option("--set", "sets", multiple=True, metavar="SECTION.KEY=VALUE",
              help="Override one config value (repeatable).")
@click.option("--out", type=click.Path(dir_okay=False),
              help="Write the TOML to this file instead of standard output.")
@click.option("--plain", is_flag=True, help="Leave out the documentation comments.")
def config_command(problem: str | None, preset: str | None, config_path: str | None, sets: tuple[str, ...],
                   out: str | None, plain: bool) -> None:
    """Print the resolved configuration as TOML, every key with its documentation (units,
    choices): a starting point for a --config file, or a check of what a run would use."""
    from dalp_moo.config import load_config, to_toml

    cfg = load_config(preset, config_path, _overrides({}, sets), problem=problem)
    text = to_toml(cfg, comments=not plain)
    if out:
        Path(out).write_text(text)
        click.echo(f"wrote {out}", err=True)
    else:
        click.echo(text, nl=False)


@main.command()
def problems() -> None:
    """List the registered applications (problems) and their presets."""
    from dalp_moo import applications

    for name, version in applications.available().items():
        presets = ", ".join(applications.get(name).presets()) or "-"
        click.echo(f"{name:24s} v{version:4s} presets: {presets}")


@main.command()
@click.option("--options", "show_options", is_flag=True,
              help="Also list each backend's options (backend.options.NAME), defaults and documentation.")
def backends(show_options: bool) -> None:
    """List the registered deployment backends."""
    import textwrap

    from dalp_moo import backends as registry
    from dalp_moo.backends.registry import options

    for name, version in registry.available().items():
        info = registry.get(name).info()
        kind = "emulated" if info.emulated else "real"
        click.echo(f"{name:10s} v{version:4s} {kind:8s} {info.device}")
        if show_options:
            for opt in options(name):
                head = f"    {opt.name} = {opt.default!r}"
                lines = textwrap.wrap(opt.doc, 96 - 28)
                click.echo(f"{head:28s}{lines[0] if lines else ''}")
                for line in lines[1:]:
                    click.echo(" " * 28 + line)


main.add_command(data)
for _command in results_commands:
    main.add_command(_command)
main.add_command(accel)
main.add_command(calibrate)

@main.command()
@click.argument("run_dir", type=click.Path(file_okay=False))
@click.option("--candidate", "arch_id", help="Architecture ID [default: the best on-device mIoU].")
@click.option("--profile", type=RegistryChoice(_profiles),
              help="Recompute under this numerics profile from the stored weights.")
@click.option("--tiles", type=click.IntRange(min=1), default=8, show_default=True,
              help="Validation tiles used when recomputing.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def diagnose(run_dir: str, arch_id: str | None, profile: str | None, tiles: int, as_json: bool) -> None:
    """Per-layer FP16 diagnostics of one evaluated candidate: max |activation| against 65504,
    overflows, underflows, flushed values, relative error against FP32."""
    from dalp_moo.evaluation.artifacts import ArtifactStore, check_arch_id
    from dalp_moo.precision import format_diagnostics
    from dalp_moo.results import RunFolder, summarise

    folder = RunFolder.open(run_dir)
    cfg = folder.config()
    records = {r.arch_id: r for r in folder.records()}
    if arch_id is None:
        _, summary = summarise(list(records.values()), folder.scoring(cfg))
        arch_id = summary["best_arch_id"]
        if arch_id is None:
            raise DalpError(f"run folder {run_dir}: no successful evaluation to diagnose")
    check_arch_id(arch_id)
    if arch_id not in records:
        raise DalpError(f"candidate {arch_id} is not in {run_dir}/journal.jsonl")
    store = ArtifactStore(folder.path)
    result = None if profile else store.diagnostics(arch_id)
    if result is None:
        result = _recompute_diagnostics(cfg, records[arch_id], store, profile or cfg.train.profile, tiles)
    click.echo(json.dumps(result, indent=2) if as_json else format_diagnostics(result))


def _recompute_diagnostics(cfg: Any, record: EvalRecord, store: Any, profile: str, tiles: int) -> dict:
    import torch

    from dalp_moo.evaluation import get_evaluator
    from dalp_moo.precision import diagnose as run_diagnose

    evaluator = get_evaluator(cfg)
    if not hasattr(evaluator, "build") or not hasattr(evaluator, "val_set"):
        raise DalpError(f"problem {cfg.problem}: its evaluator cannot rebuild candidates for diagnostics")
    _, model = evaluator.build(list(record.genome))
    model.load_state_dict(store.weights(record.arch_id))
    val = evaluator.val_set
    batch = torch.stack([val[i][0] for i in range(min(tiles, len(val)))])
    return run_diagnose(model.eval(), profile, [batch])


if __name__ == "__main__":  # pragma: no cover
    main()
