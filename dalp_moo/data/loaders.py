"""Loaders for real data sets on a local path: ``airbus:PATH`` and ``folder:PATH``.

Both index the files once (headers, masks or run-length strings, all validated), assign whole
images to train/val/test (70/15/15 by the rank of a hash of the image name, so the split depends
only on the names), cut every image into non-overlapping ``tile_size`` tiles (a remainder at the
right/bottom edge is dropped) and read pixels lazily: a split is a torch Dataset that decodes an
image when one of its tiles is asked for and keeps a few decoded images in a small LRU cache.
Images are returned in their native units (8-bit JPEG/PNG values, 16-bit or float TIFF/NPY).
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from dalp_moo.config import DataConfig
from dalp_moo.data.base import SPLITS, BandStats, compute_band_stats
from dalp_moo.data.rle import parse_rle, runs_to_mask
from dalp_moo.errors import DataError
from dalp_moo.log import logger

IMAGE_SUFFIXES = (".png", ".tif", ".tiff", ".npy", ".jpg", ".jpeg")
MASK_SUFFIXES = (".png", ".tif", ".tiff", ".npy")
AIRBUS_CSV = "train_ship_segmentations_v2.csv"
STATS_SAMPLE = 64  #: training tiles read to estimate band statistics


# --------------------------------------------------------------------------- file reading


def _band_axis(shape: tuple[int, ...], path: Path) -> int | None:
    """Axis holding the bands of an image array of ``shape`` (None for a 2-D single band).

    3-D arrays are ``[H,W,B]`` or ``[B,H,W]``: the bands are on the short axis (<= 16).
    """
    if len(shape) == 2:
        return None
    if len(shape) == 3:
        if shape[2] <= 16 and shape[0] > 16:
            return 2
        if shape[0] <= 16 and shape[2] > 16:
            return 0
        if shape[2] <= 16:
            return 2
    raise DataError(f"{path}: image array of shape {tuple(shape)} is not [H,W], [H,W,B] or "
                    "[B,H,W]")


def _chw_shape(shape: tuple[int, ...], path: Path) -> tuple[int, int, int]:
    """(bands, H, W) of an image array of ``shape``."""
    axis = _band_axis(shape, path)
    if axis is None:
        return 1, int(shape[0]), int(shape[1])
    rest = [int(d) for k, d in enumerate(shape) if k != axis]
    return int(shape[axis]), rest[0], rest[1]


def _to_chw(arr: np.ndarray, path: Path) -> np.ndarray:
    """An image array as ``[bands, H, W]``."""
    axis = _band_axis(arr.shape, path)
    if axis is None:
        return arr[None]
    return np.moveaxis(arr, axis, 0)


def _read_array(path: Path) -> np.ndarray:
    """The raw array stored in ``path`` (PNG/JPEG via PIL, TIFF via tifffile, or .npy)."""
    suffix = path.suffix.lower()
    try:
        if suffix == ".npy":
            return np.load(path, allow_pickle=False)
        if suffix in (".tif", ".tiff"):
            import tifffile

            return tifffile.imread(path)
        from PIL import Image

        with Image.open(path) as im:
            return np.asarray(im)
    except DataError:
        raise
    except Exception as exc:  # PIL.UnidentifiedImageError, OSError, ValueError, tifffile errors
        raise DataError(f"{path}: cannot read ({type(exc).__name__}: "
                        f"{str(exc).splitlines()[0] if str(exc) else 'corrupt file'})") from exc


def _image_header(path: Path) -> tuple[int, int, int]:
    """(bands, H, W) of an image file without decoding its pixels where the format allows."""
    suffix = path.suffix.lower()
    try:
        if suffix == ".npy":
            return _chw_shape(np.load(path, mmap_mode="r", allow_pickle=False).shape, path)
        if suffix in (".tif", ".tiff"):
            import tifffile

            with tifffile.TiffFile(path) as tif:
                return _chw_shape(tuple(tif.series[0].shape), path)
        from PIL import Image

        with Image.open(path) as im:
            return len(im.getbands()), int(im.height), int(im.width)
    except DataError:
        raise
    except Exception as exc:
        raise DataError(f"{path}: cannot read ({type(exc).__name__}: "
                        f"{str(exc).splitlines()[0] if str(exc) else 'corrupt file'})") from exc


def read_image(path: Path) -> np.ndarray:
    """Image float32 ``[bands, H, W]`` in the file's native units."""
    return np.ascontiguousarray(_to_chw(_read_array(path), path), dtype=np.float32)


