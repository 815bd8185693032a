"""Append-only JSON-lines journal of evaluations; every line is flushed and fsync'd.

Lines are format 2 (``{"format": 2, "application": NAME, ...record}``, see
:mod:`dalp_moo.evaluation.record`); format-1 lines of older runs load too. A torn last line (a
write cut by a crash) is detected on reading, skipped with a warning and truncated before the
next append, so finished evaluations are never lost; any other damaged line (edited, or not a
JSON object) is reported with its line number and nothing is changed. Appending costs O(1) in
the journal's size: only the file's last bytes are inspected.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import BinaryIO

from dalp_moo.errors import RunFolderError
from dalp_moo.evaluation.record import EvalRecord
from dalp_moo.log import logger

_TAIL_CHUNK = 1 << 16


class Journal:
    """Evaluations of one run, in the order they finished. ``application`` is written on every
    line."""

    def __init__(self, path: str | Path, application: str = "") -> None:
        self.path = Path(path)
        self.application = application

    def read(self) -> list[EvalRecord]:
        """All complete records. An unterminated last line is skipped (a torn write: every
        append ends with its newline) and repaired by the next append; any other line that is
        not a record (not JSON, JSON but not an object, an object that is not a record) is an
        error because it means the file was edited or damaged."""
        if not self.path.exists():
            return []
        try:
            data = self.path.read_bytes()
        except OSError as exc:
            raise RunFolderError(f"journal {self.path}: unreadable ({exc.strerror or exc})") from exc
        lines = data.split(b"\n")
        records = []
        for i, raw in enumerate(lines):
            if not raw.strip():
                continue
            try:
                obj = json.loads(raw)
                if not isinstance(obj, dict):
                    raise ValueError(f"not a JSON object: {raw.decode(errors='replace').strip()[:40]}")
                records.append(EvalRecord.from_dict(obj))
            except (ValueError, TypeError, KeyError, AttributeError) as exc:
                torn = i == len(lines) - 1  # no newline after it: a write cut by a crash
                if torn:
                    logger.warning("journal %s: skipping torn last line %d (%s)", self.path, i + 1, exc)
                    continue
                raise RunFolderError(f"journal {self.path}: line {i + 1} is corrupt ({exc})") from exc
        return records

    def _drop_torn_tail(self, fh: BinaryIO) -> None:
        """Truncate an unterminated last line (reads only the end of the file)."""
        size = fh.seek(0, os.SEEK_END)
        if size == 0:
            return
        fh.seek(size - 1)
        if fh.read(1) == b"\n":
            return
        end = size
        while end > 0:  # find the last newline, one chunk at a time from the end
            start = max(0, end - _TAIL_CHUNK)
            fh.seek(start)
            chunk = fh.read(end - start)
            pos = chunk.rfind(b"\n")
            if pos >= 0:
                fh.truncate(start + pos + 1)
                return
            end = start
        fh.truncate(0)

    def append(self, record: EvalRecord) -> None:
        """Append one record durably (write, flush, fsync)."""
        line = json.dumps(record.to_line(self.application), sort_keys=True, allow_nan=True) + "\n"
        with open(self.path, "a+b") as fh:
            self._drop_torn_tail(fh)
            fh.seek(0, os.SEEK_END)
            fh.write(line.encode())
            fh.flush()
            os.fsync(fh.fileno())
