"""Deployment backends behind a registry of named, versioned backends.

>>> from dalp_moo import backends
>>> backends.available()          # {'analytic': '1', 'myriadx': '1', 'openvino': '1'}
>>> backends.get("analytic").estimate_latency_ms(model, (1, 4, 64, 64))

Backends:

- ``analytic``: test backend (torch ``.half()`` numerics, MAC-count latency);
- ``openvino``: real OpenVINO runtime (IR with FP16 weights, measured latency with PERF_COUNT
  per-layer times, or ``latency="model"``: the fitted host latency model);
- ``myriadx``: a real ``MYRIAD`` device via OpenVINO 2022.3 when present, else the emulator
  (``dalp_moo.precision.deploy_fp16`` numerics + calibrated analytical chip latency model).

``get(name).estimate_latency_ms(model, input_shape)`` predicts batch-1 latency (ms) of any
standard CNN without measuring (graph captured by :func:`graph.trace_graph`).

Add a backend: write one module that subclasses :class:`Backend`, decorate it with
``@register`` and import it below; document each constructor option in ``option_docs`` (a test
requires it; ``python -m dalp_moo backends --options`` lists them). A backend whose deployment
calibrates on data (e.g. OpenVINO INT8) sets ``needs_calibration`` and reads the ``calibration``
batch that :meth:`Backend.deploy` is handed.
"""

from dalp_moo.backends import analytic, myriadx, openvino_backend  # noqa: F401  (registers)
from dalp_moo.backends.base import Backend, BackendInfo, Deployment, LatencyReport
from dalp_moo.backends.registry import available, get, register

__all__ = ["Backend", "BackendInfo", "Deployment", "LatencyReport", "available", "get", "register"]
