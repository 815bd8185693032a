"""``myriadx``: Intel Movidius Myriad X (NCS2), real device when present, emulator otherwise.

Real device: only OpenVINO 2022.3 with the MYRIAD plugin reports a ``MYRIAD`` device; then the
model is compiled there (``PERF_COUNT``) and measured like the ``openvino`` backend.

Emulator (every output labelled emulated):

- numerics: :func:`dalp_moo.precision.deploy_fp16` with the requested profile;
- latency: an analytical per-layer model of the chip (:class:`MyriadXLatencyModel`). Each op
  of the traced graph is placed on a unit: convolutions, fully connected layers and pooling on
  the NCE; element-wise ops, non-fused activations, resize, concat copies, softmax, reductions on
  the SHAVEs. The plugin's fusions are applied (BN folded; Conv+ReLU/Clamp/LeakyReLU; Conv 3x3
  s1 p1 + Pool 2x2 s2; Pool+ReLU; FC+ReLU; Eltwise+ReLU). Each unit is a roofline
  ``max(ops / compute_roof, bytes / memory_roof)`` with 16-bit activations and weights:

  * NCE: 319.5 Gops/s, 5.68 GB/s (published fit); depthwise/grouped convolutions run as dense
    convolutions (MACs and weights of the dense equivalent); channel utilisation
    ``eff(c) = c / (ceil(c / 32) * 32)`` on input and output channels, blended in with weight
    ``util_blend`` (``1 - b + b * eff_in * eff_out``);
  * NCE pooling: 6 Gops/s, 0.58 GB/s;
  * SHAVEs (our choice, uncalibrated: no public per-layer data): 8 SHAVEs x 700 MHz x 8 FP16
    lanes = 44.8 Gops/s for one request, memory 5.68 GB/s, 0.01 ms launch per layer;
    transcendental activations cost 8 ops per element, bilinear resize 4.

  The published roofs describe one synchronous request under the plugin's default two streams
  (about half the chip); ``streams=1`` gives the request the whole chip (compute roofs x2).
  A fixed per-inference cost (``fixed_ms``, device) is added, plus ``host_ms`` (USB/host) when
  ``include_host``. A layer whose working set (16-bit inputs, outputs, weights) fits in this
  request's share of the 2.5 MB CMX (half under two streams) streams at the CMX roof
  (``cmx_gbps``), larger ones at the DDR roof. Weight/activation DMA of one layer partly hides
  behind the compute of others: ``overlap`` w blends the sum of per-layer rooflines with the
  network-level roofline. ``fixed_ms`` and ``overlap`` are fitted on the four published CNV
  points (:func:`calibrate`; ``util_blend`` stays at its prior 0.5, the CNV widths barely
  exercise it); energy = ``power_w`` x device latency (mJ).
"""

from __future__ import annotations

import dataclasses

import json
import math
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from dalp_moo.backends.base import Backend, BackendInfo, Deployment, EmulatedDeployment, LatencyReport
from dalp_moo.backends.graph import Graph, Op, trace_graph
from dalp_moo.backends.registry import register
from dalp_moo.errors import BackendError
from dalp_moo.log import logger

CALIBRATION_FILE = Path(__file__).with_name("calibration") / "myriadx.json"
_FUSABLE_ACTS = {"relu", "relu6", "clamp", "leaky_relu"}
_TRANSCENDENTAL = {"gelu", "silu", "sigmoid", "tanh", "elu", "mish", "softplus", "exp", "hardswish",
                   "hardsigmoid", "sqrt"}
_warned_emulated = False


