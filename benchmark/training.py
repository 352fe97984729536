"""Training and inference for PyTorch rain models.

:class:`TorchRainModel` wraps any ``nn.Module`` that maps normalised IR ``(N, T, C, H, W)`` to raw
head outputs ``(N, K, H, W)``; :class:`OutputSpec` decodes them (the output contract, see
``docs/models.md``): channel 0 is ``z = softplus(·) = log1p(rain)`` ≥ 0, then optionally the logit
of the probability of rain ≥ ``rain_threshold``, then optionally ``Q`` quantiles of ``log1p(rain)``
built as cumulative sums of softplus increments (non-negative and never crossing). Losses, chosen
for rain's skewed distribution: a rate-weighted mean squared error in log1p space
(:func:`rain_loss`: the log keeps light rain in play, the weights keep heavy rain), binary
cross-entropy for the probability, and the pinball loss for the quantiles (taken in log1p space,
which is equivalent for quantiles because log1p is monotone). Each loss is a sum over pixels
(:meth:`OutputSpec.loss_sums`) divided by a normaliser that depends on the data only
(:meth:`OutputSpec.normalisers`). The loop lives in :class:`qpebench.trainer.Trainer`; the model
keeps its network, the input normalisation fitted on the training set, its outputs and its state,
and saves only tensors.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.flop_counter import FlopCounterMode

from qpebench.errors import ConfigError, NotFittedError
from qpebench.models import F32, ModelCard, RainModel, TrainData, check_input
from qpebench.trainer import Trainer, TrainSettings, resolve_device


def count_flops(net: nn.Module, frames: int, bands: int, size: int = 64) -> int:
    """Forward FLOPs of ``net`` on one ``(frames, bands, size, size)`` sample."""
    x = torch.zeros(1, frames, bands, size, size)
    counter = FlopCounterMode(display=False)
    was_training = net.training
    net.eval()
    with counter, torch.no_grad():
        net(x)
    net.train(was_training)
    return int(counter.get_total_flops())


#: Heavier rain weighs more in the loss, up to this factor (see :func:`rain_loss`).
MAX_RAIN_WEIGHT = 20.0


def rain_weights(rain: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Pixel weights of :func:`rain_loss`: ``min(1 + rain, 20)`` where valid, else 0."""
    return (1.0 + rain).clamp_max(MAX_RAIN_WEIGHT) * valid


