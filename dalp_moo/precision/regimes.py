"""The three training/evaluation regimes of a candidate.

* ``fp32``: train and evaluate in FP32;
* ``ptq``: train in FP32, evaluate the deployed FP16 model (post-training conversion);
* ``dalp``: train in FP32, fine-tune under the deployment numerics (straight-through FP16
  forward), evaluate the deployed FP16 model.

:func:`run_regimes` takes an FP32-trained model and callables for fine-tuning and scoring, so it
fits :func:`dalp_moo.training.train_model` and :func:`dalp_moo.training.evaluate_segmentation`
without importing them.
"""

from __future__ import annotations

import contextlib
import copy
import time
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from dalp_moo.errors import ConfigError
from dalp_moo.log import logger
from dalp_moo.precision.emulate import aligned_context, deploy_fp16
from dalp_moo.precision.headroom import rescale_input_for_headroom
from dalp_moo.precision.profiles import NumericsProfile, get_profile

REGIMES = ("fp32", "ptq", "dalp")

#: ``finetune_fn(model, forward_context)``: trains ``model`` in place, entering
#: ``forward_context()`` around every forward pass (``train_model(..., forward_context=...)``).
FinetuneFn = Callable[[nn.Module, Callable[[], contextlib.AbstractContextManager]], Any]
#: ``eval_fn(predict)``: mIoU (fraction) of a callable mapping a float32 batch to logits.
EvalFn = Callable[[Callable], float]


def run_regimes(model: nn.Module, finetune_fn: FinetuneFn | None, eval_fn: EvalFn,
                regime: str = "dalp", profile: str | NumericsProfile = "myriadx",
                overflow_push: float = 1.0, keep_fp32_copy: bool = True,
                calibration: torch.Tensor | None = None) -> dict[str, Any]:
    """Evaluate an FP32-trained ``model`` under ``regime`` ('fp32', 'ptq' or 'dalp').

    Returns ``{"fp32_miou", "ptq_miou", "dalp_miou"}`` (None where the regime does not compute
    it; ``dalp`` computes all three), ``"deployed_miou"`` (the regime's objective),
    ``"deployed"`` (the evaluation module: the FP32 model for 'fp32', else the
    :class:`~dalp_moo.precision.DeployedFP16` copy), ``"finetune"`` (what ``finetune_fn``
    returned), ``"finetune_s"`` (seconds) and ``"profile"`` (the profile as a dict).

    ``dalp`` fine-tunes ``model`` in place (a copy of the FP32 weights is kept for the FP32 and
    ptq scores when ``keep_fp32_copy``). With ``calibration`` (a batch of training inputs) and a
    profile with weights analysis, ``dalp`` first moves a power-of-two factor from the input
    normalisation into the first convolution when the first layer overflows in the scaled
    domain (:func:`~dalp_moo.precision.headroom.rescale_input_for_headroom`, FP32 function
    unchanged); ``"input_rescale_k"`` reports the exponent.
    """
    if regime not in REGIMES:
        raise ConfigError(f"train.regime: unknown regime {regime!r}; choose one of {list(REGIMES)}")
    prof = get_profile(profile)
    model.eval()
    out: dict[str, Any] = {"fp32_miou": eval_fn(model), "ptq_miou": None, "dalp_miou": None,
                           "finetune": None, "finetune_s": 0.0, "profile": prof.to_dict()}
    if regime == "fp32":
        out.update(deployed_miou=out["fp32_miou"], deployed=model)
        return out
    ptq = deploy_fp16(model, prof)
    out["ptq_miou"] = eval_fn(ptq)
    if regime == "ptq":
        out.update(deployed_miou=out["ptq_miou"], deployed=ptq)
        return out
    if finetune_fn is None:
        raise ConfigError("regime 'dalp' needs a fine-tuning function")
    backup = copy.deepcopy(model.state_dict()) if keep_fp32_copy else None
    t0 = time.perf_counter()
    out["input_rescale_k"] = 0
    if calibration is not None:
        out["input_rescale_k"] = rescale_input_for_headroom(model, calibration, prof)
    out["finetune"] = finetune_fn(model, aligned_context(model, prof, overflow_push))
    out["finetune_s"] = time.perf_counter() - t0
    model.eval()
    dalp = deploy_fp16(model, prof)
    out["dalp_miou"] = eval_fn(dalp)
    out.update(deployed_miou=out["dalp_miou"], deployed=dalp)
    if backup is not None:
        out["fp32_state"] = backup
    logger.debug("regimes (%s): fp32 %.4f ptq %.4f dalp %.4f", prof.name, out["fp32_miou"],
                 out["ptq_miou"], out["dalp_miou"])
    return out


def gap_recovered(fp32: float, ptq: float, dalp: float) -> float | None:
    """``(dalp - ptq) / (fp32 - ptq)``: the fraction of the deployment gap recovered (None when
    there is no gap)."""
    gap = fp32 - ptq
    if gap <= 0:
        return None
    return (dalp - ptq) / gap
