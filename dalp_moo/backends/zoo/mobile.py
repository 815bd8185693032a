"""Mobile classifiers and segmenters with published Myriad X figures (inference-time structure).

- :func:`mobileone_s0`: MobileOne-S0 after re-parameterisation (Vasu et al., "MobileOne: An
  Improved One millisecond Mobile Backbone", CVPR 2023; facts from the paper and apple/ml-mobileone:
  blocks per stage (2, 8, 10, 1), width multipliers (0.75, 1, 1, 2) on (64, 128, 256, 512), stem
  conv3x3 s2 with min(64, 64 x 0.75) = 48 channels; each block is a depthwise conv3x3 + ReLU and a
  pointwise conv1x1 + ReLU, the first block of each stage strided; global average pool, FC 1000;
  no squeeze-excitation in S0). The train-time branches fold into one conv each, which is what is
  deployed. Luxonis RVC2 table: 224 px.
- :func:`deeplabv3_mnv2`: DeepLabV3 with a MobileNetV2 backbone at output stride 8, the
  ``deeplabv3_mnv2_pascal_train_aug`` model of Open Model Zoo's ``deeplabv3`` (facts: OMZ
  ``models/public/deeplabv3/model.yml``; tensorflow/models ``research/deeplab``: MobileNetV2 up to
  its 320-channel layer, strides after output stride 8 replaced by atrous rates 2 and 4, no ASPP
  atrous branches and no decoder for this variant, an image-pooling branch and a 1x1 branch of 256
  channels concatenated and projected to 256, 21-class 1x1 logits, bilinear resize to the input,
  arg-max). The Luxonis RVC2 DeepLabV3 rows are taken to be this network at 256 and 513 px.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from dalp_moo.backends.zoo.layers import conv_bn, relu6


def mobileone_s0(num_classes: int = 1000) -> nn.Module:
    """Re-parameterised MobileOne-S0 (input 1x3x224x224)."""
    layers: list[nn.Module] = [conv_bn(3, 48, 3, 2, bn=False)]
    c = 48
    for n, w in zip((2, 8, 10, 1), (48, 128, 256, 1024), strict=True):
        for i in range(n):
            layers += [conv_bn(c, c, 3, 2 if i == 0 else 1, groups=c, bn=False), conv_bn(c, w, 1, bn=False)]
            c = w
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c, num_classes)).eval()


class _InvertedResidual(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, t: int, rate: int) -> None:
        super().__init__()
        h = cin * t
        layers: list[nn.Module] = [conv_bn(cin, h, 1, act=relu6)] if t != 1 else []
        layers += [conv_bn(h, h, 3, stride, groups=h, dilation=rate, act=relu6), conv_bn(h, cout, 1, act=None)]
        self.body = nn.Sequential(*layers)
        self.res = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.body(x)
        return x + y if self.res else y


class DeepLabV3MobileNetV2(nn.Module):
    """DeepLabV3 (MobileNetV2, output stride 8, image pooling + 1x1 branch), 21 classes, arg-max."""

    def __init__(self, num_classes: int = 21, output_stride: int = 8) -> None:
        super().__init__()
        layers: list[nn.Module] = [conv_bn(3, 32, 3, 2, act=relu6)]
        c, stride, rate = 32, 2, 1
        for t, cout, n, s in ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
                              (6, 160, 3, 2), (6, 320, 1, 1)):
            for i in range(n):
                si = s if i == 0 else 1
                layer_stride, layer_rate = si, rate
                if si > 1 and stride >= output_stride:  # atrous instead of striding
                    layer_stride, rate = 1, rate * si
                else:
                    stride *= si
                layers.append(_InvertedResidual(c, cout, layer_stride, t, layer_rate))
                c = cout
        self.backbone = nn.Sequential(*layers)
        self.image_pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), conv_bn(c, 256, 1))
        self.aspp0 = conv_bn(c, 256, 1)
        self.project = conv_bn(512, 256, 1)
        self.logits = nn.Conv2d(256, num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.backbone(x)
        pooled = F.interpolate(self.image_pool(f), size=f.shape[-2:], mode="bilinear", align_corners=True)
        y = self.logits(self.project(torch.cat([pooled, self.aspp0(f)], dim=1)))
        y = F.interpolate(y, size=x.shape[-2:], mode="bilinear", align_corners=True)
        return y.amax(dim=1, keepdim=True)  # arg-max over classes: a channel reduction


def deeplabv3_mnv2() -> nn.Module:
    """OMZ ``deeplabv3`` (input 1x3xHxW; published at 513 px and, on RVC2, 256 px)."""
    return DeepLabV3MobileNetV2().eval()
