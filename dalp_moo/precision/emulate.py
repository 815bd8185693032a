"""Deployed-model emulation and deployment-aligned (FP16-constrained) forward passes.

Both work by intercepting every torch function the model calls (a
:class:`torch.overrides.TorchFunctionMode` active only inside the model's forward), so
functional ops written inline in a ``forward`` (``x + skip``, ``torch.cat``,
``F.interpolate``, ``x * se``) are rounded as well as modules:

* hardware layers (``conv2d``, ``conv_transpose2d``, ``linear``): FP16 weights/bias (batch norm
  folded first), optional power-of-two weights-analysis scaling, FP32 or chunked FP16
  accumulation, output rounded in the scaled domain and again after descaling;
* every other op producing floating values (element-wise SHAVE ops): output rounded to FP16
  (``eltwise_fp16``), except ops that cannot change FP16 values (views, cat, max pooling, ReLU,
  clamps), which are passed through.

What is emulated is the converted graph, not the torch module as written (measured with
``ov.convert_model``, OpenVINO 2026.4.1, on the project's U-Nets):

* the input normalisation's multiply (``InputNorm.scale``) is folded into the convolutions that
  read its output (their weights scaled per input channel, in FP32, before FP16 storage and
  weights analysis; profile switch ``fold_input_scale``); the subtraction stays a separate add;
* batch norm is folded into the preceding convolution when that convolution's output feeds only
  the batch norm (found by one probe forward on the first batch):
  ``w' = w * g / sqrt(var + eps)``, ``b' = (b - mean) * g / sqrt(var + eps) + beta`` in FP32,
  then rounded to FP16. Other batch norms run as an FP16 scale-shift with running statistics.

Bilinear resizes without ``align_corners`` run with the profile's ``resize_mode`` (the MYRIAD
Interp stage uses asymmetric coordinates). Overflow follows the profile's ``overflow`` switch
(``inf`` or ``saturate``) in the deployed copy and in the aligned forward (see
:func:`aligned_training` for how training handles ``inf``).

Training forwards take a faster route that computes the same values (see
``tests/test_precision_training.py``): before the forward, the folded FP16 weights and the
weights-analysis shifts of all hardware layers are prepared together (one overflow check, one
rounding pass and one host synchronisation for the whole model, :meth:`_Aligned.prepare`), and
fresh results of ops whose backward does not read their output are rounded in place when nothing
overflows (:func:`~dalp_moo.precision.numerics.round_fp16_`), which is the straight-through
estimator's no-overflow case without an autograd node. Anything else (overflow, NaN, flush to
zero, a layer called with other tensors than prepared) takes the general path.
"""

from __future__ import annotations

import contextlib
import copy
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

from dalp_moo.log import logger
from dalp_moo.precision.numerics import (
    applied_shift,
    correct_shift,
    exponent_segments,
    fmt_of,
    fp16_exponent_stats,
    growing_output,
    growing_output_offset,
    raw_shift_from_exponent_stats,
    raw_weights_analysis_shift,
    round_fp16_,
    round_profile,
    ste_round_fp16,
)
from dalp_moo.precision.profiles import NumericsProfile, get_profile

#: Ops whose result holds only values of their FP16 inputs (or zeros): no rounding needed.
_EXACT = frozenset({
    "__get__", "__getitem__", "size", "dim", "numel", "view", "view_as", "reshape", "reshape_as",
    "permute", "transpose", "t", "contiguous", "flatten", "unflatten", "squeeze", "unsqueeze",
    "expand", "expand_as", "split", "chunk", "narrow", "select", "unbind", "cat", "concat",
    "concatenate", "stack", "max_pool2d", "max_pool1d", "adaptive_max_pool2d", "relu", "relu_",
    "hardtanh", "hardtanh_", "relu6", "detach", "clone", "identity", "pixel_shuffle",
    "pixel_unshuffle", "channel_shuffle", "__len__", "__setitem__",
    "max", "amax", "min", "amin", "__format__", "__repr__", "_has_compatible_shallow_copy_type",
})
_HW = frozenset({"conv2d", "conv_transpose2d", "linear"})
#: Ops returning a new tensor whose backward does not read that output: a training forward may
#: round their result in place (no autograd node; see ``round_fp16_``).
_FRESH = frozenset({
    "add", "__add__", "__radd__", "sub", "__sub__", "__rsub__", "rsub", "mul", "__mul__",
    "__rmul__", "div", "__truediv__", "true_divide", "neg", "__neg__", "gelu", "silu", "mean",
    "sum", "avg_pool1d", "avg_pool2d", "adaptive_avg_pool1d", "adaptive_avg_pool2d",
    "interpolate",
})
#: Metadata queries (do not consume a tensor's values).
_META = frozenset({"__get__", "dim", "size", "numel", "__len__", "__format__", "__repr__",
                   "is_floating_point", "is_contiguous", "stride", "element_size", "type"})


def _conv_sig(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):  # noqa: ANN
    return input, weight, bias, dict(stride=stride, padding=padding, dilation=dilation,
                                     groups=groups)


def _convt_sig(input, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1,  # noqa
               dilation=1):
    return input, weight, bias, dict(stride=stride, padding=padding,
                                     output_padding=output_padding, groups=groups,
                                     dilation=dilation)


