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

    Raises :class:`DataError` for ``standardize`` when a band of the training split is constant
    (std 0, or not finite): its scale would be infinite, so no scale is made up.
    """
    bands = len(stats.mean)
    if len(stats.std) != bands:
        raise DataError(f"band statistics: {bands} means but {len(stats.std)} standard deviations")
    if cfg.normalization == "raw":
        return [0.0] * bands, [1.0] * bands
    if cfg.normalization == "scale":
        return [0.0] * bands, [float(cfg.scale)] * bands
    if cfg.normalization == "standardize":
        bad = [i for i, s in enumerate(stats.std) if not 0 < s < float("inf")]
        if bad:
            raise DataError(f"data.normalization = 'standardize': band {bad[0]} of the training "
                            f"split has standard deviation {stats.std[bad[0]]} (a constant band "
                            "cannot be standardised; use data.normalization = 'raw' or 'scale')")
        return [float(m) for m in stats.mean], [1.0 / float(s) for s in stats.std]
    raise DataError(f"data.normalization {cfg.normalization!r}: unknown (raw, standardize, scale)")
