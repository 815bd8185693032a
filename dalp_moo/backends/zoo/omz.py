"""Open Model Zoo networks of Intel's NCS2 throughput table (OpenVINO 2022.1 benchmark data).

Each is built from its published architecture (the OMZ model card gives the source model and its
GFLOPs / MParams, used to check the reconstruction):

- :func:`densenet121`: ``densenet-121-tf2`` (Huang et al., CVPR 2017; Keras application):
  conv7x7/2 64, max-pool 3/2, dense blocks of 6, 12, 24, 16 layers (BN-ReLU-conv1x1 128,
  BN-ReLU-conv3x3 32, concat), transitions BN-ReLU-conv1x1 (half the channels)-avg-pool 2/2, final
  BN-ReLU, global average pool, FC 1000 + softmax. OMZ: 5.7287 GFLOPs, 7.9714 MParams, 224 px.
- :func:`inception_v3`: ``inception-v3-tf`` (Szegedy et al., CVPR 2016; Keras application):
  stem, 3 x InceptionA (pool projections 32, 64, 64), reduction A, 4 x InceptionC (7x7 factorised,
  128 / 160 / 160 / 192 channels), reduction B, 2 x InceptionE, global pool, FC 1000 + softmax;
  conv + BN + ReLU throughout. OMZ: 11.469 GFLOPs, 23.819 MParams, 299 px.
- :func:`mobilenet_ssd`: ``mobilenet-ssd`` (Caffe MobileNet-SSD, chuanqi305; Liu et al., SSD,
  ECCV 2016): MobileNetV1 (conv0..conv13), extra layers conv14..conv17 (1x1 then 3x3/2), 1x1
  box (anchors x 4) and class (anchors x 21) heads on conv11 (3 anchors), conv13 and conv14_2 ..
  conv17_2 (6 anchors): 1917 boxes; heads permuted to NHWC, flattened and concatenated, softmax over
  the 21 classes. The DetectionOutput layer (NMS) is not modelled. OMZ: 2.316 GFLOPs, 5.783 MParams.
- :func:`unet_camvid`: ``unet-camvid-onnx-0001`` (Ronneberger et al., 2015; trained in PyTorch):
  double conv3x3 + BN + ReLU per level, 64..1024 channels, max-pool down, conv-transpose 2x2/2 up,
  skip concatenation, conv1x1 to 12 classes, softmax. OMZ: 260.1 GFLOPs, 31.03 MParams, 368x480.
"""

from __future__ import annotations

import torch
from torch import nn

from dalp_moo.backends.zoo.layers import conv_bn


class _DenseLayer(nn.Module):
    def __init__(self, cin: int, growth: int = 32) -> None:
        super().__init__()
        self.pre = nn.Sequential(nn.BatchNorm2d(cin), nn.ReLU())
        self.conv1 = conv_bn(cin, 4 * growth, 1)
        self.conv2 = nn.Conv2d(4 * growth, growth, 3, padding=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x, self.conv2(self.conv1(self.pre(x)))], dim=1)


def densenet121(num_classes: int = 1000) -> nn.Module:
    """DenseNet-121 (input 1x3x224x224)."""
    layers: list[nn.Module] = [conv_bn(3, 64, 7, 2, padding=3), nn.MaxPool2d(3, 2, padding=1)]
    c = 64
    for i, n in enumerate((6, 12, 24, 16)):
        for _ in range(n):
            layers.append(_DenseLayer(c))
            c += 32
        if i < 3:
            layers += [nn.BatchNorm2d(c), nn.ReLU(), nn.Conv2d(c, c // 2, 1, bias=False), nn.AvgPool2d(2, 2)]
            c //= 2
    layers += [nn.BatchNorm2d(c), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c, num_classes),
               nn.Softmax(dim=-1)]
    return nn.Sequential(*layers).eval()


def _c(cin: int, cout: int, k: int | tuple[int, int], s: int = 1, p: int | tuple[int, int] | None = None) -> nn.Module:
    return conv_bn(cin, cout, k, s, padding=p)


class _Branches(nn.Module):
    """Parallel branches concatenated on channels."""

    def __init__(self, *branches: nn.Module) -> None:
        super().__init__()
        self.branches = nn.ModuleList(branches)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([b(x) for b in self.branches], dim=1)


class _SplitBranch(nn.Module):
    """``stem`` then two parallel convolutions concatenated (InceptionE)."""

    def __init__(self, stem: nn.Module, a: nn.Module, b: nn.Module) -> None:
        super().__init__()
        self.stem, self.a, self.b = stem, a, b

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.stem(x)
        return torch.cat([self.a(y), self.b(y)], dim=1)


def _inception_a(cin: int, pool: int) -> nn.Module:
    return _Branches(_c(cin, 64, 1),
                     nn.Sequential(_c(cin, 48, 1), _c(48, 64, 5)),
                     nn.Sequential(_c(cin, 64, 1), _c(64, 96, 3), _c(96, 96, 3)),
                     nn.Sequential(nn.AvgPool2d(3, 1, 1), _c(cin, pool, 1)))


def _inception_c(cin: int, c7: int) -> nn.Module:
    return _Branches(_c(cin, 192, 1),
                     nn.Sequential(_c(cin, c7, 1), _c(c7, c7, (1, 7)), _c(c7, 192, (7, 1))),
                     nn.Sequential(_c(cin, c7, 1), _c(c7, c7, (7, 1)), _c(c7, c7, (1, 7)), _c(c7, c7, (7, 1)),
                                   _c(c7, 192, (1, 7))),
                     nn.Sequential(nn.AvgPool2d(3, 1, 1), _c(cin, 192, 1)))


def _inception_e(cin: int) -> nn.Module:
    return _Branches(_c(cin, 320, 1),
                     _SplitBranch(_c(cin, 384, 1), _c(384, 384, (1, 3)), _c(384, 384, (3, 1))),
                     _SplitBranch(nn.Sequential(_c(cin, 448, 1), _c(448, 384, 3)), _c(384, 384, (1, 3)),
                                  _c(384, 384, (3, 1))),
                     nn.Sequential(nn.AvgPool2d(3, 1, 1), _c(cin, 192, 1)))


def inception_v3(num_classes: int = 1000) -> nn.Module:
    """Inception-v3 (input 1x3x299x299)."""
    layers: list[nn.Module] = [
        _c(3, 32, 3, 2, 0), _c(32, 32, 3, 1, 0), _c(32, 64, 3), nn.MaxPool2d(3, 2),
        _c(64, 80, 1), _c(80, 192, 3, 1, 0), nn.MaxPool2d(3, 2),
        _inception_a(192, 32), _inception_a(256, 64), _inception_a(288, 64),
        _Branches(_c(288, 384, 3, 2, 0), nn.Sequential(_c(288, 64, 1), _c(64, 96, 3), _c(96, 96, 3, 2, 0)),
                  nn.MaxPool2d(3, 2)),
        _inception_c(768, 128), _inception_c(768, 160), _inception_c(768, 160), _inception_c(768, 192),
        _Branches(nn.Sequential(_c(768, 192, 1), _c(192, 320, 3, 2, 0)),
                  nn.Sequential(_c(768, 192, 1), _c(192, 192, (1, 7)), _c(192, 192, (7, 1)), _c(192, 192, 3, 2, 0)),
                  nn.MaxPool2d(3, 2)),
        _inception_e(1280), _inception_e(2048),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2048, num_classes), nn.Softmax(dim=-1)]
    return nn.Sequential(*layers).eval()


