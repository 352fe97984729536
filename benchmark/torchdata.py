"""A PyTorch ``Dataset`` over a sample store, and the streaming statistics of its inputs."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from torch import distributed as dist
from torch.utils.data import Dataset

from qpebench.distributed import current_world
from qpebench.sample import check_oracle_inputs
from qpebench.store import SampleBatch, SampleStore, stack_oracle


def sample_nbytes(frames: int, bands: int, height: int, width: int) -> int:
    """Memory one sample's tensors take (``ir`` float32, ``rain`` float32, ``valid`` bool)."""
    return frames * bands * height * width * 4 + height * width * 5 + 8


class StoreDataset(Dataset[dict[str, Any]]):
    """Samples of a store as tensors: ``ir (T,C,H,W)``, ``rain (H,W)``, ``valid (H,W)``, ``index``.

    ``rain`` is 0 where ``valid`` is False (the mask, not the value, tells no-data apart), so it
    can enter a loss directly. Indexed with a list of positions, it returns them as one batch
    read from the store in one call: a ``DataLoader`` with ``batch_size=None`` and a sampler
    that yields lists of positions then reads each batch once.

    Args:
        store: The store.
        indices: Sample indices to serve, in order.
        frames: Keep ``frames`` frames ending at the target time; all if ``None``.
        step: Every ``step``-th stored frame, counted back from the target.
        bands: Keep these canonical bands, in this order; all if ``None``.
        oracle: Oracle fields appended as channels of every frame (a model card's
            ``oracle_inputs``; :func:`qpebench.store.stack_oracle`).
        preload: Read everything once into memory (fast epochs for sets that fit in RAM);
            otherwise read each sample from its shard on access (works in worker processes).
        block: Samples per read while preloading.
    """

    def __init__(
        self,
        store: SampleStore,
        indices: npt.NDArray[np.int64] | Sequence[int],
        *,
        frames: int | None = None,
        step: int = 1,
        bands: Sequence[str] | None = None,
        oracle: Sequence[str] = (),
        preload: bool = False,
        block: int = 256,
    ) -> None:
        self.store = store
        self.indices = np.asarray(indices, dtype=np.int64)
        self.frames = frames
        self.step = step
        self.bands = list(store.bands) if bands is None else list(bands)
        self.oracle = check_oracle_inputs(oracle, "StoreDataset")
        self._cache: dict[str, torch.Tensor] | None = None
        if preload:
            parts = [
                self._tensors(self._read(self.indices[s : s + block]))
                for s in range(0, len(self.indices), block)
            ]
            self._cache = {k: torch.cat([p[k] for p in parts]) for k in parts[0]} if parts else {}

    @property
    def channels(self) -> int:
        """Input channels per frame: the bands, then the oracle fields."""
        return len(self.bands) + len(self.oracle)

    def _read(self, idx: npt.NDArray[np.int64]) -> SampleBatch:
        batch = self.store.read(
            idx, frames=self.frames, step=self.step, bands=self.bands, aux=self.oracle
        )
        return replace(batch, ir=stack_oracle(batch, self.oracle))

    @staticmethod
    def _tensors(batch: SampleBatch) -> dict[str, torch.Tensor]:
        valid = torch.from_numpy(batch.valid)
        rain = torch.from_numpy(np.where(batch.valid, batch.rain, 0.0).astype(np.float32))
        ir = torch.from_numpy(np.ascontiguousarray(batch.ir))
        return {"ir": ir, "rain": rain, "valid": valid}

    def preloaded(self) -> dict[str, torch.Tensor]:
        """The in-memory tensors ``ir``, ``rain``, ``valid`` of a preloaded dataset.

        Raises:
            RuntimeError: The dataset was built with ``preload=False``.
        """
        if self._cache is None:
            raise RuntimeError("StoreDataset was built with preload=False")
        return self._cache

    def __len__(self) -> int:
        return int(self.indices.size)

    def __getitem__(self, i: int | Sequence[int]) -> dict[str, Any]:
        """Sample ``i``, or the samples at the positions ``i`` as one batch (one store read)."""
        if not isinstance(i, int | np.integer):
            pos = np.asarray(i, dtype=np.int64)
            if self._cache is not None:
                batch = {k: v[torch.from_numpy(pos)] for k, v in self._cache.items()}
            else:
                batch = self._tensors(self._read(self.indices[pos]))
            return {**batch, "index": torch.from_numpy(self.indices[pos])}
        if self._cache is not None:
            item: dict[str, Any] = {k: v[i] for k, v in self._cache.items()}
        else:
            item = {k: v[0] for k, v in self._tensors(self._read(self.indices[i : i + 1])).items()}
        item["index"] = int(self.indices[i])
        return item


class BandMoments:
    """Per-band count, mean and sum of squared deviations, merged batch by batch.

    Chan et al.'s pairwise update in float64: one pass over a store of any size gives the mean
    and (unbiased) standard deviation of the in-memory computation over all samples.

    Args:
        bands: Number of bands (axis 2 of ``ir (N, T, C, H, W)``).
    """

    def __init__(self, bands: int) -> None:
        self.count = 0.0
        self.mean = torch.zeros(bands, dtype=torch.float64)
        self.m2 = torch.zeros(bands, dtype=torch.float64)

    def add(self, ir: torch.Tensor) -> None:
        """Take in a batch ``(N, T, C, H, W)``."""
        x = ir.detach().to("cpu", torch.float64).transpose(0, 2).reshape(ir.shape[2], -1)
        n = float(x.shape[1])
        if n == 0:
            return
        mean = x.mean(dim=1)
        m2 = ((x - mean[:, None]) ** 2).sum(dim=1)
        self._merge(n, mean, m2)

    def _merge(self, n: float, mean: torch.Tensor, m2: torch.Tensor) -> None:
        total = self.count + n
        delta = mean - self.mean
        self.mean = self.mean + delta * (n / total)
        self.m2 = self.m2 + m2 + delta**2 * (self.count * n / total)
        self.count = total

    def merged_over_processes(self) -> BandMoments:
        """The moments of every process's share, merged in rank order (itself in one process)."""
        world = current_world()
        if world.size == 1:
            return self
        shares: list[Any] = [None] * world.size
        dist.all_gather_object(shares, (self.count, self.mean, self.m2))
        out = BandMoments(self.mean.numel())
        for count, mean, m2 in shares:
            if count:
                out._merge(count, mean, m2)
        return out

    def mean_std(self, floor: float = 1e-3) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and unbiased standard deviation per band (float32; the std at least ``floor``)."""
        std = torch.sqrt(self.m2 / max(self.count - 1.0, 1.0)).clamp_min(floor)
        return self.mean.float(), std.float()
