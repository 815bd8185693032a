"""Vessel segmentation NAS: the U-Net search of dalp_moo as an application.

Objectives: on-device mIoU (maximised, fraction, the model as the backend runs it), latency
(minimised, ms, batch 1 on the backend's target) and parameters (minimised). Constraints
(``[constraints]``): ``params <= param_cap`` and, when ``latency_budget_ms > 0``,
``latency_ms <= latency_budget_ms``.

The definition is thin: heavy state (data set, backend) lives in the
:class:`~dalp_moo.evaluation.segmentation.SegmentationEvaluator`, created lazily once per
process. Any pymoo algorithm can solve the Problem::

    minimize(VesselSegmentationProblem(cfg), NSGA2(pop_size=8, **integer_operators(space)), ...)
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dalp_moo.application import Application, Constraint, Objective
from dalp_moo.config import DataConfig, RunConfig, SpaceConfig, TrainConfig, check, check_choice
from dalp_moo.errors import ConfigError
from dalp_moo.log import logger
from dalp_moo.problem import ApplicationProblem

NAME = "vessel-segmentation"

OBJECTIVES = (
    Objective("on-device mIoU", "deployed_miou", "max", "fraction", worst=0.0, ideal=1.0),
    Objective("latency", "latency_ms", "min", "ms", worst=1e6, ideal=0.0),
    Objective("parameters", "params", "min", "parameters", worst=1e9, ideal=0.0),
)


@dataclass(frozen=True)
class SegmentationConstraints:
    """Constraints of the vessel-segmentation search."""

    param_cap: int = 100_000  #: parameters <= cap (parameters)
    latency_budget_ms: float = 0.0  #: latency <= budget (ms, batch 1; 0 = no latency constraint)

    def __post_init__(self) -> None:
        check(self.param_cap >= 1000, "constraints.param_cap", f"must be >= 1000, got {self.param_cap}")
        check(self.latency_budget_ms >= 0, "constraints.latency_budget_ms", "must be >= 0")


@functools.lru_cache(maxsize=16)
def input_bands(data: DataConfig) -> int:
    """Band count of the model input: the data source's (real data sets decide it themselves;
    the synthetic generator has ``data.bands``)."""
    if data.source.partition(":")[0] == "synthetic":
        return data.bands
    from dalp_moo.data import open_source

    return open_source(data).bands


class VesselSegmentation(Application):
    """The built-in application: U-Net encoder search for vessel segmentation."""

    name = NAME
    #: enters every evaluation hash; 2 (2026-12-02): default data with fixed band offsets
    #: (no per-tile jitter), so caches of version 1 are not reused for the new data
    version = "2"
    sections = {"space": SpaceConfig, "data": DataConfig, "train": TrainConfig}
    constraints_section = SegmentationConstraints
    preset_dir = Path(__file__).parent / "presets" / "vessel_segmentation"
    table_columns = ("deployed_miou", "fp32_miou", "ptq_miou", "dalp_miou", "vessel_iou", "test_miou",
                     "latency_ms", "latency_spread_ms", "energy_mj", "params", "epochs",
                     "nonfinite_fraction", "latency_method")
    moved_keys = {"space.param_cap": "constraints.param_cap",
                  "backend.latency_budget_ms": "constraints.latency_budget_ms"}

    def space(self, cfg: RunConfig) -> Any:
        from dalp_moo.model import ParamCounter
        from dalp_moo.space import SearchSpace

        counter = ParamCounter(input_bands(cfg.data), cfg.space.num_classes)
        return SearchSpace(cfg.space, param_cap=cfg.constraints.param_cap, count=counter)

    def objectives(self, cfg: RunConfig) -> tuple[Objective, ...]:
        return OBJECTIVES

    def constraints(self, cfg: RunConfig) -> tuple[Constraint, ...]:
        out = [Constraint("parameter cap", "params", float(cfg.constraints.param_cap), "parameters")]
        if cfg.constraints.latency_budget_ms > 0:
            out.append(Constraint("latency budget", "latency_ms", cfg.constraints.latency_budget_ms, "ms"))
        return tuple(out)

    def reference_point(self, cfg: RunConfig) -> dict[str, float]:
        """mIoU 0, the parameter cap, and the latency budget or, without one, twice the
        backend's estimated latency of the largest network of the space (ms)."""
        latency = cfg.constraints.latency_budget_ms
        if latency <= 0:
            latency = 2.0 * reference_latency_ms(cfg)
        return {"deployed_miou": 0.0, "latency_ms": float(latency), "params": float(cfg.constraints.param_cap)}

    def evaluator(self, cfg: RunConfig) -> Any:
        from dalp_moo.evaluation.segmentation import SegmentationEvaluator

        return SegmentationEvaluator(cfg, self.space(cfg), self.constraints(cfg))

    def on_finish(self, folder: Path, cfg: RunConfig, front: Sequence[Any]) -> dict[str, Any]:
        """Export the OpenVINO IR (FP16 weights) of the front when ``backend.export_ir``."""
        if not (cfg.backend.export_ir and front):
            return {}
        from dalp_moo.results.export import export_front_ir

        return {"ir_exported": len(export_front_ir(folder, cfg, front))}

    def validate(self, cfg: RunConfig) -> None:
        from dalp_moo.precision import PROFILES, REGIMES

        check_choice(cfg.train.regime, REGIMES, "train.regime")
        check_choice(cfg.train.profile, tuple(PROFILES), "train.profile")
        from dalp_moo.precision import check_profile_backend  # the profile describes the backend

        check_profile_backend(cfg.train.profile, cfg.backend.name, dict(cfg.backend.options))
        from dalp_moo.precision import get_profile

        get_profile(cfg.train.profile, **cfg.train.profile_options)  # unknown switches: one line
        from dalp_moo.data.scene import GeneratorParams, with_overrides

        try:
            with_overrides(GeneratorParams(), cfg.data.generator)
        except ValueError as exc:
            raise ConfigError(f"config value data.generator.{exc}") from None
        from dalp_moo.training.trainer import paper_deviations

        deviations = paper_deviations(cfg.train)
        if deviations:
            logger.warning("train.recipe = 'paper' with %s: not the paper's recipe", ", ".join(deviations))
        if cfg.data.tile_size < 2 ** cfg.space.max_units:
            logger.warning("data.tile_size %d is smaller than 2^max_units = %d: candidates with that many "
                           "units will fail", cfg.data.tile_size, 2 ** cfg.space.max_units)


