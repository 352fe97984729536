"""Write tiny Himawari-8/9 AHI Himawari Standard Data (HSD) files in the exact real layout.

Run as ``python tests/data/ahi/data.py OUTDIR`` to write one full-disk scan (bands B07–B16, two
segments each) and print the files' SHA-256 checksums; the tests import this file and call
:func:`write_scan` into a temporary directory (no binary is committed).

The layout follows the *Himawari-8/9 Himawari Standard Data User's Guide*, version 1.3
(JMA, 3 July 2017; "UG" below): §3 (map projection), §4 (file naming), §5 Table 6 (block
structures #1–#11). The numpy dtypes below give every field in the UG's order with its UG type
(I1/I2/I4 unsigned integers, R4/R8 IEEE floats, C characters), all little-endian (block #1 byte
order 0). They match, field for field, the dtypes of satpy's reader
(``satpy/readers/ahi_hsd.py``, ``_BASIC_INFO_TYPE`` …, satpy 0.60) and JMA's sample C reader
(``hisd_read.c``, which also checks the fixed block lengths 282, 50, 127, 139, 147, 259, 47 and
259); ``tests/datasets/test_ahi.py`` checks the first equality.

What is reduced (and self-consistent):

* **Image size.** A real 2 km full disk has 5500 × 5500 pixels with CFAC = LFAC = 20466275 and
  COFF = LOFF = 2750.5, cut into 10 segments of 550 lines. Here the same disk is sampled
  25 times more coarsely: 220 × 220 pixels, CFAC = LFAC = 20466275 / 25 = 818651 (an exact
  integer), COFF = LOFF = 110.5, i.e. 50 km pixels at the sub-satellite point, in
  :data:`SEGMENTS` = 2 segments of 110 lines. As in real files, COFF/LOFF refer to the whole
  disk (the UG's line numbers are full-disk lines; block #7 gives a segment's first line), and
  the file name keeps the real ``R20`` resolution tag.
* **Content.** Brightness temperature (K) on every Earth pixel: a background colder towards
  the poles plus a Gaussian cold cloud (:data:`CLOUD_LAT`, :data:`CLOUD_LON`, σ = 250 km) whose
  top is ~210 K in the window bands; space pixels next to the limb hold the coldest valid count
  (space seen by the instrument), farther ones the "outside scan area" count, and one Earth
  pixel per segment is an error pixel (listed in block #10).
* **Calibration.** UG block #5: radiance = gain · count + constant
  (W m⁻² sr⁻¹ µm⁻¹); effective temperature by the inverse Planck function at the central
  wavelength with the header's c, h, k; Tb = c0 + c1·Te + c2·Te². The generator inverts this
  chain in float64 (Tb → Te → radiance → rounded count), so the decoded Tb equals the encoded Tb
  to within half a count. The gains are chosen so that count 0 is a hot scene
  (:data:`T_MAX`) and the largest valid count (2^bits − 1) a radiance just above zero, with the
  valid bits per pixel of UG Table 1. c0/c1/c2 are the B13 values used in satpy's test-suite,
  for every band (real headers carry per-band values of the same size); the central wavelengths
  are representative Himawari-8 values; c, h, k are CODATA 2010 (as in satpy's test header).

Values that no reader uses (sun/moon position, GSICS fields, processing-centre use) are given
plausible values or JMA's invalid value (−1e10, ``INVALID_VALUE`` of its sample code's ``hisd.h``).
"""

from __future__ import annotations

import bz2
import hashlib
import sys
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import numpy.typing as npt

# ---------------------------------------------------------------------------------------------
# UG §5 Table 6: block structures (field order and types as printed there).

