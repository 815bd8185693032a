import json
from pathlib import Path

import pytest

from dalp_moo.errors import RunFolderError
from dalp_moo.evaluation import FORMAT, STATUS_FAILED, STATUS_OK, EvalRecord, Journal

FORMAT1 = Path(__file__).parent / "fixtures" / "run_format1"


def rec(i: int) -> EvalRecord:
    return EvalRecord(arch_id=f"a{i}", genome=(i, 1), description="d", config_hash="h", generation=0,
                      eval_index=i, started_at="2026-01-01T00:00:00.000Z",
                      metrics={"params": 10 * i, "deployed_miou": 0.5, "latency_ms": 1.0})


def test_append_and_read(tmp_path):
    j = Journal(tmp_path / "j.jsonl", "vessel-segmentation")
    for i in range(3):
        j.append(rec(i))
    back = j.read()
    assert back == [rec(0), rec(1), rec(2)]
    first = json.loads(j.path.read_text().splitlines()[0])
    assert first["format"] == FORMAT == 2 and first["application"] == "vessel-segmentation"
    assert first["metrics"]["params"] == 0 and first["generation"] == 0 and first["eval_index"] == 0


def test_torn_last_line_is_skipped_and_repaired(tmp_path, caplog):
    j = Journal(tmp_path / "j.jsonl")
    j.append(rec(0))
    with open(j.path, "ab") as fh:
        fh.write(b'{"arch_id": "a1", "genom')  # a write cut by a crash
    assert j.read() == [rec(0)]
    assert "torn" in caplog.text
    j.append(rec(2))
    assert j.read() == [rec(0), rec(2)]
    assert all(json.loads(line) for line in j.path.read_text().splitlines())


def test_torn_only_line_is_dropped(tmp_path):
    j = Journal(tmp_path / "j.jsonl")
    j.path.write_bytes(b'{"arch_id": "cut')
    j.append(rec(1))
    assert j.read() == [rec(1)]


def test_append_does_not_read_the_journal(tmp_path, monkeypatch):
    """Appending inspects only the end of the file (no quadratic I/O over a run)."""
    j = Journal(tmp_path / "j.jsonl")
    for i in range(50):
        j.append(rec(i))
    size = j.path.stat().st_size
    reads: list[int] = []
    real_open = open

    class Spy:
        def __init__(self, fh):
            self.fh = fh

        def read(self, n=-1):
            data = self.fh.read(n)
            reads.append(len(data))
            return data

        def __getattr__(self, name):
            return getattr(self.fh, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return self.fh.__exit__(*exc)

    monkeypatch.setattr("builtins.open", lambda *a, **k: Spy(real_open(*a, **k)))
    j.append(rec(50))
    assert sum(reads) <= 1 < size
    monkeypatch.undo()
    assert len(j.read()) == 51


def test_corrupt_middle_line_is_an_error(tmp_path):
    j = Journal(tmp_path / "j.jsonl")
    j.append(rec(0))
    with open(j.path, "ab") as fh:
        fh.write(b"garbage\n")
    j2 = Journal(j.path)
    with open(j.path, "ab") as fh:
        fh.write((json.dumps(rec(1).to_line("x")) + "\n").encode())
    with pytest.raises(RunFolderError, match="line 2 is corrupt"):
        j2.read()


def test_unknown_future_format_is_refused(tmp_path):
    j = Journal(tmp_path / "j.jsonl")
    j.path.write_text(json.dumps({**rec(0).to_line("x"), "format": 3}) + "\n" + json.dumps(rec(1).to_line("x")) + "\n")
    with pytest.raises(RunFolderError, match="unsupported journal format 3"):
        j.read()


def test_failed_record_objectives():
    from problems.vessel_segmentation import OBJECTIVES

    r = EvalRecord(arch_id="x", genome=(0,), status=STATUS_FAILED, reason="boom",
                   metrics={"params": 5, "deployed_miou": 0.9, "latency_ms": 1.0})
    assert r.objectives(OBJECTIVES) == (0.0, 1e6, 1e9)  # worst of each, mIoU negated
    ok = EvalRecord(arch_id="y", genome=(0,), metrics={"params": 5, "deployed_miou": 0.9, "latency_ms": 1.5})
    assert ok.status == STATUS_OK and ok.objectives(OBJECTIVES) == (-0.9, 1.5, 5.0)
    nan = EvalRecord(arch_id="z", genome=(0,), metrics={"params": 5, "deployed_miou": float("nan"), "latency_ms": 1.5})
    assert nan.objectives(OBJECTIVES)[0] == 0.0  # non-finite mIoU counts as the worst


def test_format1_fixture_loads():
    """A journal written by the previous version (format 1: metrics as top-level fields)."""
    records = Journal(FORMAT1 / "journal.jsonl").read()
    assert len(records) == 8
    raw = json.loads((FORMAT1 / "journal.jsonl").read_text().splitlines()[0])
    assert "format" not in raw and "deployed_miou" in raw
    first = records[0]
    assert first.arch_id == raw["arch_id"] and first.genome == tuple(raw["genome"])
    assert first.metrics["deployed_miou"] == raw["deployed_miou"]
    assert first.metrics["params"] == raw["params"] and first.metrics["latency_ms"] == raw["latency_ms"]
    assert first.extra == raw["extra"] and first.train_time_s == raw["train_time_s"]
    assert "arch_id" not in first.metrics and "extra" not in first.metrics
    assert first.generation is None and first.eval_index is None
    assert all(r.ok for r in records)


def test_format1_run_folder_loads_and_shows(caplog):
    from click.testing import CliRunner

    from dalp_moo.cli import main
    from dalp_moo.results import RunFolder

    folder = RunFolder.open(FORMAT1)
    assert folder.format == 1 and folder.problem == "vessel-segmentation"
    cfg = folder.config()  # space.param_cap and backend.latency_budget_ms moved to [constraints]
    assert cfg.constraints.param_cap == 100_000 and cfg.constraints.latency_budget_ms == 0.0
    assert "has moved to constraints.param_cap" in caplog.text
    table = folder.table(folder.records())
    assert len(table) == 8 and table["deployed_miou"].notna().all()
    shown = CliRunner().invoke(main, ["show", str(FORMAT1), "--json"])
    assert shown.exit_code == 0, shown.output
    assert '"front_size": 3' in shown.output


def test_format1_run_folder_is_not_resumed(tmp_path):
    import shutil

    from dalp_moo.search import run_search

    folder = tmp_path / "old"
    shutil.copytree(FORMAT1, folder)
    before = (folder / "journal.jsonl").read_bytes()
    with pytest.raises(RunFolderError, match="older version of dalp_moo \\(format 1\\)"):
        run_search(None, folder, resume=True)
    assert (folder / "journal.jsonl").read_bytes() == before
