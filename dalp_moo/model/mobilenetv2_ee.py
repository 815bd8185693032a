"""CIFAR-style MobileNetV2 backbone with early-exit heads (the early-exit application's model).

Backbone: a 3x3 stem convolution (32 channels, stride 1) and 12 inverted-residual blocks
(expand 1x1 - depthwise 3x3 or 7x7 - project 1x1 with batch norm and ReLU6; linear bottleneck), no
1280-channel convolution and no global pooling. Exit positions ``A``..``J`` follow blocks 0..9;
the final exit ``K`` follows block 11 (block 10 has none). Channel counts are scaled by a width
multiplier (rounded to multiples of 8).

Exit head (every exit, the final one included): max-pooling to ``C x 4 x 4``, flatten, then
``linear`` (one fully connected layer to the classes) or ``mlp`` (fully connected to ``8C``,
ReLU6, fully connected to the classes).

Residual additions are :class:`ResidualAdd` modules (``cost_op = "add"``) so that a cost-model
tracer sees them. Every layer is built through :mod:`dalp_moo.model.quantised` at the bit width
of its part (backbone or exits).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from dalp_moo.model import quantised as quant
from dalp_moo.space.early_exit import EARLY_EXITS, EXIT_LETTERS, HEAD_TYPES  # noqa: F401  (re-exported)

#: (expansion, output channels, stride, depthwise kernel) of the 12 inverted-residual blocks
#: (width 1.0). The depthwise kernels (3x3 in blocks 0-6, 7x7 in blocks 7-11) reproduce the
#: reference's cumulative MACs per exit (1.70 M at A ... 195.33 M at K) and its 1.39 M
#: backbone parameters exactly; 3x3 everywhere would give 179 M MACs.
BLOCKS: tuple[tuple[int, int, int, int], ...] = (
    (1, 16, 1, 3), (6, 24, 1, 3), (6, 24, 1, 3), (6, 32, 1, 3), (6, 32, 1, 3), (6, 64, 2, 3),
    (6, 64, 1, 3), (6, 96, 1, 7), (6, 96, 1, 7), (6, 160, 2, 7), (6, 160, 1, 7), (6, 320, 1, 7),
)
STEM_CHANNELS = 32
#: block index after which each exit position sits
EXIT_BLOCKS: tuple[int, ...] = (0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 11)
POOLED_SIZE = 4  #: exit heads max-pool to C x 4 x 4
MLP_HIDDEN_FACTOR = 8  #: hidden width of the two-layer head: 8 x C


def scaled_channels(channels: int, width: float) -> int:
    """``channels * width`` rounded to a multiple of 8 (never below 8 or 90 % of the value)."""
    v = channels * width
    out = max(8, int(v + 4) // 8 * 8)
    if out < 0.9 * v:
        out += 8
    return out


@dataclass(frozen=True)
class ExitGeometry:
    """Shape of the feature map at one exit position: channels and spatial edge (px)."""

    letter: str
    block: int
    channels: int
    size: int

    @property
    def pooled_features(self) -> int:
        """Features after max-pooling to ``C x 4 x 4``."""
        return self.channels * POOLED_SIZE * POOLED_SIZE


def exit_geometry(width: float = 1.0, input_size: int = 32) -> tuple[ExitGeometry, ...]:
    """Geometry of the 11 exit positions A..K for a width multiplier and input edge (px)."""
    size = input_size
    out_by_block = []
    for _, c, s, _k in BLOCKS:
        size = (size + s - 1) // s
        out_by_block.append((scaled_channels(c, width), size))
    return tuple(ExitGeometry(EXIT_LETTERS[i], b, *out_by_block[b]) for i, b in enumerate(EXIT_BLOCKS))


class ResidualAdd(nn.Module):
    """Element-wise residual addition (``cost_op = "add"``: costed on the SIMD core), followed
    by the activation quantiser of its precision."""

    cost_op = "add"

    def __init__(self, bits: int = 32) -> None:
        super().__init__()
        self.quant = quant.act_quant(bits)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return self.quant(x + skip)


class InvertedResidual(nn.Module):
    """MobileNetV2 block: [1x1 expand, BN, ReLU6], kxk depthwise, BN, ReLU6, 1x1 project, BN."""

    def __init__(self, in_channels: int, expansion: int, out_channels: int, stride: int,
                 bits: int = 32, kernel: int = 3, residual: bool | None = None) -> None:
        super().__init__()
        hidden = in_channels * expansion
        layers: list[nn.Module] = []
        if expansion != 1:
            layers += [quant.conv2d(in_channels, hidden, 1, bits=bits), nn.BatchNorm2d(hidden),
                       quant.relu6(bits)]
        layers += [quant.conv2d(hidden, hidden, kernel, stride=stride, padding=kernel // 2,
                                groups=hidden, bits=bits),
                   nn.BatchNorm2d(hidden), quant.relu6(bits),
                   quant.conv2d(hidden, out_channels, 1, bits=bits), nn.BatchNorm2d(out_channels),
                   quant.act_quant(bits)]
        self.body = nn.Sequential(*layers)
        if residual is None:
            residual = stride == 1 and in_channels == out_channels
        if residual and (stride != 1 or in_channels != out_channels):
            raise ValueError("a residual block needs stride 1 and equal input and output channels")
        self.residual = ResidualAdd(bits) if residual else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.body(x)
        return self.residual(y, x) if self.residual is not None else y


class MobileNetV2Backbone(nn.Module):
    """The 12-block backbone; ``forward`` returns the feature maps at the 11 exit positions."""

    def __init__(self, in_channels: int = 3, width: float = 1.0, bits: int = 32,
                 input_size: int = 32) -> None:
        super().__init__()
        quant.check_bits(bits, "backbone precision")
        self.bits = bits
        self.width = width
        self.input_size = input_size
        stem = scaled_channels(STEM_CHANNELS, width)
        self.input_quant = quant.act_quant(bits)
        self.stem = nn.Sequential(quant.conv2d(in_channels, stem, 3, padding=1, bits=bits),
                                  nn.BatchNorm2d(stem), quant.relu6(bits))
        blocks, c, c_ref = [], stem, STEM_CHANNELS
        for e, out_ref, s, k in BLOCKS:
            out = scaled_channels(out_ref, width)
            # residual connections where the reference (width 1) has them: blocks 2, 4, 6, 8, 10
            blocks.append(InvertedResidual(c, e, out, s, bits, k, residual=s == 1 and c_ref == out_ref))
            c, c_ref = out, out_ref
        self.blocks = nn.ModuleList(blocks)
        self.geometry = exit_geometry(width, input_size)

    def forward(self, x: torch.Tensor, last_block: int | None = None) -> list[torch.Tensor]:
        """Feature maps after each exit position's block (up to ``last_block`` when given)."""
        y = self.stem(self.input_quant(x))
        feats = []
        stop = len(self.blocks) - 1 if last_block is None else last_block
        for i, block in enumerate(self.blocks):
            y = block(y)
            if i in EXIT_BLOCKS:
                feats.append(y)
            if i >= stop:
                break
        return feats


