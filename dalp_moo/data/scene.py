"""Procedural maritime scenes in the style of raw Sentinel-2 L0 imagery (numpy only).

One scene is rendered in top-of-atmosphere reflectance on a canvas a few pixels larger than the
tile, then turned into raw digital numbers (DN, 12-bit, 0..4095) by a simulated sensor: per-band
gain and offset, shot and read noise, detector striping, quantisation and saturation, and a
per-band misregistration of a few pixels (each band is cropped from the canvas at its own offset).

Scene content: sea with wave texture and sun glint, coastline and land, haze, clouds (up to
saturation) with their shadows, vessels 3..60 px long (bright, rusty and dark hulls, wakes,
harbours and convoys) and hard negatives (glint sparkles, rocks, small clouds).

The mask marks the pixels whose centre lies inside a vessel hull that is not hidden by an opaque
cloud; it is aligned with the reference band (:data:`REFERENCE_BAND`, green when there are at
least two bands). Every tile depends only on ``(seed, index)``, so tiles can be generated in any
order or in parallel.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

#: increase whenever the rendered output for the same parameters changes (cache key)
GENERATOR_VERSION = 2
DN_MAX = 4095

#: Sentinel-2 band order used for ``bands = n``: the first n of these (centre wavelength, nm)
BAND_TABLE: tuple[tuple[str, float], ...] = (
    ("blue", 490.0), ("green", 560.0), ("red", 665.0), ("nir", 842.0),
    ("red_edge1", 705.0), ("red_edge2", 740.0), ("red_edge3", 783.0), ("nir_narrow", 865.0),
    ("swir1", 1610.0), ("swir2", 2190.0), ("coastal", 443.0), ("water_vapour", 945.0),
    ("cirrus", 1375.0), ("extra1", 1000.0), ("extra2", 1200.0), ("extra3", 2000.0),
)

_ANCHORS = np.array([440, 490, 560, 665, 705, 740, 783, 842, 865, 945, 1375, 1610, 2190], float)
#: reflectance spectra at ``_ANCHORS`` (unitless, 0..1)
_SPECTRA: dict[str, list[float]] = {
    "sea": [.070, .060, .045, .022, .015, .011, .009, .007, .006, .005, .001, .002, .001],
    "turbid": [.080, .080, .085, .060, .045, .030, .022, .016, .014, .010, .001, .003, .002],
    "vegetation": [.030, .040, .080, .050, .120, .280, .350, .380, .380, .360, .010, .220, .110],
    "soil": [.080, .100, .140, .190, .210, .230, .250, .270, .280, .290, .010, .340, .280],
    "urban": [.150, .170, .190, .210, .220, .230, .240, .250, .250, .250, .010, .270, .240],
    "cloud": [.800, .800, .800, .790, .785, .780, .775, .770, .765, .700, .500, .450, .250],
    "hull_bright": [.200, .220, .230, .240, .240, .240, .240, .240, .240, .240, .020, .200, .150],
    "hull_rust": [.050, .055, .070, .160, .180, .190, .200, .210, .210, .210, .010, .200, .150],
    "hull_dark": [.030, .030, .028, .030, .032, .034, .035, .036, .036, .036, .002, .030, .020],
    "foam": [.200, .200, .190, .170, .150, .130, .120, .100, .095, .080, .002, .030, .020],
    "rock": [.060, .070, .090, .110, .120, .130, .140, .150, .150, .150, .010, .180, .160],
}
_MATERIALS = tuple(_SPECTRA)


@dataclass(frozen=True)
class GeneratorParams:
    """Scene statistics of the generator (probabilities per tile, sizes in px, DN for the sensor).

    Densities are per 64x64 px of area and scale with the tile area.
    """

    p_empty: float = 0.25  #: probability that a tile holds no free-floating vessels
    vessel_density: tuple[float, float] = (0.5, 2.6)  #: range of the mean free vessels per 64x64
    length_px: tuple[float, float] = (3.0, 60.0)  #: vessel length range (px)
    length_skew: float = 1.5  #: >1 favours short vessels (exponent on a log-uniform draw)
    p_dark_hull: float = 0.1  #: share of dark hulls (darker than the sea in the visible)
    p_rust_hull: float = 0.15  #: share of rust/red hulls (bright only in red and NIR)
    p_moving: float = 0.6  #: share of vessels with a wake
    wake_strength: float = 0.35  #: foam cover of the wake next to the stern (0..1)
    p_convoy: float = 0.06  #: probability of a convoy (3..5 vessels in line)
    p_harbour: float = 0.5  #: probability of a harbour cluster when the tile has a coastline
    p_land: float = 0.3  #: probability of a coastline / land in the tile
    p_cloud: float = 0.04  #: probability of a cloud field (thick cores near saturation)
    cloud_cover: tuple[float, float] = (0.05, 0.4)  #: range of the cloud-field cover fraction
    p_glint: float = 0.15  #: probability of strong sun glint
    p_haze: float = 0.3  #: probability of haze
    rocks_density: float = 0.3  #: mean rocks / islets per 64x64 (hard negatives)
    sparkle_density: float = 0.7  #: mean glint sparkles per 64x64 (hard negatives)
    small_cloud_density: float = 0.2  #: mean small cumulus puffs per 64x64 (hard negatives)
    misregistration_px: int = 2  #: largest band-to-band shift (px): fixed per-band offset plus jitter
    #: per-tile random part of each band's shift (0 or 1 px). 0 (default since 2026-12-02): the
    #: offsets are fixed per band, as at sea level, where the band-to-band parallax of a push-broom
    #: sensor does not vary with terrain; 1: the former default (variant ``jittered``)
    misregistration_jitter_px: int = 0
    read_noise_dn: float = 6.0  #: read noise standard deviation (DN)
    shot_noise: float = 0.25  #: shot-noise variance per DN of signal (DN)
    striping_dn: float = 4.0  #: column-to-column offset standard deviation (DN)


def with_overrides(base: GeneratorParams, overrides: Mapping[str, Any]) -> GeneratorParams:
    """``base`` with some fields replaced (field name -> value), for ``data.generator``.

    Ranges are given as two numbers ``[low, high]``; probabilities (``p_*``) lie in [0, 1];
    densities, sizes and noise levels are >= 0; ``misregistration_jitter_px`` is 0 or 1.
    Raises ``ValueError`` naming the first unknown field or bad value.
    """
    known = {f.name: f for f in dataclasses.fields(GeneratorParams)}
    changes: dict[str, Any] = {}
    for name, value in overrides.items():
        if name not in known:
            hint = difflib.get_close_matches(name, known, n=1)
            raise ValueError(f"{name}: unknown generator parameter"
                             + (f" (did you mean {hint[0]}?)" if hint else ""))
        default = getattr(base, name)
        if isinstance(default, tuple):
            ok = (isinstance(value, (list, tuple)) and len(value) == 2
                  and all(_is_number(v) for v in value) and 0 <= value[0] <= value[1])
            if not ok:
                raise ValueError(f"{name}: expected [low, high] with 0 <= low <= high, got {value!r}")
            changes[name] = (float(value[0]), float(value[1]))
            continue
        if not _is_number(value) or value < 0:
            raise ValueError(f"{name}: expected a number >= 0, got {value!r}")
        if isinstance(default, int) and not (isinstance(value, int) or float(value).is_integer()):
            raise ValueError(f"{name}: expected a whole number, got {value!r}")
        if name.startswith("p_") and value > 1:
            raise ValueError(f"{name}: a probability must be in [0, 1], got {value!r}")
        if name == "misregistration_jitter_px" and value not in (0, 1):
            raise ValueError(f"{name}: must be 0 or 1, got {value!r}")
        changes[name] = type(default)(value)
    return dataclasses.replace(base, **changes)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


# --------------------------------------------------------------------------- sensor


def band_info(bands: int) -> tuple[tuple[str, ...], np.ndarray]:
    """Names and centre wavelengths (nm) of the first ``bands`` bands of :data:`BAND_TABLE`."""
    if not 1 <= bands <= len(BAND_TABLE):
        raise ValueError(f"bands must be in 1..{len(BAND_TABLE)}, got {bands}")
    names = tuple(name for name, _ in BAND_TABLE[:bands])
    return names, np.array([wl for _, wl in BAND_TABLE[:bands]])


def spectra(bands: int) -> dict[str, np.ndarray]:
    """Reflectance of every material in each band: name -> float64 ``[bands]``."""
    _, wl = band_info(bands)
    return {m: np.interp(wl, _ANCHORS, np.array(v)) for m, v in _SPECTRA.items()}


def sensor_constants(bands: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Fixed sensor: per-band gain (DN per unit reflectance), offset (DN), along-track shift (px).

    The same for every tile and seed (one simulated instrument).
    """
    rng = np.random.default_rng(20240917)
    gain = rng.uniform(4300.0, 5200.0, len(BAND_TABLE))[:bands]
    offset = rng.uniform(60.0, 220.0, len(BAND_TABLE))[:bands]
    shift = rng.integers(-2, 3, len(BAND_TABLE))[:bands]
    return gain, offset, shift


