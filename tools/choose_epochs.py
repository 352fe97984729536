"""Choose the training length on ``id_val`` alone, by the rule written before the runs.

    python -P tools/choose_epochs.py RUNS... [--models static_cnn,early_fusion]

Reads the records of RUNS (run folders of one split at several ``train.epochs``) of the given
models and, for each number of epochs, the ``id_val`` loss of the kept weights
(``training.best_val_loss``) of every model and seed. Only records whose model configuration is
the same but for ``train.epochs`` are compared, and every number of epochs must have the same
models. Per epochs: the loss averaged over the models, per seed; then its mean and standard
deviation over the seeds. The rule: the **fewest epochs whose mean loss is within one standard
deviation (over seeds) of the lowest mean** (more epochs that do not lower the id_val loss by
more than the seed noise cost time and buy nothing measurable; with one seed, the lowest mean).
No test set is read. Prints the table and the choice.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from qpebench.leaderboard.sources import find_records
from qpebench.records import load_record


def _identity(record: dict[str, Any]) -> str:
    """The model and its configuration less ``train.epochs`` (and the seed)."""
    config = json.loads(json.dumps(record.get("model_config", {})))
    config.get("train", {}).pop("epochs", None)
    config.pop("seed", None)
    return json.dumps([record["model"]["name"], config], sort_keys=True)


def main(argv: list[str]) -> int:
    """Print the id_val loss per epochs and the chosen epochs."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--models", default="static_cnn,early_fusion")
    args = parser.parse_args(argv)
    models = set(args.models.split(","))
    losses: dict[int, dict[int, dict[str, float]]] = {}
    for path in find_records(args.runs).files:
        record = load_record(path)
        if record["model"]["name"] not in models or record["model"].get("oracle_inputs"):
            continue
        epochs = int(record["training"]["settings"]["epochs"])
        seeds = losses.setdefault(epochs, {})
        seeds.setdefault(int(record["seed"]), {})[_identity(record)] = float(
            record["training"]["best_val_loss"]
        )
    configs = {frozenset(c for s in by_seed.values() for c in s) for by_seed in losses.values()}
    if not losses or len(configs) != 1:
        print("the epochs do not cover the same model configurations", file=sys.stderr)
        return 2
    rows = []
    for epochs in sorted(losses):
        per_seed = [float(np.mean(list(v.values()))) for _, v in sorted(losses[epochs].items())]
        spread = float(np.std(per_seed, ddof=1)) if len(per_seed) > 1 else 0.0
        rows.append((epochs, float(np.mean(per_seed)), spread))
        print(
            f"epochs {epochs:3d}: id_val loss {rows[-1][1]:.5f} ± {spread:.5f} over "
            f"{len(per_seed)} seeds: " + ", ".join(f"{x:.5f}" for x in per_seed)
        )
    best = min(rows, key=lambda r: r[1])
    chosen = min(r[0] for r in rows if r[1] <= best[1] + best[2])
    print(f"lowest mean at {best[0]} epochs; chosen: {chosen} epochs")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
