"""The search driver: runs a pymoo algorithm generation by generation on the Problem.

After every generation the algorithm state is checkpointed atomically; every finished evaluation
is already in the journal. ``run_search(..., resume=True)`` continues an interrupted run: the
journal fills the evaluation cache (nothing finished is retrained) and the checkpoint restores
the algorithm exactly, so the final front equals that of an uninterrupted run.
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
from dalp_moo.errors import RunFolderError
from dalp_moo.evaluation.artifacts import ArtifactStore
from dalp_moo.evaluation.evaluator import get_evaluator
from dalp_moo.evaluation.journal import Journal
from dalp_moo.evaluation.record import EvalRecord
from dalp_moo.evaluation.service import EvaluationService, Executor, Progress, SerialExecutor
from dalp_moo.log import logger
from dalp_moo.results.pareto import feasible, hypervolume, normalisation, pareto_front, plot_front
from dalp_moo.results.run_folder import RunFolder
from dalp_moo.search.algorithms import make_algorithm
from problems.vessel_segmentation import VesselSegmentationProblem

CHECKPOINT_VERSION = 1


class LogProgress:
    """Default progress: one log line per evaluated candidate."""

    def batch_start(self, n_new: int, n_cached: int) -> None:
        logger.info("evaluating %d new candidates (%d from cache)", n_new, n_cached)

    def evaluated(self, record: EvalRecord, cached: bool) -> None:
        if cached:
            return
        if record.ok:
            logger.info("  %s  mIoU %.3f  %.2f ms  %d params  (%.0f s)", record.arch_id,
                        record.deployed_miou or 0.0, record.latency_ms or 0.0, record.params,
                        record.train_time_s + record.eval_time_s)
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


def summarise(cfg: RunConfig, records: list[EvalRecord], elapsed_s: float) -> tuple[list[EvalRecord], dict[str, Any]]:
    """Front and summary numbers of a set of records."""
    feas = feasible(records, cfg.space.param_cap, cfg.backend.latency_budget_ms)
    front = pareto_front(feas)
    scale = normalisation(feas, cfg.space.param_cap)
    best = max(feas, key=lambda r: r.deployed_miou or 0.0) if feas else None
    summary = {
        "evaluations": len(records),
        "unique_architectures": len({r.arch_id for r in records}),
        "failed": sum(1 for r in records if r.status == "failed"),
        "feasible": len(feas),
        "front_size": len(front),
        "best_deployed_miou": best.deployed_miou if best else None,
        "best_arch_id": best.arch_id if best else None,
        "best_fp32_miou": best.fp32_miou if best else None,
        "best_params": best.params if best else None,
        "best_latency_ms": best.latency_ms if best else None,
        "hypervolume": hypervolume(front, scale),
        "hypervolume_scale": {"1-miou": 1.0, "latency_ms": float(scale[1]), "params": float(scale[2])},
        "emulated": any(r.emulated for r in records),
        "elapsed_s": elapsed_s,
    }
    return front, summary


def _finish(folder: RunFolder, cfg: RunConfig, elapsed_s: float) -> SearchOutcome:
    records = folder.records()
    front, summary = summarise(cfg, records, elapsed_s)
    if cfg.backend.export_ir and front:
        from dalp_moo.results.export import export_front_ir

        summary["ir_exported"] = len(export_front_ir(folder.path, cfg, front))
    folder.write_tables(records, front)
    plot_front(records, front, folder.plot_path,
               title=f"{cfg.search.algorithm} on {cfg.data.source}, backend {cfg.backend.name}")
    folder.write_summary(summary)
    return SearchOutcome(folder, records, front, summary)


def _write_meta(folder: RunFolder, cfg: RunConfig, evaluator: Any, resume: bool, n_previous: int) -> None:
    """Write meta.json; a resume keeps the original and appends to its ``resumes`` list."""
    now = time.strftime("%Y-%m-%dT%H:%M:%S")
    if resume and folder.meta_path.exists():
        meta = json.loads(folder.meta_path.read_text())
        meta.setdefault("resumes", []).append({"at": now, "finished_evaluations": n_previous})
    else:
        meta = {
            "versions": _versions(),
            "backend": evaluator.backend_info.__dict__,
            "input_normalization": {"method": cfg.data.normalization, "shift": evaluator.norm[0],
                                    "scale": evaluator.norm[1]},
            "data": evaluator.source.describe(),
            "started": now,
            "config_hash": cfg.evaluation_hash(),
        }
    folder.write_meta(meta)


def make_executor(cfg: RunConfig) -> Executor:
    """In-process evaluation, or a Dask cluster when ``search.workers`` / ``search.scheduler`` is set."""
    if cfg.search.workers > 0 or cfg.search.scheduler:
        from dalp_moo.evaluation.dask_executor import DaskExecutor

        return DaskExecutor(workers=cfg.search.workers, scheduler=cfg.search.scheduler,
                            memory_limit_mb=cfg.train.max_memory_mb)
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
        saved = folder.config()
        if cfg is not None and (cfg.evaluation_hash() != saved.evaluation_hash() or cfg.search != saved.search):
            raise RunFolderError(f"resume {out}: the given config differs from the run's config.toml")
        cfg = saved
    else:
        if cfg is None:
            raise ValueError("cfg is required for a new run")
        folder = RunFolder.create(out, cfg, force=force)
    if cfg.data.cache_dir:  # relative cache folders live inside the run folder
        data = dataclasses.replace(cfg.data, cache_dir=str(resolve_write_path(cfg.data.cache_dir, folder.path)))
        cfg = dataclasses.replace(cfg, data=data)
    evaluator = get_evaluator(cfg)
    in_channels = evaluator.source.bands
    shared = None
    if cfg.search.cache_dir:
        cache_dir = resolve_write_path(cfg.search.cache_dir, folder.path)
        cache_dir.mkdir(parents=True, exist_ok=True)
        shared = Journal(cache_dir / "cache.jsonl")
    service = EvaluationService(cfg, journal=folder.journal, progress=progress or LogProgress(),
                                shared_cache=shared, artifacts=ArtifactStore(folder.path))
    previous = folder.records() if resume else []
    foreign = {r.config_hash for r in previous} - {cfg.evaluation_hash()}
    if foreign:
        raise RunFolderError(f"resume {folder.path}: journal.jsonl holds evaluations of another config "
                             f"(hash {sorted(foreign)[0]}); config.toml was changed after the run started")
    if cfg.data.tile_size < 2 ** cfg.space.max_units:
        logger.warning("data.tile_size %d is smaller than 2^max_units = %d: candidates with that many "
                       "units will fail", cfg.data.tile_size, 2 ** cfg.space.max_units)
    if shared is not None:
        service.preload(shared.read(), include_failed=False, own=False)
    service.preload(previous)
    state = folder.load_checkpoint() if resume else None
    if state is not None and (state.get("version") != CHECKPOINT_VERSION
                              or state.get("config_hash") != cfg.evaluation_hash()):
        raise RunFolderError(f"checkpoint {folder.checkpoint_path}: from another version or config")
    _write_meta(folder, cfg, evaluator, resume, len(previous))
    service.executor = executor or make_executor(cfg)
    if state is not None:
        algorithm = state["algorithm"]
        algorithm.problem.service = service
        elapsed_before = float(state.get("elapsed_s", 0.0))
        logger.info("resuming after generation %d with %d finished evaluations", algorithm.n_gen or 0, len(previous))
    else:
        problem = VesselSegmentationProblem(cfg, service=service)
        algorithm = make_algorithm(cfg, in_channels)
        algorithm.setup(problem, termination=("n_gen", cfg.search.generations), seed=cfg.search.seed,
                        verbose=False)
        elapsed_before = 0.0
        if resume:
            logger.info("resuming from the journal (%d finished evaluations, no checkpoint yet)", len(previous))

    try:
        while algorithm.has_next():
            algorithm.next()
            elapsed = elapsed_before + time.perf_counter() - t_start
            folder.save_checkpoint({"version": CHECKPOINT_VERSION, "config_hash": cfg.evaluation_hash(),
                                    "algorithm": algorithm, "elapsed_s": elapsed})
            records = folder.records()
            front, summary = summarise(cfg, records, elapsed)
            logger.info("generation %d/%d: %d evaluations so far (%d failed), front %d, best mIoU %s, HV %.4f",
                        algorithm.n_gen - 1 if algorithm.n_gen else 0, cfg.search.generations,
                        summary["evaluations"], summary["failed"], summary["front_size"],
                        f"{summary['best_deployed_miou']:.3f}" if summary["best_deployed_miou"] is not None else "-",
                        summary["hypervolume"])
    except KeyboardInterrupt:
        logger.warning("interrupted: finished evaluations are in %s; continue with --resume %s",
                       folder.journal.path, folder.path)
        raise
    finally:
        service.close()
    return _finish(folder, cfg, elapsed_before + time.perf_counter() - t_start)
