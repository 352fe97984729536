"""The model registry entries: references, classical IR formulas and neural networks.

Importing this package registers every built-in model in :data:`qpebench.registry.MODELS`.
"""

from . import ir_formulas, references, unet

__all__ = ["ir_formulas", "references", "unet"]
