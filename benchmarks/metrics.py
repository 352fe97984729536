"""Throughput of the full metric set against pysteps.verification on the same fields.

    python -P benchmarks/metrics.py [--fields 200] [--size 512] [--block 10]

Fields are generated block by block (seeded gamma rain with gaps), so memory does not grow with
the number of fields. The full set: pooled contingency counts at 0.1, 1, 5, 10, 15 mm/h, the
continuous sums, and FSS at 1 and 5 mm/h for windows of 1, 5, 9, 17 and 33 pixels — for
qpebench through its accumulators, for pysteps through ``det_cat_fct_accum``,
``det_cont_fct_accum`` and ``fss_accum`` (one field at a time, as its FSS takes 2-D fields).
Reported: Mpixel/s per family and in all, the ratio, and the peak of traced extra memory
(``tracemalloc``; numpy's allocations are traced) for a quarter of the fields and for all of them.
Times are measured without ``tracemalloc`` (its bookkeeping of every Python allocation slows
both sides) and memory in separate traced passes over ``--memory-blocks`` blocks. The rain-rate
histograms (no pysteps counterpart) get a line of their own, outside the full set.
"""

from __future__ import annotations

import argparse
import time
import tracemalloc
from collections.abc import Callable, Iterator

import numpy as np
from pysteps.verification import detcatscores, detcontscores, spatialscores

from qpebench.metrics import (
    FSS_SCALES,
    FSS_THRESHOLDS,
    THRESHOLDS,
    ContingencyAccumulator,
    ContinuousAccumulator,
    FSSAccumulator,
    HistogramAccumulator,
)

Batch = tuple[np.ndarray, np.ndarray, np.ndarray]


def fields(n: int, size: int, block: int) -> Iterator[Batch]:
    """``n`` fields in blocks: (pred, obs, valid), each ``(block, size, size)``."""
    for start in range(0, n, block):
        rng = np.random.default_rng(start)
        shape = (min(block, n - start), size, size)
        obs = rng.gamma(0.35, 4.0, shape) * (rng.random(shape) > 0.6)
        pred = np.clip(obs * rng.lognormal(0, 0.5, shape) + rng.normal(0, 0.3, shape), 0, None)
        yield pred, obs, rng.random(shape) > 0.05


def ours(kind: str) -> Callable[[Batch], None]:
    acc = {
        "categorical": ContingencyAccumulator(THRESHOLDS),
        "continuous": ContinuousAccumulator(),
        "fss": FSSAccumulator(FSS_THRESHOLDS, FSS_SCALES),
        "histogram": HistogramAccumulator(),
    }[kind]
    return lambda batch: acc.update(*batch)


def theirs(kind: str) -> Callable[[Batch], None]:
    if kind == "categorical":
        tables = [detcatscores.det_cat_fct_init(np.nextafter(t, -np.inf)) for t in THRESHOLDS]

        def cat(batch: Batch) -> None:
            pred, obs, valid = batch
            p, o = pred[valid], obs[valid]
            for table in tables:
                detcatscores.det_cat_fct_accum(table, p, o)

        return cat
    if kind == "continuous":
        err = detcontscores.det_cont_fct_init()

        def cont(batch: Batch) -> None:
            pred, obs, valid = batch
            detcontscores.det_cont_fct_accum(err, pred[valid], obs[valid])

        return cont
    states = [spatialscores.fss_init(t, n) for t in FSS_THRESHOLDS for n in FSS_SCALES]

    def fss(batch: Batch) -> None:
        pred, obs, valid = batch
        p, o = np.where(valid, pred, np.nan), np.where(valid, obs, np.nan)
        for k in range(p.shape[0]):
            for state in states:
                spatialscores.fss_accum(state, p[k], o[k])

    return fss


def measure(update: Callable[[Batch], None], n: int, size: int, block: int) -> float:
    """Seconds spent in ``update`` over ``n`` fields."""
    seconds = 0.0
    for batch in fields(n, size, block):
        start = time.perf_counter()
        update(batch)
        seconds += time.perf_counter() - start
    return seconds


def peak_memory(update: Callable[[Batch], None], n: int, size: int, block: int) -> tuple[int, int]:
    """Memory of ``update`` over ``n`` fields, traced over the whole run.

    Returns:
        The largest extra memory of one update above what was allocated before it (the block
        of fields included), and the memory still held after the last block is freed: both
        must not grow with ``n`` (a leak shows in the second).
    """
    tracemalloc.start()
    peak = 0
    try:
        for batch in fields(n, size, block):
            tracemalloc.reset_peak()
            before = tracemalloc.get_traced_memory()[0]
            update(batch)
            peak = max(peak, tracemalloc.get_traced_memory()[1] - before)
            del batch
        held = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    return peak, held


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fields", type=int, default=200)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--block", type=int, default=10)
    parser.add_argument("--memory-blocks", type=int, default=3)
    args = parser.parse_args()
    mpix = args.fields * args.size**2 / 1e6
    n_mem = min(args.fields, args.memory_blocks * args.block)
    print(f"{args.fields} fields of {args.size}², blocks of {args.block}: {mpix:.0f} Mpixel")
    print(
        f"{'family':<12} {'qpebench':>10} {'pysteps':>10} {'ratio':>6} "
        f"{'MB ours':>8} {'MB pysteps':>10}"
    )
    total = {"ours": 0.0, "theirs": 0.0}
    for kind in ("categorical", "continuous", "fss"):
        t_ours = measure(ours(kind), args.fields, args.size, args.block)
        t_theirs = measure(theirs(kind), args.fields, args.size, args.block)
        m_ours = peak_memory(ours(kind), n_mem, args.size, args.block)
        m_theirs = peak_memory(theirs(kind), n_mem, args.size, args.block)
        total["ours"] += t_ours
        total["theirs"] += t_theirs
        print(
            f"{kind:<12} {mpix / t_ours:>7.1f} Mp/s {mpix / t_theirs:>7.1f} Mp/s "
            f"{t_theirs / t_ours:>5.1f}× {m_ours[0] / 2**20:>8.0f} {m_theirs[0] / 2**20:>10.0f}"
        )
    print(
        f"{'full set':<12} {mpix / total['ours']:>7.1f} Mp/s {mpix / total['theirs']:>7.1f} Mp/s "
        f"{total['theirs'] / total['ours']:>5.1f}×"
    )
    t_hist = measure(ours("histogram"), args.fields, args.size, args.block)
    m_hist = peak_memory(ours("histogram"), n_mem, args.size, args.block)
    print(
        f"{'histogram':<12} {mpix / t_hist:>7.1f} Mp/s {'—':>12} {'':>6} {m_hist[0] / 2**20:>8.0f}"
    )
    quarter = max(args.fields // 4, args.block)
    for kind in ("categorical", "continuous", "fss", "histogram"):
        flat = [peak_memory(ours(kind), n, args.size, args.block) for n in (quarter, args.fields)]
        print(
            f"ours ({kind}), {quarter} vs {args.fields} fields: peak extra "
            f"{flat[0][0] / 2**20:.1f} vs {flat[1][0] / 2**20:.1f} MB, held after the run "
            f"{flat[0][1] / 2**10:.0f} vs {flat[1][1] / 2**10:.0f} kB"
        )


if __name__ == "__main__":
    main()