class MobileNetSSD(nn.Module):
    """MobileNetV1-SSD 300 (Caffe), 21 classes; raw boxes and class probabilities."""

    def __init__(self, num_classes: int = 21) -> None:
        super().__init__()
        self.num_classes = num_classes
        plan = [(64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2)] + [(512, 1)] * 5
        layers: list[nn.Module] = [conv_bn(3, 32, 3, 2)]
        c = 32
        for w, s in plan:  # conv1..conv11: depthwise 3x3 + pointwise 1x1
            layers += [conv_bn(c, c, 3, s, groups=c), conv_bn(c, w, 1)]
            c = w
        self.to11 = nn.Sequential(*layers)
        self.to13 = nn.Sequential(conv_bn(512, 512, 3, 2, groups=512), conv_bn(512, 1024, 1),
                                  conv_bn(1024, 1024, 3, 1, groups=1024), conv_bn(1024, 1024, 1))
        extras, c = [], 1024
        for mid, out in ((256, 512), (128, 256), (128, 256), (64, 128)):
            extras.append(nn.Sequential(conv_bn(c, mid, 1), conv_bn(mid, out, 3, 2)))
            c = out
        self.extras = nn.ModuleList(extras)
        srcs = (512, 1024, 512, 256, 256, 128)
        anchors = (3, 6, 6, 6, 6, 6)
        self.loc = nn.ModuleList(nn.Conv2d(s, a * 4, 1) for s, a in zip(srcs, anchors, strict=True))
        self.conf = nn.ModuleList(nn.Conv2d(s, a * num_classes, 1) for s, a in zip(srcs, anchors, strict=True))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        f = [self.to11(x)]
        f.append(self.to13(f[0]))
        for e in self.extras:
            f.append(e(f[-1]))
        loc = torch.cat([h(s).permute(0, 2, 3, 1).flatten(1) for h, s in zip(self.loc, f, strict=True)], dim=1)
        conf = torch.cat([h(s).permute(0, 2, 3, 1).flatten(1) for h, s in zip(self.conf, f, strict=True)], dim=1)
        return loc, torch.softmax(conf.view(1, -1, self.num_classes), dim=-1)


def mobilenet_ssd() -> nn.Module:
    """OMZ ``mobilenet-ssd`` (input 1x3x300x300)."""
    return MobileNetSSD().eval()


def _double(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(conv_bn(cin, cout, 3), conv_bn(cout, cout, 3))


class UNetCamvid(nn.Module):
    """Classic U-Net, widths 64..1024, transposed-conv up-sampling, 12 classes + softmax."""

    def __init__(self, in_channels: int = 3, num_classes: int = 12) -> None:
        super().__init__()
        w = (64, 128, 256, 512, 1024)
        self.down = nn.ModuleList([_double(in_channels, w[0])] + [_double(w[i], w[i + 1]) for i in range(4)])
        self.pool = nn.MaxPool2d(2)
        self.up = nn.ModuleList(nn.ConvTranspose2d(w[i + 1], w[i], 2, stride=2) for i in reversed(range(4)))
        self.dec = nn.ModuleList(_double(2 * w[i], w[i]) for i in reversed(range(4)))
        self.head = nn.Conv2d(w[0], num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for i, d in enumerate(self.down):
            x = d(x if i == 0 else self.pool(x))
            skips.append(x)
        skips.pop()
        for up, dec in zip(self.up, self.dec, strict=True):
            x = dec(torch.cat([skips.pop(), up(x)], dim=1))
        return torch.softmax(self.head(x), dim=1)


def unet_camvid() -> nn.Module:
    """OMZ ``unet-camvid-onnx-0001`` (input 1x3x368x480)."""
    return UNetCamvid().eval()
