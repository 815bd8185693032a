"""Integer quantisation-aware training (QAT) and FP16 deployment of the early-exit models.

Precisions are bit widths in :data:`PRECISIONS` (4 and 8: integer QAT; 16: trained in FP32, run
as FP16 under one of the project's numerics profiles through :func:`fp16_deploy`; 32: plain
FP32). The layers at a bit width are built by :mod:`dalp_moo.model.quantised` (the only module
that imports brevitas) and re-exported here.
"""

from __future__ import annotations

import torch
from torch import nn

from dalp_moo.model.quantised import (  # noqa: F401  (re-exported)
    act_quant,
    check_bits,
    conv2d,
    is_integer,
    linear,
    quantised_layers,
    relu6,
    weight_levels,
)
from dalp_moo.precision.emulate import DeployedFP16, deploy_fp16
from dalp_moo.precision.profiles import NumericsProfile
from dalp_moo.space.early_exit import INTEGER_BITS, PRECISIONS  # noqa: F401  (re-exported)


def fp16_deploy(model: nn.Module, profile: str | NumericsProfile = "ieee",
                example: torch.Tensor | None = None) -> DeployedFP16:
    """Evaluation-only FP16 copy of an FP32-trained ``model`` under a numerics profile.

    ``example`` (a batch of inputs), when given, prepares the copy eagerly (batch-norm folding,
    FP16 weights).
    """
    deployed = deploy_fp16(model, profile)
    if example is not None:
        deployed.prepare(example)
    return deployed
