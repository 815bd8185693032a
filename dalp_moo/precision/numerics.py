"""Element-level FP16 numerics: rounding, flush-to-zero, the weights-analysis shift, and the
straight-through rounding used during deployment-aligned training.

Rounding uses ``x.to(torch.float16).to(torch.float32)``: vectorised, exact round-to-nearest-even,
IEEE overflow to inf (values >= 65520 in magnitude) and NaN propagation.
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
    conv_max = profile.conv_shift_max if profile is not None else 8
    fc_max = profile.fc_shift_max if profile is not None else 9
    first_rule = profile.first_layer_rule if profile is not None else True
    e = fp16_exponents(weight).flatten()
    valid = e != -15
    count = int(valid.sum())
    if count == 0:
        return 0
    max_exp = int(torch.where(valid, e, torch.full_like(e, -100)).max())
    total = int((e * valid).sum())
    mean_exp = abs(total) // count * (1 if total >= 0 else -1)  # C++ integer division
    shift = min(15 - max_exp, -mean_exp)
    if first_layer and first_rule and shift > 10:
        shift -= 8
    return min(shift, fc_max if kind == "fc" else conv_max)


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
