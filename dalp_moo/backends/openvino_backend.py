"""``openvino``: real OpenVINO runtime (default device ``CPU``).

The torch model is converted with ``ov.convert_model`` for a static batch-1 input, saved as an IR
with FP16 weights (``compress_to_fp16=True``, the format the Myriad X consumed), read back and
compiled single-stream with a fixed ``INFERENCE_NUM_THREADS``. A conversion check compares the IR
output with torch FP32 on the example input (``deployment.conversion_error``, relative).

Arithmetic precision (option ``precision``): the CPU plugin's default ``INFERENCE_PRECISION_HINT``
depends on the host (``bf16`` on CPUs with AMX / AVX-512 BF16, ``f32`` elsewhere), so outputs
(on-device mIoU) and latencies would differ by host. The backend therefore compiles with
``precision="f32"`` by default (the same numerics on every host); ``"bf16"`` and ``"f16"``
request those (the plugin may fall back to ``f32`` where the CPU lacks them) and ``"auto"`` keeps
the plugin's default. The precision the plugin actually uses is recorded as
``deployment.inference_precision`` and in ``info().details["inference_precision"]``.

Latency (``latency="measure"``, the default) is measured for real: warm-up, then repeated
synchronous batch-1 inferences (median and inter-quartile spread, ms) and per-layer times from
``PERF_COUNT`` (the plugin reports each executed node's mean time over the inferences of an infer
request, so a fresh request is timed; :meth:`OpenVINODeployment.profile` gives per-node medians
over several fresh requests, used to fit the host model); ``throughput=True`` measures the
amortised time per inference of an asynchronous queue instead. ``latency="model"`` answers from
the fitted kernel-level host latency model of this CPU (:mod:`dalp_moo.backends.host_model`; for
the inference precision in use), which is also what :meth:`estimate_latency_ms` uses.
"""

from __future__ import annotations

import copy
import json
import os
import tempfile
import time
import warnings
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from dalp_moo.backends.base import Backend, BackendInfo, Deployment, LatencyReport
from dalp_moo.backends.registry import register
from dalp_moo.errors import BackendError
from dalp_moo.log import logger


def _ov() -> Any:
    try:
        import openvino as ov
    except ImportError as exc:  # pragma: no cover - openvino is a dependency
        raise BackendError(f"OpenVINO is not installed ({exc}); pip install openvino") from exc
    return ov


@lru_cache(maxsize=1)
def core() -> Any:
    """The process-wide ``ov.Core`` (``openvino.runtime.Core`` on 2022.x)."""
    ov = _ov()
    if hasattr(ov, "Core"):
        return ov.Core()
    from openvino.runtime import Core  # OpenVINO 2022.x

    return Core()


def ov_version() -> str:
    """Version string of the installed OpenVINO runtime."""
    ov = _ov()
    v = getattr(ov, "__version__", None)
    if v is None:  # 2022.x
        from openvino.runtime import get_version

        v = get_version()
    return str(v)


def check_device(device: str) -> None:
    """Raise :class:`BackendError` (listing the available ones) if ``device`` is absent."""
    devices = list(core().available_devices)
    base = device.split(".")[0].upper()
    if device in devices or base in ("AUTO", "MULTI", "HETERO") or (
            "." not in device and any(d.split(".")[0] == device for d in devices)):
        return
    raise BackendError(f"OpenVINO device {device!r} is not available on this host; "
                       f"available: {', '.join(devices) or 'none'}")


def device_properties(device: str) -> dict[str, str]:
    """FULL_DEVICE_NAME, default inference precision and capabilities of an OpenVINO device."""
    c = core()
    out: dict[str, str] = {}
    base = device.split(".")[0]
    for key in ("FULL_DEVICE_NAME", "INFERENCE_PRECISION_HINT", "OPTIMIZATION_CAPABILITIES",
                "DEVICE_ARCHITECTURE"):
        try:
            out[key] = str(c.get_property(base, key))
        except Exception:  # property not offered by this plugin / version
            continue
    return out


#: values of the ``precision`` option -> INFERENCE_PRECISION_HINT (None: plugin default); ``int8``
#: quantises the model with NNCF post-training quantisation (:func:`quantize_int8`) and runs what
#: stays in floating point in f32
PRECISIONS: dict[str, str | None] = {"f32": "f32", "bf16": "bf16", "f16": "f16", "auto": None, "int8": "f32"}


