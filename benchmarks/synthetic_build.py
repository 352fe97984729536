"""Synthetic store build speed: one rendering process against one per core, same run.

Prints samples/s for each (median of ``--repeats``) and the speed-up; both builds must give the
same dataset version (the content does not depend on the number of workers).
Usage: ``python -P benchmarks/synthetic_build.py [--samples 512] [--repeats 3]``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

from qpebench.datasets.synthetic import build_synthetic_store


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--samples", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    regions = {"europe": {"n_samples": args.samples, "years": [2021, 2022]}}
    results: dict[int, tuple[float, str]] = {}
    for workers in (1, os.cpu_count() or 1):
        times, version = [], ""
        for _ in range(args.repeats):
            with tempfile.TemporaryDirectory() as tmp:
                t0 = time.perf_counter()
                store = build_synthetic_store(
                    Path(tmp) / "s", regions=regions, progress=False, workers=workers
                )
                times.append(time.perf_counter() - t0)
                version = store.dataset_version
        results[workers] = (args.samples / statistics.median(times), version)
        print(f"workers={workers}: {results[workers][0]:6.1f} samples/s (version {version})")
    (one, v1), (many, vn) = results[1], results[max(results)]
    print(f"speed-up {many / one:.2f}x with {max(results)} workers; same version: {v1 == vn}")


if __name__ == "__main__":
    main()
