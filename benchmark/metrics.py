"""Streaming, mergeable verification metrics, pooled over every valid pixel of a test set.

Accumulators hold sums and counts only (memory independent of the number of samples) and merge
exactly, so evaluation can be sharded and the merge of shards equals one pass. Their state
(:meth:`Accumulator.state`) is a flat float64 vector that is **linear**: the state of a merge is
the sum of the states, so any non-negative weighted sum of states (a bootstrap replicate) is a
valid state. Categorical scores come from contingency counts pooled over the whole set, never
averaged per batch; an event is ``rate >= threshold``. Pixels where ``valid`` is False, or the
observation is NaN, are left out of every score.

Families (``docs/metrics.md`` gives every formula and convention):

- ``categorical``: POD, FAR, CSI, ETS, HSS, frequency bias per threshold;
- ``continuous``: bias, relative bias, MAE, RMSE, Pearson r;
- ``fss``: the fractions skill score (Roberts & Lean 2008), numerator and denominator pooled over
  every field, odd windows centred on each pixel with zeros outside the field;
- ``histogram``: rain-rate histograms of predictions and observations, their Wasserstein-1
  distance and Kolmogorov–Smirnov statistic;
- ``brier`` (consumes the ``probability`` output): Brier score, its binned Murphy decomposition
  and the reliability curve;
- ``crps`` (consumes the ``quantiles`` output): CRPS approximated from the quantile (pinball)
  scores, the pinball score and the coverage of each level.

Speed (``docs/performance.md``): the pointwise rate families work on chunks of :data:`CHUNK`
pixels so that their temporaries stay in the CPU cache, with masks instead of compaction; FSS
works field by field on int32 integral images. Dot products use ``einsum``, not BLAS, whose
threads stall on a busy machine. Every count and window sum is exact.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from typing import Any, ClassVar, Self

import numpy as np
import numpy.typing as npt

from qpebench.errors import ConfigError, SampleValidationError
from qpebench.registry import METRICS

F64 = npt.NDArray[np.float64]
Floats = npt.NDArray[np.floating[Any]]
Mask = npt.NDArray[np.bool_]

THRESHOLDS: tuple[float, ...] = (0.1, 1.0, 5.0, 10.0, 15.0)
#: FSS thresholds (mm/h) and window sizes (pixels, odd).
FSS_THRESHOLDS: tuple[float, ...] = (1.0, 5.0)
FSS_SCALES: tuple[int, ...] = (1, 5, 9, 17, 33)
#: Histogram bin edges in mm/h: a dry bin [0, 0.1) (negative rates fall in it too), 35
#: log-spaced bins from 0.1 to 300 mm/h, and an overflow bin [300, ∞) after the last edge.
HISTOGRAM_EDGES: tuple[float, ...] = (0.0, *(float(e) for e in np.geomspace(0.1, 300.0, 36)))
#: Bins of the reliability curve and of the binned Murphy decomposition of the Brier score.
RELIABILITY_BINS = 10
#: Rate families of :func:`metric_set`.
RATE_FAMILIES: tuple[str, ...] = ("categorical", "continuous", "fss", "histogram")
#: Pixels per chunk of the pointwise rate families (a chunk's arrays fit the L2 cache).
CHUNK = 1 << 16
#: Rows of output per strip of the FSS window sums (bounds the scratch memory).
_FSS_STRIP = 128
_OUTPUTS = ("rate", "probability", "quantiles")


def threshold_label(threshold: float) -> str:
    """``1.0`` → ``"1"``, ``0.1`` → ``"0.1"``: the suffix of metric names such as ``csi@1``."""
    return f"{threshold:g}"


def histogram_centres() -> F64:
    """The rate (mm/h) standing for each histogram bin in the Wasserstein distance.

    0 for the dry bin, the geometric centre of each log-spaced bin and 300 mm/h (the lower edge)
    for the overflow bin.
    """
    edges = np.asarray(HISTOGRAM_EDGES)
    return np.concatenate([[0.0], np.sqrt(edges[1:-1] * edges[2:]), [edges[-1]]])


def _ratio(num: float, den: float) -> float:
    return num / den if den else math.nan


def _positive_thresholds(thresholds: Sequence[float], family: str) -> tuple[float, ...]:
    out = tuple(float(t) for t in thresholds)
    if not out or not all(math.isfinite(t) and t > 0 for t in out):
        raise ConfigError(f"{family} thresholds must be positive mm/h, got {list(thresholds)}")
    return out


def _check_shapes(pred: Floats, obs: Floats, valid: Mask) -> None:
    if pred.shape != obs.shape or valid.shape != obs.shape:
        raise SampleValidationError(
            f"pred {pred.shape}, obs {obs.shape} and valid {valid.shape} must have one shape"
        )


def _check_finite(values: Floats, what: str, use: Mask | None = None) -> None:
    """Refuse NaN or infinity in ``values`` (where ``use`` is True, if given)."""
    finite = np.isfinite(values)
    if not (finite.all() or (use is not None and not (use & ~finite).any())):
        raise SampleValidationError(f"{what} contain NaN or infinity at valid pixels")


def _chunks(pred: Floats, obs: Floats, valid: Mask) -> Iterator[tuple[Floats, Floats, Mask, int]]:
    """``(pred, obs, use, n)`` per chunk of at most :data:`CHUNK` pixels (flat views).

    ``use`` marks the scored pixels (``valid`` and a finite observation), ``n`` counts them.
    Chunks keep the temporaries of the families in the CPU cache.

    Raises:
        SampleValidationError: The shapes differ or a prediction at a scored pixel is not finite.
    """
    _check_shapes(pred, obs, valid)
    p, o, v = pred.reshape(-1), obs.reshape(-1), valid.reshape(-1)
    for start in range(0, o.size, CHUNK):
        part = slice(start, start + CHUNK)
        use = v[part] & np.isfinite(o[part])
        _check_finite(p[part], "predictions", use)
        yield p[part], o[part], use, int(np.count_nonzero(use))


def _zeroed(values: Floats, use: Mask) -> F64:
    """``values`` as float64, zero where ``use`` is False (zeros add nothing to a sum)."""
    out: F64 = np.where(use, values, np.float64(0.0))
    return out


class Accumulator(ABC):
    """A metric family accumulated over batches.

    Attributes:
        needs: The model output the family consumes: ``"rate"``, ``"probability"`` or
            ``"quantiles"`` (the runner calls ``acc.update(outputs[acc.needs], obs, valid)``).
    """

    needs: ClassVar[str] = "rate"
    #: The linear state (sums and counts), any shape; :meth:`state` flattens it.
    _state: F64

    @abstractmethod
    def settings(self) -> dict[str, Any]:
        """The constructor's keyword arguments (equal settings are needed to merge)."""

    @abstractmethod
    def update(self, pred: Floats, obs: Floats, valid: Mask) -> None:
        """Add a batch of the family's output, observations and validity."""

    @abstractmethod
    def result(self) -> dict[str, float]:
        """The scores, by name (NaN where undefined)."""

    def curves(self) -> dict[str, Any]:
        """Curves for plots, as JSON types (empty for families without curves)."""
        return {}

    def fresh(self) -> Self:
        """An empty accumulator with the same settings."""
        return type(self)(**self.settings())

    def state(self) -> F64:
        """The accumulated sums and counts as one flat vector (a copy).

        Linear: after ``a.merge(b)``, ``a.state()`` equals the old ``a.state() + b.state()``.
        """
        return self._state.reshape(-1).copy()

    def load_state(self, state: npt.ArrayLike) -> None:
        """Set the accumulated sums and counts from a vector :meth:`state` (or a sum of them) gave.

        Raises:
            ConfigError: The vector does not have this family's length or is not finite.
        """
        vec = np.asarray(state, dtype=np.float64)
        if vec.shape != (self._state.size,):
            raise ConfigError(
                f"{type(self).__name__} {self.settings()} takes a state of shape "
                f"({self._state.size},), got {vec.shape}"
            )
        if not np.isfinite(vec).all():
            raise ConfigError(f"{type(self).__name__} state contains NaN or infinity")
        self._state[...] = vec.reshape(self._state.shape)

    def merge(self, other: Accumulator) -> None:
        """Add the sums and counts of another accumulator of the same kind and settings.

        Raises:
            ConfigError: ``other`` is of another family or has other settings.
        """
        if type(other) is not type(self) or other.settings() != self.settings():
            raise ConfigError(
                f"can only merge {type(self).__name__} with the same settings "
                f"{self.settings()}, got {type(other).__name__} {other.settings()}"
            )
        self._state += other._state


