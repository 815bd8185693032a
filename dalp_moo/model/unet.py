"""U-Net built from an :class:`~dalp_moo.space.Architecture`.

Encoder: per unit, conv block then 2x2 max/avg pooling; every block output is a skip feature.
Decoder (derived): per skip in reverse order, bilinear upsample to the skip size, 1x1 conv to the
skip's channels, concat, two 3x3 conv-BN-ReLU. Head: 1x1 conv to the class logits.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from dalp_moo.model.blocks import conv_bn_act, make_block
from dalp_moo.space.genome import Architecture


class InputNorm(nn.Module):
    """Fixed per-band input normalisation ``(x - shift) * scale`` (part of the deployed model)."""

    def __init__(self, shift: Sequence[float], scale: Sequence[float]) -> None:
        super().__init__()
        self.register_buffer("shift", torch.tensor(list(shift), dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("scale", torch.tensor(list(scale), dtype=torch.float32).view(1, -1, 1, 1))
        self.identity = bool(all(v == 0 for v in shift) and all(v == 1 for v in scale))

    def _refresh(self) -> None:
        if self.shift.device.type != "meta":
            self.identity = bool((self.shift == 0).all() and (self.scale == 1).all())

    def _load_from_state_dict(self, *args: object, **kwargs: object) -> None:
        super()._load_from_state_dict(*args, **kwargs)  # type: ignore[arg-type]
        self._refresh()  # loaded buffers (e.g. after input rescaling) decide identity

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.identity:
            return x
        return (x - self.shift) * self.scale


class DecoderStage(nn.Module):
    """Upsample to the skip, 1x1 conv to the skip channels, concat, two 3x3 conv-BN-ReLU."""

    def __init__(self, in_ch: int, skip_ch: int) -> None:
        super().__init__()
        self.reduce = nn.Conv2d(in_ch, skip_ch, 1)
        self.conv1 = conv_bn_act(2 * skip_ch, skip_ch, 3, "relu")
        self.conv2 = conv_bn_act(skip_ch, skip_ch, 3, "relu")

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
        x = torch.cat([self.reduce(x), skip], dim=1)
        return self.conv2(self.conv1(x))


class UNet(nn.Module):
    """Searched encoder + derived decoder. Output: logits ``[N, num_classes, H, W]``."""

    def __init__(self, arch: Architecture, in_channels: int, num_classes: int = 2,
                 norm: InputNorm | None = None) -> None:
        super().__init__()
        self.norm = norm if norm is not None else InputNorm([0.0] * in_channels, [1.0] * in_channels)
        self.encoder = nn.ModuleList()
        self.pools = nn.ModuleList()
        ch = in_channels
        skips = []
        for unit in arch.units:
            self.encoder.append(make_block(unit, ch))
            self.pools.append(nn.MaxPool2d(2) if unit.pooling == "max" else nn.AvgPool2d(2))
            ch = unit.out_channels
            skips.append(ch)
        self.decoder = nn.ModuleList()
        for skip_ch in reversed(skips):
            self.decoder.append(DecoderStage(ch, skip_ch))
            ch = skip_ch
        self.head = nn.Conv2d(ch, num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.norm(x)
        skips = []
        for block, pool in zip(self.encoder, self.pools, strict=True):
            x = block(x)
            skips.append(x)
            x = pool(x)
        for stage, skip in zip(self.decoder, reversed(skips), strict=True):
            x = stage(x, skip)
        return self.head(x)


def build_model(arch: Architecture, in_channels: int, num_classes: int = 2,
                norm: InputNorm | None = None) -> UNet:
    """Build the torch module of ``arch`` (weights initialised by torch's default init)."""
    return UNet(arch, in_channels, num_classes, norm)


def count_trainable(model: nn.Module) -> int:
    """Number of trainable parameters (parameters)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
