"""Python-version shims. dalp_moo supports Python 3.10 (the real Myriad X path needs OpenVINO
2022.3, whose wheels stop at 3.10) and newer: TOML is read with ``tomllib`` (3.11+) or its
backport ``tomli`` (installed on 3.10 by the ``tomli; python_version < "3.11"`` requirement)."""

from __future__ import annotations

try:
    import tomllib
except ModuleNotFoundError:  # pragma: no cover - Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

__all__ = ["tomllib"]