@METRICS.register("categorical")
class ContingencyAccumulator(Accumulator):
    """Pooled 2×2 contingency counts at each threshold → POD, FAR, CSI, ETS, HSS, frequency bias."""

    def __init__(self, thresholds: Sequence[float] = THRESHOLDS) -> None:
        self.thresholds = _positive_thresholds(thresholds, "contingency")
        # hits, misses, false alarms, correct negatives per threshold
        self._state = np.zeros((len(self.thresholds), 4))

    @property
    def counts(self) -> F64:
        """``(thresholds, 4)``: hits, misses, false alarms, correct negatives."""
        return self._state

    def settings(self) -> dict[str, Any]:
        """The thresholds."""
        return {"thresholds": self.thresholds}

    def update(self, pred: Floats, obs: Floats, valid: Mask) -> None:
        """Add a batch of rates (any equal shapes)."""
        counts = np.zeros((len(self.thresholds), 4), np.int64)
        for p, o, use, n in _chunks(pred, obs, valid):
            for i, t in enumerate(self.thresholds):
                pe, oe = p >= np.float64(t), o >= np.float64(t)  # compared in float64
                pe &= use
                oe &= use
                n_p, n_o = np.count_nonzero(pe), np.count_nonzero(oe)
                hits = np.count_nonzero(np.logical_and(pe, oe, out=pe))
                counts[i] += (hits, n_o - hits, n_p - hits, n - n_p - n_o + hits)
        self._state += counts

    def result(self) -> dict[str, float]:
        """POD, FAR, CSI, ETS, HSS and frequency bias per threshold."""
        out: dict[str, float] = {}
        for t, (a, c, b, d) in zip(self.thresholds, self._state.tolist(), strict=True):
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

    KEYS = ("n", "sum_p", "sum_o", "sum_pp", "sum_oo", "sum_po", "sum_abs", "sum_sq")

    def __init__(self) -> None:
        self._state = np.zeros(len(self.KEYS))

    def settings(self) -> dict[str, Any]:
        """No settings."""
        return {}

    def update(self, pred: Floats, obs: Floats, valid: Mask) -> None:
        """Add a batch of rates (any equal shapes)."""
        sums = np.zeros(len(self.KEYS))
        for p_raw, o_raw, use, n in _chunks(pred, obs, valid):
            p, o = _zeroed(p_raw, use), _zeroed(o_raw, use)
            d = p - o
            sq = np.einsum("i,i->", d, d)  # einsum, not BLAS: no threads on a busy machine
            values = (
                p.sum(),
                o.sum(),
                *(np.einsum("i,i->", a, b) for a, b in ((p, p), (o, o), (p, o))),
            )
            sums += [n, *(float(v) for v in values), float(np.abs(d, out=d).sum()), float(sq)]
        self._state += sums

    def result(self) -> dict[str, float]:
        """Bias, relative bias, MAE, RMSE, Pearson r and the pixel count."""
        n, sum_p, sum_o, sum_pp, sum_oo, sum_po, sum_abs, sum_sq = self._state.tolist()
        mse = _ratio(sum_sq, n)  # summed directly: no cancellation of large power sums
        cov = sum_po - sum_p * sum_o / n if n else math.nan
        var_p = sum_pp - sum_p**2 / n if n else math.nan
        var_o = sum_oo - sum_o**2 / n if n else math.nan
        return {
            "n_pixels": n,
            "bias": _ratio(sum_p - sum_o, n),
            "relative_bias": _ratio(sum_p - sum_o, sum_o),
            "mae": _ratio(sum_abs, n),
            "rmse": math.sqrt(mse) if not math.isnan(mse) else math.nan,
            "pearson_r": _ratio(cov, math.sqrt(var_p * var_o))
            if var_p > 0 and var_o > 0
            else math.nan,
        }


