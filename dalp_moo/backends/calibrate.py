"""Host latency calibration on the user's own CPU (``python -m dalp_moo calibrate host``).

:func:`calibrate_host` profiles a deterministic set of networks with the OpenVINO CPU plugin
(random U-Net-style networks of :mod:`dalp_moo.backends.zoo.random_unet` and random candidates of
the default search space, at the configured tile sizes), fits the kernel-level host latency model
(:class:`~dalp_moo.backends.host_model.HostLatencyModel`) on the *fit* networks and measures its
fidelity on *held-out* candidates that were neither profiled nor fitted on: the share within
+-10 %, the median absolute error and Kendall's tau of predicted vs measured latency. It writes the
calibration file of this CPU model (``openvino_cpu_t<threads>_<precision>_<cpu>.json``; by
default into the user calibration folder, which :meth:`HostLatencyModel.load` searches first).

Measurements are appended, one JSON line per network and fsync'd, to a state file in ``work_dir``
keyed by the measurement settings, this CPU model and OpenVINO version: an interrupted calibration
resumes where it stopped, and a finished one refits without measuring.

Each network is measured ``passes`` times (median of ``runs`` timed synchronous inferences after
``warmup``; the minimum over passes is kept: on a virtual machine whose speed changes from second
to second, single measurements of the same network varied by about 20 % and the minimum of 20
passes by 3-5 %, ``benchmarks/host_repeatability.py``). ``clock="cpu"`` (the default, one inference thread)
times an inference by the process CPU time it used: on a host shared with other jobs that is the
latency without the time spent waiting for a core. Fit networks are also profiled per node
(``PERF_COUNT``, median over fresh infer requests) for the kernel-level fit.

Repeatability: at the end, ``retest`` held-out networks are measured a second time (minutes after
their first measurement, same settings). The median and largest relative difference between the
two measurements (``meta["repeatability"]``) is the host's own noise floor: no latency model can be
checked here to better than that, and a median above :data:`REPEATABILITY_WARN` is warned about
(a virtual machine whose cores are shared with other tenants can change speed by tens of per cent
within seconds, which process CPU time does not remove).
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from dalp_moo.errors import ConfigError
from dalp_moo.log import logger

#: per-node profiles summing to more than this multiple of the measured latency mean a busy host
BUSY_PROFILE_RATIO = 1.2
#: test-retest median relative difference above which the host is warned to be not repeatable
REPEATABILITY_WARN = 0.05

#: progress callback: (networks done, total, network id, measured now (False: from the state file))
Progress = Callable[[int, int, str, bool], None]


@dataclass(frozen=True)
class HostCalibrationConfig:
    """What :func:`calibrate_host` measures and fits (counts of networks; times in ms where named)."""

    n_fit_zoo: int = 10            #: random zoo U-Nets to fit on
    n_fit_space: int = 22          #: search-space candidates to fit on
    n_val: int = 12                #: held-out search-space candidates (never fitted on)
    sizes: tuple[int, ...] = (64, 128)  #: tile sizes (pixels), drawn per network
    in_channels: int = 4           #: input bands of the networks
    threads: int = 1               #: OpenVINO inference threads
    runs: int = 20                 #: timed inferences per pass
    warmup: int = 3                #: untimed inferences before each pass
    passes: int = 20               #: measurement passes (minimum kept; 20 repeat to ~2 % on a noisy VM)
    clock: str = "cpu"             #: 'cpu' (process CPU time, needs threads=1) or 'wall'
    precision: str = "f32"         #: OpenVINO inference precision option
    profile_requests: int = 16     #: fresh infer requests per node profile (median)
    rounds: int = 80               #: boosting rounds per kernel regressor
    seed: int = 12345              #: network generator seed
    device: str = "CPU"            #: OpenVINO device
    retest: int = 8                #: held-out networks measured again at the end (repeatability; 0 = none)

    def __post_init__(self) -> None:
        for k in ("n_fit_zoo", "n_fit_space", "n_val", "warmup", "rounds", "retest"):
            if not isinstance(getattr(self, k), int) or getattr(self, k) < 0:
                raise ConfigError(f"calibrate host: {k} must be an integer >= 0, got {getattr(self, k)!r}")
        for k in ("threads", "runs", "passes", "profile_requests", "in_channels"):
            if not isinstance(getattr(self, k), int) or getattr(self, k) < 1:
                raise ConfigError(f"calibrate host: {k} must be an integer >= 1, got {getattr(self, k)!r}")
        if self.n_fit_zoo + self.n_fit_space < 2 or self.n_val < 2:
            raise ConfigError("calibrate host: need at least 2 fit networks and 2 held-out networks")
        if not self.sizes or any(not isinstance(s, int) or s < 32 or s % 32 for s in self.sizes):
            raise ConfigError(f"calibrate host: sizes must be multiples of 32 (five 2x2 poolings), got {self.sizes!r}")
        if self.clock not in ("cpu", "wall"):
            raise ConfigError(f"calibrate host: clock must be 'cpu' or 'wall', got {self.clock!r}")
        if self.clock == "cpu" and self.threads != 1:
            raise ConfigError("calibrate host: clock='cpu' needs threads=1 (CPU time equals latency only "
                              "for one inference thread)")

    def measurement_key(self) -> dict[str, Any]:
        """The settings a stored measurement depends on."""
        keep = ("threads", "runs", "warmup", "passes", "clock", "precision", "profile_requests", "device")
        return {k: getattr(self, k) for k in keep}


@dataclass(frozen=True)
class Network:
    """One calibration network: ``role`` 'fit' or 'val', a stable ``id`` (architecture + shape)."""

    id: str
    role: str
    model: nn.Module
    shape: tuple[int, ...]


@dataclass(frozen=True)
class HostCalibrationResult:
    """Outcome of :func:`calibrate_host`: held-out fidelity (fractions), counts, files, times (s)."""

    path: Path
    state_file: Path
    host: str
    within_10pct: float
    kendall_tau: float
    median_abs_error: float
    max_abs_error: float
    n_fit: int
    n_val: int
    measured_now: int
    reused: int
    measure_s: float
    fit_s: float
    fit_within_10pct: float
    profile_to_latency: float  #: median over fit networks of (sum of profiled node times) / latency
    val: list[dict[str, Any]] = field(default_factory=list)
    n_retest: int = 0  #: held-out networks measured a second time
    retest_median_abs_diff: float | None = None  #: median |second / first - 1| (fraction)
    retest_max_abs_diff: float | None = None  #: largest |second / first - 1| (fraction)

    def summary(self) -> dict[str, Any]:
        """JSON-able summary (without the per-network table)."""
        d = asdict(self)
        d.pop("val")
        d["path"], d["state_file"] = str(self.path), str(self.state_file)
        return d


def space_candidates(n: int, seed: int, in_channels: int = 4, param_cap: int = 100_000) -> list[nn.Module]:
    """``n`` random candidates of the default search space repaired to ``param_cap`` parameters
    (the search's default constraint); eval mode, deterministic for ``seed``."""
    from dalp_moo.config import SpaceConfig
    from dalp_moo.model import ParamCounter, build_model
    from dalp_moo.space import SearchSpace

    cfg = SpaceConfig()
    space = SearchSpace(cfg, param_cap=param_cap, count=ParamCounter(in_channels, cfg.num_classes))
    rng = np.random.default_rng(seed)
    models: list[nn.Module] = []
    for g in space.sample(n, rng):
        arch = space.decode(space.repair(g))
        torch.manual_seed(int(rng.integers(0, 2**31 - 1)))
        models.append(build_model(arch, in_channels).eval())
    return models


def _fingerprint(model: nn.Module, shape: tuple[int, ...]) -> str:
    return hashlib.sha1(f"{model!r}|{shape}".encode()).hexdigest()[:12]


def networks(cfg: HostCalibrationConfig) -> list[Network]:
    """The calibration networks of ``cfg`` (fit networks first), deterministic for its seed."""
    from dalp_moo.backends.zoo.random_unet import random_unet

    rng = np.random.default_rng(cfg.seed)
    fit = [random_unet(rng, cfg.in_channels) for _ in range(cfg.n_fit_zoo)]
    fit += space_candidates(cfg.n_fit_space, 1, cfg.in_channels)
    val = space_candidates(cfg.n_val, 2, cfg.in_channels)
    fit_sizes = rng.choice(list(cfg.sizes), len(fit))
    val_sizes = rng.choice(list(cfg.sizes), len(val))
    out = []
    for role, models, sizes in (("fit", fit, fit_sizes), ("val", val, val_sizes)):
        for m, s in zip(models, sizes, strict=True):
            shape = (1, cfg.in_channels, int(s), int(s))
            out.append(Network(f"{role}-{_fingerprint(m, shape)}", role, m, shape))
    return out


def measure_network(net: Network, cfg: HostCalibrationConfig, profile: bool) -> dict[str, Any]:
    """Deploy ``net`` on OpenVINO and measure it: latency (ms, min over passes), spread (ms), the
    cost of deploying and measuring once (ms) and, with ``profile``, per-node records
    ``[type, output shape, weight shape or None, ms]``."""
    from dalp_moo.backends.openvino_backend import OpenVINODeployment

    t0 = time.perf_counter()
    dep = OpenVINODeployment(net.model, net.shape, cfg.device, cfg.threads, cfg.runs, cfg.warmup, False, "measure",
                             1e-2, 0, clock=cfg.clock, precision=cfg.precision, passes=cfg.passes)
    t_deployed = time.perf_counter()
    best = dep.measure()  # the fastest of cfg.passes passes
    cost = ((t_deployed - t0) + (time.perf_counter() - t_deployed) / cfg.passes) * 1e3  # deploy + one pass
    rec: dict[str, Any] = {"id": net.id, "role": net.role, "shape": list(net.shape), "measured_ms": best.latency_ms,
                           "spread_ms": best.spread_ms, "cost_ms": cost, "load_avg": round(os.getloadavg()[0], 2),
                           "inference_precision": dep.inference_precision}
    if profile:
        kept: tuple[float, list[list[Any]]] | None = None
        for _ in range(3):  # repeat a profile whose sum exceeds the latency by > 5 % (preempted)
            nodes = [[n["type"], n["out_shape"], n["in_shapes"][1] if len(n["in_shapes"]) > 1 else None,
                      round(n["time_ms"], 6)] for n in dep.profile(requests=cfg.profile_requests, runs=1)
                     if n["type"] not in ("Input", "Output")]
            tot = sum(n[3] for n in nodes)
            if kept is None or tot < kept[0]:
                kept = (tot, nodes)
            if tot <= 1.05 * best.latency_ms:
                break
        assert kept is not None
        rec["profile"] = kept[1]
    return rec


def profile_nodes(records: list[list[Any]]) -> list[dict[str, Any]]:
    """Stored profile records -> the node dicts :meth:`HostLatencyModel.fit` matches."""
    return [{"type": t, "out_shape": out, "in_shapes": [out, w] if w else [out], "time_ms": ms}
            for t, out, w, ms in records]


class MeasurementStore:
    """Append-only JSON-lines file of measured networks (one line each, fsync'd)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.records: dict[str, dict[str, Any]] = {}
        if path.exists():
            for i, line in enumerate(path.read_text().splitlines()):
                try:
                    rec = json.loads(line)
                    self.records[rec["id"]] = rec
                except (ValueError, KeyError, TypeError):
                    logger.warning("%s line %d: unreadable measurement skipped (torn write?)", path, i + 1)

    def add(self, rec: dict[str, Any]) -> None:
        """Store ``rec`` durably."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a") as f:
            f.write(json.dumps(rec, separators=(",", ":")) + "\n")
            f.flush()
            os.fsync(f.fileno())
        self.records[rec["id"]] = rec


