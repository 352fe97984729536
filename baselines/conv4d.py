"""An exact and fast 4-D convolution over (time, band, y, x).

:class:`Conv4d` has the :class:`torch.nn.Conv3d` signature with 4-tuples; input
``(N, C, T, B, H, W)``, output ``(N, O, T', B', H', W')`` with each output size
``⌊(L + 2p − d (k − 1) − 1) / s⌋ + 1``.

Exact: one bias per output channel (public implementations add one per kernel time slice and get
the edges wrong), every stride/padding/dilation/groups combination and the padding modes of
``Conv3d`` (``zeros``, ``reflect``, ``replicate``, ``circular``), initialised as ``Conv3d``
initialises over the 4-D fan-in (``kaiming_uniform_(a=√5)`` on a weight
``(O, C/g, kT, kB, kH, kW)``; bias uniform in ``±1/√fan_in``).

Fast: public implementations loop over the kernel's time offsets and call ``conv3d`` once per
offset and output frame. Here the time axis is folded into the batch and the kernel's time
offsets into the input channels: the ``kT`` input frames each output frame needs are taken as
a view (``Tensor.unfold`` over time, whose backward is one accumulation rather than the slow
scatter of an index gather) and copied once into ``(N·T', C·kT, B, H, W)`` (channels ordered
group-major so ``groups`` still apply; laid out channels-last-3d, which ``conv3d`` runs faster)
and convolved with the weight
reshaped to ``(O, C/g·kT, kB, kH, kW)`` in **one** ``conv3d`` call, forward and backward;
zero padding of the band and space axes is done inside ``conv3d`` (no padded copy).
"""

from __future__ import annotations

import math
import numbers
import operator
from typing import Literal

import torch
from torch import nn
from torch.nn import functional as F

from qpebench.errors import ConfigError

Size4 = int | tuple[int, int, int, int]
PaddingMode = Literal["zeros", "reflect", "replicate", "circular"]


def _is_int(value: object) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _four(value: Size4, name: str) -> tuple[int, int, int, int]:
    items: list[object] = (
        [value] * 4 if _is_int(value) else list(value) if isinstance(value, tuple | list) else []
    )
    if len(items) != 4 or not all(_is_int(v) for v in items):
        raise ConfigError(f"Conv4d: {name} must be an int or a 4-tuple of ints, got {value!r}")
    a, b, c, d = (operator.index(v) for v in items if isinstance(v, numbers.Integral))
    return (a, b, c, d)


def _pad_indices(length: int, pad: int, mode: PaddingMode, device: torch.device) -> torch.Tensor:
    """Source index of every position of an axis padded by ``pad`` on both sides (−1 = zero)."""
    positions = torch.arange(-pad, length + pad, device=device)
    if mode == "zeros":
        return torch.where((positions >= 0) & (positions < length), positions, -1)
    if mode == "replicate":
        return positions.clamp(0, length - 1)
    if mode == "circular":
        return positions % length
    period = 2 * (length - 1)  # reflect: mirror without repeating the edge
    folded = positions.abs() % period if period else torch.zeros_like(positions)
    return torch.where(folded < length, folded, period - folded)


