"""A PyTorch ``Dataset`` over a sample store."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from torch.utils.data import Dataset

from qpebench.store import SampleBatch, SampleStore


class StoreDataset(Dataset[dict[str, Any]]):
    """Samples of a store as tensors: ``ir (T,C,H,W)``, ``rain (H,W)``, ``valid (H,W)``, ``index``.

    ``rain`` is 0 where ``valid`` is False (the mask, not the value, tells no-data apart), so it
    can enter a loss directly.

    Args:
        store: The store.
        indices: Sample indices to serve, in order.
        frames: Keep ``frames`` frames ending at the target time; all if ``None``.
        step: Every ``step``-th stored frame, counted back from the target.
        bands: Keep these canonical bands, in this order; all if ``None``.
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
        preload: bool = False,
        block: int = 256,
    ) -> None:
        self.store = store
        self.indices = np.asarray(indices, dtype=np.int64)
        self.frames = frames
        self.step = step
        self.bands = None if bands is None else list(bands)
        self._cache: dict[str, torch.Tensor] | None = None
        if preload:
            parts = [
                self._tensors(self._read(self.indices[s : s + block]))
                for s in range(0, len(self.indices), block)
            ]
            self._cache = {k: torch.cat([p[k] for p in parts]) for k in parts[0]} if parts else {}

    def _read(self, idx: npt.NDArray[np.int64]) -> SampleBatch:
        return self.store.read(idx, frames=self.frames, step=self.step, bands=self.bands)

    @staticmethod
    def _tensors(batch: SampleBatch) -> dict[str, torch.Tensor]:
        valid = torch.from_numpy(batch.valid)
        rain = torch.from_numpy(np.where(batch.valid, batch.rain, 0.0).astype(np.float32))
        return {"ir": torch.from_numpy(batch.ir), "rain": rain, "valid": valid}

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

    def __getitem__(self, i: int) -> dict[str, Any]:
        if self._cache is not None:
            item: dict[str, Any] = {k: v[i] for k, v in self._cache.items()}
        else:
            item = {k: v[0] for k, v in self._tensors(self._read(self.indices[i : i + 1])).items()}
        item["index"] = int(self.indices[i])
        return item
