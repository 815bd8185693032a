"""One run folder loaded for looking at it: config, scoring, records, front, history, state.

    view = RunView.load("runs/default-...")
    view.title          # run name, problem, algorithm, seed, budget, backend and its label
    view.table()        # all evaluations as a DataFrame, ``on_front`` / ``degenerate`` flagged

Plots (:mod:`dalp_moo.results.plots`), the report, ``show`` and ``compare`` read runs through
this class.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from dalp_moo.application import Objective
from dalp_moo.application import feasible as is_feasible
from dalp_moo.config import RunConfig
from dalp_moo.evaluation.record import EvalRecord
from dalp_moo.results.checks import RunState, degenerate_reason, run_state, warnings_of
from dalp_moo.results.history import HISTORY_FILE, generations_of, history_table
from dalp_moo.results.run_folder import RunFolder
from dalp_moo.results.summary import Scoring, summarise

#: label words an objective name may already carry
LABEL_WORDS = ("emulated", "modelled", "measured")


def unit_text(o: Objective) -> str:
    """Display form of an objective's unit ("" when the name says it, e.g. parameters)."""
    if o.unit in ("", o.name) or (o.unit == "parameters" and "param" in o.name.lower()):
        return ""
    return o.unit.replace("uJ", "µJ").replace("*", "·")


def objective_tag(o: Objective, records: list[EvalRecord]) -> str:
    """How a figure of ``o`` was obtained: "" for counted quantities (parameters) or names that
    say it already; else the records' ``<prefix>_method`` metric (latency_ms ->
    latency_method: measured / modelled / emulated), else "emulated" when any record comes
    from an emulated backend, "measured" otherwise."""
    if o.unit == "parameters" or any(w in o.name.lower() for w in LABEL_WORDS):
        return ""
    ok = [r for r in records if r.ok]
    method_key = o.key.rsplit("_", 1)[0] + "_method"
    methods = sorted({str(r.metrics[method_key]) for r in ok if r.metrics.get(method_key)})
    if methods:
        return "/".join(methods)
    return "emulated" if any(r.emulated for r in ok) else "measured"


def axis_label(o: Objective, records: list[EvalRecord]) -> str:
    """``on-device mIoU (fraction, emulated)``, ``latency (ms, emulated)``, ``parameters``."""
    parts = ", ".join(p for p in (unit_text(o), objective_tag(o, records)) if p)
    if not parts:
        return o.name
    if o.name.endswith(")"):  # "accuracy (calibration split)" -> "accuracy (calibration split; fraction)"
        return f"{o.name[:-1]}; {parts})"
    return f"{o.name} ({parts})"


