"""Classical rain-rate formulas of the 10.8 µm brightness temperature."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from qpebench.errors import ConfigError
from qpebench.models import F32, ModelCard, RainModel
from qpebench.registry import MODELS

#: Auto-Estimator (Vicente, Scofield & Menzel 1998, BAMS 79:1883): R = A·exp(−B·T^1.2), mm/h.
AE_A = 1.1183e11
AE_B = 3.6382e-2
AE_EXPONENT = 1.2


def auto_estimator_rate(tb_k: F32) -> F32:
    """Auto-Estimator rain rate in mm/h from the 10.8 µm brightness temperature in K."""
    t = tb_k.astype(np.float64)
    return (AE_A * np.exp(-AE_B * t**AE_EXPONENT)).astype(np.float32)


class AutoEstimator(RainModel):
    """The Auto-Estimator power law on the last frame's IR10.8 band (no fitted parameter)."""

    def __init__(self) -> None:
        self.card = ModelCard(
            name="auto_estimator",
            family="ir_formula",
            description="R = 1.1183e11·exp(−3.6382e−2·T^1.2), T = Tb(10.8 µm) (Vicente 1998)",
            frames=1,
            bands=("IR10.8",),
            flops_per_sample=4 * 64 * 64,
        )

    def predict(self, ir: F32) -> F32:
        """Rain rate from ``ir[:, -1, 0]`` (the runner passes IR10.8 only)."""
        return auto_estimator_rate(ir[:, -1, 0])


@MODELS.register("auto_estimator")
def auto_estimator(frames: int, bands: Sequence[str]) -> AutoEstimator:
    """The Auto-Estimator; needs IR10.8 among the configured bands."""
    if "IR10.8" not in bands:
        raise ConfigError(f"auto_estimator needs band IR10.8, the configuration has {list(bands)}")
    return AutoEstimator()