def rain_loss(z: torch.Tensor, rain: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Rate-weighted mean squared error between ``z`` and ``log1p(rain)`` over valid pixels.

    The error is taken in log1p space so that light rain counts; each pixel weighs
    ``min(1 + rain, 20)`` so that the rare heavy rates are not smoothed away (an unweighted
    log-space loss never predicts above ~5 mm/h where the position of a core is uncertain).
    """
    weight = rain_weights(rain, valid)
    return rain_loss_sum(z, rain, weight) / weight.sum().clamp_min(1e-6)


def rain_loss_sum(z: torch.Tensor, rain: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """The weighted sum of squared log1p errors (the numerator of :func:`rain_loss`)."""
    return ((z.float() - torch.log1p(rain)) ** 2 * weight).sum()


@dataclass(frozen=True)
class OutputSpec:
    """What a network's head outputs besides the rain rate, and how it is decoded and scored.

    Attributes:
        probability: Add the probability of rain ≥ ``rain_threshold`` (one logit channel).
        rain_threshold: mm/h of the probability output.
        quantiles: Levels in (0, 1), increasing, of the quantile outputs (one channel each).
    """

    probability: bool = False
    rain_threshold: float = 1.0
    quantiles: tuple[float, ...] = field(default=())

    def __post_init__(self) -> None:
        q = tuple(float(v) for v in self.quantiles)
        if any(not 0 < v < 1 for v in q) or any(b <= a for a, b in itertools.pairwise(q)):
            raise ConfigError(f"quantiles must increase strictly inside (0, 1), got {list(q)}")
        if not self.rain_threshold > 0:
            raise ConfigError(f"rain_threshold must be positive, got {self.rain_threshold}")
        object.__setattr__(self, "quantiles", q)

    @property
    def channels(self) -> int:
        """Head channels: 1 (rate) + 1 (probability) + one per quantile."""
        return 1 + int(self.probability) + len(self.quantiles)

    def card_fields(self) -> dict[str, Any]:
        """The model-card fields of these outputs."""
        outputs = ("rate",) + ("probability",) * self.probability
        outputs += ("quantiles",) * bool(self.quantiles)
        return {
            "outputs": outputs,
            "rain_threshold": self.rain_threshold if self.probability else None,
            "quantile_levels": self.quantiles,
        }

    def decode(self, raw: torch.Tensor) -> dict[str, torch.Tensor]:
        """Decode the raw head ``(N, K, H, W)``.

        Returns:
            ``z`` ``(N, H, W)``, ``logit`` ``(N, H, W)`` and ``zq`` ``(N, Q, H, W)`` (log1p
            quantiles, non-decreasing along Q), as the spec has them.
        """
        out = {"z": F.softplus(raw[:, 0])}
        first = 1
        if self.probability:
            out["logit"] = raw[:, 1]
            first = 2
        if self.quantiles:
            out["zq"] = F.softplus(raw[:, first:]).cumsum(dim=1)
        return out

    def normalisers(self, rain: torch.Tensor, valid: torch.Tensor) -> dict[str, torch.Tensor]:
        """What each loss term's sum is divided by: the rain weights' sum, the valid pixels.

        They depend on the data only, so a trainer can add them up over micro-batches and
        processes before dividing (:mod:`qpebench.trainer`).
        """
        out = {"rate": rain_weights(rain, valid).sum()}
        count = valid.sum().to(rain.dtype)
        if self.probability:
            out["probability"] = count
        if self.quantiles:
            out["quantiles"] = count
        return out

    def loss_sums(
        self, out: Mapping[str, torch.Tensor], rain: torch.Tensor, valid: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """Each loss term summed over the valid pixels (see the module docstring)."""
        mask = valid.to(rain.dtype)
        sums = {"rate": rain_loss_sum(out["z"], rain, rain_weights(rain, valid))}
        if self.probability:
            target = (rain >= self.rain_threshold).to(rain.dtype)
            logit = out["logit"].float()
            bce = F.binary_cross_entropy_with_logits(logit, target, reduction="none")
            sums["probability"] = (bce * mask).sum()
        if self.quantiles:
            levels = torch.tensor(self.quantiles, device=rain.device, dtype=rain.dtype)
            err = torch.log1p(rain)[:, None] - out["zq"].float()
            pinball = torch.maximum(levels[:, None, None] * err, (levels[:, None, None] - 1) * err)
            sums["quantiles"] = (pinball.mean(dim=1) * mask).sum()
        return sums

    def loss(
        self, out: Mapping[str, torch.Tensor], rain: torch.Tensor, valid: torch.Tensor
    ) -> torch.Tensor:
        """Sum of the losses of every output over the valid pixels of one batch."""
        sums = self.loss_sums(out, rain, valid)
        norms = self.normalisers(rain, valid)
        floor = {"rate": 1e-6}
        total: torch.Tensor = sum(
            (sums[k] / norms[k].clamp_min(floor.get(k, 1.0)) for k in sums),
            start=torch.zeros((), device=rain.device),
        )
        return total


class TorchRainModel(RainModel):
    """A registry model backed by an ``nn.Module`` (see the module docstring).

    Args:
        card: The model card; outputs, ``parameters`` and ``flops_per_sample`` are filled in.
        net: Maps normalised ``(N, T, C, H, W)`` to raw head outputs ``(N, K, H, W)``.
        settings: Optimisation settings.
        outputs: The head's outputs (``K = outputs.channels``).
    """

    def __init__(
        self,
        card: ModelCard,
        net: nn.Module,
        settings: TrainSettings,
        outputs: OutputSpec | None = None,
    ) -> None:
        self.net = net
        self.settings = settings
        self.outputs = outputs or OutputSpec()
        self.card = replace(
            card,
            trainable=True,
            parameters=sum(p.numel() for p in net.parameters()),
            flops_per_sample=count_flops(net, card.frames, card.channels),
            **self.outputs.card_fields(),
        )
        self.mean = torch.zeros(card.channels)
        self.std = torch.ones(card.channels)
        self.device = resolve_device(settings.device)
        self.fitted = False

    def _normalise(self, ir: torch.Tensor) -> torch.Tensor:
        mean = self.mean.to(ir.device)[None, None, :, None, None]
        std = self.std.to(ir.device)[None, None, :, None, None]
        return (ir - mean) / std

    def forward(self, ir: torch.Tensor) -> dict[str, torch.Tensor]:
        """Decoded outputs (``z``, ``logit``, ``zq``) of raw IR ``(N, T, C, H, W)`` in K."""
        return self.outputs.decode(self.net(self._normalise(ir)))

    def fit(
        self,
        data: TrainData,
        *,
        seed: int,
        progress: bool = True,
        checkpoint_dir: Path | None = None,
    ) -> dict[str, Any]:
        """Train with a :class:`~qpebench.trainer.Trainer` (see :mod:`qpebench.trainer`).

        With ``train.deterministic`` (the default) torch uses deterministic kernels only (on CUDA
        this also fixes cuBLAS's workspace), so the same seed gives the same weights.

        Raises:
            ConfigError: An empty set, a training set smaller than one step, or a checkpoint
                in ``checkpoint_dir`` from another configuration.
        """
        trainer = Trainer(self.settings, checkpoint_dir=checkpoint_dir, progress=progress)
        self.device = trainer.device
        log = trainer.fit(self, data, seed=seed)
        self.fitted = True
        return log

    @torch.no_grad()
    def predict_outputs(self, ir: F32) -> dict[str, F32]:
        """Rate (mm/h), probability and quantiles (mm/h) from IR ``(N, T, C, H, W)``.

        Raises:
            NotFittedError: Neither fitted nor loaded.
            SampleValidationError: ``ir`` does not have the card's frames and bands.
        """
        if not self.fitted:
            raise NotFittedError(
                f"{self.card.name} is not fitted: call fit() first or load a saved model "
                "(qpebench.models.load_model)"
            )
        check_input(self.card, ir)
        self.net.eval()
        parts: dict[str, list[F32]] = {}
        for start in range(0, ir.shape[0], 64):
            x = torch.from_numpy(np.ascontiguousarray(ir[start : start + 64])).to(self.device)
            out = self.forward(x)
            decoded = {"rate": torch.expm1(out["z"]).clamp_min(0)}
            if "logit" in out:
                decoded["probability"] = torch.sigmoid(out["logit"])
            if "zq" in out:
                decoded["quantiles"] = torch.expm1(out["zq"]).clamp_min(0)
            for key, value in decoded.items():
                parts.setdefault(key, []).append(value.cpu().numpy().astype(np.float32))
        return {k: np.concatenate(v) for k, v in parts.items()}

    def predict(self, ir: F32) -> F32:
        """Rain rate in mm/h ``(N, H, W)`` from IR ``(N, T, C, H, W)``."""
        return self.predict_outputs(ir)["rate"]

    def state(self) -> dict[str, torch.Tensor]:
        """Network weights (``net.*``) and the input normalisation."""
        state = {f"net.{k}": v.detach().cpu() for k, v in self.net.state_dict().items()}
        return {**state, "norm_mean": self.mean.cpu(), "norm_std": self.std.cpu()}

    def load_state(self, state: Mapping[str, torch.Tensor]) -> None:
        """Restore :meth:`state`.

        Raises:
            ConfigError: Missing or extra tensors, or shapes that do not fit this network.
        """
        net_state = {k.removeprefix("net."): v for k, v in state.items() if k.startswith("net.")}
        try:
            self.net.load_state_dict(net_state)
        except RuntimeError as exc:
            raise ConfigError(f"{self.card.name}: saved weights do not fit ({exc})") from None
        self.net.to(self.device)
        self.mean = state["norm_mean"]
        self.std = state["norm_std"]
        self.fitted = True