class ExitHead(nn.Module):
    """Max-pool to ``C x 4 x 4``, flatten, then the classifier (``linear`` or ``mlp``).

    ``classifier`` starts with the exit precision's input quantiser, so it can be trained and
    evaluated on cached pooled features (max-pooling commutes with a monotone quantiser).
    """

    def __init__(self, channels: int, size: int, num_classes: int, head: str = "linear",
                 bits: int = 32) -> None:
        super().__init__()
        if head not in HEAD_TYPES:
            raise ValueError(f"unknown head type {head!r}")
        quant.check_bits(bits, "exit precision")
        k = max(1, size // POOLED_SIZE)
        self.head = head
        self.bits = bits
        self.pool = nn.MaxPool2d(k, k)
        features = channels * POOLED_SIZE * POOLED_SIZE
        if head == "linear":
            layers = [quant.act_quant(bits), quant.linear(features, num_classes, bits=bits)]
        else:
            hidden = MLP_HIDDEN_FACTOR * channels
            layers = [quant.act_quant(bits), quant.linear(features, hidden, bits=bits),
                      quant.relu6(bits), quant.linear(hidden, num_classes, bits=bits)]
        self.classifier = nn.Sequential(*layers)

    def pooled(self, x: torch.Tensor) -> torch.Tensor:
        """Flattened pooled features ``[N, C*16]``."""
        return torch.flatten(self.pool(x), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.pooled(x))


class PooledFeatures(nn.Module):
    """Backbone followed by each exit position's max-pooling: ``forward`` returns the 11
    flattened ``[N, C*16]`` pooled features (what every exit head's classifier consumes)."""

    def __init__(self, backbone: MobileNetV2Backbone) -> None:
        super().__init__()
        self.backbone = backbone
        self.pools = nn.ModuleList(nn.MaxPool2d(max(1, g.size // POOLED_SIZE), max(1, g.size // POOLED_SIZE))
                                   for g in backbone.geometry)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return [torch.flatten(p(f), 1) for p, f in zip(self.pools, self.backbone(x), strict=True)]


class EarlyExitNetwork(nn.Module):
    """A candidate: backbone plus heads at its exit positions (the final exit K always).

    ``forward`` returns the logits of every present exit, in order (all exits are computed: the
    training and tracing view; exit selection at a threshold is :func:`select_exits`).
    """

    def __init__(self, backbone: MobileNetV2Backbone, positions: Sequence[int],
                 heads: Sequence[ExitHead]) -> None:
        super().__init__()
        if list(positions) != sorted(set(positions)) or positions[-1] != len(EXIT_BLOCKS) - 1:
            raise ValueError(f"exit positions must be increasing and end with K, got {positions}")
        self.backbone = backbone
        self.positions = tuple(int(p) for p in positions)
        self.heads = nn.ModuleList(heads)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        bb = self.backbone
        y = bb.stem(bb.input_quant(x))
        outs: list[torch.Tensor] = []
        for i, block in enumerate(bb.blocks):  # heads run right after their block (execution order)
            y = block(y)
            while len(outs) < len(self.positions) and EXIT_BLOCKS[self.positions[len(outs)]] == i:
                outs.append(self.heads[len(outs)](y))
        return outs

    def annotate_costs(self, backbone_bits: int, exit_bits: int) -> EarlyExitNetwork:
        """Set the cost-model attributes (``cost_stage``, ``cost_branch``, ``cost_w_bits``,
        ``cost_a_bits``) read by the accelerator tracer: stage k holds the backbone blocks since
        exit k-1 and head k; the stem belongs to stage 0. Returns ``self``."""
        bb = self.backbone
        for m, stage in [(bb.input_quant, 0), (bb.stem, 0)]:
            m.cost_stage = stage
        for i, block in enumerate(bb.blocks):
            block.cost_stage = next(k for k, p in enumerate(self.positions) if EXIT_BLOCKS[p] >= i)
        for module in [bb.input_quant, bb.stem, *bb.blocks]:
            module.cost_branch = "backbone"
            module.cost_w_bits = module.cost_a_bits = backbone_bits
        for k, head in enumerate(self.heads):
            head.cost_stage = k
            head.cost_branch = "exit"
            head.cost_w_bits = head.cost_a_bits = exit_bits
        return self


def build_network(positions: Sequence[int], head_types: Sequence[str], num_classes: int, *,
                  in_channels: int = 3, width: float = 1.0, backbone_bits: int = 32,
                  exit_bits: int = 32, input_size: int = 32) -> EarlyExitNetwork:
    """A fresh :class:`EarlyExitNetwork` with heads of ``head_types`` at ``positions``."""
    backbone = MobileNetV2Backbone(in_channels, width, backbone_bits, input_size)
    heads = [ExitHead(backbone.geometry[p].channels, backbone.geometry[p].size, num_classes, h,
                      exit_bits) for p, h in zip(positions, head_types, strict=True)]
    return EarlyExitNetwork(backbone, positions, heads)


def select_exits(confidences: Sequence[torch.Tensor] | torch.Tensor, threshold: float) -> torch.Tensor:
    """Index of the exit each sample leaves at: the first exit whose softmax confidence is
    ``>= threshold``; samples confident nowhere leave at the last exit.

    ``confidences``: ``[n_exits, N]`` (or a list of ``[N]``). Returns int64 ``[N]``.
    """
    conf = torch.stack(list(confidences)) if not isinstance(confidences, torch.Tensor) else confidences
    n_exits = conf.shape[0]
    passed = conf >= threshold
    passed[n_exits - 1] = True
    return torch.argmax(passed.to(torch.int8), dim=0)


def count_macs(module: nn.Module, example: torch.Tensor) -> int:
    """Multiply-accumulates of one forward pass of conv and linear layers (per sample)."""
    total = 0

    def hook(m: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        nonlocal total
        if isinstance(m, nn.Conv2d):
            kh, kw = m.kernel_size
            total += output[0].numel() * (m.in_channels // m.groups) * kh * kw
        elif isinstance(m, nn.Linear):
            total += m.in_features * m.out_features

    handles = [m.register_forward_hook(hook) for m in module.modules()
               if isinstance(m, (nn.Conv2d, nn.Linear))]
    try:
        with torch.no_grad():
            module.eval()(example[:1])
    finally:
        for h in handles:
            h.remove()
    return total
