"""Loss functions."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def focal_loss(logits: torch.Tensor, target: torch.Tensor, alpha: float = 1.0, gamma: float = 2.0) -> torch.Tensor:
    """Multi-class focal loss ``alpha * (1 - p_t)^gamma * CE``, averaged over pixels.

    ``logits`` ``[N,C,H,W]``, ``target`` int64 ``[N,H,W]``.
    """
    log_p = F.log_softmax(logits.float(), dim=1)
    log_pt = log_p.gather(1, target.unsqueeze(1)).squeeze(1)
    pt = log_pt.exp()
    return (-alpha * (1.0 - pt).pow(gamma) * log_pt).mean()