REFERENCE_BAND = 1  #: the band the mask is aligned with (band 0 when there is only one)


# --------------------------------------------------------------------------- noise fields


def _upsample(coarse: np.ndarray, h: int, w: int) -> np.ndarray:
    """Bilinear upsampling of a coarse grid ``[ch, cw]`` to ``[h, w]``."""
    ch, cw = coarse.shape
    ty = np.linspace(0, ch - 1, h)
    tx = np.linspace(0, cw - 1, w)
    iy = np.minimum(ty.astype(int), ch - 2)
    ix = np.minimum(tx.astype(int), cw - 2)
    fy = (ty - iy)[:, None]
    fx = (tx - ix)[None, :]
    rows0 = coarse[iy]
    rows1 = coarse[iy + 1]
    top = rows0[:, ix] * (1 - fx) + rows0[:, ix + 1] * fx
    bottom = rows1[:, ix] * (1 - fx) + rows1[:, ix + 1] * fx
    return top * (1 - fy) + bottom * fy


def fractal(rng: np.random.Generator, size: int, cells: float, octaves: int = 3) -> np.ndarray:
    """Fractal value noise on ``[size, size]``, about zero mean and unit spread.

    ``cells``: coarse cells across the canvas at the first octave (larger = finer structure).
    """
    out = np.zeros((size, size))
    amp = 1.0
    total = 0.0
    for k in range(octaves):
        n = max(2, int(round(cells * 2**k)) + 1)
        out += amp * _upsample(rng.standard_normal((n, n)), size, size)
        total += amp
        amp *= 0.5
    return out / total