def read_mask(path: Path) -> np.ndarray:
    """Binary mask uint8 ``[H, W]`` from a file.

    Accepted: values {0, 1}; {0, 255} (an 8-bit binary image, 255 = vessel); a one-hot
    ``[H,W,2]`` / ``[2,H,W]`` array (channel 1 = vessel); identical colour channels. Anything
    else raises :class:`DataError` naming the file.
    """
    arr = _read_array(path)
    if arr.ndim == 3:
        chw = _to_chw(arr, path)
        if chw.shape[0] == 2 and set(np.unique(chw).tolist()) <= {0, 1} and (chw.sum(0) == 1).all():
            arr = chw[1]
        elif (chw == chw[:1]).all():
            arr = chw[0]
        else:
            raise DataError(f"{path}: mask has {chw.shape[0]} different channels (need one "
                            "channel of 0/1, or a 2-channel one-hot mask)")
    if arr.ndim != 2:
        raise DataError(f"{path}: mask of shape {arr.shape} is not 2-D")
    values = np.unique(arr)
    if set(values.tolist()) <= {0, 1}:
        return arr.astype(np.uint8)
    if set(values.tolist()) <= {0, 255}:
        return (arr == 255).astype(np.uint8)
    shown = ", ".join(str(v) for v in values[:6].tolist())
    raise DataError(f"{path}: mask values must be 0/1 (found {shown}"
                    f"{', ...' if values.size > 6 else ''})")


# --------------------------------------------------------------------------- tiled source


def hash_split(names: Sequence[str]) -> dict[str, list[int]]:
    """Indices of ``names`` per split: 70/15/15 by rank of sha1(name) (independent of order)."""
    order = sorted(range(len(names)), key=lambda i: hashlib.sha1(names[i].encode()).hexdigest())
    n = len(order)
    n_train = int(round(0.70 * n))
    n_val = int(round(0.15 * n))
    parts = {"train": order[:n_train], "val": order[n_train:n_train + n_val],
             "test": order[n_train + n_val:]}
    return {k: sorted(v) for k, v in parts.items()}


@dataclass(frozen=True)
class ImageEntry:
    """One indexed image: name, shape (px) and vessel pixels (count over the whole image)."""

    name: str
    height: int
    width: int
    vessel_pixels: int


