"""Training of one candidate: Adam, focal loss, early stopping on validation loss."""

from __future__ import annotations

import contextlib
import copy
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from dalp_moo.config import TrainConfig
from dalp_moo.errors import ConfigError, EvaluationError
from dalp_moo.log import logger
from dalp_moo.training.losses import focal_loss


def resolve_device(name: str) -> torch.device:
    """'auto' -> CUDA when available else CPU; 'cuda' without a GPU is a ConfigError."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("train.device: 'cuda' requested but no CUDA GPU is available")
    return torch.device(name)


@dataclass
class TrainResult:
    """Outcome of :func:`train_model`: epochs run, best validation loss, per-epoch history,
    wall time (s), and mean time of one optimisation step (ms)."""

    epochs_run: int
    best_val_loss: float
    history: list[dict[str, float]] = field(default_factory=list)
    time_s: float = 0.0
    step_ms: float = 0.0


def _loss_on(model: nn.Module, loader: DataLoader, cfg: TrainConfig, device: torch.device) -> float:
    model.eval()
    total, n = 0.0, 0
    with torch.no_grad():
        for images, masks in loader:
            logits = model(images.to(device))
            loss = focal_loss(logits, masks.to(device), cfg.focal_alpha, cfg.focal_gamma)
            total += float(loss) * images.shape[0]
            n += images.shape[0]
    return total / max(n, 1)


def train_model(
    model: nn.Module,
    train_set: Dataset,
    val_set: Dataset,
    cfg: TrainConfig,
    *,
    seed: int,
    device: torch.device,
    epochs: int | None = None,
    lr: float | None = None,
    forward_context: Callable[[], contextlib.AbstractContextManager] | None = None,
    deadline: float | None = None,
    label: str = "",
) -> TrainResult:
    """Train ``model`` in place and restore the weights of the best validation-loss epoch.

    ``forward_context`` (optional) is entered around every forward pass, in training and
    validation: deployment-aligned fine-tuning passes the precision profile's context here.
    ``deadline`` is a ``time.monotonic()`` value after which training stops with an
    :class:`EvaluationError`. A non-finite training loss raises :class:`EvaluationError`.
    """
    epochs = cfg.epochs if epochs is None else epochs
    ctx = forward_context or contextlib.nullcontext
    gen = torch.Generator().manual_seed(seed)
    train_loader = DataLoader(train_set, batch_size=cfg.batch_size, shuffle=True, generator=gen,
                              drop_last=len(train_set) > cfg.batch_size)
    val_loader = DataLoader(val_set, batch_size=max(cfg.batch_size, 16), shuffle=False)
    model.to(device)
    optimiser = torch.optim.Adam(model.parameters(), lr=cfg.lr if lr is None else lr)
    best_loss, best_state, stale = math.inf, copy.deepcopy(model.state_dict()), 0
    history: list[dict[str, float]] = []
    start = time.perf_counter()
    steps, step_time = 0, 0.0
    epoch = 0
    for epoch in range(1, epochs + 1):
        model.train()
        running, seen = 0.0, 0
        for images, masks in train_loader:
            t0 = time.perf_counter()
            images, masks = images.to(device), masks.to(device)
            optimiser.zero_grad(set_to_none=True)
            with ctx():
                logits = model(images)
            loss = focal_loss(logits, masks, cfg.focal_alpha, cfg.focal_gamma)
            if not torch.isfinite(loss):
                raise EvaluationError(f"diverged: non-finite training loss at epoch {epoch}")
            loss.backward()
            optimiser.step()
            step_time += time.perf_counter() - t0
            steps += 1
            running += loss.item() * images.shape[0]
            seen += images.shape[0]
            if deadline is not None and time.monotonic() > deadline:
                raise EvaluationError(f"time budget exceeded during epoch {epoch}")
        with ctx():
            val_loss = _loss_on(model, val_loader, cfg, device)
        history.append({"epoch": epoch, "train_loss": running / max(seen, 1), "val_loss": val_loss})
        logger.debug("%s epoch %d train %.4f val %.4f", label, epoch, running / max(seen, 1), val_loss)
        if not math.isfinite(val_loss):
            stale += 1
        elif val_loss < best_loss:
            best_loss, best_state, stale = val_loss, copy.deepcopy(model.state_dict()), 0
        else:
            stale += 1
        if stale >= cfg.patience:
            break
    if math.isfinite(best_loss):
        model.load_state_dict(best_state)
    return TrainResult(epochs_run=epoch, best_val_loss=best_loss, history=history,
                       time_s=time.perf_counter() - start, step_ms=1000 * step_time / max(steps, 1))


def estimate_training_memory_mb(model: nn.Module, input_shape: tuple[int, ...], batch_size: int) -> float:
    """Estimated peak memory of training ``model`` (MB): stored activations and their gradients
    for a batch (every leaf module output, FP32) plus weights, gradients and Adam's two moments."""
    elements = 0

    def hook(_m: nn.Module, _i: tuple, out: torch.Tensor) -> None:
        nonlocal elements
        if isinstance(out, torch.Tensor):
            elements += out.numel()

    leaves = [m for m in model.modules() if not list(m.children())]
    handles = [m.register_forward_hook(hook) for m in leaves]
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros((1, *input_shape[1:])))
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    params = sum(p.numel() for p in model.parameters())
    return (2 * elements * batch_size + 4 * params) * 4 / 2**20


@contextlib.contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Temporarily set torch's intra-op CPU threads (0 = leave as is)."""
    if n <= 0:
        yield
        return
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)
