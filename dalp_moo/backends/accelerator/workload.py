"""Layer descriptions for the accelerator cost model, and tracing them from a torch module.

A :class:`LayerSpec` is one operation of a network as the accelerator sees it: a dense or
depthwise convolution or a fully connected layer (compute cores), a pooling layer (pooling
core) or an element-wise addition (SIMD core). Batch norm is assumed folded into the preceding
convolution and activation functions fused into its output stage (no cost); flatten and reshape
cost nothing.

:func:`trace_layers` records the supported modules in execution order with forward hooks.
Per-module metadata is read from attributes on the module or its nearest ancestor:
``cost_stage`` (int, exit stage), ``cost_branch`` ("backbone" or "exit"), ``cost_w_bits`` and
``cost_a_bits`` (operand precisions), ``cost_op = "add"`` (a module that adds its inputs
element-wise, e.g. a residual connection).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from dalp_moo.errors import BackendError

OPS = ("conv", "dwconv", "fc", "pool", "add")
COMPUTE_OPS = ("conv", "dwconv", "fc")
BRANCHES = ("backbone", "exit")


@dataclass(frozen=True)
class LayerSpec:
    """One layer on the accelerator (per sample; batch 1).

    ``k`` output channels (fc: output features), ``c`` input channels (fc: input features),
    ``ox``/``oy`` output width/height, ``fx``/``fy`` kernel width/height, ``groups`` of a
    convolution (dwconv: ``groups == c == k``), ``w_bits``/``a_bits`` weight/activation
    precision in bits (partial sums are twice the operand bits, at most 32), ``stage`` the exit
    stage the layer belongs to, ``branch`` whether it is on the backbone or in an exit head,
    ``ix``/``iy`` input width/height (0: ``ox * stride``, i.e. 'same' padding).
    """

    name: str
    op: str
    k: int
    c: int
    ox: int = 1
    oy: int = 1
    fx: int = 1
    fy: int = 1
    stride: int = 1
    groups: int = 1
    w_bits: int = 8
    a_bits: int = 8
    stage: int = 0
    branch: str = "backbone"
    ix: int = 0
    iy: int = 0

    def __post_init__(self) -> None:
        if self.op not in OPS:
            raise BackendError(f"layer {self.name}: op {self.op!r} is not one of {', '.join(OPS)}")
        if self.branch not in BRANCHES:
            raise BackendError(f"layer {self.name}: branch {self.branch!r} is not one of {', '.join(BRANCHES)}")
        for key in ("k", "c", "ox", "oy", "fx", "fy", "stride", "groups"):
            value = getattr(self, key)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise BackendError(f"layer {self.name}: {key} must be a positive int, got {value!r}")
        for key in ("w_bits", "a_bits"):
            value = getattr(self, key)
            if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= 32:
                raise BackendError(f"layer {self.name}: {key} must be an int in 1..32, got {value!r}")
        for key in ("ix", "iy"):
            if getattr(self, key) < 0:
                raise BackendError(f"layer {self.name}: {key} must be >= 0")
        if self.op == "dwconv" and not (self.groups == self.c == self.k):
            raise BackendError(f"layer {self.name}: a dwconv needs groups == c == k, "
                               f"got groups={self.groups} c={self.c} k={self.k}")
        if self.op == "conv" and (self.c % self.groups or self.k % self.groups):
            raise BackendError(f"layer {self.name}: groups={self.groups} must divide c={self.c} and k={self.k}")
        if self.op in ("pool", "add") and self.k != self.c:
            raise BackendError(f"layer {self.name}: {self.op} needs k == c, got k={self.k} c={self.c}")

    # -- derived sizes -------------------------------------------------------------------------
    @property
    def in_x(self) -> int:
        """Input width (pixels)."""
        return self.ix or self.ox * self.stride

    @property
    def in_y(self) -> int:
        """Input height (pixels)."""
        return self.iy or self.oy * self.stride

    @property
    def macs(self) -> int:
        """Multiply-accumulates (conv, dwconv, fc) or element operations (pool, add)."""
        if self.op == "conv":
            return self.k * (self.c // self.groups) * self.ox * self.oy * self.fx * self.fy
        if self.op == "dwconv":
            return self.k * self.ox * self.oy * self.fx * self.fy
        if self.op == "fc":
            return self.k * self.c * self.ox * self.oy
        if self.op == "pool":
            return self.k * self.ox * self.oy * self.fx * self.fy
        return self.k * self.ox * self.oy  # add

    @property
    def weights(self) -> int:
        """Weight count (parameters without biases)."""
        if self.op == "conv":
            return self.k * (self.c // self.groups) * self.fx * self.fy
        if self.op == "dwconv":
            return self.k * self.fx * self.fy
        if self.op == "fc":
            return self.k * self.c
        return 0

    @property
    def weight_bits(self) -> int:
        """Size of the weights (bits)."""
        return self.weights * self.w_bits

    @property
    def input_bits(self) -> int:
        """Size of one input tensor (bits); an add reads two of them."""
        if self.op == "fc":
            return self.c * self.ox * self.oy * self.a_bits
        return self.c * self.in_x * self.in_y * self.a_bits

    @property
    def output_bits(self) -> int:
        """Size of the output tensor (bits)."""
        return self.k * self.ox * self.oy * self.a_bits

    @property
    def psum_bits(self) -> int:
        """Partial-sum precision: twice the widest operand, at most 32 bits."""
        return min(2 * max(self.w_bits, self.a_bits), 32)

    def shape_key(self) -> tuple[Any, ...]:
        """Everything that changes the layer's cost (the name does not)."""
        d = asdict(self)
        d.pop("name")
        d["ix"], d["iy"] = self.in_x, self.in_y
        return tuple(sorted(d.items()))


