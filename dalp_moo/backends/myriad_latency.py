"""Myriad X (NCS2) latency model: per-layer costs on the NCE and the SHAVEs, fitted to published data.

**What is predicted.** The objective is the *single-request latency* (ms) of one synchronous batch-1
inference on the chip under the MYRIAD plugin's default two executor streams (one request gets one
NCE and about 8 SHAVEs), without the host: ``quantity="device"``. Other quantities are explicit:
``"e2e_usb3"`` / ``"e2e_usb2"`` add the host/USB term, ``"period"`` is the time between finished
inferences in throughput mode (several requests in flight) = device latency / ``period_ratio``
(fitted on measured latency/period pairs; throughput figures never enter as latencies), and
``"device_layers"`` is the sum of the per-layer device counters (no per-inference cost).

**Lowering** (:func:`lower`): the traced graph (:func:`~dalp_moo.backends.graph.trace_graph`) becomes
the plugin's *stages*, with its fusions: batch norm folded into the preceding conv / deconv / FC;
Conv+ReLU / Clamp (ReLU6) / LeakyReLU; Conv(3x3, s1, p1) + max/avg Pool(2x2, s2); Pool+ReLU;
FC+ReLU; Eltwise+ReLU and ScaleShift+ReLU on the SHAVEs; a multiply/add by a constant directly after
a conv folds into its weights; reshapes, flatten and slicing are free. Placement: dense, depthwise
and transposed convolutions, fully connected layers and pooling (kernel <= 15, stride <= 8) run
on the NCE; a dilated convolution runs on the NCE after a SHAVE re-ordering of its input and output
(space-to-batch: the plugin's ``MYRIAD_HW_DILATION=YES`` path; by default the plugin runs dilated
convolutions as SHAVE kernels, whose rate no calibration point but DeepLabV3 would constrain, so the
model keeps the NCE path); element-wise ops, non-fused activations, stand-alone batch norm, resize, concat
copies, softmax, reductions, permutes and large-kernel pooling run on the SHAVEs, as do the
FP32<->FP16 conversions of the network input and outputs.

**Costs** (ms), each stage ``overhead + max(compute, memory)``; 16-bit activations and weights;
weights always stream from DDR (``ddr_gbps``); activations stream at ``cmx_gbps`` when a stage's
input and output fit this request's share of the 2.5 MB CMX (half of it under two streams), else
from DDR, and a convolution whose activations spill to DDR computes at ``spill_eff`` of its rate:

- dense conv: ``2 MAC / (nce_gops x util)``, channel utilisation
  ``util = 1 - b + b x eff(cin) x eff(cout)``, ``eff(c) = c / (ceil(c / 32) x 32)``, ``b = util_blend``;
  per-stage ``nce_layer_ms``; grouped convolutions use the per-group channels;
- depthwise conv: ``2 MAC / dw_gops``, memory at ``dw_gbps``; transposed conv: ``2 MAC / (deconv_gops x util)``;
- fully connected: run as a 1x1 convolution on the NCE (the plugin's ``replaceFCbyConv``):
  ``2 MAC / (nce_gops x util)`` against the weights streamed from DDR (batch 1: weight-bound);
- pooling: ``k x k x outputs / pool_gops`` against ``bytes / pool_gbps``;
- SHAVE stages: ``shave_layer_ms + max(element ops / shave_gops, bytes / shave_gbps)`` (1 op per
  element, ``trans_ops`` for transcendental activations / softmax / normalisation, 4 for bilinear
  resize); ``shave_gops`` and ``shave_gbps`` are the rates of the request's ``shaves`` (8) SHAVEs. The
  plugin runs activations, a stand-alone batch norm's scale / bias, nearest up-sampling and the
  FP32<->FP16 conversions (``StageSHAVEsRequirements::TwoOrOne``) and an Eltwise next to a hardware
  stage (``SHAVES_LIMITATION_FOR_HW``) on ``post_op_shaves`` (2) SHAVEs: both rates x 2 / 8;
  a concat writes its inputs in place except those the plugin copies (:func:`_concat_stage`: the
  network input, slices of another tensor, values already in another concat, and hardware outputs
  unless the concat output fits in CMX); each copy costs ``shave_layer_ms`` + read and write of the
  input at ``cmx_gbps`` / ``ddr_gbps``;
- per inference: ``fixed_ms`` (device).

Host/USB is a separate term: ``host_ms`` (fitted: Python/driver round trip of one synchronous request)
+ FP32 input and output bytes over the link (``usb3_gbps`` assumed, ``usb2_gbps`` fitted). It is not
part of the objective unless ``include_host`` is set.

**Streams.** The fitted rates describe one request under the default two streams. ``streams=1``
gives the request both NCEs and all 16 SHAVEs: compute rates x ``single_stream_speedup`` (assumed 2:
no public single-stream per-layer data) and the whole CMX; DDR bandwidth and per-stage overheads are
shared and stay.

**Parameters** (:data:`PARAM_SOURCES`): *fitted* here on the published measurements of
:mod:`dalp_moo.backends.zoo.myriad_points` (:func:`fit`, validated by leave-one-family-out
cross-validation in :func:`cross_validate`), *published* (ANNETTE's NCS2 micro-benchmark fits:
``embedded-machine-learning/annette``, ``database/models/layer/ncs2-mixed.json``; hardware facts) or
*assumed* (our choice; no public data). The fitted values live in ``calibration/myriadx.json``.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from dalp_moo.backends.base import LatencyReport
from dalp_moo.backends.graph import Graph, Op, trace_graph
from dalp_moo.errors import BackendError
from dalp_moo.log import logger

CALIBRATION_FILE = Path(__file__).with_name("calibration") / "myriadx.json"
FORMAT = "myriadx-latency-2"
QUANTITIES = ("device", "device_layers", "e2e_usb3", "e2e_usb2", "period")
_FUSABLE_ACTS = {"relu", "relu6", "clamp", "leaky_relu"}
_TRANSCENDENTAL = {"gelu", "silu", "sigmoid", "tanh", "elu", "mish", "softplus", "exp", "hardswish",
                   "hardsigmoid", "sqrt", "prelu"}
_NCE_MAX_K, _NCE_MAX_STRIDE = 15, 8


@dataclass(frozen=True)
class MyriadXParams:
    """Constants and switches of the Myriad X latency model (rates in Gops/s or GB/s, times in ms,
    power in W). ``ops`` = 2 x MAC for convolutions."""

    nce_gops: float = 319.5          #: dense conv compute roof of one request (fitted; prior ANNETTE)
    util_blend: float = 0.5          #: weight of the channel-utilisation penalty, 0..1 (fitted)
    channel_block: int = 32          #: NCE channel parallelism (published: ANNETTE c_par, f_par)
    nce_layer_ms: float = 0.08       #: per NCE stage (fitted; prior ANNETTE's per-layer floor)
    dw_gops: float = 12.2            #: depthwise conv (fitted; prior ANNETTE)
    dw_gbps: float = 1.08            #: depthwise memory roof (published: ANNETTE)
    deconv_gops: float = 100.5       #: transposed conv (fitted; prior ANNETTE)
    pool_gops: float = 5.95          #: pooling compute (published: ANNETTE)
    pool_gbps: float = 0.58          #: pooling memory (fitted; prior ANNETTE)
    ddr_gbps: float = 5.68           #: DDR roof of NCE layers (fitted; prior ANNETTE roofline)
    cmx_mb: float = 2.5              #: on-chip CMX (hardware fact)
    cmx_gbps: float = 400.0          #: CMX-resident streaming (assumed)
    shave_gops: float = 44.8         #: SHAVE element ops of one request (fitted; prior 8 x 700 MHz x 8 lanes)
    shave_gbps: float = 5.68         #: SHAVE stages on DDR-resident tensors (fitted)
    shave_layer_ms: float = 0.02     #: per SHAVE stage (fitted)
    trans_ops: float = 8.0           #: SHAVE ops per element of a transcendental activation / softmax (fitted)
    overlap: float = 0.5             #: share of min(compute, memory) hidden behind the other, 0..1 (fitted)
    spill_eff: float = 0.7           #: NCE compute efficiency of layers spilled to DDR (not in CMX), 0..1 (fitted)
    fixed_ms: float = 1.0            #: per inference, device (fitted)
    host_ms: float = 1.5             #: host/driver round trip of one synchronous request (fitted)
    usb3_gbps: float = 0.30          #: FP32 host I/O over USB 3 (assumed)
    usb2_gbps: float = 0.035         #: FP32 host I/O over USB 2 (fitted)
    period_ratio: float = 1.75       #: single-request latency / throughput period (fitted)
    shaves: int = 8                  #: SHAVEs of one request under two streams (published: Luxonis RVC2)
    #: SHAVEs of an activation / scale / convert / up-sampling stage, and of an Eltwise next to a
    #: hardware stage (published: plugin source, ``TwoOrOne``, ``SHAVES_LIMITATION_FOR_HW``)
    post_op_shaves: int = 2
    streams: int = 2                 #: plugin executor streams: 2 (default) or 1
    single_stream_speedup: float = 2.0  #: compute-rate factor with ``streams=1`` (assumed)
    include_host: bool = False       #: add the host/USB term to the reported latency
    link: str = "usb3"               #: host link for ``include_host``: 'usb3' or 'usb2'
    mode: str = "latency"            #: 'latency' (one request) or 'throughput' (period)
    power_w: float = 1.95            #: device power under load (published: 1.9-2.0 W)

    def __post_init__(self) -> None:
        if self.streams not in (1, 2):
            raise BackendError(f"myriadx option streams={self.streams}: expected 1 or 2")
        if self.link not in ("usb3", "usb2"):
            raise BackendError(f"myriadx option link={self.link!r}: expected 'usb3' or 'usb2'")
        if self.mode not in ("latency", "throughput"):
            raise BackendError(f"myriadx option mode={self.mode!r}: expected 'latency' or 'throughput'")
        for k in ("util_blend", "overlap", "spill_eff"):
            if not 0.0 <= getattr(self, k) <= 1.0:
                raise BackendError(f"myriadx option {k}={getattr(self, k)}: expected 0..1")
        for f in fields(self):
            v = getattr(self, f.name)
            if f.name not in ("util_blend", "overlap", "spill_eff", "include_host", "link", "mode",
                              "streams") and \
                    (not isinstance(v, (int, float)) or v < 0 or (v == 0 and f.name.endswith(("gops", "gbps")))):
                raise BackendError(f"myriadx option {f.name}={v!r}: must be a number > 0")
        if self.channel_block < 1 or self.period_ratio <= 0:
            raise BackendError("myriadx options channel_block >= 1 and period_ratio > 0 required")


#: where each constant comes from: 'fitted' (here, on the published measurements), 'published'
#: (ANNETTE's NCS2 micro-benchmark fits, hardware facts) or 'assumed' (no public data)
PARAM_SOURCES: dict[str, str] = {
    "nce_gops": "fitted", "util_blend": "fitted", "nce_layer_ms": "fitted", "dw_gops": "fitted",
    "deconv_gops": "fitted", "shave_gops": "fitted", "shave_gbps": "fitted", "shave_layer_ms": "fitted",
    "fixed_ms": "fitted", "host_ms": "fitted", "usb2_gbps": "fitted",
    "period_ratio": "fitted", "pool_gbps": "fitted", "trans_ops": "fitted", "overlap": "fitted",
    "spill_eff": "fitted",
    "ddr_gbps": "fitted",
    "channel_block": "published", "shaves": "published", "post_op_shaves": "published", "dw_gbps": "published",
    "pool_gops": "published",
    "cmx_mb": "published", "power_w": "published",
    "cmx_gbps": "assumed", "usb3_gbps": "assumed", "single_stream_speedup": "assumed",
}

#: fitted parameters: (name, prior value, prior sigma in log space or 'logit' space)
FIT_SPEC: tuple[tuple[str, float, float], ...] = (
    ("nce_gops", 319.5, 0.7), ("util_blend", 0.5, 2.0), ("nce_layer_ms", 0.08, 1.0), ("dw_gops", 12.2, 1.0),
    ("deconv_gops", 100.5, 1.0), ("shave_gops", 44.8, 1.0), ("shave_gbps", 5.68, 1.0),
    ("shave_layer_ms", 0.02, 1.5), ("fixed_ms", 1.0, 1.5), ("host_ms", 1.5, 1.0),
    ("usb2_gbps", 0.035, 1.0), ("pool_gbps", 0.58, 1.0), ("trans_ops", 8.0, 1.0), ("overlap", 0.5, 2.0),
    ("ddr_gbps", 5.68, 1.0), ("spill_eff", 0.7, 2.0))
_BOUNDED = {"util_blend", "overlap", "spill_eff"}


# --------------------------------------------------------------------------- lowering

#: stage kinds and the unit they run on
STAGE_UNIT = {"conv": "nce", "dwconv": "nce", "deconv": "nce", "fc": "nce", "pool": "nce",
              "shave": "shave", "concat": "shave", "convert": "shave"}


@dataclass(frozen=True)
class Stage:
    """One executed stage of the plugin. Sizes in elements; ``macs`` multiply-accumulates;
    ``eff`` the product of the input and output channel utilisations; ``elem_ops`` SHAVE element
    operations (pooling: ``k x k x outputs``); ``ops`` the graph ops it executes."""

    kind: str
    name: str
    ops: tuple[int, ...]
    macs: float = 0.0
    eff: float = 1.0
    act_elems: float = 0.0
    w_elems: float = 0.0
    elem_ops: float = 0.0
    fused: tuple[str, ...] = ()
    attrs: dict[str, Any] = field(default_factory=dict)

    @property
    def unit(self) -> str:
        """'nce' or 'shave'."""
        return STAGE_UNIT[self.kind]


def _eff(c: float, block: int) -> float:
    return c / (math.ceil(c / block) * block) if c > 0 else 1.0


def _transcendental(op: Op) -> bool:
    return op.kind == "act" and op.attrs.get("fn") in _TRANSCENDENTAL or op.kind in ("softmax", "norm")


def _post_op(op: Op) -> bool:
    """Whether the plugin runs ``op`` as a stage on one or two SHAVEs (``StageSHAVEsRequirements::
    TwoOrOne``): activations and the per-channel scale / bias of a stand-alone batch norm
    (its ``PostOpStage`` kernels) and nearest-neighbour up-sampling."""
    if op.kind in ("act", "bn"):
        return True
    return op.kind == "resize" and "linear" not in str(op.attrs.get("mode"))


def _elem_factor(op: Op) -> float:
    """Element operations per output element on the SHAVEs (transcendentals: see ``trans_ops``)."""
    if op.kind == "resize" and "linear" in str(op.attrs.get("mode")):
        return 4.0
    return 1.0


def _conv_stage(op: Op, block: int) -> Stage:
    a = op.attrs
    if op.kind == "linear":
        return Stage("fc", op.name, (op.index,), macs=float(op.macs),
                     eff=_eff(a["in_features"], block) * _eff(a["out_features"], block),
                     act_elems=float(op.in_numel + op.out_numel), w_elems=float(op.params))
    cin, cout, g = a["cin"], a["cout"], a["groups"]
    kh, kw = a["k"]
    sh, sw = a["stride"]
    act = float(op.in_numel + op.out_numel)
    if g > 1 and g == cin and cout % g == 0:
        kind = "dwconv"
        eff = 1.0
    else:
        kind = "deconv" if op.kind == "deconv" else "conv"
        eff = _eff(cin / g, block) * _eff(cout / g, block)
    attrs = {"k": (kh, kw), "stride": (sh, sw), "padding": a["padding"], "groups": g}
    if op.kind == "conv" and tuple(a.get("dilation", (1, 1))) != (1, 1):
        attrs["reorder_elems"] = act  # space-to-batch of input and output on the SHAVEs
    if op.kind == "conv" and (max(kh, kw) > _NCE_MAX_K or max(sh, sw) > _NCE_MAX_STRIDE or sh != sw):
        return Stage("shave", op.name, (op.index,), act_elems=act, w_elems=float(op.params),
                     elem_ops=2.0 * op.macs, attrs=attrs)
    return Stage(kind, op.name, (op.index,), macs=float(op.macs), eff=eff, act_elems=act,
                 w_elems=float(op.params), attrs=attrs)


_SLICES = {"chunk", "split", "unbind", "__getitem__", "narrow", "select"}


def _concat_stage(graph: Graph, op: Op, owner: dict[int, int], stages: list[Stage], claimed: set[int]) -> Stage:
    """A concat as the plugin processes it (``SpecialStageProcessor::processConcat``): each input is
    written in place into its slice of the output unless it cannot be a child of the output. A copy
    is *required* for the network input, for a slice of another tensor (a split output already has a
    parent) and for a value already placed in another concat; an input produced by a hardware stage
    gets an *optional* copy, which the plugin eliminates only when the whole output fits in CMX
    (``eliminateCopyStages``); inputs from SHAVE stages and chained concats need none."""
    req = opt = 0.0
    n_req = n_opt = 0
    for k, i in enumerate(op.inputs):
        n = float(math.prod(op.in_shapes[k]))
        src = i
        while src >= 0 and graph.ops[src].kind == "reshape" and graph.ops[src].op not in _SLICES:
            src = graph.ops[src].inputs[0] if graph.ops[src].inputs else -1
        if src < 0 or graph.ops[src].op in _SLICES or src in claimed or src not in owner:
            req, n_req = req + n, n_req + 1
            continue
        claimed.add(src)
        if stages[owner[src]].unit == "nce":
            opt, n_opt = opt + n, n_opt + 1
    return Stage("concat", op.name, (op.index,), act_elems=2.0 * op.out_numel,
                 attrs={"copy_elems": req, "copies": n_req, "opt_copy_elems": opt, "opt_copies": n_opt})


def lower(graph: Graph, block: int = 32) -> list[Stage]:
    """The stages the MYRIAD plugin executes for ``graph`` (fusions applied, see the module
    docstring), plus the conversion stages of the network input and outputs."""
    stages: list[Stage] = []
    owner: dict[int, int] = {}  # op index -> stage producing its value
    claimed: set[int] = set()  # values already placed inside a concat's output

    def tail(i: int) -> int | None:
        """Stage whose last op is ``i`` when ``i`` has a single consumer."""
        if i < 0 or i not in owner or len(graph.consumers[i]) != 1:
            return None
        s = stages[owner[i]]
        return owner[i] if s.ops and s.ops[-1] == i else None

    def grow(si: int, op: Op, tag: str | None) -> None:
        s = stages[si]
        stages[si] = replace(s, ops=s.ops + (op.index,), fused=s.fused + ((tag,) if tag else ()))
        owner[op.index] = si

    for op in graph.ops:
        k = op.kind
        p = op.inputs[0] if op.inputs else -1
        if k == "reshape":
            if p in owner:
                t = tail(p)
                if t is not None:
                    grow(t, op, None)  # transparent: later ops may still fuse
                else:
                    owner[op.index] = owner[p]
            continue
        if k in ("conv", "deconv", "linear"):
            stages.append(_conv_stage(op, block))
            owner[op.index] = len(stages) - 1
            continue
        t = tail(p)
        if t is not None:
            ts = stages[t]
            if k == "bn" and ts.kind in ("conv", "dwconv", "deconv", "fc") and \
                    not any(f in _FUSABLE_ACTS or f == "pool" for f in ts.fused):
                grow(t, op, "bn")  # folded into the weights at conversion
                continue
            if k == "eltwise" and not op.attrs.get("binary", True) and len(op.inputs) == 1 and \
                    ts.kind in ("conv", "dwconv", "deconv", "fc") and not ts.fused:
                grow(t, op, "scale")  # multiply / add by a constant folds into the weights
                continue
            if k == "act" and op.attrs.get("fn") in _FUSABLE_ACTS and \
                    (ts.unit == "nce" or (ts.kind == "shave" and ts.attrs.get("elt"))) and \
                    not any(f in _FUSABLE_ACTS for f in ts.fused):
                grow(t, op, str(op.attrs["fn"]))
                continue
            if k == "pool" and op.attrs.get("k") == (2, 2) and op.attrs.get("stride") == (2, 2) and \
                    ts.kind == "conv" and ts.attrs["k"] == (3, 3) and ts.attrs["stride"] == (1, 1) and \
                    ts.attrs["padding"] in ((1, 1), "same") and ts.attrs["groups"] == 1 and "pool" not in ts.fused:
                grow(t, op, "pool")  # Conv(3x3 s1 p1) + Pool(2x2 s2)
                continue
        act = float(op.in_numel + op.out_numel)
        if k == "pool":
            kh, kw = op.attrs.get("k", (1, 1))
            sh, sw = op.attrs.get("stride", (1, 1))
            ops_ = float(op.out_numel * kh * kw)
            if max(kh, kw) <= _NCE_MAX_K and max(sh, sw) <= _NCE_MAX_STRIDE:
                stages.append(Stage("pool", op.name, (op.index,), act_elems=act, elem_ops=ops_))
            else:
                stages.append(Stage("shave", op.name, (op.index,), act_elems=act, elem_ops=float(op.in_numel)))
        elif k == "concat":
            stages.append(_concat_stage(graph, op, owner, stages, claimed))
        else:  # element-wise, activations, stand-alone BN, resize, softmax, reductions, copies
            elt = k in ("eltwise", "bn")
            n = float(max(op.out_numel, op.in_numel if k == "reduce" else 0))
            stages.append(Stage("shave", op.name, (op.index,), act_elems=act,
                                elem_ops=0.0 if _transcendental(op) else _elem_factor(op) * n,
                                attrs={"elt": elt, "op": op.op, "trans_elems": n if _transcendental(op) else 0.0,
                                       "few_shaves": _post_op(op)}))
        owner[op.index] = len(stages) - 1
    for si, s in enumerate(stages):  # Eltwise next to a hardware stage: limited to a few SHAVEs
        if s.kind == "shave" and s.attrs.get("elt") and not s.attrs["few_shaves"]:
            first, last = graph.ops[s.ops[0]], s.ops[-1]
            near = [owner[i] for i in first.inputs if i in owner] + \
                   [owner[c] for c in graph.consumers[last] if c in owner]
            if any(stages[j].unit == "nce" for j in near if j != si):
                stages[si] = replace(s, attrs={**s.attrs, "few_shaves": True})
    n_in = math.prod(graph.input_shape)
    outs = [o for o in graph.ops if not graph.consumers[o.index]]
    n_out = sum(o.out_numel for o in outs)
    conv = [Stage("convert", "input_convert", (), act_elems=3.0 * n_in, elem_ops=float(n_in),
                  attrs={"few_shaves": True})]
    conv.append(Stage("convert", "output_convert", (), act_elems=3.0 * n_out, elem_ops=float(n_out),
                      attrs={"outputs": len(outs), "few_shaves": True}))
    return [conv[0], *stages, conv[1]]


def place(graph: Graph) -> list[str]:
    """Unit of each graph op: 'nce', 'pool', 'shave', 'fused' (no time of its own) or 'free'."""
    unit = ["free"] * len(graph.ops)
    for s in lower(graph):
        for j, i in enumerate(s.ops):
            if graph.ops[i].kind == "reshape":
                continue
            if j == 0:
                unit[i] = "pool" if s.kind == "pool" else s.unit
            else:
                unit[i] = "fused"
    return unit


def io_elems(graph: Graph) -> float:
    """Elements crossing the host link: the network input and all outputs."""
    return float(math.prod(graph.input_shape) + sum(o.out_numel for o in graph.ops if not graph.consumers[o.index]))


# --------------------------------------------------------------------------- costing

_KIND_CODE = {k: i for i, k in enumerate(STAGE_UNIT)}


@dataclass(frozen=True)
class StageTable:
    """Stages of one graph as arrays, for fast evaluation under many parameter values."""

    names: tuple[str, ...]
    kind: np.ndarray
    macs: np.ndarray
    eff: np.ndarray
    act_bytes: np.ndarray
    w_bytes: np.ndarray
    elem_ops: np.ndarray
    reorder_bytes: np.ndarray
    trans_elems: np.ndarray
    few_shaves: np.ndarray  #: SHAVE stages the plugin runs on ``post_op_shaves`` SHAVEs (bool)
    copy_bytes: np.ndarray  #: concat inputs that must be copied (bytes)
    copies: np.ndarray  #: their number (copy stages)
    opt_copy_bytes: np.ndarray  #: concat inputs from hardware stages, copied unless the output is in CMX (bytes)
    opt_copies: np.ndarray  #: their number
    io_bytes: float  #: FP32 host input + outputs (bytes)
    total_macs: float
    params: float

    @classmethod
    def of(cls, graph: Graph, block: int = 32, stages: list[Stage] | None = None) -> StageTable:
        """Table of ``graph`` (its :func:`lower` stages, or ``stages`` when given)."""
        st = stages if stages is not None else lower(graph, block)
        return cls(tuple(s.name for s in st), np.array([_KIND_CODE[s.kind] for s in st]),
                   np.array([s.macs for s in st]), np.array([s.eff for s in st]),
                   2.0 * np.array([s.act_elems for s in st]), 2.0 * np.array([s.w_elems for s in st]),
                   np.array([s.elem_ops for s in st]),
                   2.0 * np.array([float(s.attrs.get("reorder_elems", 0.0)) for s in st]),
                   np.array([float(s.attrs.get("trans_elems", 0.0)) for s in st]),
                   np.array([bool(s.attrs.get("few_shaves", False)) for s in st]),
                   2.0 * np.array([float(s.attrs.get("copy_elems", 0.0)) for s in st]),
                   np.array([float(s.attrs.get("copies", 0)) for s in st]),
                   2.0 * np.array([float(s.attrs.get("opt_copy_elems", 0.0)) for s in st]),
                   np.array([float(s.attrs.get("opt_copies", 0)) for s in st]), 4.0 * io_elems(graph),
                   float(graph.total_macs), float(sum(o.params for o in graph.ops)))


def stage_costs(t: StageTable, p: MyriadXParams) -> dict[str, np.ndarray]:
    """Per-stage cost components (ms): ``overhead``, ``compute``, ``memory`` (the larger of
    compute and memory counts), ``reorder`` (dilated convs) and ``total``; plus boolean
    ``compute_bound`` and ``cmx`` (working set in CMX)."""
    K = _KIND_CODE
    kind = t.kind
    speed = p.single_stream_speedup if p.streams == 1 else 1.0
    share = p.cmx_mb * 1e6 * (1.0 if p.streams == 1 else 0.5)
    cmx = t.act_bytes <= share  # activations resident in CMX; weights always stream from DDR
    act_gbps = np.where(cmx, p.cmx_gbps, p.ddr_gbps)
    util = (1.0 - p.util_blend) + p.util_blend * t.eff
    n = len(kind)
    compute = np.zeros(n)
    memory = np.zeros(n)
    overhead = np.zeros(n)
    reorder = np.zeros(n)
    m = (kind == K["conv"]) | (kind == K["deconv"])
    rate = np.where(kind == K["deconv"], p.deconv_gops, p.nce_gops) * np.where(cmx, 1.0, p.spill_eff)
    compute[m] = 2.0 * t.macs[m] / (rate[m] * 1e9 * speed * util[m]) * 1e3
    memory[m] = (t.act_bytes[m] / act_gbps[m] + t.w_bytes[m] / p.ddr_gbps) / 1e9 * 1e3
    m = kind == K["dwconv"]
    compute[m] = 2.0 * t.macs[m] / (p.dw_gops * 1e9 * speed) * 1e3
    memory[m] = (t.act_bytes[m] / np.where(cmx[m], p.cmx_gbps, p.dw_gbps) + t.w_bytes[m] / p.ddr_gbps) / 1e9 * 1e3
    m = kind == K["fc"]
    compute[m] = 2.0 * t.macs[m] / (p.nce_gops * 1e9 * speed * util[m]) * 1e3
    memory[m] = (t.w_bytes[m] / p.ddr_gbps + t.act_bytes[m] / p.cmx_gbps) / 1e9 * 1e3
    m = kind == K["pool"]
    compute[m] = t.elem_ops[m] / (p.pool_gops * 1e9 * speed) * 1e3
    memory[m] = t.act_bytes[m] / (p.pool_gbps * 1e9) * 1e3
    nce = np.isin(kind, [K[k] for k in ("conv", "deconv", "dwconv", "fc", "pool")])
    overhead[nce] = p.nce_layer_ms
    sh = np.isin(kind, [K["shave"], K["convert"]])
    # a stage on post_op_shaves of the request's SHAVEs computes and streams (each SHAVE moves its
    # slice of the tensor through its own CMX slice) at that share of the fitted 8-SHAVE rates
    few = min(p.post_op_shaves, p.shaves) / p.shaves
    shave_speed = np.where(t.few_shaves, few, speed)
    compute[sh] = (t.elem_ops[sh] + p.trans_ops * t.trans_elems[sh]) / (p.shave_gops * 1e9 * shave_speed[sh]) * 1e3
    shave_ms = t.act_bytes / (np.where(cmx, p.cmx_gbps, p.shave_gbps) * np.where(t.few_shaves, few, 1.0) * 1e9) * 1e3
    memory[sh] = shave_ms[sh]
    overhead[sh] = p.shave_layer_ms
    m = kind == K["concat"]
    # concat copies (DMA): read and write of each copied input, in CMX when the output is there
    # (then the optional copies are eliminated), else through DDR; one stage overhead per copy
    copied = t.copy_bytes + np.where(cmx, 0.0, t.opt_copy_bytes)
    n_copies = t.copies + np.where(cmx, 0.0, t.opt_copies)
    memory[m] = 2.0 * copied[m] / (np.where(cmx[m], p.cmx_gbps, p.ddr_gbps) * 1e9) * 1e3
    overhead[m] = n_copies[m] * p.shave_layer_ms
    m = t.reorder_bytes > 0  # dilated convolutions: SHAVE re-ordering of input and output
    reorder[m] = 2.0 * p.shave_layer_ms + t.reorder_bytes[m] / (p.shave_gbps * 1e9) * 1e3
    bound = np.maximum(compute, memory)
    total = overhead + bound + (1.0 - p.overlap) * (compute + memory - bound) + reorder
    return {"overhead": overhead, "compute": compute, "memory": memory, "reorder": reorder, "total": total,
            "compute_bound": compute >= memory, "cmx": cmx}


def predict_table(t: StageTable, p: MyriadXParams, quantity: str = "device") -> float:
    """Predicted value (ms) of ``quantity`` (see :data:`QUANTITIES`) for a stage table."""
    layers = float(stage_costs(t, p)["total"].sum())
    if quantity == "device_layers":
        return layers
    device = p.fixed_ms + layers
    if quantity == "device":
        return device
    if quantity == "period":
        return device / p.period_ratio
    if quantity in ("e2e_usb3", "e2e_usb2"):
        return device + host_ms(t.io_bytes, p, quantity[-4:])
    raise BackendError(f"unknown latency quantity {quantity!r}; expected one of {', '.join(QUANTITIES)}")


def stack(tables: list[StageTable]) -> tuple[StageTable, np.ndarray]:
    """All ``tables`` as one (for evaluating many networks in one pass) and each one's first row."""
    starts = np.cumsum([0] + [len(t.kind) for t in tables[:-1]])
    cat = {f: np.concatenate([getattr(t, f) for t in tables])
           for f in ("kind", "macs", "eff", "act_bytes", "w_bytes", "elem_ops", "reorder_bytes", "trans_elems",
                     "few_shaves", "copy_bytes", "copies", "opt_copy_bytes", "opt_copies")}
    one = StageTable(names=(), io_bytes=0.0, total_macs=0.0, params=0.0, **cat)
    return one, starts


