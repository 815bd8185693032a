"""Training of one candidate: Adam, early stopping on validation loss, and a training recipe.

Recipes (``TrainConfig.recipe``):

* ``paper``: the paper's recipe: focal loss (alpha 1, gamma 2), constant Adam learning rate
  1e-3, tiles in shuffled order, batch 8, patience 3 (:data:`PAPER_SETTINGS`, the config
  defaults; :func:`paper_deviations` names any that a config changes);
* ``balanced`` (default): the paper's focal loss plus a soft Dice loss of the vessel class
  (``dice_weight``), and a fresh candidate's output bias starting at the log class frequencies
  of the training masks (``train_model(..., init_prior=True)``, the prior initialisation of
  the focal-loss paper), so the first steps are not spent learning that vessels are rare.
  Options: a ``cosine`` learning-rate ``schedule`` (linear warm-up over the first 5 % of the
  steps, then cosine decay to 0 at the last epoch; the config default is ``constant``, the
  default preset sets ``cosine`` with ``lr`` 3e-3, measured in
  ``benchmarks/data_difficulty.py``) and tiles holding vessels sampled with probability
  ``vessel_tiles`` (0, the default: shuffled order as in ``paper``; measured without a gain).
  Chosen by measurement (``benchmarks/data_baseline.py``): at the default budget the paper's
  recipe leaves many candidates predicting background only (vessel IoU near 0).

The validation loss (early stopping, best epoch) is computed under the same forward context as
training; pixels whose logits are not finite there (deployment numerics with ``overflow='inf'``)
count as confident errors (:func:`~dalp_moo.training.losses.penalise_nonfinite`).
"""

from __future__ import annotations

import contextlib
import copy
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, WeightedRandomSampler

from dalp_moo.config import TrainConfig
from dalp_moo.errors import ConfigError, EvaluationError
from dalp_moo.log import logger
from dalp_moo.training.losses import penalise_nonfinite, segmentation_loss

RECIPES = ("paper", "balanced")
#: the paper's training settings (``train`` keys); ``recipe = "paper"`` with other values is warned about
PAPER_SETTINGS: dict[str, float] = {"lr": 1e-3, "focal_alpha": 1.0, "focal_gamma": 2.0, "batch_size": 8,
                                    "patience": 3}
SCHEDULES = ("constant", "cosine")
#: share of the steps of a ``cosine`` schedule spent warming up linearly
WARMUP_FRACTION = 0.05


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


def _recipe(cfg: TrainConfig) -> str:
    recipe = getattr(cfg, "recipe", "paper")
    if recipe not in RECIPES:
        raise ConfigError(f"train.recipe: {recipe!r} is not one of {', '.join(RECIPES)}")
    return recipe


def paper_deviations(cfg: TrainConfig) -> list[str]:
    """The ``train`` keys of :data:`PAPER_SETTINGS` that ``cfg`` sets otherwise, as
    ``"lr 0.003 (paper 0.001)"``; empty unless ``cfg.recipe`` is ``paper``."""
    if _recipe(cfg) != "paper":
        return []
    return [f"{k} {getattr(cfg, k):g} (paper {v:g})" for k, v in PAPER_SETTINGS.items()
            if float(getattr(cfg, k)) != float(v)]


def loss_fn(cfg: TrainConfig) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """The training loss of ``cfg``'s recipe (logits ``[N,C,H,W]``, int64 targets ``[N,H,W]``)."""
    recipe = _recipe(cfg)
    dice_weight = float(getattr(cfg, "dice_weight", 0.0))

    def loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return segmentation_loss(logits, target, recipe, cfg.focal_alpha, cfg.focal_gamma,
                                 dice_weight)
    return loss


def training_layout(cfg: TrainConfig, aligned: bool) -> torch.memory_format:
    """Memory format of a training run's images and convolution weights: ``cfg.memory_format``
    for the plain FP32 forward; NCHW under a deployment-aligned ``forward_context`` (the
    emulated FP16 forward is no faster in NHWC: benchmarks/training_speed.py)."""
    if aligned or getattr(cfg, "memory_format", "contiguous") != "channels_last":
        return torch.contiguous_format
    return torch.channels_last


