"""Element-level low-precision numerics: rounding to binary16 (FP16) or bfloat16 (BF16),
overflow semantics, flush-to-zero, the MYRIAD weights-analysis shift rule, and the
straight-through rounding used during deployment-aligned training.

Rounding uses ``x.to(dtype).to(torch.float32)``: vectorised, exact round-to-nearest-even, NaN
propagation and, with ``saturate=False``, IEEE overflow to inf (FP16: magnitudes >= 65520);
``saturate=True`` clamps to the largest finite value instead (+-65504 in FP16).

The deployment-aligned training forward uses two faster equivalents where they apply:
:func:`round_fp16_` rounds a fresh op result in place (the no-overflow branch of
:class:`_RoundSTE`, whose gradient is the identity, so autograd needs no node for it), and
:func:`fp16_exponent_stats` gives the inputs of the weights-analysis shift of many layers in one
pass (one host synchronisation for the whole model instead of several per layer).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from dalp_moo.errors import ConfigError
from dalp_moo.precision.profiles import FP16_MAX, FP16_MIN_NORMAL, NumericsProfile

#: Magnitudes at or above this round to inf in binary16 (65504 + half an ulp of 32).
FP16_OVERFLOW = 65520.0


@dataclass(frozen=True)
class FloatFormat:
    """A storage format: torch dtype, largest finite value, overflow threshold of
    round-to-nearest-even (magnitudes at or above it round to inf), smallest normal value."""

    name: str
    dtype: torch.dtype
    max: float
    overflow: float
    min_normal: float


FORMATS: dict[str, FloatFormat] = {
    "fp16": FloatFormat("fp16", torch.float16, FP16_MAX, FP16_OVERFLOW, FP16_MIN_NORMAL),
    # bfloat16: 8 significant bits, float32's exponent range; max (2 - 2**-7) * 2**127, overflow
    # threshold max + half an ulp = (2 - 2**-8) * 2**127 (still a finite float32)
    "bf16": FloatFormat("bf16", torch.bfloat16, (2.0 - 2.0 ** -7) * 2.0 ** 127,
                        (2.0 - 2.0 ** -8) * 2.0 ** 127, 2.0 ** -126),
}


def fmt_of(profile: NumericsProfile | None) -> FloatFormat:
    """The storage format of ``profile`` (FP16 when None). An ``int8`` profile has none: its
    deployment is NNCF's quantisation run by OpenVINO, not a host emulation."""
    name = "fp16" if profile is None else profile.format
    if name not in FORMATS:
        raise ConfigError(f"numerics profile {profile.name!r} (format {name!r}) has no host emulation: its "
                          "deployed figures come from --backend openvino with precision='int8'")
    return FORMATS[name]


def round_to(x: torch.Tensor, fmt: FloatFormat, flush_subnormals: bool = False,
             saturate: bool = False) -> torch.Tensor:
    """``x`` rounded to the nearest value of ``fmt`` (RNE), returned as float32.

    Overflow gives +-inf, or +-``fmt.max`` with ``saturate``; NaN stays NaN. With
    ``flush_subnormals`` results below ``fmt.min_normal`` in magnitude become (signed) zero.
    """
    if saturate:
        x = x.clamp(-fmt.max, fmt.max)  # NaN stays NaN
    q = x.to(fmt.dtype).to(torch.float32)
    if flush_subnormals:
        q = torch.where(q.abs() < fmt.min_normal, q * 0.0, q)
    return q


def round_fp16(x: torch.Tensor, flush_subnormals: bool = False,
               saturate: bool = False) -> torch.Tensor:
    """``x`` rounded to the nearest binary16 value (RNE), returned as float32.

    Overflow gives +-inf (with ``saturate``: +-65504), NaN stays NaN. With ``flush_subnormals``
    results below 2**-14 in magnitude become (signed) zero.
    """
    return round_to(x, FORMATS["fp16"], flush_subnormals, saturate)


def round_profile(x: torch.Tensor, profile: NumericsProfile, scale: float = 1.0) -> torch.Tensor:
    """``x`` stored under ``profile`` (format, flush-to-zero, overflow semantics), in the domain
    scaled by ``scale`` (a power of two: round ``x * scale``, descale, round again)."""
    fmt = fmt_of(profile)
    ftz, sat = profile.flush_subnormals, profile.overflow == "saturate"
    if scale == 1.0:
        return round_to(x, fmt, ftz, sat)
    return round_to(round_to(x * scale, fmt, ftz, sat) * (1.0 / scale), fmt, ftz, sat)


def fp16_exponents(w: torch.Tensor) -> torch.Tensor:
    """Unbiased binary16 exponents (int32) of ``w`` after conversion to FP16.

    Zeros and subnormals read -15 (biased exponent 0), inf/NaN read 16.
    """
    bits = w.detach().to(torch.float16).contiguous().view(torch.int16).to(torch.int32)
    return ((bits >> 10) & 0x1F) - 15


