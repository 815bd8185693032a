"""Input normalisation: a constant band cannot be standardised (one-line error, exit 2), other
modes and non-constant bands are unaffected."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from dalp_moo.cli import main
from dalp_moo.config import DataConfig
from dalp_moo.data import compute_band_stats, normalization_params, open_source
from dalp_moo.errors import DataError


def _images(constant_band: int | None, n: int = 6, bands: int = 3, size: int = 16) -> np.ndarray:
    rng = np.random.default_rng(0)
    x = rng.integers(0, 4096, (n, bands, size, size)).astype(np.float32)
    if constant_band is not None:
        x[:, constant_band] = 1234.0
    return x


def test_constant_band_has_zero_std_and_is_refused_by_standardize() -> None:
    stats = compute_band_stats(_images(constant_band=1))
    assert stats.std[1] == 0.0 and stats.std[0] > 0 and stats.std[2] > 0
    assert stats.mean[1] == 1234.0
    with pytest.raises(DataError, match=r"standardize': band 1 .* standard deviation 0\.0"):
        normalization_params(DataConfig(normalization="standardize"), stats)


@pytest.mark.parametrize("mode, shift, scale", [("raw", 0.0, 1.0), ("scale", 0.0, 0.25)])
def test_constant_band_is_fine_without_standardize(mode: str, shift: float, scale: float) -> None:
    stats = compute_band_stats(_images(constant_band=0))
    shifts, scales = normalization_params(DataConfig(normalization=mode, scale=0.25), stats)
    assert shifts == [shift] * 3 and scales == [scale] * 3


def test_standardize_of_varying_bands_uses_their_std() -> None:
    images = _images(constant_band=None)
    stats = compute_band_stats(images)
    shift, scale = normalization_params(DataConfig(normalization="standardize"), stats)
    z = (images.astype(np.float64) - np.array(shift)[None, :, None, None]) * np.array(scale)[None, :, None, None]
    assert np.allclose(z.std(axis=(0, 2, 3)), 1.0)
    assert np.allclose(z.mean(axis=(0, 2, 3)), 0.0, atol=1e-9)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -1.0])
def test_non_finite_or_negative_std_is_refused(bad: float) -> None:
    from dalp_moo.data import BandStats

    stats = BandStats(mean=(1.0, 2.0), std=(3.0, bad), minimum=0.0, maximum=4.0)
    with pytest.raises(DataError, match="band 1"):
        normalization_params(DataConfig(normalization="standardize"), stats)


def _constant_folder(root: Path, n: int = 6, size: int = 32) -> None:
    """A ``folder:`` data set whose images are constant (one value per band)."""
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    rng = np.random.default_rng(1)
    for i in range(n):
        image = np.full((size, size, 2), 700.0, np.float32)
        image[..., 1] = 300.0
        np.save(root / "images" / f"scene_{i}.npy", image)
        np.save(root / "masks" / f"scene_{i}.npy", (rng.random((size, size)) < 0.1).astype(np.uint8))


def test_constant_images_source_reports_zero_std(tmp_path: Path) -> None:
    _constant_folder(tmp_path / "data")
    src = open_source(DataConfig(source=f"folder:{tmp_path / 'data'}", tile_size=16))
    assert src.band_stats().std == (0.0, 0.0)


def test_run_on_constant_images_with_standardize_exits_2_with_one_line(tmp_path: Path) -> None:
    _constant_folder(tmp_path / "data")
    result = CliRunner().invoke(main, [
        "run", "--preset", "smoke", "--no-progress", "--out", str(tmp_path / "run"),
        "--data", f"folder:{tmp_path / 'data'}", "--set", "data.tile_size=16",
        "--set", "data.normalization=standardize"])
    assert result.exit_code == 2, (result.exit_code, result.output)
    errors = [ln for ln in result.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1, result.stderr
    assert "band 0" in errors[0] and "standard deviation 0.0" in errors[0], errors[0]
    assert "Traceback" not in result.output