def check_precision(precision: str, device: str = "CPU") -> None:
    """Raise :class:`BackendError` for an unknown ``precision`` or one the device cannot be asked
    for; ``"bf16"`` needs ``BF16`` among the device's OPTIMIZATION_CAPABILITIES (the CPU plugin
    lists it on CPUs with AVX512_BF16 or AMX) so that bf16 figures are real bf16 arithmetic."""
    if precision not in PRECISIONS:
        raise BackendError(f"openvino option precision={precision!r}: expected one of "
                           f"{', '.join(repr(p) for p in PRECISIONS)}")
    if precision in ("bf16", "f16") and "INFERENCE_PRECISION_HINT" not in _supported(device) \
            and hasattr(_ov(), "convert_model"):
        raise BackendError(f"openvino option precision={precision!r}: device {device!r} does not "
                           "support INFERENCE_PRECISION_HINT; use 'f32' or 'auto'")
    if precision == "bf16":
        caps = device_properties(device).get("OPTIMIZATION_CAPABILITIES", "")
        require_bf16(caps, device)
    if precision == "int8":
        caps = str(device_properties(device).get("OPTIMIZATION_CAPABILITIES", ""))
        if "INT8" not in caps:
            raise BackendError(f"openvino option precision='int8': device {device!r} has no int8 "
                               f"inference (OPTIMIZATION_CAPABILITIES: {caps or 'none'}); use precision='f32'")
        _nncf()


def _nncf() -> Any:
    try:
        import nncf
    except ImportError as exc:
        raise BackendError(f"openvino option precision='int8' needs NNCF ({exc}); "
                           "pip install 'dalp_moo[int8]'") from exc
    return nncf


def quantize_int8(ov_model: Any, calibration: np.ndarray) -> Any:
    """NNCF post-training INT8 quantisation of ``ov_model`` (symmetric per-channel weights,
    per-tensor activations from the statistics of ``calibration``, a batch of inputs fed one
    at a time; fast bias correction), as ``nncf.quantize`` does by default."""
    nncf = _nncf()
    items = [np.ascontiguousarray(calibration[i:i + 1], dtype=np.float32) for i in range(len(calibration))]
    if not items:
        raise BackendError("openvino precision='int8': the calibration set is empty")
    import contextlib
    import io
    import logging as _logging

    nncf_logger = _logging.getLogger("nncf")
    level = nncf_logger.level
    nncf_logger.setLevel(_logging.WARNING)  # its INFO lines and progress bars would flood a search
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            return nncf.quantize(ov_model, nncf.Dataset(items), subset_size=len(items))
    finally:
        nncf_logger.setLevel(level)


def quantised_ops(compiled: Any) -> dict[str, int]:
    """Convolutions (and matrix multiplications) of a compiled model by runtime precision, e.g.
    ``{"u8": 17}``: which layers the plugin really runs in int8."""
    counts: dict[str, int] = {}
    for op in compiled.get_runtime_model().get_ordered_ops():
        info = op.get_rt_info()
        layer = info["layerType"].astype(str) if "layerType" in info else ""
        if layer in ("Convolution", "Deconvolution", "FullyConnected", "MatMul"):
            prec = info["runtimePrecision"].astype(str) if "runtimePrecision" in info else "unknown"
            counts[prec] = counts.get(prec, 0) + 1
    return counts


def require_bf16(capabilities: str | list[str], device: str = "CPU") -> None:
    """Raise :class:`BackendError` (one line) unless ``BF16`` is among the OpenVINO device's
    OPTIMIZATION_CAPABILITIES (a list, or its string form)."""
    caps = capabilities if isinstance(capabilities, list) else [
        c.strip(" '\"") for c in str(capabilities).strip("[]").split(",")]
    if "BF16" not in caps:
        listed = ", ".join(c for c in caps if c) or "none"
        raise BackendError(f"openvino option precision='bf16': device {device!r} has no bf16 "
                           f"arithmetic (OPTIMIZATION_CAPABILITIES: {listed}; needs AVX512_BF16 "
                           "or AMX); use precision='f32'")


