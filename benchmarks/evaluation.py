"""Cost of the evaluation protocol against one plain pooled pass, on the default test sets.

    python -P benchmarks/evaluation.py [--repeats 3] [--model gpi]

Both read the same samples of the default split (``synthetic_europe_to_all`` on the default
synthetic store, built or reused from the cache) and feed the same model's predictions to the
full metric set. The plain pass updates one accumulator set per test set, block by block. The
protocol (``qpebench.evaluation.evaluate_model``) takes each sample's state into its day and
stratum tables (season, day/night, local hour, viewing angle, regime, per-pixel Tb bin), draws
1000 day-block bootstrap replicates and encodes one example map per test set. Reported: median
seconds of each, their ratio, and the share of the protocol's time spent reading the store.
"""

from __future__ import annotations

import argparse
import statistics
import time

from qpebench.config import compose_config, run_config
from qpebench.evaluation import EvalSettings, evaluate_model
from qpebench.metrics import metric_set
from qpebench.models import RainModel, build_model
from qpebench.registry import load_builtins
from qpebench.runner import prepare_store
from qpebench.store import SampleStore


def plain_pass(model: RainModel, store: SampleStore, test_sets: dict) -> None:
    card = model.card
    for idx in test_sets.values():
        families = metric_set()
        for start in range(0, idx.size, 128):
            batch = store.read(idx[start : start + 128], frames=card.frames, bands=card.bands)
            pred = model.predict(batch.ir)
            for fam in families:
                fam.update(pred, batch.rain, batch.valid)
        for fam in families:
            fam.result()


def read_only(model: RainModel, store: SampleStore, test_sets: dict) -> None:
    card = model.card
    for idx in test_sets.values():
        for start in range(0, idx.size, 128):
            store.read(idx[start : start + 128], frames=card.frames, bands=card.bands)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--model", default="gpi")
    args = parser.parse_args()
    load_builtins()
    cfg = run_config(compose_config(["progress=false"]))
    store = prepare_store(cfg.data, cfg.cache_dir, progress=False)
    split = cfg.split.resolve(store.metadata, patch_shape=store.patch_shape, frames=store.frames)
    model = build_model(args.model, frames=cfg.frames, bands=cfg.bands)
    n = sum(int(v.size) for v in split.test_sets.values())
    settings = EvalSettings()
    times: dict[str, list[float]] = {"read": [], "plain": [], "protocol": []}
    for _ in range(args.repeats):
        for name, run in (
            ("read", lambda: read_only(model, store, split.test_sets)),
            ("plain", lambda: plain_pass(model, store, split.test_sets)),
            ("protocol", lambda: evaluate_model(model, store, split.test_sets, settings, 0)),
        ):
            t0 = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - t0)
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"{args.model} on {n} test samples of {store.patch_shape}, median of {args.repeats}:")
    print(f"  store read only   {med['read']:6.2f} s")
    print(f"  plain pooled pass {med['plain']:6.2f} s")
    print(f"  full protocol     {med['protocol']:6.2f} s")
    print(f"  protocol / plain = {med['protocol'] / med['plain']:.2f}")
    print(f"  protocol beyond reading: {med['protocol'] - med['read']:.2f} s")


if __name__ == "__main__":
    main()
