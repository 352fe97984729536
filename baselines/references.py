"""Reference models that every learned model must beat."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from qpebench.models import F32, ModelCard, RainModel, check_input
from qpebench.registry import MODELS


class ZeroRain(RainModel):
    """Predicts no rain anywhere: the floor of every skill score."""

    def __init__(self, bands: Sequence[str], step: int) -> None:
        self.card = ModelCard(
            name="zero_rain",
            family="reference",
            description="No rain anywhere (skill floor)",
            frames=1,
            bands=tuple(bands),
            step=step,
        )

    def predict(self, ir: F32) -> F32:
        """Zeros of shape ``(N, H, W)``."""
        check_input(self.card, ir)
        n, _, _, h, w = ir.shape
        return np.zeros((n, h, w), np.float32)


@MODELS.register("zero_rain")
def zero_rain(frames: int, bands: Sequence[str], step: int = 1) -> ZeroRain:
    """The zero-rain reference (uses no input)."""
    return ZeroRain(bands[:1], step)
