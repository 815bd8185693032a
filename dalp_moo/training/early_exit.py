"""Training and exact measurement of early-exit candidates, affordable on a CPU.

No accuracy is predicted. The expensive parts are shared by all candidates and done once:

1. **Backbone, once per precision** (:meth:`ExitBank.backbone`): the FP32 backbone with a
   linear final classifier is trained on the training split (SGD with Nesterov momentum, cosine
   learning rate, random crops and flips). The 4- and 8-bit backbones start from it and are
   trained quantisation-aware for ``train.qat_epochs``; the 16-bit backbone is the FP32 one
   deployed as FP16 under the numerics profile ``train.profile`` (post-training conversion).
2. **Pooled features, once per backbone precision** (:meth:`ExitBank.features`): the frozen
   backbone's outputs at all 11 exit positions, max-pooled to ``C x 4 x 4`` (what every head's
   classifier consumes; max-pooling commutes with the heads' monotone input quantiser), for
   the train, calibration and test splits.
3. **Every exit head, once** (:meth:`ExitBank.head`): per backbone precision, exit precision,
   position (A..K) and head type, the head's classifier is trained on the cached training
   features (Adam, cosine learning rate; 4/8 bit quantisation-aware, 16 bit trained in FP32 and
   deployed as FP16), and its softmax outputs on the calibration and test splits are stored.

A candidate's accuracy, exit fractions r_k and per-exit accuracies are then computed exactly
from the stored outputs (:func:`exit_statistics`): a sample leaves at the first exit whose
maximum softmax probability reaches the threshold (the final exit takes the rest), which is what
the deployed network computes. Everything is cached under ``cache_dir`` with atomic writes and
per-item file locks, so concurrent processes (Dask workers) train each item once.

:func:`joint_finetune` optionally fine-tunes whole candidates (backbone and heads, weighted sum of
the exit losses) and re-measures them with the same code path.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import fcntl
import hashlib
import json
import math
import os
import tempfile
import time
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from dalp_moo.data.classification import ClassificationData, Split
from dalp_moo.errors import ConfigError, EvaluationError
from dalp_moo.log import logger
from dalp_moo.model.mobilenetv2_ee import (
    EXIT_LETTERS,
    HEAD_TYPES,
    EarlyExitNetwork,
    ExitHead,
    MobileNetV2Backbone,
    PooledFeatures,
    select_exits,
)
from dalp_moo.precision import PROFILES, quant
from dalp_moo.training.trainer import resolve_device, torch_threads

#: version of the training recipe: enters every cache key (bump when training changes)
RECIPE_VERSION = "3"
FINAL_POSITION = len(EXIT_LETTERS) - 1
JOINT_WEIGHTS = ("uniform", "linear")


def _check(cond: bool, key: str, message: str) -> None:
    if not cond:
        raise ConfigError(f"config value train.{key}: {message}")


@dataclass(frozen=True)
class EarlyExitTrainConfig:
    """The ``[train]`` section of the early-exit application (epochs, learning rates, caches)."""

    epochs: int = 12  #: FP32 backbone training epochs
    qat_epochs: int = 3  #: 4/8-bit quantisation-aware epochs, starting from the FP32 backbone
    head_epochs: int = 15  #: epochs of every exit head on the cached features
    batch_size: int = 64  #: backbone training batch (images)
    head_batch_size: int = 128  #: exit-head training batch (cached feature maps)
    lr: float = 0.05  #: backbone SGD learning rate (Nesterov momentum 0.9, cosine decay)
    qat_lr: float = 0.005  #: QAT learning rate (cosine decay)
    head_lr: float = 0.002  #: exit-head Adam learning rate (cosine decay)
    weight_decay: float = 5e-4  #: backbone weight decay
    head_weight_decay: float = 1e-4  #: exit-head weight decay (decoupled, AdamW)
    profile: str = "ieee"  #: FP16 numerics profile of 16-bit parts (see dalp_moo.precision.PROFILES)
    joint_finetune: bool = False  #: at the end of a run, fine-tune the front's candidates jointly
    joint_epochs: int = 2  #: joint fine-tuning epochs
    joint_lr: float = 0.002  #: joint fine-tuning learning rate (SGD, cosine decay)
    joint_weights: str = "linear"  #: exit-loss weights: 'uniform' or 'linear' (exit k of n: k/n)
    joint_candidates: int = 4  #: front candidates fine-tuned (best calibration accuracy first; 0 = all)
    device: str = "auto"  #: training device: 'auto' (CUDA when present, else CPU), 'cpu' or 'cuda'
    threads: int = field(default=0, metadata={"hash": False})  #: torch CPU threads (0 = default)
    eval_batch_size: int = field(default=256, metadata={"hash": False})  #: inference batch

    def __post_init__(self) -> None:
        _check(self.epochs >= 1, "epochs", f"must be >= 1, got {self.epochs}")
        for key in ("qat_epochs", "joint_epochs"):
            _check(getattr(self, key) >= 0, key, "must be >= 0")
        _check(self.head_epochs >= 1, "head_epochs", "must be >= 1")
        for key in ("batch_size", "head_batch_size", "eval_batch_size"):
            _check(getattr(self, key) >= 1, key, "must be >= 1")
        for key in ("lr", "qat_lr", "head_lr", "joint_lr"):
            _check(0 < getattr(self, key) < 1, key, f"must be in (0, 1), got {getattr(self, key)}")
        for key in ("weight_decay", "head_weight_decay"):
            _check(0 <= getattr(self, key) < 1, key, "must be in [0, 1)")
        _check(self.profile in PROFILES, "profile", f"{self.profile!r} is not one of {', '.join(sorted(PROFILES))}")
        _check(self.profile not in PROFILES or PROFILES[self.profile].format != "int8", "profile",
               "the 16-bit parts run as FP16 or bf16 (integer parts are the 4/8-bit QAT precisions); "
               f"{self.profile!r} is an int8 deployment profile")
        _check(self.joint_weights in JOINT_WEIGHTS, "joint_weights",
               f"{self.joint_weights!r} is not one of {', '.join(JOINT_WEIGHTS)}")
        _check(self.joint_candidates >= 0, "joint_candidates", "must be >= 0")
        _check(self.device in ("auto", "cpu", "cuda"), "device", f"{self.device!r} is not one of auto, cpu, cuda")
        _check(self.threads >= 0, "threads", "must be >= 0")

    def hashed(self) -> dict[str, Any]:
        """The fields that change trained models (not threads, batch of inference, cache)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.metadata.get("hash", True)}


