"""Training and inference for PyTorch rain models.

:class:`TorchRainModel` wraps any ``nn.Module`` that maps normalised IR ``(N, T, C, H, W)`` to
``z = log1p(rain)`` ``(N, H, W)``, z ≥ 0. It fits the input normalisation on the training set,
trains with a rate-weighted mean-squared error in log1p space (:func:`rain_loss`: rain is
skewed, the log keeps light rain in play and the weights keep heavy rain), keeps the weights of
the epoch with the lowest validation loss, and saves everything with ``weights_only`` tensors.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader
from torch.utils.flop_counter import FlopCounterMode
from tqdm.auto import tqdm

from qpebench.atomic import write_with
from qpebench.errors import ConfigError
from qpebench.models import F32, ModelCard, RainModel, TrainData
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

    def __post_init__(self) -> None:
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


class TorchRainModel(RainModel):
    """A registry model backed by an ``nn.Module`` (see the module docstring).

    Args:
        card: The model card; ``parameters`` and ``flops_per_sample`` are filled in here.
        net: Maps normalised ``(N, T, C, H, W)`` to ``z`` ``(N, H, W)``.
        settings: Optimisation settings.
    """

    def __init__(self, card: ModelCard, net: nn.Module, settings: TrainSettings) -> None:
        self.net = net
        self.settings = settings
        n_bands = len(card.bands)
        self.card = replace(
            card,
            trainable=True,
            parameters=sum(p.numel() for p in net.parameters()),
            flops_per_sample=count_flops(net, card.frames, n_bands),
        )
        self.mean = torch.zeros(n_bands)
        self.std = torch.ones(n_bands)
        self.device = resolve_device(settings.device)

    def _normalise(self, ir: torch.Tensor) -> torch.Tensor:
        mean = self.mean.to(ir.device)[None, None, :, None, None]
        std = self.std.to(ir.device)[None, None, :, None, None]
        return (ir - mean) / std

    def fit(self, data: TrainData, *, seed: int, progress: bool = True) -> dict[str, Any]:
        """Train on ``data.train``, keep the epoch with the lowest loss on ``data.val``."""
        torch.manual_seed(seed)
        s = self.settings
        kw: dict[str, Any] = {"frames": self.card.frames, "bands": self.card.bands, "preload": True}
        train = StoreDataset(data.store, data.train, **kw)
        val = StoreDataset(data.store, data.val, **kw)
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
                x = self._normalise(batch["ir"].to(self.device))
                loss = rain_loss(
                    net(x), batch["rain"].to(self.device), batch["valid"].to(self.device)
                )
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
        self.net.eval()
        loader = DataLoader(data, batch_size=64)
        total, weight = 0.0, 0.0
        for batch in loader:
            valid = batch["valid"].to(self.device)
            z = self.net(self._normalise(batch["ir"].to(self.device)))
            w = float(((1.0 + batch["rain"]).clamp_max(MAX_RAIN_WEIGHT) * batch["valid"]).sum())
            total += float(rain_loss(z, batch["rain"].to(self.device), valid)) * w
            weight += w
        return total / max(weight, 1.0)

    @torch.no_grad()
    def predict(self, ir: F32) -> F32:
        """Rain rate in mm/h from IR ``(N, T, C, H, W)``."""
        self.net.eval()
        out = []
        for start in range(0, ir.shape[0], 64):
            x = torch.from_numpy(np.ascontiguousarray(ir[start : start + 64])).to(self.device)
            out.append(torch.expm1(self.net(self._normalise(x))).clamp_min(0).cpu().numpy())
        return np.concatenate(out).astype(np.float32)

    def save(self, path: Path) -> None:
        """Save weights, normalisation and card (loadable with ``weights_only=True``)."""
        payload = {
            "state_dict": self.net.state_dict(),
            "norm_mean": self.mean,
            "norm_std": self.std,
            "card": self.card.to_json(),
            "settings": asdict(self.settings),
        }
        write_with(path, lambda tmp: torch.save(payload, tmp))

    def load(self, path: Path) -> None:
        """Load what :meth:`save` wrote.

        Raises:
            ConfigError: The file was saved by another model.
        """
        payload = torch.load(path, map_location=self.device, weights_only=True)
        if payload["card"]["name"] != self.card.name:
            raise ConfigError(
                f"{path}: holds model {payload['card']['name']!r}, not {self.card.name!r}"
            )
        self.net.load_state_dict(payload["state_dict"])
        self.net.to(self.device)
        self.mean = payload["norm_mean"]
        self.std = payload["norm_std"]