class Conv4d(nn.Module):
    """4-D convolution over ``(time, band, y, x)`` (see the module docstring).

    Args:
        in_channels: Input channels ``C``.
        out_channels: Output channels ``O``.
        kernel_size: ``(kT, kB, kH, kW)`` or one int.
        stride: Stride per axis.
        padding: Padding per axis (both sides).
        dilation: Dilation per axis.
        groups: Channel groups (divides ``C`` and ``O``).
        bias: Add a learnable bias per output channel.
        padding_mode: ``zeros``, ``reflect``, ``replicate`` or ``circular``.

    Raises:
        ConfigError: Non-positive sizes, negative padding, groups not dividing the channels, an
            unknown padding mode, or reflect padding not smaller than the input.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: Size4,
        stride: Size4 = 1,
        padding: Size4 = 0,
        dilation: Size4 = 1,
        groups: int = 1,
        bias: bool = True,
        padding_mode: PaddingMode = "zeros",
    ) -> None:
        super().__init__()
        self.kernel_size = _four(kernel_size, "kernel_size")
        self.stride = _four(stride, "stride")
        self.padding = _four(padding, "padding")
        self.dilation = _four(dilation, "dilation")
        if min(self.kernel_size + self.stride + self.dilation) < 1 or min(self.padding) < 0:
            raise ConfigError(
                f"Conv4d: kernel_size/stride/dilation must be ≥ 1 and padding ≥ 0, got "
                f"{self.kernel_size}/{self.stride}/{self.dilation}/{self.padding}"
            )
        if groups < 1 or in_channels % groups or out_channels % groups:
            raise ConfigError(
                f"Conv4d: groups={groups} must divide in_channels={in_channels} and "
                f"out_channels={out_channels}"
            )
        if padding_mode not in ("zeros", "reflect", "replicate", "circular"):
            raise ConfigError(f"Conv4d: unknown padding_mode {padding_mode!r}")
        self.in_channels, self.out_channels, self.groups = in_channels, out_channels, groups
        self.padding_mode: PaddingMode = padding_mode
        self.weight = nn.Parameter(
            torch.empty(out_channels, in_channels // groups, *self.kernel_size)
        )
        self.bias = nn.Parameter(torch.empty(out_channels)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Initialise as ``nn.Conv3d`` does, over the 4-D fan-in."""
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            fan_in = self.weight[0].numel()
            bound = 1 / math.sqrt(fan_in) if fan_in > 0 else 0.0
            nn.init.uniform_(self.bias, -bound, bound)

    def extra_repr(self) -> str:
        """The constructor arguments, as ``nn.Conv3d`` prints them."""
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
            f"stride={self.stride}, padding={self.padding}, dilation={self.dilation}, "
            f"groups={self.groups}, bias={self.bias is not None}, "
            f"padding_mode={self.padding_mode!r}"
        )

    def _pad(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int, int]]:
        """Pad the input; return it with the padding left to ``conv3d`` for (band, y, x).

        Zero padding of the band and space axes is left to ``conv3d`` (no copy); only the time
        axis is padded here. Other modes pad all four axes through index maps.
        """
        if not any(self.padding):
            return x, (0, 0, 0)
        if self.padding_mode == "zeros":
            pt = self.padding[0]
            padded = F.pad(x, (0, 0, 0, 0, 0, 0, pt, pt)) if pt else x
            return padded, (self.padding[1], self.padding[2], self.padding[3])
        for axis, p in enumerate(self.padding):
            if not p:
                continue
            dim = 2 + axis
            length = x.shape[dim]
            if self.padding_mode == "reflect" and p >= length:
                raise ConfigError(
                    f"Conv4d: reflect padding {p} needs an input longer than {p} on axis {axis}, "
                    f"got {length}"
                )
            x = x.index_select(dim, _pad_indices(length, p, self.padding_mode, x.device))
        return x, (0, 0, 0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Convolve ``x`` ``(N, C, T, B, H, W)``.

        Raises:
            ConfigError: Wrong rank or channel count, or an output size below 1.
        """
        if x.ndim != 6 or x.shape[1] != self.in_channels:
            raise ConfigError(
                f"Conv4d expects (N, {self.in_channels}, T, B, H, W), got {tuple(x.shape)}"
            )
        for axis, length in enumerate(x.shape[2:]):
            p, k, d = self.padding[axis], self.kernel_size[axis], self.dilation[axis]
            if length + 2 * p < d * (k - 1) + 1:
                raise ConfigError(
                    f"Conv4d: input {tuple(x.shape)} is too small on axis {'TBHW'[axis]}: "
                    f"{length} + 2·{p} padding < the dilated kernel {d * (k - 1) + 1}"
                )
        x, space_padding = self._pad(x)
        n, c, _, b, h, w = x.shape
        kt, st, dt = self.kernel_size[0], self.stride[0], self.dilation[0]
        span = dt * (kt - 1) + 1
        # The kT frames of each output step as a view (N, C, T', B, H, W, kT): ``unfold`` takes
        # windows of the dilated span every ``st`` frames; its backward adds overlapping windows.
        windows = x.unfold(2, span, st)[..., ::dt]
        t_out = windows.shape[2]
        g = self.groups
        # One copy into channels-last-3d order (N·T', B, H, W, C·kT), viewed as (N·T', C·kT, B,
        # H, W): conv3d runs faster on channels-last data. Channels are ordered (group, channel
        # in group, time offset): group-major, so ``groups`` still apply.
        folded = (
            windows.permute(0, 2, 3, 4, 5, 1, 6)
            .reshape(n * t_out, b, h, w, c * kt)
            .permute(0, 4, 1, 2, 3)
        )
        weight = self.weight.reshape(
            self.out_channels, (c // g) * kt, *self.kernel_size[1:]
        ).contiguous(memory_format=torch.channels_last_3d)
        out = F.conv3d(
            folded,
            weight,
            self.bias,
            stride=self.stride[1:],
            padding=space_padding,
            dilation=self.dilation[1:],
            groups=g,
        )
        return out.reshape(n, t_out, *out.shape[1:]).transpose(1, 2)
