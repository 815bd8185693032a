"""One process per run folder: an exclusive lock held for the whole run and resume.

The integration tests use real processes: a search runs (or resumes) in a subprocess while a
second ``run``, ``--force`` or ``--resume`` tries the same folder.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from dalp_moo.cli import main
from dalp_moo.config import to_toml
from dalp_moo.errors import RunFolderError
from dalp_moo.results import RunFolder
from tests.conftest import tiny_config

DALP = [sys.executable, "-m", "dalp_moo"]


def wait_for(condition, timeout_s: float = 240.0) -> None:
    deadline = time.time() + timeout_s
    while not condition():
        if time.time() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.05)


def journal_lines(folder: Path) -> list[dict]:
    path = folder / "journal.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def lock_pid(folder: Path) -> int | None:
    try:
        words = (folder / ".lock").read_text().split()
    except FileNotFoundError:
        return None
    return int(words[1]) if len(words) >= 2 and words[0] == "pid" else None


def assert_refused_by(result_code: int, stderr: str, pid: int) -> None:
    errors = [ln for ln in stderr.splitlines() if ln.startswith("error:")]
    assert result_code == 2, stderr
    assert len(errors) == 1, stderr
    assert f"is in use by another dalp_moo process (pid {pid})" in errors[0], errors[0]


def assert_consistent(folder: Path) -> None:
    """One config hash, every candidate journaled once, summary counts = journal lines."""
    lines = journal_lines(folder)
    assert len({d["config_hash"] for d in lines}) == 1
    ids = [d["arch_id"] for d in lines]
    assert len(ids) == len(set(ids))
    assert [d["eval_index"] for d in lines] == list(range(len(lines)))
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["evaluations"] == summary["unique_architectures"] == len(lines)


def test_lock_is_exclusive_and_names_the_holder(tmp_path):
    holder = RunFolder(tmp_path)
    holder.lock()
    other = RunFolder(tmp_path)  # another open file description: refused like another process
    with pytest.raises(RunFolderError, match=rf"in use by another dalp_moo process \(pid {os.getpid()}\)"):
        other.lock()
    holder.unlock()
    other.lock()
    assert other.locked and lock_pid(tmp_path) == os.getpid()
    other.unlock()


def test_lock_file_may_not_be_a_symlink(tmp_path):
    target = tmp_path / "elsewhere"
    target.write_text("keep")
    folder = tmp_path / "R"
    folder.mkdir()
    os.symlink(target, folder / ".lock")
    with pytest.raises(RunFolderError, match="symbolic link"):
        RunFolder(folder).lock()
    assert target.read_text() == "keep"


def test_locked_folder_refuses_run_force_and_resume_in_process(tmp_path):
    cfg = tiny_config(search={"population": 2, "generations": 1})
    folder = RunFolder.create(tmp_path / "R", cfg)  # holds the lock, like a starting run
    cfg_file = tmp_path / "cfg.toml"
    cfg_file.write_text(to_toml(cfg))
    try:
        for args in (["--config", str(cfg_file), "--out", str(folder.path)],
                     ["--config", str(cfg_file), "--force", "--out", str(folder.path)],
                     ["--resume", str(folder.path)]):
            result = CliRunner().invoke(main, ["run", "--no-progress", *args])
            assert_refused_by(result.exit_code, result.stderr, os.getpid())
        assert not list(tmp_path.glob("R.old-*"))
        assert sorted(p.name for p in folder.path.iterdir()) == [".lock", "config.toml"]
    finally:
        folder.unlock()


@pytest.mark.integration
def test_second_process_is_refused_while_a_run_holds_the_folder(tmp_path):
    cfg = tiny_config(search={"population": 4, "generations": 3}, train={"threads": 1})
    cfg_file = tmp_path / "cfg.toml"
    cfg_file.write_text(to_toml(cfg))
    out = tmp_path / "R"
    proc = subprocess.Popen([*DALP, "-q", "run", "--config", str(cfg_file), "--no-progress", "--out", str(out)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: lock_pid(out) == proc.pid)  # the holder has just started
        second = subprocess.run([*DALP, "run", "--resume", str(out), "--no-progress"], capture_output=True,
                                text=True, timeout=300)
        assert_refused_by(second.returncode, second.stderr, proc.pid)
        for args in (["--config", str(cfg_file), "--out", str(out)],
                     ["--config", str(cfg_file), "--force", "--out", str(out)]):
            result = CliRunner().invoke(main, ["run", "--no-progress", *args])
            assert_refused_by(result.exit_code, result.stderr, proc.pid)
        assert proc.poll() is None  # the holder was running all along
        assert not list(tmp_path.glob("R.old-*"))  # --force moved nothing
    finally:
        _, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err
    assert_consistent(out)
    assert max(d["generation"] for d in journal_lines(out)) == 2


@pytest.mark.integration
def test_two_resumes_at_once_one_is_refused(tmp_path):
    cfg = tiny_config(search={"population": 3, "generations": 2}, train={"threads": 1})
    cfg_file = tmp_path / "cfg.toml"
    cfg_file.write_text(to_toml(cfg))
    out = tmp_path / "R"
    first = subprocess.Popen([*DALP, "-q", "run", "--config", str(cfg_file), "--no-progress", "--out", str(out)],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for(lambda: len(journal_lines(out)) >= 2)
    os.kill(first.pid, signal.SIGKILL)
    first.wait()
    killed_at = len(journal_lines(out))

    resumes = [subprocess.Popen([*DALP, "run", "--resume", str(out), "--no-progress"], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outputs = [p.communicate(timeout=600) for p in resumes]
    codes = sorted(p.returncode for p in resumes)
    assert codes == [0, 2], [err for _, err in outputs]
    winner = next(p for p in resumes if p.returncode == 0)
    loser = next(i for i, p in enumerate(resumes) if p.returncode == 2)
    assert_refused_by(2, outputs[loser][1], winner.pid)
    assert len(journal_lines(out)) > killed_at
    assert_consistent(out)
