"""The search driver: runs a pymoo algorithm generation by generation on the Problem.

After every generation the algorithm state is checkpointed atomically; every finished evaluation
is already in the journal. ``run_search(..., resume=True)`` continues an interrupted run: the
journal fills the evaluation cache (nothing finished is retrained) and the checkpoint restores
the algorithm exactly, so the final front equals that of an uninterrupted run.
"""

from __future__ import annotations

import json
import platform
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dalp_moo import __version__
from dalp_moo.config import RunConfig, resolve_write_path
from dalp_moo.errors import RunFolderError
from dalp_moo.evaluation.artifacts import ArtifactStore
from dalp_moo.evaluation.evaluator import get_evaluator
from dalp_moo.evaluation.journal import Journal
from dalp_moo.evaluation.record import EvalRecord
from dalp_moo.evaluation.service import EvaluationService, Executor, Progress, SerialExecutor
from dalp_moo.log import logger
from dalp_moo.problem import ApplicationProblem
from dalp_moo.results.pareto import plot_front
from dalp_moo.results.run_folder import RunFolder
from dalp_moo.results.summary import Scoring, summarise
from dalp_moo.search.algorithms import make_algorithm

CHECKPOINT_VERSION = 2


class LogProgress:
    """Default progress: one log line per evaluated candidate (its objectives)."""

    def __init__(self, objectives: tuple = ()) -> None:
        self.objectives = objectives

    def batch_start(self, n_new: int, n_cached: int) -> None:
        logger.info("evaluating %d new candidates (%d from cache)", n_new, n_cached)

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
    plot_front(records, front, scoring.objectives, folder.plot_path,
               title=f"{cfg.problem}: {cfg.search.algorithm}, backend {cfg.backend.name}")
    folder.write_summary(summary)
    return SearchOutcome(folder, records, front, summary)


def _write_meta(folder: RunFolder, cfg: RunConfig, evaluator: Any, reference: dict[str, float],
                resume: bool, n_previous: int) -> None:
    """Write meta.json; a resume keeps the original and appends to its ``resumes`` list."""
    now = time.strftime("%Y-%m-%dT%H:%M:%S")
    if resume and folder.meta_path.exists():
        meta = json.loads(folder.meta_path.read_text())
        meta.setdefault("resumes", []).append({"at": now, "finished_evaluations": n_previous})
    else:
        meta = {
            **evaluator.describe(),  # the framework's keys below take precedence
            "versions": _versions(),
            "application": {"name": cfg.problem, "version": cfg.application.version},
            "hypervolume_reference": reference,
            "started": now,
            "config_hash": cfg.evaluation_hash(),
        }
    folder.write_meta(meta)


def make_executor(cfg: RunConfig) -> Executor:
    """In-process evaluation, or a Dask cluster when ``search.workers`` / ``search.scheduler`` is set."""
    if cfg.search.workers > 0 or cfg.search.scheduler:
        from dalp_moo.evaluation.dask_executor import DaskExecutor

        train = cfg.sections.get("train")  # the application's per-evaluation memory budget, if it has one
        return DaskExecutor(workers=cfg.search.workers, scheduler=cfg.search.scheduler,
                            memory_limit_mb=int(getattr(train, "max_memory_mb", 0)))
    return SerialExecutor()


def run_search(
    cfg: RunConfig | None,
    out: str | Path,
    *,
    resume: bool = False,
    force: bool = False,
    progress: Progress | None = None,
    executor: Executor | None = None,
) -> SearchOutcome:
    """Run (or resume) a search into the run folder ``out``. With ``resume`` the folder's own
    config is used; ``cfg``, if given, must match it."""
    t_start = time.perf_counter()
    if resume:
        folder = RunFolder.open(out)
        if folder.format < 2:
            raise RunFolderError(f"resume {out}: the run folder was written by an older version of dalp_moo "
                                 "(format 1); it can be shown and analysed, but not resumed")
        saved = folder.config()
        if cfg is not None and (cfg.evaluation_hash() != saved.evaluation_hash() or cfg.search != saved.search):
            raise RunFolderError(f"resume {out}: the given config differs from the run's config.toml")
        cfg = saved
    else:
        if cfg is None:
            raise ValueError("cfg is required for a new run")
        folder = RunFolder.create(out, cfg, force=force)
    if "data" in cfg.sections and getattr(cfg.data, "cache_dir", ""):  # relative: inside the run folder
        cfg = cfg.replace("data", cache_dir=str(resolve_write_path(cfg.data.cache_dir, folder.path)))
    app = cfg.application
    evaluator = get_evaluator(cfg)
    shared = None
    if cfg.search.cache_dir:
        cache_dir = resolve_write_path(cfg.search.cache_dir, folder.path)
        cache_dir.mkdir(parents=True, exist_ok=True)
        shared = Journal(cache_dir / "cache.jsonl", cfg.problem)
    scoring = Scoring(tuple(app.objectives(cfg)), tuple(app.constraints(cfg)),
                      folder.scoring(cfg).reference_point if resume else app.reference_point(cfg))
    service = EvaluationService(cfg, journal=folder.journal, progress=progress or LogProgress(scoring.objectives),
                                shared_cache=shared, artifacts=ArtifactStore(folder.path))
    previous = folder.records() if resume else []
    foreign = {r.config_hash for r in previous} - {cfg.evaluation_hash()}
    if foreign:
        raise RunFolderError(f"resume {folder.path}: journal.jsonl holds evaluations of another config "
                             f"(hash {sorted(foreign)[0]}); config.toml was changed after the run started")
    if shared is not None:
        service.preload(shared.read(), include_failed=False, own=False)
    service.preload(previous)
    state = folder.load_checkpoint() if resume else None
    if state is not None and (state.get("version") != CHECKPOINT_VERSION
                              or state.get("config_hash") != cfg.evaluation_hash()):
        raise RunFolderError(f"checkpoint {folder.checkpoint_path}: from another version or config")
    _write_meta(folder, cfg, evaluator, scoring.reference_point, resume, len(previous))
    service.executor = executor or make_executor(cfg)
    if state is not None:
        algorithm = state["algorithm"]
        algorithm.problem.service = service
        elapsed_before = float(state.get("elapsed_s", 0.0))
        logger.info("resuming after generation %d with %d finished evaluations", algorithm.n_gen or 0, len(previous))
    else:
        problem = ApplicationProblem(cfg, service=service)
        algorithm = make_algorithm(cfg, problem.space)
        algorithm.setup(problem, termination=("n_gen", cfg.search.generations), seed=cfg.search.seed,
                        verbose=False)
        elapsed_before = 0.0
        if resume:
            logger.info("resuming from the journal (%d finished evaluations, no checkpoint yet)", len(previous))

    first = scoring.objectives[0]
    try:
        while algorithm.has_next():
            algorithm.next()
            elapsed = elapsed_before + time.perf_counter() - t_start
            folder.save_checkpoint({"version": CHECKPOINT_VERSION, "config_hash": cfg.evaluation_hash(),
                                    "algorithm": algorithm, "elapsed_s": elapsed})
            _, summary = summarise(folder.records(), scoring, elapsed)
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
    return _finish(folder, cfg, scoring, elapsed_before + time.perf_counter() - t_start)
