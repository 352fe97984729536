"""Dataset adapters: readers of real archives and the synthetic generator, all writing one store.

Importing this package registers the built-in store builders (``synthetic``, ``colocated``,
``combined``) in :data:`qpebench.registry.DATASETS`, the radar readers in
:data:`qpebench.registry.RADAR_READERS` and the satellite readers in
:data:`qpebench.registry.SATELLITE_READERS`.
"""

from . import (
    abi,
    ahi,
    bom,
    combined,
    fmi,
    knmi,
    meteoswiss,
    mrms,
    odim,
    radolan,
    regions,
    seviri,
    synthetic,
)

__all__ = [
    "abi",
    "ahi",
    "bom",
    "combined",
    "fmi",
    "knmi",
    "meteoswiss",
    "mrms",
    "odim",
    "radolan",
    "regions",
    "seviri",
    "synthetic",
]
