"""The run folder: resolved config, journal, progress, tables, plot and summary.

Layout::

    config.toml       resolved configuration, each key documented (load it with --config to repeat the run)
    meta.json         versions, evaluator description (backend, data, ...), start time,
                      hypervolume reference point, the config as started, resumes
    journal.jsonl     one line per finished evaluation (append-only, fsync'd; format 2:
                      {"format": 2, "application": NAME, ...record}, see dalp_moo.evaluation.record)
    progress.json     generations done, evaluations and elapsed time after the last finished
                      generation (JSON; a resume replays the seeded search against the journal,
                      nothing is unpickled: a checkpoint.pkl of older versions is ignored)
    .lock             held (flock) by the one process that runs or resumes the search; holds its pid
    evaluations.csv   table of all evaluations
    pareto.csv        the Pareto front (feasible, non-dominated)
    pareto.png        scatter of the front (first objective against the others)
    summary.json      front size, best candidate, hypervolume and its reference point, counts, timing
    weights/          trained weights per candidate (<arch_id>.pt, loaded with weights_only)
    diagnostics/      per-layer FP16 diagnostics per candidate (<arch_id>.json)
    ir/               vessel segmentation: OpenVINO IR (FP16 weights) of the front's candidates
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import shutil
import socket
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
#: the lock file of a run folder (see :meth:`RunFolder.lock`)
LOCK_NAME = ".lock"
#: what a start writes before the first evaluation: a folder holding only these (and no journal
#: line) holds no run yet, and a new run may reuse it
START_FILES = ("config.toml", "meta.json", "progress.json")
#: errno values of a full disk or quota, or a file size limit
DISK_FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


def disk_full_error(exc: BaseException, folder: str | Path) -> RunFolderError | None:
    """A one-line RunFolderError when ``exc`` is a write that failed for lack of space (an
    OSError with ENOSPC/EDQUOT/EFBIG, or a RuntimeError, e.g. torch's serialisation error,
    while the disk holding ``folder`` has less than 1 MiB left), else None."""
    full = isinstance(exc, OSError) and exc.errno in DISK_FULL_ERRNOS
    if not full and isinstance(exc, RuntimeError):
        try:  # torch.save reports a failed write without errno ("enforce fail ..."): look at the disk
            st = os.statvfs(folder)
            full = st.f_bavail * st.f_frsize < (1 << 20)
        except OSError:
            full = False
    if not full:
        return None
    what = exc.strerror if isinstance(exc, OSError) and exc.strerror else "no space left on device"
    return RunFolderError(f"run folder {folder}: the disk is full ({what}); finished evaluations are kept: "
                          f"free some space and continue with --resume {folder}")


def _is_start_leftover(name: str) -> bool:
    """Files a start or a lock leaves (and the temporary files of atomic writes)."""
    return (name in (LOCK_NAME, ".write-test", *START_FILES)
            or any(name.startswith(f".{f}.") for f in START_FILES))


def _file_mode() -> int:
    """The mode a plain ``open(path, "w")`` gives under the current umask (mkstemp gives 0600)."""
    umask = os.umask(0o022)
    os.umask(umask)
    return 0o666 & ~umask


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary file, fsync and rename (never half-written);
    the file gets the usual permissions (umask applied), not mkstemp's private 0600."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, _file_mode())
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


def _lock_holder(fd: int) -> str:
    """``pid N`` (and ``on host H`` when not this host) from a lock file's content."""
    try:
        words = os.pread(fd, 256, 0).decode(errors="replace").split()
    except OSError:
        words = []
    info = dict(zip(words[::2], words[1::2], strict=False))
    pid = info.get("pid", "unknown")
    host = info.get("host")
    return f"pid {pid}" + (f" on host {host}" if host and host != socket.gethostname() else "")


