"""Data sources for segmentation: the embedded generator and loaders for local data sets.

``open_source(cfg)`` turns ``DataConfig.source`` into a :class:`SegmentationSource`:
``synthetic`` (embedded procedural raw-DN maritime scenes; ``synthetic:VARIANT`` for the named
variants in ``VARIANTS``: cloudy, hard, clear), and loaders registered in
``LOADERS`` by prefix (``airbus:PATH``, ``folder:PATH``). ``normalization_params`` gives the
per-band (shift, scale) of the model's input normalisation; ``open_chip_source`` the chip
classification set.
"""

from __future__ import annotations

from collections.abc import Callable

from dalp_moo.config import DataConfig
from dalp_moo.data.base import SPLITS, ArrayDataset, BandStats, SegmentationSource, compute_band_stats
from dalp_moo.data.chips import CHIP_CLASSES, ChipSource, open_chip_source
from dalp_moo.data.loaders import AirbusSource, FolderSource, open_airbus, open_folder
from dalp_moo.data.normalization import normalization_params
from dalp_moo.data.rle import rle_decode, rle_encode
from dalp_moo.data.scene import GeneratorParams, with_overrides
from dalp_moo.data.synthetic import VARIANTS, SyntheticSource, SyntheticSpec, variant_params
from dalp_moo.errors import DataError

#: loaders for ``PREFIX:PATH`` sources: prefix -> factory(path, cfg)
LOADERS: dict[str, Callable[[str, DataConfig], SegmentationSource]] = {
    "airbus": open_airbus,
    "folder": open_folder,
}


def open_source(cfg: DataConfig) -> SegmentationSource:
    """Open the data source named by ``cfg.source``."""
    prefix, _, path = cfg.source.partition(":")
    if prefix == "synthetic":
        try:
            params = with_overrides(variant_params(path or "default"), cfg.generator)
        except ValueError as exc:
            raise DataError(f"data.generator.{exc}") from None
        spec = SyntheticSpec(cfg.n_tiles, cfg.tile_size, cfg.bands, cfg.seed, params)
        return SyntheticSource(spec, cache_dir=cfg.cache_dir, name=cfg.source)
    if prefix in LOADERS and path:
        return LOADERS[prefix](path, cfg)
    known = ", ".join(["synthetic", "synthetic:VARIANT"] + [f"{p}:PATH" for p in sorted(LOADERS)])
    raise DataError(f"data source {cfg.source!r}: unknown (use one of {known})")


__all__ = [
    "SPLITS", "ArrayDataset", "BandStats", "SegmentationSource", "compute_band_stats",
    "LOADERS", "open_source", "normalization_params", "SyntheticSource", "SyntheticSpec",
    "GeneratorParams", "AirbusSource", "FolderSource", "ChipSource", "CHIP_CLASSES",
    "open_chip_source", "rle_decode", "rle_encode", "VARIANTS", "variant_params",
]