def _transposed_integral(img: npt.NDArray[np.int32], out: npt.NDArray[np.int32]) -> None:
    """Integral images of the zero-padded fields ``img`` ``(C, Y, X)``, transposed into ``out``.

    ``out[c, x, y]`` is the sum of ``img[c, :y + 1, :x + 1]``. Both cumulative sums run along a
    non-contiguous axis (vectorised over whole rows), hence the transposed copy in between.
    ``img`` is overwritten with its column sums. int32 is exact for fields up to 2**30 pixels.
    """
    np.cumsum(img, 1, out=img)
    np.copyto(out, img.transpose(0, 2, 1))
    np.cumsum(out, 1, out=out)


def _window_band(
    integral: npt.NDArray[np.int32],
    pad: int,
    size: int,
    start: int,
    rows: npt.NDArray[np.int32],
    out: npt.NDArray[np.floating[Any]],
) -> None:
    """Event counts in the ``size`` window centred on each pixel of rows ``start …`` of a band.

    ``integral`` ``(C, A + 2 pad + 1, B + 2 pad + 1)`` is the integral image of fields ``(A, B)``
    zero-padded by ``pad ≥ size // 2`` (plus one leading zero row and column); ``out`` ``(C, R,
    B)`` receives the window sums of output rows ``start … start + R - 1``, through ``rows``
    ``(C, ≥ R + size, B)`` (scratch).
    """
    count, b = out.shape[1], out.shape[2]
    lo = pad - size // 2  # integral-image index of the window's edge before pixel 0
    band = integral[:, lo + start : lo + start + size + count]
    across = rows[:, : size + count]
    np.subtract(band[:, :, lo + size : lo + size + b], band[:, :, lo : lo + b], out=across)
    np.subtract(across[:, size:], across[:, :count], out=out)


