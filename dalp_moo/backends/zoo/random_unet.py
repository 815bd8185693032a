"""Random U-Net-style segmentation networks (depth, widths, block types, activations,
up-sampling, skip concatenation) for fitting and validating the host latency model."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


class _InputScale(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.register_buffer("mean", torch.full((1, channels, 1, 1), 500.0))
        self.register_buffer("std", torch.full((1, channels, 1, 1), 250.0))

    mean: torch.Tensor
    std: torch.Tensor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


_ACT = {"relu": nn.ReLU, "relu6": nn.ReLU6, "gelu": nn.GELU, "silu": nn.SiLU, "hardswish": nn.Hardswish}


class _Block(nn.Module):
    def __init__(self, kind: str, cin: int, cout: int, act: str, k: int, expand: int) -> None:
        super().__init__()
        a = _ACT[act]
        p = k // 2
        self.res = kind in ("resnet", "mbconv_res") and cin == cout
        if kind == "conv_act":
            self.body = nn.Sequential(nn.Conv2d(cin, cout, k, padding=p), a(),
                                      nn.Conv2d(cout, cout, k, padding=p), a())
        elif kind == "conv_bn_act":
            self.body = nn.Sequential(nn.Conv2d(cin, cout, k, padding=p, bias=False), nn.BatchNorm2d(cout), a(),
                                      nn.Conv2d(cout, cout, k, padding=p, bias=False), nn.BatchNorm2d(cout), a())
        elif kind in ("mbconv", "mbconv_res"):
            h = cin * expand
            self.body = nn.Sequential(nn.Conv2d(cin, h, 1, bias=False), nn.BatchNorm2d(h), a(),
                                      nn.Conv2d(h, h, k, padding=p, groups=h, bias=False), nn.BatchNorm2d(h), a(),
                                      nn.Conv2d(h, cout, 1, bias=False), nn.BatchNorm2d(cout))
        else:  # resnet
            self.body = nn.Sequential(nn.Conv2d(cin, cout, k, padding=p, bias=False), nn.BatchNorm2d(cout), a(),
                                      nn.Conv2d(cout, cout, k, padding=p, bias=False), nn.BatchNorm2d(cout))
            self.proj = None if cin == cout else nn.Conv2d(cin, cout, 1, bias=False)
            self.res = True
            self.act = a()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.body(x)
        if hasattr(self, "act"):
            return self.act(y + (x if self.proj is None else self.proj(x)))
        return y + x if self.res else y


class RandomUNet(nn.Module):
    """U-Net-style network with per-level widths, one block kind and activation."""

    def __init__(self, in_channels: int, widths: list[int], kind: str, act: str, k: int,
                 expand: int, up: str, num_classes: int = 2) -> None:
        super().__init__()
        self.norm = _InputScale(in_channels)
        self.down = nn.ModuleList()
        c = in_channels
        for w in widths:
            self.down.append(_Block(kind, c, w, act, k, expand))
            c = w
        self.pool = nn.MaxPool2d(2)
        self.up_mode = up
        self.ups = nn.ModuleList()
        self.dec = nn.ModuleList()
        for w in reversed(widths[:-1]):
            self.ups.append(nn.ConvTranspose2d(c, c, 2, stride=2) if up == "deconv" else nn.Identity())
            self.dec.append(_Block(kind, c + w, w, act, k, expand))
            c = w
        self.head = nn.Conv2d(c, num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.norm(x)
        skips = []
        for i, block in enumerate(self.down):
            x = block(x)
            if i < len(self.down) - 1:
                skips.append(x)
                x = self.pool(x)
        for up, block in zip(self.ups, self.dec, strict=True):
            x = up(x) if self.up_mode == "deconv" else F.interpolate(x, scale_factor=2.0, mode=self.up_mode)
            x = block(torch.cat([x, skips.pop()], dim=1))
        return self.head(x)


def random_unet(rng: np.random.Generator, in_channels: int = 4) -> nn.Module:
    """Draw a random U-Net-style network (deterministic for the generator's state)."""
    depth = int(rng.integers(2, 5))
    base = int(rng.choice([4, 6, 8, 12, 16, 24, 32]))
    growth = float(rng.choice([1.0, 1.5, 2.0]))
    widths = [max(2, int(round(base * growth ** i))) for i in range(depth)]
    kind = str(rng.choice(["conv_act", "conv_bn_act", "mbconv", "mbconv_res", "resnet"]))
    act = str(rng.choice(["relu", "relu6", "gelu"]))
    k = int(rng.choice([3, 3, 5]))
    expand = int(rng.choice([2, 4]))
    up = str(rng.choice(["nearest", "bilinear", "deconv"]))
    torch.manual_seed(int(rng.integers(0, 2**31 - 1)))
    return RandomUNet(in_channels, widths, kind, act, k, expand, up).eval()
