"""A small on-disk key-value cache, safe with parallel processes.

Each entry is one JSON file named by the SHA-256 of its key payload, written to a temporary file
in the same folder and renamed into place (atomic on POSIX and Windows), so concurrent writers of
the same entry never leave a partial file and readers see either nothing or a whole entry. The
stored key payload is compared on read (a mismatch or a corrupt file is a miss).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from dalp_moo.log import logger


def payload_hash(payload: Any) -> str:
    """Stable hash of a JSON-serialisable payload."""
    blob = json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()


class DiskCache:
    """JSON entries under ``root/<namespace>/``; ``root=None`` keeps nothing on disk."""

    def __init__(self, root: str | Path | None) -> None:
        self.root = Path(root).expanduser() if root else None
        self.hits = 0
        self.misses = 0

    def _path(self, namespace: str, key: Any) -> Path | None:
        if self.root is None:
            return None
        return self.root / namespace / f"{payload_hash(key)[:32]}.json"

    def get(self, namespace: str, key: Any) -> Any | None:
        """The value stored under ``key``, or None."""
        path = self._path(namespace, key)
        if path is None or not path.exists():
            self.misses += 1
            return None
        try:
            with open(path, encoding="utf-8") as f:
                entry = json.load(f)
        except (OSError, ValueError) as exc:
            logger.debug("accelerator cache: unreadable entry %s (%s); recomputing", path, exc)
            self.misses += 1
            return None
        if not isinstance(entry, dict) or entry.get("key") != json.loads(json.dumps(key)):
            self.misses += 1
            return None
        self.hits += 1
        return entry.get("value")

    def put(self, namespace: str, key: Any, value: Any) -> None:
        """Store ``value`` under ``key`` (atomic replace)."""
        path = self._path(namespace, key)
        if path is None:
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".json", dir=path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump({"key": key, "value": value}, f, sort_keys=True)
            os.replace(tmp, path)
        except BaseException:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise
