"""The search driver: runs a pymoo algorithm generation by generation on the Problem.

One process at a time runs in a run folder: it holds the folder's lock (see
:meth:`~dalp_moo.results.RunFolder.lock`) from the start, or the resume, to the end.

Every finished evaluation is in the journal, and nothing else is needed to continue:
``run_search(..., resume=True)`` fills the evaluation cache with the journal (canonical ID +
evaluation-config hash) and replays the seeded algorithm from its first generation. Replayed
generations are answered from the cache (nothing is retrained, journaled again or counted again),
so the algorithm passes through the same populations and continues where the run stopped; the
final front equals that of an uninterrupted run. No algorithm state is pickled or unpickled.
A resume may extend (or shorten) ``search.generations`` and change how the search is executed
(workers, scheduler, threads, cache folders); any other change of config.toml is refused.
"""

from __future__ import annotations

import dataclasses
import json
import platform
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dalp_moo import __version__
from dalp_moo.config import RunConfig, resolve_write_path
from dalp_moo.errors import ConfigError, DalpError, RunFolderError
from dalp_moo.evaluation.artifacts import ArtifactStore
from dalp_moo.evaluation.evaluator import get_evaluator
from dalp_moo.evaluation.journal import Journal
from dalp_moo.evaluation.record import EvalRecord
from dalp_moo.evaluation.service import EvaluationService, Executor, Progress, SerialExecutor
from dalp_moo.log import logger
from dalp_moo.problem import ApplicationProblem
from dalp_moo.results.checks import warnings_of
from dalp_moo.results.history import write_history
from dalp_moo.results.plots import write_front_plot
from dalp_moo.results.run_folder import RunFolder, disk_full_error
from dalp_moo.results.summary import Scoring, summarise
from dalp_moo.search.algorithms import make_algorithm

#: search keys a resume may change: the length of the search and how it is executed
RESUME_SEARCH_KEYS = ("generations", "workers", "scheduler", "cache_dir")


class LogProgress:
    """Default progress: one log line per evaluated candidate (its objectives)."""

    def __init__(self, objectives: tuple = ()) -> None:
        self.objectives = objectives

    def batch_start(self, n_new: int, n_cached: int) -> None:
        logger.info("evaluating %d new candidates (%d cached)", n_new, n_cached)

    def evaluated(self, record: EvalRecord, cached: bool) -> None:
        if cached:
            return
        if record.ok:
            shown = ", ".join(o.format(record.metrics.get(o.key)) for o in self.objectives)
            logger.info("  %s  %s  (%.0f s)", record.arch_id, shown, record.train_time_s + record.eval_time_s)
        else:
            logger.info("  %s  %s: %s", record.arch_id, record.status, record.reason)

    def batch_end(self) -> None:
        return None


@dataclass(frozen=True)
class SearchOutcome:
    """What a finished search returns: the run folder, all records, the front and the summary."""

    folder: RunFolder
    records: list[EvalRecord]
    front: list[EvalRecord]
    summary: dict[str, Any]


def _versions() -> dict[str, str]:
    import numpy
    import pymoo
    import torch

    out = {"dalp_moo": __version__, "python": platform.python_version(), "torch": torch.__version__,
           "pymoo": pymoo.__version__, "numpy": numpy.__version__}
    try:
        import openvino

        out["openvino"] = openvino.__version__
    except Exception:  # openvino is optional for the analytic backend
        pass
    return out


def _finish(folder: RunFolder, cfg: RunConfig, scoring: Scoring, elapsed_s: float) -> SearchOutcome:
    records = folder.records()
    front, summary = summarise(records, scoring, elapsed_s)
    summary.update(cfg.application.on_finish(folder.path, cfg, front))
    folder.write_tables(records, front)
    write_history(folder, records, scoring, cfg.search.population, cfg.search.generations)
    write_front_plot(folder, cfg, records, front, scoring)
    summary["warnings"] = warnings_of(records, log=True)
    folder.write_summary(summary)
    return SearchOutcome(folder, records, front, summary)


def _write_meta(folder: RunFolder, cfg: RunConfig, evaluator: Any, reference: dict[str, float],
                resume: bool, n_previous: int, changes: dict[str, tuple[Any, Any]]) -> None:
    """Write meta.json (with ``config``: the config as started, what a resume compares
    config.toml with); a resume keeps the original, records the config it continues with and
    appends to its ``resumes`` list (with the config changes it applied)."""
    now = time.strftime("%Y-%m-%dT%H:%M:%S")
    if resume and folder.meta_path.exists():
        meta = folder.meta()
        entry: dict[str, Any] = {"at": now, "finished_evaluations": n_previous}
        if changes:
            entry["changes"] = {key: list(pair) for key, pair in changes.items()}
        meta.setdefault("resumes", []).append(entry)
        meta["config"] = cfg.to_dict()
    else:
        meta = {
            **evaluator.describe(),  # the framework's keys below take precedence
            "versions": _versions(),
            "application": {"name": cfg.problem, "version": cfg.application.version},
            "hypervolume_reference": reference,
            "started": now,
            "config_hash": cfg.evaluation_hash(),
            "config": cfg.to_dict(),
        }
    folder.write_meta(meta)


def make_executor(cfg: RunConfig) -> Executor:
    """In-process evaluation, or a Dask cluster when ``search.workers`` / ``search.scheduler`` is
    set. A cluster that cannot be started or reached is a one-line ConfigError."""
    if cfg.search.workers > 0 or cfg.search.scheduler:
        from dalp_moo.evaluation.dask_executor import DaskExecutor

        train = cfg.sections.get("train")  # the application's per-evaluation memory budget, if it has one
        try:
            return DaskExecutor(workers=cfg.search.workers, scheduler=cfg.search.scheduler,
                                memory_limit_mb=int(getattr(train, "max_memory_mb", 0)))
        except DalpError:
            raise
        except Exception as exc:  # the cluster's own errors (address, protocol, ports)
            first = (str(exc).splitlines() or [""])[0]
            if cfg.search.scheduler:
                raise ConfigError(f"search.scheduler: cannot connect to the Dask scheduler at {cfg.search.scheduler} "
                                  f"({type(exc).__name__}: {first})") from exc
            raise ConfigError(f"search.workers: cannot start a local Dask cluster of {cfg.search.workers} workers "
                              f"({type(exc).__name__}: {first})") from exc
    return SerialExecutor()


def resume_editable(cfg: RunConfig) -> set[str]:
    """Config keys (``section.key``) that may differ between a run's start and its resume:
    ``search.generations`` and the keys of how the search is executed (the search keys
    :data:`RESUME_SEARCH_KEYS` and every other section's fields outside the evaluation hash:
    threads, cache folders, ``backend.export_ir``)."""
    keys = {f"search.{k}" for k in RESUME_SEARCH_KEYS}
    for name, section in cfg.section_items():
        if name != "search":
            keys |= {f"{name}.{f.name}" for f in dataclasses.fields(section) if not f.metadata.get("hash", True)}
    return keys


def _flat(values: dict[str, Any]) -> dict[str, Any]:
    """``{"search": {"population": 4}}`` -> ``{"search.population": 4}`` (JSON-normalised)."""
    values = json.loads(json.dumps(values, default=str))
    out: dict[str, Any] = {}
    for name, content in values.items():
        if isinstance(content, dict):
            out.update({f"{name}.{key}": value for key, value in content.items()})
        else:
            out[name] = content
    return out


def _resume_config(folder: RunFolder, given: RunConfig | None,
                   generations: int | None) -> tuple[RunConfig, dict[str, tuple[Any, Any]]]:
    """The config a resume continues with (config.toml, ``generations`` applied) and the changes
    against the config as started (``{key: (old, new)}``). Edits outside :func:`resume_editable`
    are refused with one line naming the key."""
    if folder.format < 2:
        raise RunFolderError(f"resume {folder.path}: the run folder was written by an older version of dalp_moo "
                             "(format 1); it can be shown and analysed, but not resumed")
    saved = folder.config()
    if given is not None and (given.evaluation_hash() != saved.evaluation_hash() or given.search != saved.search):
        raise RunFolderError(f"resume {folder.path}: the given config differs from the run's config.toml")
    meta = folder.meta()
    changes: dict[str, tuple[Any, Any]] = {}
    started = meta.get("config")
    if isinstance(started, dict):
        before, now = _flat(started), _flat(saved.to_dict())
        allowed = resume_editable(saved)
        for key in sorted(set(before) & set(now)):  # keys of other versions' configs are not compared
            if before[key] == now[key]:
                continue
            if key not in allowed:
                raise RunFolderError(
                    f"resume {folder.path}: config.toml was edited after the run started ({key}: {before[key]!r} -> "
                    f"{now[key]!r}); a resume may only change search.generations and how the search runs "
                    f"(workers, scheduler, threads, cache folders): restore {key}, or start a new run with "
                    f"--config {folder.config_path}")
            changes[key] = (before[key], now[key])
    elif meta.get("config_hash") not in (None, saved.evaluation_hash()):
        raise RunFolderError(f"resume {folder.path}: config.toml was changed after the run started (its evaluation "
                             f"hash is {saved.evaluation_hash()}, the run's {meta['config_hash']})")
    if generations is not None and generations != saved.search.generations:
        old = changes.get("search.generations", (saved.search.generations, None))[0]
        saved = saved.replace("search", generations=generations)
        changes["search.generations"] = (old, generations)
    return saved, changes


class _ReplayProgress:
    """Forwards progress events; notes which candidates of the journal the replayed search has
    asked for (all of them, by the end of the first generation that evaluates anything new)."""

    def __init__(self, inner: Progress | None, previous: list[EvalRecord]) -> None:
        self.inner = inner
        self.pending = {r.arch_id for r in previous}
        self.on_first_new: Any = None  #: called once, before the first new evaluation starts

    def batch_start(self, n_new: int, n_cached: int) -> None:
        if n_new and self.on_first_new is not None:
            callback, self.on_first_new = self.on_first_new, None
            callback()
        if self.inner is not None:
            self.inner.batch_start(n_new, n_cached)

    def evaluated(self, record: EvalRecord, cached: bool) -> None:
        if cached:
            self.pending.discard(record.arch_id)
        if self.inner is not None:
            self.inner.evaluated(record, cached)

    def batch_end(self) -> None:
        if self.inner is not None:
            self.inner.batch_end()


@dataclass
class _Start:
    """What :func:`_start` prepared for the search loop."""

    cfg: RunConfig
    scoring: Scoring
    service: EvaluationService
    algorithm: Any
    tracker: _ReplayProgress
    previous: list[EvalRecord]
    elapsed_before: float


def _start(folder: RunFolder, cfg: RunConfig | None, resume: bool, generations: int | None,
           progress: Progress | None, executor: Executor | None) -> _Start:
    """Everything between taking the folder and the first generation (the folder is locked)."""
    changes: dict[str, tuple[Any, Any]] = {}
    if resume:
        cfg, changes = _resume_config(folder, cfg, generations)
    assert cfg is not None
    as_started = cfg
    data_cache = getattr(cfg.sections.get("data"), "cache_dir", "")
    if data_cache:  # relative: inside the run folder
        cfg = cfg.replace("data", cache_dir=str(resolve_write_path(data_cache, folder.path)))
    app = cfg.application
    evaluator = get_evaluator(cfg)
    shared = None
    if cfg.search.cache_dir:
        cache_dir = resolve_write_path(cfg.search.cache_dir, folder.path)
        cache_dir.mkdir(parents=True, exist_ok=True)
        shared = Journal(cache_dir / "cache.jsonl", cfg.problem)
    scoring = Scoring(tuple(app.objectives(cfg)), tuple(app.constraints(cfg)),
                      folder.scoring(cfg).reference_point if resume else app.reference_point(cfg))
    previous = folder.records() if resume else []
    foreign = {r.config_hash for r in previous} - {cfg.evaluation_hash()}
    if foreign:
        raise RunFolderError(f"resume {folder.path}: journal.jsonl holds evaluations of another config "
                             f"(hash {sorted(foreign)[0]}); config.toml was changed after the run started")
    done = max((r.generation for r in previous if isinstance(r.generation, int)), default=-1) + 1
    if cfg.search.generations < done:
        raise RunFolderError(f"resume {folder.path}: the journal holds evaluations of {done} generations, "
                             f"more than search.generations = {cfg.search.generations}; give --generations {done} "
                             "or more")
    tracker = _ReplayProgress(progress or LogProgress(scoring.objectives), previous)
    service = EvaluationService(cfg, journal=folder.journal, progress=tracker, shared_cache=shared,
                                artifacts=ArtifactStore(folder.path))
    if shared is not None:
        service.preload(shared.read(), include_failed=False, own=False)
    service.preload(previous)
    if resume and (folder.checkpoint_path.exists() or folder.checkpoint_path.is_symlink()):
        logger.warning("%s is ignored (written by an older version): a resume replays the seeded search against "
                       "the journal and never unpickles anything", folder.checkpoint_path)
    if resume:
        _warn_other_versions(folder)
    service.executor = executor or make_executor(cfg)
    try:
        if changes:
            folder.write_config(as_started)
            for key, (old, new) in changes.items():
                logger.info("resume: %s %r -> %r%s", key, old, new,
                            " (the run is extended)" if key == "search.generations" and new > old else "")
        _write_meta(folder, as_started, evaluator, scoring.reference_point, resume, len(previous), changes)
        problem = ApplicationProblem(cfg, service=service)
        algorithm = make_algorithm(cfg, problem.space)
        algorithm.setup(problem, termination=("n_gen", cfg.search.generations), seed=cfg.search.seed,
                        verbose=False)
    except BaseException:
        service.close()
        raise
    elapsed_before = float(folder.progress().get("elapsed_s", 0.0) or 0.0) if resume else 0.0
    if resume:
        logger.info("resuming %s: %d finished evaluations in the journal; replaying the seeded search against "
                    "them (nothing finished is retrained)", folder.path, len(previous))
    return _Start(cfg, scoring, service, algorithm, tracker, previous, elapsed_before)


def _warn_other_versions(folder: RunFolder) -> None:
    """Warn when the run was started with other versions of the libraries that decide the
    search's random choices (a replay may then take other decisions)."""
    started = folder.meta().get("versions") or {}
    now = _versions()
    other = [f"{k} {started[k]} -> {now[k]}" for k in ("pymoo", "numpy", "dalp_moo")
             if k in started and k in now and started[k] != now[k]]
    if other:
        logger.warning("resume with other versions than the start (%s): the replayed search may differ from "
                       "the interrupted one", ", ".join(other))


def run_search(
    cfg: RunConfig | None,
    out: str | Path,
    *,
    resume: bool = False,
    force: bool = False,
    progress: Progress | None = None,
    executor: Executor | None = None,
    generations: int | None = None,
) -> SearchOutcome:
    """Run (or resume) a search into the run folder ``out``, holding the folder's lock
    throughout. With ``resume`` the folder's own config is used (``cfg``, if given, must match
    it); ``generations`` then sets ``search.generations`` (a finished run is extended). A new
    run whose start fails leaves no folder behind (or only an empty one it did not create)."""
    t_start = time.perf_counter()
    if resume:
        folder = RunFolder.open(out)
        folder.lock()
    else:
        if cfg is None:
            raise ValueError("cfg is required for a new run")
        folder = RunFolder.create(out, cfg, force=force)
    try:
        start = _start(folder, cfg, resume, generations, progress, executor)
    except BaseException as exc:
        if resume:
            folder.unlock()
        else:
            folder.discard_failed_start()
        full = disk_full_error(exc, folder.path) if isinstance(exc, Exception) else None
        if full is not None:
            raise full from exc
        raise
    try:
        return _search(folder, start, t_start)
    except Exception as exc:
        full = disk_full_error(exc, folder.path)
        if full is not None:
            raise full from exc
        raise
    finally:
        folder.unlock()


def _search(folder: RunFolder, start: _Start, t_start: float) -> SearchOutcome:
    """The generation loop (replayed generations first) and the end of the run."""
    cfg, scoring, service, algorithm = start.cfg, start.scoring, start.service, start.algorithm
    elapsed_before = start.elapsed_before
    replaying = bool(start.previous)
    replayed = 0

    def replay_done() -> None:
        if replayed:
            logger.info("replayed generations 1-%d of %d from the journal (cached, not retrained); continuing "
                        "with generation %d", replayed, cfg.search.generations, replayed + 1)

    start.tracker.on_first_new = replay_done if replaying else None
    first = scoring.objectives[0]
    try:
        while algorithm.has_next():
            n_before = service.n_evaluated
            algorithm.next()
            elapsed = elapsed_before + time.perf_counter() - t_start
            if replaying:
                if service.n_evaluated == n_before:  # the whole generation came from the journal
                    replayed = algorithm.n_iter - 1
                    continue
                replaying = False
                _check_replay(start.tracker)
            records = folder.records()
            _, summary = summarise(records, scoring, elapsed)
            folder.save_progress({"generations_done": algorithm.n_iter - 1, "generations": cfg.search.generations,
                                  "evaluations": summary["evaluations"], "elapsed_s": elapsed,
                                  "updated": time.strftime("%Y-%m-%dT%H:%M:%S")})
            write_history(folder, records, scoring, cfg.search.population, algorithm.n_iter - 1)
            best = summary[f"best_{first.key}"]
            logger.info("generation %d/%d: %d evaluations so far (%d failed), front %d, best %s %s, HV %.4f",
                        algorithm.n_gen - 1 if algorithm.n_gen else 0, cfg.search.generations,
                        summary["evaluations"], summary["failed"], summary["front_size"], first.key,
                        f"{best:.4g}" if best is not None else "-", summary["hypervolume"])
    except KeyboardInterrupt:
        logger.warning("interrupted: finished evaluations are in %s; continue with --resume %s",
                       folder.journal.path, folder.path)
        raise
    finally:
        service.close()
    if replaying and replayed:
        logger.info("all %d generations replayed from the journal: the run was finished; outputs written again",
                    replayed)
    return _finish(folder, cfg, scoring, elapsed_before + time.perf_counter() - t_start)


def _check_replay(tracker: _ReplayProgress) -> None:
    """After the first generation that evaluated something new, every journal candidate must
    have been asked for again; otherwise the replay took other decisions than the run."""
    if tracker.pending:
        logger.warning("resume: %d evaluations of the journal were not asked for again by the replayed search "
                       "(e.g. %s): it took other decisions than the interrupted run (other pymoo/numpy versions?); "
                       "they stay in the journal and in the results", len(tracker.pending), sorted(tracker.pending)[0])
