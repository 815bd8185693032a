"""The library logger. Library code logs through ``logger``; it never prints.

The CLI attaches a handler (see :func:`configure`); library users configure ``logging`` as they
wish.
"""

from __future__ import annotations

import logging

logger = logging.getLogger("dalp_moo")
logger.addHandler(logging.NullHandler())


def configure(level: int = logging.INFO) -> None:
    """Attach one stderr handler with a short format to the library logger (idempotent)."""
    for handler in list(logger.handlers):
        if getattr(handler, "_dalp_cli", False):
            logger.removeHandler(handler)
    handler = logging.StreamHandler()
    handler._dalp_cli = True  # type: ignore[attr-defined]
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%H:%M:%S"))
    logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False
