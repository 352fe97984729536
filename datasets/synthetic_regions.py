"""Region presets of the synthetic generator: sensor, radar network and weather regime.

The presets differ the way real regions do (see ``docs/synthetic.md``): ``europe`` is
SEVIRI-like with 15-min frames, high viewing angles and mostly stratiform rain; ``conus`` is
ABI-like with 10-min frames and strong convection; ``tropics`` (AHI-like) and ``india``
(SEVIRI over the Indian Ocean) have deep convection with large anvils and much warm rain.

Those four differ in some twenty parameters at once, so a drop from ``europe`` to another region
cannot be attributed. :func:`factor_preset` builds presets that take ONE factor (``climate``,
``sensor``, ``radar`` or ``step``, see :data:`~qpebench.splits.SHIFT_FACTORS`) from a donor
region and keep the rest of the base; :data:`REGIONS` holds them for ``europe`` and each donor
(``europe_conus_radar``…), listed per donor in :data:`FACTOR_PRESETS`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from qpebench.errors import ConfigError, UnknownNameError, unknown_name_message
from qpebench.splits import SHIFT_FACTORS


@dataclass(frozen=True)
class SensorModel:
    """The imager: which sensor, how often, how sharp, how noisy, how well calibrated.

    Attributes:
        sensor: Key into :data:`qpebench.bands.SENSOR_CHANNELS` (which gives the wavelengths).
        satellite: Platform name recorded in the metadata.
        frame_step_s: Time between successive images.
        blur_km: Standard deviation of the Gaussian point-spread function at the patch.
        noise_k: Radiometric noise (NEdT) in K.
        calibration_k: Per-band calibration offset in K, ``(band, offset)`` pairs.
        vza_deg: Range of viewing zenith angles over the region.
        parallax_azimuth_deg: Direction (clockwise from north) in which high clouds appear
            displaced, i.e. away from the sub-satellite point.
    """

    sensor: str
    satellite: str
    frame_step_s: int
    blur_km: float
    noise_k: float
    calibration_k: tuple[tuple[str, float], ...]
    vza_deg: tuple[float, float]
    parallax_azimuth_deg: float


@dataclass(frozen=True)
class RadarModel:
    """The radar truth: network, bias, sensitivity, range degradation and coverage.

    Attributes:
        network: Radar network name recorded in the metadata.
        bias: Multiplicative bias of the composite against the true rain rate.
        noise: Standard deviation of the log of the multiplicative random error.
        min_detectable_mm_h: Rates below this are reported as no echo (0 mm/h).
        max_range_km: Beyond this distance from the nearest radar there is no data.
        range_efold_km: E-folding distance of the range underestimation (beam overshooting).
        site_distance_km: Range of distances of the nearest radar from the patch centre.
        clutter_fraction: Fraction of pixels masked by quality control.
    """

    network: str
    bias: float
    noise: float
    min_detectable_mm_h: float
    max_range_km: float
    range_efold_km: float
    site_distance_km: tuple[float, float]
    clutter_fraction: float


@dataclass(frozen=True)
class Climate:
    """The weather regime and the background atmosphere of a region.

    Attributes:
        lat_deg: Latitude range of the region.
        lon_deg: Longitude range (sets the local solar hour).
        surface_k: Annual mean surface skin temperature.
        seasonal_k: Amplitude of the annual cycle of surface temperature (peak mid-July, or
            mid-May before the monsoon for India via ``season_peak_doy``).
        diurnal_k: Amplitude of the diurnal cycle of surface temperature (peak 13:30 local).
        tropopause_k: Tropopause temperature; deep convective tops reach it.
        water_vapour_cm: Range of total column water vapour.
        cells: Mean number of convective cells per patch at the seasonal and diurnal peak.
        cell_rain_mm_h: Median peak rain rate of a cell and the log-standard deviation.
        cell_radius_km: Range of rain-core radii.
        anvil_scale: Anvil radius at full extent, in core radii.
        stratiform_prob: Probability that a patch holds a stratiform rain shield.
        stratiform_mm_h: Typical stratiform rain rate.
        warm_prob: Probability that a patch holds shallow warm-rain clouds.
        warm_mm_h: Typical warm-rain rate.
        cirrus_prob: Probability that a patch holds thin cirrus.
        wind_ms: Mean steering wind speed (direction uniform).
        season_peak_doy: Day of the year of peak convective activity.
        convective_seasonality: Relative amplitude of the annual cycle of convection.
    """

    lat_deg: tuple[float, float]
    lon_deg: tuple[float, float]
    surface_k: float
    seasonal_k: float
    diurnal_k: float
    tropopause_k: float
    water_vapour_cm: tuple[float, float]
    cells: float
    cell_rain_mm_h: tuple[float, float]
    cell_radius_km: tuple[float, float]
    anvil_scale: float
    stratiform_prob: float
    stratiform_mm_h: float
    warm_prob: float
    warm_mm_h: float
    cirrus_prob: float
    wind_ms: float
    season_peak_doy: int
    convective_seasonality: float


@dataclass(frozen=True)
class RegionPreset:
    """A synthetic region: where it is, what sees it and what weather it has."""

    name: str
    description: str
    sensor: SensorModel
    radar: RadarModel
    climate: Climate


_SEVIRI_CAL = (("IR13.4", -0.8), ("IR9.7", 0.4), ("WV6.2", 0.3))
_ABI_CAL = (("IR13.4", 0.2), ("WV7.3", -0.3))
_AHI_CAL = (("IR13.4", -0.4), ("IR8.7", 0.3))

REGIONS: dict[str, RegionPreset] = {
    p.name: p
    for p in (
        RegionPreset(
            name="europe",
            description="MSG SEVIRI (0°) over Europe, OPERA-like composite; mostly stratiform",
            sensor=SensorModel("SEVIRI", "Meteosat-11", 900, 4.0, 0.15, _SEVIRI_CAL, (48, 66), 0),
            radar=RadarModel("OPERA", 0.85, 0.25, 0.1, 240, 500, (0, 150), 0.01),
            climate=Climate(
                lat_deg=(42, 60),
                lon_deg=(-8, 25),
                surface_k=283,
                seasonal_k=9,
                diurnal_k=6,
                tropopause_k=216,
                water_vapour_cm=(0.6, 3.0),
                cells=1.6,
                cell_rain_mm_h=(14, 0.5),
                cell_radius_km=(5, 10),
                anvil_scale=2.0,
                stratiform_prob=0.75,
                stratiform_mm_h=2.5,
                warm_prob=0.15,
                warm_mm_h=1.5,
                cirrus_prob=0.45,
                wind_ms=15,
                season_peak_doy=200,
                convective_seasonality=0.7,
            ),
        ),
        RegionPreset(
            name="conus",
            description="GOES-East ABI over the USA, MRMS-like composite; strong convection",
            sensor=SensorModel("ABI", "GOES-16", 600, 2.5, 0.1, _ABI_CAL, (30, 55), 0),
            radar=RadarModel("MRMS", 1.0, 0.2, 0.1, 300, 700, (0, 120), 0.005),
            climate=Climate(
                lat_deg=(28, 47),
                lon_deg=(-105, -75),
                surface_k=290,
                seasonal_k=10,
                diurnal_k=9,
                tropopause_k=209,
                water_vapour_cm=(1.0, 4.5),
                cells=4.5,
                cell_rain_mm_h=(35, 0.6),
                cell_radius_km=(6, 14),
                anvil_scale=2.5,
                stratiform_prob=0.4,
                stratiform_mm_h=3.0,
                warm_prob=0.2,
                warm_mm_h=2.5,
                cirrus_prob=0.4,
                wind_ms=12,
                season_peak_doy=180,
                convective_seasonality=0.8,
            ),
        ),
        RegionPreset(
            name="tropics",
            description="Himawari AHI over northern Australia, Rainfields-like; deep convection",
            sensor=SensorModel("AHI", "Himawari-9", 600, 2.5, 0.12, _AHI_CAL, (20, 45), 180),
            radar=RadarModel("BoM", 0.9, 0.3, 0.2, 200, 350, (30, 200), 0.01),
            climate=Climate(
                lat_deg=(-20, -10),
                lon_deg=(125, 145),
                surface_k=301,
                seasonal_k=3,
                diurnal_k=7,
                tropopause_k=195,
                water_vapour_cm=(3.0, 6.0),
                cells=5.0,
                cell_rain_mm_h=(30, 0.6),
                cell_radius_km=(6, 14),
                anvil_scale=3.5,
                stratiform_prob=0.45,
                stratiform_mm_h=3.5,
                warm_prob=0.6,
                warm_mm_h=4.0,
                cirrus_prob=0.6,
                wind_ms=8,
                season_peak_doy=30,
                convective_seasonality=0.6,
            ),
        ),
        RegionPreset(
            name="india",
            description="Meteosat IODC SEVIRI over India, sparse national radar; monsoon",
            sensor=SensorModel("SEVIRI", "Meteosat-9", 900, 3.5, 0.2, _SEVIRI_CAL, (25, 45), 60),
            radar=RadarModel("IMD", 0.7, 0.4, 0.3, 150, 250, (50, 200), 0.03),
            climate=Climate(
                lat_deg=(10, 28),
                lon_deg=(70, 88),
                surface_k=300,
                seasonal_k=5,
                diurnal_k=8,
                tropopause_k=193,
                water_vapour_cm=(2.5, 6.0),
                cells=4.5,
                cell_rain_mm_h=(28, 0.6),
                cell_radius_km=(6, 15),
                anvil_scale=4.0,
                stratiform_prob=0.55,
                stratiform_mm_h=4.0,
                warm_prob=0.7,
                warm_mm_h=5.0,
                cirrus_prob=0.55,
                wind_ms=10,
                season_peak_doy=200,
                convective_seasonality=0.9,
            ),
        ),
    )
}


def factor_preset(base: RegionPreset, donor: RegionPreset, factor: str) -> RegionPreset:
    """A preset equal to ``base`` but for one factor, taken from ``donor``.

    The factors (:data:`~qpebench.splits.SHIFT_FACTORS`):

    * ``climate``: the donor's whole :class:`Climate` (location, hence grid and local solar
      hour, temperatures, tropopause, water vapour, convection, rain regimes, wind, season);
    * ``sensor``: every :class:`SensorModel` field of the donor but ``frame_step_s`` (the
      sensor and so its band wavelengths, satellite, blur, noise, calibration, viewing angles,
      parallax direction), the frame step staying the base's;
    * ``radar``: the donor's whole :class:`RadarModel`;
    * ``step``: only the donor's ``frame_step_s``.

    Args:
        base: The region shifted (``europe``).
        donor: The region the factor comes from.
        factor: One of :data:`~qpebench.splits.SHIFT_FACTORS`.

    Returns:
        The preset ``f"{base.name}_{donor.name}_{factor}"``, described by what changed.

    Raises:
        ConfigError: ``factor`` is not one of :data:`~qpebench.splits.SHIFT_FACTORS`.
    """
    name = f"{base.name}_{donor.name}_{factor}"
    ds, bs = donor.sensor, base.sensor
    if factor == "climate":
        c = donor.climate
        what = (
            f"{donor.name}'s climate (lat {c.lat_deg[0]:g}..{c.lat_deg[1]:g}, lon "
            f"{c.lon_deg[0]:g}..{c.lon_deg[1]:g}, Ts {c.surface_k:g} K, tropopause "
            f"{c.tropopause_k:g} K, {c.cells:g} cells/patch)"
        )
        return replace(base, name=name, climate=c, description=f"{base.name} with {what}")
    if factor == "sensor":
        sensor = replace(ds, frame_step_s=bs.frame_step_s)
        what = (
            f"{donor.name}'s sensor ({ds.sensor} on {ds.satellite}: bands, blur, noise, "
            f"calibration, VZA {ds.vza_deg[0]:g}-{ds.vza_deg[1]:g}°, parallax), "
            f"{base.name}'s {bs.frame_step_s} s frame step"
        )
        return replace(base, name=name, sensor=sensor, description=f"{base.name} with {what}")
    if factor == "radar":
        what = f"{donor.name}'s radar network ({donor.radar.network})"
        return replace(base, name=name, radar=donor.radar, description=f"{base.name} with {what}")
    if factor == "step":
        sensor = replace(bs, frame_step_s=ds.frame_step_s)
        was = (
            f" instead of {bs.frame_step_s} s"
            if ds.frame_step_s != bs.frame_step_s
            else f", the same as {base.name}'s: no shift"
        )
        what = f"{donor.name}'s frame step ({ds.frame_step_s} s{was})"
        return replace(base, name=name, sensor=sensor, description=f"{base.name} with {what}")
    raise ConfigError(f"unknown shift factor {factor!r}: choose one of {', '.join(SHIFT_FACTORS)}")


#: The base region of the shipped factor-separated presets, and the regions it borrows from.
FACTOR_BASE = "europe"
FACTOR_DONORS: tuple[str, ...] = ("conus", "tropics", "india")

#: Per donor, its factor-separated presets: ``FACTOR_PRESETS["conus"]["radar"]`` is
#: ``"europe_conus_radar"`` (all in :data:`REGIONS`).
FACTOR_PRESETS: dict[str, dict[str, str]] = {}

for _donor in FACTOR_DONORS:
    FACTOR_PRESETS[_donor] = {}
    for _factor in SHIFT_FACTORS:
        _preset = factor_preset(REGIONS[FACTOR_BASE], REGIONS[_donor], _factor)
        REGIONS[_preset.name] = _preset
        FACTOR_PRESETS[_donor][_factor] = _preset.name
del _donor, _factor, _preset


def get_region(name: str) -> RegionPreset:
    """Return the preset called ``name``.

    Raises:
        UnknownNameError: No such preset; the message lists the presets.
    """
    if name not in REGIONS:
        raise UnknownNameError(unknown_name_message("synthetic region", name, REGIONS))
    return REGIONS[name]