#: #1 Basic information block (282 bytes).
BASIC_INFO = np.dtype(
    [
        ("hblock_number", "u1"),  # 1
        ("blocklength", "<u2"),  # 282
        ("total_number_of_hblocks", "<u2"),  # 11
        ("byte_order", "u1"),  # 0: little endian, 1: big endian
        ("satellite", "S16"),  # "Himawari-8" / "Himawari-9"
        ("proc_center_name", "S16"),
        ("observation_area", "S4"),  # "FLDK", "JP01"–"JP04", "R301"–"R304" …
        ("other_observation_info", "S2"),
        ("observation_timeline", "<u2"),  # hhmm of the observation slot, e.g. 1200
        ("observation_start_time", "<f8"),  # MJD
        ("observation_end_time", "<f8"),  # MJD
        ("file_creation_time", "<f8"),  # MJD
        ("total_header_length", "<u4"),
        ("total_data_length", "<u4"),
        ("quality_flag1", "u1"),
        ("quality_flag2", "u1"),
        ("quality_flag3", "u1"),
        ("quality_flag4", "u1"),
        ("file_format_version", "S32"),
        ("file_name", "S128"),
        ("spare", "S40"),
    ]
)
#: #2 Data information block (50 bytes).
DATA_INFO = np.dtype(
    [
        ("hblock_number", "u1"),
        ("blocklength", "<u2"),
        ("number_of_bits_per_pixel", "<u2"),  # 16
        ("number_of_columns", "<u2"),
        ("number_of_lines", "<u2"),  # of this segment
        ("compression_flag_for_data", "u1"),  # 0: not compressed
        ("spare", "S40"),
    ]
)
#: #3 Projection information block (127 bytes); UG §3 and the CGMS LRIT/HRIT Global
#: Specification §4.4 define CFAC/LFAC/COFF/LOFF.
PROJ_INFO = np.dtype(
    [
        ("hblock_number", "u1"),
        ("blocklength", "<u2"),
        ("sub_lon", "<f8"),  # degrees east
        ("CFAC", "<u4"),
        ("LFAC", "<u4"),
        ("COFF", "<f4"),
        ("LOFF", "<f4"),
        ("distance_from_earth_center", "<f8"),  # km, of the (virtual) satellite
        ("earth_equatorial_radius", "<f8"),  # km
        ("earth_polar_radius", "<f8"),  # km
        ("req2_rpol2_req2", "<f8"),  # (req² − rpol²) / req²
        ("rpol2_req2", "<f8"),  # rpol² / req²
        ("req2_rpol2", "<f8"),  # req² / rpol²
        ("coeff_for_sd", "<f8"),  # distance² − req²  (km²)
        ("resampling_types", "<u2"),  # processing-centre use
        ("resampling_size", "<u2"),  # processing-centre use
        ("spare", "S40"),
    ]
)
#: #4 Navigation information block (139 bytes).
NAV_INFO = np.dtype(
    [
        ("hblock_number", "u1"),
        ("blocklength", "<u2"),
        ("navigation_info_time", "<f8"),  # MJD
        ("SSP_longitude", "<f8"),  # actual sub-satellite point, degrees
        ("SSP_latitude", "<f8"),
        ("distance_earth_center_to_satellite", "<f8"),  # km
        ("nadir_longitude", "<f8"),
        ("nadir_latitude", "<f8"),
        ("sun_position", "<f8", (3,)),  # J2000 inertial, km
        ("moon_position", "<f8", (3,)),
        ("spare", "S40"),
    ]
)
#: #5 Calibration information block, common part (35 bytes) ...
CAL_INFO = np.dtype(
    [
        ("hblock_number", "u1"),
        ("blocklength", "<u2"),  # 147
        ("band_number", "<u2"),
        ("central_wave_length", "<f8"),  # µm
        ("valid_number_of_bits_per_pixel", "<u2"),
        ("count_value_error_pixels", "<u2"),
        ("count_value_outside_scan_pixels", "<u2"),
        ("gain_count2rad_conversion", "<f8"),
        ("offset_count2rad_conversion", "<f8"),  # the UG's "constant"
    ]
)
#: ... and its infrared part (bands 7–16, 112 bytes).
IRCAL_INFO = np.dtype(
    [
        ("c0_rad2tb_conversion", "<f8"),
        ("c1_rad2tb_conversion", "<f8"),
        ("c2_rad2tb_conversion", "<f8"),
        ("c0_tb2rad_conversion", "<f8"),
        ("c1_tb2rad_conversion", "<f8"),
        ("c2_tb2rad_conversion", "<f8"),
        ("speed_of_light", "<f8"),  # m s⁻¹
        ("planck_constant", "<f8"),  # J s
        ("boltzmann_constant", "<f8"),  # J K⁻¹
        ("spare", "S40"),
    ]
)
#: #6 Inter-calibration information block (259 bytes; UG v1.2+ layout).
INTER_CALIBRATION_INFO = np.dtype(
    [
        ("hblock_number", "u1"),
        ("blocklength", "<u2"),
        ("gsics_calibration_intercept", "<f8"),
        ("gsics_calibration_slope", "<f8"),
        ("gsics_calibration_coeff_quadratic_term", "<f8"),
        ("gsics_std_scn_radiance_bias", "<f8"),
        ("gsics_std_scn_radiance_bias_uncertainty", "<f8"),
        ("gsics_std_scn_radiance", "<f8"),
        ("gsics_correction_starttime", "<f8"),
        ("gsics_correction_endtime", "<f8"),
        ("gsics_radiance_validity_upper_lim", "<f4"),
        ("gsics_radiance_validity_lower_lim", "<f4"),
        ("gsics_filename", "S128"),
        ("spare", "S56"),
    ]
)
#: #7 Segment information block (47 bytes).
SEGMENT_INFO = np.dtype(
    [
        ("hblock_number", "u1"),
        ("blocklength", "<u2"),
        ("total_number_of_segments", "u1"),
        ("segment_sequence_number", "u1"),
        ("first_line_number_of_image_segment", "<u2"),  # full-disk line number (1-based)
        ("spare", "S40"),
    ]
)
#: #8 Navigation correction information block: fixed part, n × entry, 40 spare bytes.
NAVIGATION_CORRECTION_INFO = np.dtype(
    [
        ("hblock_number", "u1"),
        ("blocklength", "<u2"),
        ("center_column_of_rotation", "<f4"),
        ("center_line_of_rotation", "<f4"),
        ("amount_of_rotational_correction", "<f8"),  # µrad
        ("numof_correction_info_data", "<u2"),
    ]
)
NAVIGATION_CORRECTION_SUBINFO = np.dtype(
    [
        ("line_number_after_rotation", "<u2"),
        ("shift_amount_for_column_direction", "<f4"),
        ("shift_amount_for_line_direction", "<f4"),
    ]
)
#: #9 Observation time information block: fixed part, n × (line, MJD), 40 spare bytes.
OBSERVATION_TIME_INFO = np.dtype(
    [("hblock_number", "u1"), ("blocklength", "<u2"), ("number_of_observation_times", "<u2")]
)
OBSERVATION_LINE_TIME_INFO = np.dtype([("line_number", "<u2"), ("observation_time", "<f8")])
#: #10 Error information block (block length is I4 here): fixed part, n × entry, 40 spare.
ERROR_INFO = np.dtype(
    [("hblock_number", "u1"), ("blocklength", "<u4"), ("number_of_error_info_data", "<u2")]
)
ERROR_LINE_INFO = np.dtype([("line_number", "<u2"), ("numof_error_pixels_per_line", "<u2")])
#: #11 Spare block (259 bytes).
SPARE = np.dtype([("hblock_number", "u1"), ("blocklength", "<u2"), ("spare", "S256")])

