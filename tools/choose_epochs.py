"""Choose the training length on ``id_val`` alone, by the rule written before the runs.

    python -P tools/choose_epochs.py RUNS...

Reads the records of RUNS (run folders of the same split at several ``train.epochs``) and, for
each number of epochs, the ``id_val`` loss of the kept weights (``training.best_val_loss``) of
every model and seed. Per epochs: the loss averaged over the models, per seed; then its mean and
standard deviation over the seeds. The rule: the **fewest epochs whose mean loss is within one
standard deviation (over seeds) of the lowest mean** (more epochs that do not lower the id_val
loss by more than the seed noise cost time and buy nothing measurable). No test set is read.
Prints the table and the choice.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from qpebench.leaderboard.sources import find_records
from qpebench.records import load_record


def main(paths: list[str]) -> int:
    """Print the id_val loss per epochs and the chosen epochs."""
    losses: dict[int, dict[int, list[float]]] = {}
    for path in find_records([Path(p) for p in paths]).files:
        record = load_record(path)
        epochs = int(record["training"]["settings"]["epochs"])
        seed = int(record["seed"])
        loss = float(record["training"]["best_val_loss"])
        losses.setdefault(epochs, {}).setdefault(seed, []).append(loss)
    if not losses:
        print("no record found", file=sys.stderr)
        return 2
    rows = []
    for epochs in sorted(losses):
        per_seed = [float(np.mean(v)) for _, v in sorted(losses[epochs].items())]
        models = {len(v) for v in losses[epochs].values()}
        rows.append((epochs, float(np.mean(per_seed)), float(np.std(per_seed, ddof=1)), per_seed))
        print(
            f"epochs {epochs:3d}: id_val loss {rows[-1][1]:.5f} ± {rows[-1][2]:.5f} over "
            f"{len(per_seed)} seeds ({sorted(models)} models per seed): "
            + ", ".join(f"{x:.5f}" for x in per_seed)
        )
    best = min(rows, key=lambda r: r[1])
    chosen = min(r[0] for r in rows if r[1] <= best[1] + best[2])
    print(f"lowest mean at {best[0]} epochs; chosen: {chosen} epochs")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
