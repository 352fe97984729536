"""IR10.8 rain-rate relations calibrated on the training set: a power law and probability matching.

Both read only the last frame's IR10.8 brightness temperature and the radar rain rate of the
valid pixels of ``data.train``; what they learn is a handful of numbers (``state``).
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch

from qpebench.errors import ConfigError
from qpebench.models import F32, ModelCard, RainModel, TrainData, check_input
from qpebench.registry import MODELS

from .ir_formulas import (
    AE_EXPONENT,
    PATCH_PIXELS,
    check_int,
    check_positive,
    check_state,
    not_fitted_error,
    require_bands,
)
from .pixel_features import training_blocks

F64 = npt.NDArray[np.float64]


class PowerLaw(RainModel):
    """The Auto-Estimator form ``R = A·exp(−B·T^1.2)`` with ``A`` and ``B`` fitted.

    ``ln R = ln A − B·T^1.2`` is fitted by ordinary least squares over the valid training pixels
    with ``R ≥ min_rain`` (dry pixels have no logarithm), as Vicente, Scofield & Menzel (1998,
    Bull. Amer. Meteor. Soc. 79, 1883–1898) derived the Auto-Estimator by regression of radar
    rain rates on collocated 10.7 µm brightness temperatures. The sums of the normal equations
    are accumulated block by block, so the fit holds no pixel in memory.

    Args:
        step: The card's frame step (one frame is used).
        min_rain: Rain rate in mm/h from which a pixel counts as raining in the fit.
    """

    def __init__(self, step: int, min_rain: float) -> None:
        self.card = ModelCard(
            name="power_law",
            family="calibrated",
            description="R = A·exp(−B·T^1.2), T = Tb(10.8 µm), A, B least-squares fitted "
            "on the training set (Vicente 1998 form)",
            frames=1,
            bands=("IR10.8",),
            step=step,
            trainable=True,
            parameters=2,
            flops_per_sample=4 * PATCH_PIXELS,
        )
        self.min_rain = min_rain
        self.log_a: float | None = None
        self.b: float | None = None

    def fit(
        self,
        data: TrainData,
        *,
        seed: int,
        progress: bool = True,
        checkpoint_dir: Path | None = None,
    ) -> dict[str, Any]:
        """Fit ``ln A`` and ``B`` on the rainy valid pixels of ``data.train`` (``seed`` unused).

        Raises:
            ConfigError: Fewer than two rainy pixels, all at one temperature, or a fit in which
                rain grows with temperature (B ≤ 0).
        """
        start = time.perf_counter()
        n_valid = 0
        sums = np.zeros(5)  # n, Σx, Σy, Σx², Σxy with x = T^1.2, y = ln R
        for batch in training_blocks(data, self.card, progress=progress):
            tb = batch.ir[:, -1, 0][batch.valid].astype(np.float64)
            rain = batch.rain[batch.valid].astype(np.float64)
            n_valid += tb.size
            wet = rain >= self.min_rain
            x, y = tb[wet] ** AE_EXPONENT, np.log(rain[wet])
            sums += (x.size, x.sum(), y.sum(), (x * x).sum(), (x * y).sum())
        n, sx, sy, sxx, sxy = sums
        var_x = sxx - sx * sx / max(n, 1.0)
        if n < 2 or var_x <= 1e-9 * max(sxx, 1.0):
            raise ConfigError(
                f"power_law: needs rainy pixels (≥ {self.min_rain} mm/h) at two or more "
                f"temperatures in the training set, found {int(n)}"
            )
        slope = float((sxy - sx * sy / n) / var_x)
        if slope >= 0:
            raise ConfigError(
                f"power_law: the fit gives B = {-slope:.4g} <= 0 (rain growing with temperature) "
                f"on {int(n)} rainy training pixels"
            )
        self.b = -slope
        self.log_a = float(sy / n - slope * sx / n)
        return {
            "n_pixels": n_valid,
            "n_rain_pixels": int(n),
            "A": math.exp(self.log_a),
            "B": self.b,
            "train_seconds": time.perf_counter() - start,
        }

    def predict(self, ir: F32) -> F32:
        """Rain rate from ``ir[:, -1, 0]`` (IR10.8).

        Raises:
            NotFittedError: The model is not fitted.
        """
        if self.log_a is None or self.b is None:
            raise not_fitted_error(self.card.name)
        check_input(self.card, ir)
        t = ir[:, -1, 0].astype(np.float64)
        return np.exp(self.log_a - self.b * t**AE_EXPONENT).astype(np.float32)

    def state(self) -> dict[str, torch.Tensor]:
        """``log_a`` (ln A, A in mm/h) and ``b`` (B in K^−1.2) as float64 scalars."""
        if self.log_a is None or self.b is None:
            return {}
        return {
            "log_a": torch.tensor(self.log_a, dtype=torch.float64),
            "b": torch.tensor(self.b, dtype=torch.float64),
        }

    def load_state(self, state: Mapping[str, torch.Tensor]) -> None:
        """Restore :meth:`state` (an empty state leaves the model unfitted).

        Raises:
            ConfigError: Keys or shapes differ, or the values are not a decreasing power law.
        """
        if not state:
            self.log_a = self.b = None
            return
        check_state(self.card.name, state, {"log_a": (), "b": ()})
        log_a, b = float(state["log_a"]), float(state["b"])
        if not (math.isfinite(log_a) and math.isfinite(b) and b > 0):
            raise ConfigError(
                f"{self.card.name}: saved ln A = {log_a}, B = {b}: need finite, B > 0"
            )
        self.log_a, self.b = log_a, b


class ProbabilityMatching(RainModel):
    """Probability matching of the IR10.8 distribution to the rain-rate distribution.

    ``R(T) = F_R⁻¹(1 − F_T(T))`` (colder = more rain), with ``F_T`` and ``F_R`` the empirical
    distributions of the last frame's IR10.8 and of the rain rate over the valid training
    pixels, dry pixels included, so the predicted rain-area fraction equals the training one.
    The relation is kept as ``quantiles`` matched pairs ``(T_q(p), R_q(1 − p))`` at the levels
    ``p = (k + ½)/quantiles`` (the sample extremes are left out: the single coldest training
    pixel would otherwise get the single largest rain rate) and interpolated linearly in between
    (non-increasing in ``T``; constant beyond the outermost pairs).

    References: Atlas, Rosenfeld & Wolff (1990), Climatologically tuned reflectivity-rain rate
    relations and links to area-time integrals, J. Appl. Meteor. 29, 1120–1135 (the
    probability matching method); Rosenfeld, Wolff & Atlas (1993), J. Appl. Meteor. 32, 50–72;
    Kidd, Kniveton, Todd & Bellerby (2003), J. Hydrometeor. 4, 1088–1104 (IR brightness
    temperature matched to rain-rate distributions).

    Args:
        step: The card's frame step (one frame is used).
        quantiles: Matched pairs kept.
    """

    def __init__(self, step: int, quantiles: int) -> None:
        self.card = ModelCard(
            name="probability_matching",
            family="calibrated",
            description="R(T) = F_R⁻¹(1 − F_T(T)), T = Tb(10.8 µm), distributions of the "
            "training set (Atlas, Rosenfeld & Wolff 1990)",
            frames=1,
            bands=("IR10.8",),
            step=step,
            trainable=True,
            parameters=2 * quantiles,
            # binary search over the pairs, then the interpolation (4 operations)
            flops_per_sample=(math.ceil(math.log2(quantiles)) + 4) * PATCH_PIXELS,
        )
        self.quantiles = quantiles
        self.tb_q: F64 | None = None
        self.rain_q: F64 | None = None
        self._lookup: tuple[F64, F64] | None = None

    def _set(self, tb_q: F64, rain_q: F64) -> None:
        """Keep the matched pairs and build the lookup.

        Tied temperatures share their mean rain, so the lookup's abscissae strictly increase
        and the interpolation stays monotone.
        """
        self.tb_q, self.rain_q = tb_q, rain_q
        knots, group = np.unique(tb_q, return_inverse=True)
        values = np.bincount(group, weights=rain_q) / np.bincount(group)
        self._lookup = (knots, values)

    def fit(
        self,
        data: TrainData,
        *,
        seed: int,
        progress: bool = True,
        checkpoint_dir: Path | None = None,
    ) -> dict[str, Any]:
        """Match the IR10.8 and rain quantiles of the valid ``data.train`` pixels.

        ``seed`` is unused: the quantiles are exact.

        Raises:
            ConfigError: The training set has no valid pixel.
        """
        start = time.perf_counter()
        tbs, rains = [], []
        for batch in training_blocks(data, self.card, progress=progress):
            tbs.append(batch.ir[:, -1, 0][batch.valid])
            rains.append(batch.rain[batch.valid])
        tb, rain = np.concatenate(tbs), np.concatenate(rains)
        if tb.size == 0:
            raise ConfigError("probability_matching: the training set has no valid pixel")
        levels = (np.arange(self.quantiles) + 0.5) / self.quantiles
        tb_q = np.quantile(tb.astype(np.float64), levels)
        self._set(tb_q, np.quantile(rain.astype(np.float64), 1.0 - levels))
        return {
            "n_pixels": int(tb.size),
            "wet_fraction": float((rain >= 0.1).mean()),
            "tb_median": float(np.median(tb)),
            "max_rain": float(rain.max()),
            "train_seconds": time.perf_counter() - start,
        }

    def predict(self, ir: F32) -> F32:
        """Rain rate from ``ir[:, -1, 0]`` (IR10.8).

        Raises:
            NotFittedError: The model is not fitted.
        """
        if self._lookup is None:
            raise not_fitted_error(self.card.name)
        check_input(self.card, ir)
        knots, values = self._lookup
        return np.interp(ir[:, -1, 0].astype(np.float64), knots, values).astype(np.float32)

    def state(self) -> dict[str, torch.Tensor]:
        """The matched pairs as float64 ``(quantiles,)`` tensors.

        ``tb_quantiles`` in K (increasing) and ``rain_quantiles`` in mm/h (non-increasing).
        """
        if self.tb_q is None or self.rain_q is None:
            return {}
        return {
            "tb_quantiles": torch.from_numpy(self.tb_q),
            "rain_quantiles": torch.from_numpy(self.rain_q),
        }

    def load_state(self, state: Mapping[str, torch.Tensor]) -> None:
        """Restore :meth:`state` (an empty state leaves the model unfitted).

        Raises:
            ConfigError: Keys or shapes differ, or the pairs are not monotone.
        """
        if not state:
            self.tb_q = self.rain_q = self._lookup = None
            return
        q = (self.quantiles,)
        check_state(self.card.name, state, {"tb_quantiles": q, "rain_quantiles": q})
        tb_q = state["tb_quantiles"].double().numpy()
        rain_q = state["rain_quantiles"].double().numpy()
        monotone = (np.diff(tb_q) >= 0).all() and (np.diff(rain_q) <= 0).all()
        if not (monotone and np.isfinite(tb_q).all() and (rain_q >= 0).all()):
            raise ConfigError(
                f"{self.card.name}: tb_quantiles must be finite and increase, rain_quantiles "
                "must be non-negative and not increase"
            )
        self._set(tb_q, rain_q)


@MODELS.register("power_law")
def power_law(frames: int, bands: Sequence[str], step: int = 1, min_rain: float = 0.1) -> PowerLaw:
    """The Auto-Estimator form fitted on the training set; needs IR10.8 (last frame).

    Args:
        frames: Configured frames (one is used).
        bands: Configured bands.
        step: Frame step.
        min_rain: Rain rate in mm/h from which a pixel enters the fit.
    """
    require_bands("power_law", bands, ["IR10.8"])
    check_positive("power_law min_rain", min_rain)
    return PowerLaw(step, float(min_rain))


@MODELS.register("probability_matching")
def probability_matching(
    frames: int, bands: Sequence[str], step: int = 1, quantiles: int = 1000
) -> ProbabilityMatching:
    """Probability matching of IR10.8 to rain on the training set; needs IR10.8 (last frame).

    Args:
        frames: Configured frames (one is used).
        bands: Configured bands.
        step: Frame step.
        quantiles: Matched quantile pairs kept (≥ 2).
    """
    require_bands("probability_matching", bands, ["IR10.8"])
    check_int("probability_matching quantiles", quantiles, 2)
    return ProbabilityMatching(step, quantiles)
