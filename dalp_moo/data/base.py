"""The data interface every segmentation source implements.

A source yields tiles as ``(image, mask)``: ``image`` float32 ``[bands, H, W]`` in the source's
native units (raw digital numbers for the embedded generator), ``mask`` int64 ``[H, W]`` with
values in {0 = background, 1 = vessel}. Normalisation is *not* applied by the source: it is
part of the model (:class:`dalp_moo.model.unet.InputNorm`), so training and deployment apply it
identically.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch
from torch.utils.data import Dataset

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class BandStats:
    """Per-band statistics of the training split (for normalisation), in source units."""

    mean: tuple[float, ...]
    std: tuple[float, ...]
    minimum: float
    maximum: float


class SegmentationSource(Protocol):
    """A segmentation data set with train/val/test splits."""

    name: str
    bands: int

    def split(self, name: str) -> Dataset:  # items: (float32 [B,H,W], int64 [H,W])
        """Return the named split ("train", "val" or "test") as a torch Dataset."""
        ...

    def band_stats(self) -> BandStats:
        """Statistics of the training split (per band)."""
        ...

    def describe(self) -> dict:
        """JSON-serialisable summary: tiles per split, bands, value range, vessel fraction."""
        ...


class ArrayDataset(Dataset):
    """Tiles held in memory as numpy arrays (images ``[N,B,H,W]``, masks ``[N,H,W]``)."""

    def __init__(self, images: np.ndarray, masks: np.ndarray) -> None:
        if images.shape[0] != masks.shape[0] or images.shape[2:] != masks.shape[1:]:
            raise ValueError(f"images {images.shape} and masks {masks.shape} do not match")
        self.images = images
        self.masks = masks

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        image = torch.from_numpy(np.ascontiguousarray(self.images[index], dtype=np.float32))
        mask = torch.from_numpy(np.ascontiguousarray(self.masks[index]).astype(np.int64))
        return image, mask


def compute_band_stats(images: np.ndarray) -> BandStats:
    """Per-band mean/std of ``images`` ``[N,B,H,W]`` (float64 accumulation); a constant band has
    std 0 (``standardize`` refuses it, see :func:`~dalp_moo.data.normalization_params`)."""
    x = images.astype(np.float64)
    mean = x.mean(axis=(0, 2, 3))
    std = x.std(axis=(0, 2, 3))
    return BandStats(
        mean=tuple(float(v) for v in mean),
        std=tuple(float(v) for v in std),
        minimum=float(x.min()),
        maximum=float(x.max()),
    )
