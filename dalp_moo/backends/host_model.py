"""Per-layer latency model of OpenVINO on the host CPU, fitted by least squares.

Each op of :func:`~dalp_moo.backends.graph.trace_graph` is mapped to the execution unit the CPU
plugin runs (batch norm folded into the preceding convolution; activations and a following
residual ``add`` fused into the convolution as post-ops) and described by per-layer-type
features: layer count, giga-MACs with channels padded to the SIMD block
(``ceil(c / 8) * 8``), megabytes moved (FP32: inputs + outputs + weights) and, for fused or
stand-alone transcendental activations, mega-elements. The latency is

    latency_ms = intercept_ms + sum_f coef_f * feature_f

with non-negative coefficients fitted by relative least squares (NNLS on rows scaled by
1 / measured) on measured networks (see ``benchmarks/latency_fidelity.py``; the shipped
calibration was measured with one inference thread and ``clock="cpu"``, i.e. it predicts the
latency of an uncontended core). Coefficients are stored per host and thread count as JSON in
``dalp_moo/backends/calibration/``; a calibration made on another CPU model is used with a
warning (refit with the benchmark).
"""

from __future__ import annotations

import json
import math
import platform
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy.optimize import nnls
from torch import nn

from dalp_moo.backends.graph import Graph, Op, trace_graph
from dalp_moo.errors import BackendError
from dalp_moo.log import logger

CALIBRATION_DIR = Path(__file__).with_name("calibration")
_SIMD = 8  # FP32 lanes of AVX2: channel block of the CPU plugin's blocked layouts
_LINEAR_ACTS = {"relu", "relu6", "clamp", "leaky_relu", "prelu", "abs", "neg"}
_WARNED: set[str] = set()


def _ceil(c: int, b: int = _SIMD) -> int:
    return int(math.ceil(c / b) * b)


def _mb(elems: float) -> float:
    return 4.0 * elems / 1e6


def _single(graph: Graph, op: Op) -> bool:
    return len(graph.consumers[op.index]) == 1


def _conv_root(graph: Graph, op: Op, fused: dict[int, int]) -> int | None:
    """Index of the conv/deconv/linear this op's (first) input is fused into, if any."""
    p = graph.producer(op)
    if p is None or not _single(graph, p):
        return None
    if p.kind in ("conv", "deconv", "linear"):
        return p.index
    return fused.get(p.index)


