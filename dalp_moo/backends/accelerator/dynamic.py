"""Cost of dynamic (early-exit) inference from per-stage costs.

For exit k (in order), E_k and L_k are the energy and latency of stage k: the backbone since the
previous exit plus exit head k. A sample leaving at exit k has paid for every stage up to k,
heads included:

- E_cum,k = sum_{j<=k} E_j,  L_cum,k = sum_{j<=k} L_j,  ET_k = E_cum,k * L_cum,k
- ET_avg = sum_k r_k * ET_k  (r_k: fraction of samples leaving at exit k, sum r_k = 1)
- ET_base = E * L of the static network (backbone with only its final classifier)
- reduction = 1 - ET_avg / ET_base

Units follow the inputs (e.g. pJ and cycles give pJ*cycles).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from dalp_moo.errors import BackendError

#: tolerance on sum(r_k) == 1
FRACTION_TOLERANCE = 1e-6


@dataclass(frozen=True)
class DynamicCost:
    """Expected cost of early-exit inference."""

    e_cum: tuple[float, ...]  #: E_cum,k per exit
    l_cum: tuple[float, ...]  #: L_cum,k per exit
    et_k: tuple[float, ...]  #: ET_k = E_cum,k * L_cum,k per exit
    et_avg: float  #: sum_k r_k ET_k
    e_avg: float  #: expected energy sum_k r_k E_cum,k
    l_avg: float  #: expected latency sum_k r_k L_cum,k


def _floats(values: Sequence[float], what: str) -> tuple[float, ...]:
    out = tuple(float(v) for v in values)
    for v in out:
        if not math.isfinite(v) or v < 0:
            raise BackendError(f"{what} must be finite and >= 0, got {v!r}")
    return out


def cumulative(stage_values: Sequence[float]) -> tuple[float, ...]:
    """Running sums: value_cum,k = sum_{j<=k} value_j."""
    out, total = [], 0.0
    for v in _floats(stage_values, "stage costs"):
        total += v
        out.append(total)
    return tuple(out)


def et_avg(exit_fractions: Sequence[float], et_k: Sequence[float]) -> float:
    """ET_avg = sum_k r_k ET_k (checks that the fractions sum to 1)."""
    r = _floats(exit_fractions, "exit fractions")
    et = _floats(et_k, "ET_k")
    if len(r) != len(et):
        raise BackendError(f"{len(r)} exit fractions for {len(et)} exits")
    if abs(sum(r) - 1.0) > FRACTION_TOLERANCE:
        raise BackendError(f"exit fractions must sum to 1, got {sum(r):.6f}")
    return float(sum(rk * ek for rk, ek in zip(r, et, strict=True)))


def dynamic_cost(stage_energy: Sequence[float], stage_latency: Sequence[float],
                 exit_fractions: Sequence[float]) -> DynamicCost:
    """E_cum,k, L_cum,k, ET_k, ET_avg, E_avg and L_avg from per-stage costs and exit fractions."""
    if not (len(stage_energy) == len(stage_latency) == len(exit_fractions)) or not stage_energy:
        raise BackendError(f"need one energy, latency and exit fraction per exit, got {len(stage_energy)}, "
                           f"{len(stage_latency)}, {len(exit_fractions)}")
    e_cum = cumulative(stage_energy)
    l_cum = cumulative(stage_latency)
    et_k = tuple(e * lat for e, lat in zip(e_cum, l_cum, strict=True))
    r = _floats(exit_fractions, "exit fractions")
    avg = et_avg(r, et_k)
    return DynamicCost(e_cum=e_cum, l_cum=l_cum, et_k=et_k, et_avg=avg,
                       e_avg=float(sum(rk * e for rk, e in zip(r, e_cum, strict=True))),
                       l_avg=float(sum(rk * lat for rk, lat in zip(r, l_cum, strict=True))))


def et_base(energy: float, latency: float) -> float:
    """ET_base = E * L of the static network."""
    e, lat = _floats((energy, latency), "static energy and latency")
    return e * lat


def reduction(et_avg_value: float, et_base_value: float) -> float:
    """1 - ET_avg / ET_base (fraction; > 0 when the dynamic network is cheaper)."""
    if not et_base_value > 0:
        raise BackendError(f"ET_base must be > 0, got {et_base_value!r}")
    return 1.0 - float(et_avg_value) / float(et_base_value)
