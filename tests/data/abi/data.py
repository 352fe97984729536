#!/usr/bin/env python3
"""Write tiny GOES-R ABI files in the real layout: L1b radiances (``Rad``) and L2 CMIP (``CMI``).

Run ``python tests/data/abi/data.py OUTDIR`` to write a default set and print the files' SHA-256
checksums; the tests import :func:`write_scan` and write what they need into ``tmp_path``. No
binary is committed.

Layout sources (cited per item below):

* [PUG3] GOES-R Series Product Definition and Users' Guide, Volume 3: Level 1b Products
  (416-R-PUG-L1B-0347, DCN 7035538). §5.0.2 "Unsigned integer processing" (``_Unsigned``);
  §4.2.8 navigation (fixed-grid projection, Table 4.2.8); §5.1 the ABI L1b Radiances product
  (``Rad``, ``DQF``, ``t``, ``time_bounds``, ``x``/``y``, ``goes_imager_projection``,
  ``band_id``/``band_wavelength``, ``planck_fk1``/``fk2``/``bc1``/``bc2``, ``kappa0``/``esun``,
  ``nominal_satellite_*``, global attributes).
* [PUG5] Volume 5: Level 2+ Products (416-R-PUG-L2+-0349, DCN 7035538 rev. G.2), §4.2.8
  (same navigation) and §5.1 Cloud and Moisture Imagery (``CMI`` in K, ``DQF``).
* [CDL-F] The ncdump of a real full-disk file kept as a netCDF-C test reference
  (Unidata/netcdf-c ``nc_test/ref_tst_http_nc4c.cdl``: ``OR_ABI-L1b-RadF-M6C01_G16_
  s20220011800205…``): every variable's attribute names, types and long names, the
  ``goes_imager_projection`` values, ``x``/``y`` packing (``scale_factor`` 2.8e-05 f,
  ``add_offset`` ∓0.151858 f for 1 km; the 2-km grid has 5.6e-05 and ∓0.151844) and the
  global attributes (``timeline_id = "ABI Mode 6"``, ``scene_id = "Full Disk"`` …).
* [CDL-C] The same for a CONUS C13 file (``nc_test/ref_tst_http_nc4a.cdl``,
  ``OR_ABI-L1b-RadC-M3C13_G16_s20170590337505…``): ``Rad`` of an emissive band (int16,
  ``_Unsigned = "true"``, ``_FillValue = 4095``, ``sensor_band_bit_depth = 12``,
  ``valid_range = 0, 4094``, ``scale_factor = 0.04572892f``, ``add_offset = -1.6443f``,
  ``units = "mW m-2 sr-1 (cm-1)-1"``), ``y:add_offset = 0.126532f``.
* [ATBD] GOES-R ABI Cloud and Moisture Imagery ATBD (Schmit & Gunshor, enterprise v4, 2021):
  CMI of bands 7–16 = (fk2 / ln(fk1/L + 1) − bc1) / bc2 with the file's constants; GOES-16 band
  13 constants 10803.30, 1392.74 K, 0.07550 K, 0.99975; the CMIP C13 packing
  (``scale_factor`` 0.06145332 K, ``add_offset`` 89.62 K, ``_FillValue`` −1, 12-bit counts).

Planck constants (:data:`PLANCK`): the GOES-16 values the L1b files carry in
``planck_fk1``/``fk2``/``bc1``/``bc2``. Band 13 is from [ATBD]; band 12's set is also the one in
satpy's ``test_abi_l1b.py`` fixture (13432.1, 1497.61, 0.09102, 0.99971). They obey
fk1 = c1·ν³ and fk2 = c2·ν ([PUG3] long names of ``planck_fk1``/``planck_fk2``) with the band's
central wavenumber ν, which :func:`check_planck` verifies; ``band_wavelength`` is 10⁴/ν µm.
Packing bit depths (:data:`BIT_DEPTH`) follow the ABI band quantisation (10–14 bits); the
radiance range of every band other than 13 is scaled like [CDL-C] (offset −0.886 % of the
maximum, maximum near 341 K, 400 K for band 7).

The scene: a brightness-temperature field of ``background`` K (per band) with a Gaussian cold
cloud top (``cloud_tb`` ≈ 210 K at its centre) at a known latitude/longitude; it is encoded
through the inverse Planck function and packed to integers exactly as the real product is, so a
reader must recover the truth within one packing step.
"""

