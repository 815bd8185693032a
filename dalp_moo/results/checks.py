"""Checks of a run's results: degenerate candidates, unfinished runs.

A *degenerate* segmentation candidate predicts one class everywhere: it finds no vessel pixel
(vessel IoU 0) or calls every pixel a vessel (background IoU 0, read as
``2 * deployed_miou - vessel_iou`` for two classes). Its mIoU says nothing about the
architecture (an all-background network scores about 0.49 on tiles with 2 % vessel pixels), so a
front made mostly of such candidates is not evidence of anything: smoke-size budgets produce
them. The check applies to records that carry ``vessel_iou`` and ``deployed_miou``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dalp_moo.application import finite_float
from dalp_moo.evaluation.record import EvalRecord
from dalp_moo.log import logger
from dalp_moo.training.metrics import degenerate_reason as degenerate_ious

#: share of successful candidates above which a run gets the "mostly degenerate" warning
DEGENERATE_SHARE = 0.5




def degenerate_reason(record: EvalRecord) -> str:
    """Why ``record`` is a degenerate segmentation candidate ("" when it is not, or when the
    record carries no per-class figures)."""
    if not record.ok:
        return ""
    vessel = finite_float(record.metrics.get("vessel_iou"))
    miou = finite_float(record.metrics.get("deployed_miou"))
    if vessel is None or miou is None:
        return ""
    return degenerate_ious(2.0 * miou - vessel, vessel)


def degenerate(records: Sequence[EvalRecord]) -> list[EvalRecord]:
    """The successful records that are degenerate (see :func:`degenerate_reason`)."""
    return [r for r in records if degenerate_reason(r)]


def degenerate_warning(records: Sequence[EvalRecord]) -> str:
    """One warning line when most successful candidates are degenerate, else ""."""
    ok = [r for r in records if r.ok and finite_float(r.metrics.get("vessel_iou")) is not None]
    bad = degenerate(ok)
    if not ok or len(bad) <= DEGENERATE_SHARE * len(ok):
        return ""
    return (f"{len(bad)} of {len(ok)} successful candidates are degenerate (constant prediction or vessel IoU 0): "
            "their mIoU reflects the class balance, not the architecture; train longer or on more data "
            "(train.epochs, data.n_tiles) before reading the front")


def warnings_of(records: Sequence[EvalRecord], log: bool = False) -> list[str]:
    """All result warnings of ``records`` (degenerate candidates, failures); logged with ``log``."""
    out = []
    text = degenerate_warning(records)
    if text:
        out.append(text)
    failed = [r for r in records if r.status == "failed"]
    if records and len(failed) > DEGENERATE_SHARE * len(records):
        out.append(f"{len(failed)} of {len(records)} evaluations failed (see the reason column of evaluations.csv)")
    if log:
        for line in out:
            logger.warning("%s", line)
    return out


@dataclass(frozen=True)
class RunState:
    """How far a run got: ``generations_done`` of ``generations`` (progress.json, else
    history.csv, else the journal's generation stamps); ``finished`` when the search ended
    normally (summary.json written for all journaled evaluations and every generation done);
    ``running`` when a process holds the folder's lock now."""

    generations: int
    generations_done: int
    evaluations: int
    finished: bool
    running: bool = False

    @property
    def label(self) -> str:
        if self.finished:
            return "finished"
        what = "running" if self.running else "unfinished"
        if self.generations_done >= self.generations:
            return f"{what}: all {self.generations} generations evaluated, final outputs (summary.json) not written"
        return f"{what}: {self.generations_done} of {self.generations} generations done"


def lock_held(folder: Any) -> bool:
    """Whether another process holds the run folder's lock (a shared-lock probe on ``.lock``:
    never blocks, never takes the lock from anyone)."""
    import fcntl
    import os

    path = Path(folder.path) / ".lock"
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError:
        return True
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)


def run_state(folder: Any, records: Sequence[EvalRecord] | None = None, cfg: Any = None) -> RunState:
    """The :class:`RunState` of a run folder."""
    import json

    from dalp_moo.results.history import HISTORY_FILE, generations_of

    cfg = cfg or folder.config()
    records = folder.records() if records is None else records
    history = Path(folder.path) / HISTORY_FILE
    progress_path = Path(folder.path) / "progress.json"
    done = 0
    exact = True
    if progress_path.is_file():
        try:
            done = int(json.loads(progress_path.read_text()).get("generations_done", 0))
        except (ValueError, TypeError, AttributeError):
            done = 0
    if not done and history.is_file():
        done = max(0, len(history.read_text().strip().splitlines()) - 1)
    if not done and records:
        gens, _ = generations_of(records, cfg.search.population)
        done = max(gens) + 1
        exact = False
    summary_ok = False
    if folder.summary_path.is_file():
        try:
            summary_ok = int(json.loads(folder.summary_path.read_text()).get("evaluations", -1)) == len(records)
        except (ValueError, TypeError):
            summary_ok = False
    total = int(cfg.search.generations)
    running = lock_held(folder)
    # counted from the journal (older runs), a last generation answered from the cache leaves no
    # line: trust summary.json then
    finished = not running and summary_ok and (done >= total or not exact)
    return RunState(total, max(done, total) if finished else done, len(records), finished, running)