@dataclass(frozen=True)
class MyriadXParams:
    """Switches and constants of the Myriad X latency model (roofs in G/s, times in ms, W)."""

    nce_gops: float = 319.5
    nce_gbps: float = 5.68
    pool_gops: float = 6.0
    pool_gbps: float = 0.58
    shave_gops: float = 44.8
    shave_gbps: float = 5.68
    shave_layer_ms: float = 0.01
    cmx_mb: float = 2.5
    cmx_gbps: float = 400.0
    overlap: float = 0.5
    channel_block: int = 32
    util_blend: float = 0.5
    streams: int = 2
    single_stream_speedup: float = 2.0
    fixed_ms: float = 1.9
    host_ms: float = 1.5
    include_host: bool = False
    power_w: float = 1.95
    dense_depthwise: bool = True

    def __post_init__(self) -> None:
        if self.streams not in (1, 2):
            raise BackendError(f"myriadx option streams={self.streams}: expected 1 or 2")
        for k in ("util_blend", "overlap"):
            if not 0.0 <= getattr(self, k) <= 1.0:
                raise BackendError(f"myriadx option {k}={getattr(self, k)}: expected 0..1")
        for k in ("nce_gops", "nce_gbps", "pool_gops", "pool_gbps", "shave_gops", "shave_gbps",
                  "power_w"):
            if getattr(self, k) <= 0:
                raise BackendError(f"myriadx option {k}={getattr(self, k)}: must be > 0")


def _eff(c: int, block: int) -> float:
    return c / (math.ceil(c / block) * block)


def place(graph: Graph) -> list[str]:
    """Unit of each op: 'nce', 'pool', 'shave', or 'fused'/'free' (no time of its own)."""
    unit: list[str] = []

    def single(i: int) -> bool:
        return len(graph.consumers[i]) == 1

    def head(i: int) -> int:
        """Follow fused/folded ops back to the op they are fused into."""
        while unit[i] == "fused":
            i = graph.ops[i].inputs[0]
        return i

    for op in graph.ops:
        p = op.inputs[0] if op.inputs else -1
        k = op.kind
        if k == "reshape":
            u = "free"
        elif k in ("conv", "deconv", "linear"):
            u = "nce"
        elif k == "bn":
            u = "fused" if p >= 0 and single(p) and graph.ops[head(p)].kind in ("conv", "deconv", "linear") \
                and unit[p] in ("nce", "fused") else "shave"
        elif k == "act" and op.attrs.get("fn") in _FUSABLE_ACTS and p >= 0 and single(p) \
                and unit[p] in ("nce", "pool", "fused", "shave") and (
                    graph.ops[head(p)].kind in ("conv", "deconv", "linear", "pool")
                    or (graph.ops[head(p)].kind == "eltwise" and unit[head(p)] == "shave")):
            u = "fused"
        elif k == "pool":
            u = "pool"
            if p >= 0 and single(p) and op.attrs.get("k") == (2, 2) and op.attrs.get("stride") == (2, 2):
                h = graph.ops[head(p)]
                if h.kind == "conv" and h.attrs.get("k") == (3, 3) and h.attrs.get("stride") == (1, 1) \
                        and h.attrs.get("padding") in ((1, 1), "same") and h.attrs.get("groups") == 1:
                    u = "fused"
        else:
            u = "shave"
        unit.append(u)
    return unit


