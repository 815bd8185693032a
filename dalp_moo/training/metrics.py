"""Segmentation metrics from a confusion matrix accumulated over a whole split."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

#: IoU at or below which a class counts as never predicted correctly (fraction)
IOU_ZERO = 1e-6


def degenerate_reason(background_iou: float, vessel_iou: float) -> str:
    """Why a two-class segmentation model with these IoUs (fractions) is degenerate, "" when it
    is not: it finds no vessel pixel (vessel IoU 0) or calls every pixel a vessel (background
    IoU 0). One rule for the search, its result checks and the benchmarks."""
    if vessel_iou <= IOU_ZERO:
        return "vessel IoU 0 (no vessel pixel found: constant background prediction)"
    if background_iou <= IOU_ZERO:
        return "background IoU 0 (every pixel called vessel: constant prediction)"
    return ""


@dataclass(frozen=True)
class SegmentationScore:
    """mIoU over classes (present in prediction or ground truth), per-class IoU, and the
    fraction of output values that were not finite (NaN/inf: FP16 overflow in a deployed model)."""

    miou: float
    per_class_iou: tuple[float, ...]
    nonfinite_fraction: float
    pixels: int


def confusion_matrix(pred: torch.Tensor, target: torch.Tensor, num_classes: int) -> np.ndarray:
    """``[num_classes, num_classes]`` counts, rows = ground truth, columns = prediction."""
    idx = target.reshape(-1).long() * num_classes + pred.reshape(-1).long()
    counts = torch.bincount(idx, minlength=num_classes * num_classes)
    return counts.reshape(num_classes, num_classes).cpu().numpy().astype(np.int64)


def score_from_confusion(cm: np.ndarray, nonfinite: int = 0, total_values: int = 1) -> SegmentationScore:
    """IoU per class = TP / (TP + FP + FN); classes absent from both are left out of the mean."""
    tp = np.diag(cm).astype(float)
    denom = cm.sum(0) + cm.sum(1) - tp
    iou = np.where(denom > 0, tp / np.maximum(denom, 1), np.nan)
    miou = float(np.nanmean(iou)) if np.any(denom > 0) else 0.0
    return SegmentationScore(
        miou=miou,
        per_class_iou=tuple(float(v) for v in np.nan_to_num(iou, nan=1.0)),
        nonfinite_fraction=nonfinite / max(total_values, 1),
        pixels=int(cm.sum()),
    )


def evaluate_segmentation(
    predict: Callable[[torch.Tensor], torch.Tensor],
    dataset: Dataset,
    num_classes: int,
    batch_size: int = 16,
    device: torch.device | str = "cpu",
) -> SegmentationScore:
    """Run ``predict`` (batch ``[N,C,H,W]`` float32 -> logits) over ``dataset`` and score it.

    Pixels whose logits are not finite are predicted by ``argmax`` as they are (a NaN wins),
    mirroring what a deployed network outputs; their share is reported.
    """
    cm = np.zeros((num_classes, num_classes), dtype=np.int64)
    nonfinite = 0
    total = 0
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False)
    with torch.no_grad():
        for images, masks in loader:
            logits = predict(images.to(device)).float().cpu()
            nonfinite += int((~torch.isfinite(logits)).sum())
            total += logits.numel()
            cm += confusion_matrix(logits.argmax(dim=1), masks, num_classes)
    return score_from_confusion(cm, nonfinite, total)
