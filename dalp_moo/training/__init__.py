"""Training of candidates (focal loss, Adam, early stopping) and segmentation metrics."""

from dalp_moo.training.losses import focal_loss
from dalp_moo.training.metrics import SegmentationScore, evaluate_segmentation
from dalp_moo.training.trainer import (
    TrainResult,
    estimate_training_memory_mb,
    resolve_device,
    torch_threads,
    train_model,
)

__all__ = ["SegmentationScore", "TrainResult", "evaluate_segmentation", "focal_loss",
           "estimate_training_memory_mb", "resolve_device", "torch_threads", "train_model"]
