"""Per-layer trace of a torch model: the layers a latency model costs.

Leaf modules are recorded with forward hooks (shapes, MACs, parameter and activation sizes).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class LayerInfo:
    """One executed leaf module. Sizes in elements; ``macs`` in multiply-accumulates."""

    name: str
    type: str
    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    macs: int
    params: int


def _macs(module: nn.Module, out: torch.Tensor) -> int:
    if isinstance(module, nn.Conv2d):
        kh, kw = module.kernel_size
        per_out = (module.in_channels // module.groups) * kh * kw
        return int(out.numel() * per_out)
    if isinstance(module, nn.Linear):
        return int(out.numel() * module.in_features)
    return 0


def trace_layers(model: nn.Module, input_shape: tuple[int, ...]) -> list[LayerInfo]:
    """Run ``model`` once on zeros of ``input_shape`` and record every leaf module executed."""
    layers: list[LayerInfo] = []
    hooks = []

    def make_hook(name: str):
        def hook(module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
            if not isinstance(output, torch.Tensor) or not inputs:
                return
            layers.append(LayerInfo(
                name=name,
                type=type(module).__name__,
                in_shape=tuple(inputs[0].shape),
                out_shape=tuple(output.shape),
                macs=_macs(module, output),
                params=sum(p.numel() for p in module.parameters(recurse=False)),
            ))
        return hook

    for name, module in model.named_modules():
        if not list(module.children()):
            hooks.append(module.register_forward_hook(make_hook(name)))
    was_training = model.training
    model.eval()
    try:
        device = next((p.device for p in model.parameters()), torch.device("cpu"))
        with torch.no_grad():
            model(torch.zeros(input_shape, device=device))
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    return layers
