"""FP16 numerics profiles: every unknown of the deployed numerics is a switch.

``ieee``: weights (after batch-norm folding) and activations stored as IEEE binary16 with
round-to-nearest-even, products accumulated in FP32, overflow to inf and NaN propagation.

``myriadx``: ``ieee`` plus the MYRIAD plugin's "weights analysis" power-of-two rescaling of
hardware (NCE) layers: weights and biases are multiplied by ``2**shift`` before the layer, the
layer output is rounded to FP16 in the scaled domain (where overflow is real) and then descaled
and rounded again. The shift rule (see :func:`dalp_moo.precision.numerics.weights_analysis_shift`)
follows the plugin's source as described in the project reference.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from dalp_moo.errors import ConfigError

FP16_MAX = 65504.0  #: largest finite binary16 value
FP16_MIN_NORMAL = 2.0 ** -14  #: smallest positive normal binary16 value (6.1e-5)
FP16_MIN_SUBNORMAL = 2.0 ** -24  #: smallest positive subnormal binary16 value (6.0e-8)


@dataclass(frozen=True)
class NumericsProfile:
    """How a deployed network computes. All switches are independent.

    Attributes:
        name: profile name (for records).
        weights_analysis: apply the plugin's power-of-two weight/bias rescaling to conv/linear.
        conv_shift_max: upper clamp of the shift for convolutions (plugin: 8).
        fc_shift_max: upper clamp of the shift for fully connected layers (plugin: 9).
        first_layer_rule: first hardware layer with shift > 10 gets shift - 8.
        input_preproc_rule: if the model's input preprocessing (``InputNorm``, when not an
            identity) has every scale >= ``input_preproc_min_scale`` and the first layer's shift
            is < 4, subtract 5 from every layer's shift.
        input_preproc_min_scale: threshold of that rule (plugin: 0.1).
        flush_subnormals: flush-to-zero of subnormal results and weights (|x| < 2**-14 -> 0).
        accumulation: 'fp32' (products summed in FP32, rounded once) or 'fp16' (partial sums of
            ``accum_chunk`` input channels per group, each rounded, summed in FP16).
        accum_chunk: input channels per FP16 partial sum (k products x kernel area).
        eltwise_fp16: element-wise / SHAVE ops (activations, add, mul, resize, pooling,
            normalisation) store FP16 results; False keeps them in FP32 (only hardware layers'
            inputs, weights and outputs are FP16).
        input_fp16: the model input is converted to FP16 (raw digital numbers above 2048 lose
            their low bits); False feeds FP32 inputs to the first op.
    """

    name: str = "ieee"
    weights_analysis: bool = False
    conv_shift_max: int = 8
    fc_shift_max: int = 9
    first_layer_rule: bool = True
    input_preproc_rule: bool = True
    input_preproc_min_scale: float = 0.1
    flush_subnormals: bool = False
    accumulation: str = "fp32"
    accum_chunk: int = 16
    eltwise_fp16: bool = True
    input_fp16: bool = True

    def __post_init__(self) -> None:
        if self.accumulation not in ("fp32", "fp16"):
            raise ConfigError(f"numerics profile {self.name!r}: accumulation must be 'fp32' or "
                              f"'fp16', got {self.accumulation!r}")
        if self.accum_chunk < 1:
            raise ConfigError(f"numerics profile {self.name!r}: accum_chunk must be >= 1, "
                              f"got {self.accum_chunk}")

    def to_dict(self) -> dict:
        """JSON-serialisable form (for records)."""
        return dataclasses.asdict(self)


PROFILES: dict[str, NumericsProfile] = {
    "ieee": NumericsProfile(name="ieee"),
    "myriadx": NumericsProfile(name="myriadx", weights_analysis=True),
}


def get_profile(name: str | NumericsProfile = "myriadx", **overrides: object) -> NumericsProfile:
    """The named profile (``'ieee'`` or ``'myriadx'``) with field ``overrides`` applied.

    A :class:`NumericsProfile` passes through (with overrides applied). Unknown names or fields
    raise :class:`~dalp_moo.errors.ConfigError`.
    """
    if isinstance(name, NumericsProfile):
        base = name
    else:
        if name not in PROFILES:
            raise ConfigError(f"unknown numerics profile {name!r}; choose one of {sorted(PROFILES)}")
        base = PROFILES[name]
    if not overrides:
        return base
    known = {f.name for f in dataclasses.fields(NumericsProfile)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ConfigError(f"unknown numerics profile switch(es) {unknown}; known: {sorted(known)}")
    return dataclasses.replace(base, **overrides)  # type: ignore[arg-type]