def predict_many(stacked: StageTable, starts: np.ndarray, io_bytes: np.ndarray, quantities: list[str],
                 p: MyriadXParams) -> np.ndarray:
    """:func:`predict_table` of many networks at once (``stacked``, ``starts``: :func:`stack`)."""
    layers = np.add.reduceat(stage_costs(stacked, p)["total"], starts)
    q = np.asarray(quantities)
    device = p.fixed_ms + layers
    out = np.where(q == "device_layers", layers, device)
    out = np.where(q == "period", device / p.period_ratio, out)
    for link in ("usb3", "usb2"):
        gbps = p.usb2_gbps if link == "usb2" else p.usb3_gbps
        out = np.where(q == f"e2e_{link}", device + p.host_ms + io_bytes / (gbps * 1e9) * 1e3, out)
    return out


def host_ms(io_bytes: float, p: MyriadXParams, link: str | None = None) -> float:
    """Host/USB term (ms): round trip ``host_ms`` + FP32 input and outputs (``io_bytes``) over the link."""
    gbps = p.usb2_gbps if (link or p.link) == "usb2" else p.usb3_gbps
    return p.host_ms + io_bytes / (gbps * 1e9) * 1e3


def breakdown(t: StageTable, p: MyriadXParams) -> dict[str, float]:
    """Device latency (ms) split by where its constants come from: 'fitted', 'published', 'assumed'.

    Per stage: the overhead and dilated-conv re-ordering are fitted terms; the compute term is
    fitted (NCE conv / depthwise / deconv rates, SHAVE rate) or published (pooling, fully
    connected); the memory term is assumed for CMX-resident activations, published for the
    pooling, depthwise and fully-connected roofs and fitted for DDR / SHAVE streaming. The binding
    term counts fully and the other one by its un-hidden share ``1 - overlap``; ``fixed_ms`` is
    fitted. The three parts sum to the device latency.
    """
    K = _KIND_CODE
    c = stage_costs(t, p)
    out = {"fitted": p.fixed_ms, "published": 0.0, "assumed": 0.0}
    for i in range(len(t.kind)):
        k = int(t.kind[i])
        out["fitted"] += c["overhead"][i] + c["reorder"][i]
        comp_src = "published" if k == K["pool"] else "fitted"
        cmx_part = t.act_bytes[i] / (p.cmx_gbps * 1e9) * 1e3 if c["cmx"][i] else 0.0
        if k not in (K["pool"], K["fc"]) and c["cmx"][i] and cmx_part >= 0.5 * c["memory"][i]:
            mem_src = "assumed"  # CMX-resident streaming (cmx_gbps)
        elif k == K["dwconv"]:
            mem_src = "published"  # dw_gbps
        else:
            mem_src = "fitted"  # ddr_gbps (weights, spilled activations), shave_gbps, pool_gbps
        comp, mem = c["compute"][i], c["memory"][i]
        hidden = 1.0 - p.overlap
        if comp >= mem:
            out[comp_src] += comp
            out[mem_src] += hidden * mem
        else:
            out[mem_src] += mem
            out[comp_src] += hidden * comp
    return out


