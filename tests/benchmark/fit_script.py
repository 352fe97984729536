"""Fit one small model in a separate process (run by test_trainer.py, directly or by torchrun).

Usage: ``python fit_script.py SPEC.json`` where the JSON holds ``store`` (a store folder),
``train``/``val`` (indices), ``settings`` (train settings), ``seed``, ``out`` (folder for the
weights and the training log), ``checkpoint_dir`` (or null) and ``step_sleep`` (seconds each
training step sleeps, so that a test can kill the fit midway).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from qpebench.bands import DEFAULT_BANDS
from qpebench.distributed import close_distributed, init_distributed
from qpebench.models import ModelCard, RainModel, TrainData, build_model
from qpebench.store import SampleStore
from qpebench.trainer import ERM, Trainer, TrainSettings, train_settings
from qpebench.training import TorchRainModel


class PlainNet(nn.Module):
    """Two convolutions over the stacked frames and bands: no batch normalisation."""

    def __init__(self, frames: int, bands: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(frames * bands, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 1, 1)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, t, c, h, w = x.shape
        return self.body(x.reshape(n, t * c, h, w))


def build(name: str, settings: TrainSettings) -> RainModel:
    """``plain`` (a :class:`PlainNet` model) or a registry model, 2 frames, all bands."""
    if name == "plain":
        card = ModelCard(name="plain", family="test", description="PlainNet", frames=2,
                         bands=tuple(DEFAULT_BANDS))  # fmt: skip
        return TorchRainModel(card, PlainNet(2, len(DEFAULT_BANDS)), settings)
    return build_model(name, frames=2, bands=DEFAULT_BANDS, width=4, train=settings)


class SlowERM(ERM):
    """Plain training that sleeps in every step (the hook a domain-adaptation method overrides)."""

    def __init__(self, model, pause: float) -> None:
        super().__init__(model)
        self.pause = pause

    def training_step(self, batch, unlabeled_batch=None):
        if self.model.net.training:
            time.sleep(self.pause)
        return super().training_step(batch, unlabeled_batch)


def main() -> None:
    spec = json.loads(Path(sys.argv[1]).read_text())
    settings = train_settings(spec["settings"])
    world = init_distributed(settings.device)
    torch.set_num_threads(1)
    store = SampleStore(spec["store"])
    data = TrainData(store, np.asarray(spec["train"]), np.asarray(spec["val"]))
    torch.manual_seed(spec["seed"])
    model = build(spec["model"], settings)
    ckpt = spec.get("checkpoint_dir")
    trainer = Trainer(settings, checkpoint_dir=None if ckpt is None else Path(ckpt), progress=False)
    log = trainer.fit(model, data, seed=spec["seed"], algorithm=SlowERM(model, spec["step_sleep"]))
    if world.main:
        out = Path(spec["out"])
        out.mkdir(parents=True, exist_ok=True)
        torch.save(model.state(), out / "state.pt")
        (out / "log.json").write_text(json.dumps(log, default=str))
    close_distributed()


if __name__ == "__main__":
    main()
