"""Is the sample store fast enough that training never waits for data?

Builds a synthetic store (default demo geometry: 64×64, 4 frames, 7 bands), then measures in
the same run, as medians over repeats:

* random-access reads through ``StoreDataset`` (the training data path, no preload), samples/s;
* the same through a ``DataLoader`` with 2 worker processes;
* the training step of ``early_fusion`` (forward + backward + optimiser, batch 16), samples/s.

It prints the ratio read / train: above 1 the loader keeps up with training on this machine.
Usage: ``python -P benchmarks/store_read.py [--samples 512] [--repeats 5]``.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from qpebench.bands import DEFAULT_BANDS
from qpebench.baselines.unet import early_fusion
from qpebench.datasets.synthetic import build_synthetic_store
from qpebench.torchdata import StoreDataset
from qpebench.trainer import TrainSettings
from qpebench.training import rain_loss


def median_rate(fn, n_items: int, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return n_items / statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--samples", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        store = build_synthetic_store(
            Path(tmp) / "s",
            regions={"europe": {"n_samples": args.samples, "years": [2021, 2022]}},
            progress=False,
        )
        build_s = time.perf_counter() - t0
        rng = np.random.default_rng(0)
        order = rng.permutation(len(store))
        ds = StoreDataset(store, order)
        n = min(256, len(ds))

        def read_items() -> None:
            for i in range(n):
                ds[i]

        read_rate = median_rate(read_items, n, args.repeats)

        def read_loader() -> None:
            loader = DataLoader(ds, batch_size=16, num_workers=2)
            for _ in loader:
                pass

        loader_rate = median_rate(read_loader, len(ds), max(2, args.repeats // 2))

        torch.manual_seed(0)
        model = early_fusion(4, DEFAULT_BANDS, train=TrainSettings())
        net = model.net
        opt = torch.optim.AdamW(net.parameters(), lr=1e-3)
        batch = StoreDataset(store, order[:16], preload=True).preloaded()

        def train_steps() -> None:
            for _ in range(4):
                loss = rain_loss(net(batch["ir"] / 100.0), batch["rain"], batch["valid"])
                opt.zero_grad()
                loss.backward()
                opt.step()

        train_rate = median_rate(train_steps, 4 * 16, args.repeats)
    print(
        f"store build: {args.samples} samples in {build_s:.1f} s "
        f"({args.samples / build_s:.0f} samples/s, generation + compression + checksums)"
    )
    print(f"random-access read, 1 process : {read_rate:8.0f} samples/s")
    print(f"DataLoader, 2 workers         : {loader_rate:8.0f} samples/s")
    print(f"early_fusion training step    : {train_rate:8.0f} samples/s (batch 16, fwd+bwd+opt)")
    print(f"ratio read / train            : {read_rate / train_rate:8.1f}x (1 process)")
    print(f"ratio loader / train          : {loader_rate / train_rate:8.1f}x (2 workers)")


if __name__ == "__main__":
    main()
