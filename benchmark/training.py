"""Training and inference for PyTorch rain models.

:class:`TorchRainModel` wraps any ``nn.Module`` that maps normalised IR ``(N, T, C, H, W)`` to raw
head outputs ``(N, K, H, W)``; :class:`OutputSpec` decodes them (the output contract, see
``docs/models.md``): channel 0 is ``z = softplus(·) = log1p(rain)`` ≥ 0, then optionally the logit
of the probability of rain ≥ ``rain_threshold``, then optionally ``Q`` quantiles of ``log1p(rain)``
built as cumulative sums of softplus increments (non-negative and never crossing). Losses, chosen
for rain's skewed distribution: a rate-weighted mean squared error in log1p space
(:func:`rain_loss`: the log keeps light rain in play, the weights keep heavy rain), binary
cross-entropy for the probability, and the pinball loss for the quantiles (taken in log1p space,
which is equivalent for quantiles because log1p is monotone). The model fits the input
normalisation on the training set, keeps the weights of the epoch with the lowest validation
loss, and saves only tensors.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import os
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader
from torch.utils.flop_counter import FlopCounterMode
from tqdm.auto import tqdm

from qpebench.errors import ConfigError, NotFittedError
from qpebench.models import F32, ModelCard, RainModel, TrainData, check_input
from qpebench.torchdata import StoreDataset


@dataclass(frozen=True)
class TrainSettings:
    """Optimisation settings of a torch model (the ``train`` config group)."""

    epochs: int = 10
    batch_size: int = 16
    lr: float = 2e-3
    weight_decay: float = 1e-4
    patience: int = 4
    device: str = "auto"
    deterministic: bool = True

    def __post_init__(self) -> None:
        if not isinstance(self.deterministic, bool):
            raise ConfigError(
                f"train.deterministic must be true or false, got {self.deterministic!r}"
            )
        for key in ("epochs", "batch_size", "patience"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int):
                raise ConfigError(f"train.{key} must be an integer, got {value!r}")
            if value < 1:
                raise ConfigError(f"train.{key} must be at least 1, got {value}")
        for key in ("lr", "weight_decay"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ConfigError(f"train.{key} must be a number, got {value!r}")
        if not self.lr > 0:
            raise ConfigError(f"train.lr must be positive, got {self.lr}")
        if self.weight_decay < 0:
            raise ConfigError(f"train.weight_decay must be >= 0, got {self.weight_decay}")
        resolve_device(self.device)


def train_settings(value: TrainSettings | Mapping[str, Any] | None) -> TrainSettings:
    """``value`` as :class:`TrainSettings` (a mapping, as saved in a model file, is converted).

    Raises:
        ConfigError: A mapping with keys that are not settings.
    """
    if value is None:
        return TrainSettings()
    if isinstance(value, TrainSettings):
        return value
    unknown = sorted(set(value) - {f.name for f in dataclasses.fields(TrainSettings)})
    if unknown:
        raise ConfigError(f"train: unknown settings {unknown}")
    return TrainSettings(**value)


def resolve_device(name: str) -> torch.device:
    """``"auto"`` → CUDA when available, else CPU; anything else as given.

    Raises:
        ConfigError: Not a torch device name, or CUDA asked for where there is none.
    """
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError):
        raise ConfigError(
            f"train.device: {name!r} is not a device; use auto, cpu, cuda or cuda:N"
        ) from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"train.device={name!r} but CUDA is not available here; use auto")
    return device


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


def rain_loss(z: torch.Tensor, rain: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Rate-weighted mean squared error between ``z`` and ``log1p(rain)`` over valid pixels.

    The error is taken in log1p space so that light rain counts; each pixel weighs
    ``min(1 + rain, 20)`` so that the rare heavy rates are not smoothed away (an unweighted
    log-space loss never predicts above ~5 mm/h where the position of a core is uncertain).
    """
    weight = (1.0 + rain).clamp_max(MAX_RAIN_WEIGHT) * valid
    err = (z - torch.log1p(rain)) ** 2
    return (err * weight).sum() / weight.sum().clamp_min(1e-6)


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

    def loss(
        self, out: Mapping[str, torch.Tensor], rain: torch.Tensor, valid: torch.Tensor
    ) -> torch.Tensor:
        """Sum of the losses of every output over the valid pixels (see the module docstring)."""
        total = rain_loss(out["z"], rain, valid)
        mask = valid.to(rain.dtype)
        n = mask.sum().clamp_min(1.0)
        if self.probability:
            target = (rain >= self.rain_threshold).to(rain.dtype)
            bce = F.binary_cross_entropy_with_logits(out["logit"], target, reduction="none")
            total = total + (bce * mask).sum() / n
        if self.quantiles:
            levels = torch.tensor(self.quantiles, device=rain.device, dtype=rain.dtype)
            err = torch.log1p(rain)[:, None] - out["zq"]
            pinball = torch.maximum(levels[:, None, None] * err, (levels[:, None, None] - 1) * err)
            total = total + (pinball.mean(dim=1) * mask).sum() / n
        return total