#: The fixed-size blocks and their UG lengths (what satpy and JMA's sample code check).
FIXED_BLOCK_LENGTHS = {1: 282, 2: 50, 3: 127, 4: 139, 5: 147, 6: 259, 7: 47, 11: 259}
SPARE_TAIL = 40  # spare bytes closing blocks #8, #9 and #10

# ---------------------------------------------------------------------------------------------
# Scan geometry (UG §3; values of real 2 km full-disk headers, the sampling reduced 25×).

SUB_LON = 140.7  # degrees east, Himawari-8/9 projection longitude
DISTANCE_KM = 42164.0  # satellite distance from the Earth's centre
REQ_KM = 6378.1370  # Earth's equatorial radius
RPOL_KM = 6356.7523  # Earth's polar radius
CFAC_2KM = 20466275  # 2 km full disk, 5500 columns
REDUCTION = 25
CFAC = CFAC_2KM // REDUCTION  # 818651 exactly
NPIX = 5500 // REDUCTION  # 220 columns and lines
COFF = (NPIX + 1) / 2  # 110.5
SEGMENTS = 2
INVALID = -10000000000.0  # JMA hisd.h INVALID_VALUE

#: AHI infrared bands: band number, representative central wavelength (µm), valid bits
#: per pixel (UG Table 1).
BANDS: dict[str, tuple[int, float, int]] = {
    "B07": (7, 3.8853, 14),
    "B08": (8, 6.2429, 11),
    "B09": (9, 6.9410, 11),
    "B10": (10, 7.3467, 12),
    "B11": (11, 8.5926, 12),
    "B12": (12, 9.6372, 12),
    "B13": (13, 10.4073, 12),
    "B14": (14, 11.2395, 12),
    "B15": (15, 12.3806, 12),
    "B16": (16, 13.2807, 11),
}
IR_BANDS = tuple(BANDS)
#: Scene temperatures (K): background at the equator, cloud top. Water-vapour and CO2 bands
#: see a colder background; the window bands ~285 K.
BACKGROUND_K = {
    "B07": 290.0, "B08": 236.0, "B09": 246.0, "B10": 255.0, "B11": 283.0,
    "B12": 262.0, "B13": 286.0, "B14": 285.0, "B15": 283.0, "B16": 262.0,
}  # fmt: skip
CLOUD_K = {
    "B07": 214.0, "B08": 206.0, "B09": 207.0, "B10": 208.0, "B11": 210.0,
    "B12": 209.0, "B13": 210.0, "B14": 209.0, "B15": 209.5, "B16": 211.0,
}  # fmt: skip
T_MAX = {b: (400.0 if b == "B07" else 340.0) for b in BANDS}  # temperature of count 0
CLOUD_LAT, CLOUD_LON = 24.0, 128.3  # degrees
CLOUD_SIGMA_KM = 250.0
ERROR_PIXEL = (150, 60)  # (full-disk line, column), 1-based: one error pixel in segment 2
SPACE_RING_PIXELS = 2.0  # off-disk pixels this close to the limb hold the space count