class MyriadXLatencyModel:
    """Per-stage latency model of one Myriad X inference (see the module docstring)."""

    def __init__(self, params: MyriadXParams | None = None) -> None:
        self.params = params or MyriadXParams()

    @property
    def quantity(self) -> str:
        """What :meth:`predict` reports: 'device', 'e2e_usb3', 'e2e_usb2' or 'period'."""
        p = self.params
        if p.mode == "throughput":
            return "period"
        return f"e2e_{p.link}" if p.include_host else "device"

    def table(self, graph: Graph) -> StageTable:
        """Stage table of ``graph``."""
        return StageTable.of(graph, self.params.channel_block)

    def describe(self) -> str:
        """One line: what the reported latency is and where the constants come from."""
        q = {"device": "single-request device latency (two streams, no host)",
             "period": "throughput period (device latency / period_ratio)",
             "e2e_usb3": "single-request latency with host/USB 3", "e2e_usb2": "single-request latency with host/USB 2"}
        src = f"fitted in {CALIBRATION_FILE.name}" if CALIBRATION_FILE.exists() else "uncalibrated priors"
        return (f"per-stage NCE/SHAVE model ({q[self.quantity]}, streams={self.params.streams}); "
                f"constants {src}, published (ANNETTE) or assumed (PARAM_SOURCES)")

    def predict(self, graph: Graph) -> LatencyReport:
        """Emulated latency report (ms, mJ) with per-stage rows (unit, fused ops, components)."""
        p = self.params
        st = lower(graph, p.channel_block)
        t = StageTable.of(graph, p.channel_block, st)
        c = stage_costs(t, p)
        device = p.fixed_ms + float(c["total"].sum())
        per_layer: list[dict[str, Any]] = [{"name": "fixed", "type": "overhead", "unit": "device",
                                            "time_ms": p.fixed_ms}]
        for i, s in enumerate(st):
            first = graph.ops[s.ops[0]].op if s.ops else s.kind
            per_layer.append({"name": s.name, "type": first, "stage": s.kind, "unit": s.unit,
                              "time_ms": float(c["total"][i]),
                              "fused": list(s.fused), "overhead_ms": float(c["overhead"][i]),
                              "compute_ms": float(c["compute"][i]), "memory_ms": float(c["memory"][i]),
                              "ops": [graph.ops[j].name for j in s.ops]})
        q = self.quantity
        if q == "period":
            total = device / p.period_ratio
            per_layer.append({"name": "throughput", "type": "period", "unit": "device",
                              "time_ms": total - device})
        elif q.startswith("e2e"):
            h = host_ms(t.io_bytes, p)
            per_layer.append({"name": "host_usb", "type": "overhead", "unit": "host", "time_ms": h})
            total = device + h
        else:
            total = device
        return LatencyReport(latency_ms=total, spread_ms=0.0, energy_mj=p.power_w * device, method="emulated",
                             per_layer=tuple(per_layer))

    def predict_model(self, model: nn.Module, input_shape: tuple[int, ...]) -> LatencyReport:
        """Trace ``model`` at ``input_shape`` and :meth:`predict`."""
        return self.predict(trace_graph(model, tuple(input_shape)))