def box_fraction(events: Mask, size: int) -> F64:
    """Fraction of events in the ``size × size`` window centred on each pixel of ``(N, H, W)``.

    Zeros outside the field; computed from an integral image (cost independent of ``size``).
    """
    n, h, w = events.shape
    pad = size // 2
    img = np.zeros((n, h + 2 * pad + 1, w + 2 * pad + 1), np.int32)
    img[:, pad + 1 : pad + 1 + h, pad + 1 : pad + 1 + w] = events
    integral = np.empty((n, w + 2 * pad + 1, h + 2 * pad + 1), np.int32)
    _transposed_integral(img, integral)
    counts = np.empty((n, w, h))
    _window_band(integral, pad, size, 0, np.empty((n, w + size, h), np.int32), counts)
    return counts.transpose(0, 2, 1) / float(size * size)


@METRICS.register("fss")
class FSSAccumulator(Accumulator):
    """Pooled fractions skill score at each (threshold, window size): ``fss<size>@<threshold>``.

    State per threshold and size, in window-count units (fractions × size², exact integers):
    ``Σ (Cf − Co)²`` and ``Σ Cf² + Co²`` over every pixel of every field, where ``Cf``, ``Co``
    are the event counts of the forecast and observed windows.
    """

    def __init__(
        self, thresholds: Sequence[float] = FSS_THRESHOLDS, scales: Sequence[int] = FSS_SCALES
    ) -> None:
        self.thresholds = _positive_thresholds(thresholds, "FSS")
        self.scales = tuple(int(n) for n in scales)
        if not self.scales or any(n < 1 or n % 2 == 0 for n in self.scales):
            raise ConfigError(f"FSS window sizes must be odd and positive, got {list(scales)}")
        self._state = np.zeros((len(self.thresholds), len(self.scales), 2))

    def settings(self) -> dict[str, Any]:
        """Thresholds and window sizes."""
        return {"thresholds": self.thresholds, "scales": self.scales}

    def update(self, pred: Floats, obs: Floats, valid: Mask) -> None:
        """Add a batch of rate fields ``(N, H, W)`` (or one ``(H, W)``).

        Per field and threshold, one integral image of ``d = Ef − Eo`` and one of ``s = Ef + Eo``
        (events ``E``) serve every window size: ``Σ d²`` is the numerator and
        ``(Σ s² + Σ d²) / 2 = Σ Cf² + Co²`` the denominator. Window sums run in strips of rows,
        which bounds the scratch memory on large fields.
        """
        if obs.ndim not in (2, 3):
            raise SampleValidationError(f"FSS needs fields (N, H, W) or (H, W), got {obs.shape}")
        _check_shapes(pred, obs, valid)
        p3, o3, v3 = (a.reshape((-1, *a.shape[-2:])) for a in (pred, obs, valid))
        h, w = o3.shape[1:]
        pad = max(self.scales) // 2
        img = np.zeros((2, h + 2 * pad + 1, w + 2 * pad + 1), np.int32)
        integral = np.empty((2, w + 2 * pad + 1, h + 2 * pad + 1), np.int32)
        strip = min(_FSS_STRIP, w)
        rows = np.empty((2, strip + max(self.scales), h), np.int32)
        band = np.empty((2, strip, h))
        inner = (slice(pad + 1, pad + 1 + h), slice(pad + 1, pad + 1 + w))
        sums = np.zeros(self._state.shape)  # Σ d², Σ s²
        for k in range(o3.shape[0]):
            use = v3[k] & np.isfinite(o3[k])
            _check_finite(p3[k], "predictions", use)
            for i, t in enumerate(self.thresholds):
                pe, oe = p3[k] >= np.float64(t), o3[k] >= np.float64(t)
                pe &= use
                oe &= use
                n_p, n_o = np.count_nonzero(pe), np.count_nonzero(oe)
                hits = np.count_nonzero(pe & oe)
                img[:, pad + 1 + h :] = 0  # the rows below the field, filled by the last cumsum
                np.subtract(pe, oe, out=img[0][inner], dtype=np.int32)
                np.add(pe, oe, out=img[1][inner], dtype=np.int32)
                _transposed_integral(img, integral)
                for j, n in enumerate(self.scales):
                    if n == 1:  # the windows are the events: d² = |d|, s² = s + 2 Ef·Eo
                        sums[i, j] += (n_p + n_o - 2 * hits, n_p + n_o + 2 * hits)
                        continue
                    for start in range(0, w, strip):
                        part = band[:, : min(strip, w - start)]
                        _window_band(integral, pad, n, start, rows, part)
                        flat = part.reshape(2, -1)
                        sums[i, j] += np.einsum("ij,ij->i", flat, flat)
        self._state[..., 0] += sums[..., 0]
        self._state[..., 1] += (sums[..., 0] + sums[..., 1]) / 2

    def result(self) -> dict[str, float]:
        """``fss<size>@<threshold>`` = 1 − Σ(Pf − Po)² / (ΣPf² + ΣPo²), pooled."""
        out: dict[str, float] = {}
        for i, t in enumerate(self.thresholds):
            for j, n in enumerate(self.scales):
                num, den = self._state[i, j].tolist()
                out[f"fss{n}@{threshold_label(t)}"] = 1.0 - _ratio(num, den)
        return out


