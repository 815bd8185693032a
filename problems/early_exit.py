"""The ``early-exit`` application: exit placement, head types, exit threshold and precisions of
an early-exit MobileNetV2, costed on a modelled multi-core edge accelerator.

Objectives (read from ``record.metrics``):

* ``calib_accuracy`` (max, fraction): accuracy of the dynamic network on the calibration split;
* ``calib_et_avg`` (min, uJ*ms): expected energy-latency product ET_avg = sum_k r_k ET_k with the
  exit fractions r_k of the calibration split and ET_k = E_cum,k x L_cum,k of the modelled
  accelerator;
* ``exit_overhead`` (min, fraction): ET_K / ET_base - 1, the extra cost a sample that passes every
  exit pays against the static network (ET_base: backbone with only its final classifier).

Constraint: ``calib_accuracy_drop`` = static accuracy - accuracy <= ``constraints.accuracy_delta``
(default 0.01, one percentage point), on the calibration split, against the static network at
the candidate's precisions and final head.

The search sees the calibration split only: the exit threshold is a gene, so the search fits it
on that split. Every record also carries the held-out **test** split's figures under the plain
keys (``accuracy``, ``accuracy_static``, ``exit_fractions``, ``exit_accuracy``, ``et_avg``,
``reduction``): those are the ones to report. Costs are modelled (``emulated = True``), not
measured.

Candidates are measured exactly from cached per-exit outputs (see
:mod:`dalp_moo.training.early_exit`): backbones and exit heads are trained once per run.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dalp_moo.application import Application, Constraint, Objective
from dalp_moo.backends.accelerator import (
    AcceleratorConfig,
    AcceleratorModel,
    dynamic_cost,
    reduction,
    trace_layers,
)
from dalp_moo.data.classification import ClassificationDataConfig, open_classification
from dalp_moo.errors import ConfigError
from dalp_moo.log import logger
from dalp_moo.model.mobilenetv2_ee import EXIT_LETTERS, build_network
from dalp_moo.precision import PROFILES
from dalp_moo.problem import ApplicationProblem
from dalp_moo.space.early_exit import FINAL, EarlyExitArchitecture, EarlyExitSpace, EarlyExitSpaceConfig
from dalp_moo.training import resolve_device
from dalp_moo.training.early_exit import (
    EarlyExitTrainConfig,
    ExitBank,
    ExitStatistics,
    joint_finetune,
)

PRESET_DIR = Path(__file__).resolve().parent / "presets" / "early_exit"
ET_UNIT = "uJ*ms"
FAILED_ET = 1e9  #: ET_avg of failed candidates (uJ*ms)
FAILED_OVERHEAD = 1e3


@dataclass(frozen=True)
class EarlyExitConstraints:
    """The ``[constraints]`` section: accuracy >= static accuracy - ``accuracy_delta``."""

    accuracy_delta: float = 0.01  #: allowed accuracy loss against the static network (fraction)

    def __post_init__(self) -> None:
        if not 0.0 <= self.accuracy_delta < 1.0:
            raise ConfigError(f"config value constraints.accuracy_delta: must be in [0, 1), got {self.accuracy_delta}")


@dataclass(frozen=True)
class BackendInfo:
    """What the records' ``backend`` / ``emulated`` fields say."""

    name: str = AcceleratorModel.name
    emulated: bool = True


def _section(cfg: Any, name: str, default: type) -> Any:
    sections = getattr(cfg, "sections", None) or {}
    if name in sections:
        return sections[name]
    value = getattr(cfg, name, None)
    return value if isinstance(value, default) else default()


def accelerator_config(cfg: Any) -> AcceleratorConfig:
    """The ``[accelerator]`` section; without its own ``cache_dir``, the cost model caches in
    ``<data.cache_dir>/accelerator`` (inside the run folder by default)."""
    acc_cfg: AcceleratorConfig = _section(cfg, "accelerator", AcceleratorConfig)
    data_cfg: ClassificationDataConfig = _section(cfg, "data", ClassificationDataConfig)
    if not acc_cfg.cache_dir and data_cfg.cache_dir:
        acc_cfg = dataclasses.replace(acc_cfg, cache_dir=str(Path(data_cfg.cache_dir).expanduser() / "accelerator"))
    return acc_cfg


def _opt(v: float | None, digits: int = 6) -> float | None:
    return None if v is None or not math.isfinite(v) else round(float(v), digits)


