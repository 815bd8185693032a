"""Operator-level trace of a torch model: the graph that latency models cost.

:func:`trace_graph` runs the model once on zeros under a ``TorchFunctionMode``, so functional ops
(``torch.add``, ``+``, ``torch.cat``, ``F.interpolate``, ``torch.flatten``, ``x.mean``) are
captured as well as module calls. Each captured op records its producers (a DAG), shapes,
multiply-accumulates and weight sizes, and the innermost module it ran in. Ops without a known
cost class raise :class:`~dalp_moo.errors.BackendError` naming the layer.

:func:`trace_layers` keeps the older leaf-module view (one :class:`LayerInfo` per costed op).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from dalp_moo.errors import BackendError

#: Cost classes of captured operations.
KINDS = ("conv", "deconv", "linear", "bn", "norm", "act", "pool", "eltwise", "concat", "resize",
         "reduce", "softmax", "copy", "reshape")

_ACTS = {
    "relu": "relu", "relu_": "relu", "relu6": "relu6", "hardtanh": "relu6", "hardtanh_": "relu6",
    "clamp": "clamp", "clamp_": "clamp", "clip": "clamp", "clamp_min": "relu", "clamp_min_": "relu",
    "leaky_relu": "leaky_relu", "leaky_relu_": "leaky_relu", "gelu": "gelu", "silu": "silu",
    "silu_": "silu", "sigmoid": "sigmoid", "sigmoid_": "sigmoid", "hardswish": "hardswish",
    "hardswish_": "hardswish", "hardsigmoid": "hardsigmoid", "tanh": "tanh", "tanh_": "tanh",
    "elu": "elu", "elu_": "elu", "mish": "mish", "softplus": "softplus", "prelu": "prelu",
    "selu": "elu", "exp": "exp", "sqrt": "sqrt", "rsqrt": "sqrt", "abs": "abs", "neg": "neg",
    "__neg__": "neg",
}
_ELTWISE = {
    "add", "add_", "__add__", "__radd__", "__iadd__", "sub", "sub_", "__sub__", "__rsub__",
    "__isub__", "rsub", "mul", "mul_", "__mul__", "__rmul__", "__imul__", "div", "div_",
    "__truediv__", "__rtruediv__", "__itruediv__", "maximum", "minimum", "pow", "__pow__",
    "addcmul", "where",
}
_POOL = {"max_pool2d", "max_pool2d_with_indices", "avg_pool2d", "adaptive_avg_pool2d",
         "adaptive_max_pool2d", "adaptive_max_pool2d_with_indices", "max_pool1d", "avg_pool1d",
         "adaptive_avg_pool1d"}
_REDUCE = {"mean", "sum", "amax", "amin", "max", "min", "std", "var", "norm", "logsumexp"}
_RESHAPE = {"flatten", "view", "reshape", "squeeze", "squeeze_", "unsqueeze", "unsqueeze_",
            "contiguous", "dropout", "dropout_", "dropout2d", "feature_dropout", "alpha_dropout",
            "identity", "detach", "to", "float", "half", "type", "clone", "view_as", "reshape_as",
            "expand", "expand_as", "split", "chunk", "unbind", "__getitem__", "narrow", "select",
            "unflatten", "t", "__get__"}
_COPY = {"permute", "transpose", "pad", "repeat", "roll", "pixel_shuffle", "pixel_unshuffle",
         "channel_shuffle", "flip", "zero_pad2d"}

#: Graph-input marker used in :attr:`Op.inputs`.
INPUT = -1


@dataclass(frozen=True)
class Op:
    """One captured tensor operation.

    Sizes are in elements; ``macs`` in multiply-accumulates (0 for non-MAC ops); ``params`` the
    number of weight and bias elements; ``inputs`` the indices of the producing ops
    (:data:`INPUT` for the model input).
    """

    index: int
    name: str
    module_type: str
    kind: str
    op: str
    inputs: tuple[int, ...]
    in_shapes: tuple[tuple[int, ...], ...]
    out_shape: tuple[int, ...]
    macs: int = 0
    params: int = 0
    attrs: dict[str, Any] = field(default_factory=dict)

    @property
    def out_numel(self) -> int:
        """Output elements."""
        return math.prod(self.out_shape)

    @property
    def in_numel(self) -> int:
        """Elements of all tensor inputs together."""
        return sum(math.prod(s) for s in self.in_shapes)


@dataclass(frozen=True)
class Graph:
    """The ops of one forward pass in execution order, with the consumers of each op."""

    input_shape: tuple[int, ...]
    ops: tuple[Op, ...]
    consumers: tuple[tuple[int, ...], ...]

    def producer(self, op: Op, k: int = 0) -> Op | None:
        """The op producing the ``k``-th tensor input of ``op`` (None for the model input)."""
        if k >= len(op.inputs) or op.inputs[k] < 0:
            return None
        return self.ops[op.inputs[k]]

    @property
    def total_macs(self) -> int:
        """Multiply-accumulates of the whole forward pass."""
        return sum(o.macs for o in self.ops)


def _arg(args: Sequence[Any], kwargs: dict[str, Any], pos: int, name: str, default: Any) -> Any:
    if name in kwargs:
        return kwargs[name]
    return args[pos] if len(args) > pos else default


def _pair(v: Any) -> tuple[int, int]:
    if isinstance(v, (list, tuple)):
        return (int(v[0]), int(v[-1]))
    return (int(v), int(v))


def _eltwise_name(fname: str) -> str:
    """``__radd__``/``__iadd__``/``add_`` -> ``add``; ``__truediv__`` -> ``div``."""
    base = fname
    if fname.startswith("__") and fname.endswith("__"):
        base = fname[2:-2]
        if base[:1] in ("r", "i") and base[1:] in ("add", "sub", "mul", "truediv", "pow", "matmul"):
            base = base[1:]
    base = base.rstrip("_")
    return {"truediv": "div", "rsub": "sub"}.get(base, base)


def _classify(fname: str, args: Sequence[Any], kwargs: dict[str, Any]) -> tuple[str, str] | None:
    """(kind, normalised op) for a captured function name, or None if unknown."""
    if fname in ("conv2d", "convolution", "conv1d", "_convolution"):
        if fname == "convolution" and bool(_arg(args, kwargs, 6, "transposed", False)):
            return "deconv", "conv_transpose2d"
        return "conv", "conv2d"
    if fname in ("conv_transpose2d", "conv_transpose1d"):
        return "deconv", fname
    if fname in ("linear", "addmm", "matmul", "mm", "bmm", "__matmul__"):
        return "linear", "linear"
    if fname in ("batch_norm", "batch_norm_", "instance_norm"):
        return "bn", "batch_norm"
    if fname in ("layer_norm", "group_norm", "local_response_norm", "normalize"):
        return "norm", fname
    if fname in ("softmax", "log_softmax", "_softmax"):
        return "softmax", "softmax"
    if fname in _ACTS:
        return "act", _ACTS[fname]
    if fname in _ELTWISE:
        return "eltwise", _eltwise_name(fname)
    if fname in _POOL:
        return "pool", fname.replace("_with_indices", "")
    if fname in ("interpolate", "upsample", "upsample_nearest", "upsample_bilinear",
                 "upsample_nearest2d", "upsample_bilinear2d"):
        return "resize", "interpolate"
    if fname in ("cat", "concat", "concatenate", "stack", "hstack", "vstack"):
        return "concat", "cat"
    if fname in _REDUCE:
        return "reduce", fname
    if fname in _COPY:
        return "copy", fname
    if fname in _RESHAPE:
        return "reshape", fname
    return None


class _Recorder(TorchFunctionMode):
    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.ops: list[Op] = []
        self.producer: dict[int, int] = {}
        self.keep: list[torch.Tensor] = []  # keep tensors alive so ids stay unique
        self.stack: list[tuple[str, str]] = [("", type(model).__name__)]
        self.hooks: list[Any] = []
        for name, module in model.named_modules():
            self.hooks.append(module.register_forward_pre_hook(self._enter(name, module)))
            self.hooks.append(module.register_forward_hook(self._leave))

    def _enter(self, name: str, module: nn.Module) -> Callable[..., None]:
        def hook(_m: nn.Module, _inputs: tuple) -> None:
            self.stack.append((name, type(module).__name__))
        return hook

    def _leave(self, _m: nn.Module, _inputs: tuple, _out: Any) -> None:
        if len(self.stack) > 1:
            self.stack.pop()

    def remove(self) -> None:
        for h in self.hooks:
            h.remove()

    def register(self, t: torch.Tensor, index: int) -> None:
        self.producer[id(t)] = index
        self.keep.append(t)

    def __torch_function__(self, func: Any, types: Any, args: Sequence[Any] = (),
                           kwargs: dict[str, Any] | None = None) -> Any:
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        fname = getattr(func, "__name__", str(func))
        outs = [out] if isinstance(out, torch.Tensor) else (
            [o for o in out if isinstance(o, torch.Tensor)] if isinstance(out, (tuple, list)) else [])
        if not outs:
            return out
        tensors: list[torch.Tensor] = []
        for a in list(args) + list(kwargs.values()):
            if isinstance(a, torch.Tensor):
                tensors.append(a)
            elif isinstance(a, (list, tuple)):
                tensors.extend(x for x in a if isinstance(x, torch.Tensor))
        tracked = [t for t in tensors if id(t) in self.producer]
        if not tracked:  # constants / parameters only: not part of the data path
            return out
        module_name, module_type = self.stack[-1]
        cls = _classify(fname, args, kwargs)
        if cls is None:
            where = f"layer {module_name!r} ({module_type})" if module_name else "the model's forward"
            raise BackendError(f"unsupported operation {fname!r} in {where}: no latency model for it")
        kind, opname = cls
        first = outs[0]
        in_shapes = tuple(tuple(t.shape) for t in tracked)
        macs = 0
        params = 0
        attrs: dict[str, Any] = {}
        if kind in ("conv", "deconv"):
            w = _arg(args, kwargs, 1, "weight", None)
            b = _arg(args, kwargs, 2, "bias", None)
            if fname == "convolution":
                stride, padding, dilation = args[3], args[4], args[5]
                groups = int(_arg(args, kwargs, 8, "groups", 1))
            else:
                stride = _arg(args, kwargs, 3, "stride", 1)
                padding = _arg(args, kwargs, 4, "padding", 0)
                dilation = _arg(args, kwargs, 7 if kind == "deconv" else 5, "dilation", 1)
                groups = int(_arg(args, kwargs, 6, "groups", 1))
            if w.dim() != 4:
                raise BackendError(f"unsupported {w.dim() - 2}-d convolution in layer "
                                   f"{module_name!r} ({module_type}): only 2-d convolutions are modelled")
            kh, kw = int(w.shape[2]), int(w.shape[3])
            x = tracked[0]
            cin = int(x.shape[1])
            cout = int(first.shape[1])
            per = int(w.shape[1]) * kh * kw
            macs = first.numel() * per if kind == "conv" else x.numel() * per
            params = w.numel() + (b.numel() if isinstance(b, torch.Tensor) else 0)
            attrs = {"cin": cin, "cout": cout, "k": (kh, kw), "stride": _pair(stride),
                     "padding": padding if isinstance(padding, str) else _pair(padding),
                     "dilation": _pair(dilation), "groups": groups}
            in_shapes = (tuple(x.shape),)
            tracked = [x]
        elif kind == "linear":
            if opname == "linear" and fname in ("linear",):
                w = _arg(args, kwargs, 1, "weight", None)
                b = _arg(args, kwargs, 2, "bias", None)
                in_f = int(w.shape[-1])
                params = w.numel() + (b.numel() if isinstance(b, torch.Tensor) else 0)
            else:
                mats = [t for t in tensors if t.dim() >= 2]
                in_f = int(mats[-1].shape[-2]) if mats else int(tracked[0].shape[-1])
                params = sum(t.numel() for t in tensors if id(t) not in self.producer)
            macs = first.numel() * in_f
            attrs = {"in_features": in_f, "out_features": int(first.shape[-1])}
            in_shapes = (tuple(tracked[0].shape),)
            tracked = tracked[:1]
        elif kind == "pool":
            x = tracked[0]
            if opname.startswith("adaptive"):
                k = (math.ceil(x.shape[-2] / first.shape[-2]), math.ceil(x.shape[-1] / first.shape[-1]))
                s = k
            else:
                k = _pair(_arg(args, kwargs, 1, "kernel_size", 1))
                s_arg = _arg(args, kwargs, 2, "stride", None)
                s = _pair(s_arg) if s_arg not in (None, [], ()) else k
            attrs = {"k": k, "stride": s, "global": tuple(first.shape[-2:]) == (1, 1)}
            macs = 0
        elif kind == "act":
            attrs = {"fn": opname}
            if opname == "relu6":
                lo = _arg(args, kwargs, 1, "min_val", -1.0)
                hi = _arg(args, kwargs, 2, "max_val", 1.0)
                attrs["fn"] = "relu6" if (lo, hi) == (0.0, 6.0) else "clamp"
            elif fname.startswith("clamp") or fname == "clip":
                lo = _arg(args, kwargs, 1, "min", None)
                attrs["fn"] = "relu" if (lo == 0 and _arg(args, kwargs, 2, "max", None) is None) else "clamp"
        elif kind == "resize":
            attrs = {"mode": _arg(args, kwargs, 3, "mode", "nearest")}
        elif kind == "eltwise":
            attrs = {"binary": len(tracked) >= 2 or any(
                isinstance(t, torch.Tensor) and t.numel() > 1 for t in tensors if id(t) not in self.producer)}
        elif kind == "bn":
            params = 2 * int(first.shape[1]) if first.dim() > 1 else 0
        index = len(self.ops)
        self.ops.append(Op(
            index=index,
            name=f"{module_name}:{opname}" if module_name else opname,
            module_type=module_type,
            kind=kind,
            op=opname,
            inputs=tuple(self.producer[id(t)] for t in tracked),
            in_shapes=in_shapes,
            out_shape=tuple(first.shape),
            macs=int(macs),
            params=int(params),
            attrs=attrs,
        ))
        for o in outs:
            self.register(o, index)
        return out


def trace_graph(model: nn.Module, input_shape: tuple[int, ...], meta: bool = False) -> Graph:
    """Run ``model`` once (eval, no grad) on zeros of ``input_shape`` and capture its ops.

    With ``meta`` the pass runs on a copy on torch's ``meta`` device (shapes only, no
    arithmetic); models whose forward needs real values fall back to a real pass.
    Raises :class:`BackendError` for an operation without a cost class (names the layer).
    The model's parameters and training flag are left as they were.
    """
    if meta:
        try:
            shadow = copy.deepcopy(model).to("meta")
        except Exception:  # un-copyable module: trace the real one
            shadow = None
        if shadow is not None:
            try:
                return _trace(shadow, input_shape, torch.device("meta"))
            except BackendError:
                raise
            except Exception:  # data-dependent forward: needs real values
                pass
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    return _trace(model, input_shape, device)


def _trace(model: nn.Module, input_shape: tuple[int, ...], device: torch.device) -> Graph:
    was_training = model.training
    model.eval()
    rec = _Recorder(model)
    try:
        x = torch.zeros(input_shape, device=device)
        rec.register(x, INPUT)
        with torch.no_grad(), rec:
            model(x)
    finally:
        rec.remove()
        model.train(was_training)
    consumers: list[list[int]] = [[] for _ in rec.ops]
    for op in rec.ops:
        for i in set(op.inputs):
            if i >= 0:
                consumers[i].append(op.index)
    return Graph(tuple(input_shape), tuple(rec.ops), tuple(tuple(c) for c in consumers))


@dataclass(frozen=True)
class LayerInfo:
    """One costed op (leaf-module view). Sizes in elements; ``macs`` in multiply-accumulates."""

    name: str
    type: str
    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    macs: int
    params: int


def trace_layers(model: nn.Module, input_shape: tuple[int, ...]) -> list[LayerInfo]:
    """Every op of :func:`trace_graph` except pure reshapes, as :class:`LayerInfo`."""
    graph = trace_graph(model, input_shape)
    return [LayerInfo(o.name, o.module_type if o.module_type and o.kind not in ("eltwise", "concat")
                      else o.op, o.in_shapes[0] if o.in_shapes else (), o.out_shape, o.macs, o.params)
            for o in graph.ops if o.kind != "reshape"]
