"""Image classification data for the early-exit application.

Sources (``data.source``):

* ``chips`` (default, embedded): the synthetic maritime chip set of :mod:`dalp_moo.data.chips`
  (32x32 raw-DN chips of open sea, vessel, cloud, land and glint; 3 bands: blue, green, red),
  generated from ``data.seed``; splits 70/15/15 by index (train / calibration / test).
* ``digits``: scikit-learn's handwritten digits (1797 real 8x8 images, 10 classes, shipped
  inside the package), upsampled bilinearly to 32x32 and repeated on 3 channels; stratified
  60/20/20 split from ``data.seed``.
* ``cifar10:PATH``: CIFAR-10 in its python pickle layout (``PATH`` is the
  ``cifar-10-batches-py`` folder or its parent): ``data_batch_1..5`` (training; the last
  ``data.calib_fraction`` of them is the calibration split) and ``test_batch``. Files are read
  with a restricted unpickler that allows only numpy's array reconstruction globals.

Every source gives float32 ``[N, 3, 32, 32]`` images standardised per channel with the training
split's mean and standard deviation, int64 labels, and the split roles ``train`` (backbone and
exit-head training), ``calib`` (threshold fitting, search objectives) and ``test`` (reported).
"""

from __future__ import annotations

import functools
import hashlib
import io
import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dalp_moo.errors import ConfigError, DataError

SPLITS = ("train", "calib", "test")
IMAGE_SIZE = 32  #: images are 32x32 (the CIFAR-style backbone's input)
CIFAR_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
CIFAR_FILES = CIFAR_BATCHES + ("test_batch", "batches.meta")
CIFAR_ROW = 3 * 32 * 32


def _check(cond: bool, key: str, message: str) -> None:
    if not cond:
        raise ConfigError(f"config value data.{key}: {message}")


@dataclass(frozen=True)
class ClassificationDataConfig:
    """The ``[data]`` section of the early-exit application."""

    source: str = "chips"  #: 'chips' (embedded), 'digits' or 'cifar10:PATH'
    n_samples: int = 3000  #: chips: images over all splits (70/15/15)
    seed: int = 0  #: chips: generator seed; digits: split seed
    max_train: int = 0  #: keep at most this many training images (0 = all; stratified)
    calib_fraction: float = 0.1  #: cifar10: share of the training batches held out for calibration
    augment: bool = True  #: random crops (4 px padding) and, where the classes allow, horizontal flips
    #: cache of the trained backbones, pooled features and exit heads of this data set ('' = in
    #: memory only; relative: inside the run folder)
    cache_dir: str = field(default="ee_cache", metadata={"hash": False})

    def __post_init__(self) -> None:
        _check(bool(self.source), "source", "must not be empty")
        prefix = self.source.partition(":")[0]
        _check(prefix in ("chips", "digits", "cifar10"), "source",
               f"{self.source!r} is not one of chips, digits, cifar10:PATH")
        _check(prefix != "cifar10" or bool(self.source.partition(":")[2]), "source",
               "cifar10 needs a folder: cifar10:PATH")
        _check(self.n_samples >= 20, "n_samples", f"must be >= 20, got {self.n_samples}")
        _check(self.max_train >= 0, "max_train", "must be >= 0")
        _check(0.0 < self.calib_fraction < 0.5, "calib_fraction", "must be in (0, 0.5)")


@dataclass(frozen=True)
class Split:
    """Images float32 ``[N, 3, 32, 32]`` (standardised) and labels int64 ``[N]``."""

    x: np.ndarray
    y: np.ndarray

    def __len__(self) -> int:
        return int(self.y.shape[0])


@dataclass(frozen=True)
class ClassificationData:
    """A classification data set with train / calib / test splits."""

    name: str
    classes: tuple[str, ...]
    train: Split
    calib: Split
    test: Split
    flip: bool  #: horizontal flips preserve the classes (not for digits)
    mean: tuple[float, ...]  #: per-channel mean subtracted (input units)
    std: tuple[float, ...]  #: per-channel standard deviation divided by

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def in_channels(self) -> int:
        return int(self.train.x.shape[1])

    def split(self, name: str) -> Split:
        """The named split (``train``, ``calib`` or ``test``)."""
        if name not in SPLITS:
            raise DataError(f"classification data: unknown split {name!r} ({', '.join(SPLITS)})")
        return getattr(self, name)

    def fingerprint(self) -> str:
        """Hash of all images and labels (16 hex digits): keys caches of trained models."""
        h = hashlib.sha256(self.name.encode())
        for s in SPLITS:
            part = self.split(s)
            h.update(np.ascontiguousarray(part.x).tobytes())
            h.update(np.ascontiguousarray(part.y).tobytes())
        return h.hexdigest()[:16]

    def describe(self) -> dict[str, Any]:
        """Images per split and class counts (for meta.json)."""
        out: dict[str, Any] = {"source": self.name, "classes": list(self.classes),
                               "image": [self.in_channels, IMAGE_SIZE, IMAGE_SIZE],
                               "normalisation": {"mean": list(self.mean), "std": list(self.std)}}
        for s in SPLITS:
            part = self.split(s)
            out[s] = {"images": len(part),
                      "per_class": [int(c) for c in np.bincount(part.y, minlength=self.num_classes)]}
        return out


