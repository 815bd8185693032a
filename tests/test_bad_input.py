"""Malformed input: one readable line, exit code 2, and nothing in a run folder lost."""

from __future__ import annotations

import json
import os
import pickle
import shutil
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from dalp_moo.cli import main
from dalp_moo.config import to_toml
from dalp_moo.search import run_search
from tests.conftest import tiny_config


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file's content (the lock file holds the pid of its last holder and is left out)."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name != ".lock"}


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
    ("negative seed", ["--seed", "-1"], "search.seed"),
    ("negative data seed", ["--set", "data.seed=-3"], "data.seed"),
    ("huge population", ["--population", "100000000000000000000"], "search.population"),
    ("huge generations", ["--generations", "100000000000000000000"], "search.generations"),
    ("scheduler without port", ["--scheduler", "tcp://127.0.0.1"], "needs a host and a port"),
    ("scheduler without host", ["--scheduler", "tcp://:8786"], "needs a host and a port"),
    ("inproc scheduler", ["--scheduler", "inproc://nothing"], "inproc:// addresses exist only inside one"),
    ("ucx scheduler", ["--scheduler", "ucx://127.0.0.1:1"], "search.scheduler"),
    ("dotted key into a number", ["--set", "train.epochs.x=1"], "train.epochs: is not a table"),
    ("dotted unknown key", ["--set", "backend.nosuch.x=1"], "unknown config key backend.'nosuch'"),
    ("missing data folder", ["--data", "folder:/nonexistent/tiles"], "folder not found"),
]


@pytest.mark.parametrize("name, args, fragment", CASES, ids=[c[0] for c in CASES])
def test_bad_option(tmp_path, name, args, fragment):
    result = invoke([*SMOKE, *args, "--out", str(tmp_path / "out")])
    assert_one_line_error(result, fragment)
    assert not (tmp_path / "out").exists()  # refused before, or removed after, creating the folder


