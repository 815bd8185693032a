"""Kernel-level latency model of OpenVINO on the host CPU.

The network is traced (:func:`~dalp_moo.backends.graph.trace_graph`) and its ops are grouped into
the *kernels* the CPU plugin executes (:func:`kernels`): a convolution, deconvolution or fully
connected layer absorbs a following batch norm (folded into its weights), activations, a residual
``add`` (a "sum" post-op) and activations after it; chains of stand-alone element-wise ops run as
one kernel; pooling, global pooling / reductions, resizing, concatenation, softmax, normalisation
and copies are kernels of their own; the input and output are converted between the plain and the
channels-last layout by reorder kernels. Each kernel is described by its shapes (channels,
spatial size, kernel size, stride, groups, fused post-ops) and costed by a regressor of its kind:

    t_kernel = base(x) * exp(boost(z))

``base`` is linear with non-negative coefficients in a few physical terms (1, MACs with channels
padded to the 16 FP32 lanes of AVX-512, megabytes read and written, transcendental elements),
``boost`` a small gradient-boosted tree ensemble (depth 3) on the log ratio of the measured time
to ``base``; its output is clipped to the range seen in fitting, so shapes far outside the fitting
set (e.g. ImageNet networks) extrapolate with ``base``. The network latency is

    latency_ms = intercept_ms + scale * sum_k t_kernel_k

(non-negative, relative least squares over the fitting networks' end-to-end latencies).

:meth:`HostLatencyModel.fit` fits the kernel regressors on per-kernel times measured with the
plugin's per-node profiling (``PERF_COUNT``, :meth:`OpenVINODeployment.profile
<dalp_moo.backends.openvino_backend.OpenVINODeployment.profile>`), matched to the emulated
kernels by kind, output shape and weight shape (:func:`match_profile`); without profiles it falls
back to a network-level fit of the linear terms. ``python -m dalp_moo calibrate host``
(:mod:`dalp_moo.backends.calibrate`) measures and fits on the user's CPU and writes the calibration
into the user calibration folder (:func:`user_calibration_dir`); ``benchmarks/latency_fidelity.py``
does the same with more networks for the calibrations shipped in ``dalp_moo/backends/calibration/``.
There is one file per CPU model, device, thread count and inference precision.
:meth:`HostLatencyModel.load` takes the file of this CPU model (the user folder first, then the
shipped ones), logs which one, and uses another CPU model's only with a warning.
"""

from __future__ import annotations

import json
import math
import os
import platform
import re
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
FORMAT = "openvino-kernels-1"
SIMD = 16  #: FP32 lanes of AVX-512: channel block of the CPU plugin's brgemm kernels
_LINEAR_ACTS = {"relu", "relu6", "clamp", "leaky_relu", "prelu", "abs", "neg"}
_WARNED: set[str] = set()

#: kernel kinds and the kind whose regressor stands in when a kind was not fitted
KINDS = ("conv", "conv1x1", "dwconv", "gconv", "deconv", "fc", "pool", "reduce", "resize",
         "concat", "eltwise", "softmax", "norm", "copy", "reorder")
_FALLBACK = {"gconv": "conv", "deconv": "conv", "conv": "conv1x1", "fc": "conv1x1",
             "dwconv": "conv", "conv1x1": "conv", "reduce": "pool", "pool": "eltwise",
             "resize": "eltwise", "concat": "eltwise", "softmax": "eltwise", "norm": "eltwise",
             "copy": "eltwise", "reorder": "eltwise", "eltwise": "reorder"}
_CONV_KINDS = ("conv", "conv1x1", "dwconv", "gconv", "deconv", "fc")


def _c(c: float, b: int = SIMD) -> float:
    """``c`` rounded up to the SIMD block."""
    return float(math.ceil(c / b) * b)


@dataclass(frozen=True)
class Kernel:
    """One execution unit of the CPU plugin.

    ``ops`` are the indices of the graph ops it executes (empty for layout reorders),
    ``wshape`` the weight shape as the plugin sees it (convolutions, for matching profiles),
    ``f`` its shape features.
    """

    kind: str
    name: str
    ops: tuple[int, ...]
    out_shape: tuple[int, ...]
    wshape: tuple[int, ...] | None
    f: dict[str, float]


def _spatial(shape: tuple[int, ...]) -> int:
    return math.prod(shape[2:]) if len(shape) > 2 else 1


