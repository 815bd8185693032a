"""Evaluation of populations: de-duplication by canonical ID, cache, journal, executors.

The Problem hands a batch of genomes to :class:`EvaluationService`. Genomes already evaluated
(same canonical architecture ID and evaluation-config hash) are answered from the cache; the
others go to an executor (in-process, or a Dask cluster), and each finished record is appended
to the journal as soon as it arrives, stamped with its generation and its position in the
journal (``eval_index``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence
from typing import Protocol

import numpy as np

from dalp_moo.config import RunConfig
from dalp_moo.evaluation.artifacts import ArtifactStore
from dalp_moo.evaluation.evaluator import evaluate_task, get_space
from dalp_moo.evaluation.journal import Journal
from dalp_moo.evaluation.record import STATUS_FAILED, EvalRecord


class Progress(Protocol):
    """Receives progress events (the CLI shows a progress bar; the default logs)."""

    def batch_start(self, n_new: int, n_cached: int) -> None: ...

    def evaluated(self, record: EvalRecord, cached: bool) -> None: ...

    def batch_end(self) -> None: ...


#: what an executor yields per genome: (index, record, artifacts or None)
Result = tuple[int, EvalRecord, dict | None]


class Executor(Protocol):
    """Runs :func:`evaluate_task` for many genomes, yielding results as they finish."""

    def map_unordered(self, cfg: RunConfig, genomes: Sequence[list[int]]) -> Iterator[Result]: ...

    def close(self) -> None: ...


class SerialExecutor:
    """Evaluates in this process, one candidate after another."""

    def map_unordered(self, cfg: RunConfig, genomes: Sequence[list[int]]) -> Iterator[Result]:
        for i, genome in enumerate(genomes):
            yield (i, *evaluate_task(cfg, genome))

    def close(self) -> None:
        return None


def cache_key(record_or_id: EvalRecord | str, config_hash: str = "") -> str:
    """Key of the evaluation cache: canonical architecture ID + evaluation-config hash."""
    if isinstance(record_or_id, EvalRecord):
        return f"{record_or_id.arch_id}:{record_or_id.config_hash}"
    return f"{record_or_id}:{config_hash}"


class EvaluationService:
    """Evaluates batches of genomes with caching and journaling."""

    def __init__(self, cfg: RunConfig, journal: Journal | None = None, executor: Executor | None = None,
                 progress: Progress | None = None, cache: dict[str, EvalRecord] | None = None,
                 shared_cache: Journal | None = None, artifacts: ArtifactStore | None = None) -> None:
        self.cfg = cfg
        self.space = get_space(cfg)
        self.journal = journal
        self.executor: Executor = executor or SerialExecutor()
        self.progress = progress
        self.shared_cache = shared_cache
        self.artifacts = artifacts
        self.cache: dict[str, EvalRecord] = cache if cache is not None else {}
        self.config_hash = cfg.evaluation_hash()
        self.n_evaluated = 0
        self.n_cache_hits = 0
        self._journaled: set[str] = set()  # keys whose record is in this run's journal
        self.next_index = 0  # eval_index of the next record entering the journal

    def preload(self, records: Sequence[EvalRecord], include_failed: bool = True, own: bool = True) -> int:
        """Fill the cache from earlier records of the same evaluation config (the run's own
        journal on resume: all of them; a shared cache: ``include_failed=False`` so failures
        are retried, and ``own=False`` so that a record used by this run is copied into its
        journal); returns how many were taken."""
        n = 0
        for r in records:
            if r.config_hash == self.config_hash and (include_failed or r.status != STATUS_FAILED):
                self.cache[cache_key(r)] = r
                if own:
                    self._journaled.add(cache_key(r))
                    self.next_index += 1
                n += 1
        return n

    def _record_in_journal(self, key: str, record: EvalRecord, shared: bool, generation: int | None) -> None:
        """Stamp a record entering this run's journal (generation, eval_index) and append it."""
        if key in self._journaled:
            return
        self._journaled.add(key)
        record = dataclasses.replace(record, generation=generation, eval_index=self.next_index)
        self.next_index += 1
        self.cache[key] = record
        if self.journal is not None:
            self.journal.append(record)
        if shared and self.shared_cache is not None and record.status != STATUS_FAILED:
            self.shared_cache.append(record)

    def evaluate_many(self, X: np.ndarray, generation: int | None = None) -> list[EvalRecord]:
        """One record per row of ``X`` (cached where possible), in row order; ``generation``
        (0 = initial population) is recorded with new journal entries."""
        X = np.atleast_2d(X)
        ids = [self.space.decode(x).arch_id for x in X]
        keys = [cache_key(i, self.config_hash) for i in ids]
        todo: dict[str, list[int]] = {}
        for row, key in enumerate(keys):
            if key not in self.cache:
                todo.setdefault(key, []).append(row)
        n_cached = len(keys) - sum(len(v) for v in todo.values())
        if self.progress:
            self.progress.batch_start(len(todo), n_cached)
            for key in keys:
                if key in self.cache:
                    self.progress.evaluated(self.cache[key], cached=True)
        self.n_cache_hits += n_cached
        for key in dict.fromkeys(keys):
            if key in self.cache:
                self._record_in_journal(key, self.cache[key], shared=False, generation=generation)
        order = list(todo)
        genomes = [self.space.canonical(X[todo[k][0]]).tolist() for k in order]
        for i, record, artifacts in self.executor.map_unordered(self.cfg, genomes):
            if self.artifacts is not None and artifacts is not None:
                self.artifacts.save(record.arch_id, artifacts)
            self.cache[order[i]] = record
            self.n_evaluated += 1
            self._record_in_journal(order[i], record, shared=True, generation=generation)
            if self.progress:
                self.progress.evaluated(self.cache[order[i]], cached=False)
        if self.progress:
            self.progress.batch_end()
        return [self.cache[k] for k in keys]

    def close(self) -> None:
        self.executor.close()
