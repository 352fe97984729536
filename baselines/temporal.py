"""The neural model family: one stem per way of using the frames, one shared decoder.

Every model maps normalised IR ``(N, T, C, H, W)`` (``T`` frames ``step`` store steps apart, ``C``
bands) through its **stem** to a 2-D feature map ``(N, F, H, W)``, then through the same U-Net
decoder and head (:class:`qpebench.baselines.unet.UNet2d`) to the raw outputs decoded by
:class:`qpebench.training.OutputSpec`. The stems:

========================  =======================================================================
``static_cnn``            the last frame, bands as channels (``F = C``)
``early_fusion``          all frames × bands stacked as channels (``F = T·C``)
``conv3d_time``           two 3-D convolutions over (time, y, x), bands as channels, then time
                          folded into channels (``F = s·T``)
``conv4d``                two full 4-D convolutions over (time, band, y, x) from one input
                          channel, then time and band folded into channels (``F = s·T·C``)
``conv4d_factorized``     a 4-D convolution over (band, y, x) then one over time
                          (kernels ``1×3×3×3`` and ``3×1×1×1``; ``F = s·T·C``)
``convgru``               a convolutional GRU over the frames, its last hidden state (``F = s``)
========================  =======================================================================

Each factory takes ``frames, bands, step``, the decoder ``width`` (or a ``param_budget`` that picks
the width whose total parameter count is closest to it, for comparisons at matched cost), the
stem width ``stem_width``, the optional outputs (``probability``, ``rain_threshold``,
``quantiles``), ``oracle_inputs`` (hidden generator states appended to the bands as channels of
every frame, for the ceiling of what an input can add: ``docs/synthetic.md``) and the training
settings ``train``.

A network is first built on the meta device (shapes only, no memory) and refused if it would have
more than :data:`qpebench.models.MAX_PARAMETERS` parameters, so a configuration or a model file
asking for an absurd width fails at once instead of allocating it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from qpebench.baselines.conv4d import Conv4d
from qpebench.baselines.unet import UNet2d
from qpebench.errors import ConfigError
from qpebench.models import MAX_PARAMETERS, ModelCard
from qpebench.registry import MODELS
from qpebench.sample import check_oracle_inputs
from qpebench.trainer import TrainSettings, train_settings
from qpebench.training import OutputSpec, TorchRainModel


class LastFrame(nn.Module):
    """The last frame ``(N, C, H, W)`` of ``(N, T, C, H, W)``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, T, C, H, W)`` → ``(N, C, H, W)``."""
        return x[:, -1]


class StackedFrames(nn.Module):
    """All frames as channels ``(N, T·C, H, W)`` (early fusion)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, T, C, H, W)`` → ``(N, T·C, H, W)``."""
        return x.flatten(1, 2)


class BatchNorm4d(nn.BatchNorm3d):
    """Batch normalisation of ``(N, C, T, B, H, W)`` per channel (through BatchNorm3d)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Normalise each channel over batch, time, band and space."""
        return super().forward(x.flatten(2, 3)).view(x.shape)


class TimeConv3d(nn.Module):
    """Two 3-D convolutions over (time, y, x) with bands as channels; time folded into channels.

    Args:
        bands: Input bands ``C``.
        width: Stem channels ``s``.
    """

    def __init__(self, bands: int, width: int) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv3d(bands, width, 3, padding=1, bias=False),
            nn.BatchNorm3d(width),
            nn.ReLU(inplace=True),
            nn.Conv3d(width, width, 3, padding=1, bias=False),
            nn.BatchNorm3d(width),
            nn.ReLU(inplace=True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, T, C, H, W)`` → ``(N, s·T, H, W)``."""
        out: torch.Tensor = self.net(x.transpose(1, 2))
        return out.flatten(1, 2)


