"""Run-length encoding of binary masks in the Airbus Ship Detection convention.

Pixels are numbered column by column (top to bottom, then left to right), starting at 1; a mask
is written as ``"start length start length ..."``. An empty string is an empty mask.
"""

from __future__ import annotations

import numpy as np

from dalp_moo.errors import DataError


def parse_rle(text: str, shape: tuple[int, int], where: str = "run-length string") -> np.ndarray:
    """Runs of ``text`` as int64 ``[n, 2]`` (0-based start, length), validated against ``shape``.

    Raises :class:`DataError` naming ``where`` for a malformed string: non-integer tokens, an odd
    count, starts < 1, lengths < 1, runs past the image or runs that are not increasing and
    disjoint.
    """
    tokens = text.split() if isinstance(text, str) else []
    if not tokens:
        return np.zeros((0, 2), np.int64)
    try:
        values = np.array([int(t) for t in tokens], dtype=np.int64)
    except ValueError:
        bad = next(t for t in tokens if not t.lstrip("-").isdigit())
        raise DataError(f"{where}: corrupt run-length string (token {bad!r} is not an integer)"
                        ) from None
    if values.size % 2:
        raise DataError(f"{where}: corrupt run-length string (odd number of values, "
                        f"{values.size})")
    runs = values.reshape(-1, 2)
    starts, lengths = runs[:, 0] - 1, runs[:, 1]
    total = shape[0] * shape[1]
    if (starts < 0).any() or (lengths < 1).any():
        raise DataError(f"{where}: corrupt run-length string (start < 1 or length < 1)")
    if (starts + lengths > total).any():
        raise DataError(f"{where}: corrupt run-length string (run ends past pixel {total} of a "
                        f"{shape[0]}x{shape[1]} image)")
    if (starts[1:] < starts[:-1] + lengths[:-1]).any():
        raise DataError(f"{where}: corrupt run-length string (runs overlap or are not sorted)")
    return np.stack([starts, lengths], axis=1)


def runs_to_mask(runs: list[np.ndarray], shape: tuple[int, int]) -> np.ndarray:
    """Union of the parsed runs (from :func:`parse_rle`) as a uint8 mask ``[H, W]``."""
    total = shape[0] * shape[1]
    delta = np.zeros(total + 1, np.int32)
    if runs:
        r = np.concatenate(runs) if len(runs) > 1 else runs[0]
        np.add.at(delta, r[:, 0], 1)
        np.add.at(delta, r[:, 0] + r[:, 1], -1)
    flat = (np.cumsum(delta[:-1]) > 0).astype(np.uint8)
    return flat.reshape(shape[1], shape[0]).T.copy()  # column-major numbering


def rle_decode(text: str | list[str], shape: tuple[int, int]) -> np.ndarray:
    """Mask uint8 ``[H, W]`` from one run-length string or the union of several."""
    texts = [text] if isinstance(text, str) else list(text)
    return runs_to_mask([parse_rle(t, shape) for t in texts], shape)


def rle_encode(mask: np.ndarray) -> str:
    """Run-length string of a binary mask ``[H, W]`` (non-zero = 1); ``""`` when empty."""
    flat = (np.asarray(mask).T.reshape(-1) != 0).astype(np.int8)
    edges = np.diff(np.concatenate([[0], flat, [0]]))
    starts = np.nonzero(edges == 1)[0]
    ends = np.nonzero(edges == -1)[0]
    return " ".join(f"{s + 1} {e - s}" for s, e in zip(starts, ends, strict=True))
