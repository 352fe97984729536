"""Classical rain-rate formulas of the 10.8 µm brightness temperature (nothing fitted).

Also the checks every classical baseline shares: :func:`require_bands`, :func:`check_int` and
:func:`check_positive` for the factories, :func:`check_state` for ``load_state`` and
:func:`not_fitted_error` (``predict`` checks its input with :func:`qpebench.models.check_input`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np
import torch

from qpebench.errors import ConfigError, NotFittedError
from qpebench.models import F32, ModelCard, RainModel, check_input
from qpebench.registry import MODELS

#: Auto-Estimator (Vicente, Scofield & Menzel 1998, BAMS 79:1883): R = A·exp(−B·T^1.2), mm/h.
AE_A = 1.1183e11
AE_B = 3.6382e-2
AE_EXPONENT = 1.2

#: GOES Precipitation Index (Arkin & Meisner 1987, Mon. Wea. Rev. 115:51): rate below threshold.
GPI_RATE_MM_H = 3.0
GPI_THRESHOLD_K = 235.0

#: Pixels of the 64×64 patch that ``flops_per_sample`` is counted on.
PATCH_PIXELS = 64 * 64


def require_bands(model: str, bands: Sequence[str], needed: Sequence[str]) -> None:
    """Check that the configured ``bands`` hold every band ``model`` needs.

    Raises:
        ConfigError: A needed band is missing; the message names it and the configured bands.
    """
    for band in needed:
        if band not in bands:
            raise ConfigError(f"{model} needs band {band}, the configuration has {list(bands)}")


def check_int(name: str, value: int, minimum: int) -> None:
    """Check that ``value`` is an integer ≥ ``minimum``.

    Raises:
        ConfigError: It is not; the message names the parameter.
    """
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{name} must be an integer >= {minimum}, got {value!r}")


def check_positive(name: str, value: float, *, maximum: float = float("inf")) -> None:
    """Check that ``value`` is a number in ``(0, maximum]``.

    Raises:
        ConfigError: It is not; the message names the parameter.
    """
    number = not isinstance(value, bool) and isinstance(value, int | float)
    if not (number and 0 < value <= maximum):
        what = f"a number in (0, {maximum}]" if maximum < float("inf") else "a positive number"
        raise ConfigError(f"{name} must be {what}, got {value!r}")


def check_state(
    name: str, state: Mapping[str, torch.Tensor], shapes: Mapping[str, tuple[int, ...] | None]
) -> None:
    """Check that ``state`` holds exactly the tensors ``shapes`` names, of those shapes.

    A shape ``None`` stands for any one-dimensional tensor.

    Raises:
        ConfigError: A key is missing or extra, or a tensor has another shape.
    """
    if set(state) != set(shapes):
        raise ConfigError(f"{name}: state has {sorted(state)}, expected {sorted(shapes)}")
    for key, shape in shapes.items():
        got = tuple(state[key].shape)
        if (len(got) != 1) if shape is None else (got != shape):
            want = "(n,)" if shape is None else str(shape)
            raise ConfigError(f"{name}: state {key!r} has shape {got}, expected {want}")


def not_fitted_error(name: str) -> NotFittedError:
    """The error ``predict`` raises on a trainable model that was neither fitted nor loaded."""
    return NotFittedError(
        f"{name} is not fitted: call fit() first or load a saved model (qpebench.models.load_model)"
    )


def auto_estimator_rate(tb_k: F32) -> F32:
    """Auto-Estimator rain rate in mm/h from the 10.8 µm brightness temperature in K."""
    t = tb_k.astype(np.float64)
    return (AE_A * np.exp(-AE_B * t**AE_EXPONENT)).astype(np.float32)


def gpi_rate(tb_k: F32) -> F32:
    """GPI rain rate in mm/h: 3 mm/h where Tb(10.8 µm) < 235 K, else 0."""
    return np.where(tb_k < GPI_THRESHOLD_K, GPI_RATE_MM_H, 0.0).astype(np.float32)


class IRFormula(RainModel):
    """A fixed formula of the last frame's IR10.8 brightness temperature (nothing fitted).

    Args:
        card: The model card (frames 1, bands ``("IR10.8",)``).
        rate: Rain rate in mm/h from Tb in K.
    """

    def __init__(self, card: ModelCard, rate: Callable[[F32], F32]) -> None:
        self.card = card
        self.rate = rate

    def predict(self, ir: F32) -> F32:
        """Rain rate from ``ir[:, -1, 0]`` (the runner passes IR10.8 only)."""
        check_input(self.card, ir)
        return self.rate(ir[:, -1, 0])


def _formula_card(name: str, description: str, step: int, ops_per_pixel: int) -> ModelCard:
    return ModelCard(
        name=name,
        family="ir_formula",
        description=description,
        frames=1,
        bands=("IR10.8",),
        step=step,
        flops_per_sample=ops_per_pixel * PATCH_PIXELS,
    )


@MODELS.register("auto_estimator")
def auto_estimator(frames: int, bands: Sequence[str], step: int = 1) -> IRFormula:
    """The Auto-Estimator; needs IR10.8 among the configured bands (uses the last frame).

    Reference: Vicente, G. A., Scofield, R. A. and Menzel, W. P. (1998), The operational GOES
    infrared rainfall estimation technique, Bull. Amer. Meteor. Soc. 79, 1883–1898.
    """
    require_bands("auto_estimator", bands, ["IR10.8"])
    description = "R = 1.1183e11·exp(−3.6382e−2·T^1.2), T = Tb(10.8 µm) (Vicente 1998)"
    return IRFormula(_formula_card("auto_estimator", description, step, 4), auto_estimator_rate)


@MODELS.register("gpi")
def gpi(frames: int, bands: Sequence[str], step: int = 1) -> IRFormula:
    """The GOES Precipitation Index; needs IR10.8 among the configured bands (last frame).

    Reference: Arkin, P. A. and Meisner, B. N. (1987), The relationship between large-scale
    convective rainfall and cold cloud over the Western Hemisphere during 1982–84, Mon. Wea.
    Rev. 115, 51–74.
    """
    require_bands("gpi", bands, ["IR10.8"])
    description = "R = 3 mm/h where Tb(10.8 µm) < 235 K, else 0 (Arkin & Meisner 1987)"
    return IRFormula(_formula_card("gpi", description, step, 1), gpi_rate)