class MyriadXLatencyModel:
    """Analytical per-layer latency model of one Myriad X inference (see module docstring)."""

    def __init__(self, params: MyriadXParams | None = None) -> None:
        self.params = params or MyriadXParams()

    def _mem_gbps(self, nbytes: float, ddr_gbps: float) -> float:
        """Memory roof (GB/s) of a layer: CMX when its working set fits this request's share."""
        p = self.params
        share = p.cmx_mb * (1.0 if p.streams == 1 else 0.5)
        return p.cmx_gbps if nbytes <= share * 1e6 else ddr_gbps

    def _op_time(self, op: Op, unit: str) -> tuple[float, float, float, float, float]:
        """(compute ms, memory ms, launch ms, ops, bytes) of one op on its unit."""
        p = self.params
        speed = p.single_stream_speedup if p.streams == 1 else 1.0
        launch = 0.0
        if unit == "nce":
            a = op.attrs
            if op.kind == "linear":
                cin, cout, macs, w = a["in_features"], a["out_features"], op.macs, op.params
            else:
                cin, cout, groups = a["cin"], a["cout"], a["groups"]
                kh, kw = a["k"]
                macs, w = op.macs, op.params
                if groups > 1 and p.dense_depthwise:
                    macs = op.macs * groups
                    w = cout * cin * kh * kw
            util = (1 - p.util_blend) + p.util_blend * _eff(cin, p.channel_block) * _eff(cout, p.channel_block)
            ops = 2.0 * macs / util
            nbytes = 2.0 * (op.in_numel + op.out_numel + w)
            gops, gbps = p.nce_gops, p.nce_gbps
        elif unit == "pool":
            kh, kw = op.attrs.get("k", (1, 1))
            ops = float(op.out_numel * kh * kw)
            nbytes = 2.0 * (op.in_numel + op.out_numel)
            gops, gbps = p.pool_gops, p.pool_gbps
        elif unit == "shave":
            per = 1.0
            if (op.kind == "act" and op.attrs.get("fn") in _TRANSCENDENTAL) or op.kind in ("softmax", "norm"):
                per = 8.0
            elif op.kind == "resize" and "linear" in str(op.attrs.get("mode")):
                per = 4.0
            elif op.kind == "concat":
                per = 0.0
            ops = per * op.out_numel
            nbytes = 2.0 * (op.in_numel + op.out_numel)
            gops, gbps = p.shave_gops, self._mem_gbps(nbytes, p.shave_gbps)
            launch = p.shave_layer_ms
        else:
            return 0.0, 0.0, 0.0, 0.0, 0.0
        if unit == "nce":
            gbps = self._mem_gbps(nbytes, gbps)
        compute = ops / (gops * 1e9 * speed) * 1e3
        memory = nbytes / (gbps * 1e9) * 1e3
        return compute, memory, launch, ops, nbytes

    def predict(self, graph: Graph) -> LatencyReport:
        """Emulated latency report (ms, mJ) of ``graph`` with per-layer unit placement.

        Per layer ``max(compute, memory)``; with ``overlap`` w the layers' sum is blended with
        the network-level roofline (DMA of one layer hidden behind another's compute):
        ``(1 - w) * sum(max(c_i, m_i)) + w * max(sum c_i, sum m_i)``.
        """
        p = self.params
        units = place(graph)
        rows: list[tuple[Op, str, float, float, float, float, float]] = []
        for op, u in zip(graph.ops, units):
            if u == "free":
                continue
            rows.append((op, u, *self._op_time(op, u)))
        c = np.array([r[2] for r in rows])
        m = np.array([r[3] for r in rows])
        launch = np.array([r[4] for r in rows])
        per = np.maximum(c, m)
        net = max(float(c.sum()), float(m.sum()))
        share = per / per.sum() if per.sum() > 0 else per
        times = (1 - p.overlap) * per + p.overlap * net * share + launch
        per_layer: list[dict[str, Any]] = [
            {"name": "fixed", "type": "overhead", "unit": "device", "time_ms": p.fixed_ms}]
        if p.include_host:
            per_layer.append({"name": "host_usb", "type": "overhead", "unit": "host", "time_ms": p.host_ms})
        for (op, u, ci, mi, _, ops, nbytes), t in zip(rows, times):
            per_layer.append({"name": op.name, "type": op.op, "unit": u, "time_ms": float(t),
                              "compute_ms": ci, "memory_ms": mi, "ops": ops, "bytes": nbytes})
        device_ms = p.fixed_ms + float(times.sum())
        total = device_ms + (p.host_ms if p.include_host else 0.0)
        return LatencyReport(latency_ms=total, spread_ms=0.0, energy_mj=p.power_w * device_ms,
                             method="emulated", per_layer=tuple(per_layer))

    def predict_model(self, model: nn.Module, input_shape: tuple[int, ...]) -> LatencyReport:
        """Trace ``model`` at ``input_shape`` and :meth:`predict`."""
        return self.predict(trace_graph(model, tuple(input_shape)))


def cnv_graphs() -> dict[float, Graph]:
    """Traced graphs of the four published CNV networks (input 1x3x32x32)."""
    from dalp_moo.backends.zoo import cnv

    return {s: trace_graph(cnv(s), (1, 3, 32, 32)) for s in (0.25, 0.5, 1.0, 2.0)}