def _loss_on(model: nn.Module, loader: DataLoader, loss: Callable, device: torch.device,
             ctx: Callable[[], contextlib.AbstractContextManager],
             layout: torch.memory_format = torch.contiguous_format) -> tuple[float, int]:
    """Mean loss over ``loader`` (tiles-weighted) and the number of pixels with non-finite
    logits (scored as confident errors)."""
    model.eval()
    total, n, bad = 0.0, 0, 0
    with torch.no_grad():
        for images, masks in loader:
            masks = masks.to(device)
            with ctx():
                logits = model(_to(images, device, layout))
            logits, n_bad = penalise_nonfinite(logits, masks)
            bad += n_bad
            total += float(loss(logits, masks)) * images.shape[0]
            n += images.shape[0]
    return total / max(n, 1), bad


def _tile_has_vessel(dataset: Dataset) -> np.ndarray:
    """Per tile: whether its mask holds any foreground pixel (read from ``masks`` when the
    dataset keeps them in memory, else by iterating once)."""
    masks = getattr(dataset, "masks", None)
    if isinstance(masks, np.ndarray) and masks.shape[0] == len(dataset):
        return masks.reshape(len(dataset), -1).max(axis=1) > 0
    return np.array([bool((dataset[i][1] > 0).any()) for i in range(len(dataset))])


def train_loader(train_set: Dataset, cfg: TrainConfig, seed: int) -> DataLoader:
    """Batches of one epoch: shuffled (``paper``; ``balanced`` with ``vessel_tiles = 0``) or
    drawn with replacement so that a share ``vessel_tiles`` of the tiles contain vessels."""
    gen = torch.Generator().manual_seed(seed)
    drop_last = len(train_set) > cfg.batch_size
    share = float(getattr(cfg, "vessel_tiles", 0.0)) if _recipe(cfg) == "balanced" else 0.0
    if share > 0:
        has = _tile_has_vessel(train_set)
        n_pos = int(has.sum())
        if 0 < n_pos < len(has):
            weights = np.where(has, share / n_pos, (1.0 - share) / (len(has) - n_pos))
            sampler = WeightedRandomSampler(torch.as_tensor(weights, dtype=torch.float64),
                                            len(train_set), replacement=True, generator=gen)
            return DataLoader(train_set, batch_size=cfg.batch_size, sampler=sampler,
                              drop_last=drop_last)
    return DataLoader(train_set, batch_size=cfg.batch_size, shuffle=True, generator=gen,
                      drop_last=drop_last)


def class_frequencies(dataset: Dataset, num_classes: int) -> np.ndarray:
    """Pixel share of each class in ``dataset``'s masks (each at least 1e-4)."""
    masks = getattr(dataset, "masks", None)
    if isinstance(masks, np.ndarray) and masks.shape[0] == len(dataset):
        counts = np.bincount(masks.reshape(-1).astype(np.int64), minlength=num_classes)
    else:
        counts = np.zeros(num_classes, np.int64)
        for i in range(len(dataset)):
            counts += np.bincount(dataset[i][1].reshape(-1).numpy(), minlength=num_classes)
    freq = counts[:num_classes] / max(int(counts.sum()), 1)
    return np.maximum(freq, 1e-4)


def output_layer(model: nn.Module) -> nn.Module | None:
    """The layer producing the logits: ``model.head`` when it has a bias, else the last
    convolution or linear layer with a bias (None if there is none)."""
    head = getattr(model, "head", None)
    if isinstance(head, (nn.Conv2d, nn.Linear)) and head.bias is not None:
        return head
    last = None
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)) and m.bias is not None:
            last = m
    return last


def init_output_prior(model: nn.Module, dataset: Dataset) -> bool:
    """Set the output layer's bias to the log class frequencies of ``dataset`` (softmax logits:
    the untrained network then predicts the class prior). Returns False when the model has no
    output bias of the right size."""
    layer = output_layer(model)
    if layer is None:
        return False
    n = int(layer.bias.numel())
    freq = class_frequencies(dataset, n)
    with torch.no_grad():
        layer.bias.copy_(torch.as_tensor(np.log(freq), dtype=layer.bias.dtype))
    return True