class TiledSplit(Dataset):
    """Tiles of a list of images, read lazily. Items: (float32 ``[B,t,t]``, int64 ``[t,t]``)."""

    def __init__(self, entries: list[ImageEntry], tile_size: int,
                 reader: Callable[[int], tuple[np.ndarray, np.ndarray]],
                 ids: list[int], cache_images: int = 8) -> None:
        self.entries = entries
        self.ids = ids
        self.tile_size = tile_size
        self.reader = reader
        self.cache_images = cache_images
        per = [(entries[i].height // tile_size) * (entries[i].width // tile_size) for i in ids]
        self._offsets = np.concatenate([[0], np.cumsum(per, dtype=np.int64)])
        self._cache: OrderedDict[int, tuple[np.ndarray, np.ndarray]] = OrderedDict()

    def __len__(self) -> int:
        return int(self._offsets[-1])

    def _load(self, image_id: int) -> tuple[np.ndarray, np.ndarray]:
        if image_id in self._cache:
            self._cache.move_to_end(image_id)
            return self._cache[image_id]
        item = self.reader(image_id)
        self._cache[image_id] = item
        while len(self._cache) > self.cache_images:
            self._cache.popitem(last=False)
        return item

    def tile(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Tile ``index`` as numpy: image float32 ``[B,t,t]``, mask uint8 ``[t,t]``."""
        if not 0 <= index < len(self):
            raise IndexError(index)
        k = int(np.searchsorted(self._offsets, index, side="right") - 1)
        image_id = self.ids[k]
        local = index - int(self._offsets[k])
        t = self.tile_size
        per_row = self.entries[image_id].width // t
        y, x = (local // per_row) * t, (local % per_row) * t
        image, mask = self._load(image_id)
        return image[:, y:y + t, x:x + t], mask[y:y + t, x:x + t]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        image, mask = self.tile(index)
        return (torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32)),
                torch.from_numpy(mask.astype(np.int64)))


class TiledSource:
    """A :class:`~dalp_moo.data.base.SegmentationSource` over indexed images (base class)."""

    name: str
    bands: int

    def __init__(self, name: str, root: Path, entries: list[ImageEntry], bands: int,
                 tile_size: int, reader: Callable[[int], tuple[np.ndarray, np.ndarray]]) -> None:
        self.name = name
        self.root = root
        self.bands = bands
        self.tile_size = tile_size
        self.entries = entries
        small = [e for e in entries if e.height < tile_size or e.width < tile_size]
        if small:
            e = small[0]
            raise DataError(f"{root}: image {e.name} is {e.height}x{e.width} px, smaller than "
                            f"tile_size {tile_size} ({len(small)} such image(s))")
        parts = hash_split([e.name for e in entries])
        self._splits: dict[str, TiledSplit] = {}
        for split in SPLITS:
            if not parts[split]:
                raise DataError(f"{root}: split {split!r} is empty ({len(entries)} image(s); "
                                "need at least 4 images for a 70/15/15 split)")
            self._splits[split] = TiledSplit(entries, tile_size, reader, parts[split])
        self._stats: BandStats | None = None

    def split(self, name: str) -> TiledSplit:
        """The named split ("train", "val" or "test")."""
        if name not in self._splits:
            raise DataError(f"{self.root}: unknown split {name!r} (train, val, test)")
        return self._splits[name]

    def band_stats(self) -> BandStats:
        """Per-band statistics estimated on up to :data:`STATS_SAMPLE` evenly spaced training
        tiles (native units)."""
        if self._stats is None:
            train = self._splits["train"]
            picks = np.unique(np.linspace(0, len(train) - 1, min(STATS_SAMPLE, len(train)))
                              .astype(int))
            images = np.stack([train.tile(int(i))[0] for i in picks])
            self._stats = compute_band_stats(images)
        return self._stats

    def describe(self) -> dict:
        """Images and tiles per split, bands, value range (sampled), vessel pixel fraction."""
        out: dict = {"source": self.name, "path": str(self.root), "bands": self.bands,
                     "tile_size": self.tile_size}
        total_v = total_px = 0
        for split, ds in self._splits.items():
            v = sum(self.entries[i].vessel_pixels for i in ds.ids)
            px = sum(self.entries[i].height * self.entries[i].width for i in ds.ids)
            out[split] = {"images": len(ds.ids), "tiles": len(ds),
                          "vessel_fraction": v / max(px, 1)}
            total_v += v
            total_px += px
        out["vessel_fraction"] = total_v / max(total_px, 1)
        stats = self.band_stats()
        out["value_range"] = [stats.minimum, stats.maximum]
        return out


# --------------------------------------------------------------------------- airbus


class AirbusSource(TiledSource):
    """Airbus Ship Detection layout: ``PATH/train_v2/*.jpg`` (or ``PATH/images``, or the JPEGs
    in PATH itself) and ``PATH/train_ship_segmentations_v2.csv`` (ImageId, EncodedPixels)."""

    def __init__(self, path: str | Path, tile_size: int) -> None:
        import pandas as pd

        root = Path(path)
        if not root.is_dir():
            raise DataError(f"airbus data {root}: folder not found")
        csv = root / AIRBUS_CSV
        if not csv.is_file():
            others = sorted(root.glob("*.csv"))
            if len(others) != 1:
                raise DataError(f"airbus data {root}: {AIRBUS_CSV} not found")
            csv = others[0]
        image_dir = next((d for d in (root / "train_v2", root / "images") if d.is_dir()), root)
        files = {p.stem: p for p in sorted(image_dir.iterdir())
                 if p.suffix.lower() in (".jpg", ".jpeg", ".png")}
        if not files:
            raise DataError(f"airbus data {root}: no .jpg images in {image_dir}")
        try:
            table = pd.read_csv(csv, dtype=str, keep_default_na=False)
        except Exception as exc:
            raise DataError(f"{csv}: cannot read CSV ({str(exc).splitlines()[0]})") from exc
        missing = {"ImageId", "EncodedPixels"} - set(table.columns)
        if missing:
            raise DataError(f"{csv}: missing column(s) {', '.join(sorted(missing))}")
        ids = table["ImageId"].map(lambda s: Path(s).stem)
        rows: dict[str, list[str]] = {}
        for image_id, rle in zip(ids, table["EncodedPixels"], strict=True):
            rows.setdefault(image_id, [])
            if rle.strip():
                rows[image_id].append(rle)
        without = [files[k].name for k in files if k not in rows]
        if without:
            raise DataError(f"{csv}: no row for image {without[0]} ({len(without)} image(s) in "
                            f"{image_dir} without masks)")
        absent = sum(1 for k in rows if k not in files)
        if absent:
            logger.info("airbus data %s: %d CSV image(s) not on disk are skipped", root, absent)
        bands, height, width = _image_header(next(iter(files.values())))
        self.files = [files[k] for k in sorted(files)]
        self.runs: list[list[np.ndarray]] = []
        entries = []
        for p in self.files:
            parsed = [parse_rle(t, (height, width), where=f"{csv} (ImageId {p.name})")
                      for t in rows[p.stem]]
            self.runs.append(parsed)
            entries.append(ImageEntry(p.stem, height, width, int(sum(r[:, 1].sum()
                                                                     for r in parsed))))
        self.csv = csv
        super().__init__("airbus", root, entries, bands, tile_size, self._read)

    def _read(self, image_id: int) -> tuple[np.ndarray, np.ndarray]:
        path = self.files[image_id]
        image = read_image(path)
        entry = self.entries[image_id]
        if image.shape != (self.bands, entry.height, entry.width):
            raise DataError(f"{path}: image is {image.shape[0]}x{image.shape[1]}x"
                            f"{image.shape[2]} (bands x H x W), expected {self.bands}x"
                            f"{entry.height}x{entry.width} like the first image")
        return image, runs_to_mask(self.runs[image_id], (entry.height, entry.width))


# --------------------------------------------------------------------------- folder


def _find_dir(root: Path, names: tuple[str, ...]) -> Path:
    for name in names:
        if (root / name).is_dir():
            return root / name
    raise DataError(f"folder data {root}: no {names[0]}/ folder (expected {root}/"
                    f"{names[0]} and {root}/masks)")


class FolderSource(TiledSource):
    """Image/mask pairs matched by file name: ``PATH/images/NAME.ext`` with
    ``PATH/masks/NAME.ext`` (or ``NAME_mask.ext``); PNG, JPEG (images only), TIFF or .npy."""

    def __init__(self, path: str | Path, tile_size: int) -> None:
        root = Path(path)
        if not root.is_dir():
            raise DataError(f"folder data {root}: folder not found")
        image_dir = _find_dir(root, ("images", "image", "imgs"))
        mask_dir = _find_dir(root, ("masks", "mask", "labels"))
        images = sorted(p for p in image_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not images:
            raise DataError(f"folder data {root}: no images ({', '.join(IMAGE_SUFFIXES)}) in "
                            f"{image_dir}")
        masks: dict[str, Path] = {}
        for p in sorted(mask_dir.iterdir()):
            if p.suffix.lower() in MASK_SUFFIXES:
                stem = p.stem
                for tag in ("_mask", "-mask", ".mask"):
                    if stem.endswith(tag):
                        stem = stem[: -len(tag)]
                masks.setdefault(stem, p)
        stems = [p.stem for p in images]
        if len(set(stems)) != len(stems):
            dup = next(s for s in stems if stems.count(s) > 1)
            raise DataError(f"{image_dir}: two images are named {dup!r} (different suffixes)")
        orphans = [p for p in images if p.stem not in masks]
        if orphans:
            raise DataError(f"{orphans[0]}: no mask in {mask_dir} (expected {orphans[0].stem}"
                            f".png/.tif/.npy; {len(orphans)} image(s) without masks)")
        self.images = images
        self.masks = [masks[p.stem] for p in images]
        entries = []
        bands = None
        for img_path, mask_path in zip(self.images, self.masks, strict=True):
            b, h, w = _image_header(img_path)
            if bands is None:
                bands = b
            elif b != bands:
                raise DataError(f"{img_path}: {b} band(s), but {self.images[0].name} has {bands}")
            mask = read_mask(mask_path)
            if mask.shape != (h, w):
                raise DataError(f"{mask_path}: mask is {mask.shape[0]}x{mask.shape[1]} px but "
                                f"image {img_path.name} is {h}x{w}")
            entries.append(ImageEntry(img_path.stem, h, w, int(mask.sum())))
        super().__init__("folder", root, entries, int(bands or 0), tile_size, self._read)

    def _read(self, image_id: int) -> tuple[np.ndarray, np.ndarray]:
        path = self.images[image_id]
        image = read_image(path)
        entry = self.entries[image_id]
        if image.shape != (self.bands, entry.height, entry.width):
            raise DataError(f"{path}: image changed on disk (now {image.shape}, indexed as "
                            f"{(self.bands, entry.height, entry.width)})")
        return image, read_mask(self.masks[image_id])


def open_airbus(path: str, cfg: DataConfig) -> AirbusSource:
    """``airbus:PATH`` loader (tiles of ``cfg.tile_size``; bands come from the images)."""
    return AirbusSource(path, cfg.tile_size)


def open_folder(path: str, cfg: DataConfig) -> FolderSource:
    """``folder:PATH`` loader (tiles of ``cfg.tile_size``; bands come from the images)."""
    return FolderSource(path, cfg.tile_size)
