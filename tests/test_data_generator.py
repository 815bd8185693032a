"""The embedded generator: determinism, statistics, mask/vessel consistency, cache, chips."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
from click.testing import CliRunner

from dalp_moo.config import DataConfig, load_config
from dalp_moo.data import (
    CHIP_CLASSES,
    BandStats,
    GeneratorParams,
    SyntheticSource,
    SyntheticSpec,
    normalization_params,
    open_chip_source,
    open_source,
)
from dalp_moo.data.scene import (
    DN_MAX,
    GENERATOR_VERSION,
    SceneControls,
    Vessel,
    draw_vessel,
    make_tile,
    render_scene,
    spectra,
    tile_rng,
)
from dalp_moo.data.synthetic import generate_tiles, split_bounds, variant_params
from dalp_moo.errors import ConfigError, DataError


@pytest.fixture(scope="module")
def tiles64() -> tuple[np.ndarray, np.ndarray]:
    return generate_tiles(SyntheticSpec(300, 64, 4, 7), workers=1)


def test_tile_is_deterministic_and_depends_on_seed_and_index() -> None:
    a_img, a_mask = make_tile(3, 5, 48, 4)
    b_img, b_mask = make_tile(3, 5, 48, 4)
    assert np.array_equal(a_img, b_img) and np.array_equal(a_mask, b_mask)
    assert not np.array_equal(a_img, make_tile(4, 5, 48, 4)[0])
    assert not np.array_equal(a_img, make_tile(3, 6, 48, 4)[0])


def test_tiles_do_not_depend_on_set_size_or_parallelism() -> None:
    small = generate_tiles(SyntheticSpec(6, 32, 4, 1), workers=1)
    large = generate_tiles(SyntheticSpec(12, 32, 4, 1), workers=2)
    assert np.array_equal(small[0], large[0][:6]) and np.array_equal(small[1], large[1][:6])


def test_raw_dn_range_types_and_shapes(tiles64: tuple[np.ndarray, np.ndarray]) -> None:
    images, masks = tiles64
    assert images.dtype == np.float32 and images.shape == (300, 4, 64, 64)
    assert masks.dtype == np.uint8 and masks.shape == (300, 64, 64)
    assert images.min() >= 0 and images.max() <= DN_MAX
    assert np.array_equal(images, np.round(images))  # digital numbers are integers
    assert set(np.unique(masks).tolist()) <= {0, 1}
    # clouds reach saturation in some tiles (they drive FP16 overflow), the sea stays dark
    assert (images >= DN_MAX).any()
    assert np.median(images) < 800


def test_vessel_fraction_and_imbalance(tiles64: tuple[np.ndarray, np.ndarray]) -> None:
    _, masks = tiles64
    frac = masks.mean()
    assert 0.001 <= frac <= 0.03
    per_tile = masks.reshape(len(masks), -1).sum(1)
    assert 0.15 <= (per_tile == 0).mean() <= 0.75  # some tiles are empty, most are not
    assert (per_tile > 0).sum() > 50


def test_vessel_sizes_span_small_and_large() -> None:
    p = GeneratorParams()
    rng = np.random.default_rng(0)
    from dalp_moo.data.scene import _draw_length

    lengths = np.array([_draw_length(rng, p) for _ in range(2000)])
    assert lengths.min() >= 3 and lengths.max() <= 60
    assert np.median(lengths) < 15 and (lengths > 40).any()


@pytest.mark.parametrize("heading", [0.0, 0.7, 2.0, 4.1])
@pytest.mark.parametrize("length,width", [(3.0, 1.0), (12.0, 2.5), (40.0, 7.0)])
def test_mask_matches_rendered_hull(heading: float, length: float, width: float) -> None:
    """The mask holds exactly the pixels whose hull coverage is at least one half."""
    spec = spectra(4)
    refl = np.zeros((4, 80, 80))
    mask = np.zeros((80, 80), bool)
    v = Vessel(40.3, 39.6, length, width, heading, "hull_bright", 1.0, wake=0.0)
    draw_vessel(refl, mask, v, spec)
    hull = spec["hull_bright"][0]
    assert mask.sum() >= 1
    assert np.array_equal(mask, refl[0] >= 0.5 * hull - 1e-12)
    # area within a pixel-perimeter band of the ideal outline (tapered bow makes it smaller)
    area = length * width
    assert mask.sum() <= area + 2 * (length + width) + 2
    if length >= 12:
        assert mask.sum() >= 0.6 * area - (length + width)


def test_wake_is_not_in_mask() -> None:
    spec = spectra(4)
    refl = np.zeros((4, 100, 100))
    mask = np.zeros((100, 100), bool)
    v = Vessel(50, 70, 20, 4, 0.0, "hull_bright", 1.0, wake=3.0)
    draw_vessel(refl, mask, v, spec)
    behind = refl[0, 48:53, 20:55]
    assert behind.max() > 0.02  # bright wake behind the stern
    assert not mask[:, :55].any()


def test_forced_vessel_scene_has_mask_near_centre() -> None:
    rng = tile_rng(0, 0, stream=9)
    image, mask, facts = render_scene(rng, 48, 4, GeneratorParams(),
                                      SceneControls(land=False, cloud=False, vessels=True,
                                                    negatives=False))
    ys, xs = np.nonzero(mask)
    assert len(ys) > 0 and abs(ys.mean() - 24) < 16 and abs(xs.mean() - 24) < 16
    assert facts["cloud"] == 0.0 and facts["land"] == 0.0


def test_misregistration_shifts_bands_relative_to_mask() -> None:
    p0 = GeneratorParams(misregistration_px=0)
    p3 = GeneratorParams(misregistration_px=3)
    a, ma = make_tile(2, 1, 48, 4, p0)
    b, mb = make_tile(2, 1, 48, 4, p3)
    assert a.shape == b.shape and ma.shape == mb.shape


@pytest.mark.parametrize("bands", [1, 3, 6, 13])
def test_band_counts(bands: int) -> None:
    image, mask = make_tile(0, 0, 32, bands)
    assert image.shape == (bands, 32, 32) and mask.shape == (32, 32)


def test_source_split_and_interface() -> None:
    src = open_source(DataConfig(n_tiles=40, tile_size=32, bands=4, seed=3))
    sizes = {k: len(src.split(k)) for k in ("train", "val", "test")}
    assert sizes == {"train": 28, "val": 6, "test": 6}
    image, mask = src.split("val")[0]
    assert image.dtype.is_floating_point and tuple(image.shape) == (4, 32, 32)
    assert str(mask.dtype) == "torch.int64" and tuple(mask.shape) == (32, 32)
    d = src.describe()
    json.dumps(d)
    assert d["train"]["tiles"] == 28 and 0 <= d["vessel_fraction"] < 0.2
    assert len(src.band_stats().mean) == 4
    with pytest.raises(DataError, match="unknown split"):
        src.split("holdout")


def test_split_bounds_70_15_15() -> None:
    assert split_bounds(600) == {"train": (0, 420), "val": (420, 510), "test": (510, 600)}


def test_cache_roundtrip_and_key(tmp_path) -> None:  # type: ignore[no-untyped-def]
    spec = SyntheticSpec(12, 32, 4, 11)
    src = SyntheticSource(spec, cache_dir=str(tmp_path))
    files = sorted(p.name for p in tmp_path.iterdir())
    assert f"synthetic-{spec.key()}-images.npy" in files
    assert f"synthetic-{spec.key()}-masks.npy" in files
    cached = np.load(tmp_path / f"synthetic-{spec.key()}-images.npy")
    assert cached.dtype == np.uint16
    assert np.array_equal(cached.astype(np.float32), np.concatenate(
        [src.split(k).images for k in ("train", "val", "test")]))
    meta = json.loads((tmp_path / f"synthetic-{spec.key()}.json").read_text())
    assert meta["version"] == GENERATOR_VERSION
    other = dataclasses.replace(spec, params=GeneratorParams(p_cloud=0.9))
    assert other.key() != spec.key()
    assert dataclasses.replace(spec, seed=12).key() != spec.key()


def test_cache_is_used_on_reload(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from dalp_moo.data.synthetic import _load_cached

    spec = SyntheticSpec(10, 32, 2, 5)
    SyntheticSource(spec, cache_dir=str(tmp_path))
    loaded = _load_cached(spec, str(tmp_path))
    assert loaded is not None
    assert np.array_equal(loaded[0], generate_tiles(spec, workers=1)[0])


def test_unwritable_cache_raises_data_error(tmp_path) -> None:  # type: ignore[no-untyped-def]
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(DataError, match="cache directory"):
        SyntheticSource(SyntheticSpec(10, 32, 1, 99), cache_dir=str(blocker / "sub"))


def test_normalization_params() -> None:
    stats = BandStats(mean=(100.0, 200.0), std=(10.0, 50.0), minimum=0.0, maximum=4095.0)
    assert normalization_params(DataConfig(normalization="raw"), stats) == ([0.0, 0.0],
                                                                             [1.0, 1.0])
    shift, scale = normalization_params(DataConfig(normalization="standardize"), stats)
    assert shift == [100.0, 200.0] and scale == pytest.approx([0.1, 0.02])
    shift, scale = normalization_params(DataConfig(normalization="scale", scale=0.5), stats)
    assert shift == [0.0, 0.0] and scale == [0.5, 0.5]
    flat = BandStats(mean=(1.0,), std=(0.0,), minimum=1.0, maximum=1.0)
    with pytest.raises(DataError, match="band 0"):
        normalization_params(DataConfig(normalization="standardize"), flat)


def test_standardized_training_split_has_zero_mean_unit_std() -> None:
    cfg = DataConfig(n_tiles=30, tile_size=32, normalization="standardize", seed=2)
    src = open_source(cfg)
    shift, scale = normalization_params(cfg, src.band_stats())
    x = src.split("train").images.astype(np.float64)
    z = (x - np.array(shift)[None, :, None, None]) * np.array(scale)[None, :, None, None]
    assert np.allclose(z.mean(axis=(0, 2, 3)), 0, atol=1e-6)
    assert np.allclose(z.std(axis=(0, 2, 3)), 1, atol=1e-6)


def test_chip_source_balanced_and_deterministic() -> None:
    chips = open_chip_source(n_chips=50, chip_size=24, bands=4, seed=1)
    train = chips.split("train")
    assert len(train) == 35 and len(chips.split("val")) + len(chips.split("test")) == 15
    image, label = train[0]
    assert tuple(image.shape) == (4, 24, 24) and 0 <= int(label) < len(CHIP_CLASSES)
    assert np.bincount(train.labels, minlength=5).min() == 7
    again = open_chip_source(n_chips=50, chip_size=24, bands=4, seed=1)
    assert np.array_equal(again.split("test").images, chips.split("test").images)
    # class content: cloud chips are brighter than open-sea chips
    imgs, labels = train.images, train.labels
    sea = imgs[labels == CHIP_CLASSES.index("sea")].mean()
    cloud = imgs[labels == CHIP_CLASSES.index("cloud")].mean()
    assert cloud > 2 * sea
    with pytest.raises(DataError):
        open_chip_source(n_chips=5)


def test_cli_inspect_and_preview(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from dalp_moo.cli import main

    runner = CliRunner()
    res = runner.invoke(main, ["data", "inspect", "synthetic", "--n-tiles", "20",
                               "--tile-size", "32", "--bands", "3"])
    assert res.exit_code == 0, res.output
    summary = json.loads(res.output[res.output.index("{"):])
    assert summary["bands"] == 3 and summary["train"]["tiles"] == 14
    out = tmp_path / "p.png"
    res = runner.invoke(main, ["data", "preview", "synthetic", "--n-tiles", "20",
                               "--tile-size", "32", "--out", str(out), "--count", "6"])
    assert res.exit_code == 0, res.output
    from PIL import Image

    with Image.open(out) as im:
        assert im.width > 100 and im.height > 50
    res = runner.invoke(main, ["data", "inspect", "nosuch:/x"])
    assert res.exit_code == 2 and "unknown" in res.output
    res = runner.invoke(main, ["data", "preview", "synthetic", "--n-tiles", "20",
                               "--tile-size", "32", "--out", str(out), "--rgb", "1,2"])
    assert res.exit_code == 2 and "--rgb" in res.output


def test_named_variants() -> None:
    clear = open_source(DataConfig(source="synthetic:clear", n_tiles=20, tile_size=32))
    assert clear.name == "synthetic:clear"
    assert clear.spec.params.p_cloud == 0.0
    cloudy = open_source(DataConfig(source="synthetic:cloudy", n_tiles=20, tile_size=32))
    assert cloudy.spec.key() != clear.spec.key()
    with pytest.raises(DataError, match="unknown variant"):
        open_source(DataConfig(source="synthetic:foggy"))


def test_generator_overrides_change_the_data_and_its_key() -> None:
    base = open_source(DataConfig(n_tiles=20, tile_size=32))
    cfg = DataConfig(n_tiles=20, tile_size=32,
                     generator={"misregistration_px": 0, "cloud_cover": [0.1, 0.2], "p_cloud": 1})
    changed = open_source(cfg)
    assert changed.spec.params.misregistration_px == 0
    assert changed.spec.params.cloud_cover == (0.1, 0.2)
    assert changed.spec.params.p_cloud == 1.0 and isinstance(changed.spec.params.p_cloud, float)
    assert changed.spec.key() != base.spec.key()
    assert changed.describe()["generator_changes"] == {"misregistration_px": 0, "cloud_cover": (0.1, 0.2),
                                                       "p_cloud": 1.0}
    assert base.describe()["generator_changes"] == {}
    # applied over a named variant
    clear = open_source(DataConfig(source="synthetic:clear", n_tiles=20, tile_size=32,
                                   generator={"p_haze": 0.5}))
    assert clear.spec.params.p_cloud == 0.0 and clear.spec.params.p_haze == 0.5


@pytest.mark.parametrize("generator, message", [
    ({"misreg": 0}, "data.generator.misreg: unknown"),
    ({"p_cloud": 1.5}, "data.generator.p_cloud: a probability"),
    ({"length_px": [9, 3]}, "data.generator.length_px: expected \\[low, high\\]"),
    ({"length_px": 3}, "data.generator.length_px: expected \\[low, high\\]"),
    ({"read_noise_dn": -1}, "data.generator.read_noise_dn: expected a number >= 0"),
    ({"read_noise_dn": "loud"}, "data.generator.read_noise_dn: expected a number >= 0"),
    ({"misregistration_px": 1.5}, "data.generator.misregistration_px: expected a whole number"),
    ({"misregistration_jitter_px": 2}, "data.generator.misregistration_jitter_px: must be 0 or 1"),
])
def test_generator_overrides_are_checked(generator: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):  # at config load, one line
        load_config(overrides=[{"data": {"generator": generator}}])
    with pytest.raises(DataError, match=message.removeprefix("data.generator.")):  # library use
        open_source(DataConfig(n_tiles=20, tile_size=32, generator=generator))


def test_generator_overrides_need_a_synthetic_source() -> None:
    with pytest.raises(ConfigError, match="synthetic sources only"):
        DataConfig(source="folder:/data", generator={"p_cloud": 0.0})


def test_misregistration_jitter_switch() -> None:
    assert GeneratorParams().misregistration_jitter_px == 0  # fixed band offsets by default
    assert variant_params("jittered") == GeneratorParams(misregistration_jitter_px=1)
    jittered = GeneratorParams(misregistration_jitter_px=1)
    differs = 0
    for index in range(6):
        a, ma = make_tile(3, index, 32, 4, jittered)
        b, mb = make_tile(3, index, 32, 4)
        # the same random stream either way: reference band and mask are unchanged
        assert np.array_equal(ma, mb) and np.array_equal(a[1], b[1])
        differs += int(not np.array_equal(a, b))
    assert differs > 0  # some tile had a jittered band
    # without misregistration the jitter has nothing to move
    a, _ = make_tile(3, 0, 32, 4, GeneratorParams(misregistration_px=0, misregistration_jitter_px=1))
    b, _ = make_tile(3, 0, 32, 4, GeneratorParams(misregistration_px=0))
    assert np.array_equal(a, b)
