"""The run folder: resolved config, journal, checkpoint, tables, plot and summary.

Layout::

    config.toml       resolved configuration (load it with --config to repeat the run)
    meta.json         versions, backend description, input normalisation, start time
    journal.jsonl     one line per finished evaluation (append-only, fsync'd)
    checkpoint.pkl    algorithm state after the last finished generation (atomic write)
    evaluations.csv   table of all evaluations
    pareto.csv        the Pareto front (feasible, non-dominated)
    pareto.png        scatter of the front
    summary.json      front size, best mIoU, hypervolume, counts, timing
    weights/          trained weights per candidate (<arch_id>.pt, loaded with weights_only)
    diagnostics/      per-layer FP16 diagnostics per candidate (<arch_id>.json)
    ir/               OpenVINO IR (FP16 weights) of the front's candidates
"""

from __future__ import annotations

import json
import os
import pickle
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from dalp_moo.config import RunConfig, load_config, to_toml
from dalp_moo.errors import RunFolderError
from dalp_moo.evaluation.journal import Journal
from dalp_moo.evaluation.record import EvalRecord
from dalp_moo.log import logger

TABLE_COLUMNS = (
    "arch_id", "status", "deployed_miou", "fp32_miou", "ptq_miou", "dalp_miou", "vessel_iou",
    "test_miou", "latency_ms", "latency_spread_ms", "energy_mj", "params", "epochs",
    "train_time_s", "eval_time_s", "nonfinite_fraction", "latency_method", "backend", "emulated",
    "description", "reason", "genome",
)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary file, fsync and rename (never half-written)."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


class RunFolder:
    """Files of one run."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.config_path = self.path / "config.toml"
        self.meta_path = self.path / "meta.json"
        self.journal = Journal(self.path / "journal.jsonl")
        self.checkpoint_path = self.path / "checkpoint.pkl"
        self.table_path = self.path / "evaluations.csv"
        self.front_path = self.path / "pareto.csv"
        self.plot_path = self.path / "pareto.png"
        self.summary_path = self.path / "summary.json"

    # -- creation ---------------------------------------------------------------------------
    @classmethod
    def create(cls, path: str | Path, cfg: RunConfig, force: bool = False) -> RunFolder:
        """Start a new run folder. An existing non-empty folder is refused unless ``force``,
        in which case it is renamed to ``<path>.old-<timestamp>`` (nothing is deleted)."""
        p = Path(path)
        if p.exists() and not p.is_dir():
            raise RunFolderError(f"output folder {p}: exists and is not a folder")
        if p.exists() and any(p.iterdir()):
            if not force:
                raise RunFolderError(
                    f"output folder {p} already holds a run; use --resume {p} to continue it, "
                    "--force to start over (the old folder is kept under a new name), or another --out")
            backup = p.with_name(f"{p.name}.old-{time.strftime('%Y%m%d-%H%M%S')}")
            p.rename(backup)
            logger.warning("moved the existing run folder to %s", backup)
        try:
            p.mkdir(parents=True, exist_ok=True)
            probe = p / ".write-test"
            probe.write_text("ok")
            probe.unlink()
        except OSError as exc:
            raise RunFolderError(f"output folder {p}: not writable ({exc.strerror or exc})") from exc
        folder = cls(p)
        atomic_write_text(folder.config_path, to_toml(cfg))
        return folder

    @classmethod
    def open(cls, path: str | Path) -> RunFolder:
        """Open an existing run folder (for resume or analysis)."""
        p = Path(path)
        folder = cls(p)
        if not folder.config_path.is_file():
            raise RunFolderError(f"run folder {p}: no config.toml (not a dalp_moo run folder)")
        return folder

    def config(self) -> RunConfig:
        """The run's resolved configuration."""
        return load_config(path=self.config_path)

    # -- state ------------------------------------------------------------------------------
    def write_meta(self, meta: dict[str, Any]) -> None:
        atomic_write_text(self.meta_path, json.dumps(meta, indent=2, default=str))

    def save_checkpoint(self, state: Any) -> None:
        """Pickle the search state atomically."""
        atomic_write_bytes(self.checkpoint_path, pickle.dumps(state))

    def load_checkpoint(self) -> Any | None:
        """The pickled search state, or None. Only this run folder's own file is unpickled."""
        if not self.checkpoint_path.exists():
            return None
        try:
            return pickle.loads(self.checkpoint_path.read_bytes())  # noqa: S301 - own run folder
        except Exception as exc:
            raise RunFolderError(f"checkpoint {self.checkpoint_path}: unreadable ({exc})") from exc

    def records(self) -> list[EvalRecord]:
        return self.journal.read()

    # -- outputs ----------------------------------------------------------------------------
    @staticmethod
    def table(records: Sequence[EvalRecord]) -> pd.DataFrame:
        """Records as a DataFrame with the columns of :data:`TABLE_COLUMNS`."""
        rows = []
        for r in records:
            d = r.to_dict()
            d["genome"] = " ".join(map(str, r.genome))
            rows.append({c: d.get(c) for c in TABLE_COLUMNS})
        return pd.DataFrame(rows, columns=list(TABLE_COLUMNS))

    def write_tables(self, records: Sequence[EvalRecord], front: Sequence[EvalRecord]) -> None:
        atomic_write_text(self.table_path, self.table(records).to_csv(index=False))
        atomic_write_text(self.front_path, self.table(front).to_csv(index=False))

    def write_summary(self, summary: dict[str, Any]) -> None:
        atomic_write_text(self.summary_path, json.dumps(summary, indent=2, default=str))