def _type_name(v: Any) -> str:
    """'f32' / 'bf16' / 'f16' for an OpenVINO element type (or its string form)."""
    name = v.get_type_name() if hasattr(v, "get_type_name") else str(v)
    if "'" in name:  # "<Type: 'bfloat16'>"
        name = name.split("'")[1]
    return {"float32": "f32", "bfloat16": "bf16", "float16": "f16", "FP32": "f32", "BF16": "bf16",
            "FP16": "f16"}.get(name, name)


def compiled_precision(compiled: Any) -> str:
    """The inference precision a compiled model runs at ('f32', 'bf16', 'f16'; 'unknown')."""
    try:
        return _type_name(compiled.get_property("INFERENCE_PRECISION_HINT"))
    except Exception:  # plugin without the property
        return "unknown"


@lru_cache(maxsize=16)
def effective_precision(device: str, precision: str) -> str:
    """The precision the plugin uses for ``precision`` on ``device`` (compiles a 1-op probe;
    ``int8``: 'int8', the quantised layers' precision)."""
    if precision == "int8":
        return "int8"
    ov = _ov()
    if not hasattr(ov, "convert_model"):  # 2022.x
        return "unknown"
    probe = ov.convert_model(nn.Conv2d(1, 1, 1), example_input=torch.zeros(1, 1, 2, 2))
    cfg = {k: v for k, v in compile_config(device, 1, perf_count=False, precision=precision).items()
           if k == "INFERENCE_PRECISION_HINT"}
    return compiled_precision(core().compile_model(probe, device.split(".")[0], cfg))


def _plugin_name(device: str) -> str:
    """'CPU' for 'CPU', 'CPU.0'; 'MULTI' for 'MULTI:CPU,GPU'."""
    return device.split(":")[0].split(".")[0]


def _supported(device: str) -> set[str]:
    """Properties the device's plugin accepts (``SUPPORTED_PROPERTIES``).

    OpenVINO raises ``RuntimeError`` for a device it cannot query; that is a
    :class:`BackendError` (one line) rather than a silent empty set, which would drop the
    threads / precision / profiling options without a word.
    """
    name = _plugin_name(device)
    try:
        return set(core().get_property(name, "SUPPORTED_PROPERTIES"))
    except RuntimeError as exc:
        lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
        detail = lines[-1] if lines else type(exc).__name__
        raise BackendError(f"OpenVINO device {device!r}: cannot read its supported properties ({detail})") from exc


_WARNED_OPTIONS: set[tuple[str, str]] = set()


def _not_applied(device: str, option: str, why: str) -> None:
    if (device, option) not in _WARNED_OPTIONS:
        _WARNED_OPTIONS.add((device, option))
        logger.warning("OpenVINO device %s does not accept %s: %s", device, option, why)


def compile_config(device: str, threads: int | None, throughput: bool = False,
                   perf_count: bool = True, streams: int | None = 1,
                   precision: str = "f32") -> dict[str, Any]:
    """Compile options the device supports: ``streams`` (None: plugin default), threads, PERF_COUNT
    and INFERENCE_PRECISION_HINT (``precision``: see :data:`PRECISIONS`)."""
    sup = _supported(device)
    legacy = not hasattr(_ov(), "convert_model")
    cfg: dict[str, Any] = {}
    if "PERF_COUNT" in sup or legacy:
        cfg["PERF_COUNT"] = ("YES" if legacy else True) if perf_count else ("NO" if legacy else False)
    if "PERFORMANCE_HINT" in sup:
        cfg["PERFORMANCE_HINT"] = "THROUGHPUT" if throughput else "LATENCY"
    if not throughput and streams and "NUM_STREAMS" in sup:
        cfg["NUM_STREAMS"] = int(streams)
    if threads and "INFERENCE_NUM_THREADS" in sup:
        cfg["INFERENCE_NUM_THREADS"] = int(threads)
    elif threads and not legacy:
        _not_applied(device, "INFERENCE_NUM_THREADS", f"threads={threads} is not applied (plugin default)")
    hint = PRECISIONS.get(precision)
    if hint is not None and "INFERENCE_PRECISION_HINT" in sup:
        cfg["INFERENCE_PRECISION_HINT"] = hint
    elif hint is not None and not legacy:
        _not_applied(device, "INFERENCE_PRECISION_HINT", f"precision={precision!r} is not applied (plugin default)")
    return cfg


