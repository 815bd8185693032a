"""The three training/evaluation regimes of a candidate: ONE pipeline, used by the search's
evaluator and by ``benchmarks/deployment_gap.py``.

* ``fp32``: train and evaluate in FP32 (the backend still deploys the model, for its latency);
* ``ptq``: train in FP32, evaluate the model as the backend deploys it (post-training conversion);
* ``dalp``: train in FP32, rescale the input for FP16 headroom, fine-tune under the deployment
  numerics (straight-through FP16 forward), evaluate the model as the backend deploys it.

:func:`run_regimes` takes an FP32-trained model, a deployment backend and callables for scoring
and fine-tuning, so it fits :func:`dalp_moo.training.train_model` and any metric without
importing them. Deployment always goes through ``backend.deploy``: what is scored is what the
backend runs.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from dalp_moo.errors import ConfigError
from dalp_moo.log import logger
from dalp_moo.precision.emulate import aligned_context
from dalp_moo.precision.headroom import rescale_input_for_headroom
from dalp_moo.precision.profiles import NumericsProfile, get_profile

REGIMES = ("fp32", "ptq", "dalp")

#: ``finetune_fn(model, forward_context)``: trains ``model`` in place, entering
#: ``forward_context()`` around every forward pass (``train_model(..., forward_context=...)``).
FinetuneFn = Callable[[nn.Module, Callable[[], contextlib.AbstractContextManager]], Any]
#: ``eval_fn(predict)``: a score (e.g. a SegmentationScore, or an mIoU) of a callable mapping a
#: float32 batch to logits.
EvalFn = Callable[[Callable], Any]


@dataclass
class RegimeResult:
    """Outcome of :func:`run_regimes`. Scores are what ``eval_fn`` returned (None where the
    regime does not compute them); ``deployed`` is the regime's objective, computed with
    ``predict`` (the FP32 model for 'fp32', else ``deployment.predict``)."""

    regime: str
    fp32: Any
    ptq: Any = None
    dalp: Any = None
    deployed: Any = None
    deployment: Any = None  #: the backend's Deployment of the final model (latency, predict)
    predict: Callable | None = None
    finetune: Any = None  #: what ``finetune_fn`` returned (dalp)
    finetune_s: float = 0.0  #: seconds of rescaling + fine-tuning (dalp)
    input_rescale_k: int | None = None  #: dalp: exponent moved out of the input normalisation
    profile: dict[str, Any] | None = None


def run_regimes(model: nn.Module, backend: Any, input_shape: tuple[int, ...], eval_fn: EvalFn,
                regime: str = "dalp", profile: str | NumericsProfile = "myriadx",
                finetune_fn: FinetuneFn | None = None, calibration: torch.Tensor | None = None,
                overflow_push: float = 1.0) -> RegimeResult:
    """Evaluate an FP32-trained ``model`` under ``regime`` ('fp32', 'ptq' or 'dalp') on
    ``backend`` (any :class:`~dalp_moo.backends.Backend`; deployments are for ``input_shape``,
    batch 1).

    ``calibration`` (a batch of training inputs) also goes to the backend's ``deploy`` where the
    backend calibrates on data (``needs_calibration``, e.g. OpenVINO INT8).
    ``dalp`` changes ``model`` in place: with ``calibration`` and a
    profile with weights analysis it first moves a power-of-two factor from the input
    normalisation into the first convolution when the first layer overflows in the scaled domain
    (:func:`~dalp_moo.precision.headroom.rescale_input_for_headroom`, FP32 function unchanged),
    then fine-tunes it with ``finetune_fn`` under the aligned forward of ``profile``.
    """
    if regime not in REGIMES:
        raise ConfigError(f"train.regime: unknown regime {regime!r}; choose one of {list(REGIMES)}")
    prof = get_profile(profile)
    model = model.cpu().eval()
    out = RegimeResult(regime=regime, fp32=eval_fn(model), profile=prof.to_dict())
    deploy_calibration = calibration if getattr(backend, "needs_calibration", False) else None
    deployment = backend.deploy(model, input_shape, profile=prof,  # the profile with its switches
                                calibration=deploy_calibration)
    if regime == "fp32":
        out.deployed, out.deployment, out.predict = out.fp32, deployment, model
        return out
    out.ptq = eval_fn(deployment.predict)
    out.deployed, out.deployment, out.predict = out.ptq, deployment, deployment.predict
    if regime == "ptq":
        return out
    if finetune_fn is None:
        raise ConfigError("regime 'dalp' needs a fine-tuning function")
    t0 = time.perf_counter()
    out.input_rescale_k = 0
    if calibration is not None:
        out.input_rescale_k = rescale_input_for_headroom(model, calibration, prof)
    out.finetune = finetune_fn(model, aligned_context(model, prof, overflow_push, calibration))
    out.finetune_s = time.perf_counter() - t0
    model = model.cpu().eval()
    deployment = backend.deploy(model, input_shape, profile=prof, calibration=deploy_calibration)
    out.dalp = eval_fn(deployment.predict)
    out.deployed, out.deployment, out.predict = out.dalp, deployment, deployment.predict
    logger.debug("regimes (%s): fp32 %s ptq %s dalp %s", prof.name, out.fp32, out.ptq, out.dalp)
    return out


def gap_recovered(fp32: float, ptq: float, dalp: float) -> float | None:
    """``(dalp - ptq) / (fp32 - ptq)``: the fraction of the deployment gap recovered (None when
    there is no gap)."""
    gap = fp32 - ptq
    if gap <= 0:
        return None
    return (dalp - ptq) / gap
