"""Append-only JSON-lines journal of evaluations; every line is flushed and fsync'd.

A torn last line (a write cut by a crash) is detected on reading, skipped with a warning and
truncated before the next append, so finished evaluations are never lost.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from dalp_moo.errors import RunFolderError
from dalp_moo.evaluation.record import EvalRecord
from dalp_moo.log import logger


class Journal:
    """Evaluations of one run, in the order they finished."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def read(self) -> list[EvalRecord]:
        """All complete records. A corrupt *last* line is skipped (torn write); a corrupt line
        elsewhere is an error because it means the file was edited or damaged."""
        if not self.path.exists():
            return []
        lines = self.path.read_bytes().split(b"\n")
        records = []
        for i, raw in enumerate(lines):
            if not raw.strip():
                continue
            try:
                records.append(EvalRecord.from_dict(json.loads(raw)))
            except (ValueError, TypeError) as exc:
                is_last = all(not rest.strip() for rest in lines[i + 1:])
                if is_last:
                    logger.warning("journal %s: skipping torn last line %d (%s)", self.path, i + 1, exc)
                    continue
                raise RunFolderError(f"journal {self.path}: line {i + 1} is corrupt ({exc})") from exc
        return records

    def _drop_torn_tail(self) -> None:
        if not self.path.exists():
            return
        data = self.path.read_bytes()
        if not data or data.endswith(b"\n"):
            return
        cut = data.rfind(b"\n") + 1
        with open(self.path, "r+b") as fh:
            fh.truncate(cut)
            fh.flush()
            os.fsync(fh.fileno())

    def append(self, record: EvalRecord) -> None:
        """Append one record durably (write, flush, fsync)."""
        self._drop_torn_tail()
        line = json.dumps(record.to_dict(), sort_keys=True, allow_nan=True) + "\n"
        with open(self.path, "ab") as fh:
            fh.write(line.encode())
            fh.flush()
            os.fsync(fh.fileno())
