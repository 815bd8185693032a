"""The deployment-backend interface.

A backend deploys a trained torch model for a fixed input shape and answers two questions: what
does the deployed model output (for on-device mIoU) and how long does one inference take (ms,
plus energy in mJ where modelled). Every result says whether it was measured on real hardware,
modelled analytically, or emulated.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn


@dataclass(frozen=True)
class BackendInfo:
    """Self-description of a backend: name, version, target device and how results arise."""

    name: str
    version: str
    device: str
    emulated: bool  #: True when no real target hardware is used (numerics and/or latency emulated)
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class LatencyReport:
    """Latency of one batch-1 inference.

    ``latency_ms`` is the median (measured) or the model's prediction; ``spread_ms`` the
    inter-quartile range of the measurements (0 when modelled); ``energy_mj`` is None where
    energy is not modelled; ``per_layer`` lists dicts with at least ``name``, ``type`` and
    ``time_ms``.
    """

    latency_ms: float
    spread_ms: float = 0.0
    energy_mj: float | None = None
    method: str = "modelled"  #: 'measured', 'modelled' or 'emulated'
    per_layer: tuple[dict[str, Any], ...] = ()


class Deployment(abc.ABC):
    """A model deployed on a backend for one input shape ``(1, C, H, W)``."""

    @abc.abstractmethod
    def predict(self, batch: torch.Tensor) -> torch.Tensor:
        """Outputs (logits, float32) of the deployed model for a float32 batch ``[N,C,H,W]``."""

    @abc.abstractmethod
    def latency(self) -> LatencyReport:
        """Latency (and energy) of one batch-1 inference on the target."""


class EmulatedDeployment(Deployment):
    """A deployment computed on the host by an emulation module (e.g. ``deploy_fp16``) with a
    latency report from a model of the target."""

    def __init__(self, model: nn.Module, report: LatencyReport) -> None:
        self.model = model
        self._report = report

    def predict(self, batch: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return self.model(batch.float()).float()

    def latency(self) -> LatencyReport:
        return self._report


class Backend(abc.ABC):
    """A named, versioned deployment target. Subclasses register with ``@register``."""

    name: str = ""
    version: str = "0"
    #: options accepted through ``**options`` besides the constructor's named parameters
    extra_options: tuple[str, ...] = ()
    #: dataclass whose fields are those extra options (documented by their ``#:`` comments)
    extra_options_from: type | None = None
    #: documentation of each named constructor option (units, choices); listed by
    #: ``python -m dalp_moo backends --options``
    option_docs: dict[str, str] = {}

    def __init__(self, device: str = "CPU", **options: Any) -> None:
        self.device = device
        self.options = options

    @abc.abstractmethod
    def info(self) -> BackendInfo:
        """Describe the backend, its software versions and whether results are emulated."""

    #: True when :meth:`deploy` needs ``calibration`` inputs (e.g. post-training INT8 quantisation)
    needs_calibration: bool = False

    @abc.abstractmethod
    def deploy(self, model: nn.Module, input_shape: tuple[int, ...], profile: Any = "myriadx",
               calibration: torch.Tensor | None = None) -> Deployment:
        """Deploy an evaluation copy of ``model`` for ``input_shape`` (the model is not changed).

        ``calibration`` (a batch of training inputs) is used by backends that calibrate the
        deployment on data (``needs_calibration``) and ignored by the others.

        ``profile`` is the numerics profile (a name or a
        :class:`~dalp_moo.precision.NumericsProfile` with its switches) used where the backend
        emulates numerics.
        """

    @abc.abstractmethod
    def estimate_latency_ms(self, model: nn.Module, input_shape: tuple[int, ...]) -> float:
        """Predicted batch-1 latency (ms) of ``model`` for ``input_shape`` without measuring."""
