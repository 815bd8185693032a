import json

import pytest

from dalp_moo.errors import RunFolderError
from dalp_moo.evaluation import EvalRecord, Journal


def rec(i: int) -> EvalRecord:
    return EvalRecord(arch_id=f"a{i}", genome=(i, 1), description="d", config_hash="h", params=10 * i,
                      deployed_miou=0.5, latency_ms=1.0)


def test_append_and_read(tmp_path):
    j = Journal(tmp_path / "j.jsonl")
    for i in range(3):
        j.append(rec(i))
    back = j.read()
    assert back == [rec(0), rec(1), rec(2)]


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


def test_corrupt_middle_line_is_an_error(tmp_path):
    j = Journal(tmp_path / "j.jsonl")
    j.append(rec(0))
    with open(j.path, "ab") as fh:
        fh.write(b"garbage\n")
    j2 = Journal(j.path)
    with open(j.path, "ab") as fh:
        fh.write((json.dumps(rec(1).to_dict()) + "\n").encode())
    with pytest.raises(RunFolderError, match="line 2 is corrupt"):
        j2.read()


def test_failed_record_objectives():
    r = EvalRecord(arch_id="x", genome=(0,), description="", config_hash="h", status="failed", reason="boom")
    assert r.objectives() == (1.0, 1e6, 1e9)