def _key(*parts: Any) -> str:
    blob = json.dumps(parts, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


# -- atomic, locked cache files -----------------------------------------------------------------
@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Exclusive lock on ``path`` (created) for the duration of the ``with`` (POSIX flock)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def atomic_write(path: Path, write: Any) -> None:
    """Call ``write(tmp_path)``, then rename the temporary file onto ``path`` (atomic)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _save_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    def write(tmp: str) -> None:
        with open(tmp, "wb") as fh:
            np.savez(fh, **arrays)
    atomic_write(path, write)


def _save_npy(path: Path, array: np.ndarray) -> None:
    def write(tmp: str) -> None:
        with open(tmp, "wb") as fh:
            np.save(fh, array)
    atomic_write(path, write)


def _save_state(path: Path, state: dict[str, torch.Tensor]) -> None:
    atomic_write(path, lambda tmp: torch.save(state, tmp))


def _load_state(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, map_location="cpu", weights_only=True)


# -- small training helpers ---------------------------------------------------------------------
def augment(x: torch.Tensor, rng: np.random.Generator, flip: bool, pad: int = 4) -> torch.Tensor:
    """Random crops after ``pad`` px zero padding (zero = the mean after standardisation) and,
    with ``flip``, random horizontal flips."""
    n, _, h, w = x.shape
    padded = F.pad(x, (pad, pad, pad, pad))
    dy = rng.integers(0, 2 * pad + 1, n)
    dx = rng.integers(0, 2 * pad + 1, n)
    out = torch.stack([padded[i, :, dy[i]:dy[i] + h, dx[i]:dx[i] + w] for i in range(n)])
    if flip:
        mask = torch.from_numpy(rng.random(n) < 0.5)
        out[mask] = out[mask].flip(-1)
    return out


def _cosine(optimiser: torch.optim.Optimizer, steps: int) -> torch.optim.lr_scheduler.LRScheduler:
    return torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, T_max=max(1, steps))


def _batches(n: int, batch: int, rng: np.random.Generator | None) -> Iterator[np.ndarray]:
    order = rng.permutation(n) if rng is not None else np.arange(n)
    drop_last = rng is not None and n > batch
    stop = (n // batch) * batch if drop_last else n
    for start in range(0, stop, batch):
        yield order[start:start + batch]


def _finite_loss(loss: torch.Tensor, what: str) -> None:
    if not torch.isfinite(loss):
        raise EvaluationError(f"{what}: non-finite training loss")


@dataclass
class TrainingLog:
    """What an :class:`ExitBank` trained in this process (counts and seconds)."""

    backbones: int = 0
    heads: int = 0
    feature_sets: int = 0
    seconds: float = 0.0
    items: list[dict[str, Any]] = field(default_factory=list)

    def add(self, kind: str, key: str, seconds: float, **info: Any) -> None:
        if kind == "backbone":
            self.backbones += 1
        elif kind == "head":
            self.heads += 1
        elif kind == "features":
            self.feature_sets += 1
        self.seconds += seconds
        self.items.append({"kind": kind, "key": key, "seconds": round(seconds, 3), **info})


# -- exact candidate statistics ----------------------------------------------------------------
@dataclass(frozen=True)
class ExitStatistics:
    """Outcome of exit selection on one split (fractions in [0, 1]).

    ``exit_fractions[k]``: r_k, share of samples leaving at exit k; ``exit_accuracy[k]``:
    accuracy of those samples (None when none leave there); ``head_accuracy[k]``: accuracy of
    head k on all samples; ``accuracy_static``: the final head on all samples.
    """

    accuracy: float
    exit_fractions: tuple[float, ...]
    exit_accuracy: tuple[float | None, ...]
    head_accuracy: tuple[float, ...]
    accuracy_static: float
    samples: int


def exit_statistics(probs: Sequence[np.ndarray], labels: np.ndarray, threshold: float) -> ExitStatistics:
    """Exit selection at ``threshold`` from per-exit softmax outputs ``[N, classes]`` (in exit
    order, the final exit last) and the labels."""
    p = np.stack([np.asarray(q, dtype=np.float32) for q in probs])  # [exits, N, C]
    labels = np.asarray(labels)
    n_exits, n = p.shape[0], p.shape[1]
    conf = torch.from_numpy(p.max(axis=2))
    taken = select_exits(conf, threshold).numpy()
    pred = p.argmax(axis=2)  # [exits, N]
    correct_all = pred == labels[None, :]
    correct = correct_all[taken, np.arange(n)]
    counts = np.bincount(taken, minlength=n_exits)
    exit_acc = tuple(float(correct[taken == k].mean()) if counts[k] else None for k in range(n_exits))
    return ExitStatistics(
        accuracy=float(correct.mean()) if n else 0.0,
        exit_fractions=tuple(float(c) / n for c in counts),
        exit_accuracy=exit_acc,
        head_accuracy=tuple(float(v) for v in correct_all.mean(axis=1)),
        accuracy_static=float(correct_all[-1].mean()),
        samples=n,
    )


def fit_threshold(probs: Sequence[np.ndarray], labels: np.ndarray, thresholds: Sequence[float],
                  min_accuracy: float) -> float | None:
    """The lowest threshold of ``thresholds`` (the one sending most samples out early) whose
    accuracy on these outputs is ``>= min_accuracy``; None if no threshold reaches it."""
    for t in sorted(thresholds):
        if exit_statistics(probs, labels, t).accuracy >= min_accuracy - 1e-12:
            return float(t)
    return None


# -- inference ----------------------------------------------------------------------------------
def _inference_module(module: nn.Module, bits: int, profile: str, example: torch.Tensor) -> nn.Module:
    """``module`` as it computes at ``bits``: an FP16 deployed copy at 16 bit, else eval mode."""
    if bits == 16:
        return quant.fp16_deploy(module, profile, example)
    return module.eval()


@torch.no_grad()
def _run_batched(module: nn.Module, x: np.ndarray | torch.Tensor, batch: int,
                 channels_last: bool = False) -> list[torch.Tensor]:
    outs: list[list[torch.Tensor]] = []
    t = torch.as_tensor(x)
    if channels_last:
        module.to(memory_format=torch.channels_last)
    for start in range(0, t.shape[0], batch):
        xb = t[start:start + batch].float()
        y = module(xb.contiguous(memory_format=torch.channels_last) if channels_last else xb)
        outs.append([v.contiguous() for v in y] if isinstance(y, (list, tuple)) else [y.contiguous()])
    return [torch.cat(parts) for parts in zip(*outs, strict=True)]


class ExitBank:
    """Trained backbones, pooled features and exit heads of one data set and space, cached.

    ``augment``: random crops (and flips where the data allow) in backbone training.
    ``cache_dir`` (the run's ``data.cache_dir``): '' keeps everything in memory (tests, library use).
    ``log`` counts what this process trained; ``feature_slots`` backbone precisions' features
    are kept in memory at once.
    """

    def __init__(self, data: ClassificationData, cfg: EarlyExitTrainConfig, *, width: float = 1.0,
                 seed: int = 0, augment: bool = True, cache_dir: str | Path = "",
                 feature_slots: int = 2) -> None:
        self.data = data
        self.augment = bool(augment)
        self.cfg = cfg
        self.width = float(width)
        self.seed = int(seed)
        self.root = Path(cache_dir).expanduser() if cache_dir else None
        self.log = TrainingLog()
        self._backbones: dict[int, EarlyExitNetwork] = {}
        self._features: OrderedDict[int, dict[str, list[np.ndarray]]] = OrderedDict()
        self._heads: dict[tuple, dict[str, np.ndarray]] = {}
        self._head_states: dict[tuple, dict[str, torch.Tensor]] = {}
        self.feature_slots = max(1, feature_slots)
        self.data_key = data.fingerprint()
        self.device = resolve_device(cfg.device)

    # -- keys and paths --------------------------------------------------------------------------
    def backbone_key(self, bits: int) -> str:
        """Cache key of the backbone at ``bits`` (data, width, seed, recipe)."""
        c = self.cfg
        recipe = {"epochs": c.epochs, "batch": c.batch_size, "lr": c.lr, "wd": c.weight_decay,
                  "augment": self.augment}
        if quant.is_integer(bits):
            recipe.update(qat_epochs=c.qat_epochs, qat_lr=c.qat_lr)
        if bits == 16:
            recipe.update(profile=c.profile)
        return _key("backbone", RECIPE_VERSION, self.data_key, self.width, self.seed, bits, recipe)

    def head_key(self, backbone_bits: int, exit_bits: int, position: int, head: str) -> str:
        """Cache key of one exit head."""
        c = self.cfg
        recipe = {"epochs": c.head_epochs, "batch": c.head_batch_size, "lr": c.head_lr,
                  "wd": c.head_weight_decay, "profile": c.profile if exit_bits == 16 else None}
        return _key("head", RECIPE_VERSION, self.backbone_key(backbone_bits), exit_bits, position, head, recipe)

    def _path(self, name: str) -> Path | None:
        return None if self.root is None else self.root / name

    @contextlib.contextmanager
    def _locked(self, name: str) -> Iterator[None]:
        path = self._path(f"locks/{name}.lock")
        if path is None:
            yield
            return
        with file_lock(path):
            yield

    def _torch_seed(self, *parts: Any) -> int:
        return int(_key("seed", self.seed, *parts)[:8], 16)

    # -- backbones --------------------------------------------------------------------------------
    def _new_backbone(self, bits: int) -> MobileNetV2Backbone:
        return MobileNetV2Backbone(self.data.in_channels, self.width, 32 if bits == 16 else bits)

    def _static_net(self, bits: int) -> EarlyExitNetwork:
        """Backbone at ``bits`` with the linear final classifier it is trained with."""
        model = self._new_backbone(bits)
        g = model.geometry[FINAL_POSITION]
        head = ExitHead(g.channels, g.size, self.data.num_classes, "linear", 32 if bits == 16 else bits)
        return EarlyExitNetwork(model, (FINAL_POSITION,), (head,))

    def backbone(self, bits: int) -> nn.Module:
        """The trained backbone at ``bits`` (16 bit: the FP32 module; deploy it with the profile)."""
        return self.static_network(bits).backbone

    def static_network(self, bits: int) -> EarlyExitNetwork:
        """The trained backbone at ``bits`` with its training classifier (frozen, eval mode)."""
        quant.check_bits(bits, "backbone precision")
        if bits in self._backbones:
            return self._backbones[bits]
        if bits == 16:
            self._backbones[16] = self.static_network(32)
            return self._backbones[16]
        key = self.backbone_key(bits)
        name = f"backbone-b{bits}-{key}.pt"
        with self._locked(name):
            path = self._path(name)
            if path is not None and path.is_file():
                net = self._static_net(bits)
                net.load_state_dict(_load_state(path))
                logger.debug("backbone %d bit: loaded %s", bits, path)
            else:
                net = self._train_backbone(bits, key)
                if path is not None:
                    _save_state(path, net.state_dict())
        net.eval()
        for p in net.parameters():
            p.requires_grad_(False)
        self._backbones[bits] = net
        return net

    def _train_backbone(self, bits: int, key: str) -> EarlyExitNetwork:
        c = self.cfg
        fp32 = self.static_network(32) if bits != 32 else None  # trained first (its time is logged apart)
        t0 = time.perf_counter()
        torch.manual_seed(self._torch_seed("backbone", bits))
        net = self._static_net(bits)
        if fp32 is None:
            epochs, lr = c.epochs, c.lr
        else:  # 4/8 bit: quantisation-aware training from the FP32 weights (classifier included)
            _, unexpected = net.load_state_dict(fp32.state_dict(), strict=False)
            if unexpected:
                raise EvaluationError(f"QAT backbone: unexpected FP32 keys {unexpected[:3]}")
            epochs, lr = c.qat_epochs, c.qat_lr
        for p in net.parameters():
            p.requires_grad_(True)
        net = net.to(self.device)
        if epochs > 0:
            logger.info("training the %d-bit backbone (%d epochs, %d images)", bits, epochs, len(self.data.train))
            self._fit(net, epochs, lr, momentum=True, weight_decay=c.weight_decay,
                      what=f"backbone {bits} bit", rng_key=("backbone", bits))
        net = net.cpu()
        seconds = time.perf_counter() - t0
        self.log.add("backbone", key, seconds, bits=bits, epochs=epochs)
        logger.info("%d-bit backbone trained in %.0f s", bits, seconds)
        return net

    def _fit(self, net: EarlyExitNetwork, epochs: int, lr: float, *, momentum: bool, weight_decay: float,
             what: str, rng_key: tuple, loss_weights: Sequence[float] | None = None) -> None:
        """Train ``net`` (all exits, weighted) on the training split with augmentation."""
        c = self.cfg
        train = self.data.train
        x_all = torch.from_numpy(train.x)
        y_all = torch.from_numpy(train.y)
        rng = np.random.default_rng(self._torch_seed("order", *rng_key))
        params = [p for p in net.parameters() if p.requires_grad]
        opt = torch.optim.SGD(params, lr=lr, momentum=0.9, nesterov=True, weight_decay=weight_decay) \
            if momentum else torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
        steps = epochs * max(1, len(train) // c.batch_size if len(train) > c.batch_size else 1)
        sched = _cosine(opt, steps)
        weights = list(loss_weights) if loss_weights is not None else [1.0] * len(net.heads)
        net.to(memory_format=torch.channels_last)  # about 2x faster convolutions on CPUs
        t0 = time.perf_counter()
        with torch_threads(c.threads):
            for epoch in range(epochs):
                net.train()
                total, n = 0.0, 0
                for idx in _batches(len(train), c.batch_size, rng):
                    xb = x_all[idx]
                    if self.augment:
                        xb = augment(xb, rng, self.data.flip)
                    xb = xb.to(self.device).contiguous(memory_format=torch.channels_last)
                    yb = y_all[idx].to(self.device)
                    logits = net(xb)
                    loss = sum(w * F.cross_entropy(z, yb) for w, z in zip(weights, logits, strict=True))
                    _finite_loss(loss, what)
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
                    sched.step()
                    total += float(loss.detach()) * len(idx)
                    n += len(idx)
                logger.info("%s: epoch %d/%d, loss %.4f (%.0f s)", what, epoch + 1, epochs, total / max(n, 1),
                            time.perf_counter() - t0)

    # -- pooled features --------------------------------------------------------------------------
    def features(self, bits: int) -> dict[str, list[np.ndarray]]:
        """Pooled features ``{split: [11 x [N, C*16]]}`` of the frozen ``bits`` backbone."""
        if bits in self._features:
            self._features.move_to_end(bits)
            return self._features[bits]
        key = self.backbone_key(bits)
        name = f"features-b{bits}-{key}"
        geometry = self._new_backbone(32).geometry
        sizes = [g.pooled_features for g in geometry]
        with self._locked(name):
            paths = {s: self._path(f"{name}-{s}.npy") for s in ("train", "calib", "test")}
            if all(p is not None and p.is_file() for p in paths.values()):
                flat = {s: np.load(p, mmap_mode="r") for s, p in paths.items()}
            else:
                self.backbone(bits)  # trained first (its time is logged apart)
                t0 = time.perf_counter()
                flat = self._extract(bits)
                for s, arr in flat.items():
                    if paths[s] is not None:
                        _save_npy(paths[s], arr)
                self.log.add("features", key, time.perf_counter() - t0, bits=bits)
        offsets = np.cumsum([0] + sizes)
        out = {s: [a[:, offsets[i]:offsets[i + 1]] for i in range(len(sizes))] for s, a in flat.items()}
        self._features[bits] = out
        while len(self._features) > self.feature_slots:
            self._features.popitem(last=False)
        return out

    def _extract(self, bits: int) -> dict[str, np.ndarray]:
        backbone = self.backbone(bits)
        example = torch.from_numpy(self.data.train.x[:2])
        module = _inference_module(PooledFeatures(backbone), bits, self.cfg.profile, example)
        out = {}
        with torch_threads(self.cfg.threads):
            for s in ("train", "calib", "test"):
                feats = _run_batched(module, self.data.split(s).x, self.cfg.eval_batch_size,
                                     channels_last=bits != 16)
                out[s] = torch.cat(feats, dim=1).numpy().astype(np.float32)
        logger.info("pooled features of the %d-bit backbone extracted", bits)
        return out

    # -- exit heads ---------------------------------------------------------------------------------
    def _new_head(self, position: int, head: str, exit_bits: int) -> ExitHead:
        g = self._new_backbone(32).geometry[position]
        return ExitHead(g.channels, g.size, self.data.num_classes, head, 32 if exit_bits == 16 else exit_bits)

    def head(self, backbone_bits: int, exit_bits: int, position: int, head: str) -> dict[str, np.ndarray]:
        """Softmax outputs ``{"calib": [N, C], "test": [N, C]}`` of one trained exit head."""
        if head not in HEAD_TYPES:
            raise ConfigError(f"unknown head type {head!r}")
        quant.check_bits(exit_bits, "exit precision")
        ident = (backbone_bits, exit_bits, position, head)
        if ident in self._heads:
            return self._heads[ident]
        key = self.head_key(*ident)
        name = f"heads/{EXIT_LETTERS[position]}-{head}-b{backbone_bits}-e{exit_bits}-{key}"
        with self._locked(name.replace("/", "-")):
            npz, pt = self._path(name + ".npz"), self._path(name + ".pt")
            if npz is not None and npz.is_file() and pt is not None and pt.is_file():
                with np.load(npz) as z:
                    out = {k: z[k] for k in z.files}
                state = _load_state(pt)
            else:
                out, state = self._train_head(*ident, key)
                if npz is not None and pt is not None:
                    _save_state(pt, state)
                    _save_npz(npz, out)
        self._heads[ident] = out
        self._head_states[ident] = state
        return out

    def head_module(self, backbone_bits: int, exit_bits: int, position: int, head: str) -> ExitHead:
        """A trained exit head (a fresh module loaded with the cached weights)."""
        self.head(backbone_bits, exit_bits, position, head)
        module = self._new_head(position, head, exit_bits)
        module.classifier.load_state_dict(self._head_states[(backbone_bits, exit_bits, position, head)])
        return module.eval()

    def _train_head(self, backbone_bits: int, exit_bits: int, position: int, head: str,
                    key: str) -> tuple[dict[str, np.ndarray], dict[str, torch.Tensor]]:
        c = self.cfg
        feats = self.features(backbone_bits)  # extracted first (its time is logged apart)
        t0 = time.perf_counter()
        x = torch.from_numpy(np.ascontiguousarray(feats["train"][position]))
        y = torch.from_numpy(self.data.train.y)
        torch.manual_seed(self._torch_seed("head", backbone_bits, exit_bits, position, head))
        module = self._new_head(position, head, exit_bits)
        clf = module.classifier.to(self.device)
        opt = torch.optim.AdamW(clf.parameters(), lr=c.head_lr, weight_decay=c.head_weight_decay)
        batches = max(1, len(y) // c.head_batch_size if len(y) > c.head_batch_size else 1)
        sched = _cosine(opt, c.head_epochs * batches)
        rng = np.random.default_rng(self._torch_seed("head-order", backbone_bits, exit_bits, position, head))
        what = f"head {EXIT_LETTERS[position]}/{head} at {backbone_bits}/{exit_bits} bit"
        with torch_threads(c.threads):
            for _ in range(c.head_epochs):
                clf.train()
                for idx in _batches(len(y), c.head_batch_size, rng):
                    loss = F.cross_entropy(clf(x[idx].to(self.device)), y[idx].to(self.device))
                    _finite_loss(loss, what)
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
                    sched.step()
            clf = clf.cpu().eval()
            example = x[:2]
            infer = _inference_module(clf, exit_bits, c.profile, example)
            out = {}
            for s in ("calib", "test"):
                (logits,) = _run_batched(infer, np.ascontiguousarray(feats[s][position]), c.eval_batch_size)
                out[s] = torch.softmax(logits.double(), dim=1).float().numpy()
        seconds = time.perf_counter() - t0
        self.log.add("head", key, seconds, position=EXIT_LETTERS[position], head=head,
                     backbone_bits=backbone_bits, exit_bits=exit_bits)
        logger.debug("%s trained in %.1f s", what, seconds)
        return out, {k: v.detach().clone() for k, v in clf.state_dict().items()}

    # -- candidates -------------------------------------------------------------------------------
    def candidate_outputs(self, positions: Sequence[int], heads: Sequence[str], backbone_bits: int,
                          exit_bits: int, split: str) -> list[np.ndarray]:
        """Per-exit softmax outputs of a candidate on ``split`` ('calib' or 'test')."""
        return [self.head(backbone_bits, exit_bits, p, h)[split] for p, h in zip(positions, heads, strict=True)]

    def statistics(self, positions: Sequence[int], heads: Sequence[str], backbone_bits: int, exit_bits: int,
                   threshold: float, split: str) -> ExitStatistics:
        """Exact :class:`ExitStatistics` of a candidate on ``split``."""
        probs = self.candidate_outputs(positions, heads, backbone_bits, exit_bits, split)
        return exit_statistics(probs, self.data.split(split).y, threshold)

    def network(self, positions: Sequence[int], heads: Sequence[str], backbone_bits: int,
                exit_bits: int) -> EarlyExitNetwork:
        """The candidate as one trainable module (trained backbone and head weights; 16-bit parts
        as FP32 modules)."""
        backbone = copy.deepcopy(self.backbone(backbone_bits))
        for p in backbone.parameters():
            p.requires_grad_(True)
        modules = [self.head_module(backbone_bits, exit_bits, p, h) for p, h in zip(positions, heads, strict=True)]
        return EarlyExitNetwork(backbone, positions, modules)

    def describe(self) -> dict[str, Any]:
        """Cache folder and what this process trained."""
        return {"cache_dir": str(self.root) if self.root else "", "recipe_version": RECIPE_VERSION,
                "trained": {"backbones": self.log.backbones, "heads": self.log.heads,
                            "feature_sets": self.log.feature_sets, "seconds": round(self.log.seconds, 1)}}


def network_outputs(net: EarlyExitNetwork, backbone_bits: int, exit_bits: int, x: np.ndarray, profile: str,
                    batch: int = 256) -> list[np.ndarray]:
    """Per-exit softmax outputs of a whole candidate network on images ``x``, each part computing
    at its precision (16 bit: FP16 deployed copies under ``profile``)."""
    example = torch.from_numpy(np.ascontiguousarray(x[:2]))
    feats_mod = _inference_module(PooledFeatures(net.backbone), backbone_bits, profile, example)
    feats = _run_batched(feats_mod, x, batch, channels_last=backbone_bits != 16)
    outs = []
    for p, head in zip(net.positions, net.heads, strict=True):
        clf = _inference_module(head.classifier, exit_bits, profile, feats[p][:2])
        (logits,) = _run_batched(clf, feats[p], batch)
        outs.append(torch.softmax(logits.double(), dim=1).float().numpy())
    return outs


def joint_weights(n_exits: int, kind: str) -> list[float]:
    """Exit-loss weights summing to 1: 'uniform', or 'linear' (exit k of n weighs k/n)."""
    raw = [1.0] * n_exits if kind == "uniform" else [float(k + 1) for k in range(n_exits)]
    s = sum(raw)
    return [w / s for w in raw]


@dataclass(frozen=True)
class FinetuneResult:
    """Re-measured candidate after joint fine-tuning (calibration and test statistics)."""

    calib: ExitStatistics
    test: ExitStatistics
    seconds: float


def joint_finetune(bank: ExitBank, positions: Sequence[int], heads: Sequence[str], backbone_bits: int,
                   exit_bits: int, threshold: float) -> FinetuneResult:
    """Fine-tune backbone and heads of one candidate together (weighted exit losses, SGD,
    ``train.joint_epochs``), then re-measure it at ``threshold`` on calibration and test data."""
    c = bank.cfg
    t0 = time.perf_counter()
    net = bank.network(positions, heads, backbone_bits, exit_bits).to(bank.device)
    weights = joint_weights(len(positions), c.joint_weights)
    if c.joint_epochs > 0:
        bank._fit(net, c.joint_epochs, c.joint_lr, momentum=True, weight_decay=c.weight_decay,
                  what=f"joint fine-tuning {''.join(EXIT_LETTERS[p] for p in positions)}",
                  rng_key=("joint", tuple(positions), tuple(heads), backbone_bits, exit_bits),
                  loss_weights=weights)
    net = net.cpu().eval()
    stats = {}
    with torch_threads(c.threads):
        for s in ("calib", "test"):
            probs = network_outputs(net, backbone_bits, exit_bits, bank.data.split(s).x, c.profile,
                                    c.eval_batch_size)
            stats[s] = exit_statistics(probs, bank.data.split(s).y, threshold)
    return FinetuneResult(stats["calib"], stats["test"], time.perf_counter() - t0)


def split_summary(split: Split) -> dict[str, int]:
    """Images in a split (for reports)."""
    return {"images": len(split)}


def finite_or_none(v: float | None) -> float | None:
    """``v`` when finite, else None (JSON-safe metrics)."""
    return None if v is None or not math.isfinite(v) else float(v)
