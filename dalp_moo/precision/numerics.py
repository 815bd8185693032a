"""Element-level FP16 numerics: rounding, flush-to-zero, the weights-analysis shift, and the
straight-through rounding used during deployment-aligned training.

Rounding uses ``x.to(torch.float16).to(torch.float32)``: vectorised, exact round-to-nearest-even,
IEEE overflow to inf (values >= 65520 in magnitude) and NaN propagation.

The deployment-aligned training forward uses two faster equivalents where they apply:
:func:`round_fp16_` rounds a fresh op result in place (the no-overflow branch of
:class:`_RoundSTE`, whose gradient is the identity, so autograd needs no node for it), and
:func:`fp16_exponent_stats` gives the inputs of the weights-analysis shift of many layers in one
pass (one host synchronisation for the whole model instead of several per layer).
"""

from __future__ import annotations

import torch

from dalp_moo.precision.profiles import FP16_MAX, FP16_MIN_NORMAL, NumericsProfile

#: Magnitudes at or above this round to inf in binary16 (65504 + half an ulp of 32).
FP16_OVERFLOW = 65520.0


def round_fp16(x: torch.Tensor, flush_subnormals: bool = False) -> torch.Tensor:
    """``x`` rounded to the nearest binary16 value (RNE), returned as float32.

    Overflow gives +-inf, NaN stays NaN. With ``flush_subnormals`` results below 2**-14 in
    magnitude become (signed) zero.
    """
    q = x.to(torch.float16).to(torch.float32)
    if flush_subnormals:
        q = torch.where(q.abs() < FP16_MIN_NORMAL, q * 0.0, q)
    return q


def fp16_exponents(w: torch.Tensor) -> torch.Tensor:
    """Unbiased binary16 exponents (int32) of ``w`` after conversion to FP16.

    Zeros and subnormals read -15 (biased exponent 0), inf/NaN read 16.
    """
    bits = w.detach().to(torch.float16).contiguous().view(torch.int16).to(torch.int32)
    return ((bits >> 10) & 0x1F) - 15


def weights_analysis_shift(weight: torch.Tensor, kind: str = "conv", first_layer: bool = False,
                           profile: NumericsProfile | None = None) -> int:
    """The MYRIAD plugin's power-of-two shift for one hardware layer's weights.

    Exponents of the FP16 weights, ignoring zeros and subnormals (exponent -15):
    ``shift = min(15 - maxExp, -meanExp)`` (``meanExp`` is the integer mean, truncated toward
    zero as in C++ integer division); the first hardware layer with ``shift > 10`` gets
    ``shift - 8``; then ``shift`` is clamped to ``<= 8`` (``kind='conv'``, also deconvolution) or
    ``<= 9`` (``kind='fc'``). Weights that are all zero/subnormal give 0. The input-preprocessing
    rule (every layer's shift - 5) depends on the whole model and is applied by the caller.
    """
    e = fp16_exponents(weight).flatten()
    valid = e != -15
    count = int(valid.sum())
    if count == 0:
        return 0
    max_exp = int(torch.where(valid, e, torch.full_like(e, -100)).max())
    total = int((e * valid).sum())
    return shift_from_exponent_stats(count, total, max_exp, kind, first_layer, profile)


def shift_from_exponent_stats(count: int, total: int, max_exp: int, kind: str = "conv",
                              first_layer: bool = False,
                              profile: NumericsProfile | None = None) -> int:
    """The rule of :func:`weights_analysis_shift` given the layer's FP16 weight exponent
    statistics over its normal (non-zero, non-subnormal) weights: their ``count``, the ``total``
    of their unbiased exponents and the largest one ``max_exp``."""
    if count == 0:
        return 0
    conv_max = profile.conv_shift_max if profile is not None else 8
    fc_max = profile.fc_shift_max if profile is not None else 9
    first_rule = profile.first_layer_rule if profile is not None else True
    mean_exp = abs(total) // count * (1 if total >= 0 else -1)  # C++ integer division
    shift = min(15 - max_exp, -mean_exp)
    if first_layer and first_rule and shift > 10:
        shift -= 8
    return min(shift, fc_max if kind == "fc" else conv_max)


#: :func:`fp16_exponent_stats` bins by float32 biased exponent ``E`` clamped to [102, 143]:
#: bin 0 = zero (the only FP16 value with ``E < 103``), bins 1-10 = binary16 subnormals
#: (exponents -24 to -15), bins 11-40 = binary16 exponents -14 to 15, bin 41 = inf/NaN
_E_LOW, _EXP_BINS = 102, 42
_FIRST_NORMAL_BIN = 11


def exponent_segments(lengths: list[int], device: torch.device | str = "cpu") -> torch.Tensor:
    """Per-element histogram offsets for :func:`fp16_exponent_stats` of a flat tensor made of
    consecutive segments of ``lengths`` elements (depends only on the lengths: cache it)."""
    seg = torch.repeat_interleave(torch.arange(len(lengths), dtype=torch.int32),
                                  torch.tensor(lengths, dtype=torch.int64))
    return (seg * _EXP_BINS - _E_LOW).to(device)


