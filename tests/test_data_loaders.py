"""Loaders for local data (folder, Airbus layout), run-length coding, and their error paths."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image

from dalp_moo.config import DataConfig
from dalp_moo.data import LOADERS, open_source, rle_decode, rle_encode
from dalp_moo.data.loaders import AIRBUS_CSV, hash_split
from dalp_moo.data.rle import parse_rle
from dalp_moo.errors import DataError

# ----------------------------------------------------------------------------- RLE


def test_rle_known_example_is_column_major_one_based() -> None:
    mask = rle_decode("1 3 8 2", (4, 3))  # 4 rows, 3 columns; pixels counted down columns
    expected = np.zeros((4, 3), np.uint8)
    expected[0:3, 0] = 1  # pixels 1..3: first column, rows 0..2
    expected[3, 1] = 1  # pixel 8: column 1, row 3
    expected[0, 2] = 1  # pixel 9: column 2, row 0
    assert np.array_equal(mask, expected)
    assert rle_encode(expected) == "1 3 8 2"


@pytest.mark.parametrize("seed", range(5))
def test_rle_roundtrip_random_masks(seed: int) -> None:
    rng = np.random.default_rng(seed)
    h, w = rng.integers(1, 40, 2)
    mask = (rng.random((h, w)) < rng.uniform(0, 1)).astype(np.uint8)
    text = rle_encode(mask)
    assert np.array_equal(rle_decode(text, (int(h), int(w))), mask)


def test_rle_edge_cases_and_union() -> None:
    full = np.ones((5, 7), np.uint8)
    assert rle_encode(full) == "1 35"
    assert rle_encode(np.zeros((5, 7))) == ""
    assert rle_decode("", (5, 7)).sum() == 0
    union = rle_decode(["1 2", "10 3"], (5, 7))
    assert union.sum() == 5


@pytest.mark.parametrize("text,problem", [
    ("1 2 3", "odd number"),
    ("1 x", "not an integer"),
    ("0 3", "start < 1"),
    ("5 0", "length < 1"),
    ("30 10", "past pixel 35"),
    ("10 5 12 2", "overlap"),
    ("10 2 3 2", "not sorted"),
])
def test_corrupt_rle_raises(text: str, problem: str) -> None:
    with pytest.raises(DataError, match=problem):
        parse_rle(text, (5, 7), where="file.csv")


def test_hash_split_is_by_name_only() -> None:
    names = [f"img{i}" for i in range(40)]
    a = hash_split(names)
    b = hash_split(list(reversed(names)))
    named = {k: sorted(names[i] for i in v) for k, v in a.items()}
    named_rev = {k: sorted(list(reversed(names))[i] for i in v) for k, v in b.items()}
    assert named == named_rev
    assert [len(a[k]) for k in ("train", "val", "test")] == [28, 6, 6]


# ----------------------------------------------------------------------------- folder


def _write_folder(root: Path, n: int = 10, size: int = 40, kind: str = "png",
                  rng: np.random.Generator | None = None) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    rng = rng or np.random.default_rng(0)
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    written = {}
    for i in range(n):
        name = f"scene_{i:02d}"
        mask = (rng.random((size, size)) < 0.05).astype(np.uint8)
        if kind == "png":
            image = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
            Image.fromarray(image).save(root / "images" / f"{name}.png")
            Image.fromarray(mask * 255).save(root / "masks" / f"{name}.png")
            chw = image.transpose(2, 0, 1)
        elif kind == "tif":
            chw = rng.integers(0, 4096, (5, size, size), dtype=np.uint16)
            tifffile.imwrite(root / "images" / f"{name}.tif", chw)
            np.save(root / "masks" / f"{name}_mask.npy", mask)
        else:
            chw = rng.normal(0, 1, (2, size, size)).astype(np.float32)
            np.save(root / "images" / f"{name}.npy", chw.transpose(1, 2, 0))
            tifffile.imwrite(root / "masks" / f"{name}.tif", mask)
        written[name] = (chw.astype(np.float32), mask)
    return written


@pytest.mark.parametrize("kind,bands", [("png", 3), ("tif", 5), ("npy", 2)])
def test_folder_loader_reads_exact_tiles(tmp_path: Path, kind: str, bands: int) -> None:
    written = _write_folder(tmp_path, kind=kind)
    src = open_source(DataConfig(source=f"folder:{tmp_path}", tile_size=16))
    assert src.bands == bands
    sizes = [len(src.split(k)) for k in ("train", "val", "test")]
    assert sum(sizes) == 10 * 4  # 40 px images -> 2x2 tiles of 16 (remainder dropped)
    ds = src.split("train")
    for index in (0, 1, 2, 3, len(ds) - 1):
        image, mask = ds[index]
        k, local = divmod(index, 4)
        name = src.entries[ds.ids[k]].name
        y, x = (local // 2) * 16, (local % 2) * 16
        ref_img, ref_mask = written[name]
        assert np.array_equal(image.numpy(), ref_img[:, y:y + 16, x:x + 16])
        assert np.array_equal(mask.numpy(), ref_mask[y:y + 16, x:x + 16])
        assert str(mask.dtype) == "torch.int64"
    stats = src.band_stats()
    assert len(stats.mean) == bands
    d = src.describe()
    total = sum(m.sum() for _, m in written.values()) / (10 * 40 * 40)
    assert d["vessel_fraction"] == pytest.approx(total)


def test_folder_accepts_one_hot_masks(tmp_path: Path) -> None:
    written = _write_folder(tmp_path, n=6, kind="npy")
    for name, (_, mask) in written.items():
        (tmp_path / "masks" / f"{name}.tif").unlink()
        np.save(tmp_path / "masks" / f"{name}.npy", np.stack([1 - mask, mask], axis=-1))
    src = LOADERS["folder"](str(tmp_path), DataConfig(tile_size=20))
    image, mask = src.split("test")[0]
    name = src.entries[src.split("test").ids[0]].name
    assert np.array_equal(mask.numpy(), written[name][1][:20, :20])


def test_folder_missing(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="folder not found"):
        open_source(DataConfig(source=f"folder:{tmp_path / 'nope'}"))
    (tmp_path / "images").mkdir()
    with pytest.raises(DataError, match="masks"):
        open_source(DataConfig(source=f"folder:{tmp_path}"))


def test_folder_image_without_mask(tmp_path: Path) -> None:
    _write_folder(tmp_path, n=5)
    (tmp_path / "masks" / "scene_03.png").unlink()
    with pytest.raises(DataError, match=r"scene_03\.png: no mask"):
        open_source(DataConfig(source=f"folder:{tmp_path}", tile_size=16))


def test_folder_shape_mismatch(tmp_path: Path) -> None:
    _write_folder(tmp_path, n=5)
    Image.fromarray(np.zeros((30, 40), np.uint8)).save(tmp_path / "masks" / "scene_02.png")
    with pytest.raises(DataError, match=r"scene_02\.png: mask is 30x40 px but image"):
        open_source(DataConfig(source=f"folder:{tmp_path}", tile_size=16))


def test_folder_band_mismatch(tmp_path: Path) -> None:
    _write_folder(tmp_path, n=5)
    Image.fromarray(np.zeros((40, 40), np.uint8)).save(tmp_path / "images" / "scene_04.png")
    with pytest.raises(DataError, match=r"scene_04\.png: 1 band\(s\), but scene_00\.png has 3"):
        open_source(DataConfig(source=f"folder:{tmp_path}", tile_size=16))


def test_folder_bad_mask_values(tmp_path: Path) -> None:
    _write_folder(tmp_path, n=5)
    bad = np.zeros((40, 40), np.uint8)
    bad[0, :3] = [1, 2, 7]
    Image.fromarray(bad).save(tmp_path / "masks" / "scene_01.png")
    with pytest.raises(DataError, match=r"scene_01\.png: mask values must be 0/1 \(found 0, 1, 2, 7"):
        open_source(DataConfig(source=f"folder:{tmp_path}", tile_size=16))


def test_folder_empty_split(tmp_path: Path) -> None:
    _write_folder(tmp_path, n=2)
    with pytest.raises(DataError, match="split 'val' is empty"):
        open_source(DataConfig(source=f"folder:{tmp_path}", tile_size=16))


def test_folder_corrupt_image_and_small_image(tmp_path: Path) -> None:
    _write_folder(tmp_path, n=5)
    (tmp_path / "images" / "scene_00.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match=r"scene_00\.png: cannot read"):
        open_source(DataConfig(source=f"folder:{tmp_path}", tile_size=16))
    with pytest.raises(DataError, match="smaller than tile_size 64"):
        (tmp_path / "images" / "scene_00.png").unlink()
        (tmp_path / "masks" / "scene_00.png").unlink()
        open_source(DataConfig(source=f"folder:{tmp_path}", tile_size=64))


def test_folder_bad_array_shape(tmp_path: Path) -> None:
    _write_folder(tmp_path, n=5, kind="npy")
    np.save(tmp_path / "images" / "scene_00.npy", np.zeros((2, 3, 40, 40), np.float32))
    with pytest.raises(DataError, match=r"scene_00\.npy: image array of shape \(2, 3, 40, 40\)"):
        open_source(DataConfig(source=f"folder:{tmp_path}", tile_size=16))


# ----------------------------------------------------------------------------- airbus


def _write_airbus(root: Path, n: int = 8, size: int = 48, folder: str = "train_v2") -> dict[str, np.ndarray]:
    """A small Airbus layout: JPEG images and a CSV with one row per ship (or one empty row)."""
    rng = np.random.default_rng(1)
    (root / folder).mkdir(parents=True)
    rows = ["ImageId,EncodedPixels"]
    masks = {}
    for i in range(n):
        name = f"{i:08x}.jpg"
        Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(root / folder / name)
        mask = np.zeros((size, size), np.uint8)
        ships = int(rng.integers(0, 3))
        if ships == 0:
            rows.append(f"{name},")
        for _ in range(ships):
            ship = np.zeros_like(mask)
            y, x = rng.integers(0, size - 6, 2)
            ship[y:y + int(rng.integers(1, 6)), x:x + int(rng.integers(2, 6))] = 1
            ship &= 1 - mask  # ships do not overlap
            if ship.any():
                rows.append(f"{name},{rle_encode(ship)}")
            else:
                rows.append(f"{name},")
            mask |= ship
        masks[name[:-4]] = mask
    (root / AIRBUS_CSV).write_text("\n".join(rows) + "\n")
    return masks


def test_airbus_loader_tiles_masks_and_lazy_reading(tmp_path: Path) -> None:
    masks = _write_airbus(tmp_path)
    src = open_source(DataConfig(source=f"airbus:{tmp_path}", tile_size=16))
    assert src.bands == 3 and src.name == "airbus"
    assert sum(len(src.split(k)) for k in ("train", "val", "test")) == 8 * 9
    for split in ("train", "val", "test"):
        ds = src.split(split)
        for index in range(len(ds)):
            image, mask = ds[index]
            k, local = divmod(index, 9)
            name = src.entries[ds.ids[k]].name
            y, x = (local // 3) * 16, (local % 3) * 16
            assert np.array_equal(mask.numpy(), masks[name][y:y + 16, x:x + 16])
            assert tuple(image.shape) == (3, 16, 16)
        assert len(ds._cache) <= ds.cache_images
    total = sum(m.sum() for m in masks.values()) / (8 * 48 * 48)
    assert src.describe()["vessel_fraction"] == pytest.approx(total)
    with Image.open(src.files[0]) as im:
        first = np.asarray(im).transpose(2, 0, 1).astype(np.float32)
    train = src.split("train")
    k = train.ids.index(0) if 0 in train.ids else None
    if k is not None:
        assert np.array_equal(train[k * 9][0].numpy(), first[:, :16, :16])


def test_airbus_images_folder_variant(tmp_path: Path) -> None:
    _write_airbus(tmp_path, n=6, folder="images")
    src = open_source(DataConfig(source=f"airbus:{tmp_path}", tile_size=24))
    assert sum(len(src.split(k)) for k in ("train", "val", "test")) == 6 * 4


def test_airbus_csv_rows_without_image_are_skipped(tmp_path: Path) -> None:
    _write_airbus(tmp_path, n=6)
    with open(tmp_path / AIRBUS_CSV, "a") as fh:
        fh.write("deadbeef.jpg,1 3\n")
    src = open_source(DataConfig(source=f"airbus:{tmp_path}", tile_size=16))
    assert len(src.entries) == 6


def test_airbus_missing_folder_and_csv(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="folder not found"):
        open_source(DataConfig(source=f"airbus:{tmp_path / 'none'}"))
    _write_airbus(tmp_path, n=5)
    (tmp_path / AIRBUS_CSV).unlink()
    with pytest.raises(DataError, match=f"{AIRBUS_CSV} not found"):
        open_source(DataConfig(source=f"airbus:{tmp_path}"))


def test_airbus_image_without_row(tmp_path: Path) -> None:
    _write_airbus(tmp_path, n=5)
    Image.fromarray(np.zeros((48, 48, 3), np.uint8)).save(tmp_path / "train_v2" / "extra.jpg")
    with pytest.raises(DataError, match=r"no row for image extra\.jpg"):
        open_source(DataConfig(source=f"airbus:{tmp_path}", tile_size=16))


def test_airbus_corrupt_rle_names_csv_and_image(tmp_path: Path) -> None:
    _write_airbus(tmp_path, n=5)
    with open(tmp_path / AIRBUS_CSV, "a") as fh:
        fh.write("00000002.jpg,12 4 x\n")
    with pytest.raises(DataError, match=rf"{AIRBUS_CSV} \(ImageId 00000002\.jpg\): corrupt"):
        open_source(DataConfig(source=f"airbus:{tmp_path}", tile_size=16))


def test_airbus_rle_past_image_end(tmp_path: Path) -> None:
    _write_airbus(tmp_path, n=5)
    with open(tmp_path / AIRBUS_CSV, "a") as fh:
        fh.write(f"00000001.jpg,{48 * 48 - 2} 10\n")
    with pytest.raises(DataError, match="run ends past pixel 2304"):
        open_source(DataConfig(source=f"airbus:{tmp_path}", tile_size=16))


def test_airbus_bad_columns_and_empty_split(tmp_path: Path) -> None:
    _write_airbus(tmp_path, n=2)
    with pytest.raises(DataError, match="split 'val' is empty"):
        open_source(DataConfig(source=f"airbus:{tmp_path}", tile_size=16))
    (tmp_path / AIRBUS_CSV).write_text("Image,Pixels\n00000000.jpg,\n")
    with pytest.raises(DataError, match="missing column"):
        open_source(DataConfig(source=f"airbus:{tmp_path}", tile_size=16))


def test_airbus_image_size_mismatch_at_read(tmp_path: Path) -> None:
    _write_airbus(tmp_path, n=6)
    Image.fromarray(np.zeros((40, 48, 3), np.uint8)).save(tmp_path / "train_v2" / "00000005.jpg")
    src = open_source(DataConfig(source=f"airbus:{tmp_path}", tile_size=16))
    split = next(k for k in ("train", "val", "test") if 5 in src.split(k).ids)
    ds = src.split(split)
    with pytest.raises(DataError, match=r"00000005\.jpg: image is 3x40x48"):
        for i in range(len(ds)):
            ds[i]


def test_unknown_source_prefix() -> None:
    with pytest.raises(DataError, match="unknown"):
        open_source(DataConfig(source="s3:bucket"))
    with pytest.raises(DataError, match="unknown"):
        open_source(DataConfig(source="folder:"))
