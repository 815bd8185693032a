"""The record of one candidate evaluation (one journal line)."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

STATUS_OK = "ok"
STATUS_FAILED = "failed"
STATUS_INFEASIBLE = "infeasible"

#: objectives given to failed candidates (worse than any real candidate)
FAILED_OBJECTIVES = (1.0, 1e6, 1e9)


@dataclass(frozen=True)
class EvalRecord:
    """Everything measured for one candidate.

    mIoUs are fractions in [0, 1] on the validation split (``test_miou``: deployed model on the
    test split); ``latency_ms`` is batch-1 latency on the backend's target (ms), ``energy_mj``
    the energy of one inference (mJ, None when not modelled); times are wall-clock seconds.
    """

    arch_id: str
    genome: tuple[int, ...]
    description: str
    config_hash: str
    status: str = STATUS_OK
    reason: str = ""
    params: int = 0
    fp32_miou: float | None = None
    ptq_miou: float | None = None
    dalp_miou: float | None = None
    deployed_miou: float | None = None  #: the objective: mIoU of the model as deployed
    vessel_iou: float | None = None
    test_miou: float | None = None
    nonfinite_fraction: float = 0.0
    latency_ms: float | None = None
    latency_spread_ms: float = 0.0
    energy_mj: float | None = None
    latency_method: str = ""
    backend: str = ""
    emulated: bool = True
    epochs: int = 0
    train_time_s: float = 0.0
    eval_time_s: float = 0.0
    step_ms: float = 0.0
    attempts: int = 1
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.status == STATUS_OK

    def objectives(self) -> tuple[float, float, float]:
        """``(1 - deployed mIoU, latency ms, parameters)``; failed candidates get the worst."""
        if not self.ok or self.deployed_miou is None or self.latency_ms is None:
            return FAILED_OBJECTIVES
        miou = self.deployed_miou if math.isfinite(self.deployed_miou) else 0.0
        return (1.0 - miou, float(self.latency_ms), float(self.params))

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["genome"] = list(self.genome)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> EvalRecord:
        known = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in d.items() if k in known}
        values["genome"] = tuple(values.get("genome", ()))
        return cls(**values)
