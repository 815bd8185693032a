"""Convolution blocks of the search space. Each maps ``in_ch`` -> ``out_ch`` at equal resolution."""

from __future__ import annotations

import torch
from torch import nn

from dalp_moo.space.genome import UnitSpec


def activation(name: str) -> nn.Module:
    """Activation module by name (relu, relu6, gelu)."""
    if name == "relu":
        return nn.ReLU()
    if name == "relu6":
        return nn.ReLU6()
    if name == "gelu":
        return nn.GELU()
    raise ValueError(f"unknown activation {name!r}")


def conv_bn_act(in_ch: int, out_ch: int, k: int, act: str, groups: int = 1) -> nn.Sequential:
    """Conv (no bias) + batch norm + activation, 'same' padding."""
    return nn.Sequential(
        nn.Conv2d(in_ch, out_ch, k, padding=k // 2, groups=groups, bias=False),
        nn.BatchNorm2d(out_ch),
        activation(act),
    )


def conv_bn(in_ch: int, out_ch: int, k: int = 1) -> nn.Sequential:
    """Conv (no bias) + batch norm, no activation."""
    return nn.Sequential(nn.Conv2d(in_ch, out_ch, k, padding=k // 2, bias=False), nn.BatchNorm2d(out_ch))


class ConvAct(nn.Sequential):
    """Plain convolution (with bias) + activation; no normalisation."""

    def __init__(self, in_ch: int, out_ch: int, k: int, act: str) -> None:
        super().__init__(nn.Conv2d(in_ch, out_ch, k, padding=k // 2), activation(act))


class SqueezeExcite(nn.Module):
    """Channel attention: global average pool, bottleneck 1x1 convs, sigmoid gate."""

    def __init__(self, ch: int, reduction: int) -> None:
        super().__init__()
        hidden = max(1, ch // reduction)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(ch, hidden, 1)
        self.act = nn.ReLU()
        self.fc2 = nn.Conv2d(hidden, ch, 1)
        self.gate = nn.Sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gate(self.fc2(self.act(self.fc1(self.pool(x)))))


class SEConv(nn.Module):
    """Conv-BN-act followed by squeeze-excitation."""

    def __init__(self, in_ch: int, out_ch: int, k: int, act: str, reduction: int) -> None:
        super().__init__()
        self.conv = conv_bn_act(in_ch, out_ch, k, act)
        self.se = SqueezeExcite(out_ch, reduction)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.se(self.conv(x))


class MBConv(nn.Module):
    """Inverted residual: 1x1 expand, depthwise kxk, 1x1 project (+ shortcut if ``residual``).

    The shortcut is the identity when shapes match, else a 1x1 conv + BN projection.
    """

    def __init__(self, in_ch: int, out_ch: int, k: int, act: str, expansion: int, residual: bool) -> None:
        super().__init__()
        hidden = in_ch * expansion
        self.expand = conv_bn_act(in_ch, hidden, 1, act)
        self.depthwise = conv_bn_act(hidden, hidden, k, act, groups=hidden)
        self.project = conv_bn(hidden, out_ch, 1)
        self.residual = residual
        self.shortcut: nn.Module = nn.Identity() if in_ch == out_ch else conv_bn(in_ch, out_ch, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.project(self.depthwise(self.expand(x)))
        return y + self.shortcut(x) if self.residual else y


class ResNetBlock(nn.Module):
    """Bottleneck residual block: 1x1 reduce (out/reduction), kxk, 1x1 expand, add, activation."""

    def __init__(self, in_ch: int, out_ch: int, k: int, act: str, reduction: int) -> None:
        super().__init__()
        mid = max(1, out_ch // reduction)
        self.reduce = conv_bn_act(in_ch, mid, 1, act)
        self.conv = conv_bn_act(mid, mid, k, act)
        self.expand = conv_bn(mid, out_ch, 1)
        self.shortcut: nn.Module = nn.Identity() if in_ch == out_ch else conv_bn(in_ch, out_ch, 1)
        self.act = activation(act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.expand(self.conv(self.reduce(x))) + self.shortcut(x))


class DenseBlock(nn.Module):
    """Two densely connected conv-BN-act layers (growth out/reduction) and a 1x1 transition."""

    def __init__(self, in_ch: int, out_ch: int, k: int, act: str, reduction: int) -> None:
        super().__init__()
        growth = max(1, out_ch // reduction)
        self.layer1 = conv_bn_act(in_ch, growth, k, act)
        self.layer2 = conv_bn_act(in_ch + growth, growth, k, act)
        self.transition = conv_bn_act(in_ch + 2 * growth, out_ch, 1, act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y1 = self.layer1(x)
        y2 = self.layer2(torch.cat([x, y1], dim=1))
        return self.transition(torch.cat([x, y1, y2], dim=1))


def make_block(unit: UnitSpec, in_ch: int) -> nn.Module:
    """The conv block of ``unit`` taking ``in_ch`` input channels."""
    out, k, act = unit.out_channels, unit.kernel, unit.activation
    if unit.block == "conv_act":
        return ConvAct(in_ch, out, k, act)
    if unit.block == "conv_bn_act":
        return conv_bn_act(in_ch, out, k, act)
    if unit.block == "se_conv":
        return SEConv(in_ch, out, k, act, unit.reduction)
    if unit.block in ("mbconv", "mbconv_res"):
        return MBConv(in_ch, out, k, act, unit.expansion, residual=unit.block == "mbconv_res")
    if unit.block == "resnet":
        return ResNetBlock(in_ch, out, k, act, unit.reduction)
    if unit.block == "densenet":
        return DenseBlock(in_ch, out, k, act, unit.reduction)
    raise ValueError(f"unknown block {unit.block!r}")
