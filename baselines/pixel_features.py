"""Hand-made per-pixel features of IR brightness temperatures, and the training pixels.

The features follow the SEVIRI rain retrievals by machine learning (Thies, Nauss & Bendix
2008, J. Geophys. Res. 113, D23206; Kühnlein, Appelhans, Thies & Nauss 2014, Remote Sens.
Environ. 141, 129–143): the brightness temperature of every band, the spectral differences
that separate thick ice clouds from thin cirrus and warm clouds, local texture of the 10.8 µm
field, and its change in time (cooling cloud tops grow, Adler & Negri 1988, J. Appl. Meteor.
27, 30–51). Every feature is computed for every pixel at once, in array operations.

Features, in order (only those whose bands are configured):

- ``Tb_<band>``: brightness temperature of each band, last frame, in K.
- ``IR10.8_min<k>``, ``IR10.8_mean<k>``, ``IR10.8_std<k>``: minimum, mean and standard
  deviation of IR10.8 (last frame) over the k×k window around the pixel; at the patch edges
  over the part of the window inside the patch.
- ``<a>-<b>``: the band differences of :data:`BAND_DIFFERENCES`, last frame, in K.
- ``IR10.8_change``: IR10.8 of the last frame minus the frame before, in K per frame step
  (negative = cooling); only with two or more frames.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import torch
from torch.nn import functional as F
from tqdm.auto import tqdm

from qpebench.errors import ConfigError
from qpebench.models import F32, ModelCard, TrainData
from qpebench.store import SampleBatch

#: The window band and the band of the temporal feature.
IR108 = "IR10.8"

#: Band differences ``a − b`` used where both bands are configured: upper-tropospheric water
#: vapour minus window (near or above 0 K for deep convective tops, Schmetz et al. 1997, Adv.
#: Space Res. 19, 433–441), the two water-vapour bands (moisture in the column), cloud phase
#: (8.7 − 10.8 µm, Strabala, Ackerman & Menzel 1994, J. Appl. Meteor. 33, 212–229) and the
#: split window (large for thin cirrus, Inoue 1987, J. Geophys. Res. 92, 3991–4000).
BAND_DIFFERENCES: tuple[tuple[str, str], ...] = (
    ("WV6.2", "IR10.8"),
    ("WV6.2", "WV7.3"),
    ("IR8.7", "IR10.8"),
    ("IR10.8", "IR12.0"),
)

#: Most samples read from the store at once.
TRAIN_BLOCK = 256


def check_window(window: int) -> None:
    """Check that ``window`` is an odd integer ≥ 3.

    Raises:
        ConfigError: It is not.
    """
    if isinstance(window, bool) or not isinstance(window, int) or window < 3 or window % 2 == 0:
        raise ConfigError(f"window must be an odd integer >= 3, got {window!r}")


def feature_names(bands: Sequence[str], frames: int, window: int) -> list[str]:
    """Names of the features :func:`pixel_features` computes, in column order.

    Raises:
        ConfigError: IR10.8 is not among ``bands``.
    """
    if IR108 not in bands:
        raise ConfigError(f"pixel features need band {IR108}, the configuration has {list(bands)}")
    names = [f"Tb_{b}" for b in bands]
    names += [f"{IR108}_{stat}{window}" for stat in ("min", "mean", "std")]
    names += [f"{a}-{b}" for a, b in BAND_DIFFERENCES if a in bands and b in bands]
    if frames >= 2:
        names.append(f"{IR108}_change")
    return names


def feature_ops_per_pixel(bands: Sequence[str], frames: int, window: int) -> int:
    """Floating-point operations of :func:`pixel_features` per pixel (an operation count).

    Window minimum and mean: ``window²`` each; standard deviation: ``2·window² + 3`` (squares,
    sums, variance and root); one per difference and for the temporal change.
    """
    n_diff = sum(a in bands and b in bands for a, b in BAND_DIFFERENCES)
    return 4 * window**2 + 3 + n_diff + (1 if frames >= 2 else 0)


def _window_stats(tb: F32, window: int) -> tuple[F32, F32, F32]:
    """Minimum, mean and standard deviation of ``tb`` ``(N, H, W)`` over ``window``² windows.

    Pooling pads with −∞ (minimum) or leaves the padding out of the count (mean), so at the
    edges the statistics cover the part of the window inside the patch.
    """
    x = torch.from_numpy(tb.astype(np.float64))[:, None]
    centre = x.mean(dim=(2, 3), keepdim=True)
    xc = x - centre  # centred: the variance E[x²] − E[x]² keeps its precision
    pad = window // 2
    minimum = -F.max_pool2d(-x, window, stride=1, padding=pad)
    mean = F.avg_pool2d(xc, window, stride=1, padding=pad, count_include_pad=False)
    mean_sq = F.avg_pool2d(xc * xc, window, stride=1, padding=pad, count_include_pad=False)
    std = (mean_sq - mean * mean).clamp_min(0).sqrt()
    return (
        minimum[:, 0].numpy().astype(np.float32),
        (mean + centre)[:, 0].numpy().astype(np.float32),
        std[:, 0].numpy().astype(np.float32),
    )


def pixel_features(ir: F32, bands: Sequence[str], *, window: int = 5) -> tuple[list[str], F32]:
    """Per-pixel features of IR ``(N, T, C, H, W)`` (see the module docstring).

    Args:
        ir: Brightness temperatures in K; band axis in the order of ``bands``.
        bands: Canonical band names of the band axis.
        window: Side of the square texture window, odd.

    Returns:
        The feature names and the features ``(N·H·W, F)`` float32, pixels in ``(N, H, W)``
        row-major order.

    Raises:
        ConfigError: IR10.8 is missing, ``bands`` does not match the band axis, or ``window``
            is not an odd integer ≥ 3.
    """
    check_window(window)
    if ir.ndim != 5 or ir.shape[2] != len(bands):
        raise ConfigError(
            f"pixel features need IR (N, T, C={len(bands)}, H, W) for bands {list(bands)}, got "
            f"shape {tuple(ir.shape)}"
        )
    frames = ir.shape[1]
    names = feature_names(bands, frames, window)
    last = ir[:, -1]
    pos = {b: i for i, b in enumerate(bands)}
    tb = last[:, pos[IR108]]
    columns = [last[:, i] for i in range(len(bands))]
    columns += _window_stats(tb, window)
    pairs = [(pos[a], pos[b]) for a, b in BAND_DIFFERENCES if a in pos and b in pos]
    columns += [last[:, i] - last[:, j] for i, j in pairs]
    if frames >= 2:
        columns.append(tb - ir[:, -2, pos[IR108]])
    features = np.stack(columns, axis=-1).reshape(-1, len(names))
    return names, features.astype(np.float32, copy=False)


def training_blocks(data: TrainData, card: ModelCard, *, progress: bool) -> Iterator[SampleBatch]:
    """The training samples ``data.train`` in blocks of ≤ :data:`TRAIN_BLOCK` samples.

    Each block is read as the card says: its frames, step and bands.

    Raises:
        ConfigError: The training set is empty.
    """
    idx = np.asarray(data.train, dtype=np.int64)
    if idx.size == 0:
        raise ConfigError(f"{card.name}: the training set is empty")
    starts = range(0, idx.size, TRAIN_BLOCK)
    for start in tqdm(starts, desc=f"fit {card.name}", unit="block", disable=not progress):
        yield data.store.read(
            idx[start : start + TRAIN_BLOCK], frames=card.frames, step=card.step, bands=card.bands
        )