def format_value(value: Any, unit: str) -> str:
    """A natural value rounded for display: fractions 4 decimals, ms 3, parameters as an
    integer with thousands separators, others 4 significant digits; "-" when missing."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        return "-" if value is None else str(value)
    if not math.isfinite(v):
        return "-"
    if unit == "parameters":
        return f"{v:,.0f}"
    if unit == "fraction":
        return f"{v:.4f}"
    if unit == "ms":
        return f"{v:.3f}"
    return f"{v:.4g}"


def with_unit(value: Any, unit: str) -> str:
    """:func:`format_value` followed by the unit where it is not implied (``2.282 ms``)."""
    text = format_value(value, unit)
    return text if text == "-" or unit in ("", "fraction", "parameters") else f"{text} {unit}"


@dataclass
class RunView:
    """Everything needed to look at one run folder (read once)."""

    folder: RunFolder
    cfg: RunConfig
    scoring: Scoring
    records: list[EvalRecord]
    front: list[EvalRecord]
    summary: dict[str, Any]
    meta: dict[str, Any]
    history: pd.DataFrame
    state: RunState
    warnings: list[str] = field(default_factory=list)

    @classmethod
    def load(cls, path: str | Path, reference_point: dict[str, float] | None = None) -> RunView:
        """Load a run folder; ``reference_point`` (natural units per objective key) replaces
        the run's own for hypervolumes (comparisons against one shared reference)."""
        folder = RunFolder.open(path)
        cfg = folder.config()
        scoring = folder.scoring(cfg)
        records = folder.records()
        front, summary = summarise(records, scoring)
        stored = folder.path / HISTORY_FILE
        if stored.is_file():
            history = pd.read_csv(stored)
        else:  # older runs (no history.csv)
            history = history_table(records, scoring, cfg.search.population)
        state = run_state(folder, records, cfg)
        view = cls(folder, cfg, scoring, records, front, summary, folder.meta(), history, state,
                   warnings_of(records))
        return view if reference_point is None else view.with_reference(reference_point)

    def with_reference(self, reference_point: dict[str, float]) -> RunView:
        """The same run with hypervolumes (summary, history) against ``reference_point``
        (natural units per objective key); nothing is read again."""
        scoring = Scoring(self.scoring.objectives, self.scoring.constraints, dict(reference_point))
        front, summary = summarise(self.records, scoring)
        return dataclasses.replace(self, scoring=scoring, front=front, summary=summary,
                                   history=history_table(self.records, scoring, self.cfg.search.population))

    # -- labels -----------------------------------------------------------------------------
    @property
    def name(self) -> str:
        return self.folder.path.name

    @property
    def path(self) -> Path:
        return self.folder.path

    @property
    def emulated(self) -> bool:
        return any(r.emulated for r in self.records)

    @property
    def objectives(self) -> tuple[Objective, ...]:
        return self.scoring.objectives

    def backend_label(self) -> str:
        """``myriadx (emulated)`` / ``openvino (measured)``."""
        names = sorted({r.backend for r in self.records if r.backend}) or [self.cfg.backend.name]
        return f"{', '.join(names)} ({'emulated' if self.emulated else 'measured'})"

    @property
    def title(self) -> str:
        """Run name, problem, algorithm, seed, budget (population x generations, evaluations),
        backend and its emulated/measured label; "unfinished" when the run did not end."""
        s = self.cfg.search
        state = "" if self.state.finished else f", {self.state.label}"
        return (f"{self.name}: {self.cfg.problem}, {s.algorithm}, seed {s.seed}, population {s.population} x "
                f"{s.generations} generations ({len(self.records)} evaluations)\nbackend "
                f"{self.backend_label()}{state}")

    # -- tables -----------------------------------------------------------------------------
    def generations(self) -> list[int]:
        """Generation of each record (inferred from journal order for format-1 journals)."""
        return generations_of(self.records, self.cfg.search.population)[0]

    def feasible_flags(self) -> list[bool]:
        return [is_feasible(r, self.scoring.constraints) for r in self.records]

    def number_format(self) -> str:
        """Storage format of the deployed figures, from the run's numerics profile
        (``train.profile``): "FP16", "bf16" or "INT8"; "low-precision" when the profile is not one of
        :data:`dalp_moo.precision.PROFILES`."""
        from dalp_moo.precision import PROFILES

        profile = PROFILES.get(str(getattr(getattr(self.cfg, "train", None), "profile", "")))
        if profile is None:
            return "low-precision"
        return {"fp16": "FP16", "int8": "INT8"}.get(profile.format, profile.format)

    def table(self) -> pd.DataFrame:
        """All evaluations (the run folder's table columns) plus ``generation`` (inferred where
        missing), ``feasible``, ``on_front``, ``degenerate``, ``number_format`` (see
        :meth:`number_format`) and the run name."""
        df = self.folder.table(self.records)
        df["generation"] = self.generations()
        df["feasible"] = self.feasible_flags()
        front_ids = {r.arch_id for r in self.front}
        df["on_front"] = df["arch_id"].isin(front_ids)
        df["degenerate"] = [degenerate_reason(r) for r in self.records]
        df["number_format"] = self.number_format()
        df["run"] = self.name
        return df

    def front_table(self, extra: tuple[str, ...] = ()) -> pd.DataFrame:
        """The front: ID, objectives (natural units), ``extra`` metric keys and description,
        best first on the first objective."""
        keys = list(dict.fromkeys((*(o.key for o in self.objectives), *extra)))
        rows = [{"arch_id": r.arch_id, **{k: r.metrics.get(k) for k in keys}, "description": r.description}
                for r in self.front]
        return pd.DataFrame(rows, columns=["arch_id", *keys, "description"])