def reference_latency_ms(cfg: RunConfig) -> float:
    """The backend's estimated batch-1 latency (ms) of the largest network of the space that
    fits the parameter cap (all genes at their maximum, repaired; at most as many units as the
    tile size allows)."""
    from dalp_moo import backends
    from dalp_moo.model import build_model

    app = APPLICATION
    space = app.space(cfg)
    genome = np.array(space.xu)
    fitting = [i for i, n in enumerate(space.unit_counts) if 2 ** n <= cfg.data.tile_size]
    genome[0] = fitting[-1] if fitting else 0
    arch = space.decode(space.repair(genome))
    bands = input_bands(cfg.data)
    backend = backends.get(cfg.backend.name, device=cfg.backend.device, **cfg.backend.options)
    model = build_model(arch, bands, cfg.space.num_classes).eval()
    latency = backend.estimate_latency_ms(model, (1, bands, cfg.data.tile_size, cfg.data.tile_size))
    if not (math.isfinite(latency) and latency > 0):
        raise ValueError(f"backend {cfg.backend.name}: no latency estimate for the reference network")
    return float(latency)


APPLICATION = VesselSegmentation()


class VesselSegmentationProblem(ApplicationProblem):
    """The vessel-segmentation search as a pymoo Problem (see :class:`ApplicationProblem`)."""

    application_name = NAME
