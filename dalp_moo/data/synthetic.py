"""Embedded synthetic vessel scenes (raw digital numbers, 12-bit range).

Deterministic for a seed. Scenes: sea with texture, optional clouds, a few small vessels with
exact pixel masks. Generated once and cached in memory per process.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from dalp_moo.data.base import ArrayDataset, BandStats, compute_band_stats

DN_MAX = 4095.0


def _smooth_noise(rng: np.random.Generator, size: int, scale: int) -> np.ndarray:
    """Low-frequency noise in [0, 1] by bilinear upsampling of a coarse random grid."""
    coarse = rng.random((scale + 1, scale + 1))
    t = np.linspace(0, scale, size)
    i0 = np.floor(t).astype(int).clip(0, scale - 1)
    f = t - i0
    rows = coarse[i0] * (1 - f)[:, None] + coarse[i0 + 1] * f[:, None]
    return rows[:, i0] * (1 - f)[None, :] + rows[:, i0 + 1] * f[None, :]


def make_tile(rng: np.random.Generator, size: int, bands: int) -> tuple[np.ndarray, np.ndarray]:
    """One scene: image float32 ``[bands,H,W]`` in DN, mask uint8 ``[H,W]``."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    sea_level = rng.uniform(150, 450, size=bands) * np.linspace(1.2, 0.6, bands)
    texture = _smooth_noise(rng, size, 4) * rng.uniform(20, 80)
    image = sea_level[:, None, None] + texture[None] + rng.normal(0, 12, (bands, size, size))
    mask = np.zeros((size, size), np.uint8)
    for _ in range(int(rng.integers(0, 4))):
        length = rng.uniform(3, max(4.0, size / 4))
        width = max(1.0, length * rng.uniform(0.15, 0.35))
        cy, cx = rng.uniform(2, size - 2, 2)
        theta = rng.uniform(0, np.pi)
        u = (xx - cx) * np.cos(theta) + (yy - cy) * np.sin(theta)
        v = -(xx - cx) * np.sin(theta) + (yy - cy) * np.cos(theta)
        hull = (np.abs(u) <= length / 2) & (np.abs(v) <= width / 2)
        brightness = rng.uniform(600, 2500) * np.linspace(0.8, 1.2, bands)
        image[:, hull] = brightness[:, None] + rng.normal(0, 40, (bands, int(hull.sum())))
        mask[hull] = 1
    if rng.random() < 0.3:
        cloud = np.clip(_smooth_noise(rng, size, 3) * 2.2 - 1.2, 0, 1)
        image = image * (1 - cloud[None]) + cloud[None] * rng.uniform(2500, 4000)
    return np.clip(np.round(image), 0, DN_MAX).astype(np.float32), mask


@dataclass(frozen=True)
class SyntheticSpec:
    """Size of the generated data set: tiles in all splits, tile edge (px), bands, seed."""

    n_tiles: int
    tile_size: int
    bands: int
    seed: int


@functools.lru_cache(maxsize=4)
def _generate(spec: SyntheticSpec) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(spec.seed)
    tiles = [make_tile(rng, spec.tile_size, spec.bands) for _ in range(spec.n_tiles)]
    return np.stack([t[0] for t in tiles]), np.stack([t[1] for t in tiles])


class SyntheticSource:
    """The embedded default data set, split 70/15/15."""

    def __init__(self, spec: SyntheticSpec) -> None:
        self.spec = spec
        self.name = "synthetic"
        self.bands = spec.bands
        images, masks = _generate(spec)
        n_train = int(round(0.70 * spec.n_tiles))
        n_val = int(round(0.15 * spec.n_tiles))
        bounds = {"train": (0, n_train), "val": (n_train, n_train + n_val),
                  "test": (n_train + n_val, spec.n_tiles)}
        self._splits = {k: ArrayDataset(images[a:b], masks[a:b]) for k, (a, b) in bounds.items()}
        self._stats = compute_band_stats(self._splits["train"].images)

    def split(self, name: str) -> ArrayDataset:
        return self._splits[name]

    def band_stats(self) -> BandStats:
        return self._stats

    def describe(self) -> dict:
        out: dict = {"source": self.name, "bands": self.bands, "tile_size": self.spec.tile_size}
        for name, ds in self._splits.items():
            out[name] = {"tiles": len(ds), "vessel_fraction": float(ds.masks.mean()) if len(ds) else 0.0}
        out["value_range"] = [self._stats.minimum, self._stats.maximum]
        return out