# --------------------------------------------------------------------------- fitting


def _to_free(name: str, v: float) -> float:
    if name in _BOUNDED:
        v = min(max(v, 1e-4), 1 - 1e-4)
        return math.log(v / (1 - v))
    return math.log(v)


def _from_free(name: str, x: float) -> float:
    if name in _BOUNDED:
        return 1.0 / (1.0 + math.exp(-x))
    return math.exp(x)


def _with(base: MyriadXParams, names: list[str], x: np.ndarray) -> MyriadXParams:
    values: dict[str, Any] = {n: _from_free(n, float(v)) for n, v in zip(names, x, strict=True)}
    return replace(base, **values)


def latency_period_pairs(points: Any) -> list[tuple[str, float]]:
    """(point name, measured latency / period) for every network and input measured both ways by
    one source (single-request latency and throughput period)."""
    out = []
    for a in points:
        if a.quantity != "device":
            continue
        for b in points:
            if b.quantity == "period" and b.kwargs == a.kwargs and \
                    (b.family, b.network, b.input_shape, b.source) == (a.family, a.network, a.input_shape, a.source):
                out.append((a.name, a.ms / b.ms))
    return out


def fit(points: Any, tables: list[StageTable], base: MyriadXParams | None = None, prior_weight: float = 0.05,
        names: list[str] | None = None) -> MyriadXParams:
    """Fit the free parameters to the measured ``points`` (with their stage ``tables``).

    1. ``period_ratio`` = geometric mean of the measured latency / period pairs among ``points``
       (:func:`latency_period_pairs`; the prior 1.75 when there is none): the explicit relation
       through which throughput points enter; they are never fitted as latencies.
    2. The other parameters of :data:`FIT_SPEC` minimise ``sum_points w * log(pred / measured)^2``
       (``w`` = 1 / points of the family, so every family weighs the same; low-confidence points
       are left out) plus ``prior_weight * sum ((x - x0) / sigma)^2`` in log (logit for 0..1 shares)
       space: the priors keep parameters that no remaining point exercises near their published /
       physical values.
    """
    from scipy.optimize import least_squares

    base = base or MyriadXParams()
    pairs = latency_period_pairs(points)
    ratio = float(np.exp(np.mean(np.log([r for _, r in pairs])))) if pairs else 1.75
    base = replace(base, period_ratio=ratio)
    use = [i for i, pt in enumerate(points) if pt.confidence != "low"]
    pts = [points[i] for i in use]
    tabs = [tables[i] for i in use]
    spec = [s for s in FIT_SPEC if names is None or s[0] in names]
    names_ = [s[0] for s in spec]
    x0 = np.array([_to_free(n, v) for n, v, _ in spec])
    sig = np.array([s for _, _, s in spec])
    y = np.log(np.array([pt.ms for pt in pts]))
    fam = np.array([pt.family for pt in pts])
    w = np.sqrt(np.array([1.0 / np.sum(fam == f) for f in fam]))
    stacked, starts = stack(tabs)
    io = np.array([t.io_bytes for t in tabs])
    qs = [pt.quantity for pt in pts]

    def resid(x: np.ndarray) -> np.ndarray:
        pred = predict_many(stacked, starts, io, qs, _with(base, names_, x))
        return np.concatenate([w * (np.log(np.maximum(pred, 1e-9)) - y), math.sqrt(prior_weight) * (x - x0) / sig])

    best = least_squares(resid, x0, method="trf", x_scale=sig, max_nfev=200 * len(x0))
    return _with(base, names_, best.x)


