"""Training of candidates (focal loss, Adam, early stopping) and segmentation metrics."""

from dalp_moo.training.losses import focal_loss
from dalp_moo.training.metrics import SegmentationScore, evaluate_segmentation
from dalp_moo.training.trainer import TrainResult, resolve_device, torch_threads, train_model

__all__ = ["SegmentationScore", "TrainResult", "evaluate_segmentation", "focal_loss",
           "resolve_device", "torch_threads", "train_model"]