from __future__ import annotations

import hashlib
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
from pyproj import CRS, Transformer

#: J2000 epoch of ``t`` and ``time_bounds`` ([PUG3] §5.1: "seconds since 2000-01-01 12:00:00").
J2000 = datetime(2000, 1, 1, 12, tzinfo=UTC)

#: [PUG3]/[PUG5] Table 4.2.8 and [CDL-F]: GRS80 and the nominal geostationary height.
PROJECTION = {
    "perspective_point_height": 35786023.0,
    "semi_major_axis": 6378137.0,
    "semi_minor_axis": 6356752.31414,
    "inverse_flattening": 298.2572221,
    "latitude_of_projection_origin": 0.0,
}

#: Per platform: projection origin (−75 East, −137 West, [PUG] Table 4.2.8), the nominal
#: sub-satellite longitude written in ``nominal_satellite_subpoint_lon`` (GOES-16 sits at
#: −75.2°, GOES-17 at −137.2°), orbital slot and instrument flight model.
PLATFORMS = {
    "G16": (-75.0, -75.2, "GOES-East", "FM1"),
    "G17": (-137.0, -137.2, "GOES-West", "FM2"),
    "G18": (-137.0, -137.0, "GOES-West", "FM3"),
    "G19": (-75.0, -75.2, "GOES-East", "FM4"),
}

#: GOES-16 Planck constants per emissive band: (fk1, fk2 [K], bc1 [K], bc2 [1]); fk1 is in
#: mW m-2 sr-1 (cm-1)-4 · (cm-1)³, i.e. the radiance unit (the files label it "W m-1").
PLANCK: dict[int, tuple[float, float, float, float]] = {
    7: (202263.0, 3698.19, 0.43361, 0.99939),
    8: (50687.1, 2331.58, 1.55228, 0.99667),
    9: (35828.3, 2076.95, 0.34427, 0.99918),
    10: (30174.0, 1961.38, 0.05651, 0.99986),
    11: (19779.9, 1703.83, 0.18733, 0.99948),
    12: (13432.1, 1497.61, 0.09102, 0.99971),
    13: (10803.3, 1392.74, 0.07550, 0.99975),
    14: (8510.22, 1286.27, 0.22516, 0.99920),
    15: (6454.62, 1173.03, 0.21702, 0.99916),
    16: (5101.27, 1084.53, 0.06266, 0.99974),
}

#: ABI quantisation per band (``sensor_band_bit_depth``); band 13: 12 bits [CDL-C].
BIT_DEPTH = {7: 14, 8: 12, 9: 11, 10: 12, 11: 12, 12: 11, 13: 12, 14: 12, 15: 12, 16: 10}

#: Clear-sky background brightness temperature per band (K): warm window channels, colder
#: water-vapour (8–10), ozone (12) and CO2 (16) channels.
BACKGROUND = {
    7: 288.0,
    8: 236.0,
    9: 246.0,
    10: 256.0,
    11: 283.0,
    12: 262.0,
    13: 286.0,
    14: 285.0,
    15: 283.0,
    16: 266.0,
}

#: [CDL-C]: the real packing of band 13 radiance.
RAD_PACKING_C13 = (0.04572892, -1.6443)
#: [ATBD]: CMIP C13 packing (K); 4095 counts span 89.62–341.27 K. Band 7 (hot fires) starts
#: higher.
CMI_PACKING = (0.06145332, 89.62)
CMI_PACKING_C07 = (0.05240000, 197.31)

C1 = 1.191042e-5  # 2hc² in mW m-2 sr-1 (cm-1)-4
C2 = 1.4387769  # hc/k in K cm

#: Scenes: (``scene_id``, letter(s) in the product name).
SCENES = {"F": "Full Disk", "C": "CONUS", "M1": "Mesoscale", "M2": "Mesoscale"}

