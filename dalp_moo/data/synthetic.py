"""The embedded default data set: procedural raw Sentinel-2-like maritime scenes.

``SyntheticSource(SyntheticSpec(n_tiles, tile_size, bands, seed))`` generates ``n_tiles`` tiles
(see :mod:`dalp_moo.data.scene`), splits them 70/15/15 (train/val/test, by index) and keeps them
in memory. Each tile is seeded from ``(seed, index)`` alone, so generation runs in parallel
processes for large sets and gives the same tiles either way. With ``cache_dir`` the arrays are
stored as ``.npy`` files under a key that hashes the generator parameters and
:data:`~dalp_moo.data.scene.GENERATOR_VERSION`.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import multiprocessing
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from dalp_moo.data.base import ArrayDataset, BandStats, compute_band_stats
from dalp_moo.data.scene import (
    DN_MAX,
    GENERATOR_VERSION,
    REFERENCE_BAND,
    GeneratorParams,
    band_info,
    make_tile,
)
from dalp_moo.errors import DataError
from dalp_moo.log import logger

__all__ = [
    "DN_MAX", "GeneratorParams", "SyntheticSpec", "SyntheticSource", "generate_tiles",
    "split_bounds", "make_tile", "PARALLEL_MIN_PIXELS", "VARIANTS", "variant_params",
]

#: generate in parallel processes when n_tiles * tile_size**2 reaches this many pixels
PARALLEL_MIN_PIXELS = 256 * 64 * 64


@dataclass(frozen=True)
class SyntheticSpec:
    """Size of the generated data set: tiles in all splits, tile edge (px), bands, seed, and the
    scene statistics (:class:`~dalp_moo.data.scene.GeneratorParams`)."""

    n_tiles: int
    tile_size: int
    bands: int
    seed: int
    params: GeneratorParams = field(default_factory=GeneratorParams)

    def key(self) -> str:
        """Cache key: hash of every generator input and the generator version (16 hex chars)."""
        payload = {"version": GENERATOR_VERSION, **dataclasses.asdict(self)}
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


#: named generator variants for ``data.source = "synthetic:NAME"`` (``synthetic`` = default)
VARIANTS: dict[str, GeneratorParams] = {
    "default": GeneratorParams(),
    # the default before 2026-12-02: each band's offset also jitters by up to 1 px from tile to tile
    "jittered": GeneratorParams(misregistration_jitter_px=1),
    # frequent large cloud fields near saturation (much harder to learn; FP16 overflow stress)
    "cloudy": GeneratorParams(p_cloud=0.35, cloud_cover=(0.05, 0.6), small_cloud_density=0.4),
    # every hard case more often: clouds, glint, haze, dark hulls, wakes, hard negatives, band jitter
    "hard": GeneratorParams(misregistration_jitter_px=1, p_cloud=0.3, cloud_cover=(0.05, 0.6), p_glint=0.25, p_haze=0.4,
                            p_dark_hull=0.2, p_rust_hull=0.2, wake_strength=0.55,
                            sparkle_density=1.5, rocks_density=0.5, small_cloud_density=0.4),
    # vessels on calm open sea only: no clouds, glint, haze, land, wakes or hard negatives
    "clear": GeneratorParams(p_cloud=0.0, p_glint=0.0, p_haze=0.0, p_land=0.0, p_moving=0.0,
                             sparkle_density=0.0, rocks_density=0.0, small_cloud_density=0.0),
}


def variant_params(name: str) -> GeneratorParams:
    """Generator parameters of a named variant (see :data:`VARIANTS`)."""
    if name not in VARIANTS:
        raise DataError(f"data source 'synthetic:{name}': unknown variant (use one of "
                        f"{', '.join(sorted(VARIANTS))})")
    return VARIANTS[name]


def split_bounds(n: int) -> dict[str, tuple[int, int]]:
    """Index ranges of the 70/15/15 train/val/test split of ``n`` items."""
    n_train = int(round(0.70 * n))
    n_val = int(round(0.15 * n))
    return {"train": (0, n_train), "val": (n_train, n_train + n_val),
            "test": (n_train + n_val, n)}


def _chunk(args: tuple[int, int, int, int, int, GeneratorParams]) -> tuple[np.ndarray, np.ndarray]:
    seed, start, stop, size, bands, params = args
    images = np.empty((stop - start, bands, size, size), np.float32)
    masks = np.empty((stop - start, size, size), np.uint8)
    for i in range(start, stop):
        images[i - start], masks[i - start] = make_tile(seed, i, size, bands, params)
    return images, masks


def _pool_context() -> multiprocessing.context.BaseContext:
    """``fork`` where available (cheap start: no re-import of torch), else ``spawn``."""
    if sys.platform.startswith("linux"):
        return multiprocessing.get_context("fork")
    return multiprocessing.get_context("spawn")


def generate_tiles(spec: SyntheticSpec, workers: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """All tiles of ``spec``: images float32 ``[N,B,H,W]`` (DN), masks uint8 ``[N,H,W]``.

    ``workers``: processes (``None`` = automatic: all CPUs, up to 8, when the set has at least
    :data:`PARALLEL_MIN_PIXELS` pixels; 1 = in this process; always 1 inside a daemonic process,
    such as a Dask worker). The result does not depend on it.
    """
    band_info(spec.bands)  # validates the band count
    n, size = spec.n_tiles, spec.tile_size
    if workers is None:
        cpus = os.cpu_count() or 1
        workers = min(cpus, 8) if n * size * size >= PARALLEL_MIN_PIXELS else 1
    workers = max(1, min(workers, n))
    if workers > 1 and multiprocessing.current_process().daemon:
        # a daemonic process (a Dask worker, a pool worker) may not start child processes
        logger.info("synthetic data: generating in this process (daemonic processes cannot "
                    "start a process pool)")
        workers = 1
    t0 = time.perf_counter()
    if workers == 1:
        images, masks = _chunk((spec.seed, 0, n, size, spec.bands, spec.params))
    else:
        edges = np.linspace(0, n, 4 * workers + 1).astype(int)
        jobs = [(spec.seed, int(a), int(b), size, spec.bands, spec.params)
                for a, b in zip(edges[:-1], edges[1:], strict=True) if b > a]
        with ProcessPoolExecutor(workers, mp_context=_pool_context()) as pool:
            parts = list(pool.map(_chunk, jobs))
        images = np.concatenate([p[0] for p in parts])
        masks = np.concatenate([p[1] for p in parts])
    logger.info("generated %d synthetic tiles (%dx%d, %d bands) in %.2f s with %d process(es)",
                n, size, size, spec.bands, time.perf_counter() - t0, workers)
    return images, masks


def _cache_paths(cache_dir: str, spec: SyntheticSpec) -> tuple[Path, Path]:
    base = Path(cache_dir) / f"synthetic-{spec.key()}"
    return base.with_name(base.name + "-images.npy"), base.with_name(base.name + "-masks.npy")


def _load_cached(spec: SyntheticSpec, cache_dir: str) -> tuple[np.ndarray, np.ndarray] | None:
    img_path, mask_path = _cache_paths(cache_dir, spec)
    if not (img_path.is_file() and mask_path.is_file()):
        return None
    try:
        images = np.load(img_path).astype(np.float32)
        masks = np.load(mask_path)
    except (OSError, ValueError) as exc:
        logger.warning("cache file %s unreadable (%s); regenerating", img_path, exc)
        return None
    want = (spec.n_tiles, spec.bands, spec.tile_size, spec.tile_size)
    if images.shape != want or masks.shape != (want[0], *want[2:]):
        logger.warning("cache file %s has shape %s, expected %s; regenerating",
                       img_path, images.shape, want)
        return None
    logger.info("loaded %d synthetic tiles from cache %s", spec.n_tiles, img_path)
    return images, masks


def _store_cached(spec: SyntheticSpec, cache_dir: str, images: np.ndarray,
                  masks: np.ndarray) -> None:
    img_path, mask_path = _cache_paths(cache_dir, spec)
    try:
        img_path.parent.mkdir(parents=True, exist_ok=True)
        for path, arr in ((img_path, images.astype(np.uint16)), (mask_path, masks)):
            tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
            with open(tmp, "wb") as fh:
                np.save(fh, arr)
            os.replace(tmp, path)
    except OSError as exc:
        raise DataError(f"data cache directory {cache_dir}: cannot write ({exc.strerror})") from exc
    (img_path.parent / f"synthetic-{spec.key()}.json").write_text(
        json.dumps({"version": GENERATOR_VERSION, **dataclasses.asdict(spec)}, indent=1))


@functools.lru_cache(maxsize=4)
def _generate(spec: SyntheticSpec, cache_dir: str = "") -> tuple[np.ndarray, np.ndarray]:
    if cache_dir:
        cached = _load_cached(spec, cache_dir)
        if cached is not None:
            return cached
    images, masks = generate_tiles(spec)
    if cache_dir:
        _store_cached(spec, cache_dir, images, masks)
    return images, masks


class SyntheticSource:
    """The embedded default data set (a :class:`~dalp_moo.data.base.SegmentationSource`),
    split 70/15/15. Images are raw DN (float32, integers 0..4095)."""

    def __init__(self, spec: SyntheticSpec, cache_dir: str = "", name: str = "synthetic") -> None:
        self.spec = spec
        self.name = name
        self.bands = spec.bands
        self.band_names, _ = band_info(spec.bands)
        images, masks = _generate(spec, cache_dir)
        self._splits = {k: ArrayDataset(images[a:b], masks[a:b])
                        for k, (a, b) in split_bounds(spec.n_tiles).items()}
        for name, ds in self._splits.items():
            if len(ds) == 0:
                raise DataError(f"synthetic data: split {name!r} is empty with n_tiles="
                                f"{spec.n_tiles} (use at least 10 tiles)")
        self._stats = compute_band_stats(self._splits["train"].images)

    def split(self, name: str) -> ArrayDataset:
        """The named split ("train", "val" or "test")."""
        if name not in self._splits:
            raise DataError(f"synthetic data: unknown split {name!r} (train, val, test)")
        return self._splits[name]

    def band_stats(self) -> BandStats:
        """Per-band statistics of the training split (DN)."""
        return self._stats

    def describe(self) -> dict:
        """Tiles per split, bands, value range (DN), vessel pixel fraction, generator key and the
        generator parameters that differ from the default (``generator_changes``)."""
        out: dict = {"source": self.name, "bands": self.bands,
                     "band_names": list(self.band_names), "tile_size": self.spec.tile_size,
                     "seed": self.spec.seed, "generator_version": GENERATOR_VERSION,
                     "generator_key": self.spec.key(),
                     "generator_changes": {k: v for k, v in dataclasses.asdict(self.spec.params).items()
                                           if v != getattr(GeneratorParams(), k)},
                     "mask_reference_band": min(REFERENCE_BAND, self.bands - 1)}
        total_px = 0
        vessel_px = 0
        for name, ds in self._splits.items():
            frac = float(ds.masks.mean()) if len(ds) else 0.0
            empty = float((ds.masks.reshape(len(ds), -1).max(axis=1) == 0).mean())
            out[name] = {"tiles": len(ds), "vessel_fraction": frac, "empty_tiles": empty}
            total_px += ds.masks.size
            vessel_px += int(ds.masks.sum())
        out["vessel_fraction"] = vessel_px / max(total_px, 1)
        out["value_range"] = [self._stats.minimum, self._stats.maximum]
        return out
