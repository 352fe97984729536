"""Dataset adapters: readers of real archives and the synthetic generator, all writing one store.

Importing this package registers the built-in adapters in :data:`qpebench.registry.DATASETS`.
"""

from . import synthetic

__all__ = ["synthetic"]