def point_tables(points: Any = None, block: int = 32) -> list[StageTable]:
    """Stage tables of the calibration points (traced on torch's meta device: shapes only)."""
    import torch

    from dalp_moo.backends.zoo.myriad_points import POINTS

    out = []
    cache: dict[tuple, StageTable] = {}
    for pt in (points if points is not None else POINTS):
        key = (pt.network, tuple(sorted(pt.kwargs.items())), pt.input_shape)
        if key not in cache:
            with torch.device("meta"):
                net = pt.build()
            cache[key] = StageTable.of(trace_graph(net, pt.input_shape), block)
        out.append(cache[key])
    return out


def _kendall(a: np.ndarray, b: np.ndarray) -> float:
    from scipy.stats import kendalltau

    return float(kendalltau(a, b).statistic)


def _fitted(p: MyriadXParams) -> dict[str, float]:
    return {n: float(getattr(p, n)) for n in [s[0] for s in FIT_SPEC] + ["period_ratio"]}


def cross_validate(points: Any = None, tables: list[StageTable] | None = None,
                   base: MyriadXParams | None = None, prior_weight: float = 0.05,
                   group: str = "family") -> dict[str, Any]:
    """Leave-one-``group``-out validation ('family' or 'source'): fit on all other points (their
    latency/period pairs included), predict the held-out ones. Returns per-point rows and summary
    errors (fractions of the measured value) and Kendall tau over all held-out predictions."""
    from dalp_moo.backends.zoo.myriad_points import POINTS

    pts = list(points if points is not None else POINTS)
    tables = tables if tables is not None else point_tables(pts)
    keys = [getattr(p, group) for p in pts]
    pred = np.zeros(len(pts))
    fitted: dict[str, dict[str, float]] = {}
    for g in dict.fromkeys(keys):
        train = [i for i, k in enumerate(keys) if k != g]
        p = fit([pts[i] for i in train], [tables[i] for i in train], base, prior_weight)
        fitted[g] = _fitted(p)
        for i, k in enumerate(keys):
            if k == g:
                pred[i] = predict_table(tables[i], p, pts[i].quantity)
    y = np.array([p.ms for p in pts])
    rel = pred / y - 1
    rows = [{"name": pt.name, "family": pt.family, "source": pt.source, "quantity": pt.quantity,
             "input": list(pt.input_shape), "gflops": 2 * t.total_macs / 1e9, "measured_ms": pt.ms,
             "cv_pred_ms": float(pr), "cv_rel_error": float(r), "confidence": pt.confidence}
            for pt, t, pr, r in zip(pts, tables, pred, rel, strict=True)]
    hi = np.array([p.confidence != "low" for p in pts])
    by_q = {q: float(np.median(np.abs(rel[[p.quantity == q for p in pts]])))
            for q in dict.fromkeys(p.quantity for p in pts)}
    return {"group": group, "points": rows, "n_points": len(pts), "median_abs_error": float(np.median(np.abs(rel))),
            "mean_abs_error": float(np.mean(np.abs(rel))), "max_abs_error": float(np.max(np.abs(rel))),
            "within_10pct": float(np.mean(np.abs(rel) <= 0.10)), "kendall_tau": _kendall(pred, y),
            "median_abs_error_high_confidence": float(np.median(np.abs(rel[hi]))),
            "median_abs_error_by_quantity": by_q, "fitted_per_fold": fitted}