def _root(op: Op) -> Kernel:
    """Kernel of a conv / deconv / linear op (before fusions)."""
    a = op.attrs
    if op.kind == "linear":
        rows = op.out_numel // max(1, a["out_features"])
        return Kernel("fc", op.name, (op.index,), op.out_shape, (a["out_features"], a["in_features"]),
                      {"rows": rows, "cin": a["in_features"], "cout": a["out_features"], "g": 1,
                       "k": 1, "stride": 1, "hw_in": rows, "hw_out": rows, "w": op.params,
                       "in": op.in_numel, "out": op.out_numel, "tact": 0, "post": 0, "sum": 0})
    g, cin, cout = a["groups"], a["cin"], a["cout"]
    kh, kw = a["k"]
    x = op.in_shapes[0]
    if op.kind == "deconv":
        kind = "deconv"
        wshape: tuple[int, ...] = (cin, cout // g, kh, kw) if g == 1 else (g, cin // g, cout // g, kh, kw)
    elif g > 1 and g == cin and cout % g == 0:
        kind = "dwconv"
        wshape = (g, cout // g, 1, kh, kw)
    elif g > 1:
        kind = "gconv"
        wshape = (g, cout // g, cin // g, kh, kw)
    else:
        kind = "conv1x1" if (kh, kw) == (1, 1) else "conv"
        wshape = (cout, cin, kh, kw)
    return Kernel(kind, op.name, (op.index,), op.out_shape, wshape,
                  {"cin": cin, "cout": cout, "g": g, "k": kh * kw, "stride": a["stride"][0] * a["stride"][1],
                   "hw_in": _spatial(x), "hw_out": _spatial(op.out_shape), "w": op.params,
                   "in": math.prod(x), "out": op.out_numel, "tact": 0, "post": 0, "sum": 0})


def _new(kind: str, op: Op, **f: float) -> Kernel:
    base = {"in": float(op.in_numel), "out": float(op.out_numel),
            "c": float(op.out_shape[1]) if len(op.out_shape) > 1 else 1.0,
            "hw_in": float(_spatial(op.in_shapes[0])) if op.in_shapes else 1.0,
            "hw_out": float(_spatial(op.out_shape)), "tact": 0.0, "post": 0.0, "n_in": float(len(op.inputs))}
    base.update(f)
    return Kernel(kind, op.name, (op.index,), op.out_shape, None, base)


def _grow(k: Kernel, op: Op, **inc: float) -> Kernel:
    """``k`` with ``op`` fused as its new last op (``inc`` added to its features)."""
    f = dict(k.f)
    for n, v in inc.items():
        f[n] = f.get(n, 0.0) + v
    return Kernel(k.kind, k.name, k.ops + (op.index,), op.out_shape if op.kind != "bn" or k.kind not in _CONV_KINDS
                  else k.out_shape, k.wshape, f)


def _transcendental(op: Op) -> float:
    return 1.0 if op.kind in ("act",) and op.attrs.get("fn") not in _LINEAR_ACTS else 0.0


def kernels(graph: Graph) -> list[Kernel]:
    """The kernels the OpenVINO CPU plugin (FP32) executes for ``graph``, in execution order."""
    ks: list[Kernel] = []
    owner: dict[int, int] = {}  # op index -> kernel index (the kernel producing its output)

    def tail(i: int) -> int | None:
        """Kernel of op ``i`` if ``i`` is its last op and ``i`` has a single consumer."""
        if i < 0 or i not in owner or len(graph.consumers[i]) != 1:
            return None
        k = ks[owner[i]]
        return owner[i] if k.ops and k.ops[-1] == i else None

    for op in graph.ops:
        k = op.kind
        p = op.inputs[0] if op.inputs else -1
        if k == "reshape":
            if p >= 0 and p in owner:
                owner[op.index] = owner[p]
                kp = ks[owner[p]]
                if kp.ops and kp.ops[-1] == p:  # transparent: keep fusing after it
                    ks[owner[p]] = Kernel(kp.kind, kp.name, kp.ops + (op.index,), op.out_shape, kp.wshape, kp.f)
            continue
        if k in ("conv", "deconv", "linear"):
            ks.append(_root(op))
            owner[op.index] = len(ks) - 1
            continue
        tensor_inputs = [i for i in op.inputs]
        fused = None
        if k in ("bn", "act") or (k == "eltwise" and len(tensor_inputs) == 1):
            t = tail(p)
            if t is not None and ks[t].kind in _CONV_KINDS + ("eltwise", "resize"):
                inc = {"post": 0.0 if (k == "bn" and ks[t].kind in _CONV_KINDS and ks[t].f["post"] == 0
                                       and ks[t].f["sum"] == 0) else 1.0,
                       "tact": _transcendental(op)}
                if ks[t].kind == "eltwise":
                    inc["n_ops"] = 1.0
                ks[t] = _grow(ks[t], op, **inc)
                fused = t
        elif k == "eltwise" and len(tensor_inputs) == 2 and op.op in ("add", "sub", "mul", "maximum", "minimum"):
            same = len(set(tuple(s) for s in op.in_shapes)) == 1
            cands = [tail(i) for i in tensor_inputs]
            conv = [t for t in cands if t is not None and ks[t].kind in _CONV_KINDS and same
                    and op.op == "add" and ks[t].f["sum"] == 0]
            chain = [t for t in cands if t is not None and ks[t].kind == "eltwise"]
            if conv:
                t = max(conv)
                ks[t] = _grow(ks[t], op, sum=1.0, post=1.0)
                fused = t
            elif chain:
                t = max(chain)
                ks[t] = _grow(ks[t], op, n_ops=1.0, n_in=1.0,
                              bcast=0.0 if same else 1.0)
                fused = t
        if fused is not None:
            owner[op.index] = fused
            continue
        if k in ("bn", "act", "eltwise"):
            same = len(set(tuple(s) for s in op.in_shapes)) <= 1
            kern = _new("eltwise", op, n_ops=1.0, tact=_transcendental(op), bcast=0.0 if same else 1.0)
        elif k == "pool":
            if op.attrs.get("global"):
                kern = _new("reduce", op)
            else:
                kh, kw = op.attrs["k"]
                kern = _new("pool", op, k=float(kh * kw), avg=1.0 if "avg" in op.op else 0.0)
        elif k == "reduce":
            kern = _new("reduce", op)
        elif k == "resize":
            kern = _new("resize", op, linear=1.0 if "linear" in str(op.attrs.get("mode")) else 0.0)
        elif k == "concat":
            kern = _new("concat", op, n_in=float(len(op.inputs)),
                        cmin=float(min(s[1] if len(s) > 1 else 1 for s in op.in_shapes)))
        elif k in ("softmax", "norm", "copy"):
            kern = _new(k, op, tact=1.0 if k != "copy" else 0.0)
        else:  # pragma: no cover - every graph kind is handled above
            raise BackendError(f"no host latency model for op {op.name!r} ({op.kind})")
        ks.append(kern)
        owner[op.index] = len(ks) - 1
    out = list(ks)
    if not out:
        return out
    shp = graph.input_shape
    if len(shp) == 4 and any(k.kind in _CONV_KINDS[:5] + ("pool", "resize") for k in out):
        out.insert(0, Kernel("reorder", "input_reorder", (), shp, None,
                             {"in": float(math.prod(shp)), "out": float(math.prod(shp)), "c": float(shp[1]),
                              "hw_in": float(_spatial(shp)), "hw_out": float(_spatial(shp)), "tact": 0.0,
                              "post": 0.0, "n_in": 1.0}))
    last = graph.ops[-1].out_shape
    if len(last) == 4 and _spatial(last) > 1 and out[-1].kind != "reorder":
        out.append(Kernel("reorder", "output_reorder", (), last, None,
                          {"in": float(math.prod(last)), "out": float(math.prod(last)), "c": float(last[1]),
                           "hw_in": float(_spatial(last)), "hw_out": float(_spatial(last)), "tact": 0.0,
                           "post": 0.0, "n_in": 1.0}))
    return out


# --------------------------------------------------------------------------- features


def _mb(elems: float) -> float:
    return 4.0 * elems / 1e6


def design(k: Kernel) -> tuple[np.ndarray, np.ndarray]:
    """(linear terms of ``base``, tree features of ``boost``) of a kernel.

    Convolutions: output channels count in SIMD blocks (a partial block costs a full vector), input
    channels as they are (broadcast operands); depthwise: channels in SIMD blocks.
    """
    f = k.f
    if k.kind in _CONV_KINDS:
        cin, cout, g = f["cin"], f["cout"], f["g"]
        hw = f["hw_in"] if k.kind == "deconv" else f["hw_out"]
        if k.kind == "dwconv":
            macs = hw * _c(cout) * f["k"]
        else:
            macs = hw * g * _c(cout / g) * (cin / g) * f["k"]
        vec = hw * _c(cout) / 1e6  # output vectors written
        lin = [1.0, macs / 1e6, _mb(f["in"] + f["out"]), _mb(f["w"]), f["tact"] * f["out"] / 1e6,
               _mb(f["sum"] * f["out"]), vec]
        w = math.sqrt(hw)
        z = [math.log(macs + 1), math.log(cin), math.log(cout), math.log(hw), math.log(w), f["k"], f["stride"],
             cin / _c(cin), cout / _c(cout), cout / _c(cout, 64), f["tact"], f["sum"], f["post"],
             math.log(f["w"] + 1), math.log(f["in"] + 1), math.log(f["out"] + 1),
             math.log(macs / max(vec * 1e6, 1.0) + 1)]
    else:
        c = f.get("c", 1.0)
        lin = [1.0, _mb(f["in"]), _mb(f["out"]), f["tact"] * f["out"] / 1e6,
               f.get("k", 1.0) * f["out"] / 1e6, f["hw_out"] * f.get("n_in", 1.0) / 1e6,
               f.get("linear", 0.0) * f["out"] / 1e6]
        z = [math.log(f["in"] + 1), math.log(f["out"] + 1), math.log(c), c / _c(c),
             math.log(f["hw_in"] + 1), math.log(f["hw_out"] + 1), f.get("k", 1.0), f.get("n_in", 1.0),
             f.get("linear", 0.0), f.get("avg", 0.0), f["tact"], f["post"], f.get("n_ops", 0.0),
             f.get("bcast", 0.0), math.log(f.get("cmin", c)), f.get("cmin", c) / _c(f.get("cmin", c))]
    return np.asarray(lin, float), np.asarray(z, float)


# --------------------------------------------------------------------------- regressors


def _nnls_rel(a: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Non-negative ``c`` minimising sum((a @ c / y - 1)^2)."""
    ar = a / y[:, None]
    scale = np.maximum(np.abs(ar).max(axis=0), 1e-12)
    sol, _ = nnls(ar / scale, np.ones(len(y)), maxiter=50 * a.shape[1] + 500)
    return sol / scale


def _fit_tree(x: np.ndarray, r: np.ndarray, depth: int, min_leaf: int) -> list[list[float]]:
    """Least-squares regression tree as rows [feature, threshold, left, right, value] (feature -1: leaf)."""
    nodes: list[list[float]] = []

    def grow(idx: np.ndarray, d: int) -> int:
        me = len(nodes)
        nodes.append([-1.0, 0.0, -1.0, -1.0, float(r[idx].mean())])
        if d == 0 or len(idx) < 2 * min_leaf:
            return me
        best = (0.0, -1, 0.0)
        rr = r[idx]
        tot, n = rr.sum(), len(idx)
        for j in range(x.shape[1]):
            order = np.argsort(x[idx, j], kind="stable")
            xs, rs = x[idx, j][order], rr[order]
            cs = np.cumsum(rs)[:-1]
            cnt = np.arange(1, n)
            ok = (xs[1:] > xs[:-1]) & (cnt >= min_leaf) & (n - cnt >= min_leaf)
            if not ok.any():
                continue
            gain = cs ** 2 / cnt + (tot - cs) ** 2 / (n - cnt) - tot ** 2 / n
            gain = np.where(ok, gain, -np.inf)
            i = int(np.argmax(gain))
            if gain[i] > best[0] + 1e-12:
                best = (float(gain[i]), j, float((xs[i] + xs[i + 1]) / 2))
        if best[1] < 0:
            return me
        j, thr = best[1], best[2]
        left = idx[x[idx, j] <= thr]
        right = idx[x[idx, j] > thr]
        nodes[me][0], nodes[me][1] = float(j), thr
        nodes[me][2] = float(grow(left, d - 1))
        nodes[me][3] = float(grow(right, d - 1))
        return me

    grow(np.arange(len(r)), depth)
    return nodes


def _eval_tree(nodes: np.ndarray, x: np.ndarray) -> np.ndarray:
    at = np.zeros(len(x), dtype=int)
    feat = nodes[:, 0].astype(int)
    for _ in range(32):
        f = feat[at]
        inner = f >= 0
        if not inner.any():
            break
        rows = np.nonzero(inner)[0]
        go_left = x[rows, f[rows]] <= nodes[at[rows], 1]
        at[rows] = np.where(go_left, nodes[at[rows], 2], nodes[at[rows], 3]).astype(int)
    return nodes[at, 4]


@dataclass
class KernelRegressor:
    """``base`` (non-negative linear terms) times ``exp`` of a boosted-tree correction."""

    coef: list[float]
    trees: list[list[list[float]]] = field(default_factory=list)
    rate: float = 0.1
    clip: tuple[float, float] = (0.0, 0.0)
    n: int = 0

    def __post_init__(self) -> None:
        # all trees in one array (trees x nodes x 5), padded with zero leaves: evaluated together
        width = max((len(t) for t in self.trees), default=0)
        self._packed = np.zeros((len(self.trees), width, 5))
        self._packed[:, :, 0] = -1
        for i, t in enumerate(self.trees):
            self._packed[i, :len(t)] = np.asarray(t, float)

    @classmethod
    def fit(cls, lin: np.ndarray, z: np.ndarray, y: np.ndarray, rounds: int = 80, rate: float = 0.1,
            depth: int = 3) -> KernelRegressor:
        """Fit on kernels' linear terms ``lin``, tree features ``z`` and measured times ``y`` (ms)."""
        coef = _nnls_rel(lin, y)
        base = np.maximum(lin @ coef, 1e-9)
        r = np.log(y / base)
        trees: list[list[list[float]]] = []
        if len(y) >= 20 and rounds > 0:
            pred = np.zeros(len(y))
            min_leaf = max(3, len(y) // 60)
            for _ in range(rounds):
                t = _fit_tree(z, r - pred, depth, min_leaf)
                pred += rate * _eval_tree(np.asarray(t, float), z)
                trees.append(t)
        return cls([float(c) for c in coef], trees, rate, (float(r.min()), float(r.max())), int(len(y)))

    def predict(self, lin: np.ndarray, z: np.ndarray) -> np.ndarray:
        """Kernel times (ms) for rows of linear terms and tree features."""
        base = np.maximum(lin @ np.asarray(self.coef), 1e-9)
        if not len(self._packed):
            return base
        trees = self._packed
        at = np.zeros((len(trees), len(lin)), dtype=int)
        tix = np.arange(len(trees))[:, None]
        for _ in range(trees.shape[1]):
            node = trees[tix, at]  # trees x rows x 5
            feat = node[..., 0].astype(int)
            inner = feat >= 0
            if not inner.any():
                break
            x = z[np.arange(len(lin))[None, :], np.maximum(feat, 0)]
            nxt = np.where(x <= node[..., 1], node[..., 2], node[..., 3]).astype(int)
            at = np.where(inner, nxt, at)
        corr = self.rate * trees[tix, at][..., 4].sum(axis=0)
        return base * np.exp(np.clip(corr, *self.clip))

    def to_json(self) -> dict[str, Any]:
        def short(v: float) -> float:
            return float(f"{v:.6g}")
        return {"coef": self.coef, "rate": self.rate, "clip": list(self.clip), "n": self.n,
                "trees": [[[int(r[0]), short(r[1]), int(r[2]), int(r[3]), short(r[4])] for r in t]
                          for t in self.trees]}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> KernelRegressor:
        return cls([float(c) for c in d["coef"]], d.get("trees", []), float(d.get("rate", 0.1)),
                   tuple(d.get("clip", (0.0, 0.0))), int(d.get("n", 0)))


# --------------------------------------------------------------------------- profile matching

_NODE_KIND = {"Convolution": "conv", "Deconvolution": "deconv", "FullyConnected": "fc", "MatMul": "fc",
              "Pooling": "pool", "Reduce": "reduce", "Interpolate": "resize", "Concatenation": "concat",
              "Subgraph": "eltwise", "Eltwise": "eltwise", "Softmax": "softmax", "MVN": "norm",
              "NormalizeL2": "norm", "Transpose": "copy", "Pad": "copy", "Reorder": "reorder"}


def _match_key(kind: str, out_shape: Any, wshape: Any) -> tuple:
    cat = "conv" if kind in ("conv", "conv1x1", "dwconv", "gconv") else kind
    w = tuple(int(v) for v in wshape) if wshape is not None and cat in ("conv", "deconv") else None
    return (cat, tuple(int(v) for v in out_shape or ()), w)


def match_profile(ks: list[Kernel], nodes: list[dict[str, Any]]) -> tuple[list[float | None], float]:
    """Measured time (ms) of each kernel from profiled nodes (``OpenVINODeployment.profile``) and
    the time of the nodes matched to no kernel. Nodes match kernels by kind, output shape and
    weight shape, in execution order."""
    pool: dict[tuple, list[float]] = {}
    for n in nodes:
        kind = _NODE_KIND.get(str(n["type"]))
        if kind is None:
            pool.setdefault(("other",), []).append(float(n["time_ms"]))
            continue
        ins = n.get("in_shapes") or []
        w = ins[1] if kind in ("conv", "deconv") and len(ins) > 1 else None
        pool.setdefault(_match_key(kind, n.get("out_shape"), w), []).append(float(n["time_ms"]))
    times: list[float | None] = []
    for k in ks:
        q = pool.get(_match_key(k.kind, k.out_shape, k.wshape))
        times.append(q.pop(0) if q else None)
    rest = sum(sum(v) for v in pool.values())
    return times, float(rest)


# --------------------------------------------------------------------------- host bookkeeping


def host_id() -> str:
    """CPU model name of this host (for calibration bookkeeping)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def host_slug(host: str | None = None) -> str:
    """File-name form of a CPU model name (``Intel(R) Xeon(R) Processor`` -> ``intel-xeon-processor``)."""
    s = re.sub(r"\((r|tm)\)", "", (host if host is not None else host_id()).lower())
    return re.sub(r"[^a-z0-9]+", "-", s).strip("-") or "unknown"


def user_calibration_dir() -> Path:
    """The user's calibration folder: ``$DALP_MOO_CALIBRATION_DIR``, else
    ``$XDG_DATA_HOME/dalp_moo/calibration`` (``~/.local/share/dalp_moo/calibration``)."""
    env = os.environ.get("DALP_MOO_CALIBRATION_DIR")
    if env:
        return Path(env)
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "dalp_moo" / "calibration"


def calibration_file(threads: int | None, device: str = "CPU", precision: str = "f32",
                     host: str | None = None, directory: Path | None = None) -> Path:
    """Calibration JSON for a CPU model (default: this host), device, thread count and precision,
    in ``directory`` (default: the shipped calibrations, :data:`CALIBRATION_DIR`)."""
    name = f"openvino_{device.lower()}_t{threads or 0}_{precision}_{host_slug(host)}.json"
    return (directory if directory is not None else CALIBRATION_DIR) / name


def calibration_path(threads: int | None, device: str = "CPU", precision: str = "f32") -> Path:
    """The calibration :meth:`HostLatencyModel.load` uses: this CPU model's (the user folder's, else
    the shipped one), else another CPU model's for the same device, threads and precision (a path
    that does not exist when there is none)."""
    dirs = [user_calibration_dir(), CALIBRATION_DIR]
    for d in dirs:
        own = calibration_file(threads, device, precision, directory=d)
        if own.exists():
            return own
    pattern = f"openvino_{device.lower()}_t{threads or 0}_{precision}_*.json"
    others = [f for d in dirs for f in sorted(d.glob(pattern))]
    return others[0] if others else calibration_file(threads, device, precision)


# --------------------------------------------------------------------------- the model


@dataclass(frozen=True)
class HostLatencyModel:
    """Fitted host latency model: per-kind kernel regressors, ``intercept_ms`` and ``scale``."""

    intercept_ms: float
    scale: float
    regressors: dict[str, KernelRegressor]
    meta: dict[str, Any] = field(default_factory=dict)

    # ---- prediction

    def _regressor(self, kind: str) -> KernelRegressor:
        seen = set()
        k = kind
        while k not in self.regressors:
            seen.add(k)
            k = _FALLBACK.get(k, "eltwise")
            if k in seen:
                raise BackendError(f"host latency model has no regressor for {kind!r} kernels")
        return self.regressors[k]

    def kernel_times(self, ks: list[Kernel]) -> np.ndarray:
        """Predicted time (ms) of each kernel (before the network-level ``scale``)."""
        out = np.zeros(len(ks))
        by: dict[str, list[int]] = {}
        for i, k in enumerate(ks):
            by.setdefault(k.kind, []).append(i)
        for kind, idx in by.items():
            rows = [design(ks[i]) for i in idx]
            lin = np.stack([r[0] for r in rows])
            z = np.stack([r[1] for r in rows])
            out[idx] = self._regressor(kind).predict(lin, z)
        return out

    def predict(self, graph: Graph) -> tuple[float, tuple[dict[str, Any], ...]]:
        """Latency (ms) of ``graph`` and per-kernel contributions (``name``, ``type``, ``time_ms``;
        ``ops``: the graph ops the kernel executes)."""
        ks = kernels(graph)
        t = self.kernel_times(ks) * self.scale
        per_layer: list[dict[str, Any]] = [{"name": "overhead", "type": "overhead", "time_ms": self.intercept_ms}]
        per_layer += [{"name": k.name, "type": k.kind, "time_ms": float(v),
                       "ops": [graph.ops[i].name for i in k.ops]} for k, v in zip(ks, t, strict=True)]
        return float(self.intercept_ms + t.sum()), tuple(per_layer)

    def predict_graph_of(self, model: nn.Module,
                         input_shape: tuple[int, ...]) -> tuple[float, tuple[dict[str, Any], ...]]:
        """Trace ``model`` for ``input_shape`` and :meth:`predict`."""
        return self.predict(trace_graph(model, tuple(input_shape)))

    # ---- fitting

    @classmethod
    def fit(cls, graphs: list[Graph], measured_ms: list[float] | np.ndarray,
            meta: dict[str, Any] | None = None, profiles: list[list[dict[str, Any]]] | None = None,
            rounds: int = 80) -> HostLatencyModel:
        """Fit on ``graphs`` with end-to-end latencies ``measured_ms`` and, per graph, the profiled
        nodes (``profiles``; :meth:`OpenVINODeployment.profile`). Without profiles only the linear
        terms are fitted, at network level."""
        y = np.asarray(measured_ms, dtype=float)
        kss = [kernels(g) for g in graphs]
        if profiles is None:
            model = cls._fit_network_level(kss, y)
        else:
            model = cls._fit_kernels(kss, profiles, y, rounds)
        pred = np.array([model.intercept_ms + model.scale * model.kernel_times(ks).sum() for ks in kss])
        rel = np.abs(pred / y - 1)
        info = {"n_fit": int(len(y)), "fit_median_abs_rel_error": float(np.median(rel)),
                "fit_within_10pct": float(np.mean(rel <= 0.10)), **model.meta, **(meta or {})}
        return cls(model.intercept_ms, model.scale, model.regressors, info)

    @classmethod
    def _fit_network_level(cls, kss: list[list[Kernel]], y: np.ndarray) -> HostLatencyModel:
        kinds = sorted({k.kind for ks in kss for k in ks})
        width = {kd: len(design(next(k for ks in kss for k in ks if k.kind == kd))[0]) for kd in kinds}
        cols = {kd: sum(width[k2] for k2 in kinds[:i]) for i, kd in enumerate(kinds)}
        a = np.zeros((len(y), 1 + sum(width.values())))
        a[:, 0] = 1.0
        for r, ks in enumerate(kss):
            for k in ks:
                lin = design(k)[0]
                a[r, 1 + cols[k.kind]:1 + cols[k.kind] + len(lin)] += lin
        sol = _nnls_rel(a, y)
        regs = {kd: KernelRegressor([float(v) for v in sol[1 + cols[kd]:1 + cols[kd] + width[kd]]], n=0)
                for kd in kinds}
        return cls(float(sol[0]), 1.0, regs, {"fit": "network-level linear terms"})

    @classmethod
    def _fit_kernels(cls, kss: list[list[Kernel]], profiles: list[list[dict[str, Any]]], y: np.ndarray,
                     rounds: int) -> HostLatencyModel:
        rows: dict[str, list[tuple[np.ndarray, np.ndarray, float]]] = {}
        matched = unmatched = 0
        for ks, nodes in zip(kss, profiles, strict=True):
            times, _rest = match_profile(ks, nodes)
            for k, t in zip(ks, times, strict=True):
                if t is None or t <= 0:
                    unmatched += t is None
                    continue
                matched += 1
                lin, z = design(k)
                rows.setdefault(k.kind, []).append((lin, z, t))
        regs: dict[str, KernelRegressor] = {}
        for kind, r in rows.items():
            lin = np.stack([v[0] for v in r])
            z = np.stack([v[1] for v in r])
            y_k = np.array([v[2] for v in r])
            regs[kind] = KernelRegressor.fit(lin, z, y_k, rounds=rounds)
        if not regs:
            raise BackendError("no profiled kernel could be matched: cannot fit the host latency model")
        model = cls(0.0, 1.0, regs)
        s = np.array([model.kernel_times(ks).sum() for ks in kss])
        sol = _nnls_rel(np.stack([np.ones(len(y)), s], axis=1), y)
        return cls(float(sol[0]), float(sol[1]), regs,
                   {"fit": "kernel-level", "kernels_matched": matched, "kernels_unmatched": unmatched,
                    "kernels_by_kind": {k: len(v) for k, v in sorted(rows.items())}})

    # ---- persistence

    def save(self, path: Path) -> Path:
        """Write the model as JSON (one line per regressor tree)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        regs = {k: r.to_json() for k, r in sorted(self.regressors.items())}
        parts = [f'{{\n  "format": "{FORMAT}",\n  "intercept_ms": {json.dumps(self.intercept_ms)},\n'
                 f'  "scale": {json.dumps(self.scale)},\n'
                 f'  "meta": {json.dumps(self.meta, indent=2, sort_keys=True).replace(chr(10), chr(10) + "  ")},\n'
                 '  "regressors": {']
        for i, (k, r) in enumerate(regs.items()):
            trees = ",\n        ".join(json.dumps(t, separators=(",", ":")) for t in r["trees"])
            parts.append(f'\n    "{k}": {{"coef": {json.dumps(r["coef"])}, "rate": {r["rate"]}, '
                         f'"clip": {json.dumps(r["clip"])}, "n": {r["n"]},\n      "trees": [' +
                         (f"\n        {trees}\n      " if trees else "") + "]}" + ("," if i < len(regs) - 1 else ""))
        parts.append("\n  }\n}\n")
        path.write_text("".join(parts))
        return path

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> HostLatencyModel:
        if d.get("format") != FORMAT:
            raise ValueError(f"format {d.get('format')!r}, expected {FORMAT!r}")
        return cls(float(d["intercept_ms"]), float(d["scale"]),
                   {k: KernelRegressor.from_json(v) for k, v in d["regressors"].items()}, dict(d.get("meta", {})))

    @classmethod
    def load(cls, threads: int | None = 1, device: str = "CPU", path: Path | None = None,
             precision: str = "f32") -> HostLatencyModel:
        """Load the calibration for ``device``/``threads``/``precision`` of this CPU model (another
        CPU model's with a warning when this one has none)."""
        path = path or calibration_path(threads, device, precision)
        if not path.exists():
            raise BackendError(f"no host latency calibration for device {device} with threads={threads} "
                               f"and precision {precision} ({path.name}); make one with "
                               f"'python -m dalp_moo calibrate host'")
        try:
            model = cls.from_json(json.loads(path.read_text()))
        except (ValueError, KeyError, TypeError, IndexError) as exc:
            raise BackendError(f"{path}: corrupt host latency calibration ({exc})") from exc
        model.meta["calibration_file"] = str(path)
        host = model.meta.get("host")
        if str(path) not in _WARNED:
            _WARNED.add(str(path))
            held = model.meta.get("held_out", {})
            fidelity = (f"; held-out within +-10 %: {100 * held['within_10pct']:.0f} %, Kendall tau "
                        f"{held['kendall_tau']:.3f}" if "within_10pct" in held else "")
            repeat = model.meta.get("repeatability")
            if repeat:
                fidelity += f"; its measurements repeat to a median {100 * repeat['median_abs_diff']:.1f} %"
            if host and host != host_id():
                logger.warning("host latency model %s was fitted on %r, this host is %r: predictions "
                               "may be off; calibrate this CPU with 'python -m dalp_moo calibrate host'",
                               path, host, host_id())
            else:
                logger.info("host latency model: %s (fitted on %s%s)", path, host or "an unnamed host", fidelity)
        return model
