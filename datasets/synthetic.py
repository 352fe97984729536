"""The embedded default: a physically-motivated synthetic multi-region generator.

Each sample is an independent scene on a ``patch_size`` × ``patch_size`` grid of 4 km cells,
seen in ``frames`` successive images ending at the target time. The scene holds convective
cells with a life cycle, their anvils, stratiform shields, shallow warm-rain clouds and thin
cirrus, all advected by a steering wind. A two-stream-free, layer-by-layer emission model turns
cloud-top temperature and optical depth into per-band brightness temperatures for the region's
sensor (its own centre wavelengths, blur, noise, calibration offsets, viewing angle and
parallax); a radar model turns the true surface rain into the radar composite (bias, range
degradation, minimum detectable rate, coverage). ``docs/synthetic.md`` gives the equations.

Everything is vectorised over the samples of a chunk and deterministic from ``(seed, region,
chunk)``, so a store can be built (and resumed) shard by shard.
"""

from __future__ import annotations

import multiprocessing
import os
import zlib
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
from pyproj import CRS, Transformer
from scipy.ndimage import gaussian_filter
from tqdm.auto import tqdm

from qpebench.bands import CANONICAL_BANDS, DEFAULT_BANDS, sensor_channel, validate_bands
from qpebench.errors import ConfigError
from qpebench.processes import die_with_parent
from qpebench.registry import DATASETS
from qpebench.sample import cos_solar_zenith, season
from qpebench.store import SampleBatch, SampleStore, SampleStoreWriter, StoreSpec

from .synthetic_regions import RegionPreset, get_region

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]

#: Bumped whenever a change alters what the generator draws: part of the dataset version and
#: of the cache key, so a cached store from older code is never reused silently.
GENERATOR_VERSION = 3
PIXEL_KM = 4.0
#: Moist-adiabatic-ish lapse rate used to turn cloud-top temperature into height (K/km).
LAPSE_K_PER_KM = 6.5
#: Ice/water absorption efficiency (absorption optical depth per unit visible optical depth).
K_WATER = 0.5
ICE_BELOW_K = 253.0
MAX_CELLS = 12
MAX_WARM = 10
#: Auxiliary fields every synthetic sample carries: the true rain and the hidden states.
AUX = ("true_rain", "cell_cover", "cell_stage", "shield_trend")


@dataclass(frozen=True)
class SyntheticConfig:
    """Shape of the generated samples.

    Attributes:
        patch_size: Patch height and width in cells.
        frames: Frames per sample (T), ending at the target time.
        bands: Canonical bands to render, in order.
    """

    patch_size: int = 64
    frames: int = 4
    bands: tuple[str, ...] = DEFAULT_BANDS

    def __post_init__(self) -> None:
        if self.patch_size < 8:
            raise ConfigError(f"patch_size must be at least 8 cells, got {self.patch_size}")
        if self.frames < 1:
            raise ConfigError(f"frames must be at least 1, got {self.frames}")
        object.__setattr__(self, "bands", validate_bands(list(self.bands)))


def region_grid(preset: RegionPreset) -> dict[str, Any]:
    """The region's grid: Lambert azimuthal equal-area around the region centre, 4 km cells.

    Returns:
        ``crs`` (PROJ string), ``cell_size_m``, ``x_min``/``y_max`` (outer corner, metres) and
        ``shape`` (rows, cols), as recorded in the store manifest.
    """
    c = preset.climate
    lat0, lon0 = np.mean(c.lat_deg), np.mean(c.lon_deg)
    proj = f"+proj=laea +lat_0={lat0:g} +lon_0={lon0:g} +x_0=0 +y_0=0 +ellps=WGS84 +units=m"
    to_xy = Transformer.from_crs(CRS.from_epsg(4326), CRS.from_proj4(proj), always_xy=True)
    lons = np.array([c.lon_deg[0], c.lon_deg[1], c.lon_deg[0], c.lon_deg[1], lon0, lon0])
    lats = np.array(
        [c.lat_deg[0], c.lat_deg[0], c.lat_deg[1], c.lat_deg[1], c.lat_deg[0], c.lat_deg[1]]
    )
    x, y = to_xy.transform(lons, lats)
    cell = PIXEL_KM * 1000.0
    x_min = float(np.floor(x.min() / cell) * cell)
    y_max = float(np.ceil(y.max() / cell) * cell)
    rows = int(np.ceil((y_max - y.min()) / cell))
    cols = int(np.ceil((x.max() - x_min) / cell))
    return {"crs": proj, "cell_size_m": cell, "x_min": x_min, "y_max": y_max, "shape": [rows, cols]}


