"""YOLO detectors with published Myriad X figures (raw head outputs; box decoding and NMS, which
run on the host or as a final SHAVE layer, are left out).

- :func:`yolov3_tiny`: YOLOv3-tiny (Redmon and Farhadi, "YOLOv3", 2018; Darknet ``yolov3-tiny.cfg``,
  OMZ ``yolo-v3-tiny-tf``: GFLOPs 5.582, MParams 8.848 at 416 px): conv3x3 16..512 with batch norm
  and leaky ReLU 0.1, 2x2 max-pools (the last with stride 1), conv3x3 1024, conv1x1 256, two
  heads (conv3x3 512 -> conv1x1 255 at 13x13; conv1x1 128, 2x nearest up-sampling, concat with the
  26x26 256-channel features, conv3x3 256 -> conv1x1 255). The OMZ IR ends in RegionYolo layers
  (logistic activations on the SHAVEs), here a sigmoid on both outputs.
- :func:`yolov8`: Ultralytics YOLOv8 n / s / m (``ultralytics/cfg/models/v8/yolov8.yaml``: depth,
  width and channel-cap multipliers (0.33, 0.25, 1024), (0.33, 0.50, 1024), (0.67, 0.75, 768);
  Conv = conv + BN + SiLU; C2f blocks with a split and n bottlenecks; SPPF with three 5x5 max-pools;
  PAN neck with nearest up-sampling and concatenation; decoupled Detect head with 64 box and 80
  class channels per level). The Luxonis RVC2 export keeps the per-level outputs (boxes and
  sigmoid class scores concatenated).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from dalp_moo.backends.zoo.layers import conv_bn, leaky01


class YoloV3Tiny(nn.Module):
    """YOLOv3-tiny, 80 classes x 3 anchors per level."""

    def __init__(self, num_outputs: int = 255) -> None:
        super().__init__()
        chans = (16, 32, 64, 128, 256)
        layers: list[nn.Module] = []
        c = 3
        for i, w in enumerate(chans):
            layers.append(conv_bn(c, w, 3, act=leaky01))
            if i < len(chans) - 1:
                layers.append(nn.MaxPool2d(2, 2))
            c = w
        self.to26 = nn.Sequential(*layers)  # 26x26x256 at 416 px
        self.to13 = nn.Sequential(nn.MaxPool2d(2, 2), conv_bn(256, 512, 3, act=leaky01))
        self.pool_s1 = nn.MaxPool2d(2, 1, padding=1)  # Darknet size=2 stride=1: 13 -> 13
        self.mid = nn.Sequential(conv_bn(512, 1024, 3, act=leaky01), conv_bn(1024, 256, 1, act=leaky01))
        self.head13 = nn.Sequential(conv_bn(256, 512, 3, act=leaky01), nn.Conv2d(512, num_outputs, 1))
        self.lateral = conv_bn(256, 128, 1, act=leaky01)
        self.head26 = nn.Sequential(conv_bn(384, 256, 3, act=leaky01), nn.Conv2d(256, num_outputs, 1))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        f26 = self.to26(x)
        f13 = self.to13(f26)
        n = f13.shape[-1]
        f13 = self.mid(self.pool_s1(f13)[..., :n, :n])
        y13 = torch.sigmoid(self.head13(f13))
        up = F.interpolate(self.lateral(f13), scale_factor=2.0, mode="nearest")
        y26 = torch.sigmoid(self.head26(torch.cat([up, f26], dim=1)))
        return y13, y26


def yolov3_tiny() -> nn.Module:
    """OMZ ``yolo-v3-tiny-tf`` (input 1x3x416x416)."""
    return YoloV3Tiny().eval()


def _silu_conv(cin: int, cout: int, k: int = 1, s: int = 1) -> nn.Sequential:
    return conv_bn(cin, cout, k, s, act=nn.SiLU)


class _Bottleneck(nn.Module):
    def __init__(self, c: int, shortcut: bool) -> None:
        super().__init__()
        self.cv1 = _silu_conv(c, c, 3)
        self.cv2 = _silu_conv(c, c, 3)
        self.add = shortcut

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.cv2(self.cv1(x))
        return x + y if self.add else y


class _C2f(nn.Module):
    def __init__(self, cin: int, cout: int, n: int, shortcut: bool) -> None:
        super().__init__()
        self.c = cout // 2
        self.cv1 = _silu_conv(cin, 2 * self.c)
        self.m = nn.ModuleList(_Bottleneck(self.c, shortcut) for _ in range(n))
        self.cv2 = _silu_conv((2 + n) * self.c, cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = list(self.cv1(x).chunk(2, dim=1))
        for m in self.m:
            y.append(m(y[-1]))
        return self.cv2(torch.cat(y, dim=1))


class _SPPF(nn.Module):
    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        h = cin // 2
        self.cv1 = _silu_conv(cin, h)
        self.pool = nn.MaxPool2d(5, 1, 2)
        self.cv2 = _silu_conv(4 * h, cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = [self.cv1(x)]
        for _ in range(3):
            y.append(self.pool(y[-1]))
        return self.cv2(torch.cat(y, dim=1))


YOLOV8_SCALES: dict[str, tuple[float, float, int]] = {"n": (0.33, 0.25, 1024), "s": (0.33, 0.50, 1024),
                                                      "m": (0.67, 0.75, 768)}


class YoloV8(nn.Module):
    """YOLOv8 backbone, PAN neck and decoupled head (80 classes, 16-bin box regression)."""

    def __init__(self, scale: str = "n", num_classes: int = 80) -> None:
        super().__init__()
        depth, width, cap = YOLOV8_SCALES[scale]

        def ch(c: int) -> int:
            return int(math.ceil(min(c, cap) * width / 8) * 8)

        def rep(n: int) -> int:
            return max(round(n * depth), 1)

        c1, c2, c3, c4, c5 = ch(64), ch(128), ch(256), ch(512), ch(1024)
        self.p2 = nn.Sequential(_silu_conv(3, c1, 3, 2), _silu_conv(c1, c2, 3, 2), _C2f(c2, c2, rep(3), True))
        self.p3 = nn.Sequential(_silu_conv(c2, c3, 3, 2), _C2f(c3, c3, rep(6), True))
        self.p4 = nn.Sequential(_silu_conv(c3, c4, 3, 2), _C2f(c4, c4, rep(6), True))
        self.p5 = nn.Sequential(_silu_conv(c4, c5, 3, 2), _C2f(c5, c5, rep(3), True), _SPPF(c5, c5))
        self.up4 = _C2f(c5 + c4, c4, rep(3), False)
        self.up3 = _C2f(c4 + c3, c3, rep(3), False)
        self.down3 = _silu_conv(c3, c3, 3, 2)
        self.out4 = _C2f(c3 + c4, c4, rep(3), False)
        self.down4 = _silu_conv(c4, c4, 3, 2)
        self.out5 = _C2f(c4 + c5, c5, rep(3), False)
        reg = 16
        cb, cc = max(16, c3 // 4, 4 * reg), max(c3, min(num_classes, 100))
        self.box = nn.ModuleList(
            nn.Sequential(_silu_conv(c, cb, 3), _silu_conv(cb, cb, 3), nn.Conv2d(cb, 4 * reg, 1)) for c in (c3, c4, c5))
        self.cls = nn.ModuleList(
            nn.Sequential(_silu_conv(c, cc, 3), _silu_conv(cc, cc, 3), nn.Conv2d(cc, num_classes, 1))
            for c in (c3, c4, c5))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        p3 = self.p3(self.p2(x))
        p4 = self.p4(p3)
        p5 = self.p5(p4)
        n4 = self.up4(torch.cat([F.interpolate(p5, scale_factor=2.0, mode="nearest"), p4], dim=1))
        n3 = self.up3(torch.cat([F.interpolate(n4, scale_factor=2.0, mode="nearest"), p3], dim=1))
        o4 = self.out4(torch.cat([self.down3(n3), n4], dim=1))
        o5 = self.out5(torch.cat([self.down4(o4), p5], dim=1))
        return tuple(torch.cat([b(f), torch.sigmoid(c(f))], dim=1)
                     for f, b, c in zip((n3, o4, o5), self.box, self.cls, strict=True))


def yolov8(scale: str = "n") -> nn.Module:
    """YOLOv8 ``scale`` ('n', 's', 'm'); input 1x3xHxW with H, W multiples of 32."""
    return YoloV8(scale).eval()