#: Scan duration per scene for mode 3/4/6 timelines (approximate, for ``time_coverage_end``).
DURATION = {
    "F": timedelta(seconds=570.8),
    "C": timedelta(seconds=162.3),
    "M1": timedelta(seconds=27.0),
}


@dataclass
class ScanTruth:
    """What :func:`write_scan` wrote: paths and the truth a reader must recover."""

    files: dict[str, Path]
    tb: dict[str, np.ndarray]
    x_rad: np.ndarray
    y_rad: np.ndarray
    lat: np.ndarray
    lon: np.ndarray
    cloud_lat: float
    cloud_lon: float
    start: datetime
    end: datetime
    platform: str
    projection_longitude: float
    satellite_longitude: float
    satellite_height_km: float
    planck: dict[str, tuple[float, float, float, float]] = field(default_factory=dict)


def check_planck(band: int, constants: tuple[float, float, float, float]) -> float:
    """Check fk1 = c1·ν³ and fk2 = c2·ν for one band; return ν (cm⁻¹)."""
    fk1, fk2, _, _ = constants
    nu = fk2 / C2
    if not np.isclose(fk1, C1 * nu**3, rtol=2e-3):
        raise ValueError(f"band {band}: fk1 {fk1} != c1 nu^3 {C1 * nu**3}")
    return nu


def planck_radiance(tb: np.ndarray, constants: tuple[float, float, float, float]) -> np.ndarray:
    """Inverse of the PUG brightness temperature: the radiance that gives ``tb``."""
    fk1, fk2, bc1, bc2 = constants
    t_eff = bc1 + bc2 * np.asarray(tb, np.float64)
    return fk1 / np.expm1(fk2 / t_eff)


def rad_packing(band: int) -> tuple[float, float]:
    """(scale_factor, add_offset) of ``Rad`` for a band (band 13 as in [CDL-C])."""
    if band == 13:
        return RAD_PACKING_C13
    t_max = 400.0 if band == 7 else 341.3
    l_max = float(planck_radiance(np.array(t_max), PLANCK[band]))
    offset = -0.00886 * l_max
    scale = (l_max - offset) / (2 ** BIT_DEPTH[band] - 2)
    return float(np.float32(scale)), float(np.float32(round(offset, 4)))


def fixed_grid_crs(lon_0: float) -> CRS:
    """The ABI fixed-grid projection in metres ([PUG3] §4.2.8, sweep x)."""
    p = PROJECTION
    return CRS.from_proj4(
        f"+proj=geos +sweep=x +h={p['perspective_point_height']} +lon_0={lon_0} "
        f"+a={p['semi_major_axis']} +b={p['semi_minor_axis']} +units=m +no_defs"
    )


def _snap(angle: float, step: float) -> float:
    """The fixed-grid pixel centre nearest ``angle``: odd multiples of half a step ([CDL-F])."""
    return (np.floor(angle / step) + 0.5) * step


