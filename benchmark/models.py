"""The model interface every registry entry implements, and the model card.

A registry entry in :data:`qpebench.registry.MODELS` is a factory ``(frames, bands, **params) ->
RainModel``. A :class:`RainModel` estimates the rain rate (mm/h, non-negative) at the target time
from the IR frames ``(N, T, C, H, W)``; it may learn from the training set only (``fit``), and
saves and loads itself without pickling arbitrary objects.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from qpebench.store import SampleStore

F32 = npt.NDArray[np.float32]


@dataclass(frozen=True)
class ModelCard:
    """What a model needs and costs, carried into every result record.

    Attributes:
        name: Registry name.
        family: ``"reference"``, ``"ir_formula"``, ``"cnn"``, ``"temporal"``, ``"sklearn"`` …
        description: One line.
        frames: Input frames the model uses (the last ``frames`` of each sample).
        bands: Canonical bands the model uses, in order.
        output: ``"rate"``, ``"probability"`` or ``"quantiles"``.
        trainable: Whether the model learns from the training set.
        parameters: Learned parameter count.
        flops_per_sample: Floating-point operations of one forward pass on one 64×64 patch.
        causal: Uses only frames at or before the target time.
    """

    name: str
    family: str
    description: str
    frames: int
    bands: tuple[str, ...]
    output: str = "rate"
    trainable: bool = False
    parameters: int = 0
    flops_per_sample: int = 0
    causal: bool = True

    def to_json(self) -> dict[str, Any]:
        """The card as plain JSON types."""
        out = asdict(self)
        out["bands"] = list(self.bands)
        return out


@dataclass(frozen=True)
class TrainData:
    """The training and validation sets a model may learn from (indices into one store)."""

    store: SampleStore
    train: npt.NDArray[np.int64]
    val: npt.NDArray[np.int64]


class RainModel(ABC):
    """Estimates rain rate at the target time from IR frames."""

    card: ModelCard

    def fit(self, data: TrainData, *, seed: int, progress: bool = True) -> dict[str, Any]:
        """Learn from ``data.train`` (and select on ``data.val``); fixed models do nothing.

        Returns:
            A training log (losses, epochs, time) recorded in the result.
        """
        return {}

    @abstractmethod
    def predict(self, ir: F32) -> F32:
        """Rain rate in mm/h ``(N, H, W)`` from IR ``(N, T, C, H, W)`` (card's frames and bands)."""

    def save(self, path: Path) -> None:  # noqa: B027 - fixed models have nothing to save
        """Save what the model learned (nothing for fixed models)."""

    def load(self, path: Path) -> None:  # noqa: B027 - fixed models have nothing to load
        """Load what :meth:`save` wrote."""
