"""Loss functions of candidate training.

* :func:`focal_loss`: the paper's multi-class focal loss (alpha 1, gamma 2);
* :func:`dice_loss`: soft Dice loss of the foreground classes (class-imbalance robust: it
  scores the overlap of the rare vessel class, not the average over mostly-background pixels);
* :func:`segmentation_loss`: the loss of a training recipe (``paper``: focal only; ``balanced``:
  focal + ``dice_weight`` x Dice);
* :func:`penalise_nonfinite`: logits of pixels a deployed network outputs as inf/NaN, replaced
  by confidently wrong ones, so that a validation loss under deployment numerics stays finite
  and counts such pixels as errors.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

#: logit margin of the replacement for non-finite pixels (probability of the target ~ e**-20)
NONFINITE_MARGIN = 20.0


def focal_loss(logits: torch.Tensor, target: torch.Tensor, alpha: float = 1.0, gamma: float = 2.0) -> torch.Tensor:
    """Multi-class focal loss ``alpha * (1 - p_t)^gamma * CE``, averaged over pixels.

    ``logits`` ``[N,C,H,W]``, ``target`` int64 ``[N,H,W]``.
    """
    log_p = F.log_softmax(logits.float(), dim=1)
    log_pt = log_p.gather(1, target.unsqueeze(1)).squeeze(1)
    pt = log_pt.exp()
    return (-alpha * (1.0 - pt).pow(gamma) * log_pt).mean()


def dice_loss(logits: torch.Tensor, target: torch.Tensor, smooth: float = 1.0) -> torch.Tensor:
    """Soft Dice loss ``1 - (2 |P.Y| + s) / (|P| + |Y| + s)`` over the batch, averaged over the
    foreground classes (1..C-1; class 0 is background). ``P`` are softmax probabilities, ``Y``
    one-hot targets; ``smooth`` (pixels) keeps tiles without vessels from dominating."""
    probs = F.softmax(logits.float(), dim=1)
    n_classes = probs.shape[1]
    losses = []
    for c in range(1, n_classes):
        p = probs[:, c]
        y = (target == c).to(p.dtype)
        inter = (p * y).sum()
        losses.append(1.0 - (2.0 * inter + smooth) / (p.sum() + y.sum() + smooth))
    return torch.stack(losses).mean()


def segmentation_loss(logits: torch.Tensor, target: torch.Tensor, recipe: str = "paper",
                      alpha: float = 1.0, gamma: float = 2.0,
                      dice_weight: float = 1.0) -> torch.Tensor:
    """The loss of a training recipe: ``paper`` = focal loss; ``balanced`` = focal loss +
    ``dice_weight`` x :func:`dice_loss`."""
    loss = focal_loss(logits, target, alpha, gamma)
    if recipe == "balanced" and dice_weight > 0:
        loss = loss + dice_weight * dice_loss(logits, target)
    return loss


def penalise_nonfinite(logits: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, int]:
    """``logits`` with every pixel that has a non-finite logit replaced by logits that put
    :data:`NONFINITE_MARGIN` against its target class (a confident error), and the number of
    such pixels. Finite logits pass through unchanged (same tensor when all are finite)."""
    bad = ~torch.isfinite(logits).all(dim=1)  # [N,H,W]
    n_bad = int(bad.sum())
    if n_bad == 0:
        return logits, 0
    wrong = -NONFINITE_MARGIN * F.one_hot(target, logits.shape[1]).permute(0, 3, 1, 2).to(logits.dtype)
    return torch.where(bad.unsqueeze(1), wrong, logits), n_bad