# --- the MYRIAD plugin's weights analysis (weights_analysis.cpp, OpenVINO 2022.3) ------------
#
# Per hardware layer, in the plugin's stage order:
#   raw   = min(15 - maxExp, -meanExp)    maxExp over all FP16 weights (zeros and subnormals read
#                                          -15); meanExp = integer mean (truncated toward zero)
#                                          of the exponents that are not -15, or -15 when none
#   if first layer and raw < 4 and the model's output is "growing" and the first layer has more
#      than one input channel per group: normalVal = 5 (for this and every later layer)
#   shift = raw - 8 if first layer and raw > 10;  shift = min(shift, 8 conv/deconv | 9 fc)
#   shift -= normalVal;  scale = 2**shift if shift >= 1 else 1 (no scaling)
# "growing" (checkGrowingOutput) is true unless a Power/Convert/ScaleShift stage fed by the input
# has a scale below 0.1.

def raw_shift_from_exponent_stats(count: int, total: int, max_exp: int) -> int:
    """``min(15 - maxExp, -meanExp)`` of a layer from the exponent statistics of its normal
    FP16 weights: their ``count``, the ``total`` of their unbiased exponents and the largest
    one ``max_exp`` (-15 when there is none). A layer with no normal weight (all zero or
    subnormal) reads ``meanExp = -15``, ``maxExp = -15``: raw shift 15."""
    if count == 0:
        return min(15 - max_exp, 15)
    mean_exp = int(total / count)  # C++: static_cast<int>(double sum / count), toward zero
    return min(15 - max_exp, -mean_exp)


def correct_shift(raw: int, kind: str = "conv", first_layer: bool = False,
                  profile: NumericsProfile | None = None) -> int:
    """The plugin's ``correctShift``: the first hardware layer with ``raw > 10`` gets ``raw - 8``
    (``profile.first_layer_rule``); then clamp to ``<= 8`` for conv/deconv and ``<= 9`` for
    fully connected layers (``profile.conv_shift_max`` / ``fc_shift_max``)."""
    conv_max = profile.conv_shift_max if profile is not None else 8
    fc_max = profile.fc_shift_max if profile is not None else 9
    first_rule = profile.first_layer_rule if profile is not None else True
    shift = raw
    if first_layer and first_rule and shift > 10:
        shift -= 8
    return min(shift, fc_max if kind == "fc" else conv_max)


def raw_weights_analysis_shift(weight: torch.Tensor) -> int:
    """The uncorrected shift ``min(15 - maxExp, -meanExp)`` of one layer's weights."""
    e = fp16_exponents(weight).flatten()
    valid = e != -15
    count = int(valid.sum())
    max_exp = int(e.max()) if e.numel() else -15
    return raw_shift_from_exponent_stats(count, int((e * valid).sum()), max_exp)


def weights_analysis_shift(weight: torch.Tensor, kind: str = "conv", first_layer: bool = False,
                           profile: NumericsProfile | None = None) -> int:
    """The MYRIAD plugin's corrected power-of-two shift of one hardware layer's weights, before
    the model-level growing-output rule (:func:`growing_output_offset`) and the ``shift >= 1``
    threshold (:func:`applied_shift`): :func:`correct_shift` of
    :func:`raw_weights_analysis_shift`. All-zero weights give 8 (conv), 9 (fc), 7 (first)."""
    return correct_shift(raw_weights_analysis_shift(weight), kind, first_layer, profile)


def shift_from_exponent_stats(count: int, total: int, max_exp: int, kind: str = "conv",
                              first_layer: bool = False,
                              profile: NumericsProfile | None = None) -> int:
    """:func:`weights_analysis_shift` from exponent statistics (see
    :func:`raw_shift_from_exponent_stats`)."""
    return correct_shift(raw_shift_from_exponent_stats(count, total, max_exp), kind,
                         first_layer, profile)


def growing_output_offset(first_raw: int, first_cin_per_group: int, growing: bool,
                          profile: NumericsProfile | None = None) -> int:
    """``normalVal``: 5 when the model's output is growing, the first hardware layer's raw shift
    is < 4 and it has more than one input channel per group (``profile.input_preproc_rule``);
    else 0. Subtracted from every layer's corrected shift."""
    enabled = profile.input_preproc_rule if profile is not None else True
    return 5 if (enabled and growing and first_raw < 4 and first_cin_per_group > 1) else 0


def applied_shift(corrected: int, offset: int) -> int:
    """The shift the plugin applies: ``corrected - offset`` when that is >= 1 (scale
    ``2**shift``), else 0 (no scaling)."""
    s = corrected - offset
    return s if s >= 1 else 0


def growing_output(preproc_scales: list[float] | None,
                   profile: NumericsProfile | None = None) -> bool:
    """The plugin's ``checkGrowingOutput``: False when the scale of the preprocessing stage fed
    by the network input (``preproc_scales``; None when there is none, e.g. a raw input whose
    only stage is the input Convert with scale 1) has a value below the threshold (0.1)."""
    if preproc_scales is None:
        return True
    threshold = profile.input_preproc_min_scale if profile is not None else 0.1
    return not any(s < threshold for s in preproc_scales)


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


