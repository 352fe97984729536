"""Bounded decompression against the standard library's unbounded one, same run.

    python -P benchmarks/decompress.py [--repeats 7] [--data ../shared/data]

Every compressed file a reader opens now goes through ``qpebench.limits.decompress_bounded``
(1 MiB output steps, checked against the caps) instead of ``gzip.decompress``/``bz2.decompress``.
For real gzip files and a 64 MiB synthetic field (gzip and bzip2), both run alternately
``repeats`` times after one warm-up each; the medians and their ratio (stdlib / qpebench, > 1
means qpebench is faster) are printed.
"""

from __future__ import annotations

import argparse
import bz2
import gzip
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from qpebench.limits import decompress_bounded

REAL = {
    "FMI PGM (gzip, 1.1 MB)": "fmi/201609281600_fmi.radar.composite.lowest_FIN_SUOMI1.pgm.gz",
    "RADOLAN RX (gzip, 0.8 MB)": "radolan/raa01-rx_10000-1408102050-dwd---bin.gz",
}


def _median(fn: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--data", type=Path, default=Path(__file__).parents[2] / "shared" / "data")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    field = np.round(rng.gamma(0.3, 2.0, 16 * 1024**2) * 10).astype("<u4").tobytes()  # 64 MiB
    cases = {label: (args.data / rel).read_bytes() for label, rel in REAL.items()}
    cases["synthetic rain field (gzip, 64 MiB)"] = gzip.compress(field, 6)
    cases["synthetic rain field (bzip2, 64 MiB)"] = bz2.compress(field, 9)
    print(f"{'stream':<40} {'qpebench s':>10} {'stdlib s':>10} {'ratio':>6}")
    for label, packed in cases.items():
        codec = "bzip2" if packed.startswith(b"BZh") else "gzip"
        stdlib = bz2.decompress if codec == "bzip2" else gzip.decompress
        assert decompress_bounded(packed, codec, label) == stdlib(packed)  # warm-up and check
        ours = _median(lambda p=packed, c=codec, n=label: decompress_bounded(p, c, n), args.repeats)
        theirs = _median(lambda p=packed, f=stdlib: f(p), args.repeats)
        print(f"{label:<40} {ours:>10.4f} {theirs:>10.4f} {theirs / ours:>6.2f}")
    print(f"medians of {args.repeats}; ratio = stdlib / qpebench")


if __name__ == "__main__":
    main()
