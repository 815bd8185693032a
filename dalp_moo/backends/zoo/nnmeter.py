"""nn-Meter benchmark-dataset model ``alexnet_1356`` (Myriad VPU, OpenVINO 2019 R2: 15.486 ms).

Source: microsoft/nn-Meter, ``examples/nn-meter_predictor_for_bench_dataset.ipynb`` (the first
record of ``alexnets.jsonl``: its graph in nn-Meter IR and its latency on
``myriadvpu_openvino2019r2``, the sum of the device's per-layer counters, no USB). Layers read from
that graph (NHWC shapes as stored):

conv7x7 stride 4 (63, output 56x56) + ReLU, max-pool 3 s2 'same' (28x28); conv1x1 (38) + ReLU,
max-pool 3 s2 'valid' (13x13); conv3x3 (652) + ReLU; conv7x7 (204) + ReLU; conv3x3 (179) + ReLU,
max-pool 3 s2 'valid'; spatial mean; MatMul 2867 + ReLU, MatMul 4505 + ReLU, MatMul 1000. No bias
nodes are stored.
"""

from __future__ import annotations

import torch
from torch import nn


class Alexnet1356(nn.Module):
    """The ``alexnet_1356`` variant (input 1x3x224x224)."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 63, 7, stride=4, padding=2, bias=False), nn.ReLU(), nn.MaxPool2d(3, 2, padding=1),
            nn.Conv2d(63, 38, 1, bias=False), nn.ReLU(), nn.MaxPool2d(3, 2),
            nn.Conv2d(38, 652, 3, padding=1, bias=False), nn.ReLU(),
            nn.Conv2d(652, 204, 7, padding=3, bias=False), nn.ReLU(),
            nn.Conv2d(204, 179, 3, padding=1, bias=False), nn.ReLU(), nn.MaxPool2d(3, 2))
        self.fc = nn.Sequential(nn.Linear(179, 2867, bias=False), nn.ReLU(), nn.Linear(2867, 4505, bias=False),
                                nn.ReLU(), nn.Linear(4505, 1000, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x).mean((2, 3)))


def alexnet_1356() -> nn.Module:
    """nn-Meter's ``alexnet_1356``."""
    return Alexnet1356().eval()