def _round_into_(x: torch.Tensor, tmp: torch.Tensor) -> None:
    tmp.copy_(x)  # float32 -> binary16 / bfloat16, round to nearest even (the same cast as .to())
    x.copy_(tmp)


def round_fp16_(x: torch.Tensor, scale: float = 1.0, fmt: FloatFormat | None = None) -> bool:
    """In-place equivalent of ``ste_round_fp16(x, scale)`` (no flush-to-zero) for the common
    case: if no element of the float32 tensor ``x`` overflows in the scaled domain
    (``|x| >= 65520 / scale`` in FP16, ``fmt.overflow / scale`` in general) and none is NaN,
    overwrite ``x`` with exactly the values that :class:`_RoundSTE` computes then and return
    True; otherwise leave ``x`` untouched and return False (the caller falls back to
    :func:`ste_round_fp16`).

    The write is not recorded by autograd, so the gradient through ``x`` stays that of its
    producer: the straight-through estimator without overflow is the identity. Only use it on
    a fresh result of an op whose backward does not read its own output (convolution, add,
    multiply, GELU, pooling, interpolation, ...): the write bumps ``x``'s version counter, so a
    producer that did save it makes backward raise instead of silently using rounded values.
    """
    fmt = fmt or FORMATS["fp16"]
    if x.numel() == 0:
        return True
    limit = fmt.overflow / scale
    with torch.no_grad():
        lo_t, hi_t = torch.aminmax(x)
        lo, hi = float(lo_t), float(hi_t)
        if not (hi < limit and lo > -limit):  # overflow, or NaN (comparisons are False)
            return False
        tmp = torch.empty_like(x, dtype=fmt.dtype)
        if scale >= 1.0:
            _round_into_(x, tmp)
            return True
        x.mul_(scale)
        _round_into_(x, tmp)
        x.mul_(1.0 / scale)
        # descaling a stored value by 2**k is exact and representable unless it exceeds the
        # format's max, which |x| <= max rules out (rounding is monotonic and max * scale is a
        # value of the format); only then can the second rounding be skipped
        if max(hi, -lo) > fmt.max or scale < 2.0 ** -24:
            _round_into_(x, tmp)
    return True


class _RoundSTE(torch.autograd.Function):
    """Forward: ``round(round(x * scale) / scale)`` in the storage format, saturating at the
    largest finite value instead of overflowing to inf.

    Backward (clamp-aware straight-through estimator): identity for elements whose scaled value
    fits the format; for elements that overflowed in the forward the task gradient is dropped
    (the derivative of the saturation) and, with ``push > 0`` (deployment produces inf there),
    replaced by a restoring gradient ``push * mean|grad| * sign(x)`` that drives the
    pre-rounding value back into range. The forward is therefore always finite and the
    gradients never NaN.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, scale: float, ftz: bool, push: float,  # type: ignore[override]
                fmt_name: str) -> torch.Tensor:
        fmt = FORMATS[fmt_name]
        limit = fmt.overflow / scale  # overflow threshold in the true domain
        over = None
        if x.numel():
            lo, hi = torch.aminmax(x.detach())
            if float(hi) >= limit or float(lo) <= -limit:
                over = x.abs() >= limit
        if over is None:
            # no overflow: for scale = 2**s (s >= 0) rounding in the scaled domain, descaling and
            # rounding again equals rounding once in the normal range (power-of-two scaling
            # commutes with rounding); results below the smallest normal may differ by one
            # subnormal step from the deployed double rounding (the training forward skips it)
            q = round_to(x, fmt, ftz) if scale >= 1.0 else round_to(
                round_to(x * scale, fmt, ftz) * (1.0 / scale), fmt, ftz)
        else:
            q = round_to(x * scale, fmt, ftz, saturate=True)
            if scale != 1.0:
                q = round_to(q * (1.0 / scale), fmt, ftz)
        ctx.push = push
        ctx.has_over = over is not None
        if over is not None:
            ctx.save_for_backward(over, x)
        return q

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        if not ctx.has_over:
            return grad, None, None, None, None
        over, x = ctx.saved_tensors
        g = grad.masked_fill(over, 0.0)
        if ctx.push > 0:
            ref = grad.abs().mean()
            g = g + over.to(grad.dtype) * torch.sign(x) * (ctx.push * ref)
        return g, None, None, None, None


def ste_round_fp16(x: torch.Tensor, scale: float = 1.0, flush_subnormals: bool = False,
                   overflow_push: float = 1.0, fmt: FloatFormat | None = None) -> torch.Tensor:
    """Differentiable rounding to ``fmt`` (FP16 by default; see :class:`_RoundSTE`); ``scale``
    is a power of two giving the domain in which the value is stored (the weights-analysis
    scaled domain), or 1."""
    name = "fp16" if fmt is None else fmt.name
    return _RoundSTE.apply(x, float(scale), bool(flush_subnormals), float(overflow_push), name)
