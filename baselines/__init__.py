"""The model registry entries: references, classical IR baselines and neural networks.

Importing this package registers every built-in model in :data:`qpebench.registry.MODELS`.
"""

from . import calibrated, ir_formulas, references, sklearn_pixel, temporal, unet

__all__ = ["calibrated", "ir_formulas", "references", "sklearn_pixel", "temporal", "unet"]
