"""Streaming, mergeable verification metrics, pooled over every valid pixel of a test set.

Accumulators hold sums and counts only (memory independent of the number of samples) and merge
exactly, so evaluation can be sharded and the merge of shards equals one pass. Categorical scores
come from contingency counts pooled over the whole set, never averaged per batch; an event is
``rate >= threshold`` (the ``scores`` package convention). Pixels where ``valid`` is False, or the
observation is NaN, are left out.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from qpebench.registry import METRICS

THRESHOLDS: tuple[float, ...] = (0.1, 1.0, 5.0, 10.0)


def threshold_label(threshold: float) -> str:
    """``1.0`` → ``"1"``, ``0.1`` → ``"0.1"``: the suffix of metric names such as ``csi@1``."""
    return f"{threshold:g}"


def _ratio(num: float, den: float) -> float:
    return num / den if den else math.nan


def _pooled_inputs(
    pred: npt.NDArray[np.floating[Any]],
    obs: npt.NDArray[np.floating[Any]],
    valid: npt.NDArray[np.bool_],
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    if pred.shape != obs.shape or valid.shape != obs.shape:
        raise ValueError(
            f"pred {pred.shape}, obs {obs.shape} and valid {valid.shape} must have one shape"
        )
    use = valid & np.isfinite(obs)
    p = pred[use].astype(np.float64)
    if not np.isfinite(p).all():
        raise ValueError("predictions contain NaN or infinity at valid pixels")
    return p, obs[use].astype(np.float64)


class Accumulator(ABC):
    """A metric family accumulated over batches."""

    @abstractmethod
    def update(
        self,
        pred: npt.NDArray[np.floating[Any]],
        obs: npt.NDArray[np.floating[Any]],
        valid: npt.NDArray[np.bool_],
    ) -> None:
        """Add a batch of predictions and observations (any equal shapes)."""

    @abstractmethod
    def merge(self, other: Accumulator) -> None:
        """Add the counts of another accumulator of the same kind and settings."""

    @abstractmethod
    def result(self) -> dict[str, float]:
        """The scores, by name (NaN where undefined)."""


@METRICS.register("categorical")
class ContingencyAccumulator(Accumulator):
    """Pooled 2×2 contingency counts at each threshold → POD, FAR, CSI, ETS, HSS, frequency bias."""

    def __init__(self, thresholds: Sequence[float] = THRESHOLDS) -> None:
        self.thresholds = tuple(float(t) for t in thresholds)
        # hits, misses, false alarms, correct negatives per threshold
        self.counts = np.zeros((len(self.thresholds), 4), np.int64)

    def update(
        self,
        pred: npt.NDArray[np.floating[Any]],
        obs: npt.NDArray[np.floating[Any]],
        valid: npt.NDArray[np.bool_],
    ) -> None:
        """Add a batch."""
        p, o = _pooled_inputs(pred, obs, valid)
        for i, t in enumerate(self.thresholds):
            pe, oe = p >= t, o >= t
            hits = int(np.count_nonzero(pe & oe))
            n_p, n_o = int(np.count_nonzero(pe)), int(np.count_nonzero(oe))
            self.counts[i] += (hits, n_o - hits, n_p - hits, p.size - n_p - n_o + hits)

    def merge(self, other: Accumulator) -> None:
        """Add another accumulator's counts."""
        if not isinstance(other, ContingencyAccumulator) or other.thresholds != self.thresholds:
            raise ValueError("can only merge contingency counts with the same thresholds")
        self.counts += other.counts

    def result(self) -> dict[str, float]:
        """POD, FAR, CSI, ETS, HSS and frequency bias per threshold."""
        out: dict[str, float] = {}
        for t, (a, c, b, d) in zip(self.thresholds, self.counts.astype(float), strict=True):
            n = a + b + c + d
            label = threshold_label(t)
            a_random = _ratio((a + b) * (a + c), n)
            out[f"pod@{label}"] = _ratio(a, a + c)
            out[f"far@{label}"] = _ratio(b, a + b)
            out[f"csi@{label}"] = _ratio(a, a + b + c)
            out[f"ets@{label}"] = _ratio(a - a_random, a + b + c - a_random)
            out[f"hss@{label}"] = _ratio(2 * (a * d - b * c), (a + c) * (c + d) + (a + b) * (b + d))
            out[f"fbias@{label}"] = _ratio(a + b, a + c)
        return out


@METRICS.register("continuous")
class ContinuousAccumulator(Accumulator):
    """Pooled sums → bias (mean error), relative bias, MAE, RMSE and Pearson r, in mm/h."""

    _KEYS = ("n", "sum_p", "sum_o", "sum_pp", "sum_oo", "sum_po", "sum_abs", "sum_sq")

    def __init__(self) -> None:
        self.sums = dict.fromkeys(self._KEYS, 0.0)

    def update(
        self,
        pred: npt.NDArray[np.floating[Any]],
        obs: npt.NDArray[np.floating[Any]],
        valid: npt.NDArray[np.bool_],
    ) -> None:
        """Add a batch."""
        p, o = _pooled_inputs(pred, obs, valid)
        for key, value in zip(
            self._KEYS,
            (p.size, p.sum(), o.sum(), p @ p, o @ o, p @ o, np.abs(p - o).sum(), (p - o) @ (p - o)),
            strict=True,
        ):
            self.sums[key] += float(value)

    def merge(self, other: Accumulator) -> None:
        """Add another accumulator's sums."""
        if not isinstance(other, ContinuousAccumulator):
            raise ValueError("can only merge continuous sums with continuous sums")
        for key in self._KEYS:
            self.sums[key] += other.sums[key]

    def result(self) -> dict[str, float]:
        """Bias, relative bias, MAE, RMSE, Pearson r and the pixel count."""
        s = self.sums
        n = s["n"]
        mse = _ratio(s["sum_sq"], n)  # summed directly: no cancellation of large power sums
        cov = s["sum_po"] - s["sum_p"] * s["sum_o"] / n if n else math.nan
        var_p = s["sum_pp"] - s["sum_p"] ** 2 / n if n else math.nan
        var_o = s["sum_oo"] - s["sum_o"] ** 2 / n if n else math.nan
        return {
            "n_pixels": n,
            "bias": _ratio(s["sum_p"] - s["sum_o"], n),
            "relative_bias": _ratio(s["sum_p"] - s["sum_o"], s["sum_o"]),
            "mae": _ratio(s["sum_abs"], n),
            "rmse": math.sqrt(mse) if not math.isnan(mse) else math.nan,
            "pearson_r": _ratio(cov, math.sqrt(var_p * var_o))
            if var_p > 0 and var_o > 0
            else math.nan,
        }


def metric_set(names: Sequence[str] = ("categorical", "continuous")) -> list[Accumulator]:
    """Fresh accumulators for the registered metric families ``names``."""
    return [METRICS.get(name)() for name in names]
