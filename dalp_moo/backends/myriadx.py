"""``myriadx``: Intel Movidius Myriad X (NCS2), real device when present, emulator otherwise.

Real device: only OpenVINO 2022.3 with the MYRIAD plugin reports a ``MYRIAD`` device; then the
model is compiled there (``PERF_COUNT``) and measured like the ``openvino`` backend.

Emulator (every output labelled emulated):

- numerics: :func:`dalp_moo.precision.deploy_fp16` with the requested profile;
- latency: the calibrated per-stage model of the chip, :mod:`dalp_moo.backends.myriad_latency`
  (NCE / SHAVE costs per layer type, the plugin's fusions, two streams, single-request latency vs
  throughput period, USB/host as a separate term; fitted on published measurements and validated
  leave-one-family-out); energy = ``power_w`` x device latency (mJ).
"""

from __future__ import annotations

import dataclasses
from dataclasses import asdict
from typing import Any

import torch
from torch import nn

from dalp_moo.backends.base import Backend, BackendInfo, Deployment, EmulatedDeployment
from dalp_moo.backends.myriad_latency import (  # noqa: F401  (the latency model, re-exported)
    CALIBRATION_FILE,
    MyriadXLatencyModel,
    MyriadXParams,
    calibrate,
    load_params,
    place,
)
from dalp_moo.backends.registry import register
from dalp_moo.errors import BackendError
from dalp_moo.log import logger

_warned_emulated = False


def real_device_present() -> bool:
    """True when OpenVINO (2022.3 with the MYRIAD plugin) reports a ``MYRIAD`` device."""
    try:
        from dalp_moo.backends.openvino_backend import core

        return any(d.startswith("MYRIAD") for d in core().available_devices)
    except Exception:  # no OpenVINO or no plugin: emulate
        return False


def _warn_emulated() -> None:
    global _warned_emulated
    if not _warned_emulated:
        _warned_emulated = True
        logger.warning("no Myriad X device present: myriadx numerics and latency are EMULATED")


@register
class MyriadXBackend(Backend):
    """Myriad X: real ``MYRIAD`` device via OpenVINO 2022.3, else the emulator.

    Options: any :class:`MyriadXParams` field (``streams``, ``include_host``, ``fixed_ms``...),
    ``emulate=True`` to force the emulator, and for a real device ``runs``/``warmup``.
    """

    name = "myriadx"
    version = "1"
    extra_options = tuple(f.name for f in dataclasses.fields(MyriadXParams))
    extra_options_from = MyriadXParams
    option_docs = {"emulate": "True: always the emulator; False: a real MYRIAD device or an error; "
                              "unset: the device where OpenVINO reports one, else the emulator",
                   "runs": "real device: timed inferences per latency (median)",
                   "warmup": "real device: untimed inferences before the timed ones"}

    def __init__(self, device: str = "MYRIAD", emulate: bool | None = None, runs: int = 50,
                 warmup: int = 10, **options: Any) -> None:
        # the evaluator passes its generic OpenVINO device name (e.g. 'CPU'): only MYRIAD* counts here
        super().__init__(device=device if device.upper().startswith("MYRIAD") else "MYRIAD", **options)
        self.params = load_params(**options)
        self.model = MyriadXLatencyModel(self.params)
        self.real = (not emulate) and real_device_present()
        if emulate is False and not self.real:
            raise BackendError("myriadx option emulate=False: no MYRIAD device reported by OpenVINO "
                               "(needs OpenVINO 2022.3 with the MYRIAD plugin and a stick)")
        self.runs = runs
        self.warmup = warmup
        if not self.real:
            _warn_emulated()

    def info(self) -> BackendInfo:
        from dalp_moo.backends.openvino_backend import device_properties, ov_version

        details: dict[str, Any] = {"openvino_version": ov_version(), "torch_version": torch.__version__,
                                   "latency_model": asdict(self.params)}
        if self.real:
            details.update(device_properties(self.device))
            return BackendInfo(self.name, self.version, device=details.get("FULL_DEVICE_NAME", "MYRIAD"),
                               emulated=False, details=details)
        details.update({"numerics": "dalp_moo.precision.deploy_fp16",
                        "latency": self.model.describe()})
        return BackendInfo(self.name, self.version, device="Myriad X (emulated)", emulated=True,
                           details=details)

    def deploy(self, model: nn.Module, input_shape: tuple[int, ...], profile: Any = "myriadx",
               calibration: torch.Tensor | None = None) -> Deployment:
        """Real device: compile on MYRIAD and measure; else FP16 emulation + latency model.

        The emulation runs the converted graph under the numerics ``profile`` (FP16 profiles
        only: ``myriadx``, with its ``overflow`` and ``resize_mode`` switches, or ``ieee``)."""
        from dalp_moo.precision import check_profile_backend

        check_profile_backend(profile, "myriadx")
        if self.real:
            from dalp_moo.backends.openvino_backend import OpenVINODeployment

            return OpenVINODeployment(model, input_shape, self.device, None, self.runs, self.warmup,
                                      False, "measure", 5e-2, 0, method="measured",
                                      streams=self.params.streams, power_w=self.params.power_w)
        from dalp_moo.precision import deploy_fp16

        gen = torch.Generator().manual_seed(0)
        example = torch.rand(tuple(input_shape), generator=gen)
        deployed = deploy_fp16(model, profile=profile, example_input=example)
        return EmulatedDeployment(deployed, self.model.predict_model(model, input_shape))

    def estimate_latency_ms(self, model: nn.Module, input_shape: tuple[int, ...]) -> float:
        """Emulated batch-1 latency (ms) from the analytical chip model."""
        return self.model.predict_model(model, input_shape).latency_ms
