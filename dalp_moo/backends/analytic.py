"""``analytic``: the test backend. FP16 numerics emulated on the host, latency from a MAC model.

Fast and dependency-free, for tests and quick searches. Its latency is a simple model
(``overhead_ms + MACs / throughput``), not a measurement of any device; its numerics are the
requested profile's emulation (:func:`dalp_moo.precision.deploy_fp16`).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from dalp_moo.backends.base import Backend, BackendInfo, Deployment, EmulatedDeployment, LatencyReport
from dalp_moo.backends.graph import trace_layers
from dalp_moo.backends.registry import register


@register
class AnalyticBackend(Backend):
    """Host FP16 emulation + MAC-count latency model (``gmacs_per_s``, ``overhead_ms``)."""

    name = "analytic"
    version = "1"
    option_docs = {"gmacs_per_s": "modelled compute rate (GMAC/s)",
                   "overhead_ms": "modelled fixed time per inference (ms)"}

    def __init__(self, device: str = "CPU", gmacs_per_s: float = 20.0, overhead_ms: float = 0.5) -> None:
        super().__init__(device=device)
        self.gmacs_per_s = gmacs_per_s
        self.overhead_ms = overhead_ms

    def info(self) -> BackendInfo:
        return BackendInfo(self.name, self.version, device="host (modelled)", emulated=True,
                           details={"gmacs_per_s": self.gmacs_per_s, "overhead_ms": self.overhead_ms})

    def _report(self, model: nn.Module, input_shape: tuple[int, ...]) -> LatencyReport:
        per_layer = []
        total = self.overhead_ms
        for layer in trace_layers(model, input_shape):
            t = layer.macs / (self.gmacs_per_s * 1e6)
            total += t
            per_layer.append({"name": layer.name, "type": layer.type, "time_ms": t, "macs": layer.macs})
        return LatencyReport(latency_ms=total, method="modelled", per_layer=tuple(per_layer))

    def estimate_latency_ms(self, model: nn.Module, input_shape: tuple[int, ...]) -> float:
        return self._report(model, input_shape).latency_ms

    def deploy(self, model: nn.Module, input_shape: tuple[int, ...], profile: Any = "ieee",
               calibration: torch.Tensor | None = None) -> Deployment:
        from dalp_moo.precision import deploy_fp16

        deployed = deploy_fp16(model.cpu().eval(), profile=profile)
        return EmulatedDeployment(deployed, self._report(model, input_shape))