def convert(model: nn.Module, example: torch.Tensor) -> Any:
    """torch module -> ``ov.Model`` with a static input of ``example.shape``.

    Uses ``ov.convert_model``; on OpenVINO 2022.x (no ``convert_model``) goes through ONNX.
    """
    ov = _ov()
    model = model.eval()
    if hasattr(ov, "convert_model"):
        with warnings.catch_warnings():  # torch.jit tracing deprecation notices
            warnings.simplefilter("ignore", DeprecationWarning)
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            return ov.convert_model(model, example_input=example, input=[tuple(example.shape)])
    with tempfile.TemporaryDirectory() as tmp:  # OpenVINO 2022.x: via ONNX
        path = os.path.join(tmp, "model.onnx")
        torch.onnx.export(model, (example,), path, opset_version=11)
        return core().read_model(path)


def save_ir(ov_model: Any, path: str | Path) -> Path:
    """Write ``ov_model`` as an IR (``.xml`` + ``.bin``) with FP16 weights; returns the .xml path."""
    ov = _ov()
    path = Path(path)
    if path.suffix != ".xml":
        path = path.with_suffix(".xml")
    path.parent.mkdir(parents=True, exist_ok=True)
    if hasattr(ov, "save_model"):
        ov.save_model(ov_model, str(path), compress_to_fp16=True)
    else:  # 2022.x: the plugin converts weights to FP16 itself
        from openvino.runtime import serialize

        serialize(ov_model, str(path), str(path.with_suffix(".bin")))
    return path


def _ms(td: Any) -> float:
    return td.total_seconds() * 1e3 if hasattr(td, "total_seconds") else float(td) / 1e3


def relative_error(out: np.ndarray, ref: np.ndarray) -> float:
    """max |out - ref| / max |ref| (0 if both are zero)."""
    scale = float(np.max(np.abs(ref))) if ref.size else 0.0
    diff = float(np.max(np.abs(out - ref))) if ref.size else 0.0
    return diff / scale if scale > 0 else diff