def calibrate(write: bool = False, prior_weight: float = 0.05) -> dict[str, Any]:
    """Fit on every calibration point, validate leave-one-family-out (and, harder,
    leave-one-source-out); with ``write`` store the fitted parameters in
    ``calibration/myriadx.json``. Returns the fit and validation results."""
    from dalp_moo.backends.zoo.myriad_points import POINTS

    pts = list(POINTS)
    tables = point_tables(pts)
    cv = cross_validate(pts, tables, prior_weight=prior_weight)
    cv_src = cross_validate(pts, tables, prior_weight=prior_weight, group="source")
    full = fit(pts, tables, prior_weight=prior_weight)
    fit_rel = [predict_table(t, full, p.quantity) / p.ms - 1 for t, p in zip(tables, pts, strict=True)]
    pairs = latency_period_pairs(pts)
    result = {"format": FORMAT, "fitted": _fitted(full), "params": asdict(full), "sources": PARAM_SOURCES,
              "prior_weight": prior_weight, "priors": {n: {"value": v, "sigma": s} for n, v, s in FIT_SPEC},
              "n_points": len(pts), "n_families": len({p.family for p in pts}),
              "fit_median_abs_error": float(np.median(np.abs(fit_rel))),
              "fit_rel_errors": {p.name: float(r) for p, r in zip(pts, fit_rel, strict=True)},
              "latency_period_pairs": dict(pairs),
              "cv": {k: v for k, v in cv.items() if k != "fitted_per_fold"},
              "cv_fitted_per_fold": cv["fitted_per_fold"],
              "cv_by_source": {k: v for k, v in cv_src.items() if k not in ("fitted_per_fold",)}}
    if write:
        save_calibration(result)
    return result