class CostModel:
    """Per-stage energy and latency of candidates on the modelled accelerator (cached)."""

    def __init__(self, acc_cfg: AcceleratorConfig, num_classes: int, in_channels: int, width: float) -> None:
        self.acc = AcceleratorModel(acc_cfg)
        self.num_classes = num_classes
        self.in_channels = in_channels
        self.width = width
        self.example = torch.zeros(1, in_channels, 32, 32)
        self._memo: dict[tuple, tuple[tuple[float, ...], tuple[float, ...], str]] = {}
        self.queries = 0
        self.seconds = 0.0

    def stages(self, positions: Sequence[int], heads: Sequence[str], backbone_bits: int,
               exit_bits: int) -> tuple[tuple[float, ...], tuple[float, ...], str]:
        """``(stage energy uJ, stage latency ms, allocation method)`` of a network."""
        key = (tuple(positions), tuple(heads), backbone_bits, exit_bits)
        if key in self._memo:
            return self._memo[key]
        t0 = time.perf_counter()
        net = build_network(positions, heads, self.num_classes, in_channels=self.in_channels, width=self.width)
        net.annotate_costs(backbone_bits, exit_bits)
        cost = self.acc.cost(trace_layers(net, self.example))
        out = (tuple(e * 1e-6 for e in cost.stage_energy_pj), tuple(cost.stage_latency_ms),
               cost.allocation_method)
        if len(out[0]) != len(positions):
            raise ConfigError(f"cost model returned {len(out[0])} stages for {len(positions)} exits")
        self._memo[key] = out
        self.queries += 1
        self.seconds += time.perf_counter() - t0
        return out

    def describe(self) -> dict[str, Any]:
        return self.acc.info()


def candidate_metrics(arch: EarlyExitArchitecture, calib: ExitStatistics, test: ExitStatistics,
                      stages: tuple[tuple[float, ...], tuple[float, ...], str],
                      static: tuple[tuple[float, ...], tuple[float, ...], str]) -> dict[str, Any]:
    """The record metrics of one candidate (see the module docstring for the keys)."""
    energy, latency, method = stages
    e_static, l_static = static[0][0], static[1][0]
    et_base = e_static * l_static
    d_test = dynamic_cost(energy, latency, test.exit_fractions)
    d_calib = dynamic_cost(energy, latency, calib.exit_fractions)
    return {
        # reported (held-out test split)
        "accuracy": test.accuracy,
        "accuracy_static": test.accuracy_static,
        "accuracy_drop": test.accuracy_static - test.accuracy,
        "exit_fractions": [round(v, 6) for v in test.exit_fractions],
        "exit_accuracy": [_opt(v) for v in test.exit_accuracy],
        "head_accuracy": [round(v, 6) for v in test.head_accuracy],
        "final_fraction": test.exit_fractions[-1],
        "et_avg": d_test.et_avg,
        "e_avg_uj": d_test.e_avg,
        "l_avg_ms": d_test.l_avg,
        "reduction": reduction(d_test.et_avg, et_base),
        # searched (calibration split)
        "calib_accuracy": calib.accuracy,
        "calib_accuracy_static": calib.accuracy_static,
        "calib_accuracy_drop": calib.accuracy_static - calib.accuracy,
        "calib_exit_fractions": [round(v, 6) for v in calib.exit_fractions],
        "calib_et_avg": d_calib.et_avg,
        "calib_reduction": reduction(d_calib.et_avg, et_base),
        # split-independent (modelled accelerator)
        "et_base": et_base,
        "energy_static_uj": e_static,
        "latency_static_ms": l_static,
        "et_k": [float(v) for v in d_test.et_k],
        "stage_energy_uj": [float(v) for v in energy],
        "stage_latency_ms": [float(v) for v in latency],
        "exit_overhead": d_test.et_k[-1] / et_base - 1.0,
        "allocation_method": method,
        "cost_method": "modelled",
        # the candidate
        "exits": arch.letters,
        "heads": ",".join(arch.heads),
        "n_exits": arch.n_exits,
        "threshold": arch.threshold,
        "backbone_bits": arch.backbone_bits,
        "exit_bits": arch.exit_bits,
        "precision": arch.precision,
        "test_samples": test.samples,
        "calib_samples": calib.samples,
    }