def grid_angles(
    kind: str, lon_0: float, centre: tuple[float, float], shape: tuple[int, int], step: float
) -> tuple[np.ndarray, np.ndarray, float, float]:
    """Scan-angle centres (x west → east, y north → south) and their first values.

    ``kind`` ``"window"``: ``shape`` pixels of ``step`` rad around ``centre`` (lat, lon), on the
    real fixed grid. ``"disk"``: a coarse grid covering the whole disk, centred on the
    sub-satellite point.
    """
    ny, nx = shape
    if kind == "disk":
        x0 = round(-(nx - 1) / 2 * step, 6)
        y0 = round((ny - 1) / 2 * step, 6)
    else:
        to_geos = Transformer.from_crs("EPSG:4326", fixed_grid_crs(lon_0), always_xy=True)
        xc, yc = to_geos.transform(centre[1], centre[0])
        h = PROJECTION["perspective_point_height"]
        x0 = round(_snap(xc / h, step) - (nx // 2) * step, 6)
        y0 = round(_snap(yc / h, step) + (ny // 2) * step, 6)
    x = x0 + np.arange(nx) * step
    y = y0 - np.arange(ny) * step
    return x, y, x0, y0


def lonlat(x: np.ndarray, y: np.ndarray, lon_0: float) -> tuple[np.ndarray, np.ndarray]:
    """Longitude/latitude of scan-angle centres (NaN off the disk)."""
    h = PROJECTION["perspective_point_height"]
    xx, yy = np.meshgrid(x * h, y * h)
    to_ll = Transformer.from_crs(fixed_grid_crs(lon_0), "EPSG:4326", always_xy=True)
    lon, lat = to_ll.transform(xx, yy)
    bad = ~(np.isfinite(lon) & np.isfinite(lat)) | (np.abs(lon) > 1e3) | (np.abs(lat) > 1e3)
    return np.where(bad, np.nan, lon), np.where(bad, np.nan, lat)


def cloud_field(
    lat: np.ndarray,
    lon: np.ndarray,
    cloud: tuple[float, float],
    sigma_km: float,
    background: float,
    cloud_tb: float,
) -> np.ndarray:
    """Background K with a Gaussian cold cloud (great-circle distance), NaN off the disk."""
    phi1, phi2 = np.radians(cloud[0]), np.radians(lat)
    dphi = phi2 - phi1
    dlam = np.radians(lon - cloud[1])
    a = np.sin(dphi / 2) ** 2 + np.cos(phi1) * np.cos(phi2) * np.sin(dlam / 2) ** 2
    d = 2 * 6371.0 * np.arcsin(np.sqrt(np.clip(a, 0, 1)))
    return background - (background - cloud_tb) * np.exp(-0.5 * (d / sigma_km) ** 2)


def _stamp(t: datetime) -> str:
    """``YYYYJJJHHMMSSt`` of the product name (tenths of a second)."""
    return f"{t:%Y%j%H%M%S}{t.microsecond // 100000}"


def _iso(t: datetime) -> str:
    """``time_coverage_*`` format ([CDL-F]: ``2022-01-01T18:00:20.5Z``)."""
    return f"{t:%Y-%m-%dT%H:%M:%S}.{t.microsecond // 100000}Z"


def product_name(
    level: str,
    scene: str,
    mode: int,
    band: int,
    platform: str,
    start: datetime,
    end: datetime,
    created: datetime,
) -> str:
    """The GOES-R file name ([PUG3] §3.3 / [CDL-F] ``dataset_name``)."""
    product = "L1b-Rad" if level == "L1b" else "L2-CMIP"
    return (
        f"OR_ABI-{product}{scene}-M{mode}C{band:02d}_{platform}_s{_stamp(start)}"
        f"_e{_stamp(end)}_c{_stamp(created)}.nc"
    )


def _put(var, attrs: Mapping[str, object]) -> None:  # type: ignore[no-untyped-def]
    var.set_auto_maskandscale(False)  # raw integers are written, as the product stores them
    for key, value in attrs.items():
        var.setncattr(key, value)


def _write_file(
    path: Path,
    *,
    level: str,
    band: int,
    tb: np.ndarray,
    x0: float,
    y0: float,
    step: float,
    nx: int,
    ny: int,
    platform: str,
    scene: str,
    mode: int,
    start: datetime,
    end: datetime,
    created: datetime,
    planck: tuple[float, float, float, float],
    attrs_override: Mapping[str, object],
    drop: Sequence[str],
) -> None:
    import netCDF4

    lon_0, sat_lon, slot, fm = PLATFORMS[platform]
    ds = netCDF4.Dataset(path, "w", format="NETCDF4")
    ds.set_auto_maskandscale(False)
    ds.createDimension("y", ny)
    ds.createDimension("x", nx)
    ds.createDimension("number_of_time_bounds", 2)
    ds.createDimension("band", 1)
    ds.createDimension("number_of_image_bounds", 2)
    res = f"y: {step:.6f} rad x: {step:.6f} rad"
    common = {
        "coordinates": "band_id band_wavelength t y x",
        "grid_mapping": "goes_imager_projection",
        "cell_methods": "t: point area: point",
    }
    chunks = (min(ny, 226), min(nx, 226))
    off_disk = ~np.isfinite(tb)
    # [PUG3] §5.1 / [CDL-C]: Rad int16 with _Unsigned, fill = 2^bits − 1, valid 0 … 2^bits − 2.
    if level == "L1b":
        bits = BIT_DEPTH[band]
        scale, offset = rad_packing(band)
        fill = 2**bits - 1
        rad = planck_radiance(np.where(off_disk, 250.0, tb), planck)
        counts = np.clip(np.rint((rad - offset) / scale), 0, fill - 1)
        counts = np.where(off_disk, fill, counts).astype(np.uint16).view(np.int16)
        if "Rad" not in drop:
            var = ds.createVariable(
                "Rad",
                "i2",
                ("y", "x"),
                zlib=True,
                complevel=1,
                chunksizes=chunks,
                fill_value=np.int16(fill),
            )
            _put(
                var,
                {
                    "long_name": "ABI L1b Radiances",
                    "standard_name": "toa_outgoing_radiance_per_unit_wavenumber",
                    "_Unsigned": "true",
                    "sensor_band_bit_depth": np.int8(bits),
                    "valid_range": np.array([0, fill - 1], np.int16),
                    "scale_factor": np.float32(scale),
                    "add_offset": np.float32(offset),
                    "units": "mW m-2 sr-1 (cm-1)-1",
                    "resolution": res,
                    **common,
                    "ancillary_variables": "DQF",
                },
            )
            var[:] = counts
        dqf_long = "ABI L1b Radiances data quality flags"
    else:
        scale, offset = CMI_PACKING_C07 if band == 7 else CMI_PACKING
        counts = np.clip(np.rint((np.where(off_disk, 250.0, tb) - offset) / scale), 0, 4095)
        counts = np.where(off_disk, 65535, counts).astype(np.uint16).view(np.int16)
        if "CMI" not in drop:
            # [PUG5] §5.1 / [ATBD]: CMI int16 with _Unsigned, _FillValue −1, counts 0 … 4095, K.
            var = ds.createVariable(
                "CMI",
                "i2",
                ("y", "x"),
                zlib=True,
                complevel=1,
                chunksizes=chunks,
                fill_value=np.int16(-1),
            )
            _put(
                var,
                {
                    "long_name": "ABI L2+ Cloud and Moisture Imagery brightness temperature at top "
                    "of atmosphere",
                    "standard_name": "toa_brightness_temperature",
                    "_Unsigned": "true",
                    "sensor_band_bit_depth": np.int8(12),
                    "valid_range": np.array([0, 4095], np.int16),
                    "scale_factor": np.float32(scale),
                    "add_offset": np.float32(offset),
                    "units": "K",
                    "resolution": res,
                    **common,
                    "ancillary_variables": "DQF",
                },
            )
            var[:] = counts
        dqf_long = "ABI L2+ Cloud and Moisture Imagery data quality flags"
    # [CDL-F]: DQF byte, _Unsigned, fill −1 (off the disk), flags 0–4.
    dqf = ds.createVariable(
        "DQF", "i1", ("y", "x"), zlib=True, complevel=1, chunksizes=chunks, fill_value=np.int8(-1)
    )
    _put(
        dqf,
        {
            "long_name": dqf_long,
            "standard_name": "status_flag",
            "_Unsigned": "true",
            "valid_range": np.array([0, 4], np.int8),
            "units": "1",
            **common,
            "flag_values": np.array([0, 1, 2, 3, 4], np.int8),
            "flag_meanings": "good_pixel_qf conditionally_usable_pixel_qf out_of_range_pixel_qf "
            "no_value_pixel_qf focal_plane_temperature_threshold_exceeded_qf",
            "number_of_qf_values": np.int8(5),
        },
    )
    dqf[:] = np.where(off_disk, -1, 0).astype(np.int8)
    # [CDL-F]: t (mid-point), time_bounds, J2000 seconds.
    t0 = (start - J2000).total_seconds()
    t1 = (end - J2000).total_seconds()
    t = ds.createVariable("t", "f8", ())
    _put(
        t,
        {
            "long_name": "J2000 epoch mid-point between the start and end image scan in seconds",
            "standard_name": "time",
            "units": "seconds since 2000-01-01 12:00:00",
            "axis": "T",
            "bounds": "time_bounds",
        },
    )
    t.assignValue((t0 + t1) / 2)
    # [CDL-F]: x/y int16 scan angles (rad), scale_factor ±step, add_offset = first centre.
    for name, first, sign, n, long in (
        ("y", y0, -1.0, ny, "GOES fixed grid projection y-coordinate"),
        ("x", x0, 1.0, nx, "GOES fixed grid projection x-coordinate"),
    ):
        if name in drop:
            continue
        var = ds.createVariable(name, "i2", (name,))
        _put(
            var,
            {
                "scale_factor": np.float32(sign * step),
                "add_offset": np.float32(first),
                "units": "rad",
                "axis": name.upper(),
                "long_name": long,
                "standard_name": f"projection_{name}_coordinate",
            },
        )
        var[:] = np.arange(n, dtype=np.int16)
    tb_var = ds.createVariable("time_bounds", "f8", ("number_of_time_bounds",))
    tb_var.setncattr(
        "long_name", "Scan start and end times in seconds since epoch (2000-01-01 12:00:00)"
    )
    tb_var[:] = [t0, t1]
    if "goes_imager_projection" not in drop:
        proj = ds.createVariable("goes_imager_projection", "i4", ())
        _put(
            proj,
            {
                "long_name": "GOES-R ABI fixed grid projection",
                "grid_mapping_name": "geostationary",
                **PROJECTION,
                "longitude_of_projection_origin": lon_0,
                "sweep_angle_axis": "x",
                **{k[5:]: v for k, v in attrs_override.items() if k.startswith("proj:")},
            },
        )
    xs = x0 + np.arange(nx) * step
    ys = y0 - np.arange(ny) * step
    for name, value, long in (
        (
            "y_image",
            (ys[0] + ys[-1]) / 2,
            "GOES-R fixed grid projection y-coordinate center of image",
        ),
        (
            "x_image",
            (xs[0] + xs[-1]) / 2,
            "GOES-R fixed grid projection x-coordinate center of image",
        ),
    ):
        var = ds.createVariable(name, "f4", ())
        _put(
            var,
            {
                "long_name": long,
                "standard_name": f"projection_{name[0]}_coordinate",
                "units": "rad",
                "axis": name[0].upper(),
            },
        )
        var.assignValue(value)
    for name, value in (
        ("y_image_bounds", [ys[0] + step / 2, ys[-1] - step / 2]),
        ("x_image_bounds", [xs[0] - step / 2, xs[-1] + step / 2]),
    ):
        var = ds.createVariable(name, "f4", ("number_of_image_bounds",))
        var.setncattr("units", "rad")
        var[:] = value
    # [CDL-F]: nominal platform position; the height is in km.
    height = float(attrs_override.get("var:nominal_satellite_height", 35786.023))
    for name, value, attrs in (
        (
            "nominal_satellite_subpoint_lat",
            0.0,
            {
                "long_name": "nominal satellite subpoint latitude (platform latitude)",
                "standard_name": "latitude",
                "units": "degrees_north",
            },
        ),
        (
            "nominal_satellite_subpoint_lon",
            sat_lon,
            {
                "long_name": "nominal satellite subpoint longitude (platform longitude)",
                "standard_name": "longitude",
                "units": "degrees_east",
            },
        ),
        (
            "nominal_satellite_height",
            height,
            {
                "long_name": "nominal satellite height above GRS 80 ellipsoid (platform altitude)",
                "standard_name": "height_above_reference_ellipsoid",
                "units": "km",
            },
        ),
    ):
        if name in drop:
            continue
        var = ds.createVariable(name, "f4", (), fill_value=np.float32(-999.0))
        _put(var, attrs)
        var.assignValue(value)
    yaw = ds.createVariable("yaw_flip_flag", "i1", (), fill_value=np.int8(-1))
    _put(
        yaw,
        {
            "long_name": "Flag indicating the spacecraft is operating in yaw flip configuration",
            "_Unsigned": "true",
            "valid_range": np.array([0, 1], np.int8),
            "units": "1",
            "coordinates": "t",
            "flag_values": np.array([0, 1], np.int8),
            "flag_meanings": "false true",
        },
    )
    yaw.assignValue(0)
    nu = check_planck(band, planck)
    band_id = ds.createVariable("band_id", "i1", ("band",))
    _put(
        band_id,
        {"long_name": "ABI band number", "standard_name": "sensor_band_identifier", "units": "1"},
    )
    band_id[:] = [int(attrs_override.get("var:band_id", band))]
    wl = ds.createVariable("band_wavelength", "f4", ("band",))
    _put(
        wl,
        {
            "long_name": "ABI band central wavelength",
            "standard_name": "sensor_band_central_radiation_wavelength",
            "units": "um",
        },
    )
    wl[:] = [round(1e4 / nu, 2)]
    if level == "L1b":
        # [CDL-F]: esun/kappa0 are −999 (fill) for emissive bands; planck_* for them.
        for name, value, units in (
            ("esun", -999.0, "W m-2 um-1"),
            ("kappa0", -999.0, "(W m-2 um-1)-1"),
            ("planck_fk1", planck[0], "W m-1"),
            ("planck_fk2", planck[1], "K"),
            ("planck_bc1", planck[2], "K"),
            ("planck_bc2", planck[3], "1"),
        ):
            if name in drop:
                continue
            var = ds.createVariable(name, "f4", (), fill_value=np.float32(-999.0))
            _put(var, {"units": units, "coordinates": "band_id band_wavelength"})
            var.assignValue(value)
        var = ds.createVariable(
            "earth_sun_distance_anomaly_in_AU", "f4", (), fill_value=np.float32(-999.0)
        )
        var.setncattr("units", "ua")
        var.assignValue(1.0152)
    name = product_name(level, scene, mode, band, platform, start, end, created)
    title = "ABI L1b Radiances" if level == "L1b" else "ABI L2 Cloud and Moisture Imagery"
    glob: dict[str, object] = {
        "naming_authority": "gov.nesdis.noaa",
        "Conventions": "CF-1.7",
        "standard_name_vocabulary": "CF Standard Name Table (v35, 20 July 2016)",
        "institution": "DOC/NOAA/NESDIS > U.S. Department of Commerce, National Oceanic and "
        "Atmospheric Administration, National Environmental Satellite, Data, and Information "
        "Services",
        "project": "GOES",
        "production_site": "WCDAS",
        "production_environment": "OE",
        "spatial_resolution": "2km at nadir",
        "Metadata_Conventions": "Unidata Dataset Discovery v1.0",
        "orbital_slot": slot,
        "platform_ID": platform,
        "instrument_type": "GOES-R Series Advanced Baseline Imager (ABI)",
        "scene_id": SCENES[scene],
        "instrument_ID": fm,
        "title": title,
        "summary": "Single emissive band ABI L1b Radiance Products are digital maps of outgoing "
        "radiance values at the top of the atmosphere for IR bands."
        if level == "L1b"
        else "Single reflective band and single emissive band CMI Products are digital maps of "
        "clouds, moisture and atmospheric windows at visible, near-IR, and IR bands.",
        "keywords": "SPECTRAL/ENGINEERING > INFRARED WAVELENGTHS > INFRARED RADIANCE",
        "keywords_vocabulary": "NASA Global Change Master Directory (GCMD) Earth Science "
        "Keywords, Version 7.0.0.0.0",
        "license": "Unclassified data.  Access is restricted to approved users only.",
        "processing_level": f"National Aeronautics and Space Administration (NASA) {level}",
        "cdm_data_type": "Image",
        "dataset_name": name,
        "production_data_source": "Realtime",
        "timeline_id": f"ABI Mode {mode}",
        "date_created": _iso(created),
        "time_coverage_start": _iso(start),
        "time_coverage_end": _iso(end),
        "id": "00000000-0000-4000-8000-000000000000",
    }
    for key, value in attrs_override.items():
        if ":" not in key:
            glob[key] = value
    for key in drop:
        glob.pop(key, None)
    ds.setncatts(glob)
    ds.close()


def write_scan(
    outdir: Path | str,
    *,
    level: str = "L1b",
    bands: Iterable[int] = range(7, 17),
    kind: str = "window",
    scene: str = "C",
    mode: int = 6,
    platform: str = "G16",
    start: datetime = datetime(2019, 6, 10, 12, 1, 17, 100000, tzinfo=UTC),
    shape: tuple[int, int] = (60, 80),
    step: float = 56e-6,
    centre: tuple[float, float] = (35.5, -97.5),
    cloud: tuple[float, float] = (35.42, -97.31),
    sigma_km: float = 8.0,
    cloud_tb: float = 210.0,
    planck: Mapping[int, tuple[float, float, float, float]] | None = None,
    attrs: Mapping[int, Mapping[str, object]] | None = None,
    drop: Mapping[int, Sequence[str]] | None = None,
) -> ScanTruth:
    """Write one scan, one file per band, and return the truth.

    Args:
        outdir: Folder for the files.
        level: ``"L1b"`` (``Rad``) or ``"L2"`` (CMIP ``CMI``).
        bands: Emissive bands (7–16).
        kind: ``"window"`` (``shape`` pixels of ``step`` rad around ``centre``) or ``"disk"``
            (a coarse grid over the whole disk, off-disk pixels filled).
        scene: ``"F"``, ``"C"``, ``"M1"`` (name letter; ``scene_id`` follows).
        mode: ABI scan mode (3, 4 or 6) in ``timeline_id`` and the name.
        platform: ``G16`` … ``G19``.
        start: ``time_coverage_start``.
        shape: (rows, columns).
        step: Pixel pitch in rad (56 µrad = 2 km at nadir).
        centre: (lat, lon) the window is centred on.
        cloud: (lat, lon) of the cold cloud's centre.
        sigma_km: Gaussian width of the cloud.
        cloud_tb: Brightness temperature at the cloud's centre (K).
        planck: Per band, Planck constants to write (and encode with) instead of GOES-16's.
        attrs: Per band, attributes to override: global ones by name, projection ones as
            ``"proj:<name>"``, variables ``"var:band_id"``, ``"var:nominal_satellite_height"``.
        drop: Per band, variables or global attributes to leave out.
    """
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    lon_0, sat_lon, _, _ = PLATFORMS[platform]
    x, y, x0, y0 = grid_angles(kind, lon_0, centre, shape, step)
    lon, lat = lonlat(x, y, lon_0)
    end = start + DURATION.get(scene, DURATION["M1"])
    created = end + timedelta(seconds=4.4)
    truth = ScanTruth(
        {}, {}, x, y, lat, lon, cloud[0], cloud[1], start, end, platform, lon_0, sat_lon, 35786.023
    )
    for band in bands:
        constants = (planck or {}).get(band, PLANCK[band])
        tb = cloud_field(lat, lon, cloud, sigma_km, BACKGROUND[band], cloud_tb)
        name = product_name(level, scene, mode, band, platform, start, end, created)
        path = outdir / name
        _write_file(
            path,
            level=level,
            band=band,
            tb=tb,
            x0=x0,
            y0=y0,
            step=step,
            nx=shape[1],
            ny=shape[0],
            platform=platform,
            scene=scene,
            mode=mode,
            start=start,
            end=end,
            created=created,
            planck=constants,
            attrs_override=(attrs or {}).get(band, {}),
            drop=(drop or {}).get(band, ()),
        )
        channel = f"C{band:02d}"
        truth.files[channel] = path
        truth.tb[channel] = tb
        truth.planck[channel] = constants
    return truth


def main(argv: Sequence[str]) -> int:
    """Write the default set into ``argv[0]`` and print SHA-256 checksums."""
    if len(argv) != 1:
        print("usage: data.py OUTDIR", file=sys.stderr)
        return 2
    out = Path(argv[0])
    scans = [
        write_scan(out / "l1b_conus"),
        write_scan(out / "l2_cmip_conus", level="L2", bands=(13, 14)),
        write_scan(
            out / "l1b_full_disk",
            bands=(13, 14),
            kind="disk",
            scene="F",
            shape=(64, 64),
            step=0.00476,
            start=datetime(2019, 6, 10, 12, 0, 21, 0, tzinfo=UTC),
            cloud=(10.0, -60.0),
            sigma_km=400.0,
        ),
    ]
    for scan in scans:
        for path in scan.files.values():
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
            print(f"{digest}  {path.relative_to(out)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
