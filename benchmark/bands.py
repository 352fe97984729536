"""The canonical band catalogue and each sensor's mapping onto it.

Models see *canonical* bands, named after the SEVIRI channel they resemble (``IR10.8`` …); each
sensor maps its own channels onto them explicitly, with its own centre wavelength, so a model
trained on SEVIRI can be fed GOES ABI or Himawari AHI imagery band for band. Bands a sensor lacks
elsewhere (ABI C09 at 6.95 µm) are not canonical.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from qpebench.errors import ConfigError, UnknownNameError, unknown_name_message


@dataclass(frozen=True)
class CanonicalBand:
    """One canonical band.

    Attributes:
        name: Canonical name, e.g. ``"IR10.8"``.
        wavelength_um: Nominal centre wavelength in µm.
        kind: ``"water_vapour"``, ``"window"``, ``"ozone"``, ``"co2"`` or ``"shortwave"``.
        default: Whether the band is used unless a configuration says otherwise.
    """

    name: str
    wavelength_um: float
    kind: str
    default: bool = True


CANONICAL_BANDS: dict[str, CanonicalBand] = {
    b.name: b
    for b in (
        CanonicalBand("WV6.2", 6.25, "water_vapour"),
        CanonicalBand("WV7.3", 7.35, "water_vapour"),
        CanonicalBand("IR8.7", 8.70, "window"),
        CanonicalBand("IR9.7", 9.66, "ozone"),
        CanonicalBand("IR10.8", 10.80, "window"),
        CanonicalBand("IR12.0", 12.00, "window"),
        CanonicalBand("IR13.4", 13.40, "co2"),
        # Solar reflection contaminates 3.9 µm by day: off unless asked for.
        CanonicalBand("IR3.9", 3.92, "shortwave", default=False),
    )
}

DEFAULT_BANDS: tuple[str, ...] = tuple(b.name for b in CANONICAL_BANDS.values() if b.default)


@dataclass(frozen=True)
class SensorChannel:
    """A sensor's own channel standing in for a canonical band."""

    canonical: str
    channel: str
    wavelength_um: float


def _channels(*rows: tuple[str, str, float]) -> dict[str, SensorChannel]:
    return {c: SensorChannel(c, ch, wl) for c, ch, wl in rows}


#: Each sensor's channel for each canonical band (centre wavelengths from the instrument specs).
SENSOR_CHANNELS: dict[str, dict[str, SensorChannel]] = {
    "SEVIRI": _channels(
        ("WV6.2", "WV_062", 6.25),
        ("WV7.3", "WV_073", 7.35),
        ("IR8.7", "IR_087", 8.70),
        ("IR9.7", "IR_097", 9.66),
        ("IR10.8", "IR_108", 10.80),
        ("IR12.0", "IR_120", 12.00),
        ("IR13.4", "IR_134", 13.40),
        ("IR3.9", "IR_039", 3.92),
    ),
    # ABI: C14 (11.2 µm) stands in for IR10.8 by default; C13 (10.35 µm) is the alternative.
    "ABI": _channels(
        ("WV6.2", "C08", 6.19),
        ("WV7.3", "C10", 7.34),
        ("IR8.7", "C11", 8.50),
        ("IR9.7", "C12", 9.61),
        ("IR10.8", "C14", 11.20),
        ("IR12.0", "C15", 12.30),
        ("IR13.4", "C16", 13.30),
        ("IR3.9", "C07", 3.90),
    ),
    "AHI": _channels(
        ("WV6.2", "B08", 6.24),
        ("WV7.3", "B10", 7.35),
        ("IR8.7", "B11", 8.59),
        ("IR9.7", "B12", 9.64),
        ("IR10.8", "B14", 11.20),
        ("IR12.0", "B15", 12.40),
        ("IR13.4", "B16", 13.30),
        ("IR3.9", "B07", 3.89),
    ),
}

#: The configurable alternative for IR10.8 on sensors that have two candidate channels.
IR108_ALTERNATIVES: dict[str, SensorChannel] = {
    "ABI": SensorChannel("IR10.8", "C13", 10.35),
    "AHI": SensorChannel("IR10.8", "B13", 10.40),
}


def validate_bands(bands: Sequence[str]) -> tuple[str, ...]:
    """Check a band selection against the catalogue.

    Args:
        bands: Canonical band names.

    Returns:
        The bands as a tuple, in the order given.

    Raises:
        UnknownNameError: A name is not a canonical band.
        ConfigError: The selection is empty or repeats a band.
    """
    if len(bands) == 0:
        raise ConfigError("bands: the band selection is empty")
    for name in bands:
        if name not in CANONICAL_BANDS:
            raise UnknownNameError(unknown_name_message("band", name, CANONICAL_BANDS))
    if len(set(bands)) != len(bands):
        raise ConfigError(f"bands: {list(bands)} names a band twice")
    return tuple(bands)


def sensor_channel(sensor: str, band: str, ir108: str | None = None) -> SensorChannel:
    """Return the channel of ``sensor`` that stands in for canonical ``band``.

    Args:
        sensor: ``"SEVIRI"``, ``"ABI"`` or ``"AHI"``.
        band: A canonical band name.
        ir108: For ``IR10.8`` on ABI/AHI, the channel to use instead of the default (``"C13"`` or
            ``"B13"``).

    Returns:
        The sensor channel.

    Raises:
        UnknownNameError: Unknown sensor or band.
        ConfigError: ``ir108`` is not a valid alternative for this sensor.
    """
    if sensor not in SENSOR_CHANNELS:
        raise UnknownNameError(unknown_name_message("sensor", sensor, SENSOR_CHANNELS))
    channels = SENSOR_CHANNELS[sensor]
    if band not in channels:
        raise UnknownNameError(unknown_name_message("band", band, channels))
    if band == "IR10.8" and ir108 is not None and ir108 != channels[band].channel:
        alt = IR108_ALTERNATIVES.get(sensor)
        if alt is None or alt.channel != ir108:
            allowed = [channels[band].channel] + ([alt.channel] if alt else [])
            raise ConfigError(f"ir108: {sensor} has no channel {ir108!r} for IR10.8; use {allowed}")
        return alt
    return channels[band]