class SpectroTemporalConv4d(nn.Module):
    """Two :class:`Conv4d` layers over (time, band, y, x); time and band folded into channels.

    Args:
        width: Stem channels ``s``.
        factorized: ``(band × space)`` then time (kernels ``1×3×3×3``, ``3×1×1×1``) instead of
            two full ``3⁴`` kernels.
    """

    def __init__(self, width: int, factorized: bool = False) -> None:
        super().__init__()
        if factorized:
            first = Conv4d(1, width, (1, 3, 3, 3), padding=(0, 1, 1, 1), bias=False)
            second = Conv4d(width, width, (3, 1, 1, 1), padding=(1, 0, 0, 0), bias=False)
        else:
            first = Conv4d(1, width, 3, padding=1, bias=False)
            second = Conv4d(width, width, 3, padding=1, bias=False)
        self.net = nn.Sequential(
            first,
            BatchNorm4d(width),
            nn.ReLU(inplace=True),
            second,
            BatchNorm4d(width),
            nn.ReLU(inplace=True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, T, C, H, W)`` → ``(N, s·T·C, H, W)``."""
        out: torch.Tensor = self.net(x.unsqueeze(1))
        return out.flatten(1, 3)


class ConvGRU(nn.Module):
    """A convolutional GRU (Shi et al. 2015's ConvLSTM idea with GRU gates) over the frames.

    Args:
        bands: Input bands ``C``.
        width: Hidden channels ``s``.
    """

    def __init__(self, bands: int, width: int) -> None:
        super().__init__()
        self.width = width
        self.gates = nn.Conv2d(bands + width, 2 * width, 3, padding=1)
        self.candidate = nn.Conv2d(bands + width, width, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, T, C, H, W)`` → the hidden state after the last frame ``(N, s, H, W)``."""
        n, _, _, h, w = x.shape
        state = x.new_zeros(n, self.width, h, w)
        for frame in x.unbind(1):
            update, reset = torch.sigmoid(self.gates(torch.cat([frame, state], 1))).chunk(2, 1)
            candidate = torch.tanh(self.candidate(torch.cat([frame, reset * state], 1)))
            state = (1 - update) * state + update * candidate
        return state


class RainNet(nn.Module):
    """A stem followed by the shared U-Net decoder: ``(N, T, C, H, W)`` → ``(N, K, H, W)``."""

    def __init__(self, stem: nn.Module, decoder: UNet2d) -> None:
        super().__init__()
        self.stem = stem
        self.decoder = decoder

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Raw head outputs of normalised IR."""
        out: torch.Tensor = self.decoder(self.stem(x))
        return out


#: Per model: (description, default stem width, stem builder (frames, bands, s) → (stem, F)).
StemBuilder = Callable[[int, int, int], tuple[nn.Module, int]]
STEMS: dict[str, tuple[str, int, StemBuilder]] = {
    "static_cnn": ("U-Net on the last frame", 0, lambda t, c, s: (LastFrame(), c)),
    "early_fusion": (
        "U-Net on all frames × bands stacked as channels",
        0,
        lambda t, c, s: (StackedFrames(), t * c),
    ),
    "conv3d_time": (
        "3-D convolutions over (time, y, x), bands as channels, then the U-Net",
        8,
        lambda t, c, s: (TimeConv3d(c, s), s * t),
    ),
    "conv4d": (
        "4-D convolutions over (time, band, y, x), then the U-Net",
        4,
        lambda t, c, s: (SpectroTemporalConv4d(s), s * t * c),
    ),
    "conv4d_factorized": (
        "4-D convolution over (band, y, x) then over time, then the U-Net",
        8,
        lambda t, c, s: (SpectroTemporalConv4d(s, factorized=True), s * t * c),
    ),
    "convgru": (
        "convolutional GRU over the frames, then the U-Net",
        16,
        lambda t, c, s: (ConvGRU(c, s), s),
    ),
}


def _parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def budget_width(stem: nn.Module, features: int, outputs: int, budget: int) -> int:
    """The decoder width whose total parameter count (stem + decoder) is closest to ``budget``.

    Raises:
        ConfigError: The budget is above :data:`~qpebench.models.MAX_PARAMETERS`, or the stem
            alone exceeds it.
    """
    if budget > MAX_PARAMETERS:
        raise ConfigError(
            f"param_budget={budget:,} is above the {MAX_PARAMETERS:,} parameters a model may have"
        )
    fixed = _parameters(stem)

    def total(width: int) -> int:
        with torch.device("meta"):  # shapes only: no memory, no initialisation
            return fixed + _parameters(UNet2d(features, width, outputs))

    if total(1) > budget:
        raise ConfigError(f"param_budget={budget} is below the smallest model ({total(1)})")
    lo, hi = 1, 2
    while total(hi) < budget:
        lo, hi = hi, hi * 2
    while hi - lo > 1:  # total() increases with the width
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if total(mid) <= budget else (lo, mid)
    return min((lo, hi), key=lambda w: abs(total(w) - budget))


def _factory(name: str) -> Callable[..., TorchRainModel]:
    description, default_stem_width, build_stem = STEMS[name]
    single_frame = name == "static_cnn"

    def factory(
        frames: int,
        bands: Sequence[str],
        step: int = 1,
        width: int = 16,
        param_budget: int | None = None,
        stem_width: int = default_stem_width,
        probability: bool = False,
        rain_threshold: float = 1.0,
        quantiles: Sequence[float] = (),
        oracle_inputs: Sequence[str] = (),
        train: TrainSettings | Mapping[str, Any] | None = None,
    ) -> TorchRainModel:
        used_frames = 1 if single_frame else frames
        oracle = check_oracle_inputs(oracle_inputs, name)
        channels = len(bands) + len(oracle)
        if stem_width < (0 if default_stem_width == 0 else 1) or width < 1:
            raise ConfigError(f"{name}: width and stem_width must be positive")
        outputs = OutputSpec(probability, rain_threshold, tuple(quantiles))
        try:
            with torch.device("meta"):  # shapes only: the size is checked before anything is built
                stem, features = build_stem(used_frames, channels, stem_width)
                if param_budget is not None:
                    width = budget_width(stem, features, outputs.channels, param_budget)
                count = _parameters(RainNet(stem, UNet2d(features, width, outputs.channels)))
        except RuntimeError:  # torch cannot even describe a tensor that large
            count = None
        if count is None or count > MAX_PARAMETERS:
            made = "more than torch can count" if count is None else f"{count:,}"
            raise ConfigError(
                f"{name}: width {width}, stem width {stem_width} make {made} parameters; a model "
                f"may have at most {MAX_PARAMETERS:,}"
            )
        stem, features = build_stem(used_frames, channels, stem_width)
        stem_text = f", stem width {stem_width}" if default_stem_width else ""
        card = ModelCard(
            name=name,
            family="cnn" if single_frame else "temporal",
            description=f"{description} (width {width}{stem_text})",
            frames=used_frames,
            bands=tuple(bands),
            step=1 if single_frame else step,
            oracle_inputs=oracle,
        )
        net = RainNet(stem, UNet2d(features, width, outputs.channels))
        return TorchRainModel(card, net, train_settings(train), outputs)

    factory.__name__ = name
    factory.__doc__ = f"``{name}``: {description} (see the module docstring)."
    return factory


for _name in STEMS:
    MODELS.register(_name, _factory(_name))
