"""A small U-Net, fed the last frame (``static_cnn``) or all frames stacked (``early_fusion``).

Both variants share the same network body, width and decoder head, so the comparison isolates
what the extra frames bring: ``early_fusion`` differs only in its first convolution, which sees
``frames × bands`` channels instead of ``bands``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from qpebench.models import ModelCard
from qpebench.registry import MODELS
from qpebench.training import TorchRainModel, TrainSettings


def _block(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
        nn.Conv2d(c_out, c_out, 3, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    )


class UNet2d(nn.Module):
    """Three-level U-Net mapping ``(N, C_in, H, W)`` to ``z = log1p(rain) ≥ 0`` ``(N, H, W)``.

    Any H and W: the input is padded (edge values) to multiples of 4 and the output cropped.
    """

    def __init__(self, in_channels: int, width: int = 16) -> None:
        super().__init__()
        w = width
        self.enc1 = _block(in_channels, w)
        self.enc2 = _block(w, 2 * w)
        self.enc3 = _block(2 * w, 4 * w)
        self.dec2 = _block(4 * w + 2 * w, 2 * w)
        self.dec1 = _block(2 * w + w, w)
        self.head = nn.Conv2d(w, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, C_in, H, W)`` → ``(N, H, W)``."""
        h, w = x.shape[-2:]
        if h % 4 or w % 4:
            x = F.pad(x, (0, -w % 4, 0, -h % 4), mode="replicate")
        e1 = self.enc1(x)
        e2 = self.enc2(F.max_pool2d(e1, 2))
        e3 = self.enc3(F.max_pool2d(e2, 2))
        d2 = self.dec2(torch.cat([F.interpolate(e3, scale_factor=2.0), e2], dim=1))
        d1 = self.dec1(torch.cat([F.interpolate(d2, scale_factor=2.0), e1], dim=1))
        return F.softplus(self.head(d1))[:, 0, :h, :w]


class LastFrame(nn.Module):
    """Feeds the last frame ``(N, C, H, W)`` of ``(N, T, C, H, W)`` to a 2-D network."""

    def __init__(self, body: nn.Module) -> None:
        super().__init__()
        self.body = body

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, T, C, H, W)`` → ``(N, H, W)`` from the last frame."""
        out: torch.Tensor = self.body(x[:, -1])
        return out


class StackedFrames(nn.Module):
    """Feeds all frames as channels ``(N, T·C, H, W)`` to a 2-D network (early fusion)."""

    def __init__(self, body: nn.Module) -> None:
        super().__init__()
        self.body = body

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, T, C, H, W)`` → ``(N, H, W)`` from all frames as channels."""
        out: torch.Tensor = self.body(x.flatten(1, 2))
        return out


@MODELS.register("static_cnn")
def static_cnn(
    frames: int, bands: Sequence[str], width: int = 16, train: TrainSettings | None = None
) -> TorchRainModel:
    """U-Net on the last frame only."""
    card = ModelCard(
        name="static_cnn",
        family="cnn",
        description=f"U-Net (width {width}) on the last frame",
        frames=1,
        bands=tuple(bands),
    )
    return TorchRainModel(card, LastFrame(UNet2d(len(bands), width)), train or TrainSettings())


@MODELS.register("early_fusion")
def early_fusion(
    frames: int, bands: Sequence[str], width: int = 16, train: TrainSettings | None = None
) -> TorchRainModel:
    """The same U-Net on all frames stacked as channels (temporal early fusion)."""
    card = ModelCard(
        name="early_fusion",
        family="temporal",
        description=f"U-Net (width {width}) on {frames} frames × bands stacked as channels",
        frames=frames,
        bands=tuple(bands),
    )
    net = StackedFrames(UNet2d(frames * len(bands), width))
    return TorchRainModel(card, net, train or TrainSettings())
