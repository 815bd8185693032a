"""Training of candidates (recipes: ``balanced`` focal + Dice loss, or the paper's focal loss;
Adam, early stopping) and segmentation metrics."""

from dalp_moo.training.losses import dice_loss, focal_loss, penalise_nonfinite, segmentation_loss
from dalp_moo.training.metrics import SegmentationScore, degenerate_reason, evaluate_segmentation
from dalp_moo.training.trainer import (
    RECIPES,
    TrainResult,
    estimate_training_memory_mb,
    init_output_prior,
    resolve_device,
    torch_threads,
    train_model,
)

__all__ = ["RECIPES", "SegmentationScore", "TrainResult", "degenerate_reason", "dice_loss",
           "evaluate_segmentation",
           "focal_loss", "estimate_training_memory_mb", "init_output_prior", "penalise_nonfinite",
           "resolve_device", "segmentation_loss", "torch_threads", "train_model"]
