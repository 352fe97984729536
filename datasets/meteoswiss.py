"""MeteoSwiss radar precipitation composites as 8-bit palette GIF (``AQC``, 5-min amount).

MeteoSwiss (Federal Office of Meteorology and Climatology) archived its Swiss radar composites on
the "CCS4" domain as palette GIFs named ``AQCyyjjjHHMMf_00005.801.gif`` (``AQC`` = ACQUIRE
product, ``yy jjj HHMM`` = year, day of year and time in UTC, ``f`` = a radar-operation flag,
``00005`` = accumulation minutes). The file stores **palette indices** (digital numbers, DN), not
physical values, and no georeference.

Values. Neither the GIF nor a published specification gives the DN → mm table; it is the
MeteoSwiss 8-bit "LASSEN" precipitation scale, which the GIF names in its comment
(``SCALE=mmh2LASSEN8bitmm_mn``) and which MeteoSwiss's own code defines as
``R = (10^((DN − 71.5)/20) / 316)^(1/1.5)`` for DN 2–250 (a 0.5-dB reflectivity step turned into
precipitation through Z = 316 R^1.5):

* MeteoSwiss Radar, Satellite and Nowcasting division, ``meteoswiss-mdr/precipattractor``,
  ``pymodules/data_tools_attractor.py::get_rainfall_lookuptable`` (L. Foresti, 2016): DN 0, 1 and
  251–254 → 0, DN 255 → no data; and ``io_tools_attractor.py``: "AQC is given in millimiters",
  converted to a rate with ``× 60 / accumulation minutes``;
* ``MeteoSwiss/pyart``, ``pyart/aux_io/rad4alp_gif_reader.py::_get_physical_data`` (same formula
  for DN 2–250, DN taken as ``255 − green`` of the palette colour);
* pySTEPS ``pysteps.io.importers.import_mch_gif`` (product ``AQC``/``CPC``; same formula and
  special values, "[mm/5min]").

So ``AQC`` values are **amounts in mm over the accumulation period** (5 min), the table above.
DN 0 is "no precipitation" (most of the domain) and DN 1 (a few hundred cells, in small clusters
next to rain) is also 0 mm in MeteoSwiss's and pySTEPS's tables: both are "no echo" here; the
table gives no meaning for DN 251–254 beyond 0 (never seen in the test files). **DN 255 is outside
the composite domain** → NaN. The reader checks the two MeteoSwiss decoders agree for the file
(palette green = 255 − index), and, when the comment names a scale, that it is the LASSEN one.

Grid (not in the file): Swiss LV03 (EPSG:21781, ``+proj=somerc`` on the Bessel ellipsoid), 1 km
cells, 710 columns × 640 rows, outer edges x 255–965 km, y −160–480 km, row 0 north — pySTEPS'
``_import_mch_geodata`` (``yorigin = "upper"``) and MeteoSwiss pyart's ``read_gif`` (which flips
the rows to put its origin at the south-west corner x 255 km, y −160 km) agree. Cell centres
are half a kilometre inside those edges.

Time and product come from the GIF's comment extension, written by MeteoSwiss's software
(``PRDT=AQC161932100 ... ACCUm=000005``), which pyart's ``_get_metadata`` also parses. A GIF
without that comment falls back to its file name; when both exist they must agree. The time is
taken as the end of the accumulation window (valid time), the window starting ``ACCUm`` minutes
earlier. Detection (sniffing) never looks at the name: it needs the GIF magic, a 710 × 640
logical screen and a 256-colour global palette.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import xarray as xr
from PIL import Image
from pyproj import CRS

from qpebench.datasets.grid import Grid
from qpebench.datasets.radar import Probe, RadarReader, make_field, register_reader, utc
from qpebench.errors import FileFormatError

WIDTH, HEIGHT = 710, 640
X_LEFT, Y_TOP, CELL = 255_000.0, 480_000.0, 1_000.0  # outer edges (m, LV03) and cell size
LASSEN_SCALE = "mmh2LASSEN8bitmm_mn"
NO_DATA_INDEX = 255
ZERO_INDICES = (0, 1, 251, 252, 253, 254)
ZR_A, ZR_B, DN_OFFSET = 316.0, 1.5, 71.5
SUPPORTED_PRODUCTS = ("AQC",)
_GIF_MAGIC = (b"GIF87a", b"GIF89a")
_PRDT = re.compile(r"^(?P<product>[A-Z]{3})(?P<stamp>\d{9})$")
_NAME = re.compile(r"^(?P<product>[A-Z]{3})(?P<stamp>\d{9})\w_(?P<minutes>\d{5})\.\d{3}\.gif$")
_RADARS = ("ALB", "DOE", "MLE", "PPM", "WEI")  # Albis, La Dôle, Monte Lema, Plaine Morte, Weissfluh


def lassen_8bit_mm() -> npt.NDArray[np.float64]:
    """MeteoSwiss 8-bit LASSEN scale: amount in mm for each DN 0–255 (NaN for 255, no data)."""
    dn = np.arange(256, dtype=np.float64)
    table = (10.0 ** ((dn - DN_OFFSET) / 20.0) / ZR_A) ** (1.0 / ZR_B)
    table[list(ZERO_INDICES)] = 0.0
    table[NO_DATA_INDEX] = np.nan
    return table


#: DN → mm of the ``AQC`` GIFs (see the module docstring for the sources).
AQC_TABLE_MM = lassen_8bit_mm()


def _is_meteoswiss_gif(probe: Probe) -> bool:
    head = probe.head
    if len(head) < 13 or head[:6] not in _GIF_MAGIC:
        return False
    width = int.from_bytes(head[6:8], "little")
    height = int.from_bytes(head[8:10], "little")
    packed = head[10]  # bit 7: global colour table; bits 0–2: its size, 2^(n+1) entries
    return (width, height) == (WIDTH, HEIGHT) and bool(packed & 0x80) and (packed & 0x07) == 7


def _comment(info: Mapping[Any, Any]) -> dict[str, str]:
    raw = info.get("comment", b"")
    text = raw.decode("latin-1") if isinstance(raw, bytes) else str(raw)
    return dict(re.findall(r"(\w+)=(\S*)", text))


def _stamp(stamp: str, path: Path, where: str) -> datetime:
    try:
        return utc(stamp, "%y%j%H%M")
    except ValueError:
        raise FileFormatError(f"{path}: malformed time {stamp!r} in the {where}") from None


def _product_time_minutes(comment: dict[str, str], path: Path) -> tuple[str, datetime, float, str]:
    from_comment: tuple[str, datetime, float] | None = None
    from_name: tuple[str, datetime, float] | None = None
    if "PRDT" in comment:
        match = _PRDT.match(comment["PRDT"])
        if match is None:
            raise FileFormatError(f"{path}: GIF comment PRDT={comment['PRDT']!r} is malformed")
        if "ACCUm" not in comment or not comment["ACCUm"].isdigit():
            raise FileFormatError(f"{path}: GIF comment has PRDT but no numeric ACCUm")
        stamp = _stamp(match["stamp"], path, "GIF comment (PRDT)")
        from_comment = (match["product"], stamp, float(comment["ACCUm"]))
    name = _NAME.match(path.name)
    if name is not None:
        stamp = _stamp(name["stamp"], path, "file name")
        from_name = (name["product"], stamp, float(name["minutes"]))
    if from_comment is not None and from_name is not None and from_comment != from_name:
        raise FileFormatError(
            f"{path}: the GIF comment (PRDT={comment['PRDT']}, ACCUm={comment['ACCUm']}) and the "
            f"file name disagree on product, time or accumulation; the file may be mislabelled"
        )
    if from_comment is not None:
        return (*from_comment, "gif comment")
    if from_name is not None:
        return (*from_name, "file name")
    raise FileFormatError(
        f"{path}: no product time: the GIF has no MeteoSwiss comment (PRDT=, ACCUm=) and the file "
        "name does not follow AQCyyjjjHHMMf_MMMMM.801.gif"
    )


def read_meteoswiss_gif(path: Path) -> xr.DataArray:
    """Read a MeteoSwiss ``AQC`` palette GIF as the 5-min precipitation amount in mm.

    Raises:
        FileFormatError: Not a 710 × 640 palette GIF, truncated, a palette or scale that is not
            the MeteoSwiss 8-bit LASSEN coding, another product than ``AQC``, or no time in the
            comment or the file name; the message names the file and the problem.
    """
    try:
        with Image.open(path) as image:
            if image.format != "GIF":
                raise FileFormatError(f"{path}: not a GIF image (PIL reads {image.format})")
            if image.size != (WIDTH, HEIGHT):
                raise FileFormatError(
                    f"{path}: image is {image.size[0]}×{image.size[1]} (width×height); the "
                    f"MeteoSwiss CCS4 composite is {WIDTH}×{HEIGHT}"
                )
            if image.mode != "P":
                raise FileFormatError(
                    f"{path}: GIF mode {image.mode!r}, not a palette ('P') image; the values "
                    "must be palette indices of the MeteoSwiss 8-bit scale"
                )
            palette = image.getpalette() or []
            comment = _comment(image.info)
            index = np.asarray(image, dtype=np.uint8)
    except Image.DecompressionBombError as exc:  # a size far beyond 710 × 640, before decoding
        raise FileFormatError(f"{path}: refused before decoding: {exc}") from None
    except (OSError, EOFError, SyntaxError) as exc:
        raise FileFormatError(
            f"{path}: cannot decode the GIF (truncated or corrupt): {exc}"
        ) from None
    green = np.asarray(palette[1::3], dtype=np.int64)
    if green.size != 256 or not np.array_equal(green, 255 - np.arange(256)):
        raise FileFormatError(
            f"{path}: the palette is not MeteoSwiss's 8-bit index palette (green = 255 − index, "
            "as MeteoSwiss pyart decodes it); palette index → mm is unknown for this file"
        )
    if "SCALE" in comment and comment["SCALE"] != LASSEN_SCALE:
        raise FileFormatError(
            f"{path}: GIF comment SCALE={comment['SCALE']!r}; only the {LASSEN_SCALE!r} scale is "
            "known"
        )
    product, valid, minutes, time_from = _product_time_minutes(comment, path)
    if product not in SUPPORTED_PRODUCTS:
        raise FileFormatError(
            f"{path}: MeteoSwiss product {product!r} is not supported (supported: "
            f"{list(SUPPORTED_PRODUCTS)})"
        )
    if not minutes > 0:
        raise FileFormatError(f"{path}: accumulation period of {minutes:g} min")
    grid = Grid.from_corner(
        CRS.from_epsg(21781), x_left=X_LEFT, y_top=Y_TOP, dx=CELL, dy=CELL, nx=WIDTH, ny=HEIGHT
    )
    attrs: dict[str, Any] = {
        "time_from": time_from,
        "mch_scale": comment.get("SCALE", ""),
        "mch_software": comment.get("VERSION", ""),
        "radars": " ".join(r for r in _RADARS if comment.get(r, "").lstrip("0") == "1"),
        "producer_zr_a": ZR_A,
        "producer_zr_b": ZR_B,
    }
    return make_field(
        AQC_TABLE_MM[index],
        grid=grid,
        path=path,
        source="meteoswiss_gif",
        network="MeteoSwiss",
        product=product,
        quantity=product,
        units="mm",
        kind="accumulation",
        valid_time=valid,
        start_time=valid - timedelta(minutes=minutes),
        accumulation_minutes=minutes,
        attrs=attrs,
    )


register_reader(
    RadarReader(
        name="meteoswiss_gif",
        network="MeteoSwiss",
        description="MeteoSwiss AQC 5-min precipitation amount, 8-bit palette GIF (CCS4, LV03)",
        sniff=_is_meteoswiss_gif,
        read=read_meteoswiss_gif,
    )
)
