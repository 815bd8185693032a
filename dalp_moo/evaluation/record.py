"""The record of one candidate evaluation (one journal line).

Common fields describe the candidate and the evaluation (ID, genome, status, timings, backend);
``metrics`` holds what the application measured (vessel segmentation: ``deployed_miou``,
``latency_ms``, ``params``, ...), in natural units. Journal lines are format
:data:`FORMAT` (``{"format": 2, "application": NAME, ...record}``); format-1 lines (no
``"format"`` key, metrics as top-level fields) still load: their metric fields move into
``metrics``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from dalp_moo.application import Objective

#: journal line format written by this version
FORMAT = 2

STATUS_OK = "ok"  #: trained and measured
STATUS_FAILED = "failed"  #: the evaluation raised, diverged or exceeded a budget
STATUS_INFEASIBLE = "infeasible"  #: violates a constraint already before training (not trained)
STATUSES = (STATUS_OK, STATUS_FAILED, STATUS_INFEASIBLE)


@dataclass(frozen=True)
class EvalRecord:
    """Everything recorded for one candidate.

    Times are wall-clock seconds; ``started_at`` / ``ended_at`` are ISO-8601 UTC strings;
    ``generation`` is 0 for the initial population (None when unknown), ``eval_index`` the
    position in the run's journal (order of finishing).
    """

    arch_id: str  #: canonical candidate ID
    genome: tuple[int, ...]  #: canonical genome
    description: str = ""
    config_hash: str = ""  #: evaluation-config hash (cache key with arch_id)
    status: str = STATUS_OK
    reason: str = ""  #: why a candidate failed or is infeasible
    backend: str = ""
    emulated: bool = True  #: figures come from an emulator or model, not real hardware
    train_time_s: float = 0.0
    eval_time_s: float = 0.0
    attempts: int = 1
    generation: int | None = None
    eval_index: int | None = None
    started_at: str = ""
    ended_at: str = ""
    metrics: dict[str, Any] = field(default_factory=dict)  #: application-defined, natural units
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.status == STATUS_OK

    def metric(self, key: str, default: Any = None) -> Any:
        """``metrics[key]``, or ``default`` when absent or None."""
        value = self.metrics.get(key)
        return default if value is None else value

    def objectives(self, objectives: Sequence[Objective]) -> tuple[float, ...]:
        """Minimised objective values; failed candidates and missing values get the worst."""
        if not self.ok:
            return tuple(o.minimised(None) for o in objectives)
        return tuple(o.minimised(self.metrics.get(o.key)) for o in objectives)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["genome"] = list(self.genome)
        return d

    def to_line(self, application: str) -> dict[str, Any]:
        """The journal line of this record (format :data:`FORMAT`)."""
        return {"format": FORMAT, "application": application, **self.to_dict()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> EvalRecord:
        """A record from a journal line of format 1 or 2 (unknown keys are ignored)."""
        version = d.get("format", 1)
        if version not in (1, FORMAT):
            raise ValueError(f"unsupported journal format {version!r}")
        known = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in d.items() if k in known}
        if version == 1:  # metric fields were top-level
            values["metrics"] = {k: v for k, v in d.items() if k not in known}
        values["genome"] = tuple(values.get("genome", ()))
        values["metrics"] = dict(values.get("metrics") or {})
        return cls(**values)
