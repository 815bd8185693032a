"""Small building blocks shared by the calibration networks (plain ``torch.nn``)."""

from __future__ import annotations

from collections.abc import Callable

from torch import nn


def conv_bn(cin: int, cout: int, k: int | tuple[int, int], stride: int = 1,
            padding: int | tuple[int, int] | None = None, groups: int = 1, dilation: int = 1,
            act: Callable[[], nn.Module] | None = nn.ReLU, bn: bool = True) -> nn.Sequential:
    """Convolution (bias only without ``bn``), optional batch norm, optional activation.

    ``padding`` defaults to 'same'-size padding (``dilation * (k // 2)`` per side).
    """
    kh, kw = (k, k) if isinstance(k, int) else k
    if padding is None:
        padding = (dilation * (kh // 2), dilation * (kw // 2))
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, (kh, kw), stride, padding, dilation=dilation, groups=groups,
                                         bias=not bn)]
    if bn:
        layers.append(nn.BatchNorm2d(cout))
    if act is not None:
        layers.append(act())
    return nn.Sequential(*layers)


def relu6() -> nn.Module:
    """ReLU6 (a clamp the Myriad X NCE fuses into the convolution)."""
    return nn.ReLU6()


def leaky01() -> nn.Module:
    """Leaky ReLU with slope 0.1 (Darknet / YOLO)."""
    return nn.LeakyReLU(0.1)