def _linear_sig(input, weight, bias=None):  # noqa: ANN
    return input, weight, bias, {}


def _bn_sig(input, running_mean, running_var, weight=None, bias=None, training=False,  # noqa
            momentum=0.1, eps=1e-5):
    return input, running_mean, running_var, weight, bias, eps


@dataclass
class ModelPlan:
    """What one probe forward found out about a model (valid while its structure is fixed).

    ``fold`` maps id(conv weight) -> the batch norm folded into it; ``order`` lists hardware
    layer weights (ids) in execution order, ``kinds`` their kind ('conv' or 'fc');
    ``first_cin`` is the first hardware layer's input channels per group; ``input_fold`` the
    weights (ids) of the convolutions into which the converter folds the input normalisation's
    scale (empty: not folded); ``norm`` the input normalisation and ``norm_form`` how the
    converted graph computes it: ``'folded'`` (the subtraction only; its multiply is in those
    convolutions), ``'muladd'`` (``x * scale + (-shift * scale)``: what the converter makes of
    it when it cannot fold the multiply) or ``''`` (identity or none); ``growing`` the plugin's
    growing-output check on the converted graph.
    """

    fold: dict[int, nn.BatchNorm2d] = field(default_factory=dict)
    order: list[int] = field(default_factory=list)
    kinds: dict[int, str] = field(default_factory=dict)
    first_cin: int = 0
    input_fold: frozenset[int] = frozenset()
    norm: nn.Module | None = None
    norm_form: str = ""
    norm_consts: tuple[torch.Tensor, torch.Tensor] | None = None  #: 'muladd' constants (copies)
    growing: bool = True
    shifts: dict[int, int] = field(default_factory=dict)  #: applied shifts (deployed copies)


@dataclass
class _PreparedLayer:
    """A hardware layer's FP16 weights for one training forward (:meth:`_Aligned.prepare`)."""

    weight: torch.Tensor  #: the weight parameter the layer is called with (identity checked)
    bias: torch.Tensor | None  #: the bias parameter it is called with
    w16: torch.Tensor  #: folded, FP16-rounded weight (gradient: straight through)
    b16: torch.Tensor | None  #: folded, FP16-rounded bias
    shift: int  #: corrected weights-analysis shift, before the growing-output rule
    raw: int = 0  #: uncorrected shift ``min(15 - maxExp, -meanExp)``
    bias_max_exp: int = -15  #: largest exponent of a normal FP16 value in ``b16`` (or -15)
    bias_min_exp: int = 127  #: exponent of the smallest non-zero magnitude in ``b16`` (or 127)

    def bias_exact(self, shift: int) -> bool:
        """Whether storing ``b16`` (FP16) in the domain scaled by ``2**shift`` (round, descale,
        round) returns it unchanged without overflow: for ``shift > 0`` when ``|b| < 2**(16 -
        shift)`` (then ``|b| * 2**shift <= 65504``), for ``shift < 0`` when every non-zero
        ``|b| >= 2**(-shift - 14)`` (then ``b * 2**shift`` is a normal FP16 value with the same
        significand)."""
        if shift > 0:
            return self.bias_max_exp < 16 - shift
        return shift == 0 or self.bias_min_exp >= -shift - 14


class _ProbeMode(TorchFunctionMode):
    """Records hardware-layer order and which conv outputs feed only a batch norm."""

    def __init__(self, bn_by_stat: dict[int, nn.BatchNorm2d]) -> None:
        super().__init__()
        self.bn_by_stat = bn_by_stat
        self.conv_out: dict[int, list[Any]] = {}  # id(out) -> [out, weight, uses, bn]
        self.order: list[int] = []
        self.kinds: dict[int, str] = {}
        self.first_cin = 0
        self.norm_out: torch.Tensor | None = None  # the input normalisation's output
        self.norm_consumers: list[tuple[str, Any, int]] = []  # (op, weight or None, groups)

    def __torch_function__(self, func, types, args=(), kwargs=None):  # noqa: ANN001
        kwargs = kwargs or {}
        name = getattr(func, "__name__", "")
        flat = list(args) + list(kwargs.values())
        tensors = [a for a in flat if isinstance(a, torch.Tensor)]
        for a in flat:
            if isinstance(a, (list, tuple)):
                tensors += [t for t in a if isinstance(t, torch.Tensor)]
        if name in _META:
            return func(*args, **kwargs)
        for t in tensors:
            rec = self.conv_out.get(id(t))
            if rec is not None and rec[0] is t:
                rec[2] += 1
                if name == "batch_norm" and args and args[0] is t:
                    rm = args[1] if len(args) > 1 else kwargs.get("running_mean")
                    rec[3] = self.bn_by_stat.get(id(rm))
        if self.norm_out is not None and any(t is self.norm_out for t in tensors):
            if name == "conv2d" and args and args[0] is self.norm_out:
                _, w, _, opts = _conv_sig(*args, **kwargs)
                self.norm_consumers.append((name, w, int(opts["groups"])))
            else:
                self.norm_consumers.append((name, None, 1))
        out = func(*args, **kwargs)
        if name in _HW:
            w = args[1] if len(args) > 1 else kwargs["weight"]
            if id(w) not in self.kinds:
                if not self.order:  # input channels per group of the first hardware layer
                    groups = int(kwargs.get("groups", args[6] if len(args) > 6 else 1)) \
                        if name != "linear" else 1
                    self.first_cin = (int(w.shape[0]) // groups if name == "conv_transpose2d"
                                      else int(w.shape[1]))
                self.order.append(id(w))
                self.kinds[id(w)] = "fc" if name == "linear" else "conv"
            if name == "conv2d":
                self.conv_out[id(out)] = [out, w, 0, None]
        return out


