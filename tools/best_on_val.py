"""The best sequence configuration of a study, chosen on ``id_val`` alone.

    python -P tools/best_on_val.py RUN_FOLDER

Reads the records of one run folder of the input-configuration study and ranks every
configuration that sees more than one frame and no oracle field by the mean over its seeds of
the ``id_val`` loss of its kept weights (``training.best_val_loss``). The lowest is the
configuration that gets seeds 3 and 4 beside the reference for the final static-vs-best-temporal
comparison (``sh tools/input_config_study.sh COMMIT EPOCHS "[3,4]" final OVERRIDES…``). No test
set is read. Prints the ranking and the overrides that select the best configuration.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from qpebench.leaderboard.sources import find_records
from qpebench.records import load_record


def main(paths: list[str]) -> int:
    """Print the ranking by mean id_val loss and the best configuration's overrides."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for path in find_records([Path(p) for p in paths]).files:
        record = load_record(path)
        card = record["model"]
        if card["frames"] < 2 or card.get("oracle_inputs"):
            continue
        key = json.dumps([card["name"], record.get("model_config", {})], sort_keys=True)
        groups.setdefault(key, []).append(record)
    if not groups:
        print("no sequence configuration found", file=sys.stderr)
        return 2
    ranked = sorted(
        groups.values(), key=lambda rs: float(np.mean([r["training"]["best_val_loss"] for r in rs]))
    )
    for records in ranked:
        losses = [float(r["training"]["best_val_loss"]) for r in records]
        card = records[0]["model"]
        print(
            f"{np.mean(losses):.5f} over {len(losses)} seeds: {card['name']} "
            f"frames {card['frames']} step {card.get('step', 1)} bands {','.join(card['bands'])}"
        )
    best = ranked[0][0]
    name, card = best["model"]["name"], best["model"]
    print(
        f"best: models=[{name}] +model_params.{name}.frames={card['frames']} "
        f"+model_params.{name}.step={card.get('step', 1)} "
        f"+model_params.{name}.bands=[{','.join(card['bands'])}]"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
