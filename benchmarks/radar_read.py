"""Time reads of real radar files: qpebench's readers against pysteps' importers, same run.

    python benchmarks/radar_read.py [--repeats 7] [--data ../shared/data]

For each file, both readers run alternately ``repeats`` times (after one warm-up read each, so the
OS page cache is warm for both); the medians and their ratio (pysteps / qpebench, > 1 means
qpebench is faster) are printed. Like is compared with like: pysteps' MRMS importer runs at native
resolution (``window_size=1``; its default block-averages to 4 km), and both sides return the
full field with no-data masked.
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from qpebench.datasets.radar import read_radar
from qpebench.registry import load_builtins

CASES = {
    "OPERA NIMBUS RATE (ODIM HDF5, 2200×1900)": (
        "opera/nimbus_20241126/T_PAAH22_C_EUOC_20241126013000.hdf",
        lambda imp, p: imp.import_opera_hdf5(p),
    ),
    "OPERA legacy RATE + QIND (ODIM HDF5, 2200×1900)": (
        "opera/legacy_20180824/T_PAAH21_C_EUOC_20180824180000.hdf",
        lambda imp, p: imp.import_opera_hdf5(p),
    ),
    "MRMS PrecipRate (GRIB2, 3500×7000)": (
        "mrms/PrecipRate_00.00_20190610-000000.grib2",
        lambda imp, p: imp.import_mrms_grib(p, window_size=1),
    ),
}


def _time(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--data", type=Path, default=Path(__file__).parents[2] / "shared" / "data")
    args = parser.parse_args()
    load_builtins()
    warnings.simplefilter("ignore")
    from pysteps.io import importers

    print(f"{'file':<48} {'qpebench s':>10} {'pysteps s':>10} {'ratio':>6}")
    for label, (rel, pysteps_read) in CASES.items():
        path = str(args.data / rel)
        ours_fn = partial(read_radar, path)
        theirs_fn = partial(pysteps_read, importers, path)
        ours_fn(), theirs_fn()  # warm-up: page cache, imports, PROJ database
        ours, theirs = [], []
        for i in range(args.repeats):
            order = (ours_fn, theirs_fn) if i % 2 == 0 else (theirs_fn, ours_fn)
            for fn in order:
                (ours if fn is ours_fn else theirs).append(_time(fn))
        mo, mt = statistics.median(ours), statistics.median(theirs)
        print(f"{label:<48} {mo:>10.3f} {mt:>10.3f} {mt / mo:>6.2f}")
    print(f"medians of {args.repeats} alternating reads; ratio = pysteps / qpebench")


if __name__ == "__main__":
    main()
