"""Job folders as the runner writes them (a record and its day states), made for the tests."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np

from qpebench.evaluation import EvalSettings, ModelEvaluation, evaluate_model
from qpebench.models import RainModel, build_model
from qpebench.records import SCHEMA, SCHEMA_VERSION, write_record
from qpebench.states import STATES_FILE, write_states

#: Test sets of the tiny store: Europe 2023–2024 (24 days) and CONUS (12 days).
SETTINGS = EvalSettings(strata=("season",), bootstrap=200)


class Scaled(RainModel):
    """The Auto-Estimator's rates times ``factor``, under another name: a known skill.

    On the tiny store's Europe test set CSI@1 grows with the factor (0.12 at 0.6, 0.40 at 1,
    0.47 at 1.6; under 0.03 below 0.5).
    """

    def __init__(self, name: str, factor: float) -> None:
        self.base = build_model("auto_estimator", frames=1, bands=["IR10.8"])
        self.card = dataclasses.replace(self.base.card, name=name)
        self.config: dict[str, Any] = {}
        self.factor = factor

    def predict(self, ir: np.ndarray) -> np.ndarray:
        return self.base.predict(ir) * np.float32(self.factor)


def tiny_test_sets(store) -> dict[str, np.ndarray]:
    """``id_test`` (Europe 2023–2024) and ``ood_test/conus`` of the tiny store."""
    md = store.metadata
    europe = (md["region"] == "europe") & (md["year"] >= 2023)
    return {
        "id_test": np.flatnonzero(europe).astype(np.int64),
        "ood_test/conus": np.flatnonzero(md["region"] == "conus").astype(np.int64),
    }


def evaluate(model: RainModel, store, seed: int, settings: EvalSettings = SETTINGS):
    """``model`` evaluated on :func:`tiny_test_sets` with run seed ``seed``."""
    return evaluate_model(model, store, tiny_test_sets(store), settings, seed)


def job_record(
    model: RainModel,
    ev: ModelEvaluation,
    seed: int,
    settings: EvalSettings = SETTINGS,
    run_id: str = "run-1",
) -> dict[str, Any]:
    """The record the runner writes for one job (without its ``states`` reference)."""
    evaluation = {
        k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(settings).items()
    }
    return {
        "schema": SCHEMA,
        "schema_version": SCHEMA_VERSION,
        "run_id": run_id,
        "created": "2026-11-26T00:00:00Z",
        "split": {
            "name": "tiny",
            "train_domain": "europe",
            "test_domains": {"id_test": "europe", "ood_test/conus": "conus"},
        },
        "model": model.card.to_json(),
        "model_config": model.config,
        "metrics": ev.metrics,
        "intervals": ev.intervals,
        "strata": ev.strata,
        "curves": ev.curves,
        "examples": ev.examples,
        "n_samples": {"id_test": 24, "ood_test/conus": 12},
        "config": {"evaluation": evaluation, "seeds": [seed]},
        "dataset": {"adapter": "synthetic", "version": "tiny-v1"},
        "seed": seed,
        "training": {},
        "provenance": {
            "code_version": "0.1.0",
            "commit": None,
            "dirty": None,
            "packages": {},
            "python": "3.11",
            "platform": "linux",
            "hardware": {},
        },
        "runtime_s": {},
    }


def write_job(
    run_dir: Path,
    model: RainModel,
    ev: ModelEvaluation,
    seed: int,
    settings: EvalSettings = SETTINGS,
) -> Path:
    """``<run_dir>/<model>.seed<seed>/record.json`` and its ``states.npz``; the record's path."""
    job = run_dir / f"{model.card.name}.seed{seed}"
    job.mkdir(parents=True)
    record = job_record(model, ev, seed, settings, run_id=run_dir.name)
    record["states"] = write_states(job / STATES_FILE, ev)
    return write_record(job / "record.json", record)