# -- tracing -----------------------------------------------------------------------------------
_POOLS = (nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveMaxPool2d, nn.AdaptiveAvgPool2d)


def _pair(v: Any) -> tuple[int, int]:
    return (int(v), int(v)) if isinstance(v, int) else (int(v[0]), int(v[1]))


def _inherited(names: dict[str, nn.Module], qualname: str, attr: str, default: Any) -> Any:
    """``attr`` of the module ``qualname`` or of its nearest ancestor carrying it."""
    parts = qualname.split(".") if qualname else []
    for n in range(len(parts), -1, -1):
        module = names.get(".".join(parts[:n]))
        if module is not None and hasattr(module, attr):
            return getattr(module, attr)
    return default


def _tensor(x: Any) -> torch.Tensor | None:
    """A plain tensor, the value of a quantised tensor (e.g. brevitas QuantTensor), or None."""
    if isinstance(x, torch.Tensor):
        return x
    value = getattr(x, "value", None)
    if isinstance(value, torch.Tensor):
        return value
    if isinstance(x, (tuple, list)) and x:
        return _tensor(x[0])
    return None


def _spec(module: nn.Module, name: str, inputs: tuple[Any, ...], output: Any, meta: dict[str, Any]) -> LayerSpec:
    x = _tensor(inputs[0]) if inputs else None
    y = _tensor(output)
    if x is None or y is None:
        raise BackendError(f"layer {name}: tensor input and output expected")
    if getattr(module, "cost_op", None) == "add":
        if y.dim() == 4:
            ch, oy, ox = int(y.shape[1]), int(y.shape[2]), int(y.shape[3])
        else:
            ch, oy, ox = int(y[0].numel()), 1, 1
        return LayerSpec(name, "add", ch, ch, ox, oy, **meta)
    if isinstance(module, nn.Conv2d):
        if _pair(module.dilation) != (1, 1):
            raise BackendError(f"layer {name}: dilated convolutions are not supported")
        fy, fx = _pair(module.kernel_size)
        sy, sx = _pair(module.stride)
        if sx != sy:
            raise BackendError(f"layer {name}: unequal strides {sy}x{sx} are not supported")
        cin, cout, g = module.in_channels, module.out_channels, module.groups
        op = "dwconv" if g == cin == cout and g > 1 else "conv"
        return LayerSpec(name, op, cout, cin, int(y.shape[3]), int(y.shape[2]), fx, fy, sx, g,
                         ix=int(x.shape[3]), iy=int(x.shape[2]), **meta)
    if isinstance(module, nn.Linear):
        rows = math.prod(int(s) for s in x.shape[1:-1]) if x.dim() > 2 else 1
        return LayerSpec(name, "fc", module.out_features, module.in_features, rows, 1, **meta)
    if isinstance(module, _POOLS):
        if x.dim() != 4:
            raise BackendError(f"layer {name}: pooling of a {x.dim()}-d tensor is not supported")
        ch, iy, ix = int(x.shape[1]), int(x.shape[2]), int(x.shape[3])
        oy, ox = int(y.shape[2]), int(y.shape[3])
        if isinstance(module, (nn.AdaptiveMaxPool2d, nn.AdaptiveAvgPool2d)):
            fy, fx, s = math.ceil(iy / oy), math.ceil(ix / ox), max(1, ix // ox)
        else:
            fy, fx = _pair(module.kernel_size)
            s = _pair(module.stride if module.stride is not None else module.kernel_size)[1]
        return LayerSpec(name, "pool", ch, ch, ox, oy, fx, fy, s, ix=ix, iy=iy, **meta)
    raise BackendError(f"layer {name}: {type(module).__name__} is not supported")  # pragma: no cover


def _traced(module: nn.Module) -> bool:
    return getattr(module, "cost_op", None) == "add" or isinstance(module, (nn.Conv2d, nn.Linear) + _POOLS)


def trace_layers(module: nn.Module, example_input: torch.Tensor | Sequence[torch.Tensor], w_bits: int = 8,
                 a_bits: int = 8, stage_of: Callable[[str], int] | None = None) -> list[LayerSpec]:
    """Run ``module`` once on ``example_input`` and return its layers in execution order.

    Traced: ``nn.Conv2d`` (``groups == in == out`` -> ``dwconv``), ``nn.Linear``, max/avg
    pooling (also adaptive) and any module with ``cost_op = "add"`` (its inputs are added).
    Subclasses (e.g. brevitas ``QuantConv2d``/``QuantLinear``) are traced too; modules inside a
    traced module are not. ``w_bits``/``a_bits`` are defaults overridden by ``cost_w_bits``/
    ``cost_a_bits`` attributes; the stage is ``stage_of(qualified_name)`` if given, else the
    inherited ``cost_stage`` attribute (default 0); ``cost_branch`` likewise (default
    "backbone"). Costs are per sample whatever the batch size of ``example_input``.
    """
    names = dict(module.named_modules())
    qual = {id(m): n for n, m in names.items()}
    records: list[LayerSpec] = []
    calls: dict[str, int] = {}
    active: list[str] = []  # traced modules currently running (skip modules inside them)

    def pre_hook(mod: nn.Module, inputs: tuple[Any, ...]) -> None:
        active.append(qual[id(mod)])

    def hook(mod: nn.Module, inputs: tuple[Any, ...], output: Any) -> None:
        name = active.pop()
        if active:  # nested inside another traced module
            return
        calls[name] = calls.get(name, 0) + 1
        label = name if calls[name] == 1 else f"{name}#{calls[name]}"
        stage = stage_of(name) if stage_of is not None else _inherited(names, name, "cost_stage", 0)
        meta = {
            "w_bits": int(_inherited(names, name, "cost_w_bits", w_bits)),
            "a_bits": int(_inherited(names, name, "cost_a_bits", a_bits)),
            "stage": int(stage),
            "branch": str(_inherited(names, name, "cost_branch", "backbone")),
        }
        records.append(_spec(mod, label or type(mod).__name__, inputs, output, meta))

    handles = []
    for m in names.values():
        if _traced(m):
            handles.append(m.register_forward_pre_hook(pre_hook))
            handles.append(m.register_forward_hook(hook))
    was_training = module.training
    try:
        module.eval()
        with torch.no_grad():
            if isinstance(example_input, torch.Tensor):
                module(example_input)
            else:
                module(*example_input)
    finally:
        for h in handles:
            h.remove()
        module.train(was_training)
    return records