def default_work_dir() -> Path:
    """Where measurements are kept between runs: ``$XDG_CACHE_HOME/dalp_moo/calibrate``."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "dalp_moo" / "calibrate"


def state_file(cfg: HostCalibrationConfig, work_dir: Path) -> Path:
    """State file of ``cfg``'s measurement settings on this CPU model and OpenVINO version."""
    from dalp_moo.backends.host_model import host_id, host_slug
    from dalp_moo.backends.openvino_backend import ov_version

    key = json.dumps({**cfg.measurement_key(), "host": host_id(), "openvino": ov_version()}, sort_keys=True)
    return work_dir / f"host_{host_slug()}_{hashlib.sha1(key.encode()).hexdigest()[:10]}.jsonl"


#: id prefix of a network's second measurement in the state file
RETEST_PREFIX = "retest-"


def repeatability(records: dict[str, dict[str, Any]], nets: list[Network]) -> dict[str, Any] | None:
    """Test-retest figures of ``nets`` (measured twice in ``records``): count and median / max of
    ``|second / first - 1|`` (fractions); None when none was measured twice."""
    diffs = [abs(records[RETEST_PREFIX + n.id]["measured_ms"] / records[n.id]["measured_ms"] - 1.0)
             for n in nets if n.id in records and RETEST_PREFIX + n.id in records]
    if not diffs:
        return None
    return {"n": len(diffs), "median_abs_diff": float(np.median(diffs)), "max_abs_diff": float(np.max(diffs))}


