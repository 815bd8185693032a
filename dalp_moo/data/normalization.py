"""Input normalisation parameters for the model's ``InputNorm`` layer.

Sources return native units (raw DN for the generator); the model normalises its input as
``x_norm = (x - shift) * scale`` per band, so training and deployment apply the same transform.
"""

from __future__ import annotations

from dalp_moo.config import DataConfig
from dalp_moo.data.base import BandStats
from dalp_moo.errors import DataError


def normalization_params(cfg: DataConfig, stats: BandStats) -> tuple[list[float], list[float]]:
    """Per-band ``(shift, scale)`` so that ``x_norm = (x - shift) * scale``.

    ``raw``: shift 0, scale 1 (the network sees DN); ``standardize``: shift = training-split mean,
    scale = 1 / training-split std (per band); ``scale``: shift 0, scale ``cfg.scale``.
    """
    bands = len(stats.mean)
    if len(stats.std) != bands:
        raise DataError(f"band statistics: {bands} means but {len(stats.std)} standard deviations")
    if cfg.normalization == "raw":
        return [0.0] * bands, [1.0] * bands
    if cfg.normalization == "scale":
        return [0.0] * bands, [float(cfg.scale)] * bands
    if cfg.normalization == "standardize":
        bad = [i for i, s in enumerate(stats.std) if not s > 0]
        if bad:
            raise DataError(f"band statistics: band {bad[0]} has standard deviation "
                            f"{stats.std[bad[0]]} (constant band, cannot standardise)")
        return [float(m) for m in stats.mean], [1.0 / float(s) for s in stats.std]
    raise DataError(f"data.normalization {cfg.normalization!r}: unknown (raw, standardize, scale)")