def lr_factor(step: int, total: int, schedule: str) -> float:
    """Multiplier of the base learning rate at optimisation ``step`` (0-based) of ``total``:
    ``constant`` 1; ``cosine`` linear warm-up over the first :data:`WARMUP_FRACTION` of the
    steps, then ``0.5 * (1 + cos(pi * progress))``."""
    if schedule == "constant" or total <= 1:
        return 1.0
    warm = max(1, int(round(WARMUP_FRACTION * total)))
    if step < warm:
        return (step + 1) / warm
    progress = min(1.0, (step - warm + 1) / max(1, total - warm))
    return 0.5 * (1.0 + math.cos(math.pi * progress))


def _to(images: torch.Tensor, device: torch.device, layout: torch.memory_format) -> torch.Tensor:
    """``images`` on ``device`` in ``layout`` (4-D batches only; others just moved)."""
    if images.dim() == 4:
        return images.to(device, memory_format=layout)
    return images.to(device)


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
    init_prior: bool = False,
) -> TrainResult:
    """Train ``model`` in place with ``cfg``'s recipe and restore the weights of the best
    validation-loss epoch.

    ``init_prior`` (a fresh candidate's first training; ignored by the ``paper`` recipe) first
    sets the output bias to the log class frequencies (:func:`init_output_prior`).
    ``forward_context`` (optional) is entered around every forward pass, in training and
    validation: deployment-aligned fine-tuning passes the precision profile's context here.
    Without one, images and weights are laid out as ``cfg.memory_format`` says while training
    (:func:`training_layout`); the model is handed back in the standard (NCHW) layout.
    ``deadline`` is a ``time.monotonic()`` value after which training stops with an
    :class:`EvaluationError`. A non-finite training loss raises :class:`EvaluationError`.
    """
    epochs = cfg.epochs if epochs is None else epochs
    ctx = forward_context or contextlib.nullcontext
    recipe = _recipe(cfg)
    schedule = str(getattr(cfg, "schedule", "constant")) if recipe == "balanced" else "constant"
    if schedule not in SCHEDULES:
        raise ConfigError(f"train.schedule: {schedule!r} is not one of {', '.join(SCHEDULES)}")
    loss_of = loss_fn(cfg)
    if init_prior and recipe == "balanced":
        init_output_prior(model, train_set)
    loader = train_loader(train_set, cfg, seed)
    val_loader = DataLoader(val_set, batch_size=max(cfg.batch_size, 16), shuffle=False)
    layout = training_layout(cfg, aligned=forward_context is not None)
    model.to(device, memory_format=layout)
    base_lr = cfg.lr if lr is None else lr
    optimiser = torch.optim.Adam(model.parameters(), lr=base_lr)
    total_steps = epochs * len(loader)
    best_loss, best_state, stale = math.inf, copy.deepcopy(model.state_dict()), 0
    history: list[dict[str, float]] = []
    start = time.perf_counter()
    steps, step_time = 0, 0.0
    epoch = 0
    for epoch in range(1, epochs + 1):
        model.train()
        running, seen = 0.0, 0
        for images, masks in loader:
            t0 = time.perf_counter()
            for group in optimiser.param_groups:
                group["lr"] = base_lr * lr_factor(steps, total_steps, schedule)
            images, masks = _to(images, device, layout), masks.to(device)
            optimiser.zero_grad(set_to_none=True)
            with ctx():
                logits = model(images)
            loss = loss_of(logits, masks)
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
        val_loss, val_bad = _loss_on(model, val_loader, loss_of, device, ctx, layout)
        history.append({"epoch": epoch, "train_loss": running / max(seen, 1), "val_loss": val_loss,
                        "val_nonfinite_pixels": val_bad})
        logger.debug("%s epoch %d train %.4f val %.4f (non-finite pixels %d)", label, epoch,
                     running / max(seen, 1), val_loss, val_bad)
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
    model.to(memory_format=torch.contiguous_format)
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
