from __future__ import annotations

import subprocess
import sys

import click
import pytest
from click.testing import CliRunner

from dalp_moo.cli import main


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "dalp_moo", *args], capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("args, fragment", [
    (["run", "--set", "train.epoch=2"], "did you mean 'epochs'"),
    (["run", "--set", "train.epochs=-1"], "train.epochs"),
    (["run", "--set", "search.population=abc"], "expected int"),
    (["run", "--config", "/nonexistent/cfg.toml"], "not found"),
    (["run", "--data", "nosuch:/x"], "unknown"),
    (["run", "--backend", "tpu9000", "--preset", "smoke"], "unknown backend"),
    (["run", "--device", "cuda", "--preset", "smoke"], "no CUDA"),
])
def test_bad_input_one_line_exit_2(tmp_path, args, fragment):
    result = run_cli(*args, "--out", str(tmp_path / "o"))
    assert result.returncode == 2, result.stderr
    lines = [ln for ln in result.stderr.strip().splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and fragment in lines[0], result.stderr
    assert "Traceback" not in result.stderr


def test_debug_shows_traceback(tmp_path):
    result = run_cli("run", "--debug", "--set", "train.epoch=2", "--out", str(tmp_path / "o"))
    assert result.returncode != 0 and "Traceback" in result.stderr


def test_existing_run_folder_refused_then_forced(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "journal.jsonl").write_text("precious\n")
    result = run_cli("run", "--preset", "smoke", "--out", str(out))
    assert result.returncode == 2 and "already holds a run" in result.stderr
    assert (out / "journal.jsonl").read_text() == "precious\n"


def test_backends_lists_analytic():
    result = CliRunner().invoke(main, ["backends"])
    assert result.exit_code == 0 and "analytic" in result.output


@pytest.mark.integration
def test_smoke_run_and_show(tmp_path):
    out = tmp_path / "run"
    result = run_cli("run", "--preset", "smoke", "--generations", "1", "--population", "2", "--no-progress",
                     "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert "best on-device mIoU (emulated)" in result.stdout
    shown = CliRunner().invoke(main, ["show", str(out), "--json"])
    assert shown.exit_code == 0 and "front_size" in shown.output
    assert "hypervolume_reference" in shown.output
    stored = CliRunner().invoke(main, ["diagnose", str(out), "--json"])
    assert stored.exit_code == 0, stored.output
    recomputed = CliRunner().invoke(main, ["diagnose", str(out), "--profile", "ieee", "--tiles", "2", "--json"])
    assert recomputed.exit_code == 0, recomputed.output
    assert '"profile": "ieee"' in recomputed.output


def test_problems_lists_the_applications():
    result = CliRunner().invoke(main, ["problems"])
    assert result.exit_code == 0 and "vessel-segmentation" in result.output and "smoke" in result.output


def test_choices_come_from_the_registries():
    from dalp_moo import applications
    from dalp_moo.config import ALGORITHMS
    from dalp_moo.precision import PROFILES, REGIMES

    params = {p.name: p for p in main.commands["run"].params}
    assert tuple(params["regime"].type.choices) == tuple(REGIMES)
    assert tuple(params["profile"].type.choices) == tuple(PROFILES)
    assert tuple(params["algorithm"].type.choices) == ALGORITHMS
    from dalp_moo.search import FACTORIES

    assert tuple(FACTORIES) == ALGORITHMS  # every algorithm name has a factory
    assert tuple(params["preset"].type.choices) == applications.all_presets()
    assert set(params["problem"].type.choices) == set(applications.available())


def _commands(group: click.Command, path: str = "dalp_moo") -> list[tuple[str, click.Command]]:
    out = [(path, group)]
    for name, sub in getattr(group, "commands", {}).items():
        out += _commands(sub, f"{path} {name}")
    return out


def test_every_cli_option_is_documented():
    """Each option of every command (and the command itself) carries a help text."""
    undocumented = [f"{path} {' / '.join(p.opts)}" for path, cmd in _commands(main)
                    for p in cmd.params if isinstance(p, click.Option) and not (p.help or "").strip()]
    undocumented += [path for path, cmd in _commands(main) if not (cmd.help or cmd.short_help or "").strip()]
    assert len(_commands(main)) > 10  # the walk reached the subcommands
    assert not undocumented, undocumented


def test_config_command_prints_a_documented_loadable_config(tmp_path):
    runner = CliRunner()
    result = runner.invoke(main, ["config", "--preset", "smoke", "--set", "train.epochs=3"])
    assert result.exit_code == 0, result.output
    assert "# FP32 training epochs per candidate\nepochs = 3\n" in result.output
    out = tmp_path / "c.toml"
    result = runner.invoke(main, ["config", "--preset", "smoke", "--set", "train.epochs=3", "--plain",
                                  "--out", str(out)])
    assert result.exit_code == 0, result.output
    text = out.read_text()
    assert "epochs = 3" in text and "\n# " not in text
    from dalp_moo.config import load_config
    assert load_config(path=out) == load_config("smoke", overrides=[{"train": {"epochs": 3}}])


def test_config_command_bad_key_is_one_line(tmp_path):
    result = run_cli("config", "--set", "train.epoch=2")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == ["error: unknown config key train.'epoch' (did you mean 'epochs'?)"]


def test_backends_options_lists_documented_options():
    result = CliRunner().invoke(main, ["backends", "--options"])
    assert result.exit_code == 0, result.output
    assert "    passes = 1" in result.output and "lowest median" in result.output
    assert "    streams = 2" in result.output
