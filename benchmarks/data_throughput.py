"""Data throughput: synthetic tiles generated per second (1 process and parallel) and tiles
loaded per second from folder (PNG, TIFF) and Airbus layouts written to a temporary folder.

    python benchmarks/data_throughput.py [--n-tiles 600] [--tile-size 64] [--repeats 3]

Prints a table and writes benchmarks/results/data_throughput.json. Timings are the best of
``--repeats`` runs (the machine may be shared; compare ratios within one run).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import tifffile
from PIL import Image

from dalp_moo.config import DataConfig
from dalp_moo.data import open_source, rle_encode
from dalp_moo.data.loaders import AIRBUS_CSV
from dalp_moo.data.synthetic import SyntheticSpec, generate_tiles


def best_of(repeats: int, fn: Callable[[], object]) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def write_layouts(root: Path, n_images: int, size: int) -> None:
    """Folder (PNG RGB + PNG masks; 4-band uint16 TIFF + npy masks) and Airbus (JPEG + CSV)."""
    rng = np.random.default_rng(0)
    for sub in ("png/images", "png/masks", "tif/images", "tif/masks", "airbus/train_v2"):
        (root / sub).mkdir(parents=True)
    rows = ["ImageId,EncodedPixels"]
    for i in range(n_images):
        name = f"{i:08x}"
        image, bands = make_tile_like(rng, size)
        mask = np.zeros((size, size), np.uint8)
        mask[rng.integers(0, size - 20):, :][:8, 10:30] = 1
        Image.fromarray(image).save(root / "png/images" / f"{name}.png")
        Image.fromarray(mask * 255).save(root / "png/masks" / f"{name}.png")
        tifffile.imwrite(root / "tif/images" / f"{name}.tif", bands)
        np.save(root / "tif/masks" / f"{name}.npy", mask)
        Image.fromarray(image).save(root / "airbus/train_v2" / f"{name}.jpg", quality=90)
        rows.append(f"{name}.jpg,{rle_encode(mask)}")
    (root / "airbus" / AIRBUS_CSV).write_text("\n".join(rows) + "\n")


def make_tile_like(rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray]:
    bands = (rng.normal(400, 60, (4, size, size))).clip(0, 4095).astype(np.uint16)
    rgb = (bands[[2, 1, 0]] / 16).astype(np.uint8).transpose(1, 2, 0)
    return np.ascontiguousarray(rgb), bands


def read_all(source: object, shuffle: bool) -> int:
    n = 0
    for split in ("train", "val", "test"):
        ds = source.split(split)  # type: ignore[attr-defined]
        order = np.random.default_rng(0).permutation(len(ds)) if shuffle else range(len(ds))
        for i in order:
            ds[int(i)]
            n += 1
    return n


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n-tiles", type=int, default=600, help="synthetic tiles generated per timing")
    ap.add_argument("--tile-size", type=int, default=64, help="tile edge (pixels)")
    ap.add_argument("--repeats", type=int, default=3, help="timings per case (fastest kept)")
    ap.add_argument("--images", type=int, default=24, help="images per real-data layout")
    ap.add_argument("--image-size", type=int, default=768, help="edge of the written real-data images (pixels)")
    ap.add_argument("--out", default="benchmarks/results/data_throughput.json", help="result JSON")
    args = ap.parse_args()
    rows = []
    spec = SyntheticSpec(args.n_tiles, args.tile_size, 4, 0)
    workers = min(os.cpu_count() or 1, 8)
    t1 = best_of(args.repeats, lambda: generate_tiles(spec, workers=1))
    tp = best_of(args.repeats, lambda: generate_tiles(spec, workers=workers))
    rows.append({"case": "generate, 1 process", "tiles": args.n_tiles, "s": t1,
                 "tiles_per_s": args.n_tiles / t1})
    rows.append({"case": f"generate, {workers} processes", "tiles": args.n_tiles, "s": tp,
                 "tiles_per_s": args.n_tiles / tp})
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        write_layouts(root, args.images, args.image_size)
        for label, source in (("folder PNG RGB", f"folder:{root / 'png'}"),
                              ("folder TIFF 4-band", f"folder:{root / 'tif'}"),
                              ("airbus JPEG+CSV", f"airbus:{root / 'airbus'}")):
            cfg = DataConfig(source=source, tile_size=args.tile_size)
            t_open = best_of(args.repeats, lambda cfg=cfg: open_source(cfg))
            for shuffle in (False, True):
                box: dict[str, int] = {}

                def run(cfg: DataConfig = cfg, shuffle: bool = shuffle,
                        box: dict[str, int] = box) -> None:
                    box["n"] = read_all(open_source(cfg), shuffle)

                t = best_of(args.repeats, run)
                rows.append({"case": f"load {label}, {'shuffled' if shuffle else 'sequential'}",
                             "tiles": box["n"], "s": t, "tiles_per_s": box["n"] / t,
                             "open_s": t_open})
    print(f"{'case':42s} {'tiles':>6s} {'s':>7s} {'tiles/s':>9s}")
    for r in rows:
        print(f"{r['case']:42s} {r['tiles']:6d} {r['s']:7.2f} {r['tiles_per_s']:9.0f}")
    out = {"args": vars(args), "cpus": os.cpu_count(), "python": platform.python_version(),
           "rows": rows}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