@METRICS.register("histogram")
class HistogramAccumulator(Accumulator):
    """Histograms of predicted and observed rates at valid pixels in :data:`HISTOGRAM_EDGES`.

    ``wasserstein``: the Wasserstein-1 distance (mm/h) between the two binned distributions,
    each bin's mass at its :func:`histogram_centres` rate; ``ks``: the largest absolute
    difference of the two binned cumulative distributions.
    """

    def __init__(self) -> None:
        self._state = np.zeros((2, len(HISTOGRAM_EDGES)))  # pred, obs counts per bin

    def settings(self) -> dict[str, Any]:
        """No settings (the edges are a module constant)."""
        return {}

    def update(self, pred: Floats, obs: Floats, valid: Mask) -> None:
        """Add a batch of rates (any equal shapes)."""
        # bins for np.histogram (faster than searchsorted): [-inf, 0.1), ..., [300, inf]
        bins = np.array([-np.inf, *HISTOGRAM_EDGES[1:], np.inf])
        counts = np.zeros(self._state.shape, np.int64)
        for p, o, use, n in _chunks(pred, obs, valid):
            for row, values in enumerate((_zeroed(p, use), _zeroed(o, use))):
                counts[row] += np.histogram(values, bins)[0]
            counts[:, 0] -= use.size - n  # the zeros standing for pixels not scored
        self._state += counts

    def _cdfs(self) -> tuple[F64, F64] | None:
        pred, obs = self._state
        if not (pred.sum() > 0 and obs.sum() > 0):
            return None
        return np.cumsum(pred) / pred.sum(), np.cumsum(obs) / obs.sum()

    def result(self) -> dict[str, float]:
        """``wasserstein`` (mm/h) and ``ks``."""
        cdfs = self._cdfs()
        if cdfs is None:
            return {"wasserstein": math.nan, "ks": math.nan}
        gap = np.abs(cdfs[0] - cdfs[1])
        return {
            "wasserstein": float(gap[:-1] @ np.diff(histogram_centres())),
            "ks": float(gap.max()),
        }

    def curves(self) -> dict[str, Any]:
        """``{"histogram": {"edges", "pred", "obs"}}``: counts per bin, the last one ≥ edges[-1]."""
        pred, obs = self._state.tolist()
        return {"histogram": {"edges": list(HISTOGRAM_EDGES), "pred": pred, "obs": obs}}