def _standardise(name: str, classes: tuple[str, ...], splits: dict[str, tuple[np.ndarray, np.ndarray]],
                 flip: bool) -> ClassificationData:
    xt = splits["train"][0].astype(np.float64)
    mean = xt.mean(axis=(0, 2, 3))
    std = xt.std(axis=(0, 2, 3))
    std = np.where(std > 0, std, 1.0)
    m = mean.reshape(1, -1, 1, 1)
    s = std.reshape(1, -1, 1, 1)
    parts = {k: Split(((x - m) / s).astype(np.float32), y.astype(np.int64)) for k, (x, y) in splits.items()}
    return ClassificationData(name, classes, parts["train"], parts["calib"], parts["test"], flip,
                              tuple(float(v) for v in mean), tuple(float(v) for v in std))


def _stratified_cap(x: np.ndarray, y: np.ndarray, cap: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """At most ``cap`` samples, the same share of every class (deterministic)."""
    if cap <= 0 or cap >= len(y):
        return x, y
    rng = np.random.default_rng(seed)
    keep = []
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        n = max(1, int(round(cap * len(idx) / len(y))))
        keep.append(np.sort(rng.permutation(idx)[:n]))
    sel = np.sort(np.concatenate(keep))
    return x[sel], y[sel]


def _stratified_split(y: np.ndarray, fractions: tuple[float, float, float], seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    out: list[list[np.ndarray]] = [[], [], []]
    for c in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == c))
        a = int(round(fractions[0] * len(idx)))
        b = a + int(round(fractions[1] * len(idx)))
        for k, part in enumerate((idx[:a], idx[a:b], idx[b:])):
            out[k].append(part)
    return [np.sort(np.concatenate(p)) for p in out]


# -- chips ------------------------------------------------------------------------------------
def load_chips(cfg: ClassificationDataConfig) -> ClassificationData:
    """The embedded synthetic chip set (3 bands, 32x32)."""
    from dalp_moo.data.chips import CHIP_CLASSES, open_chip_source

    src = open_chip_source(n_chips=cfg.n_samples, chip_size=IMAGE_SIZE, bands=3, seed=cfg.seed)
    splits = {"train": src.split("train"), "calib": src.split("val"), "test": src.split("test")}
    arrays = {k: (np.asarray(v.images, np.float32), np.asarray(v.labels)) for k, v in splits.items()}
    arrays["train"] = _stratified_cap(*arrays["train"], cfg.max_train, cfg.seed)
    return _standardise(f"chips(n={cfg.n_samples},seed={cfg.seed})", tuple(CHIP_CLASSES), arrays, flip=True)


# -- digits -----------------------------------------------------------------------------------
def upsample(images: np.ndarray, size: int = IMAGE_SIZE, channels: int = 3) -> np.ndarray:
    """``[N, h, w]`` -> ``[N, channels, size, size]`` float32 (bilinear, half-pixel centres)."""
    import torch
    import torch.nn.functional as F

    t = torch.from_numpy(np.asarray(images, np.float32))[:, None]
    up = F.interpolate(t, size=(size, size), mode="bilinear", align_corners=False)
    return up.repeat(1, channels, 1, 1).numpy()


def load_digits_data(cfg: ClassificationDataConfig) -> ClassificationData:
    """scikit-learn's digits (real, offline), upsampled to 3x32x32; stratified 60/20/20."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x = upsample(d.images / 16.0)
    y = np.asarray(d.target, np.int64)
    tr, ca, te = _stratified_split(y, (0.6, 0.2, 0.2), cfg.seed)
    arrays = {"train": _stratified_cap(x[tr], y[tr], cfg.max_train, cfg.seed), "calib": (x[ca], y[ca]),
              "test": (x[te], y[te])}
    return _standardise(f"digits(seed={cfg.seed})", tuple(str(i) for i in range(10)), arrays, flip=False)


# -- CIFAR-10 ---------------------------------------------------------------------------------
#: the only globals a CIFAR-10 pickle may reference (numpy array reconstruction)
ALLOWED_GLOBALS = frozenset({
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    ("numpy", "ndarray"), ("numpy", "dtype"),
})


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that resolves only :data:`ALLOWED_GLOBALS` (no arbitrary code)."""

    def __init__(self, file: Any, label: str) -> None:
        super().__init__(file, encoding="bytes")
        self.label = label

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in ALLOWED_GLOBALS:
            raise DataError(f"cifar10: {self.label} references the disallowed global {module}.{name} "
                            "(only numpy array reconstruction is allowed)")
        import numpy as np_mod
        if name in ("ndarray", "dtype"):
            return getattr(np_mod, name)
        core = getattr(np_mod, "_core", None) or np_mod.core
        return getattr(core.multiarray, name)


