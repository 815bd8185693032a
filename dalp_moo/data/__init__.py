"""Data sources for segmentation: the embedded generator and loaders for local data sets.

``open_source(cfg)`` turns ``DataConfig.source`` into a :class:`SegmentationSource`:
``synthetic`` (embedded, generated), and loaders registered in ``LOADERS`` by prefix
(``airbus:PATH``, ``folder:PATH``).
"""

from __future__ import annotations

from collections.abc import Callable

from dalp_moo.config import DataConfig
from dalp_moo.data.base import SPLITS, ArrayDataset, BandStats, SegmentationSource, compute_band_stats
from dalp_moo.data.synthetic import SyntheticSource, SyntheticSpec
from dalp_moo.errors import DataError

#: loaders for ``PREFIX:PATH`` sources: prefix -> factory(path, cfg)
LOADERS: dict[str, Callable[[str, DataConfig], SegmentationSource]] = {}


def open_source(cfg: DataConfig) -> SegmentationSource:
    """Open the data source named by ``cfg.source``."""
    if cfg.source == "synthetic":
        return SyntheticSource(SyntheticSpec(cfg.n_tiles, cfg.tile_size, cfg.bands, cfg.seed))
    prefix, _, path = cfg.source.partition(":")
    if prefix in LOADERS and path:
        return LOADERS[prefix](path, cfg)
    known = ", ".join(["synthetic"] + [f"{p}:PATH" for p in sorted(LOADERS)])
    raise DataError(f"data source {cfg.source!r}: unknown (use one of {known})")


__all__ = [
    "SPLITS", "ArrayDataset", "BandStats", "SegmentationSource", "compute_band_stats",
    "LOADERS", "open_source",
]