def box_blur(a: np.ndarray, r: int) -> np.ndarray:
    """Separable box filter of radius ``r`` (px) over the last two axes, edge-replicated."""
    if r <= 0:
        return a
    k = 2 * r + 1
    pad = [(0, 0)] * (a.ndim - 2) + [(r + 1, r), (0, 0)]
    c = np.cumsum(np.pad(a, pad, mode="edge"), axis=-2)
    a = (c[..., k:, :] - c[..., :-k, :]) / k
    pad = [(0, 0)] * (a.ndim - 2) + [(0, 0), (r + 1, r)]
    c = np.cumsum(np.pad(a, pad, mode="edge"), axis=-1)
    return (c[..., k:] - c[..., :-k]) / k


def _shift(a: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """``a`` moved by (dy, dx) px with zero fill (no wrap-around)."""
    out = np.zeros_like(a)
    h, w = a.shape[-2:]
    ys, yd = (slice(0, h - dy), slice(dy, h)) if dy >= 0 else (slice(-dy, h), slice(0, h + dy))
    xs, xd = (slice(0, w - dx), slice(dx, w)) if dx >= 0 else (slice(-dx, w), slice(0, w + dx))
    out[..., yd, xd] = a[..., ys, xs]
    return out


# --------------------------------------------------------------------------- vessels


@dataclass(frozen=True)
class Vessel:
    """One hull on the canvas: centre (px), length and width (px), heading (rad), material."""

    cy: float
    cx: float
    length: float
    width: float
    heading: float
    material: str
    brightness: float
    wake: float  #: wake length as a multiple of the vessel length (0 = moored)


def _window(cy: float, cx: float, radius: float, size: int) -> tuple[slice, slice] | None:
    y0, y1 = max(0, int(cy - radius)), min(size, int(cy + radius) + 2)
    x0, x1 = max(0, int(cx - radius)), min(size, int(cx + radius) + 2)
    if y0 >= y1 or x0 >= x1:
        return None
    return slice(y0, y1), slice(x0, x1)


def _local_frame(v: Vessel, win: tuple[slice, slice]) -> tuple[np.ndarray, np.ndarray]:
    """Along-track ``u`` (towards the bow) and cross-track ``w`` coordinates of pixel centres."""
    yy = np.arange(win[0].start, win[0].stop, dtype=float)[:, None] - v.cy
    xx = np.arange(win[1].start, win[1].stop, dtype=float)[None, :] - v.cx
    c, s = np.cos(v.heading), np.sin(v.heading)
    return xx * c + yy * s, -xx * s + yy * c


def draw_vessel(refl: np.ndarray, mask: np.ndarray, v: Vessel, spec: dict[str, np.ndarray],
                wake_strength: float = 0.55) -> None:
    """Render hull (and wake) into ``refl`` ``[B,S,S]``; set hull pixels in ``mask`` ``[S,S]``.

    A pixel is in the mask when its centre lies inside the hull outline; the image mixes hull
    and background by the (approximate) covered fraction, so edges are soft.
    """
    size = mask.shape[0]
    if v.wake > 0:
        reach = v.length * (0.5 + v.wake)
        wcy = v.cy - np.sin(v.heading) * reach / 2
        wcx = v.cx - np.cos(v.heading) * reach / 2
        win = _window(wcy, wcx, reach / 2 + v.width + 2, size)
        if win is not None:
            u, w = _local_frame(v, win)
            behind = -(u + v.length / 2)
            s = np.maximum(behind, 0.0)
            decay = max(3.0, v.length * v.wake / 2.5)
            centre = np.exp(-s / decay) * np.exp(-(w / (0.5 * v.width + 0.08 * s + 0.5)) ** 2)
            arms = 0.5 * np.exp(-s / decay) * np.exp(-((np.abs(w) - 0.36 * s) / 1.2) ** 2)
            strength = np.where(behind > 0, wake_strength * v.brightness * (centre + arms), 0.0)
            a = np.clip(strength, 0, 0.9)
            region = refl[:, win[0], win[1]]
            refl[:, win[0], win[1]] = region * (1 - a) + spec["foam"][:, None, None] * a
    win = _window(v.cy, v.cx, v.length / 2 + 2, size)
    if win is None:
        return
    u, w = _local_frame(v, win)
    half_len = v.length / 2
    bow = min(v.length * 0.3, 1.5 * v.width)
    taper = np.clip((half_len - u) / max(bow, 1e-6), 0.35, 1.0)
    half_w = np.where(u > half_len - bow, v.width / 2 * taper, v.width / 2)
    dist = np.maximum(np.abs(u) - half_len, np.abs(w) - half_w)  # <= 0 inside (px, approx.)
    inside = dist <= 0
    if not inside.any():  # tiny hull between pixel centres: keep the nearest pixel
        k = np.argmin(np.abs(u) + np.abs(w))
        inside.flat[k] = True
        dist.flat[k] = 0.0
    cover = np.clip(0.5 - dist, 0.0, 1.0)
    hull = spec[v.material] * v.brightness
    tone = np.ones_like(u)
    if v.length >= 10:  # superstructure: a brighter block in the stern third
        deck = (u < -half_len / 3) & (u > -half_len * 0.85) & (np.abs(w) < 0.3 * v.width)
        tone = np.where(deck, 1.5, 1.0)
    region = refl[:, win[0], win[1]]
    refl[:, win[0], win[1]] = region * (1 - cover) + hull[:, None, None] * (cover * tone)
    mask[win[0], win[1]] |= inside


def _draw_length(rng: np.random.Generator, p: GeneratorParams) -> float:
    lo, hi = p.length_px
    return float(lo * (hi / lo) ** (rng.random() ** p.length_skew))


def _hull_kind(rng: np.random.Generator, p: GeneratorParams) -> tuple[str, float]:
    r = rng.random()
    if r < p.p_dark_hull:
        return "hull_dark", float(rng.uniform(0.6, 1.2))
    if r < p.p_dark_hull + p.p_rust_hull:
        return "hull_rust", float(rng.uniform(0.6, 1.5))
    return "hull_bright", float(rng.uniform(0.5, 1.8))


def _new_vessel(rng: np.random.Generator, p: GeneratorParams, cy: float, cx: float,
                length: float | None = None, heading: float | None = None,
                moving: bool | None = None) -> Vessel:
    length = _draw_length(rng, p) if length is None else length
    width = max(1.0, length * float(rng.uniform(0.12, 0.24)))
    material, brightness = _hull_kind(rng, p)
    moving = bool(rng.random() < p.p_moving) if moving is None else moving
    return Vessel(cy, cx, length, width,
                  float(rng.uniform(0, 2 * np.pi)) if heading is None else heading,
                  material, brightness, float(rng.uniform(1.0, 5.0)) if moving else 0.0)


# --------------------------------------------------------------------------- scene


@dataclass(frozen=True)
class SceneControls:
    """Forced scene content, for chip classification (None = drawn at random)."""

    land: bool | None = None
    cloud: bool | None = None
    glint: bool | None = None
    vessels: bool | None = None  #: False: no vessels at all; True: one vessel near the centre
    negatives: bool = True  #: rocks, sparkles and small clouds


def render_scene(rng: np.random.Generator, size: int, bands: int, p: GeneratorParams,
                 controls: SceneControls = SceneControls()) -> tuple[np.ndarray, np.ndarray, dict]:
    """One scene. Returns image float32 ``[bands,size,size]`` (DN, integers 0..4095), mask uint8
    ``[size,size]`` and a dict of scene facts (cloud/land/glint cover fractions)."""
    spec = spectra(bands)
    pad = p.misregistration_px
    S = size + 2 * pad
    scale = size / 64.0
    area = scale * scale
    # ---- sea: base colour, turbidity, waves
    sea = spec["sea"] * rng.uniform(0.8, 1.25)
    yy, xx = np.mgrid[0:S, 0:S].astype(float)
    waves = np.zeros((S, S))
    wave_dir = rng.uniform(0, 2 * np.pi)
    for _ in range(3):
        d = wave_dir + rng.normal(0, 0.4)
        k = 2 * np.pi / rng.uniform(2.5, 9.0)
        waves += np.sin(k * (xx * np.cos(d) + yy * np.sin(d)) + rng.uniform(0, 2 * np.pi))
    waves = 0.5 * waves / 3 + 0.8 * fractal(rng, S, S / 4, 2)
    roughness = rng.uniform(0.03, 0.15)
    refl = sea[:, None, None] * (1 + roughness * waves)[None]
    # ---- land and coastline
    has_land = bool(rng.random() < p.p_land) if controls.land is None else controls.land
    land = np.zeros((S, S), bool)
    if has_land:
        d = rng.uniform(0, 2 * np.pi)
        ramp = ((xx - S / 2) * np.cos(d) + (yy - S / 2) * np.sin(d)) / S
        field = ramp * rng.uniform(1.0, 4.0) + 0.5 * fractal(rng, S, 3, 4)
        target = rng.uniform(0.55, 0.9) if controls.land else rng.uniform(0.08, 0.6)
        land = field > np.quantile(field, 1 - target)
        near = box_blur(land.astype(float), max(2, int(3 * scale)))
        turbid = np.clip(near * 1.5, 0, 1) * rng.uniform(0.3, 1.0)
        refl = refl * (1 - turbid) + spec["turbid"][:, None, None] * turbid
        cover = fractal(rng, S, 4 * scale, 3)
        veg = np.clip(0.5 + cover, 0, 1)
        urban = np.clip(fractal(rng, S, 6 * scale, 2) - 0.4, 0, 1)
        ground = (spec["vegetation"][:, None, None] * veg + spec["soil"][:, None, None] * (1 - veg))
        ground = ground * (1 - urban) + spec["urban"][:, None, None] * urban
        ground = ground * (1 + 0.15 * fractal(rng, S, S / 4, 1))[None]
        refl = np.where(land[None], ground, refl)
    # ---- sun glint: smooth field modulated by the wave facets
    has_glint = bool(rng.random() < p.p_glint) if controls.glint is None else controls.glint
    sea_px = ~land
    if has_glint:
        g = rng.uniform(0.05, 0.3) * np.clip(0.7 + 0.5 * fractal(rng, S, 1.5, 2), 0.1, 1.5)
        facets = np.clip(waves, 0, None) ** 2
        refl = refl + np.where(sea_px, g * (0.4 + facets), 0.0)[None]
    # ---- hard negatives on the surface: rocks, glint sparkles
    if controls.negatives:
        for _ in range(rng.poisson(p.rocks_density * area)):
            cy, cx, r = rng.uniform(0, S), rng.uniform(0, S), rng.uniform(0.8, 3.0)
            win = _window(cy, cx, r + 2, S)
            if win is None:
                continue
            ly = np.arange(win[0].start, win[0].stop)[:, None] - cy
            lx = np.arange(win[1].start, win[1].stop)[None, :] - cx
            wobble = 1 + 0.35 * rng.standard_normal(ly.shape[0] * lx.shape[1]).reshape(
                ly.shape[0], lx.shape[1])
            rock = (ly**2 + lx**2) <= (r * wobble) ** 2
            mat = spec["rock"] if rng.random() < 0.7 else spec["vegetation"]
            refl[:, win[0], win[1]] = np.where(rock[None], mat[:, None, None] *
                                               rng.uniform(0.5, 1.6), refl[:, win[0], win[1]])
        n_sp = rng.poisson(p.sparkle_density * area * (3 if has_glint else 1))
        if n_sp:
            cy, cx = rng.uniform(0, S, n_sp), rng.uniform(0, S, n_sp)
            amp = rng.uniform(0.05, 0.45, n_sp)
            sig = rng.uniform(0.4, 1.0, n_sp)
            spark = np.zeros((S, S))
            for i in range(n_sp):
                win = _window(cy[i], cx[i], 3, S)
                if win is None:
                    continue
                ly = np.arange(win[0].start, win[0].stop)[:, None] - cy[i]
                lx = np.arange(win[1].start, win[1].stop)[None, :] - cx[i]
                spark[win] += amp[i] * np.exp(-(ly**2 + lx**2) / (2 * sig[i] ** 2))
            refl = refl + (spark * sea_px)[None]
    # ---- vessels: free-floating, convoys, harbours
    mask = np.zeros((S, S), bool)
    vessels: list[Vessel] = []
    if controls.vessels is None:
        if rng.random() >= p.p_empty:
            lam = rng.uniform(*p.vessel_density) * area
            for _ in range(rng.poisson(lam)):
                vessels.append(_new_vessel(rng, p, rng.uniform(0, S), rng.uniform(0, S)))
        if rng.random() < p.p_convoy:
            heading = rng.uniform(0, 2 * np.pi)
            length = rng.uniform(8, 30)
            gap = length * rng.uniform(2.0, 4.0)
            cy, cx = rng.uniform(0, S), rng.uniform(0, S)
            for k in range(int(rng.integers(3, 6))):
                vessels.append(_new_vessel(
                    rng, p, cy - k * gap * np.sin(heading), cx - k * gap * np.cos(heading),
                    length * rng.uniform(0.8, 1.2), heading + rng.normal(0, 0.05), True))
        coast = (box_blur(land.astype(float), 2) > 0.02) & ~land
        if has_land and coast.any() and rng.random() < p.p_harbour:
            ys, xs = np.nonzero(coast)
            k = rng.integers(len(ys))
            heading = rng.uniform(0, 2 * np.pi)
            length = rng.uniform(5, 22)
            width = max(1.0, length * 0.2)
            step = width + rng.uniform(1.5, 3.5)
            side = np.array([-np.sin(heading), np.cos(heading)])
            for j in range(int(rng.integers(3, 10))):
                vessels.append(_new_vessel(
                    rng, p, ys[k] + side[1] * step * j, xs[k] + side[0] * step * j,
                    length * rng.uniform(0.8, 1.2), heading + rng.normal(0, 0.04), False))
    elif controls.vessels:
        c = S / 2 + rng.uniform(-2, 2, 2)
        length = float(np.clip(_draw_length(rng, p), 5, 0.6 * size))
        vessels.append(_new_vessel(rng, p, c[0], c[1], length))
    for v in vessels:
        iy, ix = int(np.clip(v.cy, 0, S - 1)), int(np.clip(v.cx, 0, S - 1))
        if land[iy, ix]:
            continue  # a hull centred on land is dropped
        draw_vessel(refl, mask, v, spec, p.wake_strength)
    mask &= sea_px
    # ---- point spread function (optics): light blur of the surface
    refl = 0.5 * refl + 0.5 * box_blur(refl, 1)
    # ---- clouds (fields and small puffs), their shadows, haze
    has_cloud = bool(rng.random() < p.p_cloud) if controls.cloud is None else controls.cloud
    opacity = np.zeros((S, S))
    if has_cloud:
        field = fractal(rng, S, 2.5, 4)
        cover = rng.uniform(0.5, 0.95) if controls.cloud else rng.uniform(*p.cloud_cover)
        thr = np.quantile(field, 1 - cover)
        opacity = np.clip((field - thr) * rng.uniform(3, 10), 0, 1)
    if controls.negatives:
        for _ in range(rng.poisson(p.small_cloud_density * area)):
            cy, cx, r = rng.uniform(0, S), rng.uniform(0, S), rng.uniform(1.0, 4.0)
            win = _window(cy, cx, 2.5 * r, S)
            if win is None:
                continue
            ly = np.arange(win[0].start, win[0].stop)[:, None] - cy
            lx = np.arange(win[1].start, win[1].stop)[None, :] - cx
            puff = np.zeros((ly.shape[0], lx.shape[1]))
            for _ in range(int(rng.integers(2, 5))):  # a few lumps make an irregular cumulus
                oy, ox = rng.normal(0, 0.6 * r, 2)
                rr = r * rng.uniform(0.5, 1.0)
                puff = np.maximum(puff, np.exp(-((ly - oy) ** 2 + (lx - ox) ** 2) / (2 * rr * rr)))
            opacity[win] = np.maximum(opacity[win], np.clip(puff * rng.uniform(0.6, 1.4), 0, 1))
    if opacity.any():
        sdy, sdx = (int(v) for v in rng.integers(-int(8 * scale) - 1, int(8 * scale) + 2, 2))
        shadow = _shift(opacity, sdy, sdx)
        refl = refl * (1 - 0.6 * np.clip(shadow, 0, 1))[None]
        thickness = rng.uniform(0.85, 1.25) * (0.8 + 0.2 * fractal(rng, S, 8, 2))
        cloud = spec["cloud"][:, None, None] * np.clip(thickness, 0.5, 1.3)[None]
        refl = refl * (1 - opacity[None]) + cloud * opacity[None]
        mask &= opacity < 0.5  # a hull under an opaque cloud is not observable
    if rng.random() < p.p_haze:
        _, wl = band_info(bands)
        haze = rng.uniform(0.005, 0.06) * (490.0 / wl) ** 1.5
        amount = np.clip(1 + 0.4 * fractal(rng, S, 2, 2), 0.3, 2.0)
        refl = refl * (1 - 0.3 * haze.mean()) + haze[:, None, None] * amount[None]
    # ---- sensor: misregistration, gain/offset, noise, striping, quantisation, saturation
    gain, offset, base_shift = sensor_constants(bands)
    gain = gain * rng.uniform(0.97, 1.03, bands)
    image = np.empty((bands, size, size))
    for b in range(bands):
        if b == min(REFERENCE_BAND, bands - 1) or pad == 0:
            dy = dx = 0
        else:
            jy, jx = rng.integers(-1, 2), rng.integers(-1, 2)  # drawn either way: same stream
            dy = int(np.clip(base_shift[b] + jy * p.misregistration_jitter_px, -pad, pad))
            dx = int(np.clip(jx * p.misregistration_jitter_px, -pad, pad))
        image[b] = refl[b, pad + dy: pad + dy + size, pad + dx: pad + dx + size]
    signal = image * gain[:, None, None]
    noise_sd = np.sqrt(p.read_noise_dn**2 + p.shot_noise * np.clip(signal, 0, None))
    cols = rng.normal(0, p.striping_dn, (bands, size))
    modules = np.cumsum(rng.random(size) < 1 / 40.0)  # detector module boundaries
    cols = cols + rng.normal(0, p.striping_dn, (bands, int(modules[-1]) + 1))[:, modules]
    col_gain = 1 + rng.normal(0, 0.004, (bands, size))
    dn = (offset[:, None, None] + signal * col_gain[:, None, :] + cols[:, None, :]
          + noise_sd * rng.standard_normal(signal.shape))
    dn = np.clip(np.round(dn), 0, DN_MAX).astype(np.float32)
    out_mask = mask[pad: pad + size, pad: pad + size].astype(np.uint8)
    crop = (slice(pad, pad + size), slice(pad, pad + size))
    facts = {
        "land": float(land[crop].mean()),
        "cloud": float((opacity[crop] >= 0.5).mean()),
        "glint": bool(has_glint),
        "vessels": len(vessels),
    }
    return dn, out_mask, facts


def tile_rng(seed: int, index: int, stream: int = 0) -> np.random.Generator:
    """The generator of tile ``index`` of data set ``seed`` (independent of all other tiles)."""
    return np.random.default_rng(np.random.SeedSequence([int(seed), int(stream), int(index)]))


def make_tile(seed: int, index: int, size: int, bands: int,
              params: GeneratorParams = GeneratorParams()) -> tuple[np.ndarray, np.ndarray]:
    """Tile ``index`` of the data set ``seed``: image float32 ``[bands,size,size]`` (DN), mask
    uint8 ``[size,size]``."""
    image, mask, _ = render_scene(tile_rng(seed, index), size, bands, params)
    return image, mask
