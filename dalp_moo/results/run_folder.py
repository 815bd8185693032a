"""The run folder: resolved config, journal, checkpoint, tables, plot and summary.

Layout::

    config.toml       resolved configuration (load it with --config to repeat the run)
    meta.json         versions, evaluator description (backend, data, ...), start time,
                      hypervolume reference point
    journal.jsonl     one line per finished evaluation (append-only, fsync'd; format 2:
                      {"format": 2, "application": NAME, ...record}, see dalp_moo.evaluation.record)
    checkpoint.pkl    algorithm state after the last finished generation (atomic write)
    evaluations.csv   table of all evaluations
    pareto.csv        the Pareto front (feasible, non-dominated)
    pareto.png        scatter of the front (first objective against the others)
    summary.json      front size, best candidate, hypervolume and its reference point, counts, timing
    weights/          trained weights per candidate (<arch_id>.pt, loaded with weights_only)
    diagnostics/      per-layer FP16 diagnostics per candidate (<arch_id>.json)
    ir/               vessel segmentation: OpenVINO IR (FP16 weights) of the front's candidates
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

from dalp_moo import applications
from dalp_moo.compat import tomllib
from dalp_moo.config import RunConfig, load_config, to_toml
from dalp_moo.errors import RunFolderError
from dalp_moo.evaluation.journal import Journal
from dalp_moo.evaluation.record import EvalRecord
from dalp_moo.log import logger
from dalp_moo.results.summary import Scoring, reference_from

#: table columns before and after the application's metric columns
LEADING_COLUMNS = ("arch_id", "status")
TRAILING_COLUMNS = ("train_time_s", "eval_time_s", "backend", "emulated", "generation", "eval_index",
                    "description", "reason", "genome")


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

    def __init__(self, path: str | Path, application: str = "") -> None:
        self.path = Path(path)
        self.config_path = self.path / "config.toml"
        self.meta_path = self.path / "meta.json"
        self.journal = Journal(self.path / "journal.jsonl", application)
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
        folder = cls(p, cfg.problem)
        atomic_write_text(folder.config_path, to_toml(cfg))
        return folder

    @classmethod
    def open(cls, path: str | Path) -> RunFolder:
        """Open an existing run folder (for resume or analysis)."""
        p = Path(path)
        folder = cls(p)
        if not folder.config_path.is_file():
            raise RunFolderError(f"run folder {p}: no config.toml (not a dalp_moo run folder)")
        folder.journal.application = folder.problem
        return folder

    def _raw_config(self) -> dict[str, Any]:
        try:
            return tomllib.loads(self.config_path.read_text())
        except (OSError, ValueError) as exc:
            raise RunFolderError(f"run folder {self.path}: config.toml unreadable ({exc})") from exc

    @property
    def problem(self) -> str:
        """The application of the run (format-1 folders: the default application)."""
        return str(self._raw_config().get("problem") or applications.DEFAULT)

    @property
    def format(self) -> int:
        """Run folder format: 1 (config without ``problem``: written before the application
        seam; it loads, but cannot be resumed) or 2."""
        return 2 if "problem" in self._raw_config() else 1

    def config(self) -> RunConfig:
        """The run's resolved configuration (keys of format 1 are migrated)."""
        return load_config(path=self.config_path)

    def meta(self) -> dict[str, Any]:
        """meta.json ({} when absent)."""
        if not self.meta_path.is_file():
            return {}
        try:
            return json.loads(self.meta_path.read_text())
        except ValueError as exc:
            raise RunFolderError(f"meta {self.meta_path}: corrupt ({exc})") from exc

    def scoring(self, cfg: RunConfig | None = None) -> Scoring:
        """Objectives, constraints and the hypervolume reference point of the run (the one in
        meta.json; older runs: recomputed from the config)."""
        cfg = cfg or self.config()
        app = cfg.application
        reference = reference_from(self.meta()) or app.reference_point(cfg)
        return Scoring(tuple(app.objectives(cfg)), tuple(app.constraints(cfg)), reference)

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
    def columns(self) -> tuple[str, ...]:
        """Table columns: common fields around the application's ``table_columns``."""
        app = applications.get(self.problem)
        return (*LEADING_COLUMNS, *app.table_columns, *TRAILING_COLUMNS)

    def table(self, records: Sequence[EvalRecord]) -> pd.DataFrame:
        """Records as a DataFrame with the columns of :meth:`columns` (metrics flattened)."""
        columns = self.columns()
        rows = []
        for r in records:
            d = {**r.metrics, **r.to_dict()}
            d["genome"] = " ".join(map(str, r.genome))
            rows.append({c: d.get(c) for c in columns})
        return pd.DataFrame(rows, columns=list(columns))

    def write_tables(self, records: Sequence[EvalRecord], front: Sequence[EvalRecord]) -> None:
        atomic_write_text(self.table_path, self.table(records).to_csv(index=False))
        atomic_write_text(self.front_path, self.table(front).to_csv(index=False))

    def write_summary(self, summary: dict[str, Any]) -> None:
        atomic_write_text(self.summary_path, json.dumps(summary, indent=2, default=str))
