"""Malformed input: one readable line, exit code 2, and nothing in a run folder lost."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from dalp_moo.cli import main
from dalp_moo.config import to_toml
from dalp_moo.search import run_search
from tests.conftest import tiny_config


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("runs") / "done"
    run_search(tiny_config(search={"population": 2, "generations": 1}), folder)
    return folder


def invoke(args: list[str]):
    return CliRunner().invoke(main, args)


def assert_one_line_error(result, fragment: str) -> None:
    assert result.exit_code == 2, (result.exit_code, result.output)
    errors = [ln for ln in result.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1, result.stderr
    assert fragment in errors[0], errors[0]
    assert "Traceback" not in result.output


SMOKE = ["run", "--preset", "smoke", "--no-progress"]

CASES = [
    ("unknown key", ["--set", "train.epoch=2"], "did you mean 'epochs'"),
    ("unknown key 2", ["--set", "search.popsize=3"], "unknown config key search.'popsize'"),
    ("unknown section", ["--set", "trainer.epochs=2"], "unknown config key section 'trainer'"),
    ("string for int", ["--set", "train.epochs=three"], "expected int"),
    ("float for int", ["--set", "search.population=2.5"], "expected int"),
    ("bool for int", ["--set", "train.epochs=true"], "expected int"),
    ("epochs zero", ["--set", "train.epochs=0"], "train.epochs"),
    ("lr too big", ["--set", "train.lr=3.0"], "train.lr"),
    ("negative gamma", ["--set", "train.focal_gamma=-1"], "train.focal_gamma"),
    ("bad regime", ["--set", "train.regime=int8"], "train.regime"),
    ("bad profile", ["--set", "train.profile=fp8"], "train.profile"),
    ("population 1", ["--set", "search.population=1"], "search.population"),
    ("bad algorithm", ["--set", "search.algorithm=cmaes"], "search.algorithm"),
    ("mutation prob", ["--set", "search.mutation_prob=1.5"], "search.mutation_prob"),
    ("crossover prob", ["--set", "search.crossover_prob=-0.1"], "search.crossover_prob"),
    ("negative workers", ["--set", "search.workers=-1"], "search.workers"),
    ("units order", ["--set", "space.min_units=5", "--set", "space.max_units=3"], "min_units"),
    ("tiny cap", ["--set", "constraints.param_cap=10"], "constraints.param_cap"),
    ("tiny cap option", ["--param-cap", "10"], "constraints.param_cap"),
    ("unknown constraint key", ["--set", "constraints.x=1"], "unknown config key constraints.'x'"),
    ("unknown problem", ["--problem", "nosuch"], "nosuch"),
    ("unknown preset", ["--preset", "huge"], "huge"),
    ("tile too small", ["--set", "data.tile_size=8"], "data.tile_size"),
    ("zero bands", ["--set", "data.bands=0"], "data.bands"),
    ("few tiles", ["--set", "data.n_tiles=3"], "data.n_tiles"),
    ("bad normalization", ["--set", "data.normalization=zscore"], "data.normalization"),
    ("negative budget", ["--latency-budget", "-5"], "constraints.latency_budget_ms"),
    ("negative memory", ["--set", "train.max_memory_mb=-1"], "train.max_memory_mb"),
    ("override syntax", ["--set", "epochs=3"], "expected section.key=value"),
    ("bad scheduler address", ["--scheduler", "localhost:8786"], "not a Dask address"),
    ("workers and scheduler", ["--workers", "2", "--scheduler", "tcp://127.0.0.1:1"], "not both"),
    ("unknown data source", ["--data", "s3:bucket"], "unknown"),
    ("unknown backend", ["--backend", "tpu9000"], "unknown backend"),
    ("cuda without gpu", ["--device", "cuda"], "no CUDA"),
    ("missing config file", ["--config", "/nonexistent/x.toml"], "not found"),
]


@pytest.mark.parametrize("name, args, fragment", CASES, ids=[c[0] for c in CASES])
def test_bad_option(tmp_path, name, args, fragment):
    result = invoke([*SMOKE, *args, "--out", str(tmp_path / "out")])
    assert_one_line_error(result, fragment)
    assert not (tmp_path / "out" / "journal.jsonl").exists()


@pytest.mark.parametrize("text, fragment", [
    ("[train\nepochs = 2", "cannot parse"),
    ("[train]\nepochs = 2\n[bogus]\nx = 1\n", "unknown config key section 'bogus'"),
    ("train = 3\n", "must be a table"),
    ("[train]\nepochs = \"2\"\n", "expected int"),
])
def test_bad_config_files(tmp_path, text, fragment):
    cfg = tmp_path / "cfg.toml"
    cfg.write_text(text)
    assert_one_line_error(invoke([*SMOKE, "--config", str(cfg), "--out", str(tmp_path / "o")]), fragment)


def test_yaml_with_list_top_level(tmp_path):
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text("- 1\n- 2\n")
    assert_one_line_error(invoke([*SMOKE, "--config", str(cfg), "--out", str(tmp_path / "o")]), "top level")


def test_unwritable_output_folder(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert_one_line_error(invoke([*SMOKE, "--out", str(blocker / "run")]), "not writable")
    assert_one_line_error(invoke([*SMOKE, "--out", str(blocker)]), "is a file")


def test_unreachable_scheduler(tmp_path):
    result = invoke([*SMOKE, "--scheduler", "tcp://127.0.0.1:9", "--out", str(tmp_path / "o")])
    assert_one_line_error(result, "cannot reach the Dask scheduler")


def test_existing_run_is_not_overwritten(finished_run):
    before = snapshot(finished_run)
    assert_one_line_error(invoke([*SMOKE, "--out", str(finished_run)]), "already holds a run")
    assert snapshot(finished_run) == before


@pytest.mark.parametrize("damage, fragment", [
    ("journal_middle", "is corrupt"),
    ("checkpoint", "unreadable"),
    ("config_changed", "another config"),
    ("no_config", "no config.toml"),
])
def test_resume_of_damaged_folder(tmp_path, finished_run, damage, fragment):
    import shutil

    folder = tmp_path / "copy"
    shutil.copytree(finished_run, folder)
    if damage == "journal_middle":
        lines = (folder / "journal.jsonl").read_text().splitlines()
        (folder / "journal.jsonl").write_text("\n".join(["{oops", *lines]) + "\n")
    elif damage == "checkpoint":
        (folder / "checkpoint.pkl").write_bytes(b"not a pickle")
    elif damage == "config_changed":
        cfg = tiny_config(search={"population": 2, "generations": 1}, train={"epochs": 3})
        (folder / "config.toml").write_text(to_toml(cfg))
    elif damage == "no_config":
        (folder / "config.toml").unlink()
    before = snapshot(folder)
    assert_one_line_error(invoke(["run", "--resume", str(folder), "--no-progress"]), fragment)
    assert snapshot(folder) == before


def test_resume_missing_folder(tmp_path):
    assert_one_line_error(invoke(["run", "--resume", str(tmp_path / "nope")]), "no config.toml")


def test_resume_with_other_options(finished_run):
    assert_one_line_error(invoke(["run", "--resume", str(finished_run), "--set", "train.epochs=2"]),
                          "--resume uses the run folder's own config")


def test_torn_journal_line_resumes_with_warning(tmp_path, finished_run):
    import shutil

    folder = tmp_path / "torn"
    shutil.copytree(finished_run, folder)
    with open(folder / "journal.jsonl", "ab") as fh:
        fh.write(b'{"arch_id": "cut-off')
    result = invoke(["run", "--resume", str(folder), "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "torn last line" in result.stderr