@METRICS.register("brier")
class BrierAccumulator(Accumulator):
    """Brier score of the probability of ``rate >= threshold``, binned Murphy decomposition.

    State per probability bin (``bins`` equal bins of [0, 1], each closed on the left, the last
    also on the right): pixel count, Σ forecast probability, Σ observed event, Σ squared error.
    """

    needs: ClassVar[str] = "probability"

    def __init__(self, threshold: float, bins: int = RELIABILITY_BINS) -> None:
        self.threshold = _positive_thresholds([threshold], "Brier")[0]
        self.bins = int(bins)
        if self.bins < 1:
            raise ConfigError(f"Brier reliability bins must be at least 1, got {bins}")
        self.edges = np.linspace(0.0, 1.0, self.bins + 1)
        self._state = np.zeros((self.bins, 4))

    def settings(self) -> dict[str, Any]:
        """Threshold and number of bins."""
        return {"threshold": self.threshold, "bins": self.bins}

    def update(self, pred: Floats, obs: Floats, valid: Mask) -> None:
        """Add a batch of probabilities in [0, 1] (``pred``) and rates (``obs``), one shape."""
        _check_shapes(pred, obs, valid)
        use = valid & np.isfinite(obs)
        p = pred[use].astype(np.float64)
        bad = ~((p >= 0.0) & (p <= 1.0))
        if bad.any():
            raise SampleValidationError(
                f"probabilities must be in [0, 1] at valid pixels; {np.count_nonzero(bad)} are "
                f"not (e.g. {p[bad][0]})"
            )
        o = (obs[use] >= self.threshold).astype(np.float64)
        k = np.searchsorted(self.edges[1:-1], p, side="right")
        for col, weights in enumerate((None, p, o, (p - o) ** 2)):
            self._state[:, col] += np.bincount(k, weights=weights, minlength=self.bins)

    def result(self) -> dict[str, float]:
        """The Brier score ``brier@t`` and its binned Murphy decomposition.

        ``brier_reliability@t`` = ``Σ_k n_k (f̄_k − ō_k)² / N``, ``brier_resolution@t`` =
        ``Σ_k n_k (ō_k − ō)² / N``, ``brier_uncertainty@t`` = ``ō (1 − ō)``; REL − RES + UNC
        equals the Brier score only when the forecasts are constant within each bin.
        """
        count, _, events, sq_err = self._state.T
        n = float(count.sum())
        label = threshold_label(self.threshold)
        names = ("brier", "brier_reliability", "brier_resolution", "brier_uncertainty")
        if not n:
            return {f"{name}@{label}": math.nan for name in names}
        fbar, obar = self._bin_means()
        climate = events.sum() / n
        filled = count > 0
        values = (
            sq_err.sum() / n,
            float(count[filled] @ (fbar[filled] - obar[filled]) ** 2) / n,
            float(count[filled] @ (obar[filled] - climate) ** 2) / n,
            climate * (1.0 - climate),
        )
        return {f"{name}@{label}": float(v) for name, v in zip(names, values, strict=True)}

    def _bin_means(self) -> tuple[F64, F64]:
        """Mean forecast and observed frequency per bin (NaN in empty bins)."""
        count, forecast, events, _ = self._state.T
        with np.errstate(invalid="ignore", divide="ignore"):
            return forecast / count, events / count

    def curves(self) -> dict[str, Any]:
        """``{"reliability@t": {"bins", "forecast_mean", "observed_frequency", "count"}}``."""
        fbar, obar = self._bin_means()
        return {
            f"reliability@{threshold_label(self.threshold)}": {
                "bins": self.edges.tolist(),
                "forecast_mean": [None if math.isnan(v) else v for v in fbar.tolist()],
                "observed_frequency": [None if math.isnan(v) else v for v in obar.tolist()],
                "count": self._state[:, 0].tolist(),
            }
        }