class EarlyExitEvaluator:
    """Per-process state of an early-exit run: data, cached training, cost model."""

    backend_info = BackendInfo()

    def __init__(self, cfg: Any) -> None:
        self.cfg = cfg
        self.space_cfg: EarlyExitSpaceConfig = _section(cfg, "space", EarlyExitSpaceConfig)
        self.data_cfg: ClassificationDataConfig = _section(cfg, "data", ClassificationDataConfig)
        self.train_cfg: EarlyExitTrainConfig = _section(cfg, "train", EarlyExitTrainConfig)
        acc_cfg = accelerator_config(cfg)
        self.space = EarlyExitSpace(self.space_cfg)
        self.data = open_classification(self.data_cfg)
        seed = int(getattr(getattr(cfg, "search", None), "seed", 0))
        self.bank = ExitBank(self.data, self.train_cfg, width=self.space_cfg.width, seed=seed,
                             augment=self.data_cfg.augment, cache_dir=self.data_cfg.cache_dir)
        self.cost = CostModel(acc_cfg, self.data.num_classes, self.data.in_channels, self.space_cfg.width)
        try:
            self.config_hash = cfg.evaluation_hash()
        except AttributeError:
            self.config_hash = ""

    def measure(self, genome: Any) -> tuple[EarlyExitArchitecture, dict[str, Any], dict[str, float]]:
        """Decode, train what is missing, measure: ``(architecture, metrics, timings s)``."""
        arch = self.space.decode(genome)
        t0 = time.perf_counter()
        trained_before = self.bank.log.seconds
        args = (arch.positions, arch.heads, arch.backbone_bits, arch.exit_bits, arch.threshold)
        calib = self.bank.statistics(*args, "calib")
        test = self.bank.statistics(*args, "test")
        t1 = time.perf_counter()
        stages = self.cost.stages(arch.positions, arch.heads, arch.backbone_bits, arch.exit_bits)
        static = self.cost.stages((FINAL,), (arch.heads[-1],), arch.backbone_bits, arch.exit_bits)
        t2 = time.perf_counter()
        metrics = candidate_metrics(arch, calib, test, stages, static)
        train_s = self.bank.log.seconds - trained_before
        return arch, metrics, {"train_time_s": train_s, "eval_time_s": (t1 - t0 - train_s) + (t2 - t1),
                               "cost_time_s": t2 - t1}

    def evaluate(self, genome: Any) -> tuple[Any, dict | None]:
        """One candidate -> ``(EvalRecord, None)``."""
        from dalp_moo.evaluation.record import STATUS_OK, EvalRecord

        arch, metrics, times = self.measure(genome)
        record = EvalRecord(arch_id=arch.arch_id, genome=arch.genome, description=arch.describe(),
                            config_hash=self.config_hash, status=STATUS_OK, backend=self.backend_info.name,
                            emulated=True, train_time_s=times["train_time_s"], eval_time_s=times["eval_time_s"],
                            metrics=metrics, extra={"cost_time_s": round(times["cost_time_s"], 4)})
        return record, None

    def describe(self) -> dict[str, Any]:
        """For meta.json: data, training cache, cost model (modelled hardware)."""
        return {"application": "early-exit", "data": self.data.describe(), "training": self.bank.describe(),
                "backend": {**self.cost.describe(), "label": "modelled accelerator (not measured)"},
                "space": {"n_var": self.space.n_var, "genes": self.space.gene_names()}}