def region_seed(seed: int, region: str, *extra: int) -> list[int]:
    """Seed sequence entropy for one region (and chunk), stable across runs and platforms."""
    return [int(seed), zlib.crc32(region.encode()), *[int(e) for e in extra]]


def target_times(
    preset: RegionPreset, n: int, years: tuple[int, int], seed: int
) -> npt.NDArray[np.int64]:
    """Draw ``n`` distinct target times (UTC s since epoch) on the sensor's frame clock, sorted.

    Args:
        preset: The region (sets the frame step).
        n: Number of samples.
        years: First and last year (inclusive), as checked by :func:`parse_regions`.
        seed: Generator seed.

    Raises:
        ConfigError: The years hold fewer time slots than ``n``.
    """
    start = np.datetime64(f"{years[0]}-01-01T00:00:00", "s").astype(np.int64)
    stop = np.datetime64(f"{years[1] + 1}-01-01T00:00:00", "s").astype(np.int64)
    step = preset.sensor.frame_step_s
    slots = int((stop - start) // step)
    if n > slots:
        raise ConfigError(f"{n} samples do not fit in {slots} time slots of {step} s")
    rng = np.random.default_rng(region_seed(seed, preset.name, 2**31 - 1))
    chosen = np.sort(rng.choice(slots, size=n, replace=False))
    return (start + chosen * step).astype(np.int64)


def _smoothstep(x: F64) -> F64:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


def _gauss_1d(coord: F64, centre: F64, sigma: F64) -> F64:
    """exp(-(coord - centre)² / 2σ²) with centre, sigma shaped (..., 1) and coord (P,)."""
    return np.exp(-0.5 * ((coord - centre) / sigma) ** 2)


def _blob(yy: F64, xx: F64, cy: F64, cx: F64, sigma: F64, amp: F64) -> F64:
    """Sum over objects of amp·exp(-d²/2σ²) on the patch, separably.

    Args:
        yy: Patch row coordinates (P,).
        xx: Patch column coordinates (P,).
        cy: Object centre rows (m, T, K).
        cx: Object centre columns (m, T, K).
        sigma: Object widths in pixels (m, T, K).
        amp: Object amplitudes (m, T, K).

    Returns:
        Array (m, T, P, P).
    """
    gy = _gauss_1d(yy, cy[..., None], sigma[..., None])  # (m,T,K,P)
    gx = _gauss_1d(xx, cx[..., None], sigma[..., None])
    out: F64 = np.einsum("mtk,mtky,mtkx->mtyx", amp, gy, gx, optimize=True)
    return out


def _random_fields(rng: np.random.Generator, m: int, g: int, scale_px: float) -> np.ndarray:
    """Spectra of m smooth Gaussian random fields on a g×g grid (Gaussian spectral shape)."""
    ky = np.fft.fftfreq(g)[:, None]
    kx = np.fft.rfftfreq(g)[None, :]
    k2 = ky**2 + kx**2
    amp = np.exp(-2.0 * (np.pi * scale_px) ** 2 * k2 / 4.0)
    noise = rng.standard_normal((m, g, g))
    spec = np.fft.rfft2(noise) * amp
    field0 = np.fft.irfft2(spec, s=(g, g))
    std = field0.reshape(m, -1).std(axis=1)[:, None, None] + 1e-12
    out: np.ndarray = spec / std
    return out  # fields have unit standard deviation


def _advected(spec: np.ndarray, g: int, p: int, dy: F64, dx: F64) -> F64:
    """Fields (m, T, p, p): each spectrum shifted by (dy, dx) pixels per frame, centre-cropped."""
    ky = np.fft.fftfreq(g)[:, None]
    kx = np.fft.rfftfreq(g)[None, :]
    # The shift theorem, separably: exp(-2πi(ky·dy + kx·dx)) = exp(-2πi ky·dy)·exp(-2πi kx·dx).
    phase_y = np.exp(-2j * np.pi * ky[None, None, :, 0] * dy[:, :, None])  # (m,T,g)
    phase_x = np.exp(-2j * np.pi * kx[None, None, 0, :] * dx[:, :, None])  # (m,T,g/2+1)
    shifted = spec[:, None] * phase_y[..., :, None] * phase_x[..., None, :]
    fields = np.fft.irfft2(shifted.astype(np.complex64), s=(g, g))
    o = (g - p) // 2
    out: F64 = fields[:, :, o : o + p, o : o + p]
    return out


class _Layer:
    """Accumulates optical depth and optical-depth-weighted temperature of a cloud layer."""

    def __init__(self, shape: tuple[int, ...]) -> None:
        self.tau = np.zeros(shape)
        self.tau_t = np.zeros(shape)

    def add(self, tau: F64, temp: F64 | float) -> None:
        """Add a cloud of optical depth ``tau`` at temperature ``temp``."""
        self.tau += tau
        self.tau_t += tau * temp

    def add_weighted(self, tau: F64, tau_t: F64) -> None:
        """Add optical depth and its temperature-weighted sum computed elsewhere."""
        self.tau += tau
        self.tau_t += tau_t

    def temperature(self, fallback: F64) -> F64:
        out: F64 = np.where(self.tau > 1e-6, self.tau_t / np.maximum(self.tau, 1e-6), fallback)
        return out


def render_chunk(
    preset: RegionPreset, config: SyntheticConfig, times: npt.NDArray[np.int64], seed: list[int]
) -> SampleBatch:
    """Render the samples whose target times are ``times``.

    Args:
        preset: The region.
        config: Patch size, frames and bands.
        times: Target times (UTC s), one per sample.
        seed: Seed-sequence entropy for this chunk (see :func:`region_seed`).

    Returns:
        The samples, with metadata rows.
    """
    rng = np.random.default_rng(seed)
    cl, sen, rad = preset.climate, preset.sensor, preset.radar
    m, t_n, p = len(times), config.frames, config.patch_size
    step = sen.frame_step_s
    frame_times = times[:, None] - step * (t_n - 1 - np.arange(t_n))[None, :]  # (m,T)
    dt_min = (frame_times - times[:, None]) / 60.0  # minutes before target, <= 0

    # --- where and when ------------------------------------------------------------------
    lat = rng.uniform(*cl.lat_deg, m)
    lon = rng.uniform(*cl.lon_deg, m)
    lat_frac = (np.abs(lat) - min(np.abs(cl.lat_deg))) / (np.ptp(np.abs(cl.lat_deg)) + 1e-9)
    vza = np.clip(sen.vza_deg[0] + np.ptp(sen.vza_deg) * lat_frac + rng.normal(0, 2, m), 0, 80)
    dt64 = frame_times.astype("datetime64[s]")
    doy = (dt64.astype("datetime64[D]") - dt64.astype("datetime64[Y]")).astype(np.int64) + 1.0
    utc_hour = (frame_times % 86400) / 3600.0
    local_hour = (utc_hour + lon[:, None] / 15.0) % 24.0  # (m,T)
    month = (dt64[:, -1].astype("datetime64[M]").astype(np.int64) % 12) + 1
    year = dt64[:, -1].astype("datetime64[Y]").astype(np.int64) + 1970
    southern = cl.lat_deg[1] < 0
    warm_doy = 17 if southern else 200
    seasonal = np.cos(2 * np.pi * (doy - warm_doy) / 365.25)
    diurnal = np.cos(2 * np.pi * (local_hour - 13.5) / 24.0)
    ts = cl.surface_k + cl.seasonal_k * seasonal + cl.diurnal_k * diurnal  # (m,T)
    ts = ts + rng.normal(0, 2.0, (m, 1))
    trop = cl.tropopause_k + rng.normal(0, 2.0, (m, 1))  # (m,1)
    wv_col = rng.uniform(*cl.water_vapour_cm, (m, 1)) * (0.85 + 0.15 * seasonal[:, -1:])
    cos_sza = cos_solar_zenith(lat[:, None], doy, local_hour)

    conv_season = (
        1
        + cl.convective_seasonality * np.cos(2 * np.pi * (doy[:, -1] - cl.season_peak_doy) / 365.25)
    ) / (1 + cl.convective_seasonality)
    conv_diurnal = 0.45 + 0.55 * np.clip(np.cos(2 * np.pi * (local_hour[:, -1] - 16) / 24), 0, 1)

    speed = np.abs(rng.normal(cl.wind_ms, cl.wind_ms / 3, m))
    heading = rng.uniform(0, 2 * np.pi, m)
    px_per_min = speed * 60.0 / 1000.0 / PIXEL_KM
    wind_vy = -px_per_min * np.cos(heading)  # rows grow southward
    wind_vx = px_per_min * np.sin(heading)
    az = np.deg2rad(sen.parallax_azimuth_deg)
    par_dir_y, par_dir_x = -np.cos(az), np.sin(az)
    tan_vza = np.tan(np.deg2rad(vza))[:, None, None]

    yy = np.arange(p, dtype=np.float64)
    xx = np.arange(p, dtype=np.float64)
    shape = (m, t_n, p, p)
    low, mid, high = _Layer(shape), _Layer(shape), _Layer(shape)

    def parallax(temp: F64) -> tuple[F64, F64]:
        """Apparent displacement (pixels) of a cloud top at ``temp`` (m,T,K)."""
        height_km = np.clip((ts[:, :, None] - temp) / LAPSE_K_PER_KM, 0, 18)
        shift = height_km * tan_vza / PIXEL_KM
        return shift * par_dir_y, shift * par_dir_x

    # --- convective cells with a life cycle ------------------------------------------------
    k = MAX_CELLS
    n_cells = np.minimum(rng.poisson(cl.cells * conv_season * conv_diurnal * 1.6), k)
    exists = (np.arange(k)[None, :] < n_cells[:, None]).astype(np.float64)  # (m,K)
    stage0 = rng.uniform(-0.3, 1.8, (m, k))
    life_min = rng.uniform(45, 110, (m, k))
    stage = stage0[:, None, :] + dt_min[:, :, None] / life_min[:, None, :]  # (m,T,K)
    peak = np.clip(
        cl.cell_rain_mm_h[0] * np.exp(cl.cell_rain_mm_h[1] * rng.standard_normal((m, k))), 3, 200
    )
    rc = rng.uniform(*cl.cell_radius_km, (m, k)) / PIXEL_KM / 2.0  # Gaussian sigma, px
    y0 = rng.uniform(-0.1 * p, 1.1 * p, (m, k))
    x0 = rng.uniform(-0.1 * p, 1.1 * p, (m, k))
    vy = wind_vy[:, None] * (1 + rng.normal(0, 0.15, (m, k)))
    vx = wind_vx[:, None] * (1 + rng.normal(0, 0.15, (m, k)))
    cy = y0[:, None, :] + vy[:, None, :] * dt_min[:, :, None]  # (m,T,K)
    cx = x0[:, None, :] + vx[:, None, :] * dt_min[:, :, None]
    overshoot = np.clip((peak - 30) / 8.0, 0, 8)
    top_k = trop[:, :, None] - overshoot[:, None, :]  # coldest top of each cell (m,1,K)
    base_k = ts[:, :, None] - 12.0  # first cumulus tops
    rain_env = np.where((stage > 0) & (stage < 1), np.sin(np.pi * np.clip(stage, 0, 1)) ** 2, 0)
    # Tops cool fastest during growth: from base to the tropopause between stage -0.15 and 0.45.
    growth = _smoothstep((stage + 0.15) / 0.6)
    tower_on = ((stage > -0.15) & (stage < 1.0)).astype(np.float64) * exists[:, None, :]
    tower_t = base_k - (base_k - top_k) * growth
    tower_tau = 40.0 * tower_on * (0.3 + 0.7 * growth)
    tower_sig = rc[:, None, :] * (0.8 + 0.7 * growth)
    # Anvils spread from maturity and outlive the rain, warming and thinning as they decay.
    anvil_on = ((stage > 0.3) & (stage < 1.9)).astype(np.float64) * exists[:, None, :]
    spread = np.clip((stage - 0.3) / 0.9, 0, 1)
    decay = np.clip((stage - 1.0) / 0.9, 0, 1)
    anvil_sig = rc[:, None, :] * (1.0 + (cl.anvil_scale - 1.0) * spread)
    anvil_t = top_k + 5.0 + 12.0 * decay
    anvil_tau = anvil_on * 14.0 * (1.0 - 0.85 * decay)
    off = 0.5 * (anvil_sig - rc[:, None, :])
    ay = cy + off * (vy / (np.hypot(vy, vx) + 1e-9))[:, None, :]
    ax = cx + off * (vx / (np.hypot(vy, vx) + 1e-9))[:, None, :]
    pty, ptx = parallax(tower_t)
    high.add_weighted(
        _blob(yy, xx, cy + pty, cx + ptx, tower_sig, tower_tau),
        _blob(yy, xx, cy + pty, cx + ptx, tower_sig, tower_tau * tower_t),
    )
    pay, pax = parallax(anvil_t)
    high.add_weighted(
        _blob(yy, xx, ay + pay, ax + pax, anvil_sig, anvil_tau),
        _blob(yy, xx, ay + pay, ax + pax, anvil_sig, anvil_tau * anvil_t),
    )
    last = slice(t_n - 1, t_n)  # rain is needed at the target time only
    core_amp = (peak[:, None, :] * rain_env * exists[:, None, :])[:, last]
    conv_rain = _blob(yy, xx, cy[:, last], cx[:, last], rc[:, None, :], core_amp)[:, 0]
    trail = np.where(
        (stage > 0.35) & (stage < 1.2), np.sin(np.pi * np.clip((stage - 0.35) / 0.85, 0, 1)), 0
    )
    trail_amp = (np.minimum(0.12 * peak[:, None, :], 4.0) * trail * exists[:, None, :])[:, last]
    conv_rain += _blob(yy, xx, ay[:, last], ax[:, last], 1.2 * anvil_sig[:, last], trail_amp)[:, 0]

    # The hidden life stage where the imager sees the cells at the target time (an oracle input):
    # tower and anvil footprints at their apparent (parallax-shifted) places.
    def seen(weight: F64) -> F64:
        """Sum of tower and anvil footprints at the target, each weighted by ``weight``."""
        parts = (
            (cy + pty, cx + ptx, tower_sig, tower_on),
            (ay + pay, ax + pax, anvil_sig, anvil_on),
        )
        tower, anvil = (
            _blob(yy, xx, y[:, last], x[:, last], sig[:, last], (on * weight)[:, last])
            for y, x, sig, on in parts
        )
        return tower + anvil

    seen_w, seen_ws = seen(np.ones_like(stage)), seen(stage)

    # --- stratiform shields: rain follows the shield's life cycle --------------------------
    g = int(2 ** np.ceil(np.log2(p * 1.6)))
    strat_on = rng.random(m) < cl.stratiform_prob
    spec = _random_fields(rng, m, g, scale_px=70.0 / PIXEL_KM)
    sdy = wind_vy[:, None] * dt_min
    sdx = wind_vx[:, None] * dt_min
    trend = rng.uniform(-1, 1, m)  # +1 developing (thickening), -1 dissipating
    base = _advected(spec, g, p, sdy, sdx)
    thr_cloud = rng.uniform(-0.6, 0.4, m)[:, None, None, None]
    intensity = base + (0.5 * trend[:, None] * dt_min / 60.0)[:, :, None, None]
    excess = np.clip(intensity - thr_cloud, 0, None) * strat_on[:, None, None, None]
    # Parallax of the shield as a whole (uniform shift at its mean height).
    shift = np.clip((ts - (trop + 30.0)) / LAPSE_K_PER_KM, 0, 18) * tan_vza[:, :, 0] / PIXEL_KM
    excess_p = (
        np.clip(
            _advected(spec, g, p, sdy + shift * par_dir_y, sdx + shift * par_dir_x)
            + (0.5 * trend[:, None] * dt_min / 60.0)[:, :, None, None]
            - thr_cloud,
            0,
            None,
        )
        * strat_on[:, None, None, None]
    )
    mid.add(
        np.where(excess_p > 0, 4.0 + 24.0 * np.clip(excess_p, 0, 1), 0.0),
        trop[:, :, None, None] + 38.0 - 16.0 * np.clip(excess_p, 0, 1.5),
    )
    embedded = _advected(
        _random_fields(rng, m, g, scale_px=12.0 / PIXEL_KM), g, p, sdy[:, last], sdx[:, last]
    )[:, 0]
    life_factor = np.clip(0.55 + 0.6 * trend, 0.05, 1.2)[:, None, None]
    strat_rain = (
        cl.stratiform_mm_h
        * 1.6
        * np.clip(excess[:, -1] - 0.25, 0, None)
        * life_factor
        * np.exp(0.5 * embedded)
    )

    # --- shallow warm clouds: warm tops, some raining (missed by IR) ----------------------
    kw = MAX_WARM
    warm_on = rng.random(m) < cl.warm_prob
    n_warm = np.where(warm_on, rng.integers(2, kw + 1, m), 0)
    w_exists = (np.arange(kw)[None, :] < n_warm[:, None]).astype(np.float64)
    wy = rng.uniform(0, p, (m, kw))[:, None, :] + wind_vy[:, None, None] * dt_min[:, :, None]
    wx = rng.uniform(0, p, (m, kw))[:, None, :] + wind_vx[:, None, None] * dt_min[:, :, None]
    w_sig = rng.uniform(5, 14, (m, kw)) / PIXEL_KM
    w_depth = rng.uniform(6, 18, (m, kw))
    w_t = ts[:, :, None] - w_depth[:, None, :]
    w_tau = np.broadcast_to((14.0 * w_exists)[:, None, :], w_t.shape)
    w_sig3 = np.broadcast_to(w_sig[:, None, :], w_t.shape)
    low.add_weighted(
        _blob(yy, xx, wy, wx, w_sig3, w_tau), _blob(yy, xx, wy, wx, w_sig3, w_tau * w_t)
    )
    raining = (rng.random((m, kw)) < 0.7) * w_exists
    w_rate = cl.warm_mm_h * np.exp(0.5 * rng.standard_normal((m, kw))) * raining
    warm_rain = _blob(
        yy, xx, wy[:, last], wx[:, last], w_sig[:, None, :] * 0.8, w_rate[:, None, :]
    )[:, 0]

    # --- thin cirrus: cold but transparent, no rain -----------------------------------------
    cirrus_on = rng.random(m) < cl.cirrus_prob
    cspec = _random_fields(rng, m, g, scale_px=30.0 / PIXEL_KM)
    ci_t = trop + rng.uniform(8, 25, (m, 1))
    ci_shift = np.clip((ts - ci_t) / LAPSE_K_PER_KM, 0, 18) * tan_vza[:, :, 0] / PIXEL_KM
    cfield = _advected(
        cspec, g, p, 1.3 * sdy + ci_shift * par_dir_y, 1.3 * sdx + ci_shift * par_dir_x
    )
    ci_tau = np.clip(cfield - 0.6, 0, None) * 2.2 * cirrus_on[:, None, None, None]
    high.add(ci_tau, ci_t[:, :, None, None])

    # --- radiative transfer, band by band ----------------------------------------------------
    # float32 from here: the radiative transfer is the costliest part and needs no more.
    f4 = np.float32
    ts4 = ts[:, :, None, None].astype(f4)
    trop4 = trop[:, :, None, None].astype(f4)
    layers = [
        (layer.temperature(ts4).astype(f4), layer.tau.astype(f4)) for layer in (low, mid, high)
    ]
    cal = dict(sen.calibration_k)
    sec = (1.0 / np.cos(np.deg2rad(vza)))[:, None, None, None].astype(f4)
    wv4 = wv_col[:, :, None, None].astype(f4)
    ir = np.empty((m, t_n, len(config.bands), p, p), f4)
    for b_i, band in enumerate(config.bands):
        lam = sensor_channel(sen.sensor, band).wavelength_um
        kind = CANONICAL_BANDS[band].kind
        if kind in ("window", "shortwave"):
            a = 0.6 + 0.25 * (lam - 10.4) ** 2 if kind == "window" else 0.5
            tb = ts4 - wv4 * a * sec
            k_ice = 0.45 + 0.06 * (lam - 10.8) if kind == "window" else 0.35
            for layer_t, tau in layers:
                k_abs = np.where(layer_t < ICE_BELOW_K, f4(k_ice), f4(K_WATER))
                eps = 1.0 - np.exp(-k_abs * tau)
                tb = tb + eps * (layer_t - tb)
            if kind == "shortwave":  # reflected sunlight by day, mostly off water clouds
                refl = 1.0 - np.exp(f4(-0.1) * (layers[0][1] + layers[1][1]))
                tb = tb + 22.0 * np.clip(cos_sza, 0, 1)[:, :, None, None] * refl
        else:
            if band == "WV6.2":
                clear = trop4 + 26.0 - 2.5 * (wv4 - 2.5) + 10.0 * (lam - 6.25)
                above, ot = 4.0, 0.6
            elif band == "WV7.3":
                clear = trop4 + 42.0 - 2.0 * (wv4 - 2.5) + 8.0 * (lam - 7.35)
                above, ot = 2.5, 0.3
            elif band == "IR13.4":
                clear = 0.55 * ts4 + 0.45 * (trop4 + 45.0) + 10.0 * (13.4 - lam)
                above, ot = 1.5, 0.0
            else:  # IR9.7, ozone
                clear = 0.75 * ts4 + 0.25 * (trop4 + 35.0) - 0.6 * wv4
                above, ot = 1.0, 0.3
            clear = clear - 2.0 * (sec - 1.0)
            level = clear + 8.0
            tb = clear
            for layer_t, tau in layers:
                seen = 1.0 / (1.0 + np.exp(-(level - layer_t) / f4(3.0)))
                eps = 1.0 - np.exp(f4(-0.5) * tau)
                # Water vapour above the top cools it; above an overshooting top the
                # stratosphere is warmer, so WV − IR ≥ 0 there.
                t_eff = (
                    layer_t
                    - above * np.clip((layer_t - trop4) / 25.0, 0, 1)
                    + ot * np.clip(trop4 - layer_t, 0, 15)
                )
                tb = tb + seen * eps * (t_eff - tb)
        ir[:, :, b_i] = tb + cal.get(band, 0.0)

    # sensor: point-spread function, noise
    sigma_px = sen.blur_km / PIXEL_KM
    ir = gaussian_filter(ir, sigma=(0, 0, 0, sigma_px, sigma_px), mode="nearest")
    ir += rng.normal(0.0, sen.noise_k, ir.shape).astype(f4)
    # The oracle fields as sharp as the imager sees: blurred by the same point-spread function.
    psf = {"sigma": (0, sigma_px, sigma_px), "mode": "nearest"}
    weight = gaussian_filter(seen_w[:, 0], **psf)
    stage_sum = gaussian_filter(seen_ws[:, 0], **psf)
    shield_seen = np.where(excess_p[:, -1] > 0, trend[:, None, None], 0.0)
    oracle = {
        "cell_cover": np.clip(weight, 0, 1),
        "cell_stage": np.where(weight > 0.05, stage_sum / np.maximum(weight, 1e-6), 0.0),
        "shield_trend": gaussian_filter(shield_seen, **psf),
    }

    # --- radar -------------------------------------------------------------------------------
    site_d = rng.uniform(*rad.site_distance_km, m) / PIXEL_KM
    site_az = rng.uniform(0, 2 * np.pi, m)
    sy = p / 2 - site_d * np.cos(site_az)
    sx = p / 2 + site_d * np.sin(site_az)
    r_km = (
        np.hypot(yy[None, :, None] - sy[:, None, None], xx[None, None, :] - sx[:, None, None])
        * PIXEL_KM
    )  # (m,P,P)
    true_rain = conv_rain + strat_rain + warm_rain
    seen_rain = (conv_rain + strat_rain) + warm_rain * np.exp(-r_km / 120.0)
    obs = seen_rain * rad.bias * np.exp(-r_km / rad.range_efold_km)
    obs = obs * np.exp(rad.noise * rng.standard_normal(obs.shape) - 0.5 * rad.noise**2)
    obs = np.where(obs >= rad.min_detectable_mm_h, obs, 0.0)
    valid = (r_km <= rad.max_range_km) & (rng.random(obs.shape) >= rad.clutter_fraction)
    rain = np.where(valid, obs, np.nan).astype(np.float32)

    # --- metadata ------------------------------------------------------------------------------
    grid = region_grid(preset)
    to_xy = Transformer.from_crs(CRS.from_epsg(4326), CRS.from_proj4(grid["crs"]), always_xy=True)
    x_c, y_c = to_xy.transform(lon, lat)
    cell = grid["cell_size_m"]
    rows = np.clip(
        np.floor((grid["y_max"] - y_c) / cell).astype(int) - p // 2, 0, grid["shape"][0] - p
    )
    cols = np.clip(
        np.floor((x_c - grid["x_min"]) / cell).astype(int) - p // 2, 0, grid["shape"][1] - p
    )
    n_valid = valid.sum(axis=(1, 2))
    wet = (np.nan_to_num(rain) >= 0.1).sum(axis=(1, 2))
    total = true_rain.sum(axis=(1, 2))
    metadata = pd.DataFrame(
        {
            "region": preset.name,
            "satellite": sen.satellite,
            "sensor": sen.sensor,
            "radar_network": rad.network,
            "grid": preset.name,
            "time": pd.to_datetime(times, unit="s", utc=True).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "year": year,
            "month": month,
            "season": [season(int(m)) for m in month],
            "local_hour": np.round(local_hour[:, -1], 3),
            "day": cos_sza[:, -1] > 0,
            "lat": np.round(lat, 4),
            "lon": np.round(lon, 4),
            "vza": np.round(vza, 3),
            "patch_row": rows,
            "patch_col": cols,
            "frame_step_s": step,
            "accumulation_s": 0,
            "valid_fraction": np.round(n_valid / (p * p), 5),
            "rain_fraction": np.round(wet / np.maximum(n_valid, 1), 5),
            "convective_fraction": np.round(
                conv_rain.sum(axis=(1, 2)) / np.maximum(total, 1e-9), 5
            ),
        }
    )
    aux = {"true_rain": true_rain, **oracle}
    return SampleBatch(
        ir=ir,
        rain=rain,
        valid=valid,
        time=frame_times.astype(np.int64),
        metadata=metadata,
        aux={k: v.astype(np.float32) for k, v in aux.items()},
    )


@dataclass(frozen=True)
class RegionRequest:
    """How many samples of one region to generate, over which years."""

    region: str
    n_samples: int
    years: tuple[int, int]


def parse_regions(regions: dict[str, Any]) -> list[RegionRequest]:
    """Turn the ``regions`` mapping of a data config into requests, checking every value.

    Args:
        regions: ``{name: {"n_samples": int, "years": [first, last]}}``.

    Raises:
        ConfigError: A missing or invalid value, naming the region and key.
        UnknownNameError: An unknown region preset.
    """
    if not regions:
        raise ConfigError("data.regions: no region requested")
    out = []
    for name, spec in regions.items():
        get_region(name)
        try:
            n = int(spec["n_samples"])
            years = tuple(int(y) for y in spec["years"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(
                f"data.regions.{name}: needs n_samples (int) and years ([first, last]): {exc}"
            ) from None
        if n < 1:
            raise ConfigError(f"data.regions.{name}.n_samples must be positive, got {n}")
        if len(years) != 2 or years[0] > years[1]:
            raise ConfigError(f"data.regions.{name}.years must be [first, last], got {years}")
        out.append(RegionRequest(name, n, (years[0], years[1])))
    return out


@DATASETS.register("synthetic")
def build_synthetic_store(
    root: str | Path,
    *,
    regions: dict[str, Any],
    patch_size: int = 64,
    frames: int = 4,
    bands: Sequence[str] = DEFAULT_BANDS,
    seed: int = 0,
    shard_size: int = 128,
    progress: bool = True,
    workers: int | None = None,
) -> SampleStore:
    """Generate the synthetic multi-region store at ``root`` (or resume an interrupted build).

    Args:
        root: Store directory.
        regions: Requested regions (see :func:`parse_regions`).
        patch_size: Patch height and width in cells.
        frames: Frames per sample.
        bands: Canonical bands.
        seed: Seed; the same seed and configuration give the same dataset version.
        shard_size: Samples per shard (one generator chunk each).
        progress: Show a progress bar.
        workers: Processes rendering shards (default: one per CPU core); the content does not
            depend on it.

    Returns:
        The finished store.
    """
    config = SyntheticConfig(patch_size=patch_size, frames=frames, bands=tuple(bands))
    requests = parse_regions(regions)
    if shard_size < 1:
        raise ConfigError(f"data.shard_size must be positive, got {shard_size}")
    adapter_config = {
        "generator_version": GENERATOR_VERSION,
        "regions": {r.region: {"n_samples": r.n_samples, "years": list(r.years)} for r in requests},
        "patch_size": patch_size,
        "frames": frames,
        "bands": list(config.bands),
        "seed": seed,
        "shard_size": shard_size,
    }
    spec = StoreSpec(
        bands=config.bands,
        frames=frames,
        patch_shape=(patch_size, patch_size),
        adapter="synthetic",
        adapter_config=adapter_config,
        grids={r.region: region_grid(get_region(r.region)) for r in requests},
        aux=AUX,
    )
    writer = SampleStoreWriter(root, spec)
    jobs: list[tuple[int, _Job]] = []
    index = 0
    for req in requests:
        preset = get_region(req.region)
        times = target_times(preset, req.n_samples, req.years, seed)
        for c, start in enumerate(range(0, req.n_samples, shard_size)):
            if not writer.has_shard(index):
                job = (
                    preset,
                    config,
                    times[start : start + shard_size],
                    region_seed(seed, preset.name, c),
                )
                jobs.append((index, job))
            index += 1
    n_workers = min(workers or os.cpu_count() or 1, len(jobs))
    bar = tqdm(
        total=index,
        initial=index - len(jobs),
        desc="synthetic shards",
        unit="shard",
        disable=not progress,
    )
    with bar:
        if n_workers <= 1:
            for i, job in jobs:
                writer.write_shard(i, _render_job(job))
                bar.update()
        else:
            # Render in worker processes, write in order here. Fork where there is fork (the
            # renderer uses numpy/scipy only, no OpenMP), so scripts and notebooks work too.
            methods = multiprocessing.get_all_start_methods()
            ctx = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
            with ProcessPoolExecutor(
                max_workers=n_workers,
                mp_context=ctx,
                initializer=die_with_parent,
                initargs=(os.getpid(),),
            ) as pool:
                for (i, _), batch in zip(
                    jobs, pool.map(_render_job, [j for _, j in jobs]), strict=True
                ):
                    writer.write_shard(i, batch)
                    bar.update()
    return writer.finalize()


_Job = tuple[RegionPreset, SyntheticConfig, npt.NDArray[np.int64], list[int]]


def _render_job(job: _Job) -> SampleBatch:
    preset, config, times, seed = job
    return render_chunk(preset, config, times, seed)