class RunFolder:
    """Files of one run."""

    def __init__(self, path: str | Path, application: str = "") -> None:
        self.path = Path(path)
        self.config_path = self.path / "config.toml"
        self.meta_path = self.path / "meta.json"
        self.journal = Journal(self.path / "journal.jsonl", application)
        self.checkpoint_path = self.path / "checkpoint.pkl"  # written by older versions; never read
        self.progress_path = self.path / "progress.json"
        self.lock_path = self.path / LOCK_NAME
        self.created = False  #: this process created the folder (a failed start removes it)
        self._lock_fd: int | None = None
        self.table_path = self.path / "evaluations.csv"
        self.front_path = self.path / "pareto.csv"
        self.plot_path = self.path / "pareto.png"
        self.summary_path = self.path / "summary.json"

    # -- creation ---------------------------------------------------------------------------
    @classmethod
    def create(cls, path: str | Path, cfg: RunConfig, force: bool = False) -> RunFolder:
        """Start a new run folder and hold its lock (:meth:`lock`, released by :meth:`unlock`).

        An empty folder, or one left by a start that failed before its first evaluation (only
        :data:`START_FILES`), is used. A folder holding a run is refused unless ``force``, which
        renames it to ``<path>.old-<timestamp>`` (nothing is deleted) while holding its lock, so
        a folder that another process runs in is never moved. A non-empty folder that holds no
        run is always refused, and so is moving the current directory (or one above it)."""
        p = Path(path)
        if p.exists() and not p.is_dir():
            raise RunFolderError(f"output folder {p}: exists and is not a folder")
        folder = cls(p, cfg.problem)
        folder.created = not p.exists()
        if not folder.created and folder._holds() == "other":  # refused before anything is written there
            folder._move_aside("other", force)
        try:
            p.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise RunFolderError(f"output folder {p}: not writable ({exc.strerror or exc})") from exc
        folder.lock()
        try:
            held = folder._holds()
            if held != "nothing":
                folder._move_aside(held, force)
            elif folder.progress_path.exists():  # left by an earlier start: not this run's
                folder.progress_path.unlink()
            probe = p / ".write-test"
            probe.write_text("ok")
            probe.unlink()
            folder.write_config(cfg)
        except OSError as exc:
            folder.discard_failed_start()
            full = disk_full_error(exc, p)
            raise full or RunFolderError(f"output folder {p}: not writable ({exc.strerror or exc})") from exc
        except BaseException:
            folder.unlock()
            raise
        return folder

    def _holds(self) -> str:
        """``"nothing"`` (empty, or only what a failed start leaves), ``"run"`` (a config.toml
        or a journal) or ``"other"`` (files that are not a run's)."""
        try:
            names = [entry.name for entry in self.path.iterdir()]
        except OSError as exc:
            raise RunFolderError(f"output folder {self.path}: not readable ({exc.strerror or exc})") from exc
        rest = [n for n in names if not _is_start_leftover(n)]
        journal = self.journal.path
        if not rest or (rest == [journal.name] and journal.is_file() and journal.stat().st_size == 0):
            return "nothing"
        return "run" if journal.name in names or self.config_path.name in names else "other"

    def _move_aside(self, held: str, force: bool) -> None:
        """Rename the folder (which this process holds locked) to ``<name>.old-<timestamp>`` and
        lock a fresh empty folder under the old name; refuse without ``force``."""
        p = self.path
        if held == "other":
            raise RunFolderError(f"output folder {p} is not empty and holds no dalp_moo run; give another --out"
                                 + (" (--force only moves run folders aside)" if force else ""))
        if not force:
            raise RunFolderError(
                f"output folder {p} already holds a run; use --resume {p} to continue it, "
                "--force to start over (the old folder is kept under a new name), or another --out")
        target, cwd = p.resolve(), Path.cwd().resolve()
        if target == cwd or target in cwd.parents:
            raise RunFolderError(f"output folder {p}: --force cannot move the current directory (or a folder "
                                 "above it) aside; give another --out")
        stamp = time.strftime("%Y%m%d-%H%M%S")
        backup, n = target.with_name(f"{target.name}.old-{stamp}"), 1
        while os.path.lexists(backup):  # two --force within one second
            n += 1
            backup = target.with_name(f"{target.name}.old-{stamp}-{n}")
        try:
            os.rename(target, backup)
        except OSError as exc:
            raise RunFolderError(f"output folder {p}: cannot move it aside to {backup} "
                                 f"({exc.strerror or exc})") from exc
        logger.warning("moved the existing run folder to %s", backup)
        old_fd, self._lock_fd = self._lock_fd, None
        try:
            p.mkdir(parents=True, exist_ok=True)
            self.created = True
            self.lock()
            if self._holds() != "nothing":
                self.unlock()
                raise RunFolderError(f"output folder {p}: another process started a run in it meanwhile")
        finally:
            if old_fd is not None:
                os.close(old_fd)

    # -- the lock ---------------------------------------------------------------------------
    def lock(self) -> None:
        """Take this run folder's exclusive lock (``flock`` on :data:`LOCK_NAME`; the file holds
        the holder's pid), held until :meth:`unlock` or the process ends (also by ``kill -9``).
        If another process holds it: a one-line RunFolderError naming that process."""
        if self._lock_fd is not None:
            return
        try:
            fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            what = (f"{LOCK_NAME} is a symbolic link" if exc.errno == errno.ELOOP
                    else f"not writable, cannot create its lock file ({exc.strerror or exc})")
            raise RunFolderError(f"run folder {self.path}: {what}") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            holder = _lock_holder(fd)
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise RunFolderError(f"run folder {self.path} is in use by another dalp_moo process ({holder}); "
                                     "wait for it to finish or stop it") from None
            raise RunFolderError(f"run folder {self.path}: cannot lock {LOCK_NAME} ({exc.strerror or exc})") from exc
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"pid {os.getpid()} host {socket.gethostname()}\n".encode(), 0)
        except OSError:  # a full disk: the lock holds all the same, its pid is not shown
            pass
        self._lock_fd = fd

    def unlock(self) -> None:
        """Release the lock (the lock file stays: removing it would race with a new holder)."""
        if self._lock_fd is not None:
            fd, self._lock_fd = self._lock_fd, None
            os.close(fd)

    @property
    def locked(self) -> bool:
        """Whether this object holds the folder's lock."""
        return self._lock_fd is not None

    def discard_failed_start(self) -> None:
        """Undo a start that failed before its first evaluation, so that the next run may use
        the folder: remove the folder if this process created it, else the start's files. A
        folder whose journal holds anything is kept as it is. Releases the lock."""
        try:
            journal = self.journal.path
            if journal.is_file() and journal.stat().st_size > 0:
                return
            if self.created:
                shutil.rmtree(self.path, ignore_errors=True)
            else:
                for name in (*START_FILES, journal.name):
                    try:
                        (self.path / name).unlink()
                    except OSError:
                        pass
        finally:
            self.unlock()

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
    def write_config(self, cfg: RunConfig) -> None:
        """Write config.toml atomically (a resume that changes search.generations rewrites it)."""
        atomic_write_text(self.config_path, to_toml(cfg, comments=True))

    def write_meta(self, meta: dict[str, Any]) -> None:
        atomic_write_text(self.meta_path, json.dumps(meta, indent=2, default=str))

    def save_progress(self, progress: dict[str, Any]) -> None:
        """Write progress.json (generations done, evaluations, elapsed_s) atomically."""
        atomic_write_text(self.progress_path, json.dumps(progress, indent=2, default=str))

    def progress(self) -> dict[str, Any]:
        """progress.json ({} when absent or unreadable: it only carries the elapsed time, the
        search state itself is rebuilt from the journal)."""
        try:
            data = json.loads(self.progress_path.read_text())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            logger.warning("progress %s: unreadable (%s); elapsed time restarts from 0", self.progress_path, exc)
            return {}
        return data if isinstance(data, dict) else {}

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
