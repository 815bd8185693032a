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

Batch norm is folded into the preceding convolution when that convolution's output feeds only
the batch norm (found by one probe forward on the first batch), exactly as deployment folds it:
``w' = w * g / sqrt(var + eps)``, ``b' = (b - mean) * g / sqrt(var + eps) + beta`` in FP32, then
rounded to FP16. Other batch norms run as an FP16 scale-shift with running statistics.

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
    FP16_OVERFLOW,
    exponent_segments,
    fp16_exponent_stats,
    round_fp16,
    round_fp16_,
    shift_from_exponent_stats,
    ste_round_fp16,
    weights_analysis_shift,
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
    layer weights (ids) in execution order; ``preproc_scale_ok`` tells whether the model has a
    non-identity ``InputNorm`` whose every scale is >= the profile's threshold.
    """

    fold: dict[int, nn.BatchNorm2d] = field(default_factory=dict)
    order: list[int] = field(default_factory=list)
    kinds: dict[int, str] = field(default_factory=dict)
    preproc_scale_ok: bool = False
    shifts: dict[int, int] = field(default_factory=dict)  #: static shifts (deployed copies)


@dataclass
class _PreparedLayer:
    """A hardware layer's FP16 weights for one training forward (:meth:`_Aligned.prepare`)."""

    weight: torch.Tensor  #: the weight parameter the layer is called with (identity checked)
    bias: torch.Tensor | None  #: the bias parameter it is called with
    w16: torch.Tensor  #: folded, FP16-rounded weight (gradient: straight through)
    b16: torch.Tensor | None  #: folded, FP16-rounded bias
    shift: int  #: weights-analysis shift before the input-preprocessing rule
    bias_max_exp: int = -15  #: largest exponent of a normal FP16 value in ``b16`` (or -15)
    bias_min_exp: int = 127  #: exponent of the smallest non-zero magnitude in ``b16`` (or 127)

    def bias_exact(self, shift: int) -> bool:
        """Whether storing ``b16`` in the domain scaled by ``2**shift`` (round, descale, round)
        returns it unchanged without overflow: for ``shift > 0`` when ``|b| < 2**(16 - shift)``
        (then ``|b| * 2**shift <= 65504``), for ``shift < 0`` when every non-zero ``|b| >=
        2**(-shift - 14)`` (then ``b * 2**shift`` is a normal FP16 value with the same
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
        out = func(*args, **kwargs)
        if name in _HW:
            w = args[1] if len(args) > 1 else kwargs["weight"]
            if id(w) not in self.kinds:
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
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), mode:
            (forward or model)(x[:1])
    finally:
        model.train(was_training)
    plan = ModelPlan(order=mode.order, kinds=mode.kinds)
    for out, w, uses, bn in mode.conv_out.values():
        if uses == 1 and bn is not None and bn.track_running_stats:
            plan.fold[id(w)] = bn
    norm = _find_input_norm(model)
    if norm is not None:
        scale = norm.scale.detach().float()
        shift = norm.shift.detach().float()
        identity = bool((scale == 1).all() and (shift == 0).all())
        plan.preproc_scale_ok = (not identity) and bool(
            (scale.abs() >= profile.input_preproc_min_scale).all())
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


class _Fp16Mode(TorchFunctionMode):
    """Computes intercepted ops under a numerics profile.

    ``train=False``: plain rounding (inf on overflow), weights already prepared (deployed copy).
    ``train=True``: straight-through rounding (saturating forward, see ``ste_round_fp16``),
    batch norm folded on the fly with frozen running statistics, shifts recomputed from the
    current weights.
    """

    def __init__(self, profile: NumericsProfile, plan: ModelPlan, train: bool,
                 own_tensors: dict[int, bool] | None = None, overflow_push: float = 1.0,
                 recorder: Any = None, prepared: dict[int, _PreparedLayer] | None = None) -> None:
        super().__init__()
        self.p = profile
        self.plan = plan
        self.train = train
        self.own = own_tensors or {}  # id(param/buffer) -> is_parameter (train mode)
        self.push = overflow_push
        self.recorder = recorder
        self.prepared = prepared or {}  # id(weight) -> prepared layer (train mode)
        self.pending_bn: dict[int, torch.Tensor] = {}
        self.first_shift: int | None = None
        # in-place rounding (train mode): not with flush to zero (rare; general path)
        self.inplace = train and not profile.flush_subnormals

    # -- rounding helpers -------------------------------------------------------------------
    def _q(self, x: torch.Tensor, scale: float = 1.0, op: str = "",
           fresh: bool = False) -> torch.Tensor:
        """``x`` rounded to FP16 (in the domain scaled by ``scale``). ``fresh``: ``x`` is a new
        result of an op whose backward does not read it, so training may round it in place."""
        ftz = self.p.flush_subnormals
        if self.train:
            if (fresh and self.inplace and x.dtype == torch.float32
                    and round_fp16_(x, scale)):
                return x
            return ste_round_fp16(x, scale, ftz, self.push)
        if self.recorder is not None:
            return self.recorder.round(x, scale, ftz, op)
        if scale == 1.0:
            return round_fp16(x, ftz)
        return round_fp16(round_fp16(x * scale, ftz) * (1.0 / scale), ftz)

    def _qw(self, w: torch.Tensor | None) -> torch.Tensor | None:
        """FP16 weights: prepared in deployed copies, straight-through rounded in training."""
        if w is None or not self.train:
            return w
        return ste_round_fp16(w, 1.0, self.p.flush_subnormals, 0.0)

    # -- hardware layers --------------------------------------------------------------------
    def _shift(self, wid: int, w16: torch.Tensor, raw: int | None = None) -> int:
        """Shift of the layer with weight ``wid`` (FP16 weights ``w16``); ``raw``: the shift
        before the input-preprocessing rule when already known (prepared layers)."""
        if not self.p.weights_analysis:
            return 0
        if not self.train and wid in self.plan.shifts:
            return self.plan.shifts[wid]
        kind = self.plan.kinds.get(wid, "conv")
        first = bool(self.plan.order) and self.plan.order[0] == wid
        s = raw if raw is not None else weights_analysis_shift(w16.detach(), kind, first, self.p)
        if first:
            self.first_shift = s
        if (self.p.input_preproc_rule and self.plan.preproc_scale_ok
                and self.first_shift is not None and self.first_shift < 4):
            s -= 5
        return s

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
            if bn is not None:  # fold on the fly (frozen statistics)
                w, b = _fold_bn(w, b, bn)
            w16, b16 = self._qw(w), self._qw(b)
        shift = self._shift(wid, w16, None if prep is None else prep.shift)
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
                    b16 = round_fp16(round_fp16(b16 * scale, self.p.flush_subnormals)
                                     * (1.0 / scale))
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

    def _q_plain(self, x: torch.Tensor) -> torch.Tensor:
        if self.train:
            return ste_round_fp16(x, 1.0, self.p.flush_subnormals, self.push)
        return round_fp16(x, self.p.flush_subnormals)

    # -- dispatcher ------------------------------------------------------------------------
    def _own_args(self, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
        """Round the model's own parameters/buffers used directly by element-wise ops."""
        def conv(a: Any) -> Any:
            if isinstance(a, torch.Tensor) and id(a) in self.own and a.is_floating_point():
                return self._qw(a) if self.own[id(a)] else round_fp16(a, self.p.flush_subnormals)
            return a
        return tuple(conv(a) for a in args), {k: conv(v) for k, v in kwargs.items()}

    def __torch_function__(self, func, types, args=(), kwargs=None):  # noqa: ANN001
        kwargs = kwargs or {}
        name = getattr(func, "__name__", "")
        if name in _EXACT:
            return func(*args, **kwargs)
        if name in _HW:
            return self._hw(name, args, kwargs)
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
                    out.data.copy_(round_fp16(out.data, self.p.flush_subnormals))
                return out
            fresh = (name in _FRESH and "out" not in kwargs and not out._is_view()
                     and not any(out is a for a in args))
            return self._q(out, 1.0, name, fresh)
        if isinstance(out, (tuple, list)) and out and all(isinstance(o, torch.Tensor) for o in out):
            return type(out)(self._q(o, 1.0, name) if o.is_floating_point() else o for o in out)
        return out


