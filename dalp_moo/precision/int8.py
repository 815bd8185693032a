"""INT8-aligned training forward: the quantisation that NNCF's post-training INT8 applies before
the OpenVINO CPU runtime runs a model, projected into the forward pass (fake quantisation with
straight-through gradients), so that deployment-aligned fine-tuning sees int8 rounding.

What is projected, per convolution / fully connected call (the layers NNCF quantises):

* weights: symmetric, per output channel, 8 bit: ``scale = max|w_c| / 127``, levels -127..127
  (batch norm is folded into the convolution at deployment; a per-output-channel scale is
  unchanged by that folding, so the unfolded weights quantise alike);
* the input activation: per tensor, 8 bit, range fixed from calibration inputs before
  fine-tuning: unsigned ``[0, 255] x max / 255`` where the calibration minimum is >= 0 (after
  ReLU-like layers), else symmetric ``[-128, 127] x max|x| / 127``.

Rounding is round-half-to-even (``torch.round``); gradients pass straight through inside the
range and are zero where a value is clamped. This is an approximation of the deployed model,
not an emulation of it: NNCF estimates activation ranges with its own statistics and applies a
bias correction, and the deployed figures come from the runtime (``--backend openvino`` with
``precision="int8"``), never from this module.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

#: functions whose first argument is an activation and second a weight
_QUANTISED = {F.conv2d: 0, F.linear: 0, F.conv_transpose2d: 1}  # value: weight's output-channel dim


def fake_quant(x: torch.Tensor, scale: torch.Tensor | float, qmin: int, qmax: int) -> torch.Tensor:
    """``x`` on the grid ``scale * [qmin, qmax]`` (round half to even), straight-through
    gradient inside the range and zero outside it. ``scale`` broadcasts against ``x``."""
    clamped = torch.clamp(x, qmin * scale, qmax * scale)
    return clamped + (torch.round(clamped / scale) * scale - clamped).detach()


def weight_scale(w: torch.Tensor, channel_dim: int = 0) -> torch.Tensor:
    """Per-output-channel symmetric scale ``max|w_c| / 127`` shaped to broadcast against ``w``
    (a channel of zeros gets scale 1: it quantises to zeros)."""
    dims = [d for d in range(w.dim()) if d != channel_dim]
    amax = w.detach().abs().amax(dim=dims, keepdim=True) if dims else w.detach().abs()
    return torch.where(amax > 0, amax / 127.0, torch.ones_like(amax))


def activation_grid(lo: float, hi: float) -> tuple[float, int, int]:
    """(scale, qmin, qmax) of a per-tensor 8-bit activation with calibrated range ``[lo, hi]``:
    unsigned when ``lo >= 0``, else symmetric signed."""
    if lo >= 0:
        return (hi / 255.0 if hi > 0 else 1.0), 0, 255
    amax = max(abs(lo), abs(hi))
    return (amax / 127.0 if amax > 0 else 1.0), -128, 127


class _RangeRecorder(TorchFunctionMode):
    """Records the min / max of the input of every quantised call, keyed by its weight's id."""

    def __init__(self) -> None:
        super().__init__()
        self.ranges: dict[int, tuple[float, float]] = {}

    def __torch_function__(self, func, types, args=(), kwargs=None):  # noqa: ANN001
        kwargs = kwargs or {}
        if func in _QUANTISED and len(args) >= 2 and isinstance(args[1], torch.Tensor):
            x = args[0].detach()
            key = id(args[1])
            lo, hi = float(x.min()), float(x.max())
            old = self.ranges.get(key)
            self.ranges[key] = (min(lo, old[0]), max(hi, old[1])) if old else (lo, hi)
        return func(*args, **kwargs)


def calibrate_ranges(model: nn.Module, calibration: torch.Tensor, batch: int = 32) -> dict[int, tuple[float, float]]:
    """Input ranges ``(min, max)`` of every convolution / fully connected call of ``model`` over
    ``calibration`` (eval mode, no gradients), keyed by the id of the layer's weight."""
    was_training = model.training
    model.eval()
    recorder = _RangeRecorder()
    with torch.no_grad(), recorder:
        for i in range(0, len(calibration), batch):
            model(calibration[i:i + batch])
    model.train(was_training)
    return recorder.ranges


class _Int8Mode(TorchFunctionMode):
    """Fake-quantises the weight and the input of every convolution / fully connected call."""

    def __init__(self, ranges: dict[int, tuple[float, float]]) -> None:
        super().__init__()
        self.ranges = ranges

    def __torch_function__(self, func, types, args=(), kwargs=None):  # noqa: ANN001
        kwargs = kwargs or {}
        if func not in _QUANTISED or len(args) < 2 or not isinstance(args[1], torch.Tensor):
            return func(*args, **kwargs)
        x, w = args[0], args[1]
        key = id(w)
        if key not in self.ranges:  # a layer calibration did not reach: its first input fixes the range
            self.ranges[key] = (float(x.detach().min()), float(x.detach().max()))
        scale, qmin, qmax = activation_grid(*self.ranges[key])
        xq = fake_quant(x, scale, qmin, qmax)
        dim = _QUANTISED[func]
        if func is F.conv_transpose2d and kwargs.get("groups", args[6] if len(args) > 6 else 1) != 1:
            wq = fake_quant(w, weight_scale(w.reshape(1, -1)), -127, 127)  # grouped: one scale per tensor
        else:
            wq = fake_quant(w, weight_scale(w, dim), -127, 127)
        return func(xq, wq, *args[2:], **kwargs)


def int8_context(model: nn.Module, calibration: torch.Tensor | None = None
                 ) -> Callable[[], contextlib.AbstractContextManager]:
    """Zero-argument factory of INT8-aligned forward contexts for ``model`` (the shape
    ``train_model(..., forward_context=...)`` expects). Activation ranges come from
    ``calibration`` (a batch of training inputs) before the first use; without it, each layer's
    first input fixes its range."""
    ranges = calibrate_ranges(model, calibration) if calibration is not None and len(calibration) else {}
    return lambda: _Int8Mode(ranges)


def describe() -> dict[str, Any]:
    """What the INT8-aligned forward projects (for records)."""
    return {"weights": "symmetric per output channel, 8 bit (-127..127)",
            "activations": "per tensor, 8 bit, range from calibration tiles (unsigned when >= 0)",
            "layers": "convolutions and fully connected layers (their input and weight)",
            "gradient": "straight-through inside the range, zero where clamped"}
