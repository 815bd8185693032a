"""Chip classification set from the scene generator (for early-exit experiments).

Small chips (default 32x32 px, raw DN) labelled by their dominant content: open sea, vessel,
cloud, land or glint. Classes are balanced (chip ``i`` has class ``i % 5``), each chip is seeded
from ``(seed, index)`` on its own stream, and the set is split 70/15/15 by index.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import Dataset

from dalp_moo.data.base import BandStats, compute_band_stats
from dalp_moo.data.scene import GeneratorParams, SceneControls, render_scene, tile_rng
from dalp_moo.data.synthetic import split_bounds
from dalp_moo.errors import DataError

CHIP_CLASSES = ("sea", "vessel", "cloud", "land", "glint")

_CONTROLS = {
    "sea": SceneControls(land=False, cloud=False, glint=False, vessels=False, negatives=False),
    "vessel": SceneControls(land=False, cloud=False, vessels=True, negatives=False),
    "cloud": SceneControls(cloud=True, vessels=False),
    "land": SceneControls(land=True, cloud=False, vessels=False),
    "glint": SceneControls(land=False, cloud=False, glint=True, vessels=False),
}


def _accept(label: str, mask: np.ndarray, facts: dict) -> bool:
    if label == "vessel":
        return bool(mask.any())
    if label == "cloud":
        return facts["cloud"] >= 0.3
    if label == "land":
        return facts["land"] >= 0.4
    return True


def make_chip(seed: int, index: int, size: int, bands: int,
              params: GeneratorParams = GeneratorParams()) -> tuple[np.ndarray, int]:
    """Chip ``index``: image float32 ``[bands,size,size]`` (DN) and its class index."""
    label = CHIP_CLASSES[index % len(CHIP_CLASSES)]
    rng = tile_rng(seed, index, stream=1)
    for _ in range(8):  # redraw until the chip shows enough of its class
        image, mask, facts = render_scene(rng, size, bands, params, _CONTROLS[label])
        if _accept(label, mask, facts):
            break
    return image, CHIP_CLASSES.index(label)


class ChipDataset(Dataset):
    """Chips in memory: images ``[N,B,h,w]`` (DN), labels ``[N]``; items (float32, int64)."""

    def __init__(self, images: np.ndarray, labels: np.ndarray) -> None:
        self.images = images
        self.labels = labels

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return (torch.from_numpy(np.ascontiguousarray(self.images[index], dtype=np.float32)),
                torch.tensor(int(self.labels[index]), dtype=torch.int64))


@dataclass(frozen=True)
class ChipSpec:
    """Chips over all splits, chip edge (px), bands, seed."""

    n_chips: int
    chip_size: int
    bands: int
    seed: int


@functools.lru_cache(maxsize=2)
def _generate(spec: ChipSpec) -> tuple[np.ndarray, np.ndarray]:
    images = np.empty((spec.n_chips, spec.bands, spec.chip_size, spec.chip_size), np.float32)
    labels = np.empty(spec.n_chips, np.int64)
    for i in range(spec.n_chips):
        images[i], labels[i] = make_chip(spec.seed, i, spec.chip_size, spec.bands)
    return images, labels


class ChipSource:
    """Chip classification data set with train/val/test splits (70/15/15)."""

    classes = CHIP_CLASSES

    def __init__(self, spec: ChipSpec) -> None:
        self.spec = spec
        self.name = "synthetic-chips"
        self.bands = spec.bands
        images, labels = _generate(spec)
        self._splits = {k: ChipDataset(images[a:b], labels[a:b])
                        for k, (a, b) in split_bounds(spec.n_chips).items()}
        self._stats = compute_band_stats(self._splits["train"].images)

    def split(self, name: str) -> ChipDataset:
        """The named split ("train", "val" or "test")."""
        if name not in self._splits:
            raise DataError(f"chip data: unknown split {name!r} (train, val, test)")
        return self._splits[name]

    def band_stats(self) -> BandStats:
        """Per-band statistics of the training split (DN)."""
        return self._stats

    def describe(self) -> dict:
        """Chips per split and class counts."""
        out: dict = {"source": self.name, "bands": self.bands, "chip_size": self.spec.chip_size,
                     "classes": list(CHIP_CLASSES)}
        for name, ds in self._splits.items():
            counts = np.bincount(ds.labels, minlength=len(CHIP_CLASSES))
            out[name] = {"chips": len(ds), "per_class": [int(c) for c in counts]}
        return out


def open_chip_source(n_chips: int = 1000, chip_size: int = 32, bands: int = 4,
                     seed: int = 0) -> ChipSource:
    """The chip classification set: ``n_chips`` chips of ``chip_size`` px over all splits."""
    if n_chips < 10:
        raise DataError(f"chip data: n_chips must be >= 10, got {n_chips}")
    if not 8 <= chip_size <= 256:
        raise DataError(f"chip data: chip_size must be in 8..256, got {chip_size}")
    if not 1 <= bands <= 16:
        raise DataError(f"chip data: bands must be in 1..16, got {bands}")
    return ChipSource(ChipSpec(n_chips, chip_size, bands, seed))