class EarlyExitApplication(Application):
    """Early-exit co-design on the modelled Edge-TPU-like quad-core accelerator."""

    name = "early-exit"
    version = "1"
    sections = {"space": EarlyExitSpaceConfig, "data": ClassificationDataConfig, "train": EarlyExitTrainConfig,
                "accelerator": AcceleratorConfig}
    constraints_section = EarlyExitConstraints
    preset_dir = PRESET_DIR
    default_preset = "default"
    default_backend = AcceleratorModel.name
    table_columns = ("accuracy", "accuracy_static", "et_avg", "reduction", "exit_overhead", "exits", "heads",
                     "threshold", "precision", "final_fraction")

    def space(self, cfg: Any) -> EarlyExitSpace:
        return EarlyExitSpace(_section(cfg, "space", EarlyExitSpaceConfig))

    def objectives(self, cfg: Any) -> tuple[Objective, ...]:
        return (
            Objective("accuracy (calibration split)", "calib_accuracy", "max", "fraction", worst=0.0, ideal=1.0),
            Objective("expected energy-latency product (modelled)", "calib_et_avg", "min", ET_UNIT,
                      worst=FAILED_ET, ideal=0.0),
            Objective("exit overhead (modelled)", "exit_overhead", "min", "fraction", worst=FAILED_OVERHEAD,
                      ideal=0.0),
        )

    def constraints(self, cfg: Any) -> tuple[Constraint, ...]:
        delta = _section(cfg, "constraints", EarlyExitConstraints).accuracy_delta
        return (Constraint("accuracy loss vs static network (calibration split)", "calib_accuracy_drop", delta,
                           "fraction"),)

    def reference_point(self, cfg: Any) -> dict[str, float]:
        """Fixed per config: accuracy 0; ET_avg 1.5 x ET_base of the static network with a linear
        head at the space's widest precisions (modelled); exit overhead 1 (ET_K = 2 x ET_base)."""
        space_cfg = _section(cfg, "space", EarlyExitSpaceConfig)
        acc_cfg = accelerator_config(cfg)
        bits = max(space_cfg.backbone_choices)
        ebits = max(space_cfg.exit_choices)
        data = open_classification(_section(cfg, "data", ClassificationDataConfig))
        model = CostModel(acc_cfg, data.num_classes, data.in_channels, space_cfg.width)
        e, lat, _ = model.stages((FINAL,), ("linear",), bits, ebits)
        return {"calib_accuracy": 0.0, "calib_et_avg": 1.5 * e[0] * lat[0], "exit_overhead": 1.0}

    def evaluator(self, cfg: Any) -> EarlyExitEvaluator:
        return EarlyExitEvaluator(cfg)

    def validate(self, cfg: Any) -> None:
        backend = getattr(getattr(cfg, "backend", None), "name", AcceleratorModel.name)
        if backend != AcceleratorModel.name:
            raise ConfigError(f"config value backend.name: the early-exit application costs candidates on the modelled "
                              f"accelerator (section [accelerator]); use backend.name = {AcceleratorModel.name!r}, "
                              f"not {backend!r}")
        train = _section(cfg, "train", EarlyExitTrainConfig)
        if train.profile not in PROFILES:
            raise ConfigError(f"config value train.profile: {train.profile!r} is not one of "
                              f"{', '.join(sorted(PROFILES))}")
        resolve_device(train.device)  # 'cuda' without a GPU: ConfigError

    def on_finish(self, folder: Path, cfg: Any, front: Sequence[Any]) -> dict[str, Any]:
        """With ``train.joint_finetune``: fine-tune the front's best candidates jointly (weighted
        exit losses), re-measure them (same threshold; calibration and test splits) and write
        ``finetuned.json``; returns its summary."""
        train = _section(cfg, "train", EarlyExitTrainConfig)
        if not train.joint_finetune or not front:
            return {}
        evaluator = EarlyExitEvaluator(cfg)
        ranked = sorted((r for r in front if getattr(r, "ok", True)),
                        key=lambda r: -float(r.metrics.get("calib_accuracy") or 0.0))
        if train.joint_candidates:
            ranked = ranked[:train.joint_candidates]
        out = []
        for rec in ranked:
            arch = evaluator.space.decode(np.asarray(rec.genome))
            logger.info("joint fine-tuning %s (%s)", arch.arch_id, arch.describe())
            res = joint_finetune(evaluator.bank, arch.positions, arch.heads, arch.backbone_bits, arch.exit_bits,
                                 arch.threshold)
            stages = evaluator.cost.stages(arch.positions, arch.heads, arch.backbone_bits, arch.exit_bits)
            static = evaluator.cost.stages((FINAL,), (arch.heads[-1],), arch.backbone_bits, arch.exit_bits)
            after = candidate_metrics(arch, res.calib, res.test, stages, static)
            keys = ("accuracy", "accuracy_static", "exit_fractions", "et_avg", "reduction", "calib_accuracy")
            out.append({"arch_id": arch.arch_id, "description": arch.describe(), "seconds": round(res.seconds, 1),
                        "before": {k: rec.metrics.get(k) for k in keys}, "after": {k: after[k] for k in keys}})
        path = Path(folder) / "finetuned.json"
        path.write_text(json.dumps({"note": "joint fine-tuning of front candidates; accuracy on the test split, "
                                            "costs modelled", "candidates": out}, indent=2))
        return {"joint_finetune": {"candidates": len(out), "file": path.name}}


APPLICATION = EarlyExitApplication()

__all__ = ["APPLICATION", "EarlyExitApplication", "EarlyExitConstraints", "EarlyExitEvaluator", "EarlyExitProblem",
           "candidate_metrics", "CostModel", "EXIT_LETTERS"]


class EarlyExitProblem(ApplicationProblem):
    """The early-exit search as a pymoo Problem (``ApplicationProblem`` bound to this application)."""

    application_name = EarlyExitApplication.name
