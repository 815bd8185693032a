"""Layers at a bit width: the building blocks of quantisation-aware models, over ``brevitas``.

Precisions are bit widths in :data:`dalp_moo.space.early_exit.PRECISIONS`:

* ``4`` / ``8``: integer QAT. Weights are quantised per output channel (symmetric, signed,
  floating-point scale learned from the weight statistics), activations per tensor
  (``ReLU6`` outputs unsigned with a learned clip initialised at 6; linear-bottleneck outputs,
  residual sums and head inputs signed). Layers are brevitas ``QuantConv2d`` / ``QuantLinear``,
  subclasses of ``nn.Conv2d`` / ``nn.Linear`` that fake-quantise in the forward pass and use
  straight-through gradients. Batch norm stays a separate (unfused) FP32 layer during QAT.
* ``16`` / ``32``: plain torch layers (16 bit runs as FP16 at deployment:
  :func:`dalp_moo.precision.quant.fp16_deploy`).

Only this module imports brevitas; the rest of the project asks for layers by bit width.
``torch.ao.quantization``'s QAT entry points are not used.
"""

from __future__ import annotations

import warnings
from typing import Any

import torch
from torch import nn

from dalp_moo.errors import ConfigError
from dalp_moo.space.early_exit import INTEGER_BITS, PRECISIONS


def check_bits(bits: int, what: str = "precision") -> int:
    """``bits`` when it is one of :data:`PRECISIONS`, else a :class:`ConfigError`."""
    if bits not in PRECISIONS:
        raise ConfigError(f"{what}: {bits} bits is not one of {', '.join(map(str, PRECISIONS))}")
    return int(bits)


def is_integer(bits: int) -> bool:
    """True for the integer QAT precisions (4 and 8 bit)."""
    return check_bits(bits) in INTEGER_BITS


def _brevitas() -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import brevitas.nn as qnn
        from brevitas import quant
    return qnn, quant


def conv2d(in_channels: int, out_channels: int, kernel_size: int, *, stride: int = 1,
           padding: int = 0, groups: int = 1, bias: bool = False, bits: int = 32) -> nn.Conv2d:
    """A 2-D convolution at ``bits`` (per-channel weight quantisation for 4/8 bit)."""
    if not is_integer(bits):
        return nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride, padding=padding,
                         groups=groups, bias=bias)
    qnn, quant = _brevitas()
    return qnn.QuantConv2d(in_channels, out_channels, kernel_size, stride=stride, padding=padding,
                           groups=groups, bias=bias, weight_quant=quant.Int8WeightPerChannelFloat,
                           weight_bit_width=bits)


def linear(in_features: int, out_features: int, *, bias: bool = True, bits: int = 32) -> nn.Linear:
    """A fully connected layer at ``bits`` (per-output-channel weight quantisation for 4/8 bit).

    The bias of a quantised layer stays in floating point (it is added to the wide accumulator).
    """
    if not is_integer(bits):
        return nn.Linear(in_features, out_features, bias=bias)
    qnn, quant = _brevitas()
    return qnn.QuantLinear(in_features, out_features, bias=bias,
                           weight_quant=quant.Int8WeightPerChannelFloat, weight_bit_width=bits)


def relu6(bits: int = 32) -> nn.Module:
    """ReLU6; at 4/8 bit a per-tensor unsigned activation quantiser whose clip level is learned
    (initialised at 6)."""
    if not is_integer(bits):
        return nn.ReLU6()
    qnn, quant = _brevitas()
    return qnn.QuantReLU(act_quant=quant.Uint8ActPerTensorFloatMaxInit, max_val=6.0,
                         bit_width=bits)


def act_quant(bits: int = 32) -> nn.Module:
    """Signed per-tensor activation quantiser at 4/8 bit; identity at 16/32 bit."""
    if not is_integer(bits):
        return nn.Identity()
    qnn, quant = _brevitas()
    return qnn.QuantIdentity(act_quant=quant.Int8ActPerTensorFloat, bit_width=bits)


def quantised_layers(model: nn.Module) -> dict[str, int]:
    """Number of integer-quantised weight layers and activation quantisers in ``model``."""
    qnn, _ = _brevitas()
    counts = {"weight_layers": 0, "activation_quantisers": 0}
    for m in model.modules():
        if isinstance(m, (qnn.QuantConv2d, qnn.QuantLinear)):
            counts["weight_layers"] += 1
        elif isinstance(m, (qnn.QuantReLU, qnn.QuantIdentity)):
            counts["activation_quantisers"] += 1
    return counts


def weight_levels(layer: nn.Module) -> int:
    """Distinct integer weight values of a quantised layer's first output channel (a check that
    4-bit weights use at most 15 levels); 0 for an unquantised layer."""
    qnn, _ = _brevitas()
    if not isinstance(layer, (qnn.QuantConv2d, qnn.QuantLinear)):
        return 0
    with torch.no_grad():
        q = layer.quant_weight()
        return int(torch.unique(q.int()[0]).numel())
