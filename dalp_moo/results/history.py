"""Per-generation history of a run: ``history.csv``, rebuildable from the journal.

One row per finished generation ``g`` (0 = initial population), cumulative over generations
``0..g``:

    generation        generation index (0 = initial population)
    new_evaluations   journal lines of this generation (cache answers of earlier candidates
                      are not journaled again)
    evaluations       journal lines up to this generation
    failed            failed evaluations up to this generation
    infeasible        infeasible candidates up to this generation
    front_size        size of the Pareto front of everything evaluated so far
    hypervolume       its hypervolume against the run's fixed reference point (in [0, 1])
    best_<key>        best feasible value of each objective so far (natural units)
    started_at        ISO-8601 UTC start of the generation's first evaluation
    ended_at          ISO-8601 UTC end of the generation's last evaluation
    elapsed_s         seconds from the run's first start to this generation's last end (s)

The search driver writes the file after every generation; :func:`load_history` rebuilds it from
the journal when it is absent (older runs). Journal lines without a generation (format 1) are
assigned to generations by their order, ``search.population`` lines per generation, and the
table says so (``inferred`` column True).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd

from dalp_moo.application import feasible as is_feasible
from dalp_moo.evaluation.record import STATUS_FAILED, STATUS_INFEASIBLE, EvalRecord
from dalp_moo.results.pareto import hypervolume, pareto_front
from dalp_moo.results.summary import Scoring

HISTORY_FILE = "history.csv"


def _time(stamp: str) -> datetime | None:
    if not stamp:
        return None
    try:
        return datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    except ValueError:
        return None


def generations_of(records: Sequence[EvalRecord], population: int = 0) -> tuple[list[int], bool]:
    """The generation of each record, and whether any had to be inferred: records without one
    (format-1 journals) get ``position // population`` (journal order)."""
    out: list[int] = []
    inferred = False
    for i, r in enumerate(records):
        if r.generation is not None:
            out.append(int(r.generation))
        else:
            inferred = True
            out.append(i // population if population > 0 else 0)
    return out, inferred


def history_rows(records: Sequence[EvalRecord], scoring: Scoring, population: int = 0,
                 reference_point: Mapping[str, float] | None = None) -> list[dict[str, Any]]:
    """The history table as dicts (see the module docstring); ``reference_point`` overrides
    the run's (to compare runs against one shared reference)."""
    reference = dict(reference_point or scoring.reference_point)
    gens, inferred = generations_of(records, population)
    if not records:
        return []
    starts = [t for t in (_time(r.started_at) for r in records) if t is not None]
    t0 = min(starts) if starts else None
    rows = []
    seen: list[EvalRecord] = []
    for g in range(max(gens) + 1):
        new = [r for r, rg in zip(records, gens, strict=True) if rg == g]
        seen.extend(new)
        front = pareto_front(seen, scoring.objectives, scoring.constraints)
        feas = [r for r in seen if is_feasible(r, scoring.constraints)]
        row: dict[str, Any] = {
            "generation": g,
            "new_evaluations": len(new),
            "evaluations": len(seen),
            "failed": sum(r.status == STATUS_FAILED for r in seen),
            "infeasible": sum(r.status == STATUS_INFEASIBLE for r in seen),
            "front_size": len(front),
            "hypervolume": hypervolume(front, scoring.objectives, reference),
        }
        for o in scoring.objectives:
            values = [o.natural(r.metrics.get(o.key)) for r in feas]
            values = [v for v in values if math.isfinite(v)]
            row[f"best_{o.key}"] = (max(values) if o.direction == "max" else min(values)) if values else None
        new_starts = [t for t in (_time(r.started_at) for r in new) if t is not None]
        new_ends = [t for t in (_time(r.ended_at) for r in new) if t is not None]
        row["started_at"] = min(new_starts).isoformat() if new_starts else ""
        row["ended_at"] = max(new_ends).isoformat() if new_ends else ""
        row["elapsed_s"] = (max(new_ends) - t0).total_seconds() if new_ends and t0 is not None else None
        row["inferred"] = inferred
        rows.append(row)
    return rows


def history_table(records: Sequence[EvalRecord], scoring: Scoring, population: int = 0,
                  reference_point: Mapping[str, float] | None = None) -> pd.DataFrame:
    """:func:`history_rows` as a DataFrame (empty with the columns when there are no records)."""
    rows = history_rows(records, scoring, population, reference_point)
    columns = ["generation", "new_evaluations", "evaluations", "failed", "infeasible", "front_size", "hypervolume",
               *(f"best_{o.key}" for o in scoring.objectives), "started_at", "ended_at", "elapsed_s", "inferred"]
    return pd.DataFrame(rows, columns=columns)


def write_history(folder: Any, records: Sequence[EvalRecord], scoring: Scoring, population: int = 0,
                  generations_done: int | None = None) -> Path:
    """Write ``history.csv`` into the run folder (atomically); returns its path.

    ``generations_done`` (the driver's count of finished generations) adds empty rows for
    generations whose candidates were all answered from the cache (no journal line)."""
    from dalp_moo.results.run_folder import atomic_write_text

    table = history_table(records, scoring, population)
    if generations_done is not None and len(table) < generations_done:
        table = _extend(table, generations_done)
    path = Path(folder.path) / HISTORY_FILE
    atomic_write_text(path, table.to_csv(index=False))
    return path


def _extend(table: pd.DataFrame, n: int) -> pd.DataFrame:
    """Repeat the last row (no new evaluations) up to ``n`` generations."""
    if table.empty:
        return table
    rows = table.to_dict("records")
    while len(rows) < n:
        last = dict(rows[-1])
        last.update(generation=int(last["generation"]) + 1, new_evaluations=0, started_at="", ended_at="")
        rows.append(last)
    return pd.DataFrame(rows, columns=table.columns)


def load_history(path: str | Path, rebuild: bool = False) -> pd.DataFrame:
    """The history of a run folder: its ``history.csv``, or rebuilt from the journal when the
    file is absent or ``rebuild`` is set (the file is then not written)."""
    from dalp_moo.results.run_folder import RunFolder

    folder = RunFolder.open(path)
    file = folder.path / HISTORY_FILE
    if file.is_file() and not rebuild:
        return pd.read_csv(file, keep_default_na=True)
    cfg = folder.config()
    return history_table(folder.records(), folder.scoring(cfg), cfg.search.population)
