"""Exception types. Every user-facing error derives from :class:`DalpError`.

The CLI turns a :class:`DalpError` into one readable line and exit code 2; anything else is a
bug and exits 1 (with a traceback only under ``--debug``).
"""

from __future__ import annotations


class DalpError(Exception):
    """Base class of the errors caused by the user's input or environment."""

    exit_code = 2


class ConfigError(DalpError):
    """Invalid configuration: unknown key, wrong type or out-of-range value."""


class DataError(DalpError):
    """Missing, corrupt or inconsistent data. The message names the file and the problem."""


class BackendError(DalpError):
    """A deployment backend cannot be used: unknown name, absent device, unsupported layer."""


class RunFolderError(DalpError):
    """The run folder cannot be used: exists without --resume/--force, unwritable, or corrupt."""


class EvaluationError(DalpError):
    """A candidate evaluation failed (diverged, crashed, exceeded a budget).

    The search records it and goes on; it is only raised to the user outside a search.
    """