def fit_params(graphs: list[Graph], measured_ms: list[float], base: MyriadXParams | None = None,
               include_host: bool = False) -> MyriadXParams:
    """Fit ``fixed_ms`` and ``overlap`` (relative least squares) to measured latencies (ms).

    ``fixed_ms`` is solved in closed form for each ``overlap`` on a grid of 101 values.
    """
    base = replace(base or MyriadXParams(), include_host=include_host, fixed_ms=0.0)
    y = np.asarray(measured_ms, dtype=float)
    host = base.host_ms if include_host else 0.0
    best: tuple[float, float, float] | None = None
    for b in np.linspace(0.0, 1.0, 101):
        m = MyriadXLatencyModel(replace(base, overlap=float(b)))
        c = np.array([m.predict(g).latency_ms for g in graphs]) - host  # compute part
        # minimise sum ((f + c + host) / y - 1)^2 over f
        w = 1.0 / y ** 2
        f = float(np.sum(w * (y - c - host)) / np.sum(w))
        f = max(f, 0.0)
        err = float(np.sum(((f + c + host) / y - 1) ** 2))
        if best is None or err < best[0]:
            best = (err, f, float(b))
    assert best is not None
    return replace(base, fixed_ms=best[1], overlap=best[2])


def calibrate(include_host: bool = False) -> dict[str, Any]:
    """Leave-one-out check and full fit on the published CNV latencies.

    Returns per-point LOO predictions, ``loo_median_abs_error`` (fraction) and the parameters
    fitted on all four points.
    """
    from dalp_moo.backends.zoo import CNV_LATENCY

    graphs = cnv_graphs()
    scales = sorted(graphs)
    col = 2 if include_host else 1
    y = [CNV_LATENCY[s][col] for s in scales]
    rows = []
    for i, s in enumerate(scales):
        rest = [j for j in range(len(scales)) if j != i]
        params = fit_params([graphs[scales[j]] for j in rest], [y[j] for j in rest], include_host=include_host)
        pred = MyriadXLatencyModel(params).predict(graphs[s]).latency_ms
        rows.append({"network": f"CNV-s{s}", "mops": 2 * graphs[s].total_macs / 1e6,
                     "published_mops": CNV_LATENCY[s][0], "measured_ms": y[i], "loo_pred_ms": pred,
                     "loo_rel_error": pred / y[i] - 1, "loo_fixed_ms": params.fixed_ms,
                     "loo_overlap": params.overlap})
    full = fit_params([graphs[s] for s in scales], y, include_host=include_host)
    fit_pred = [MyriadXLatencyModel(full).predict(graphs[s]).latency_ms for s in scales]
    return {"points": rows,
            "loo_median_abs_error": float(np.median([abs(r["loo_rel_error"]) for r in rows])),
            "loo_max_abs_error": float(np.max([abs(r["loo_rel_error"]) for r in rows])),
            "fit_rel_errors": [p / m - 1 for p, m in zip(fit_pred, y)],
            "params": asdict(full)}


def load_params(**overrides: Any) -> MyriadXParams:
    """Calibrated parameters (``calibration/myriadx.json``) with ``overrides`` applied."""
    base: dict[str, Any] = {}
    if CALIBRATION_FILE.exists():
        try:
            data = json.loads(CALIBRATION_FILE.read_text())
            base = {k: data["params"][k] for k in ("fixed_ms", "overlap")}
        except (ValueError, KeyError, TypeError) as exc:
            raise BackendError(f"{CALIBRATION_FILE}: corrupt Myriad X calibration ({exc})") from exc
    known = set(MyriadXParams.__dataclass_fields__)
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise BackendError(f"unknown myriadx option(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    return MyriadXParams(**{**base, **overrides})


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
                        "latency": "analytical roofline model calibrated on published CNV points"})
        return BackendInfo(self.name, self.version, device="Myriad X (emulated)", emulated=True,
                           details=details)

    def deploy(self, model: nn.Module, input_shape: tuple[int, ...], profile: Any = "myriadx") -> Deployment:
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
