"""The FINN "CNV" CIFAR-10 CNN whose Myriad X (NCS2) latencies are published.

Architecture (FINN-examples / Umuroglu et al., FINN, FPGA 2017, "CNV"): 2x conv3x3(64), max-pool,
2x conv3x3(128), max-pool, 2x conv3x3(256), FC(512) x2, FC(10); widths scaled by ``scale``. The
first block uses 'same' padding, the others none; with that definition the op counts match the
published 11.1 / 42.7 / 167 / 663 Mops within 1 %.
"""

from __future__ import annotations

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

