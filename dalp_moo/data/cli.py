"""``dalp-moo data``: inspect and preview data sources (same SOURCE syntax as data.source)."""

from __future__ import annotations

import json

import click

from dalp_moo.config import DataConfig


def _source_options(f):  # type: ignore[no-untyped-def]
    f = click.option("--cache-dir", default="", help="Cache folder for generated tiles.")(f)
    f = click.option("--seed", type=int, default=0, show_default=True,
                     help="Generator seed (synthetic).")(f)
    f = click.option("--bands", type=int, default=4, show_default=True,
                     help="Spectral bands (synthetic).")(f)
    f = click.option("--n-tiles", type=int, default=600, show_default=True,
                     help="Tiles over all splits (synthetic).")(f)
    f = click.option("--tile-size", type=int, default=64, show_default=True,
                     help="Tile edge in pixels (real data are cut to this size).")(f)
    return click.argument("source")(f)


def _open(source: str, tile_size: int, n_tiles: int, bands: int, seed: int, cache_dir: str):  # type: ignore[no-untyped-def]
    from dalp_moo.data import open_source

    cfg = DataConfig(source=source, n_tiles=n_tiles, tile_size=tile_size, bands=bands, seed=seed,
                     cache_dir=cache_dir)
    return open_source(cfg)


@click.group()
def data() -> None:
    """Inspect and preview data sources (synthetic, airbus:PATH, folder:PATH)."""


@data.command()
@_source_options
def inspect(source: str, tile_size: int, n_tiles: int, bands: int, seed: int,
            cache_dir: str) -> None:
    """Print a JSON summary of SOURCE: tiles per split, bands, value range, vessel fraction."""
    src = _open(source, tile_size, n_tiles, bands, seed, cache_dir)
    summary = src.describe()
    stats = src.band_stats()
    summary["band_mean"] = list(stats.mean)
    summary["band_std"] = list(stats.std)
    click.echo(json.dumps(summary, indent=2))


@data.command()
@_source_options
@click.option("--out", "out", required=True, type=click.Path(dir_okay=False),
              help="PNG file to write.")
@click.option("--split", type=click.Choice(["train", "val", "test"]), default="train",
              show_default=True, help="Split the tiles are drawn from.")
@click.option("--count", type=click.IntRange(1, 256), default=16, show_default=True,
              help="Tiles in the grid.")
@click.option("--columns", type=click.IntRange(1, 32), default=4, show_default=True,
              help="Tiles per row of the grid.")
@click.option("--zoom", type=click.IntRange(1, 8), default=2, show_default=True,
              help="Pixel replication factor.")
@click.option("--rgb", default="", help="Band indices shown as R,G,B (e.g. 3,2,1 for NIR false "
              "colour; default 2,1,0).")
def preview(source: str, tile_size: int, n_tiles: int, bands: int, seed: int, cache_dir: str,
            out: str, split: str, count: int, columns: int, zoom: int, rgb: str) -> None:
    """Write a PNG grid of SOURCE tiles with the vessel masks outlined in yellow."""
    from dalp_moo.data.preview import save_preview
    from dalp_moo.errors import DataError

    channels = None
    if rgb:
        try:
            r, g, b = (int(v) for v in rgb.split(","))
        except ValueError:
            raise DataError(f"--rgb {rgb!r}: expected three band indices like 3,2,1") from None
        channels = (r, g, b)
    src = _open(source, tile_size, n_tiles, bands, seed, cache_dir)
    path = save_preview(src, out, split=split, count=count, columns=columns, zoom=zoom, rgb=channels)
    click.echo(str(path))