class OpenVINODeployment(Deployment):
    """A model compiled by OpenVINO for one batch-1 input shape.

    ``conversion_error`` is the relative error of the IR output against torch FP32 on the
    example input; ``conversion_ok`` is whether it is within ``tolerance``;
    ``inference_precision`` the precision the plugin computes in ('f32', 'bf16', 'f16').
    """

    def __init__(self, model: nn.Module, input_shape: tuple[int, ...], device: str,
                 threads: int | None, runs: int, warmup: int, throughput: bool, latency: str,
                 tolerance: float, seed: int, host_model: Any | None = None,
                 method: str = "measured", streams: int | None = 1,
                 power_w: float | None = None, clock: str = "wall", precision: str = "f32",
                 passes: int = 1, calibration: torch.Tensor | None = None) -> None:
        self.input_shape = tuple(int(s) for s in input_shape)
        self.passes = max(1, int(passes))
        self.device = device
        self.threads = threads
        self.runs = runs
        self.warmup = warmup
        self.throughput = throughput
        self.latency_mode = latency
        self.tolerance = tolerance
        self.method = method
        self.clock = clock
        self.streams = streams
        self.power_w = power_w
        self.precision = precision
        self._host_model = host_model
        self._torch_model = copy.deepcopy(model).cpu().float().eval()
        gen = torch.Generator().manual_seed(seed)
        example = torch.rand(self.input_shape, generator=gen)
        with torch.no_grad():
            ref = self._torch_model(example).numpy()
        self._tmp = tempfile.TemporaryDirectory(prefix="dalp_ir_")
        xml = save_ir(convert(self._torch_model, example), Path(self._tmp.name) / "model.xml")
        self.ov_model = core().read_model(str(xml))
        self.config = compile_config(device, threads, streams=streams, precision=precision)
        self.compiled = core().compile_model(self.ov_model, device, self.config)
        self.inference_precision = compiled_precision(self.compiled)
        self._request = self.compiled.create_infer_request()
        out = self._infer(self._request, example.numpy())
        self.conversion_error = relative_error(out, ref)  # of the FP32 IR (before any quantisation)
        self.conversion_ok = self.conversion_error <= tolerance
        if not self.conversion_ok:
            logger.warning("OpenVINO IR output differs from torch FP32: relative error %.3g > %.3g",
                           self.conversion_error, tolerance)
        #: runtime precision of the convolutions -> count (int8: which layers really run in int8)
        self.quantised_ops: dict[str, int] = {}
        if precision == "int8":
            if calibration is None or len(calibration) == 0:
                raise BackendError("openvino precision='int8' needs calibration inputs (a batch of "
                                   "training tiles) to quantise the model")
            self.ov_model = quantize_int8(self.ov_model, calibration.detach().cpu().float().numpy())
            self.compiled = core().compile_model(self.ov_model, device, self.config)
            self.inference_precision = "int8"
            self.quantised_ops = quantised_ops(self.compiled)
            self._request = self.compiled.create_infer_request()
        self._batch_compiled: dict[int, Any] = {}
        self._report: LatencyReport | None = None
        #: the individual timed runs (wall ms, process CPU ms) of the last synchronous :meth:`measure`
        self.last_times_ms: np.ndarray = np.empty(0)
        self.last_cpu_times_ms: np.ndarray = np.empty(0)

    @staticmethod
    def _infer(request: Any, x: np.ndarray) -> np.ndarray:
        request.infer({0: np.ascontiguousarray(x, dtype=np.float32)})
        return np.array(request.get_output_tensor(0).data, copy=True)

    def save_ir(self, path: str | Path) -> Path:
        """Save the deployed IR (FP16 weights) as ``path`` (.xml + .bin); returns the .xml path."""
        return save_ir(self.ov_model, path)

    def _compiled_for(self, n: int) -> Any:
        if n == self.input_shape[0]:
            return self.compiled
        if n not in self._batch_compiled:
            m = self.ov_model.clone()
            m.reshape([n, *self.input_shape[1:]])
            self._batch_compiled = {n: core().compile_model(m, self.device, compile_config(
                self.device, self.threads, perf_count=False, streams=self.streams,
                precision=self.precision))}
        return self._batch_compiled[n]

    def predict(self, batch: torch.Tensor, chunk: int = 16) -> torch.Tensor:
        """Logits (float32) of the compiled model for a float32 batch ``[N, C, H, W]``."""
        if tuple(batch.shape[1:]) != self.input_shape[1:]:
            raise BackendError(f"input shape {tuple(batch.shape)} does not match the deployed "
                               f"shape (N, {', '.join(map(str, self.input_shape[1:]))})")
        x = batch.detach().cpu().float().numpy()
        outs = []
        for i in range(0, x.shape[0], chunk):
            part = x[i:i + chunk]
            req = self._compiled_for(part.shape[0]).create_infer_request()
            outs.append(self._infer(req, part))
        return torch.from_numpy(np.concatenate(outs, axis=0))

    @staticmethod
    def _profiling(req: Any) -> list[Any]:
        return list(req.profiling_info if hasattr(req, "profiling_info") else req.get_profiling_info())

    def measure(self) -> LatencyReport:
        """Measure batch-1 latency (ms) now: median and IQR, per-layer PERF_COUNT times.

        The timed runs use a fresh infer request, so the per-layer times (the plugin's mean per
        node over the request's inferences) cover this request's warm-up and timed runs only.
        With ``passes`` > 1 the runs are timed that many times and the pass with the lowest median
        is reported (a host whose speed changes from second to second, e.g. a virtual machine
        sharing its cores: ``benchmarks/host_repeatability.py``).
        """
        x = np.random.default_rng(0).random(self.input_shape, dtype=np.float32)
        if self.throughput:
            return self._measure_throughput(x)
        reports = [self._measure_pass(x) for _ in range(self.passes)]
        best = min(range(len(reports)), key=lambda i: reports[i][0].latency_ms)
        report, self.last_times_ms, self.last_cpu_times_ms = reports[best]
        return report

    def _measure_pass(self, x: np.ndarray) -> tuple[LatencyReport, np.ndarray, np.ndarray]:
        """One pass of :meth:`measure`: the report and the timed runs (wall ms, process CPU ms)."""
        req = self.compiled.create_infer_request()
        req.infer({0: x})
        for _ in range(self.warmup):
            req.infer()
        times = np.empty(self.runs)
        cpu_times = np.empty(self.runs)
        for i in range(self.runs):
            c0 = time.process_time()
            t0 = time.perf_counter()
            req.infer()
            times[i] = (time.perf_counter() - t0) * 1e3
            cpu_times[i] = (time.process_time() - c0) * 1e3
        q1, med, q3 = np.percentile(cpu_times if self.clock == "cpu" else times, [25, 50, 75])
        per_layer = tuple({"name": p.node_name, "type": str(p.node_type), "exec_type": str(p.exec_type),
                           "time_ms": _ms(p.real_time)} for p in self._profiling(req))
        return LatencyReport(latency_ms=float(med), spread_ms=float(q3 - q1), method=self.method,
                             energy_mj=self.power_w * float(med) if self.power_w else None,
                             per_layer=per_layer), times, cpu_times

    def profile(self, requests: int = 16, runs: int = 1) -> list[dict[str, Any]]:
        """Per executed node: median over ``requests`` fresh infer requests of its mean time (ms)
        over ``runs`` inferences of the request (the plugin reports a per-request running mean;
        node times are wall-clock, the median keeps out inferences preempted on a shared host).

        Each dict has ``name``, ``type`` (executed layer type, e.g. ``Convolution``),
        ``primitive`` (kernel implementation, e.g. ``brgconv_avx512_1x1_f32``), ``out_shape``,
        ``in_shapes`` (static input shapes, weights included) and ``time_ms``; in execution order.
        """
        x = np.random.default_rng(0).random(self.input_shape, dtype=np.float32)
        samples: dict[str, list[float]] = {}
        for _ in range(max(1, requests)):
            req = self.compiled.create_infer_request()
            for _ in range(max(1, runs)):
                req.infer({0: x})
            for p in self._profiling(req):
                samples.setdefault(p.node_name, []).append(_ms(p.real_time))
        out = []
        for op in self.compiled.get_runtime_model().get_ordered_ops():
            name = op.get_friendly_name()
            if name not in samples:
                continue
            info = op.get_rt_info()
            rt = {k: info[k].astype(str) if k in info else "" for k in ("layerType", "primitiveType")}
            in_shapes = [list(i.get_partial_shape().to_shape()) if i.get_partial_shape().is_static else None
                         for i in op.inputs()]
            out_shapes = [list(o.get_partial_shape().to_shape()) if o.get_partial_shape().is_static else None
                          for o in op.outputs()]
            out.append({"name": name, "type": rt["layerType"], "primitive": rt["primitiveType"],
                        "out_shape": out_shapes[0] if out_shapes else None, "in_shapes": in_shapes,
                        "time_ms": float(np.median(samples[name]))})
        return out

    def _measure_throughput(self, x: np.ndarray) -> LatencyReport:
        ov = _ov()
        queue_cls = getattr(ov, "AsyncInferQueue", None)
        if queue_cls is None:  # OpenVINO 2022.x
            from openvino.runtime import AsyncInferQueue as queue_cls
        compiled = core().compile_model(self.ov_model, self.device, compile_config(
            self.device, self.threads, throughput=True, perf_count=False, precision=self.precision))
        jobs = max(1, int(compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS")))
        queue = queue_cls(compiled, jobs)
        for _ in range(max(self.warmup, jobs)):
            queue.start_async({0: x})
        queue.wait_all()
        blocks = 5
        per_block = max(jobs, self.runs // blocks)
        per_inf = np.empty(blocks)
        for b in range(blocks):
            t0 = time.perf_counter()
            for _ in range(per_block):
                queue.start_async({0: x})
            queue.wait_all()
            per_inf[b] = (time.perf_counter() - t0) * 1e3 / per_block
        q1, med, q3 = np.percentile(per_inf, [25, 50, 75])
        return LatencyReport(latency_ms=float(med), spread_ms=float(q3 - q1), method=self.method)

    def latency(self) -> LatencyReport:
        """Measured (``latency="measure"``) or host-model (``"model"``) batch-1 latency, cached."""
        if self._report is None:
            if self.latency_mode == "model":
                assert self._host_model is not None
                ms, per_layer = self._host_model.predict_graph_of(self._torch_model, self.input_shape)
                self._report = LatencyReport(latency_ms=ms, method="modelled", per_layer=per_layer)
            else:
                self._report = self.measure()
        return self._report


@register
class OpenVINOBackend(Backend):
    """Real OpenVINO runtime; options: ``runs``, ``warmup``, ``threads``, ``throughput``,
    ``latency`` ('measure' | 'model'), ``tolerance`` (relative conversion error), ``seed``,
    ``clock``: 'wall' (default) or 'cpu' (process CPU time per inference; with ``threads=1`` the
    inference runs in the calling thread, so this is the latency without the time the process
    waited for a core: robust on a host shared with other jobs), ``precision``: 'f32' (default,
    the same numerics on every host), 'bf16', 'f16' or 'auto' (the plugin's host-dependent
    default) for INFERENCE_PRECISION_HINT, ``passes``: timing passes per measurement, the one
    with the lowest median reported (default 1; 20 made latencies repeat to a few per cent on a
    virtual machine whose single measurements vary by about 20 %)."""

    name = "openvino"
    version = "1"
    option_docs = {
        "runs": "timed inferences per timing pass (the median is the latency)",
        "warmup": "untimed inferences before the timed ones",
        "threads": "inference threads (INFERENCE_NUM_THREADS; None = the plugin's default)",
        "throughput": "report the throughput period (ms per inference, plugin's throughput mode) "
                      "instead of the batch-1 latency",
        "latency": "'measure' (time each candidate) or 'model' (this CPU's fitted kernel-level latency "
                   "model, no timing)",
        "tolerance": "largest relative difference of the IR's FP32 output from torch's before a warning",
        "seed": "seed of the example input of the conversion check",
        "clock": "'wall' or 'cpu' (process CPU time per inference; needs threads=1, no throughput)",
        "precision": "INFERENCE_PRECISION_HINT: 'f32' (the same numerics on every host), 'bf16', 'f16' or "
                     "'auto' (the plugin's host-dependent default); 'int8': NNCF post-training INT8 "
                     "quantisation from calibration tiles (needs the int8 extra), the rest in f32",
        "passes": "timing passes per latency, the one with the lowest median reported (about 20 on a "
                  "host whose speed varies, e.g. a virtual machine)",
    }

    def __init__(self, device: str = "CPU", runs: int = 50, warmup: int = 10, threads: int | None = 1,
                 throughput: bool = False, latency: str = "measure", tolerance: float = 1e-2,
                 seed: int = 0, clock: str = "wall", precision: str = "f32", passes: int = 1,
                 **options: Any) -> None:
        super().__init__(device=device, **options)
        if latency not in ("measure", "model"):
            raise BackendError(f"openvino option latency={latency!r}: expected 'measure' or 'model'")
        if runs < 1 or warmup < 0:
            raise BackendError(f"openvino options runs={runs}, warmup={warmup}: need runs >= 1, warmup >= 0")
        if not isinstance(passes, int) or isinstance(passes, bool) or passes < 1:
            raise BackendError(f"openvino option passes={passes!r}: need an integer >= 1")
        self.passes = passes
        if clock not in ("wall", "cpu"):
            raise BackendError(f"openvino option clock={clock!r}: expected 'wall' or 'cpu'")
        if clock == "cpu" and (threads != 1 or throughput):
            raise BackendError("openvino option clock='cpu' needs threads=1 and throughput=False "
                               "(CPU time equals latency only for one inference thread)")
        check_device(device)
        check_precision(precision, device)
        self.precision = precision
        self.clock = clock
        self.runs = runs
        self.warmup = warmup
        self.threads = threads
        self.throughput = throughput
        self.latency = latency
        self.tolerance = tolerance
        self.seed = seed
        self._host_model: Any | None = None
        self._f32_estimator: Any | None = None

    def host_model(self) -> Any:
        """The fitted host latency model for this device, thread count and inference precision."""
        if self._host_model is None:
            from dalp_moo.backends.host_model import HostLatencyModel

            self._host_model = HostLatencyModel.load(
                threads=self.threads, device=self.device.split(".")[0],
                precision=effective_precision(self.device, self.precision))
        return self._host_model

    def host_calibration(self) -> dict[str, str]:
        """Which host-latency calibration this backend uses: file and the CPU it was fitted on
        (this CPU model's when there is one; see :func:`~dalp_moo.backends.host_model.calibration_path`)."""
        from dalp_moo.backends.host_model import calibration_path, host_id

        path = calibration_path(self.threads, self.device.split(".")[0],
                                effective_precision(self.device, self.precision))
        if not path.exists():
            return {"file": "none", "fitted_on": "", "this_cpu": host_id()}
        try:
            fitted_on = str(json.loads(path.read_text()).get("meta", {}).get("host", ""))
        except ValueError:
            fitted_on = "unreadable"
        return {"file": str(path), "fitted_on": fitted_on, "this_cpu": host_id()}

    def info(self) -> BackendInfo:
        props = device_properties(self.device)
        default = props.get("INFERENCE_PRECISION_HINT")
        used = effective_precision(self.device, self.precision)
        details: dict[str, Any] = {
            "openvino_version": ov_version(), "torch_version": torch.__version__,
            "available_devices": list(core().available_devices), **props,
            "threads": self.threads, "streams": 1, "runs": self.runs, "warmup": self.warmup,
            "passes": self.passes,
            "throughput": self.throughput, "latency": self.latency, "ir_weights": "FP16",
            "clock": self.clock, "precision": self.precision, "inference_precision": used,
            "plugin_default_precision": _type_name(default) if default else "unknown",
        }
        if default is not None:  # the hint the backend compiles with, not the plugin's default
            details["INFERENCE_PRECISION_HINT"] = "f32" if self.precision == "int8" else used
        if self.precision == "int8":
            details["int8"] = {"quantiser": f"NNCF {_nncf().__version__} post-training quantisation "
                                            "(nncf.quantize defaults: symmetric per-channel weights, per-tensor "
                                            "activations, fast bias correction)",
                               "calibration": "training tiles handed to deploy()"}
        details["host_latency_calibration"] = self.host_calibration()
        return BackendInfo(self.name, self.version, device=props.get("FULL_DEVICE_NAME", self.device),
                           emulated=False, details=details)

    @property
    def needs_calibration(self) -> bool:
        """True when :meth:`deploy` needs calibration inputs (precision ``int8``)."""
        return self.precision == "int8"

    def deploy(self, model: nn.Module, input_shape: tuple[int, ...], profile: Any = "ieee",
               calibration: torch.Tensor | None = None) -> OpenVINODeployment:
        """Convert, save/reload as FP16-weight IR and compile. The numerics are the runtime's
        own (measured); the ``bf16`` profile (training projected onto bf16) needs precision
        ``"bf16"`` (see :func:`dalp_moo.precision.check_profile_backend`); precision ``int8``
        quantises with NNCF from ``calibration`` (a batch of inputs)."""
        from dalp_moo.precision import check_profile_backend, get_profile

        if get_profile(profile).format == "bf16":
            check_profile_backend(profile, "openvino", {"precision": self.precision})
        return OpenVINODeployment(model, input_shape, self.device, self.threads, self.runs,
                                  self.warmup, self.throughput, self.latency, self.tolerance,
                                  self.seed, host_model=self.host_model() if self.latency == "model" else None,
                                  clock=self.clock, precision=self.precision, passes=self.passes,
                                  calibration=calibration)

    def estimate_latency_ms(self, model: nn.Module, input_shape: tuple[int, ...]) -> float:
        """Host latency model prediction (ms) for batch-1 ``input_shape`` (no measurement): the
        calibration of the inference precision, else (measured latencies only: an estimate
        serves the search's reference point and the latency-budget pre-check) the f32 one with a
        warning, since no bf16/f16 calibration is shipped."""
        return self._estimator().predict_graph_of(model, input_shape)[0]

    def _estimator(self) -> Any:
        try:
            return self.host_model()
        except BackendError:
            used = effective_precision(self.device, self.precision)
            if self.latency == "model" or used == "f32":
                raise
        if self._f32_estimator is None:
            from dalp_moo.backends.host_model import HostLatencyModel

            self._f32_estimator = HostLatencyModel.load(threads=self.threads, device=self.device.split(".")[0],
                                                        precision="f32")
            logger.warning("no %s host latency calibration for this CPU: latency estimates (reference point, "
                           "latency-budget pre-check) use the f32 one; measured latencies are %s. Calibrate "
                           "with 'python -m dalp_moo calibrate host --precision %s'", used, used, used)
        return self._f32_estimator