@METRICS.register("crps")
class CRPSAccumulator(Accumulator):
    """CRPS of a quantile forecast from its pinball scores, and each level's coverage.

    ``crps = (2 / Q) Σ_j pinball@τ_j`` (Gneiting & Raftery 2007, eq. 21: the CRPS is twice the
    integral of the quantile score over the levels; Bröcker 2012), with
    ``pinball@τ = mean(max(τ (y − q), (τ − 1)(y − q)))`` and ``coverage@τ`` the fraction of
    observations ``y ≤ q``. State: pixel count, Σ pinball per level, Σ (y ≤ q) per level.
    """

    needs: ClassVar[str] = "quantiles"

    def __init__(self, levels: Sequence[float]) -> None:
        self.levels = tuple(float(q) for q in levels)
        if (
            not self.levels
            or not all(0.0 < q < 1.0 for q in self.levels)
            or any(b <= a for a, b in zip(self.levels, self.levels[1:], strict=False))
        ):
            raise ConfigError(f"quantile levels must increase within (0, 1), got {list(levels)}")
        self._state = np.zeros(1 + 2 * len(self.levels))

    def settings(self) -> dict[str, Any]:
        """The quantile levels."""
        return {"levels": self.levels}

    def update(self, pred: Floats, obs: Floats, valid: Mask) -> None:
        """Add quantiles ``(N, Q, ...)`` (``pred``) for rates ``obs`` ``(N, ...)``."""
        q_count = len(self.levels)
        if obs.ndim == 0 or pred.shape != (obs.shape[0], q_count, *obs.shape[1:]):
            raise SampleValidationError(
                f"quantiles at {q_count} levels for observations {obs.shape} must have shape "
                f"{(obs.shape[0] if obs.ndim else 'N', q_count, *obs.shape[1:])}, got {pred.shape}"
            )
        if valid.shape != obs.shape:
            raise SampleValidationError(f"valid {valid.shape} and obs {obs.shape} differ")
        use = valid & np.isfinite(obs)
        y = obs[use].astype(np.float64)
        sums = np.zeros(self._state.shape)
        sums[0] = y.size
        for j, tau in enumerate(self.levels):
            q = pred[:, j][use].astype(np.float64)
            _check_finite(q, "quantiles")
            err = y - q
            sums[1 + j] = np.maximum(tau * err, (tau - 1.0) * err).sum()
            sums[1 + q_count + j] = np.count_nonzero(y <= q)
        self._state += sums

    def result(self) -> dict[str, float]:
        """``crps``, ``pinball@<level>`` and ``coverage@<level>``."""
        q_count = len(self.levels)
        n = float(self._state[0])
        pinball = [_ratio(v, n) for v in self._state[1 : 1 + q_count].tolist()]
        coverage = [_ratio(v, n) for v in self._state[1 + q_count :].tolist()]
        out = {"crps": 2.0 * sum(pinball) / q_count}
        for tau, pin, cov in zip(self.levels, pinball, coverage, strict=True):
            out[f"pinball@{tau:g}"] = pin
            out[f"coverage@{tau:g}"] = cov
        return out


def metric_set(
    names: Sequence[str] = RATE_FAMILIES,
    *,
    outputs: Sequence[str] = ("rate",),
    rain_threshold: float | None = None,
    quantile_levels: Sequence[float] = (),
) -> list[Accumulator]:
    """Fresh accumulators for a model's outputs.

    Args:
        names: Registered rate families (always included).
        outputs: The model card's outputs; ``"probability"`` adds ``brier`` at
            ``rain_threshold``, ``"quantiles"`` adds ``crps`` at ``quantile_levels``.
        rain_threshold: mm/h of the probability output.
        quantile_levels: Levels of the quantile output.

    Raises:
        ConfigError: An unknown output, a missing threshold or levels, or a family in ``names``
            that does not consume rates.
        UnknownNameError: A name is not registered.
    """
    unknown = sorted(set(outputs) - set(_OUTPUTS))
    if unknown:
        raise ConfigError(f"unknown model outputs {unknown}; choices: {list(_OUTPUTS)}")
    families: list[Accumulator] = []
    for name in names:
        family = METRICS.get(name)
        if family.needs != "rate":
            raise ConfigError(f"metric family {name!r} consumes {family.needs!r}: set via outputs")
        families.append(family())
    if "probability" in outputs:
        if rain_threshold is None:
            raise ConfigError("a probability output needs its rain_threshold for the Brier score")
        families.append(BrierAccumulator(rain_threshold))
    if "quantiles" in outputs:
        if not quantile_levels:
            raise ConfigError("a quantiles output needs its quantile_levels for the CRPS")
        families.append(CRPSAccumulator(quantile_levels))
    return families
