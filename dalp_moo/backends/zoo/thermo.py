"""The shallow U-Net of the thermal people-counting benchmark (24x32x1 input, 46 577 parameters).

Source: Piechocki et al., "Efficient People Counting in Thermal Images: The Benchmark of
Resource-Constrained Hardware", IEEE Access 10:124835 (2022); the deployed OpenVINO IR
``evaluation/raspberry_pi/models/model_FP16.xml`` of github.com/PUTvision/thermo-hardware-benchmark
(the model the NCS2 figure was measured with). Layer sequence read from that IR:

conv3x3(16)+ReLU, conv3x3(16)+ReLU, max-pool 2x2; conv3x3(32)+ReLU x4; nearest 2x up-sampling,
conv3x3(16) (no activation); concat with the first-level features (32 channels); conv3x3(16)+ReLU,
conv3x3(16)+ReLU, conv3x3(1). All convolutions with bias (batch norm folded); its weights total
46 577 values, as published.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class ThermoUNet(nn.Module):
    """Two-level U-Net: 16 / 32 channels, nearest up-sampling, one skip concatenation."""

    def __init__(self, filters: int = 16) -> None:
        super().__init__()
        f = filters
        self.enc1 = nn.Sequential(nn.Conv2d(1, f, 3, padding=1), nn.ReLU(), nn.Conv2d(f, f, 3, padding=1), nn.ReLU())
        self.pool = nn.MaxPool2d(2, 2)
        self.enc2 = nn.Sequential(*[m for i in range(4)
                                    for m in (nn.Conv2d(f if i == 0 else 2 * f, 2 * f, 3, padding=1), nn.ReLU())])
        self.up_conv = nn.Conv2d(2 * f, f, 3, padding=1)
        self.dec = nn.Sequential(nn.Conv2d(2 * f, f, 3, padding=1), nn.ReLU(), nn.Conv2d(f, f, 3, padding=1), nn.ReLU(),
                                 nn.Conv2d(f, 1, 3, padding=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.enc1(x)
        y = self.enc2(self.pool(s))
        y = self.up_conv(F.interpolate(y, scale_factor=2.0, mode="nearest"))
        return self.dec(torch.cat([y, s], dim=1))


def thermo_unet() -> nn.Module:
    """The published 46 577-parameter network (input 1x1x24x32)."""
    return ThermoUNet().eval()