# Calibration constants (CODATA 2010, as in satpy's AHI test header) and the Tb correction.
LIGHT = 299792458.0
PLANCK = 6.62606957e-34
BOLTZMANN = 1.3806488e-23
C0, C1, C2 = -0.116127314574, 1.00099153832, -1.76961091571e-06
ERROR_COUNT, OUTSIDE_COUNT = 65535, 65534

MJD_EPOCH = datetime(1858, 11, 17, tzinfo=UTC)
PLATFORM_CODES = {"Himawari-8": "H08", "Himawari-9": "H09"}


# ---------------------------------------------------------------------------------------------
# Physics.


def planck_radiance(wavelength_um: float, te: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """Radiance (W m⁻² sr⁻¹ µm⁻¹) of a black body at ``te`` K (UG block #5 constants)."""
    lam = wavelength_um * 1e-6
    t = np.asarray(te, dtype=np.float64)
    with np.errstate(over="ignore"):
        spectral = 2 * PLANCK * LIGHT**2 / lam**5 / np.expm1(PLANCK * LIGHT / (BOLTZMANN * lam * t))
    return spectral * 1e-6


def radiance_to_tb(wavelength_um: float, radiance: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """UG block #5: Te by the inverse Planck function, then Tb = c0 + c1·Te + c2·Te²."""
    lam = wavelength_um * 1e-6
    rad = np.asarray(radiance, dtype=np.float64) * 1e6
    with np.errstate(divide="ignore", invalid="ignore"):
        te = PLANCK * LIGHT / (BOLTZMANN * lam) / np.log(2 * PLANCK * LIGHT**2 / (rad * lam**5) + 1)
    return C0 + C1 * te + C2 * te**2


def tb_to_te(tb: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """Invert Tb = c0 + c1·Te + c2·Te² (the root near Tb)."""
    d = np.asarray(tb, dtype=np.float64) - C0
    return 2 * d / (C1 + np.sqrt(C1**2 + 4 * C2 * d))


def tb2rad_coefficients() -> tuple[float, float, float]:
    """The header's reverse coefficients: Te ≈ C0 + C1·Tb + C2·Tb² (least squares, 180–340 K)."""
    tb = np.linspace(180.0, 340.0, 161)
    c2, c1, c0 = np.polyfit(tb, tb_to_te(tb), 2)
    return float(c0), float(c1), float(c2)


def calibration(band: str) -> tuple[float, float]:
    """(gain, constant): count 0 is :data:`T_MAX`, count 2^bits radiance 0."""
    _, wavelength, bits = BANDS[band]
    constant = float(planck_radiance(wavelength, tb_to_te(T_MAX[band])))
    return -constant / 2**bits, constant


# ---------------------------------------------------------------------------------------------
# Geometry: UG §3 (CGMS LRIT/HRIT Global Specification §4.4.4), pixel/line → longitude/latitude.


def pixel_lonlat(
    column: npt.ArrayLike, line: npt.ArrayLike
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Longitude/latitude (degrees) of full-disk pixel centres (1-based); NaN off the Earth."""
    x = np.deg2rad((np.asarray(column, np.float64) - COFF) * 2.0**16 / CFAC)
    y = np.deg2rad((np.asarray(line, np.float64) - COFF) * 2.0**16 / CFAC)
    f3 = REQ_KM**2 / RPOL_KM**2
    sd_coeff = DISTANCE_KM**2 - REQ_KM**2
    cxy = np.cos(x) * np.cos(y)
    q = np.cos(y) ** 2 + f3 * np.sin(y) ** 2
    disc = (DISTANCE_KM * cxy) ** 2 - q * sd_coeff
    with np.errstate(invalid="ignore"):
        sd = np.sqrt(disc)
    sn = (DISTANCE_KM * cxy - sd) / q
    s1 = DISTANCE_KM - sn * cxy
    s2 = sn * np.sin(x) * np.cos(y)
    s3 = -sn * np.sin(y)
    sxy = np.hypot(s1, s2)
    lon = np.rad2deg(np.arctan2(s2, s1)) + SUB_LON
    lat = np.rad2deg(np.arctan(f3 * s3 / sxy))
    off = ~(disc >= 0)
    lon[off] = np.nan
    lat[off] = np.nan
    return lon, lat


def limb_distance_pixels(column: npt.ArrayLike, line: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """How far (in pixels, approximately) a pixel centre lies outside the Earth's limb."""
    x = np.deg2rad((np.asarray(column, np.float64) - COFF) * 2.0**16 / CFAC)
    y = np.deg2rad((np.asarray(line, np.float64) - COFF) * 2.0**16 / CFAC)
    xmax = np.arcsin(REQ_KM / DISTANCE_KM)
    ymax = np.arcsin(RPOL_KM / DISTANCE_KM)
    r = np.hypot(x / xmax, y / ymax)
    step = np.deg2rad(2.0**16 / CFAC)
    return (r - 1.0) * xmax / step


def great_circle_km(
    lon1: npt.ArrayLike, lat1: npt.ArrayLike, lon2: float, lat2: float
) -> npt.NDArray[np.float64]:
    """Haversine distance on a 6371 km sphere."""
    p1, p2 = np.deg2rad(np.asarray(lat1, np.float64)), np.deg2rad(lat2)
    dl = np.deg2rad(np.asarray(lon1, np.float64) - lon2)
    h = np.sin((p2 - p1) / 2) ** 2 + np.cos(p1) * np.cos(p2) * np.sin(dl / 2) ** 2
    return 2 * 6371.0 * np.arcsin(np.sqrt(h))


def scene_tb(band: str, lon: npt.ArrayLike, lat: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """The encoded brightness temperature (K): background colder poleward plus the cold cloud."""
    lat_ = np.asarray(lat, np.float64)
    background = BACKGROUND_K[band] - 25.0 * np.sin(np.deg2rad(lat_)) ** 2
    d = great_circle_km(lon, lat_, CLOUD_LON, CLOUD_LAT)
    weight = np.exp(-0.5 * (d / CLOUD_SIGMA_KM) ** 2)
    return np.asarray(background + (CLOUD_K[band] - background) * weight)


# ---------------------------------------------------------------------------------------------
# Writing.


def mjd(t: datetime) -> float:
    """Modified Julian Date (days since 1858-11-17 00:00 UTC), the UG's time unit."""
    return (t - MJD_EPOCH).total_seconds() / 86400.0


def hsd_name(platform: str, nominal: datetime, band: str, segment: int, total: int) -> str:
    """UG §4: ``HS_{H08|H09}_{YYYYMMDD}_{hhmm}_B{nn}_FLDK_R20_S{seg}{total}.DAT``."""
    code = PLATFORM_CODES[platform]
    return f"HS_{code}_{nominal:%Y%m%d_%H%M}_{band}_FLDK_R20_S{segment:02d}{total:02d}.DAT"


@dataclass
class Scan:
    """What :func:`write_scan` wrote, with the truth the tests compare against.

    Attributes:
        files: Band → its segment files, in segment order.
        truth: Band → the encoded Tb (K), full disk (lines × columns), NaN off the Earth.
        expected: Band → Tb decoded from the written counts (UG formulas in float64), NaN where
            the count is the error or outside-scan value or the pixel is off the Earth.
        quantum: Band → Tb change of one count at each pixel (K).
        lon: Pixel-centre longitude (degrees), NaN off the Earth.
        lat: Pixel-centre latitude.
        platform: Satellite name of block #1.
        nominal_time: Start of the 10-minute slot (the timeline).
        start_time: Earliest observation start over all files.
        end_time: Latest observation end.
        ssp_lon: Actual sub-satellite longitude (block #4).
        ssp_distance_km: Actual satellite distance from the Earth's centre (block #4).
    """

    files: dict[str, list[Path]]
    truth: dict[str, npt.NDArray[np.float64]]
    expected: dict[str, npt.NDArray[np.float64]]
    quantum: dict[str, npt.NDArray[np.float64]]
    lon: npt.NDArray[np.float64]
    lat: npt.NDArray[np.float64]
    platform: str
    nominal_time: datetime
    start_time: datetime
    end_time: datetime
    ssp_lon: float
    ssp_distance_km: float
    all_files: list[Path] = field(default_factory=list)


def _segment_window(nominal: datetime, band: str, segment: int) -> tuple[datetime, datetime]:
    """Observation window of one band segment: 20 s after the slot, 280 s per segment."""
    start = nominal + timedelta(seconds=20 + 280 * (segment - 1) + 0.5 * (BANDS[band][0] - 7))
    return start, start + timedelta(seconds=280)


def _counts(
    band: str, tb: npt.NDArray[np.float64], limb: npt.NDArray[np.float64]
) -> npt.NDArray[np.uint16]:
    _, wavelength, bits = BANDS[band]
    gain, constant = calibration(band)
    radiance = planck_radiance(wavelength, tb_to_te(tb))
    with np.errstate(invalid="ignore"):
        counts = np.rint((radiance - constant) / gain)
    counts = np.clip(np.nan_to_num(counts, nan=2**bits - 1), 0, 2**bits - 1)
    counts[np.isnan(tb)] = 2**bits - 1  # space next to the limb: the coldest valid count
    counts[np.isnan(tb) & (limb > SPACE_RING_PIXELS)] = OUTSIDE_COUNT
    out = counts.astype(np.uint16)
    line, column = ERROR_PIXEL
    out[line - 1, column - 1] = ERROR_COUNT
    return out


def _block(dtype: np.dtype, **values: object) -> np.ndarray:
    rec = np.zeros(1, dtype=dtype)
    for key, value in values.items():
        rec[key] = value
    return rec


def _header(
    *,
    path_name: str,
    platform: str,
    band: str,
    segment: int,
    nominal: datetime,
    counts: npt.NDArray[np.uint16],
    ssp_lon: float,
    ssp_distance_km: float,
) -> bytes:
    number, wavelength, bits = BANDS[band]
    lines = NPIX // SEGMENTS
    first_line = (segment - 1) * lines + 1
    start, end = _segment_window(nominal, band, segment)
    gain, constant = calibration(band)
    r0, r1, r2 = tb2rad_coefficients()
    # #8: two correction points (first and last line of the segment), zero shifts.
    navcorr = np.zeros(2, NAVIGATION_CORRECTION_SUBINFO)
    navcorr["line_number_after_rotation"] = [first_line, first_line + lines - 1]
    # #9: observation time every 10 lines and at the last line (full-disk line numbers).
    obs_lines = np.unique(
        np.r_[np.arange(first_line, first_line + lines, 10), first_line + lines - 1]
    )
    obs = np.zeros(obs_lines.size, OBSERVATION_LINE_TIME_INFO)
    obs["line_number"] = obs_lines
    frac = (obs_lines - first_line) / (lines - 1)
    obs["observation_time"] = mjd(start) + frac * (mjd(end) - mjd(start))
    # #10: the error pixels of this segment, per line.
    seg_counts = counts[first_line - 1 : first_line - 1 + lines]
    err_rows = np.flatnonzero((seg_counts == ERROR_COUNT).any(axis=1))
    errors = np.zeros(err_rows.size, ERROR_LINE_INFO)
    errors["line_number"] = err_rows + first_line
    errors["numof_error_pixels_per_line"] = (seg_counts[err_rows] == ERROR_COUNT).sum(axis=1)

    len8 = NAVIGATION_CORRECTION_INFO.itemsize + navcorr.nbytes + SPARE_TAIL
    len9 = OBSERVATION_TIME_INFO.itemsize + obs.nbytes + SPARE_TAIL
    len10 = ERROR_INFO.itemsize + errors.nbytes + SPARE_TAIL
    total_header = sum(FIXED_BLOCK_LENGTHS.values()) + len8 + len9 + len10
    data_length = seg_counts.size * 2
    spare = bytes(SPARE_TAIL)
    parts = [
        _block(
            BASIC_INFO,
            hblock_number=1,
            blocklength=282,
            total_number_of_hblocks=11,
            byte_order=0,
            satellite=platform.encode(),
            proc_center_name=b"MSC",
            observation_area=b"FLDK",
            observation_timeline=int(f"{nominal:%H%M}"),
            observation_start_time=mjd(start),
            observation_end_time=mjd(end),
            file_creation_time=mjd(end + timedelta(seconds=95)),
            total_header_length=total_header,
            total_data_length=data_length,
            file_format_version=b"1.3",
            file_name=path_name.encode(),
        ).tobytes(),
        _block(
            DATA_INFO,
            hblock_number=2,
            blocklength=50,
            number_of_bits_per_pixel=16,
            number_of_columns=NPIX,
            number_of_lines=lines,
            compression_flag_for_data=0,
        ).tobytes(),
        _block(
            PROJ_INFO,
            hblock_number=3,
            blocklength=127,
            sub_lon=SUB_LON,
            CFAC=CFAC,
            LFAC=CFAC,
            COFF=COFF,
            LOFF=COFF,
            distance_from_earth_center=DISTANCE_KM,
            earth_equatorial_radius=REQ_KM,
            earth_polar_radius=RPOL_KM,
            req2_rpol2_req2=(REQ_KM**2 - RPOL_KM**2) / REQ_KM**2,
            rpol2_req2=RPOL_KM**2 / REQ_KM**2,
            req2_rpol2=REQ_KM**2 / RPOL_KM**2,
            coeff_for_sd=DISTANCE_KM**2 - REQ_KM**2,
            resampling_types=0,
            resampling_size=4,
        ).tobytes(),
        _block(
            NAV_INFO,
            hblock_number=4,
            blocklength=139,
            navigation_info_time=mjd(start),
            SSP_longitude=ssp_lon,
            SSP_latitude=0.0043,
            distance_earth_center_to_satellite=ssp_distance_km,
            nadir_longitude=ssp_lon - 0.4,
            nadir_latitude=0.0167,
            sun_position=(-8.96e6, -1.3384e8, -5.802e7),
            moon_position=(3.12e5, 2.1e5, 9.8e4),
        ).tobytes(),
        _block(
            CAL_INFO,
            hblock_number=5,
            blocklength=147,
            band_number=number,
            central_wave_length=wavelength,
            valid_number_of_bits_per_pixel=bits,
            count_value_error_pixels=ERROR_COUNT,
            count_value_outside_scan_pixels=OUTSIDE_COUNT,
            gain_count2rad_conversion=gain,
            offset_count2rad_conversion=constant,
        ).tobytes(),
        _block(
            IRCAL_INFO,
            c0_rad2tb_conversion=C0,
            c1_rad2tb_conversion=C1,
            c2_rad2tb_conversion=C2,
            c0_tb2rad_conversion=r0,
            c1_tb2rad_conversion=r1,
            c2_tb2rad_conversion=r2,
            speed_of_light=LIGHT,
            planck_constant=PLANCK,
            boltzmann_constant=BOLTZMANN,
        ).tobytes(),
        _block(
            INTER_CALIBRATION_INFO,
            hblock_number=6,
            blocklength=259,
            gsics_calibration_intercept=INVALID,
            gsics_calibration_slope=INVALID,
            gsics_calibration_coeff_quadratic_term=INVALID,
            gsics_std_scn_radiance_bias=INVALID,
            gsics_std_scn_radiance_bias_uncertainty=INVALID,
            gsics_std_scn_radiance=INVALID,
            gsics_correction_starttime=INVALID,
            gsics_correction_endtime=INVALID,
            gsics_radiance_validity_upper_lim=INVALID,
            gsics_radiance_validity_lower_lim=INVALID,
        ).tobytes(),
        _block(
            SEGMENT_INFO,
            hblock_number=7,
            blocklength=47,
            total_number_of_segments=SEGMENTS,
            segment_sequence_number=segment,
            first_line_number_of_image_segment=first_line,
        ).tobytes(),
        _block(
            NAVIGATION_CORRECTION_INFO,
            hblock_number=8,
            blocklength=len8,
            center_column_of_rotation=COFF,
            center_line_of_rotation=COFF,
            amount_of_rotational_correction=0.0,
            numof_correction_info_data=navcorr.size,
        ).tobytes()
        + navcorr.tobytes()
        + spare,
        _block(
            OBSERVATION_TIME_INFO,
            hblock_number=9,
            blocklength=len9,
            number_of_observation_times=obs.size,
        ).tobytes()
        + obs.tobytes()
        + spare,
        _block(
            ERROR_INFO, hblock_number=10, blocklength=len10, number_of_error_info_data=errors.size
        ).tobytes()
        + errors.tobytes()
        + spare,
        _block(SPARE, hblock_number=11, blocklength=259).tobytes(),
    ]
    header = b"".join(parts)
    assert len(header) == total_header, (len(header), total_header)
    return header


def write_scan(
    outdir: Path,
    *,
    bands: tuple[str, ...] = IR_BANDS,
    platform: str = "Himawari-9",
    nominal_time: datetime = datetime(2023, 12, 20, 12, 0, tzinfo=UTC),
    compress: bool = False,
    ssp_lon: float = 140.657,
    ssp_distance_km: float = 42165.04,
) -> Scan:
    """Write one full-disk scan: every band in ``bands``, :data:`SEGMENTS` segment files each.

    Args:
        outdir: Directory (created).
        bands: AHI infrared bands to write (``B07`` … ``B16``).
        platform: ``Himawari-8`` or ``Himawari-9``.
        nominal_time: The 10-minute slot (block #1 observation timeline).
        compress: bzip2 the files (``.DAT.bz2``, as distributed by JMA and NOAA's archive).
        ssp_lon: Actual sub-satellite longitude (block #4).
        ssp_distance_km: Actual satellite distance from the Earth's centre (block #4).
    """
    outdir.mkdir(parents=True, exist_ok=True)
    columns, lines = np.meshgrid(np.arange(1, NPIX + 1), np.arange(1, NPIX + 1))
    lon, lat = pixel_lonlat(columns, lines)
    limb = limb_distance_pixels(columns, lines)
    seg_lines = NPIX // SEGMENTS
    scan = Scan({}, {}, {}, {}, lon, lat, platform, nominal_time, nominal_time, nominal_time,
                ssp_lon, ssp_distance_km)  # fmt: skip
    starts, ends = [], []
    for band in bands:
        _, wavelength, _ = BANDS[band]
        gain, constant = calibration(band)
        tb = scene_tb(band, lon, lat)
        counts = _counts(band, tb, limb)
        valid = (counts < OUTSIDE_COUNT) & np.isfinite(lon)
        decoded = radiance_to_tb(wavelength, counts * gain + constant)
        scan.truth[band] = tb
        scan.expected[band] = np.where(valid, decoded, np.nan)
        scan.quantum[band] = np.abs(radiance_to_tb(wavelength, (counts + 1.0) * gain + constant)
                                    - decoded)  # fmt: skip
        scan.files[band] = []
        for segment in range(1, SEGMENTS + 1):
            name = hsd_name(platform, nominal_time, band, segment, SEGMENTS)
            seg = counts[(segment - 1) * seg_lines : segment * seg_lines]
            header = _header(
                path_name=name, platform=platform, band=band, segment=segment,
                nominal=nominal_time, counts=counts, ssp_lon=ssp_lon,
                ssp_distance_km=ssp_distance_km,
            )  # fmt: skip
            payload = header + seg.astype("<u2").tobytes()
            path = outdir / (name + ".bz2" if compress else name)
            path.write_bytes(bz2.compress(payload) if compress else payload)
            scan.files[band].append(path)
            scan.all_files.append(path)
            start, end = _segment_window(nominal_time, band, segment)
            starts.append(start)
            ends.append(end)
    scan.start_time, scan.end_time = min(starts), max(ends)
    return scan


def main(argv: list[str]) -> int:
    """Write the default scan into ``argv[1]`` and print the files' SHA-256."""
    if len(argv) != 2:
        print(f"usage: {argv[0]} OUTDIR", file=sys.stderr)
        return 2
    scan = write_scan(Path(argv[1]))
    for path in scan.all_files:
        print(f"{hashlib.sha256(path.read_bytes()).hexdigest()}  {path.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