def _find_input_norm(model: nn.Module) -> nn.Module | None:
    for m in model.modules():
        if type(m).__name__ == "InputNorm" and hasattr(m, "scale") and hasattr(m, "shift"):
            return m
    return None


def probe(model: nn.Module, x: torch.Tensor, profile: NumericsProfile,
          forward: Callable | None = None) -> ModelPlan:
    """Run one FP32 eval forward on ``x[:1]`` and return the model's :class:`ModelPlan`.

    ``forward`` replaces ``model`` as the callable (used while ``model.forward`` is patched).
    """
    bn_by_stat = {id(m.running_mean): m for m in model.modules()
                  if isinstance(m, nn.BatchNorm2d) and m.running_mean is not None}
    mode = _ProbeMode(bn_by_stat)
    norm = _find_input_norm(model)
    hook = None
    if norm is not None:
        hook = norm.register_forward_hook(lambda m, i, o: setattr(mode, "norm_out", o))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), mode:
            (forward or model)(x[:1])
    finally:
        model.train(was_training)
        if hook is not None:
            hook.remove()
    plan = ModelPlan(order=mode.order, kinds=mode.kinds, first_cin=mode.first_cin)
    for out, w, uses, bn in mode.conv_out.values():
        if uses == 1 and bn is not None and bn.track_running_stats:
            plan.fold[id(w)] = bn
    preproc: list[float] | None = None  # scales of the preprocessing stage fed by the input
    if norm is not None:
        scale = norm.scale.detach().float()
        shift = norm.shift.detach().float()
        identity = bool((scale == 1).all() and (shift == 0).all())
        uniform = bool((scale == scale.flatten()[0]).all())
        # ov.convert_model folds the multiply into a convolution that is the only consumer;
        # with several consumers (residual shortcut, dense concat) it computes x * s + (-m * s)
        foldable = len(mode.norm_consumers) == 1 and all(
            op == "conv2d" and (groups == 1 or uniform) for op, _, groups in mode.norm_consumers)
        if not identity and profile.fold_input_scale:
            plan.norm = norm
            if foldable:  # the remaining subtraction is a stage with scale 1
                plan.input_fold = frozenset(id(w) for _, w, _ in mode.norm_consumers)
                plan.norm_form = "folded"
            else:
                plan.norm_form = "muladd"
                preproc = [float(v) for v in scale.flatten()]
        elif not identity:
            preproc = [float(v) for v in scale.flatten()]
    plan.growing = growing_output(preproc, profile)
    return plan