def _kendall(a: np.ndarray, b: np.ndarray) -> float:
    from scipy.stats import kendalltau

    return float(kendalltau(a, b).statistic)


def calibrate_host(cfg: HostCalibrationConfig | None = None, work_dir: Path | None = None,
                   out: Path | None = None, progress: Progress | None = None,
                   nets: list[Network] | None = None) -> HostCalibrationResult:
    """Measure (or reuse) the calibration networks, fit the host model on the fit networks, validate
    on the held-out ones and write the calibration file (``out``: a file, or a folder for the
    standard file name; default the user calibration folder). See the module docstring."""
    from dalp_moo.backends.graph import trace_graph
    from dalp_moo.backends.host_model import HostLatencyModel, calibration_file, host_id, user_calibration_dir
    from dalp_moo.backends.openvino_backend import check_device, check_precision, effective_precision, ov_version

    cfg = cfg or HostCalibrationConfig()
    check_device(cfg.device)
    check_precision(cfg.precision, cfg.device)
    torch.set_num_threads(1)
    nets = nets if nets is not None else networks(cfg)
    sfile = state_file(cfg, work_dir or default_work_dir())
    store = MeasurementStore(sfile)
    load_before = os.getloadavg()
    cores = os.cpu_count() or 1
    if load_before[0] > cores:
        logger.warning("this host is busy (load average %.1f on %d cores): the per-node profiles are wall-clock "
                       "times and the fit will suffer; calibrate on an otherwise idle machine", load_before[0], cores)
    t0 = time.perf_counter()
    measured = reused = 0
    val_nets = [n for n in nets if n.role == "val"]
    retest = val_nets[:cfg.retest]
    total = len(nets) + len(retest)
    for i, net in enumerate(nets):
        rec = store.records.get(net.id)
        if rec is None or (net.role == "fit" and "profile" not in rec):
            store.add(measure_network(net, cfg, profile=net.role == "fit"))
            measured += 1
            now = True
        else:
            reused += 1
            now = False
        if progress is not None:
            progress(i + 1, total, net.id, now)
    for i, net in enumerate(retest):  # after all the others: minutes after the first measurement
        rid = RETEST_PREFIX + net.id
        now = rid not in store.records
        if now:
            store.add({**measure_network(net, cfg, profile=False), "id": rid, "role": "retest"})
        if progress is not None:
            progress(len(nets) + i + 1, total, rid, now)
    t_measure = time.perf_counter() - t0
    fit_nets = [n for n in nets if n.role == "fit"]
    recs = store.records
    repeat = repeatability(recs, retest)
    used = effective_precision(cfg.device, cfg.precision)
    meta = {"host": host_id(), "openvino": ov_version(), "device": cfg.device.split(".")[0], "threads": cfg.threads,
            "clock": cfg.clock, "precision": cfg.precision, "inference_precision": used,
            "fitted_on": f"{cfg.n_fit_zoo} zoo U-Nets + {cfg.n_fit_space} search-space candidates, tiles "
                         f"{','.join(map(str, cfg.sizes))}, batch 1",
            "calibrated_by": "python -m dalp_moo calibrate host", "created": time.strftime("%Y-%m-%d"),
            "runs": cfg.runs, "warmup": cfg.warmup, "passes": cfg.passes,
            "load_avg_before": [round(v, 2) for v in load_before]}
    t1 = time.perf_counter()
    model = HostLatencyModel.fit([trace_graph(n.model, n.shape) for n in fit_nets],
                                 [recs[n.id]["measured_ms"] for n in fit_nets], meta,
                                 profiles=[profile_nodes(recs[n.id]["profile"]) for n in fit_nets], rounds=cfg.rounds)
    t_fit = time.perf_counter() - t1
    y = np.array([recs[n.id]["measured_ms"] for n in val_nets])
    pred = np.array([model.predict_graph_of(n.model, n.shape)[0] for n in val_nets])
    rel = pred / y - 1
    held = {"within_10pct": float(np.mean(np.abs(rel) <= 0.10)), "kendall_tau": _kendall(pred, y),
            "median_abs_error": float(np.median(np.abs(rel))), "max_abs_error": float(np.max(np.abs(rel))),
            "n_val": len(val_nets)}
    ratio = float(np.median([sum(r[3] for r in recs[n.id]["profile"]) / recs[n.id]["measured_ms"]
                             for n in fit_nets]))
    model.meta["held_out"] = held
    if repeat is not None:
        model.meta["repeatability"] = repeat
        if repeat["median_abs_diff"] > REPEATABILITY_WARN:
            logger.warning("this host's latency is not repeatable: %d networks measured again differ by a median "
                           "%.1f %% (max %.1f %%); no latency model can be checked here to better than that, and "
                           "the held-out fidelity is bounded by it (more --passes help on a host whose speed "
                           "changes; --passes %d now)", repeat["n"], 100 * repeat["median_abs_diff"],
                           100 * repeat["max_abs_diff"], cfg.passes)
    model.meta["profile_to_latency_median"] = ratio
    if ratio > BUSY_PROFILE_RATIO:
        logger.warning("per-node profiles sum to %.2fx the measured latency (median over the fit networks): "
                       "the host was busy while profiling; this calibration is unreliable", ratio)
    model.meta["load_avg_after"] = [round(v, 2) for v in os.getloadavg()]
    if out is None or out.is_dir() or out.suffix != ".json":
        path = calibration_file(cfg.threads, cfg.device.split(".")[0], cfg.precision,
                                directory=out or user_calibration_dir())
    else:
        path = out
    model.save(path)
    logger.info("host latency calibration written to %s (held-out within +-10 %%: %.0f %%, tau %.3f)",
                path, 100 * held["within_10pct"], held["kendall_tau"])
    val_rows = [{"id": n.id, "shape": list(n.shape), "measured_ms": float(m), "predicted_ms": float(p),
                 "spread_ms": float(recs[n.id]["spread_ms"])} for n, m, p in zip(val_nets, y, pred, strict=True)]
    return HostCalibrationResult(path, sfile, host_id(), held["within_10pct"], held["kendall_tau"],
                                 held["median_abs_error"], held["max_abs_error"], len(fit_nets), len(val_nets),
                                 measured, reused, t_measure, t_fit, float(model.meta["fit_within_10pct"]),
                                 ratio, val_rows, n_retest=len(retest),
                                 retest_median_abs_diff=repeat["median_abs_diff"] if repeat else None,
                                 retest_max_abs_diff=repeat["max_abs_diff"] if repeat else None)
