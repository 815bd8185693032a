"""Exact parameter counting of U-Net architectures (next to the model that defines them).

The search space receives a :class:`ParamCounter` for its repair, so the space never imports
the model.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch

from dalp_moo.model.unet import build_model, count_trainable
from dalp_moo.space.genome import Architecture


@functools.lru_cache(maxsize=65536)
def count_params(arch: Architecture, in_channels: int, num_classes: int = 2) -> int:
    """Exact trainable parameter count of ``arch`` (parameters), equal to torch's count; the
    model is built on the meta device (no memory, no initialisation)."""
    with torch.device("meta"):
        model = build_model(arch, in_channels, num_classes)
    return count_trainable(model)


@dataclass(frozen=True)
class ParamCounter:
    """Picklable ``arch -> parameters`` for a fixed input band count and class count."""

    in_channels: int
    num_classes: int = 2

    def __call__(self, arch: Architecture) -> int:
        return count_params(arch, self.in_channels, self.num_classes)
