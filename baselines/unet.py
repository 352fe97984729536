"""The shared decoder of every neural model: a small three-level U-Net.

Each model of the temporal family turns the IR frames into a 2-D feature map with its own stem
(:mod:`qpebench.baselines.temporal`); this one network then maps the features to the raw head
outputs, so comparisons between stems isolate how the frames are used.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


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
    """Three-level U-Net mapping ``(N, C_in, H, W)`` to raw head outputs ``(N, K, H, W)``.

    Any H and W: the input is padded (edge values) to multiples of 4 and the output cropped.

    Args:
        in_channels: Feature channels from the stem.
        width: Channels of the first level (then 2× and 4×).
        out_channels: Head channels ``K`` (see :class:`qpebench.training.OutputSpec`).
    """

    def __init__(self, in_channels: int, width: int = 16, out_channels: int = 1) -> None:
        super().__init__()
        w = width
        self.enc1 = _block(in_channels, w)
        self.enc2 = _block(w, 2 * w)
        self.enc3 = _block(2 * w, 4 * w)
        self.dec2 = _block(4 * w + 2 * w, 2 * w)
        self.dec1 = _block(2 * w + w, w)
        self.head = nn.Conv2d(w, out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, C_in, H, W)`` → ``(N, K, H, W)``."""
        h, w = x.shape[-2:]
        if h % 4 or w % 4:
            x = F.pad(x, (0, -w % 4, 0, -h % 4), mode="replicate")
        e1 = self.enc1(x)
        e2 = self.enc2(F.max_pool2d(e1, 2))
        e3 = self.enc3(F.max_pool2d(e2, 2))
        d2 = self.dec2(torch.cat([F.interpolate(e3, scale_factor=2.0), e2], dim=1))
        d1 = self.dec1(torch.cat([F.interpolate(d2, scale_factor=2.0), e1], dim=1))
        out: torch.Tensor = self.head(d1)[:, :, :h, :w]
        return out