@contextmanager
def deterministic_kernels(enabled: bool) -> Iterator[None]:
    """Use only deterministic torch kernels inside the block (restored after)."""
    previous = torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.benchmark
    if enabled:
        # cuBLAS needs a fixed workspace for deterministic results (read when CUDA starts)
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(enabled)
    torch.backends.cudnn.benchmark = not enabled
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(previous[0])
        torch.backends.cudnn.benchmark = previous[1]


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
        n_bands = len(card.bands)
        self.card = replace(
            card,
            trainable=True,
            parameters=sum(p.numel() for p in net.parameters()),
            flops_per_sample=count_flops(net, card.frames, n_bands),
            **self.outputs.card_fields(),
        )
        self.mean = torch.zeros(n_bands)
        self.std = torch.ones(n_bands)
        self.device = resolve_device(settings.device)
        self.fitted = False

    def _normalise(self, ir: torch.Tensor) -> torch.Tensor:
        mean = self.mean.to(ir.device)[None, None, :, None, None]
        std = self.std.to(ir.device)[None, None, :, None, None]
        return (ir - mean) / std

    def forward(self, ir: torch.Tensor) -> dict[str, torch.Tensor]:
        """Decoded outputs (``z``, ``logit``, ``zq``) of raw IR ``(N, T, C, H, W)`` in K."""
        return self.outputs.decode(self.net(self._normalise(ir)))

    def _dataset(self, store: Any, indices: Any) -> StoreDataset:
        c = self.card
        return StoreDataset(
            store, indices, frames=c.frames, step=c.step, bands=c.bands, preload=True
        )

    def fit(self, data: TrainData, *, seed: int, progress: bool = True) -> dict[str, Any]:
        """Train on ``data.train``, keep the epoch with the lowest loss on ``data.val``.

        With ``train.deterministic`` (the default) torch uses deterministic kernels only (on CUDA
        this also fixes cuBLAS's workspace), so the same seed gives the same weights.

        Raises:
            ConfigError: The training or the validation set is empty.
        """
        for key, indices in (("training", data.train), ("validation", data.val)):
            if len(indices) == 0:
                raise ConfigError(f"{self.card.name}: the {key} set is empty")
        with deterministic_kernels(self.settings.deterministic):
            return self._fit(data, seed=seed, progress=progress)

    def _fit(self, data: TrainData, *, seed: int, progress: bool) -> dict[str, Any]:
        s = self.settings
        torch.manual_seed(seed)
        train = self._dataset(data.store, data.train)
        val = self._dataset(data.store, data.val)
        ir = train.preloaded()["ir"]
        self.mean = ir.mean(dim=(0, 1, 3, 4))
        self.std = ir.std(dim=(0, 1, 3, 4)).clamp_min(1e-3)
        loader = DataLoader(
            train,
            batch_size=s.batch_size,
            shuffle=True,
            generator=torch.Generator().manual_seed(seed),
            drop_last=len(train) > s.batch_size,
        )
        net = self.net.to(self.device)
        opt = torch.optim.AdamW(net.parameters(), lr=s.lr, weight_decay=s.weight_decay)
        sched = torch.optim.lr_scheduler.OneCycleLR(
            opt, max_lr=s.lr, total_steps=s.epochs * len(loader), pct_start=0.2
        )
        best = math.inf
        best_state = {k: v.detach().clone() for k, v in net.state_dict().items()}
        history: list[dict[str, float]] = []
        stale = 0
        start = time.perf_counter()
        bar = tqdm(
            range(s.epochs), desc=f"train {self.card.name}", unit="epoch", disable=not progress
        )
        for epoch in bar:
            net.train()
            total, batches = 0.0, 0
            for batch in loader:
                rain, valid = batch["rain"].to(self.device), batch["valid"].to(self.device)
                loss = self.outputs.loss(self.forward(batch["ir"].to(self.device)), rain, valid)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                total += float(loss.detach())
                batches += 1
            val_loss = self._evaluate_loss(val)
            history.append(
                {"epoch": epoch, "train_loss": total / max(batches, 1), "val_loss": val_loss}
            )
            bar.set_postfix(train=f"{total / max(batches, 1):.4f}", val=f"{val_loss:.4f}")
            if val_loss < best - 1e-6:
                best, stale = val_loss, 0
                best_state = {k: v.detach().clone() for k, v in net.state_dict().items()}
            else:
                stale += 1
                if stale >= s.patience:
                    break
        net.load_state_dict(best_state)
        self.fitted = True
        return {
            "history": history,
            "best_val_loss": best,
            "epochs_run": len(history),
            "train_seconds": time.perf_counter() - start,
            "settings": asdict(s),
            "n_train": len(train),
            "n_val": len(val),
        }

    @torch.no_grad()
    def _evaluate_loss(self, data: StoreDataset) -> float:
        """Validation loss, each batch weighted by its number of valid pixels."""
        self.net.eval()
        total, weight = 0.0, 0.0
        for batch in DataLoader(data, batch_size=64):
            rain, valid = batch["rain"].to(self.device), batch["valid"].to(self.device)
            w = float(valid.sum())
            total += (
                float(self.outputs.loss(self.forward(batch["ir"].to(self.device)), rain, valid)) * w
            )
            weight += w
        return total / max(weight, 1.0)

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
