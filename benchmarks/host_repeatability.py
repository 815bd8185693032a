"""How repeatable is a latency measurement on this host? The noise floor of every measured
latency and of any host latency model checked here.

The first ``--nets`` held-out networks of the host calibration (``python -m dalp_moo calibrate
host``'s default set at 64 and 128 px) are compiled once for the OpenVINO CPU plugin (one thread,
f32) and measured in turn, over and over, for ``--seconds``: each measurement is the median of
``--runs`` synchronous inferences (process CPU time, as the calibration measures). Reported per
network: the coefficient of variation and the slowest/fastest ratio of the measurements, and the
same for estimates that pool ``k`` consecutive measurements (their minimum or median), showing
whether measuring longer would make a figure repeatable.

    python benchmarks/host_repeatability.py [--nets 4] [--seconds 120] [--runs 30]

Prints a table and merges this CPU's entry into benchmarks/results/host_repeatability.json
(one entry per CPU model). Everything is measured on this CPU; nothing is emulated.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from data_baseline import write_json  # noqa: E402

from dalp_moo.backends.calibrate import HostCalibrationConfig, networks  # noqa: E402
from dalp_moo.backends.host_model import host_id, host_slug  # noqa: E402
from dalp_moo.backends.openvino_backend import OpenVINODeployment, ov_version  # noqa: E402

OUT = Path(__file__).resolve().parent / "results" / "host_repeatability.json"


def spread(values: np.ndarray) -> dict[str, list[float]]:
    """Per column: coefficient of variation and max/min."""
    return {"cv": (values.std(0) / values.mean(0)).round(4).tolist(),
            "max_over_min": (values.max(0) / values.min(0)).round(3).tolist()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--nets", type=int, default=4, help="held-out calibration networks measured in turn")
    ap.add_argument("--seconds", type=float, default=120.0, help="how long to keep measuring (s)")
    ap.add_argument("--runs", type=int, default=30, help="timed inferences per measurement (median)")
    ap.add_argument("--out", type=Path, default=OUT, help="result JSON")
    args = ap.parse_args()
    torch.set_num_threads(1)
    cfg = HostCalibrationConfig(n_fit_zoo=20, n_fit_space=100, n_val=40)
    nets = [n for n in networks(cfg) if n.role == "val"][:args.nets]
    deps = [OpenVINODeployment(n.model, n.shape, "CPU", 1, args.runs, 5, False, "measure", 1e-2, 0,
                               clock="cpu", precision="f32") for n in nets]
    load_before = os.getloadavg()
    rows: list[list[float]] = []
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < args.seconds:
        rows.append([d.measure().latency_ms for d in deps])
    a = np.array(rows)
    print(f"{host_id()}: {len(a)} rounds of {len(nets)} networks in {time.perf_counter() - t0:.0f} s "
          f"(median of {args.runs} inferences each, process CPU time)")
    print(f"{'estimate':22s} " + " ".join(f"{n.id[-8:]:>16s}" for n in nets))
    pooled: dict[str, Any] = {}
    for k in (1, 5, 20):
        blocks = [a[i:i + k] for i in range(0, len(a) - k + 1, k)]
        if len(blocks) < 2:
            continue
        for name, f in (("min", np.min), ("median", np.median)):
            if k == 1 and name == "median":
                continue
            est = np.array([f(b, axis=0) for b in blocks])
            sp = spread(est)
            label = "one measurement" if k == 1 else f"{name} of {k}"
            pooled[label] = {"k": k, "estimates": len(est), **sp}
            print(f"{label:22s} " + " ".join(f"CV {c:5.1%} x{m:4.2f}".rjust(16)
                                             for c, m in zip(sp["cv"], sp["max_over_min"], strict=True)))
    entry = {"host": host_id(), "cores": os.cpu_count(), "openvino": ov_version(), "torch": torch.__version__,
             "networks": [{"id": n.id, "shape": list(n.shape)} for n in nets], "runs": args.runs,
             "seconds": args.seconds, "rounds": len(a), "median_ms": np.median(a, 0).round(4).tolist(),
             "min_ms": a.min(0).round(4).tolist(), "estimators": pooled,
             "load_avg_before": list(load_before), "load_avg_after": list(os.getloadavg()),
             "measured": True, "created": time.strftime("%Y-%m-%d %H:%M"),
             "command": "python benchmarks/host_repeatability.py " + " ".join(sys.argv[1:])}
    out = json.loads(args.out.read_text()) if args.out.exists() else {}
    out.setdefault("benchmark", "host_repeatability")
    out.setdefault("note", "repeated latency measurements of the same compiled networks on one CPU (measured); "
                           "cv = coefficient of variation, max_over_min = slowest / fastest")
    out.setdefault("hosts", {})[host_slug()] = entry
    write_json(out, args.out)


if __name__ == "__main__":
    main()