def _bn_factors(bn: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel (scale, shift) of an eval-mode batch norm, FP32."""
    inv = torch.rsqrt(bn.running_var + bn.eps)
    g = bn.weight if bn.weight is not None else torch.ones_like(inv)
    b = bn.bias if bn.bias is not None else torch.zeros_like(inv)
    scale = g * inv
    return scale, b - bn.running_mean * scale


def _fold_bn(w: torch.Tensor, b: torch.Tensor | None,
             bn: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    """Weight and bias of a conv with ``bn`` folded in (FP32, differentiable, new tensors)."""
    s, t = _bn_factors(bn)
    return w * s.view(-1, *([1] * (w.dim() - 1))), (t if b is None else b * s + t)


def _fold_input_scale(w: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """Conv weight ``[out, in/groups, kh, kw]`` with the input normalisation's per-channel
    ``scale`` (``[1, in, 1, 1]``) folded in (FP32, differentiable, a new tensor); a grouped
    convolution is only folded with a uniform scale (see :func:`probe`)."""
    s = scale.reshape(-1).to(w.dtype)
    if s.numel() == w.shape[1]:
        return w * s.view(1, -1, 1, 1)
    return w * s[0]


def _interp_sig(input, size=None, scale_factor=None, mode="nearest", align_corners=None,  # noqa
                recompute_scale_factor=None, antialias=False):
    return input, size, scale_factor, mode, align_corners


def _axis_taps(n_in: int, n_out: int, ratio: float,
               device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Asymmetric linear taps along one axis: ``src = dst * ratio``; indices i0, i1 and the
    weight of i1 (float32)."""
    src = torch.arange(n_out, device=device, dtype=torch.float32) * ratio
    i0 = torch.floor(src).clamp_(0, n_in - 1)
    frac = (src - i0).clamp_(0.0, 1.0)
    i0 = i0.long()
    return i0, (i0 + 1).clamp_(max=n_in - 1), frac


def _asymmetric_resize(args: tuple, kwargs: dict) -> torch.Tensor | None:
    """A bilinear ``F.interpolate`` without ``align_corners`` computed with asymmetric
    coordinates (``src = dst * in / out``, or ``dst / scale_factor``), as the MYRIAD Interp
    stage runs it; None for every other resize (computed as the model asks)."""
    x, size, scale_factor, mode, align_corners = _interp_sig(*args, **kwargs)
    if mode != "bilinear" or align_corners or x.dim() != 4:
        return None
    h, w = int(x.shape[-2]), int(x.shape[-1])
    if size is not None:
        oh, ow = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
        ry, rx = h / oh, w / ow
    else:
        sy, sx = (scale_factor, scale_factor) if not isinstance(scale_factor, (tuple, list)) \
            else scale_factor
        oh, ow = int(h * sy), int(w * sx)  # floor, as torch computes the output size
        ry, rx = 1.0 / float(sy), 1.0 / float(sx)
    y0, y1, fy = _axis_taps(h, oh, ry, x.device)
    x0, x1, fx = _axis_taps(w, ow, rx, x.device)
    fy = fy.to(x.dtype).view(1, 1, -1, 1)
    fx = fx.to(x.dtype).view(1, 1, 1, -1)
    rows = x.index_select(2, y0) * (1 - fy) + x.index_select(2, y1) * fy
    return rows.index_select(3, x0) * (1 - fx) + rows.index_select(3, x1) * fx


class _Fp16Mode(TorchFunctionMode):
    """Computes intercepted ops under a numerics profile.

    ``train=False``: plain rounding under the profile's overflow semantics, weights already
    prepared (deployed copy: batch norm and input scale folded, static shifts).
    ``train=True``: batch norm and input scale folded on the fly (frozen running statistics),
    shifts recomputed from the current weights; with autograd recording, straight-through
    rounding (saturating forward, see ``ste_round_fp16``; the restoring push on overflow only
    under ``overflow='inf'``), without it (validation) the deployed rounding, inf included.
    """

    def __init__(self, profile: NumericsProfile, plan: ModelPlan, train: bool,
                 own_tensors: dict[int, bool] | None = None, overflow_push: float = 1.0,
                 recorder: Any = None, prepared: dict[int, _PreparedLayer] | None = None) -> None:
        super().__init__()
        self.p = profile
        self.fmt = fmt_of(profile)
        self.plan = plan
        self.train = train
        self.own = own_tensors or {}  # id(param/buffer) -> is_parameter (train mode)
        # saturation is the deployed function: its gradient is the clamp's (no push)
        self.push = overflow_push if profile.overflow == "inf" else 0.0
        self.recorder = recorder
        self.prepared = prepared or {}  # id(weight) -> prepared layer (train mode)
        self.pending_bn: dict[int, torch.Tensor] = {}
        self.offset: int | None = None  # growing-output rule (set by the first hardware layer)
        # in-place rounding (train mode): not with flush to zero (rare; general path)
        self.inplace = train and not profile.flush_subnormals
        norm = plan.norm if plan.norm_form else None
        #: the input normalisation's buffers: its multiply is skipped (folded into the
        #: convolution, or computed with the subtraction as x * s + (-m * s))
        self.norm_scale = None if norm is None else norm.scale
        self.norm_shift = None if plan.norm_form != "muladd" else norm.shift

    # -- rounding helpers -------------------------------------------------------------------
    def _q(self, x: torch.Tensor, scale: float = 1.0, op: str = "",
           fresh: bool = False) -> torch.Tensor:
        """``x`` stored under the profile (in the domain scaled by ``scale``). ``fresh``: ``x``
        is a new result of an op whose backward does not read it, so training may round it in
        place."""
        if self.train:
            if (fresh and self.inplace and x.dtype == torch.float32
                    and round_fp16_(x, scale, self.fmt)):
                return x
            if torch.is_grad_enabled():
                return ste_round_fp16(x, scale, self.p.flush_subnormals, self.push, self.fmt)
            return round_profile(x, self.p, scale)
        if self.recorder is not None:
            return self.recorder.round(x, scale, self.p, op)
        return round_profile(x, self.p, scale)

    def _qw(self, w: torch.Tensor | None) -> torch.Tensor | None:
        """Stored weights: prepared in deployed copies, straight-through rounded in training."""
        if w is None or not self.train:
            return w
        if not torch.is_grad_enabled():
            return round_profile(w, self.p)
        return ste_round_fp16(w, 1.0, self.p.flush_subnormals, 0.0, self.fmt)

    # -- hardware layers --------------------------------------------------------------------
    def _shift(self, wid: int, w16: torch.Tensor, prep: _PreparedLayer | None = None) -> int:
        """Applied shift of the layer with weight ``wid`` (stored weights ``w16``); ``prep``
        holds its raw and corrected shifts when already known (prepared layers)."""
        if not self.p.weights_analysis:
            return 0
        if not self.train and wid in self.plan.shifts:
            return self.plan.shifts[wid]
        kind = self.plan.kinds.get(wid, "conv")
        first = bool(self.plan.order) and self.plan.order[0] == wid
        if prep is not None:
            raw, corrected = prep.raw, prep.shift
        else:
            raw = raw_weights_analysis_shift(w16.detach())
            corrected = correct_shift(raw, kind, first, self.p)
        if first:
            self.offset = growing_output_offset(raw, self.plan.first_cin, self.plan.growing,
                                                self.p)
        return applied_shift(corrected, self.offset or 0)

    def _hw(self, name: str, args: tuple, kwargs: dict) -> torch.Tensor:
        sig = {"conv2d": _conv_sig, "conv_transpose2d": _convt_sig, "linear": _linear_sig}[name]
        x, w, b, opts = sig(*args, **kwargs)
        wid = id(w)
        bn = self.plan.fold.get(wid) if self.train else None
        prep = self.prepared.get(wid)
        if prep is not None and (prep.weight is not w or prep.bias is not b):
            prep = None  # called with other tensors than prepared: general path
        if prep is not None:
            w16, b16 = prep.w16, prep.b16
        else:
            if self.train and wid in self.plan.input_fold and self.norm_scale is not None:
                w = _fold_input_scale(w, self.norm_scale)  # the converter's fold, on the fly
            if bn is not None:  # fold on the fly (frozen statistics)
                w, b = _fold_bn(w, b, bn)
            w16, b16 = self._qw(w), self._qw(b)
        shift = self._shift(wid, w16, prep)
        scale = 2.0 ** shift
        fn = {"conv2d": F.conv2d, "conv_transpose2d": F.conv_transpose2d, "linear": F.linear}[name]
        if self.p.accumulation == "fp16" and name != "conv_transpose2d":
            if scale != 1.0:  # accumulate in the scaled domain (weights x 2**shift, exact)
                w16 = w16 * scale
                b16 = None if b16 is None else self._q_plain(b16 * scale)
            y = self._chunked(fn, x, w16, b16, opts, name)
            if scale != 1.0:
                y = y * (1.0 / scale)
        else:
            # conv(x, w * 2**s) == conv(x, w) * 2**s exactly in FP32, so compute unscaled; the
            # bias is stored scaled in FP16 (may overflow there)
            if scale != 1.0 and b16 is not None:
                if not self.train:
                    b16 = round_profile(b16, self.p, scale)
                elif prep is None or not prep.bias_exact(shift):
                    b16 = self._q(b16, scale)
            y = fn(x, w16, b16, **opts)
        if self.recorder is not None:
            self.recorder.note_shift(shift)
        # round in the scaled domain (overflow there is real), descale, round again
        out = self._q(y, scale, name, fresh=not y._is_view())
        if bn is not None:
            self.pending_bn[id(out)] = out
        return out

    def _chunked(self, fn: Callable, x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None,
                 opts: dict, name: str) -> torch.Tensor:
        """FP16 accumulation: partial sums over ``accum_chunk`` input channels per group, each
        rounded to FP16 and added in FP16; the bias is added last (in FP16)."""
        k = self.p.accum_chunk
        per_group = w.shape[1]
        groups = int(opts.get("groups", 1)) if name == "conv2d" else 1
        acc = None
        for start in range(0, per_group, k):
            stop = min(per_group, start + k)
            if name == "linear":
                part = fn(x[..., start:stop], w[:, start:stop])
            else:
                n, c, h, wd = x.shape
                xs = x.view(n, groups, per_group, h, wd)[:, :, start:stop].reshape(
                    n, groups * (stop - start), h, wd)
                part = fn(xs, w[:, start:stop], None, **opts)
            part = self._q_plain(part)
            acc = part if acc is None else self._q_plain(acc + part)
        if b is not None:
            # linear: features on the last dim (any leading dims); conv: channels on dim 1
            shape = ((1,) * (acc.dim() - 1) + (-1,)) if name == "linear" else (
                (1, -1) + (1,) * (acc.dim() - 2))
            acc = acc + b.view(shape)
        return acc

    def _norm_muladd(self, x: torch.Tensor) -> torch.Tensor:
        """The converted input normalisation ``x * s + (-m * s)`` (constants folded in FP32,
        stored under the profile; each op's result stored)."""
        if self.plan.norm_consts is not None:  # deployed copy: folded before FP16 storage
            scale, offset = self.plan.norm_consts
        else:
            s, m = self.norm_scale, self.norm_shift
            scale = round_profile(s.detach().float(), self.p)
            offset = round_profile((-m * s).detach().float(), self.p)
        return self._q(self._q(x * scale) + offset)

    def _q_plain(self, x: torch.Tensor) -> torch.Tensor:
        if self.train and torch.is_grad_enabled():
            return ste_round_fp16(x, 1.0, self.p.flush_subnormals, self.push, self.fmt)
        return round_profile(x, self.p)

    # -- dispatcher ------------------------------------------------------------------------
    def _own_args(self, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
        """Round the model's own parameters/buffers used directly by element-wise ops."""
        def conv(a: Any) -> Any:
            if isinstance(a, torch.Tensor) and id(a) in self.own and a.is_floating_point():
                return self._qw(a) if self.own[id(a)] else round_profile(a, self.p)
            return a
        return tuple(conv(a) for a in args), {k: conv(v) for k, v in kwargs.items()}

    def __torch_function__(self, func, types, args=(), kwargs=None):  # noqa: ANN001
        kwargs = kwargs or {}
        name = getattr(func, "__name__", "")
        if name in _EXACT:
            return func(*args, **kwargs)
        if name in _HW:
            return self._hw(name, args, kwargs)
        if (self.norm_scale is not None and name in ("mul", "__mul__", "__rmul__")
                and len(args) == 2 and any(a is self.norm_scale for a in args)):
            # the input normalisation's multiply: folded, or done with the subtraction
            return args[0] if args[1] is self.norm_scale else args[1]
        if (self.norm_shift is not None and name in ("sub", "__sub__") and len(args) == 2
                and args[1] is self.norm_shift):
            return self._norm_muladd(args[0])
        if name == "interpolate" and self.p.resize_mode == "asymmetric":
            out = _asymmetric_resize(args, kwargs)
            if out is not None:
                return self._q(out, 1.0, name, fresh=True) if self.p.eltwise_fp16 else out
        if name == "batch_norm" and self.pending_bn:
            x = args[0] if args else kwargs.get("input")
            folded = self.pending_bn.pop(id(x), None)
            if folded is not None and folded is x:
                return x  # folded into the convolution that produced x
        if self.train and self.own:
            if (name == "add_" and args and id(args[0]) in self.own
                    and not args[0].is_floating_point()):
                return args[0]  # batch norm's num_batches_tracked: statistics are frozen
            args, kwargs = self._own_args(args, kwargs)
        if name == "batch_norm":
            x, rm, rv, w, b, eps = _bn_sig(*args, **kwargs)
            y = F.batch_norm(x, rm, rv, w, b, False, 0.0, eps)  # frozen statistics
            return self._q(y, 1.0, name, fresh=True) if self.p.eltwise_fp16 else y
        out = func(*args, **kwargs)
        if not self.p.eltwise_fp16:
            return out
        if isinstance(out, torch.Tensor):
            if not out.is_floating_point():
                return out
            if name.endswith("_") and not name.startswith("__"):  # in-place: round in place
                with torch.no_grad():
                    out.data.copy_(round_profile(out.data, self.p))
                return out
            fresh = (name in _FRESH and "out" not in kwargs and not out._is_view()
                     and not any(out is a for a in args))
            return self._q(out, 1.0, name, fresh)
        if isinstance(out, (tuple, list)) and out and all(isinstance(o, torch.Tensor) for o in out):
            return type(out)(self._q(o, 1.0, name) if o.is_floating_point() else o for o in out)
        return out


def _round_model_(model: nn.Module, profile: NumericsProfile) -> None:
    """Store every floating parameter and buffer of ``model`` under ``profile``, in place."""
    with torch.no_grad():
        for t in list(model.parameters()) + list(model.buffers()):
            if t.is_floating_point():
                t.copy_(round_profile(t, profile))


def _replace_module(root: nn.Module, target: nn.Module, new: nn.Module) -> None:
    for name, m in root.named_modules():
        for child_name, child in m.named_children():
            if child is target:
                setattr(m, child_name, new)
                return


class DeployedFP16(nn.Module):
    """Evaluation-only copy of a model computing under a numerics profile.

    Prepared on the first call (probe, batch-norm folding, FP16 weights, static shifts);
    :meth:`prepare` does it eagerly. Outputs are float32 tensors holding FP16 values.
    """

    def __init__(self, model: nn.Module, profile: NumericsProfile) -> None:
        super().__init__()
        self.profile = profile
        self.model = copy.deepcopy(model).cpu().float().eval()
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.plan: ModelPlan | None = None
        self.recorder: Any = None

    def train(self, mode: bool = True) -> DeployedFP16:  # noqa: ARG002 (always eval)
        return super().train(False)

    def prepare(self, x: torch.Tensor) -> ModelPlan:
        """Convert like the deployment does (input scale and batch norms folded), store the
        weights under the profile and compute the applied shifts, using ``x[:1]`` to probe."""
        plan = probe(self.model, x.float(), self.profile)
        params = {id(p): p for p in self.model.parameters()}
        modules_by_weight = {id(m.weight): m for m in self.model.modules()
                             if isinstance(m, nn.Conv2d)}
        with torch.no_grad():
            if plan.input_fold and plan.norm is not None:
                for wid in plan.input_fold:
                    params[wid].copy_(_fold_input_scale(params[wid], plan.norm.scale))
            if plan.norm_form == "muladd" and plan.norm is not None:
                s, m = plan.norm.scale.float(), plan.norm.shift.float()
                plan.norm_consts = (round_profile(s.clone(), self.profile),
                                    round_profile(-m * s, self.profile))
            for wid, bn in plan.fold.items():
                conv = modules_by_weight.get(wid)
                if conv is None:  # functional conv with a foreign weight: cannot fold in place
                    continue
                s, t = _bn_factors(bn)
                conv.weight.mul_(s.view(-1, 1, 1, 1))
                if conv.bias is None:
                    conv.bias = nn.Parameter(t.clone(), requires_grad=False)
                else:
                    conv.bias.mul_(s).add_(t)
                _replace_module(self.model, bn, nn.Identity())
        n_folded = len(plan.fold)
        plan.fold = {}
        _round_model_(self.model, self.profile)
        if self.profile.weights_analysis:
            offset = 0
            for i, wid in enumerate(plan.order):
                w = params.get(wid)
                if w is None:
                    continue
                raw = raw_weights_analysis_shift(w)
                if i == 0:
                    offset = growing_output_offset(raw, plan.first_cin, plan.growing,
                                                   self.profile)
                plan.shifts[wid] = correct_shift(raw, plan.kinds[wid], i == 0, self.profile)
            plan.shifts = {k: applied_shift(v, offset) for k, v in plan.shifts.items()}
        self.plan = plan
        logger.debug("deployed copy (%s): %d hardware layers, %d batch norms folded, input "
                     "scale folded into %d", self.profile.name, len(plan.order), n_folded,
                     len(plan.input_fold))
        return plan

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.float()
        if self.plan is None:
            self.prepare(x)
        assert self.plan is not None
        if self.profile.input_fp16:
            x = round_profile(x, self.profile)
        with torch.no_grad(), _Fp16Mode(self.profile, self.plan, train=False,
                                        recorder=self.recorder):
            return self.model(x)

    def shifts(self) -> dict[str, int]:
        """Applied weights-analysis shift per hardware layer, by parameter name (after
        prepare); 0 means no scaling."""
        if self.plan is None:
            return {}
        return {n: self.plan.shifts[id(p)] for n, p in self.model.named_parameters()
                if id(p) in self.plan.shifts}


def deploy_fp16(model: nn.Module, profile: str | NumericsProfile = "myriadx",
                example_input: torch.Tensor | None = None, **overrides: Any) -> DeployedFP16:
    """Evaluation-only copy of ``model`` computing under ``profile`` (the model is untouched).

    ``example_input`` (``[N,C,H,W]``, model input units) prepares it eagerly; otherwise the first
    call does. ``overrides`` are profile switches (see :class:`NumericsProfile`).
    """
    deployed = DeployedFP16(model, get_profile(profile, **overrides))
    if example_input is not None:
        deployed.prepare(example_input)
    return deployed


_HW_MODULES = (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)


class _Aligned:
    """State shared by :func:`aligned_training` and :class:`Constrained`."""

    def __init__(self, model: nn.Module, profile: NumericsProfile, overflow_push: float) -> None:
        self.model = model
        self.profile = profile
        self.push = overflow_push
        self.plan: ModelPlan | None = None
        self._all_modules: list[nn.Module] | None = None
        self._hw_modules: list[nn.Module] | None = None
        self._segments: tuple[tuple, torch.Tensor] | None = None  # (lengths, device), offsets

    def run(self, forward: Callable, args: tuple, kwargs: dict) -> Any:
        if self.plan is None:
            x = next(a for a in args if isinstance(a, torch.Tensor))
            self.plan = probe(self.model, x.detach().float(), self.profile, forward)
        own = self._own_tensors()
        if self.profile.input_fp16:
            args = tuple(round_profile(a, self.profile)
                         if isinstance(a, torch.Tensor) and a.is_floating_point() else a
                         for a in args)
        prepared = self.prepare(self.plan)
        with _Fp16Mode(self.profile, self.plan, train=True, own_tensors=own,
                       overflow_push=self.push, prepared=prepared):
            return forward(*args, **kwargs)

    def _own_tensors(self) -> dict[int, bool]:
        """id -> True for the model's parameters, False for its buffers (read from the modules
        every forward, so reassigned tensors are seen; the module tree itself is cached)."""
        if self._all_modules is None:
            self._all_modules = list(self.model.modules())
        own: dict[int, bool] = {}
        for m in self._all_modules:
            for p in m._parameters.values():
                if p is not None:
                    own[id(p)] = True
        for m in self._all_modules:
            for b in m._buffers.values():
                if b is not None:
                    own[id(b)] = False
        return own

    def _modules_of(self, plan: ModelPlan) -> list[nn.Module]:
        """Conv/linear modules whose weight is a hardware layer of ``plan``, in plan order."""
        if self._hw_modules is None:
            by_weight: dict[int, nn.Module] = {}
            for m in self.model.modules():
                w = getattr(m, "weight", None)
                if isinstance(m, _HW_MODULES) and isinstance(w, torch.Tensor):
                    by_weight.setdefault(id(w), m)
            self._hw_modules = [by_weight[w] for w in plan.order if w in by_weight]
        return self._hw_modules

    def prepare(self, plan: ModelPlan) -> dict[int, _PreparedLayer] | None:
        """Stored weights and shifts (raw and corrected) of the model's conv/linear modules for
        one forward.

        Computes what :meth:`_Fp16Mode._hw` computes per call (input-scale and batch-norm
        folds, straight-through rounding of weight and bias, weights-analysis shift), for all
        layers at once: the folds use the same ops, the rounding is one overflow check and one
        pass over all weights and biases (valid per tensor: rounding is element-wise, and
        without overflow the straight-through estimator is the identity, so it is written into
        the fresh folded or cloned tensors), and the shifts come from one exponent histogram.
        Returns None (every layer takes the general path) if any weight would overflow the
        storage format or is NaN.
        """
        fmt = fmt_of(self.profile)
        norm = plan.norm if plan.input_fold else None
        layers: list[_PreparedLayer] = []
        for m in self._modules_of(plan):
            w, b = m.weight, m.bias
            if not (isinstance(w, torch.Tensor) and (b is None or isinstance(b, torch.Tensor))):
                continue
            wid = id(w)
            if (wid not in plan.kinds or w.dtype != torch.float32
                    or (b is not None and b.dtype != torch.float32)):
                continue
            bn = plan.fold.get(wid)
            wi = w
            if norm is not None and wid in plan.input_fold:  # the same folds as in _hw
                wi = _fold_input_scale(w, norm.scale)
            if bn is not None:
                wf, bf = _fold_bn(wi, b, bn)
            else:
                wf, bf = (wi if wi is not w else w.clone()), None if b is None else b.clone()
            layers.append(_PreparedLayer(w, b, wf, bf, 0))
        if not layers:
            return {}
        fresh = [layer.w16 for layer in layers] + [layer.b16 for layer in layers
                                                   if layer.b16 is not None]
        lengths = [t.numel() for t in fresh]
        with torch.no_grad():
            flat = torch.cat([t.detach().reshape(-1) for t in fresh])
            hi, lo = float(flat.amax()), float(flat.amin())
            if not (hi < fmt.overflow and lo > -fmt.overflow):  # overflow or NaN
                return None
            q = round_profile(flat, self.profile)
            for t, piece in zip(fresh, q.split(lengths), strict=True):
                t.copy_(piece.view(t.shape))
            if self.profile.weights_analysis:
                key = (tuple(lengths), q.device)
                if self._segments is None or self._segments[0] != key:
                    self._segments = (key, exponent_segments(lengths, q.device))
                stats = fp16_exponent_stats(q, self._segments[1], len(lengths))
                bias_seg = len(layers)  # segment of the next bias in `fresh`
                for layer, (count, total, max_exp, _) in zip(layers, stats, strict=False):
                    wid = id(layer.weight)
                    layer.raw = raw_shift_from_exponent_stats(count, total, max_exp)
                    layer.shift = correct_shift(layer.raw, plan.kinds[wid], plan.order[0] == wid,
                                                self.profile)
                    if layer.b16 is not None:
                        _, _, layer.bias_max_exp, layer.bias_min_exp = stats[bias_seg]
                        bias_seg += 1
        return {id(layer.weight): layer for layer in layers}


_PLANS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _shared_state(model: nn.Module, profile: NumericsProfile, overflow_push: float) -> _Aligned:
    """One :class:`_Aligned` per (model, profile, push), so the probe runs once per model."""
    per_model = _PLANS.setdefault(model, {})
    key = (profile, overflow_push)
    if key not in per_model:
        per_model[key] = _Aligned(model, profile, overflow_push)
    return per_model[key]


@contextlib.contextmanager
def aligned_training(model: nn.Module, profile: str | NumericsProfile = "myriadx",
                     overflow_push: float = 1.0) -> Iterator[nn.Module]:
    """Inside the ``with``, ``model(x)`` computes under ``profile`` with straight-through
    gradients; outside, the model is plain FP32 again. Yields the model.

    Design: weights are the converted weights deployment will see (input scale and batch norm
    folded; batch norm statistics are frozen: running mean/var are used and not updated,
    gamma/beta/conv weights train); rounding is a clamp-aware straight-through estimator.

    Overflow follows the profile's ``overflow`` switch:

    * ``'saturate'``: the forward saturates exactly as the deployed model does; the gradient of
      saturated elements is the clamp's (zero);
    * ``'inf'``: forwards that record gradients cannot carry inf (it turns every gradient that
      touches it into NaN), so they saturate as a surrogate and drop the task gradient of
      overflowed elements for a restoring gradient ``overflow_push * mean|grad| * sign(x)``
      (0 disables) that drives them back into range; forwards without autograd (validation
      under ``torch.no_grad()``, which early stopping uses) compute exactly the deployed values,
      inf and NaN included. Without overflow both are identical to the deployed forward.

    Only the forward is constrained, so the loss computed outside ``model(x)`` stays FP32.
    Cheap to enter repeatedly (the model's probe result is cached while the model lives); do
    not change the model's structure in between.
    """
    state = _shared_state(model, get_profile(profile), overflow_push)
    original = model.forward

    def forward(*args: Any, **kwargs: Any) -> Any:
        return state.run(original, args, kwargs)

    model.forward = forward  # type: ignore[method-assign]
    try:
        yield model
    finally:
        del model.forward


def aligned_context(model: nn.Module, profile: str | NumericsProfile = "myriadx",
                    overflow_push: float = 1.0, calibration: torch.Tensor | None = None
                    ) -> Callable[[], contextlib.AbstractContextManager]:
    """Zero-argument factory of :func:`aligned_training` contexts for ``model`` (the shape
    ``train_model(..., forward_context=...)`` expects). A profile of format ``int8`` gets the
    INT8-aligned forward (:func:`dalp_moo.precision.int8.int8_context`), whose activation
    ranges come from ``calibration``."""
    prof = get_profile(profile)
    if prof.format == "int8":
        from dalp_moo.precision.int8 import int8_context

        return int8_context(model, calibration)
    return lambda: aligned_training(model, prof, overflow_push)


class Constrained(nn.Module):
    """Wrapper sharing ``model``'s parameters whose forward is the aligned (FP16, STE) one."""

    def __init__(self, model: nn.Module, profile: str | NumericsProfile = "myriadx",
                 overflow_push: float = 1.0) -> None:
        super().__init__()
        self.model = model
        self._state = _Aligned(model, get_profile(profile), overflow_push)

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        return self._state.run(self.model.forward, args, kwargs)


def constrain(model: nn.Module, profile: str | NumericsProfile = "myriadx",
              overflow_push: float = 1.0) -> Constrained:
    """``model`` wrapped so that its forward computes under ``profile`` with straight-through
    gradients (see :func:`aligned_training`); parameters are shared, not copied."""
    return Constrained(model, profile, overflow_push)


__all__ = ["Constrained", "DeployedFP16", "ModelPlan", "aligned_context", "aligned_training",
           "constrain",
           "deploy_fp16", "probe"]