def _round_model_(model: nn.Module, ftz: bool) -> None:
    """Round every floating parameter and buffer of ``model`` to FP16 values, in place."""
    with torch.no_grad():
        for t in list(model.parameters()) + list(model.buffers()):
            if t.is_floating_point():
                t.copy_(round_fp16(t, ftz))


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
        """Fold batch norms, round weights, compute shifts, using ``x[:1]`` to probe."""
        plan = probe(self.model, x.float(), self.profile)
        params = {id(p): p for p in self.model.parameters()}
        modules_by_weight = {id(m.weight): m for m in self.model.modules()
                             if isinstance(m, nn.Conv2d)}
        with torch.no_grad():
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
        _round_model_(self.model, self.profile.flush_subnormals)
        if self.profile.weights_analysis:
            first_shift = None
            for i, wid in enumerate(plan.order):
                w = params.get(wid)
                if w is None:
                    continue
                s = weights_analysis_shift(w, plan.kinds[wid], i == 0, self.profile)
                if i == 0:
                    first_shift = s
                plan.shifts[wid] = s
            if (self.profile.input_preproc_rule and plan.preproc_scale_ok
                    and first_shift is not None and first_shift < 4):
                plan.shifts = {k: v - 5 for k, v in plan.shifts.items()}
        self.plan = plan
        logger.debug("deployed FP16 copy (%s): %d hardware layers, %d batch norms folded",
                     self.profile.name, len(plan.order), n_folded)
        return plan

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.float()
        if self.plan is None:
            self.prepare(x)
        assert self.plan is not None
        if self.profile.input_fp16:
            x = round_fp16(x, self.profile.flush_subnormals)
        with torch.no_grad(), _Fp16Mode(self.profile, self.plan, train=False,
                                        recorder=self.recorder):
            return self.model(x)

    def shifts(self) -> dict[str, int]:
        """Weights-analysis shift per hardware layer, by parameter name (after prepare)."""
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
            args = tuple(round_fp16(a, self.profile.flush_subnormals)
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
        """FP16 weights and raw shifts of the model's conv/linear modules for one forward.

        Computes what :meth:`_Fp16Mode._hw` computes per call (batch-norm fold, straight-through
        rounding of weight and bias, weights-analysis shift), for all layers at once: the fold
        uses the same ops, the rounding is one overflow check and one pass over all weights and
        biases (valid per tensor: rounding is element-wise, and without overflow the
        straight-through estimator is the identity, so it is written into the fresh folded or
        cloned tensors), and the shifts come from one exponent histogram. Returns None (every
        layer takes the general path) if any weight would overflow FP16 or is NaN.
        """
        ftz = self.profile.flush_subnormals
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
            if bn is not None:  # the same fold as in _Fp16Mode._hw
                wf, bf = _fold_bn(w, b, bn)
            else:
                wf, bf = w.clone(), None if b is None else b.clone()
            layers.append(_PreparedLayer(w, b, wf, bf, 0))
        if not layers:
            return {}
        fresh = [layer.w16 for layer in layers] + [layer.b16 for layer in layers
                                                   if layer.b16 is not None]
        lengths = [t.numel() for t in fresh]
        with torch.no_grad():
            flat = torch.cat([t.detach().reshape(-1) for t in fresh])
            hi, lo = float(flat.amax()), float(flat.amin())
            if not (hi < FP16_OVERFLOW and lo > -FP16_OVERFLOW):  # overflow or NaN
                return None
            q = round_fp16(flat, ftz)
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
                    layer.shift = shift_from_exponent_stats(count, total, max_exp, plan.kinds[wid],
                                                            plan.order[0] == wid, self.profile)
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

    Design: weights are the batch-norm-folded weights deployment will see (batch norm statistics
    are frozen: running mean/var are used and not updated, gamma/beta/conv weights train);
    rounding is a clamp-aware straight-through estimator (saturating forward, identity gradient
    in range, restoring gradient ``overflow_push * mean|grad| * sign(x)`` on values that would
    overflow to inf on the device, 0 disables). Only the forward is constrained, so the loss
    computed outside ``model(x)`` stays FP32. Cheap to enter repeatedly (the model's probe
    result is cached while the model lives); do not change the model's structure in between.
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
                    overflow_push: float = 1.0) -> Callable[[], contextlib.AbstractContextManager]:
    """Zero-argument factory of :func:`aligned_training` contexts for ``model`` (the shape
    ``train_model(..., forward_context=...)`` expects)."""
    prof = get_profile(profile)
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
