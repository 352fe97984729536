"""Streaming, mergeable verification metrics, pooled over every valid pixel of a test set.

Accumulators hold sums and counts only (memory independent of the number of samples) and merge
exactly, so evaluation can be sharded and the merge of shards equals one pass. Categorical scores
come from contingency counts pooled over the whole set, never averaged per batch; an event is
``rate >= threshold`` (the ``scores`` package convention; pysteps' categorical scores use ``>``).
Pixels where ``valid`` is False, or the observation is NaN, are left out.

The fractions skill score (Roberts & Lean 2008, Mon. Wea. Rev. 136, 78–97) pools its numerator
and denominator over every field of the set (never an average of per-field FSS): events are
``rate >= threshold`` at valid pixels (invalid pixels are no event in either field, as pysteps
treats NaN), fractions are means over an ``n × n`` window (``n`` odd) centred on each pixel with
zeros outside the field (pysteps' ``uniform_filter(mode="constant")``), summed over every pixel.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from qpebench.registry import METRICS

THRESHOLDS: tuple[float, ...] = (0.1, 1.0, 5.0, 10.0, 15.0)
#: FSS thresholds (mm/h) and window sizes (pixels, odd).
FSS_THRESHOLDS: tuple[float, ...] = (1.0, 5.0)
FSS_SCALES: tuple[int, ...] = (1, 5, 9, 17, 33)


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


def box_fraction(events: npt.NDArray[np.bool_], size: int) -> npt.NDArray[np.float64]:
    """Fraction of events in the ``size × size`` window centred on each pixel of ``(N, H, W)``.

    Zeros outside the field; computed from an integral image (cost independent of ``size``).
    """
    counts = _window_counts(_integral(events, size // 2), size // 2, size)
    return counts.astype(np.float64) / float(size * size)


def _integral(events: npt.NDArray[np.bool_], pad: int) -> npt.NDArray[np.float32]:
    """Integral image of ``events`` zero-padded by ``pad`` (+ one leading row and column).

    float32 holds every partial count exactly (below 2**24 for fields up to 4096 × 4096).
    """
    n, h, w = events.shape
    padded = np.zeros((n, h + 2 * pad + 1, w + 2 * pad + 1), np.float32)
    padded[:, pad + 1 : pad + 1 + h, pad + 1 : pad + 1 + w] = events
    out: npt.NDArray[np.float32] = padded.cumsum(1, out=padded).cumsum(2, out=padded)
    return out


def _window_counts(c: npt.NDArray[np.float32], pad: int, size: int) -> npt.NDArray[np.float32]:
    """Event counts in the ``size`` window centred on each pixel (exact integers).

    ``c`` is the integral image of the field padded by ``pad ≥ size // 2``.
    """
    h, w = c.shape[1] - 2 * pad - 1, c.shape[2] - 2 * pad - 1
    lo = pad - size // 2  # integral-image row of the window's top edge for output row 0
    top, bottom = slice(lo, lo + h), slice(lo + size, lo + size + h)
    left, right = slice(lo, lo + w), slice(lo + size, lo + size + w)
    rows = c[:, top.start : bottom.stop, right] - c[:, top.start : bottom.stop, left]
    out: npt.NDArray[np.float32] = rows[:, size:] - rows[:, :h]
    return out


def _dots(a: npt.NDArray[np.float32], b: npt.NDArray[np.float32]) -> npt.NDArray[np.float64]:
    """``(a·a, a·b, b·b)`` of integer-valued float32 fields, accumulated in float64.

    Every product of two window counts is an integer below 2**24 (windows up to 64 × 64), so
    each term is exact in float32 and the sums are exact to float64 rounding.
    """
    x, y = a.reshape(-1, a.shape[-1]), b.reshape(-1, b.shape[-1])
    return np.array(
        [np.einsum("ij,ij->", u, v, dtype=np.float64) for u, v in ((x, x), (x, y), (y, y))]
    )


@METRICS.register("fss")
class FSSAccumulator(Accumulator):
    """Pooled fractions skill score at each (threshold, window size): ``fss<size>@<threshold>``."""

    def __init__(
        self, thresholds: Sequence[float] = FSS_THRESHOLDS, scales: Sequence[int] = FSS_SCALES
    ) -> None:
        self.thresholds = tuple(float(t) for t in thresholds)
        self.scales = tuple(int(n) for n in scales)
        if any(n < 1 or n % 2 == 0 for n in self.scales):
            raise ValueError(f"FSS window sizes must be odd and positive, got {list(scales)}")
        # Σ Pf², Σ Pf·Po, Σ Po² per threshold and scale
        self.sums = np.zeros((len(self.thresholds), len(self.scales), 3), np.float64)

    def update(
        self,
        pred: npt.NDArray[np.floating[Any]],
        obs: npt.NDArray[np.floating[Any]],
        valid: npt.NDArray[np.bool_],
    ) -> None:
        """Add a batch of fields ``(N, H, W)`` (or one ``(H, W)``)."""
        if pred.shape != obs.shape or valid.shape != obs.shape or obs.ndim not in (2, 3):
            raise ValueError(
                f"FSS needs fields (N, H, W) or (H, W) of one shape: pred {pred.shape}, "
                f"obs {obs.shape}, valid {valid.shape}"
            )
        use = valid & np.isfinite(obs)
        if not np.isfinite(pred[use]).all():
            raise ValueError("predictions contain NaN or infinity at valid pixels")
        p3, o3, u3 = (a.reshape((-1, *a.shape[-2:])) for a in (pred, obs, use))
        pad = max(self.scales) // 2
        for i, t in enumerate(self.thresholds):
            # one integral image per field and threshold serves every window size
            cp, co = _integral(u3 & (p3 >= t), pad), _integral(u3 & (o3 >= t), pad)
            for j, n in enumerate(self.scales):
                wp, wo = _window_counts(cp, pad, n), _window_counts(co, pad, n)
                self.sums[i, j] += _dots(wp, wo) / float(n * n) ** 2  # fractions = counts / n²

    def merge(self, other: Accumulator) -> None:
        """Add another accumulator's sums."""
        if (
            not isinstance(other, FSSAccumulator)
            or other.thresholds != self.thresholds
            or other.scales != self.scales
        ):
            raise ValueError("can only merge FSS sums with the same thresholds and scales")
        self.sums += other.sums

    def result(self) -> dict[str, float]:
        """``fss<size>@<threshold>`` = 1 − Σ(Pf − Po)² / (ΣPf² + ΣPo²), pooled."""
        out: dict[str, float] = {}
        for i, t in enumerate(self.thresholds):
            for j, n in enumerate(self.scales):
                ff, fo, oo = self.sums[i, j]
                out[f"fss{n}@{threshold_label(t)}"] = 1.0 - _ratio(ff - 2 * fo + oo, ff + oo)
        return out


def metric_set(names: Sequence[str] = ("categorical", "continuous", "fss")) -> list[Accumulator]:
    """Fresh accumulators for the registered metric families ``names``."""
    return [METRICS.get(name)() for name in names]