def save_calibration(result: dict[str, Any], path: Path = CALIBRATION_FILE) -> Path:
    """Write the fitted parameters and their validation summary (no per-point table)."""
    keep = {k: v for k, v in result.items() if k not in ("cv", "cv_fitted_per_fold", "cv_by_source")}
    keep["cv_summary"] = {k: v for k, v in result["cv"].items() if k != "points"}
    keep["cv_by_source_summary"] = {k: v for k, v in result["cv_by_source"].items() if k != "points"}
    keep["source"] = ("published Myriad X measurements (dalp_moo/backends/zoo/myriad_points.py); "
                      "refit: python benchmarks/latency_fidelity.py --myriad-only")
    path.write_text(json.dumps(keep, indent=2) + "\n")
    return path


def load_params(path: Path | None = None, **overrides: Any) -> MyriadXParams:
    """Calibrated parameters (``calibration/myriadx.json``) with ``overrides`` applied."""
    path = path or CALIBRATION_FILE
    base: dict[str, Any] = {}
    if path.exists():
        try:
            data = json.loads(path.read_text())
            if data.get("format") != FORMAT:
                raise ValueError(f"format {data.get('format')!r}, expected {FORMAT!r}")
            base = {k: float(data["fitted"][k]) for k in [s[0] for s in FIT_SPEC] + ["period_ratio"]}
        except (ValueError, KeyError, TypeError) as exc:
            raise BackendError(f"{path}: corrupt Myriad X calibration ({exc})") from exc
    else:
        logger.warning("no Myriad X latency calibration at %s: using the uncalibrated priors", path)
    known = {f.name for f in fields(MyriadXParams)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise BackendError(f"unknown myriadx option(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    return MyriadXParams(**{**base, **overrides})
