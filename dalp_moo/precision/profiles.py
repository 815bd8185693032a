"""Numerics profiles of a deployed network: every unknown of the deployed numerics is a switch.

``ieee``: weights (after batch-norm folding) and activations stored as IEEE binary16 with
round-to-nearest-even, products accumulated in FP32, overflow to inf and NaN propagation.

``myriadx``: ``ieee`` plus the MYRIAD plugin's "weights analysis" power-of-two rescaling of
hardware (NCE) layers: weights and biases are multiplied by ``2**shift`` before the layer, the
layer output is rounded to FP16 in the scaled domain (where overflow is real) and then descaled
and rounded again. The shift rule (see :mod:`dalp_moo.precision.numerics`) follows the plugin's
source (``weights_analysis.cpp``, OpenVINO 2022.3). Two behaviours of the chip are not public and
are switches:

* ``overflow``: ``"inf"`` (default; IEEE overflow to +-inf, no evidence of saturation was found)
  or ``"saturate"`` (results clamp to +-65504);
* ``resize_mode``: ``"asymmetric"`` (default: the plugin's ``Interp`` stage "supports modes
  align_corners and asymmetric only; other modes are translated to the default ones", so a
  bilinear resize with half-pixel centres runs with asymmetric coordinates,
  ``src = dst * in / out``) or ``"model"`` (the model's own coordinate mode).

``int8``: the quantisation of NNCF's post-training INT8 as the OpenVINO CPU runtime runs it
(symmetric per-channel 8-bit weights, per-tensor 8-bit activations at the inputs of convolutions
and fully connected layers; see :mod:`dalp_moo.precision.int8`): the training-side projection
of a real int8 target (``--backend openvino`` with ``precision="int8"``), measured, not emulated.
The FP16 switches of the other profiles do not apply to it.

``bf16``: bfloat16 storage of weights and activations (8 significant bits, FP32's exponent
range), FP32 accumulation, no weights analysis: the numerics of the OpenVINO CPU plugin with
``INFERENCE_PRECISION_HINT=bf16``. It is the training-side projection of a real bf16 target
(``--backend openvino`` with ``precision="bf16"``), whose deployed figures are measured, not
emulated.

Every profile emulates the converted graph (``fold_input_scale``): ``ov.convert_model`` folds the
input normalisation's multiply into the convolutions that read it (measured with OpenVINO
2026.4.1; the subtraction stays a separate add) and batch norm into the preceding convolution.
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
        input_preproc_rule: the plugin's growing-output rule: unless the preprocessing stage fed
            by the input has a scale < ``input_preproc_min_scale`` (a raw input, or one whose
            scale the converter folded into the first convolution, has none), a first hardware
            layer with more than one input channel per group and a raw shift < 4 (before the
            first-layer correction and the clamp) subtracts 5 from every layer's shift.
        input_preproc_min_scale: threshold of that rule (plugin: 0.1).
        flush_subnormals: flush-to-zero of subnormal results and weights (|x| < 2**-14 -> 0).
        accumulation: 'fp32' (products summed in FP32, rounded once) or 'fp16' (partial sums of
            ``accum_chunk`` input channels per group, each rounded, summed in FP16).
        accum_chunk: input channels per FP16 partial sum (k products x kernel area).
        eltwise_fp16: element-wise / SHAVE ops (activations, add, mul, resize, pooling,
            normalisation) store FP16 results; False keeps them in FP32 (only hardware layers'
            inputs, weights and outputs are FP16).
        input_fp16: the model input is converted to the storage format (raw digital numbers
            above 2048 lose their low bits in FP16, above 256 in BF16); False feeds FP32 inputs
            to the first op.
        format: storage format of weights and activations, ``'fp16'``, ``'bf16'`` or ``'int8'``
            (8-bit integer grids, :mod:`dalp_moo.precision.int8`; no host emulation).
        overflow: ``'inf'`` (IEEE: results beyond the largest finite value become +-inf) or
            ``'saturate'`` (they clamp to +-65504 in FP16). The deployment-aligned training
            forward follows it: see :func:`dalp_moo.precision.aligned_training`.
        resize_mode: coordinates of bilinear resizes without ``align_corners``: ``'model'``
            (the model's, half-pixel) or ``'asymmetric'`` (``src = dst * in / out``, what the
            MYRIAD plugin's Interp stage runs).
        fold_input_scale: emulate the converter folding the input normalisation's multiply
            (``InputNorm.scale``) into the convolutions that read it (their weights are scaled
            per input channel before FP16 storage and weights analysis); only the subtraction
            stays. False emulates the torch module as written.
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
    format: str = "fp16"
    overflow: str = "inf"
    resize_mode: str = "model"
    fold_input_scale: bool = True

    def __post_init__(self) -> None:
        for key, value, choices in (("format", self.format, ("fp16", "bf16", "int8")),
                                    ("overflow", self.overflow, ("inf", "saturate")),
                                    ("resize_mode", self.resize_mode, ("model", "asymmetric"))):
            if value not in choices:
                raise ConfigError(f"numerics profile {self.name!r}: {key} must be one of "
                                  f"{', '.join(repr(c) for c in choices)}, got {value!r}")
        if self.format != "fp16" and self.weights_analysis:
            raise ConfigError(f"numerics profile {self.name!r}: weights_analysis is a MYRIAD "
                              f"(FP16) rule; it cannot be combined with format {self.format!r}")
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
    "myriadx": NumericsProfile(name="myriadx", weights_analysis=True, resize_mode="asymmetric"),
    "bf16": NumericsProfile(name="bf16", format="bf16"),
    "int8": NumericsProfile(name="int8", format="int8", input_fp16=False),
}


def get_profile(name: str | NumericsProfile = "myriadx", **overrides: object) -> NumericsProfile:
    """The named profile (``'ieee'``, ``'myriadx'`` or ``'bf16'``) with field ``overrides`` applied.

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


def check_profile_backend(profile: str | NumericsProfile, backend: str,
                          options: dict | None = None) -> None:
    """Raise :class:`~dalp_moo.errors.ConfigError` (one line) for a numerics profile that does
    not describe the backend's arithmetic: the Myriad X computes in FP16 only (profiles
    ``ieee``/``myriadx``); the ``bf16`` profile projects training onto a real bf16 target, so it
    needs ``--backend openvino`` with ``backend.options.precision = "bf16"``, and that target
    needs the ``bf16`` profile; the same holds for ``int8``."""
    options = options or {}
    prof = get_profile(profile)
    name = prof.name
    precision = str(options.get("precision", "f32")) if backend == "openvino" else None
    if backend == "myriadx" and prof.format != "fp16":
        raise ConfigError(f"train.profile {name!r}: the Myriad X computes in FP16 only; use "
                          "profile 'myriadx' (or 'ieee'), or --backend openvino with "
                          "precision='bf16' for a bf16 target")
    for fmt in ("bf16", "int8"):  # real low-precision targets: profile and deployment go together
        if prof.format == fmt and precision != fmt:
            raise ConfigError(f"train.profile {name!r} needs a deployment in {fmt}: --backend openvino "
                              f"--set 'backend.options={{precision=\"{fmt}\"}}'")
        if precision == fmt and prof.format != fmt:
            raise ConfigError(f"backend.options.precision='{fmt}' deploys in {fmt}: use --profile {fmt} "
                              f"(not {name!r}) so that training is projected onto the same numerics")