def op_features(graph: Graph) -> list[tuple[Op, dict[str, float]]]:
    """Per-op host features (empty dict for ops fused into a predecessor or free)."""
    fused: dict[int, int] = {}  # op index -> conv index it is fused into
    rows: list[tuple[Op, dict[str, float]]] = []
    for op in graph.ops:
        f: dict[str, float] = {}
        k = op.kind
        if k in ("conv", "deconv", "linear"):
            a = op.attrs
            if k == "linear":
                g = "linear"
                macs = op.out_numel / max(1, a["out_features"]) * _ceil(a["out_features"]) * _ceil(a["in_features"])
                w = op.params
            else:
                groups, cin, cout = a["groups"], a["cin"], a["cout"]
                kh, kw = a["k"]
                hw = op.out_numel / max(1, cout) if k == "conv" else math.prod(op.in_shapes[0]) / max(1, cin)
                if groups > 1 and groups == cin:
                    g = "dwconv"
                    macs = hw * _ceil(cout) * kh * kw
                else:
                    g = "deconv" if k == "deconv" else ("conv1x1" if (kh, kw) == (1, 1) else "conv")
                    macs = hw * _ceil(cout) * _ceil(cin // groups) * kh * kw
                w = op.params
            f = {f"{g}_n": 1.0, f"{g}_gmacs": macs / 1e9, f"{g}_mb": _mb(op.in_numel + op.out_numel + w)}
        elif k in ("bn", "act") and _conv_root(graph, op, fused) is not None:
            fused[op.index] = _conv_root(graph, op, fused)  # type: ignore[assignment]
            if k == "act" and op.attrs.get("fn") not in _LINEAR_ACTS:
                f = {"fused_tact_melems": op.out_numel / 1e6}
        elif k == "eltwise" and op.op == "add" and len(op.inputs) == 2 and any(
                i >= 0 and graph.ops[i].kind in ("conv", "deconv", "bn") and _single(graph, graph.ops[i])
                and (graph.ops[i].kind != "bn" or i in fused) for i in op.inputs):
            f = {"fused_sum_mb": _mb(op.out_numel)}
            fused[op.index] = -1
        elif k == "act" and graph.producer(op) is not None and graph.producer(op).index in fused \
                and _single(graph, graph.producer(op)):  # type: ignore[union-attr]
            fused[op.index] = fused[graph.producer(op).index]  # type: ignore[union-attr]
            if op.attrs.get("fn") not in _LINEAR_ACTS:
                f = {"fused_tact_melems": op.out_numel / 1e6}
        elif k == "pool":
            f = {"pool_n": 1.0, "pool_mb": _mb(op.in_numel + op.out_numel)}
        elif k == "concat":
            f = {"concat_n": 1.0, "concat_mb": _mb(op.out_numel)}
        elif k == "resize":
            g = "resize_lin" if "linear" in str(op.attrs.get("mode")) else "resize"
            f = {f"{g}_n": 1.0, f"{g}_mb": _mb(op.in_numel + op.out_numel)}
        elif k in ("eltwise", "bn", "act", "copy", "norm", "softmax", "reduce"):
            f = {"elt_n": 1.0, "elt_mb": _mb(op.in_numel + op.out_numel)}
            if k in ("softmax", "norm") or (k == "act" and op.attrs.get("fn") not in _LINEAR_ACTS):
                f["tact_melems"] = op.out_numel / 1e6
        rows.append((op, f))
    return rows


FEATURES: tuple[str, ...] = tuple(
    [f"{g}_{s}" for g in ("conv", "conv1x1", "dwconv", "deconv", "linear") for s in ("n", "gmacs", "mb")]
    + ["fused_tact_melems", "fused_sum_mb", "pool_n", "pool_mb", "concat_n", "concat_mb",
       "resize_n", "resize_mb", "resize_lin_n", "resize_lin_mb", "elt_n", "elt_mb", "tact_melems"])


def graph_features(graph: Graph) -> np.ndarray:
    """Network feature vector (sums over ops, order :data:`FEATURES`)."""
    idx = {n: i for i, n in enumerate(FEATURES)}
    v = np.zeros(len(FEATURES))
    for _, f in op_features(graph):
        for name, val in f.items():
            v[idx[name]] += val
    return v


def host_id() -> str:
    """CPU model name of this host (for calibration bookkeeping)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def calibration_path(threads: int | None, device: str = "CPU") -> Path:
    """Calibration JSON of the host model for ``device`` and thread count."""
    return CALIBRATION_DIR / f"openvino_{device.lower()}_t{threads or 0}.json"


@dataclass(frozen=True)
class HostLatencyModel:
    """Fitted host latency model: ``intercept_ms`` + non-negative ``coef`` (ms per feature unit)."""

    intercept_ms: float
    coef: dict[str, float]
    meta: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def fit(cls, graphs: list[Graph], measured_ms: list[float] | np.ndarray,
            meta: dict[str, Any] | None = None) -> HostLatencyModel:
        """Relative-error NNLS fit on ``graphs`` with measured latencies (ms)."""
        y = np.asarray(measured_ms, dtype=float)
        x = np.stack([graph_features(g) for g in graphs])
        a = np.hstack([np.ones((len(y), 1)), x]) / y[:, None]
        scale = np.maximum(np.abs(a).max(axis=0), 1e-12)
        sol, _ = nnls(a / scale, np.ones(len(y)), maxiter=5000)
        sol = sol / scale
        pred = np.hstack([np.ones((len(y), 1)), x]) @ sol
        rel = np.abs(pred / y - 1)
        info = {"n_fit": int(len(y)), "fit_median_abs_rel_error": float(np.median(rel)),
                "fit_within_10pct": float(np.mean(rel <= 0.10)), **(meta or {})}
        return cls(float(sol[0]), {n: float(c) for n, c in zip(FEATURES, sol[1:])}, info)

    def predict(self, graph: Graph) -> tuple[float, tuple[dict[str, Any], ...]]:
        """Latency (ms) of ``graph`` and per-op contributions (``name``, ``type``, ``time_ms``)."""
        per_layer: list[dict[str, Any]] = [{"name": "overhead", "type": "overhead",
                                            "time_ms": self.intercept_ms}]
        total = self.intercept_ms
        for op, f in op_features(graph):
            t = sum(self.coef.get(k, 0.0) * v for k, v in f.items())
            if f:
                per_layer.append({"name": op.name, "type": op.op, "time_ms": t})
            total += t
        return float(total), tuple(per_layer)

    def predict_graph_of(self, model: nn.Module, input_shape: tuple[int, ...]) -> tuple[float, tuple[dict[str, Any], ...]]:
        """Trace ``model`` for ``input_shape`` and :meth:`predict`."""
        return self.predict(trace_graph(model, tuple(input_shape)))

    def save(self, path: Path) -> Path:
        """Write the coefficients and metadata as JSON."""
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"intercept_ms": self.intercept_ms, "coef": self.coef,
                                    "meta": self.meta}, indent=2, sort_keys=True) + "\n")
        return path

    @classmethod
    def load(cls, threads: int | None = 1, device: str = "CPU", path: Path | None = None) -> HostLatencyModel:
        """Load the calibration for ``device``/``threads`` (warns once if fitted on another CPU)."""
        path = path or calibration_path(threads, device)
        if not path.exists():
            raise BackendError(f"no host latency calibration {path.name} for device {device} with "
                               f"threads={threads}; fit one with benchmarks/latency_fidelity.py")
        try:
            d = json.loads(path.read_text())
            model = cls(float(d["intercept_ms"]), {k: float(v) for k, v in d["coef"].items()},
                        dict(d.get("meta", {})))
        except (ValueError, KeyError, TypeError) as exc:
            raise BackendError(f"{path}: corrupt host latency calibration ({exc})") from exc
        host = model.meta.get("host")
        if host and host != host_id() and str(path) not in _WARNED:
            _WARNED.add(str(path))
            logger.warning("host latency model %s was fitted on %r, this host is %r: predictions "
                           "may be off; refit with benchmarks/latency_fidelity.py", path.name, host, host_id())
        return model