def test_failed_start_in_an_existing_empty_folder_leaves_it_reusable(tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    assert_one_line_error(invoke([*SMOKE, "--data", "folder:/nonexistent/tiles", "--out", str(out)]),
                          "folder not found")
    assert out.is_dir() and not [p for p in out.iterdir() if p.name != ".lock"]
    assert_one_line_error(invoke([*SMOKE, "--backend", "tpu9000", "--out", str(out)]), "unknown backend")
    assert not (out / "config.toml").exists()


def test_folder_left_by_an_older_failed_start_is_reused(tmp_path):
    """A folder holding only config.toml and meta.json (a start that failed before its first
    evaluation, as older versions left it) holds no run: a new run uses it without --force."""
    from dalp_moo.results import RunFolder

    out = tmp_path / "left"
    out.mkdir()
    (out / "config.toml").write_text("stale")
    (out / "meta.json").write_text("{}")
    (out / "progress.json").write_text("{}")
    cfg = tiny_config(search={"population": 2, "generations": 1})
    folder = RunFolder.create(out, cfg)
    folder.unlock()
    assert folder.config() == cfg and not (out / "progress.json").exists()
    assert not list(tmp_path.glob("left.old-*"))


def test_dotted_set_of_a_table_entry(tmp_path):
    from dalp_moo.config import load_config, parse_override

    cfg = load_config("smoke", overrides=[parse_override("backend.options={latency=\"model\"}"),
                                          parse_override("backend.options.precision=f16")])
    assert cfg.backend.options == {"latency": "model", "precision": "f16"}
    assert cfg.evaluation_hash() != load_config("smoke").evaluation_hash()
    assert_one_line_error(invoke([*SMOKE, "--backend", "openvino", "--set", "backend.options.precision=f8",
                                  "--out", str(tmp_path / "o")]), "precision")
    assert not (tmp_path / "o").exists()


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
    assert not (tmp_path / "o").exists()  # the failed start removed the folder it created


@pytest.mark.parametrize("tiles", ["0", "-3"])
def test_diagnose_tiles_out_of_range(finished_run, tiles):
    before = snapshot(finished_run)
    assert_one_line_error(invoke(["diagnose", str(finished_run), "--profile", "ieee", "--tiles", tiles]),
                          "--tiles")
    assert snapshot(finished_run) == before


def copy_of(finished_run: Path, where: Path) -> Path:
    folder = where / "R"
    shutil.copytree(finished_run, folder)
    return folder


def test_force_when_the_old_name_is_taken(tmp_path, finished_run):
    """Two --force within one second: the second backup name is taken, the next free one is used."""
    from dalp_moo.results import RunFolder

    folder = copy_of(finished_run, tmp_path)
    before = snapshot(folder)
    now = time.time()
    stamps = {time.strftime("%Y%m%d-%H%M%S", time.localtime(now + dt)) for dt in range(-1, 30)}
    for stamp in stamps:  # every name a --force of the next 30 s would take first
        taken = tmp_path / f"R.old-{stamp}"
        taken.mkdir()
        (taken / "marker").write_text(stamp)
    RunFolder.create(folder, tiny_config(search={"population": 2, "generations": 1}), force=True).unlock()
    for stamp in stamps:
        assert (tmp_path / f"R.old-{stamp}" / "marker").read_text() == stamp
    moved = [p for p in tmp_path.glob("R.old-*-2")]
    assert len(moved) == 1 and snapshot(moved[0]) == before
    assert sorted(p.name for p in folder.iterdir()) == [".lock", "config.toml"]


def test_force_never_moves_the_current_directory(tmp_path, finished_run, monkeypatch):
    folder = copy_of(finished_run, tmp_path)
    before = snapshot(folder)
    monkeypatch.chdir(folder)
    assert_one_line_error(invoke([*SMOKE, "--force", "--out", "."]), "cannot move the current directory")
    (folder / "weights").mkdir(exist_ok=True)
    monkeypatch.chdir(folder / "weights")
    assert_one_line_error(invoke([*SMOKE, "--force", "--out", ".."]), "cannot move the current directory")
    assert snapshot(folder) == before and not list(tmp_path.glob("R.old-*"))


def test_force_never_moves_a_folder_that_holds_no_run(tmp_path):
    other = tmp_path / "photos"
    other.mkdir()
    (other / "holiday.jpg").write_bytes(b"\xff\xd8")
    assert_one_line_error(invoke([*SMOKE, "--out", str(other)]), "holds no dalp_moo run")
    assert_one_line_error(invoke([*SMOKE, "--force", "--out", str(other)]), "--force only moves run folders")
    assert [p.name for p in other.iterdir()] == ["holiday.jpg"]  # not even a lock file was written
    assert not list(tmp_path.glob("photos.old-*"))


def test_existing_run_is_not_overwritten(finished_run):
    before = snapshot(finished_run)
    assert_one_line_error(invoke([*SMOKE, "--out", str(finished_run)]), "already holds a run")
    assert snapshot(finished_run) == before


@pytest.mark.parametrize("damage, fragment", [
    ("journal_middle", "line 1 is corrupt"),
    ("journal_array_middle", "line 2 is corrupt (not a JSON object: [])"),
    ("journal_null_end", "line 3 is corrupt (not a JSON object: null)"),
    ("journal_record_without_id", "line 1 is corrupt"),
    ("config_changed", "config.toml was edited after the run started (train.epochs: 1 -> 3)"),
    ("population_changed", "(search.population: 2 -> 3)"),
    ("config_changed_old_meta", "another config"),
    ("config_invalid", "search.population"),
    ("no_config", "no config.toml"),
    ("meta_corrupt", "meta.json: corrupt"),
])
def test_resume_of_damaged_folder(tmp_path, finished_run, damage, fragment):
    folder = tmp_path / "copy"
    shutil.copytree(finished_run, folder)
    journal = folder / "journal.jsonl"
    lines = journal.read_text().splitlines()
    if damage == "journal_middle":
        journal.write_text("\n".join(["{oops", *lines]) + "\n")
    elif damage == "journal_array_middle":
        journal.write_text("\n".join([lines[0], "[]", *lines[1:]]) + "\n")
    elif damage == "journal_null_end":
        journal.write_text("\n".join([*lines, "null"]) + "\n")
    elif damage == "journal_record_without_id":
        journal.write_text("\n".join(['{"format": 2, "genome": [1]}', *lines]) + "\n")
    elif damage in ("config_changed", "config_changed_old_meta"):
        cfg = tiny_config(search={"population": 2, "generations": 1}, train={"epochs": 3})
        (folder / "config.toml").write_text(to_toml(cfg))
        if damage == "config_changed_old_meta":  # a run folder of a version without meta.json "config"
            meta = json.loads((folder / "meta.json").read_text())
            del meta["config"], meta["config_hash"]
            (folder / "meta.json").write_text(json.dumps(meta))
    elif damage == "population_changed":
        (folder / "config.toml").write_text(to_toml(tiny_config(search={"population": 3, "generations": 1})))
    elif damage == "config_invalid":
        text = (folder / "config.toml").read_text()
        (folder / "config.toml").write_text(text.replace("population = 2", "population = 1"))
    elif damage == "no_config":
        (folder / "config.toml").unlink()
    elif damage == "meta_corrupt":
        (folder / "meta.json").write_text("{not json")
    before = snapshot(folder)
    assert_one_line_error(invoke(["run", "--resume", str(folder), "--no-progress"]), fragment)
    assert snapshot(folder) == before


def test_resume_missing_folder(tmp_path):
    assert_one_line_error(invoke(["run", "--resume", str(tmp_path / "nope")]), "no config.toml")


@pytest.mark.parametrize("extra", [["--set", "train.epochs=2"], ["--epochs", "2"], ["--force"],
                                   ["--out", "elsewhere"], ["--preset", "smoke"]])
def test_resume_with_other_options(finished_run, extra):
    before = snapshot(finished_run)
    assert_one_line_error(invoke(["run", "--resume", str(finished_run), *extra]),
                          "--resume uses the run folder's own config")
    assert snapshot(finished_run) == before


def test_resume_generations_out_of_range(finished_run):
    before = snapshot(finished_run)
    assert_one_line_error(invoke(["run", "--resume", str(finished_run), "--generations", "0"]), "search.generations")
    assert snapshot(finished_run) == before


class _Payload:
    """Unpickling this creates the file ``path``: proof that a pickle was loaded."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return (Path.touch, (Path(self.path),))


@pytest.mark.parametrize("where", ["inside", "symlink"])
def test_checkpoint_pickle_is_never_loaded(tmp_path, finished_run, where):
    folder = copy_of(finished_run, tmp_path)
    proof = tmp_path / "pickle-was-loaded"
    payload = pickle.dumps(_Payload(str(proof)))
    if where == "inside":
        (folder / "checkpoint.pkl").write_bytes(payload)
    else:
        (tmp_path / "elsewhere.pkl").write_bytes(payload)
        os.symlink(tmp_path / "elsewhere.pkl", folder / "checkpoint.pkl")
    journal = (folder / "journal.jsonl").read_bytes()
    result = invoke(["run", "--resume", str(folder), "--no-progress"])
    assert result.exit_code == 0, result.output
    assert not proof.exists()
    assert "checkpoint.pkl is ignored" in result.stderr
    assert (folder / "journal.jsonl").read_bytes() == journal  # replayed: nothing new, nothing twice


def test_torn_journal_line_resumes_with_warning(tmp_path, finished_run):
    import shutil

    folder = tmp_path / "torn"
    shutil.copytree(finished_run, folder)
    with open(folder / "journal.jsonl", "ab") as fh:
        fh.write(b'{"arch_id": "cut-off')
    result = invoke(["run", "--resume", str(folder), "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "torn last line" in result.stderr
