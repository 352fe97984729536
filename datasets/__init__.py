"""Dataset adapters: readers of real archives and the synthetic generator, all writing one store.

Importing this package registers the built-in store builders in
:data:`qpebench.registry.DATASETS` and the radar readers in :data:`qpebench.registry.RADAR_READERS`.
"""

from . import bom, fmi, knmi, meteoswiss, mrms, odim, radolan, synthetic

__all__ = ["bom", "fmi", "knmi", "meteoswiss", "mrms", "odim", "radolan", "synthetic"]
