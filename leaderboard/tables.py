"""Leaderboard tables from result records: rows are models, columns metrics per test set.

The main table shows, for each test set, the CSI at 1 mm/h and the RMSE, plus the
generalization gap (mean over the out-of-distribution sets minus in-distribution). A detail
table lists more scores per model and test set. Nothing here computes a metric: every number
comes from a record.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import pandas as pd

ID_SET = "id_test"
OOD_PREFIX = "ood_test/"
MAIN_METRICS = ("csi@1", "rmse")
DETAIL_METRICS = (
    *(f"{score}@{t}" for score in ("pod", "far", "csi") for t in ("0.1", "1", "5", "10")),
    "ets@1",
    "bias",
    "rmse",
    "pearson_r",
)


def set_label(test_set: str) -> str:
    """``id_test`` → ``ID``; ``ood_test/conus`` → ``conus``."""
    return "ID" if test_set == ID_SET else test_set.removeprefix(OOD_PREFIX)


def ordered_sets(names: Sequence[str]) -> list[str]:
    """Test sets in display order: ``id_test`` first, then the OOD sets alphabetically."""
    unique = list(dict.fromkeys(names))
    return [n for n in unique if n == ID_SET] + sorted(n for n in unique if n != ID_SET)


def scores_frame(records: Sequence[dict[str, Any]]) -> pd.DataFrame:
    """Long table of every score: model, family, frames, parameters, test_set, metric, value."""
    rows = []
    for rec in records:
        card = rec["model"]
        for test_set, scores in rec["metrics"].items():
            for metric, value in scores.items():
                rows.append(
                    {
                        "model": card["name"],
                        "family": card.get("family", ""),
                        "frames": card["frames"],
                        "parameters": card["parameters"],
                        "test_set": test_set,
                        "metric": metric,
                        "value": math.nan if value is None else float(value),
                    }
                )
    return pd.DataFrame(rows)


def _fmt(value: float) -> str:
    return "–" if value is None or math.isnan(value) else f"{value:.3f}"


def _markdown(frame: pd.DataFrame) -> str:
    header = "| " + " | ".join(frame.columns) + " |"
    rule = "|" + "|".join("---" if i == 0 else "---:" for i in range(len(frame.columns))) + "|"
    body = ["| " + " | ".join(str(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join([header, rule, *body])


def main_table(records: Sequence[dict[str, Any]]) -> pd.DataFrame:
    """Rows = models; columns = CSI@1 and RMSE per test set, and the OOD−ID gap of each."""
    long = scores_frame(records)
    wide = long.pivot_table(
        index="model", columns=["metric", "test_set"], values="value", aggfunc="first"
    )
    test_sets = ordered_sets(list(long["test_set"]))
    ood = [s for s in test_sets if s != ID_SET]
    info = long.drop_duplicates("model").set_index("model")
    out = pd.DataFrame(index=wide.index)
    out["frames"] = info["frames"]
    out["params"] = info["parameters"].map(lambda p: f"{int(p):,}")
    for metric in MAIN_METRICS:
        for s in test_sets:
            out[f"{metric.upper()} {set_label(s)}"] = wide.get((metric, s))
        if ood and ID_SET in test_sets:
            gap = sum(wide[(metric, s)] for s in ood) / len(ood) - wide[(metric, ID_SET)]
            out[f"Δ{metric.upper()} OOD−ID"] = gap
    sort_key = f"CSI@1 {set_label(ID_SET)}"
    if sort_key in out:
        out = out.sort_values(sort_key, ascending=False, na_position="last")
    return out.reset_index()


def detail_table(records: Sequence[dict[str, Any]]) -> pd.DataFrame:
    """Rows = (model, test set); columns = :data:`DETAIL_METRICS`."""
    long = scores_frame(records)
    long = long[long["metric"].isin(DETAIL_METRICS)]
    wide = long.pivot_table(
        index=["model", "test_set"], columns="metric", values="value", aggfunc="first"
    ).reset_index()
    wide["test_set"] = wide["test_set"].map(set_label)
    return wide[["model", "test_set", *[m for m in DETAIL_METRICS if m in wide.columns]]]


def leaderboard_markdown(records: Sequence[dict[str, Any]], title: str | None = None) -> str:
    """Markdown leaderboard (main table and detail table) of ``records``.

    The text depends on the records' metrics, cards, split and dataset version only (no time
    stamp), so the same seed and configuration render the same page.
    """
    if not records:
        raise ValueError("no result record to render")
    first = records[0]
    split = first["split"]
    lines = [f"# {title or split['name']}", ""]
    if split.get("description"):
        lines += [split["description"], ""]
    lines += [
        f"Dataset `{first['dataset']['adapter']}` version `{first['dataset']['version']}`, "
        f"seed {first['seed']}. Test-set sizes: "
        + ", ".join(
            f"{set_label(k)} {first['n_samples'][k]}"
            for k in ordered_sets(list(first["n_samples"]))
        )
        + ". Rates in mm/h; CSI at 1 mm/h (`>=`); gaps are the mean over OOD sets minus ID.",
        "",
    ]
    main = main_table(records)
    for col in main.columns[3:]:
        main[col] = main[col].map(_fmt)
    lines += [_markdown(main), "", "## Detail", ""]
    detail = detail_table(records)
    for col in detail.columns[2:]:
        detail[col] = detail[col].map(_fmt)
    lines += [_markdown(detail), ""]
    return "\n".join(lines)
