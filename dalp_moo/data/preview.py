"""Preview images of a segmentation source: a grid of tiles in (false) colour with the vessel
mask outlined."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dalp_moo.data.base import SegmentationSource
from dalp_moo.errors import DataError

OUTLINE_RGB = (255, 230, 0)  #: colour of the mask outline (yellow)


def stretch(images: np.ndarray, low: float = 1.0, high: float = 99.5,
            gamma: float = 0.7) -> np.ndarray:
    """Per-channel percentile stretch of ``[N,3,H,W]`` to uint8 (percentiles over all tiles)."""
    lo = np.percentile(images, low, axis=(0, 2, 3), keepdims=True)
    hi = np.percentile(images, high, axis=(0, 2, 3), keepdims=True)
    x = np.clip((images - lo) / np.maximum(hi - lo, 1e-6), 0, 1) ** gamma
    return np.round(x * 255).astype(np.uint8)


def outline(mask: np.ndarray) -> np.ndarray:
    """Boundary pixels of a binary mask ``[..., H, W]`` (inside pixels with an outside 4-neighbour)."""
    m = mask.astype(bool)
    p = np.pad(m, [(0, 0)] * (m.ndim - 2) + [(1, 1), (1, 1)], constant_values=False)
    inner = p[..., :-2, 1:-1] & p[..., 2:, 1:-1] & p[..., 1:-1, :-2] & p[..., 1:-1, 2:]
    return m & ~inner


def preview_grid(images: np.ndarray, masks: np.ndarray, rgb: tuple[int, int, int] | None = None,
                 columns: int = 4, zoom: int = 2, gap: int = 2) -> np.ndarray:
    """Grid image uint8 ``[rows*(t*zoom+gap), columns*(t*zoom+gap), 3]`` of tiles ``[N,B,t,t]``
    with the masks ``[N,t,t]`` outlined. ``rgb``: band indices shown as red, green, blue
    (default (2,1,0) with at least 3 bands, else the first band in grey)."""
    n, bands = images.shape[:2]
    if rgb is None:
        rgb = (2, 1, 0) if bands >= 3 else (0, 0, 0)
    if max(rgb) >= bands:
        raise DataError(f"preview: band index {max(rgb)} out of range for {bands} band(s)")
    colour = stretch(images[:, list(rgb)].astype(np.float64))
    colour = colour.repeat(zoom, axis=2).repeat(zoom, axis=3).transpose(0, 2, 3, 1)
    edge = outline(masks.repeat(zoom, axis=1).repeat(zoom, axis=2))
    colour[edge] = OUTLINE_RGB
    t = colour.shape[1]
    rows = -(-n // columns)
    grid = np.full((rows * (t + gap) - gap, columns * (t + gap) - gap, 3), 255, np.uint8)
    for k in range(n):
        r, c = divmod(k, columns)
        grid[r * (t + gap): r * (t + gap) + t, c * (t + gap): c * (t + gap) + t] = colour[k]
    return grid


def pick_tiles(source: SegmentationSource, split: str, count: int) -> tuple[np.ndarray, np.ndarray]:
    """``count`` tiles evenly spaced over a split: images ``[n,B,t,t]``, masks ``[n,t,t]``."""
    ds = source.split(split)
    if len(ds) == 0:
        raise DataError(f"preview: split {split!r} of {source.name} is empty")
    idx = np.unique(np.linspace(0, len(ds) - 1, min(count, len(ds))).astype(int))
    items = [ds[int(i)] for i in idx]
    return (np.stack([im.numpy() for im, _ in items]), np.stack([m.numpy() for _, m in items]))


def save_preview(source: SegmentationSource, out: str | Path, split: str = "train",
                 count: int = 16, columns: int = 4, zoom: int = 2,
                 rgb: tuple[int, int, int] | None = None) -> Path:
    """Write a PNG grid of ``count`` tiles of ``split`` (palette PNG, small on disk)."""
    from PIL import Image

    images, masks = pick_tiles(source, split, count)
    grid = preview_grid(images, masks, rgb=rgb, columns=columns, zoom=zoom)
    path = Path(out)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(grid).quantize(colors=256, dither=Image.Dither.NONE).save(path, optimize=True)
    except OSError as exc:
        raise DataError(f"preview: cannot write {path} ({exc.strerror or exc})") from exc
    return path
