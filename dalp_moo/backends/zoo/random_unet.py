"""Networks used to calibrate and check the latency models (plain ``torch.nn``).

- :func:`cnv`: the small CIFAR CNN of the FINN "CNV" family whose Myriad X latencies are
  published (2x conv3x3(64) pool, 2x conv3x3(128) pool, 2x conv3x3(256), FC(512) x2, FC(10);
  widths scaled by ``s``). The first block uses 'same' padding, the others none; with that
  definition the op counts match the published 11.1 / 42.7 / 167 / 663 Mops within 1 %.
- :func:`random_unet`: varied U-Net-style segmentation networks (depth, widths, block types,
  activations, up-sampling, skip concatenation) for fitting and validating the host model.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

#: Published Myriad X (NCS2) batch-1 latencies of the CNV networks: scale -> (Mops, device ms,
#: end-to-end ms with host/USB). "ops" = 2 x MAC; input 3x32x32.
CNV_LATENCY: dict[float, tuple[float, float, float]] = {
    0.25: (11.1, 1.90, 3.40),
    0.5: (42.7, 1.95, 3.50),
    1.0: (167.0, 2.39, 3.97),
    2.0: (663.0, 4.98, 6.60),
}


def _conv_bn_relu(cin: int, cout: int, padding: int) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, padding=padding, bias=False), nn.BatchNorm2d(cout), nn.ReLU()]


def cnv(scale: float = 1.0, num_classes: int = 10) -> nn.Module:
    """FINN-style CNV network with channel widths scaled by ``scale`` (input 3x32x32)."""
    c1, c2, c3, f = (max(1, round(w * scale)) for w in (64, 128, 256, 512))
    layers: list[nn.Module] = [
        *_conv_bn_relu(3, c1, 1), *_conv_bn_relu(c1, c1, 1), nn.MaxPool2d(2),      # 32 -> 16
        *_conv_bn_relu(c1, c2, 0), *_conv_bn_relu(c2, c2, 0), nn.MaxPool2d(2),     # 16 -> 12 -> 6
        *_conv_bn_relu(c2, c3, 0), *_conv_bn_relu(c3, c3, 0),                      # 6 -> 4 -> 2
        nn.Flatten(),
        nn.Linear(c3 * 2 * 2, f, bias=False), nn.BatchNorm1d(f), nn.ReLU(),
        nn.Linear(f, f, bias=False), nn.BatchNorm1d(f), nn.ReLU(),
        nn.Linear(f, num_classes),
    ]
    return nn.Sequential(*layers).eval()


class _InputScale(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.register_buffer("mean", torch.full((1, channels, 1, 1), 500.0))
        self.register_buffer("std", torch.full((1, channels, 1, 1), 250.0))

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
        for up, block in zip(self.ups, self.dec):
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
