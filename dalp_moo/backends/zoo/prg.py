"""The U-Net-like encoder-decoder of the NCS2 speed sweep in NitinJSanket/prg_prgncs.

Source: github.com/NitinJSanket/prg_prgncs, ``NCS-2/tf_model.py`` (the network) and ``README.md``
(the NCS2 table: FPS, parameters and TF-profiler FLOPs per input size and width list). Facts
used (read, not copied):

- encoder: per width ``w``, a residual block — conv3x3(w) + ReLU, conv3x3(w), a 1x1 projection of
  the block input (the channel count always changes, so the projection is always present), add,
  ReLU — then 2x2 max-pool stride 2 ('same');
- decoder: per width in reverse order, conv-transpose 3x3 stride 2 ('same', doubles the size) +
  ReLU, conv-transpose 3x3 stride 1 + ReLU (the skip/residual code is commented out: no skips);
- a final conv3x3 to 4 output channels; every convolution has a bias; batch norm is the
  identity (``BN`` returns its input).

With this definition the parameter counts equal the README's (745 364 for widths 16..128 and one
input channel; 186 828 for 8..64; 917 033 for the 7-level 10..120; 540 871 for 8..92 with six
input channels).
"""

from __future__ import annotations

import torch
from torch import nn


class _ResBlock(nn.Module):
    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.proj = nn.Conv2d(cin, cout, 1)
        self.act = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.conv2(self.act(self.conv1(x))) + self.proj(x))


class PrgEncoderDecoder(nn.Module):
    """Encoder of residual blocks with max-pooling, decoder of transposed convolutions, 4 outputs."""

    def __init__(self, in_channels: int, widths: tuple[int, ...], out_channels: int = 4) -> None:
        super().__init__()
        enc: list[nn.Module] = []
        c = in_channels
        for w in widths:
            enc += [_ResBlock(c, w), nn.MaxPool2d(2, 2)]
            c = w
        self.encoder = nn.Sequential(*enc)
        dec: list[nn.Module] = []
        for w in reversed(widths):
            dec += [nn.ConvTranspose2d(c, w, 3, stride=2, padding=1, output_padding=1), nn.ReLU(),
                    nn.ConvTranspose2d(w, w, 3, stride=1, padding=1), nn.ReLU()]
            c = w
        self.decoder = nn.Sequential(*dec)
        self.head = nn.Conv2d(c, out_channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.decoder(self.encoder(x)))


def prg_net(in_channels: int = 1, widths: tuple[int, ...] = (16, 32, 64, 128)) -> nn.Module:
    """The prg_prgncs network for ``in_channels`` input channels and per-level ``widths``."""
    return PrgEncoderDecoder(in_channels, tuple(widths)).eval()
