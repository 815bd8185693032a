"""Deployment backends behind a registry of named, versioned backends.

>>> from dalp_moo import backends
>>> backends.available()          # {'analytic': '1', 'myriadx': '1', 'openvino': '1'}
>>> backends.get("analytic").estimate_latency_ms(model, (1, 4, 64, 64))

Add a backend: write one module that subclasses :class:`Backend`, decorate it with
``@register`` and import it below.
"""

from dalp_moo.backends import analytic, myriadx, openvino_backend  # noqa: F401  (registers)
from dalp_moo.backends.base import Backend, BackendInfo, Deployment, LatencyReport
from dalp_moo.backends.registry import available, get, register

__all__ = ["Backend", "BackendInfo", "Deployment", "LatencyReport", "available", "get", "register"]