def fp16_exponent_stats(flat: torch.Tensor, segments: torch.Tensor,
                        n_seg: int) -> list[tuple[int, int, int, int]]:
    """Exponent statistics of each of the ``n_seg`` segments of ``flat`` (float32, contiguous,
    1-D, FP16-exact values; ``segments`` from :func:`exponent_segments`), with one host
    synchronisation for all segments: ``(count, total, max_exp, min_exp)``, where the first
    three are the inputs of :func:`shift_from_exponent_stats` (over values of magnitude >=
    2**-14, inf/NaN reading 16, as :func:`fp16_exponents` counts them; ``max_exp`` -15 if none)
    and ``min_exp`` is the float32 exponent of the smallest non-zero magnitude (127 if none).
    """
    if n_seg == 0:
        return []
    biased = (flat.view(torch.int32) >> 23) & 0xFF
    keys = biased.clamp_(_E_LOW, _E_LOW + _EXP_BINS - 1).add_(segments)
    hist = torch.bincount(keys, minlength=n_seg * _EXP_BINS).view(n_seg, _EXP_BINS)
    exps = torch.arange(_EXP_BINS, device=flat.device) + (_E_LOW - 127)
    normal, e_normal = hist[:, _FIRST_NORMAL_BIN:], exps[_FIRST_NORMAL_BIN:]
    count = normal.sum(1)
    total = (normal * e_normal).sum(1)
    top = torch.where(normal > 0, e_normal, -15).amax(1)
    low = torch.where(hist[:, 1:] > 0, exps[1:], 127).amin(1)
    return [tuple(r) for r in torch.stack([count, total, top, low], 1).tolist()]


def _round_into_(x: torch.Tensor, half: torch.Tensor) -> None:
    half.copy_(x)  # float32 -> binary16, round to nearest even (the same cast as .to())
    x.copy_(half)


def round_fp16_(x: torch.Tensor, scale: float = 1.0) -> bool:
    """In-place equivalent of ``ste_round_fp16(x, scale)`` (no flush-to-zero) for the common
    case: if no element of the float32 tensor ``x`` overflows in the scaled domain
    (``|x| >= 65520 / scale``) and none is NaN, overwrite ``x`` with exactly the values that
    :class:`_RoundSTE` computes then and return True; otherwise leave ``x`` untouched and return
    False (the caller falls back to :func:`ste_round_fp16`).

    The write is not recorded by autograd, so the gradient through ``x`` stays that of its
    producer: the straight-through estimator without overflow is the identity. Only use it on
    a fresh result of an op whose backward does not read its own output (convolution, add,
    multiply, GELU, pooling, interpolation, ...): the write bumps ``x``'s version counter, so a
    producer that did save it makes backward raise instead of silently using rounded values.
    """
    if x.numel() == 0:
        return True
    limit = FP16_OVERFLOW / scale
    with torch.no_grad():
        lo_t, hi_t = torch.aminmax(x)
        lo, hi = float(lo_t), float(hi_t)
        if not (hi < limit and lo > -limit):  # overflow, or NaN (comparisons are False)
            return False
        half = torch.empty_like(x, dtype=torch.float16)
        if scale >= 1.0:
            _round_into_(x, half)
            return True
        x.mul_(scale)
        _round_into_(x, half)
        x.mul_(1.0 / scale)
        # descaling an FP16 value by 2**k is exact and FP16-representable unless it exceeds
        # 65504, which |x| <= 65504 rules out (rounding is monotonic and 65504 * scale is an FP16
        # value); only then can the second rounding be skipped
        if max(hi, -lo) > FP16_MAX or scale < 2.0 ** -24:
            _round_into_(x, half)
    return True


class _RoundSTE(torch.autograd.Function):
    """Forward: ``round16(round16(x * scale) / scale)`` with saturation at +-65504 instead of inf.

    Backward (clamp-aware straight-through estimator): identity for elements whose scaled value
    fits binary16; for elements that overflowed in the forward (deployment would produce inf
    there) the task gradient is dropped and replaced by a restoring gradient
    ``push * mean|grad| * sign(x)`` that drives the pre-rounding value back into range. The
    forward is therefore always finite and the gradients never NaN.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, scale: float, ftz: bool, push: float) -> torch.Tensor:  # type: ignore[override]
        limit = FP16_OVERFLOW / scale  # overflow threshold in the true domain
        over = None
        if x.numel():
            lo, hi = torch.aminmax(x.detach())
            if float(hi) >= limit or float(lo) <= -limit:
                over = x.abs() >= limit
        if over is None:
            # no overflow: for scale = 2**s (s >= 0) rounding in the scaled domain, descaling and
            # rounding again equals rounding once in the normal range (power-of-two scaling
            # commutes with rounding); results below 2**-14 may differ by one subnormal step
            # from the deployed double rounding (the training forward skips it for speed)
            q = round_fp16(x, ftz) if scale >= 1.0 else round_fp16(
                round_fp16(x * scale, ftz) * (1.0 / scale), ftz)
        else:
            xs = (x * scale).clamp(-FP16_MAX, FP16_MAX)
            q = round_fp16(xs, ftz)
            if scale != 1.0:
                q = round_fp16(q * (1.0 / scale), ftz)
        ctx.push = push
        ctx.has_over = over is not None
        if over is not None:
            ctx.save_for_backward(over, x)
        return q

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        if not ctx.has_over:
            return grad, None, None, None
        over, x = ctx.saved_tensors
        g = grad.masked_fill(over, 0.0)
        if ctx.push > 0:
            ref = grad.abs().mean()
            g = g + over.to(grad.dtype) * torch.sign(x) * (ctx.push * ref)
        return g, None, None, None


def ste_round_fp16(x: torch.Tensor, scale: float = 1.0, flush_subnormals: bool = False,
                   overflow_push: float = 1.0) -> torch.Tensor:
    """Differentiable FP16 rounding (see :class:`_RoundSTE`); ``scale`` is a power of two giving
    the domain in which the value is stored (the weights-analysis scaled domain), or 1."""
    return _RoundSTE.apply(x, float(scale), bool(flush_subnormals), float(overflow_push))