def read_pickle(path: Path) -> Any:
    """Unpickle ``path`` with :class:`RestrictedUnpickler`; errors are one-line DataErrors."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DataError(f"cifar10: cannot read {path}: {exc.strerror}") from exc
    try:
        return RestrictedUnpickler(io.BytesIO(data), str(path)).load()
    except DataError:
        raise
    except Exception as exc:  # truncated, not a pickle, ...
        raise DataError(f"cifar10: {path} is not a readable pickle ({type(exc).__name__}: "
                        f"{str(exc).splitlines()[0] if str(exc) else 'no detail'})") from exc


def _field(d: dict, key: str) -> Any:
    for k in (key.encode(), key):
        if k in d:
            return d[k]
    return None


def read_cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """One CIFAR-10 batch file: images uint8 ``[N, 3, 32, 32]`` and labels int64 ``[N]``."""
    d = read_pickle(path)
    if not isinstance(d, dict):
        raise DataError(f"cifar10: {path} does not hold a dict (got {type(d).__name__})")
    data, labels = _field(d, "data"), _field(d, "labels")
    if data is None or labels is None:
        raise DataError(f"cifar10: {path} lacks the 'data' or 'labels' entry")
    if not isinstance(data, np.ndarray) or data.ndim != 2 or data.shape[1] != CIFAR_ROW:
        shape = getattr(data, "shape", type(data).__name__)
        raise DataError(f"cifar10: {path}: data has shape {shape}, expected (N, {CIFAR_ROW})")
    if data.dtype != np.uint8:
        raise DataError(f"cifar10: {path}: data has dtype {data.dtype}, expected uint8")
    try:
        y = np.asarray(labels, dtype=np.int64).reshape(-1)
    except (TypeError, ValueError) as exc:
        raise DataError(f"cifar10: {path}: labels are not integers") from exc
    if y.shape[0] != data.shape[0]:
        raise DataError(f"cifar10: {path}: {y.shape[0]} labels for {data.shape[0]} images")
    if y.size and (y.min() < 0 or y.max() > 9):
        raise DataError(f"cifar10: {path}: labels range {int(y.min())}..{int(y.max())}, expected 0..9")
    return data.reshape(-1, 3, 32, 32), y


def cifar_folder(path: str) -> Path:
    """The ``cifar-10-batches-py`` folder named by ``path`` (the folder or its parent)."""
    p = Path(path).expanduser()
    if not p.is_dir():
        raise DataError(f"cifar10: folder {p} not found")
    if not (p / "test_batch").exists() and (p / "cifar-10-batches-py").is_dir():
        p = p / "cifar-10-batches-py"
    missing = [f for f in CIFAR_FILES if not (p / f).is_file()]
    if missing:
        raise DataError(f"cifar10: {p} lacks {', '.join(missing)} (expected data_batch_1..5, test_batch, "
                        "batches.meta)")
    return p


def load_cifar10(path: str, cfg: ClassificationDataConfig) -> ClassificationData:
    """CIFAR-10 from its python pickle layout (validated; restricted unpickling)."""
    folder = cifar_folder(path)
    meta = read_pickle(folder / "batches.meta")
    names = _field(meta, "label_names") if isinstance(meta, dict) else None
    if names is None or len(names) != 10:
        raise DataError(f"cifar10: {folder / 'batches.meta'} lacks 10 label_names")
    classes = tuple(n.decode() if isinstance(n, bytes) else str(n) for n in names)
    parts = [read_cifar_batch(folder / b) for b in CIFAR_BATCHES]
    x = np.concatenate([p[0] for p in parts])
    y = np.concatenate([p[1] for p in parts])
    n_calib = int(round(cfg.calib_fraction * len(y)))
    xt, yt = read_cifar_batch(folder / "test_batch")
    arrays = {"train": _stratified_cap(x[:-n_calib], y[:-n_calib], cfg.max_train, cfg.seed),
              "calib": (x[-n_calib:], y[-n_calib:]), "test": (xt, yt)}
    arrays = {k: (v[0].astype(np.float32) / 255.0, v[1]) for k, v in arrays.items()}
    return _standardise(f"cifar10({folder})", classes, arrays, flip=True)


@functools.lru_cache(maxsize=2)
def open_classification(cfg: ClassificationDataConfig) -> ClassificationData:
    """Open the data source of ``cfg`` (cached per process)."""
    prefix, _, path = cfg.source.partition(":")
    if prefix == "chips":
        return load_chips(cfg)
    if prefix == "digits":
        return load_digits_data(cfg)
    if prefix == "cifar10":
        return load_cifar10(path, cfg)
    raise DataError(f"data source {cfg.source!r}: unknown (use chips, digits or cifar10:PATH)")
