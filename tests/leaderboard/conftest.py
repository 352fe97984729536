"""Fabricated result records, schema 1 (as in runs/ today) and schema 2 (every new key)."""

from __future__ import annotations

import copy
import zlib

import numpy as np
import pytest

from qpebench.records import encode_field

THRESHOLDS = ("0.1", "1", "5", "10", "15")
DOMAINS = {"europe": ("conus", "india"), "conus": ("europe", "india")}


def _scores(rng: np.random.Generator, skill: float) -> dict[str, float | None]:
    out: dict[str, float | None] = {}
    for i, t in enumerate(THRESHOLDS):
        pod = float(np.clip(skill - 0.15 * i + rng.normal(0, 0.02), 0.01, 0.99))
        far = float(np.clip(0.3 + 0.1 * i + rng.normal(0, 0.02), 0.01, 0.99))
        out[f"pod@{t}"] = pod
        out[f"far@{t}"] = far
        out[f"csi@{t}"] = 1 / (1 / pod + 1 / (1 - far) - 1)
        out[f"ets@{t}"] = out[f"csi@{t}"] - 0.05
        out[f"hss@{t}"] = out[f"csi@{t}"] + 0.1
        out[f"fbias@{t}"] = pod / (1 - far)
    out["far@15"] = None  # no predicted pixel above 15 mm/h
    out.update(
        bias=float(rng.normal(0, 0.2)),
        relative_bias=float(rng.normal(0, 0.1)),
        mae=float(0.5 + rng.random()),
        rmse=float(1 + rng.random()),
        pearson_r=float(0.4 + 0.3 * rng.random()),
        n_pixels=4096.0,
        **{"fss5@1": float(0.5 + 0.3 * rng.random())},
    )
    return out


def fabricate(
    model: str = "static_cnn",
    seed: int = 0,
    *,
    version: int = 2,
    train: str = "europe",
    frames: int = 1,
    family: str = "cnn",
    probability: bool = False,
    split: str | None = None,
) -> dict:
    """A record with deterministic fabricated scores (depending on model, seed, train domain)."""
    rng = np.random.default_rng(zlib.crc32(f"{model}/{seed}/{train}/{frames}".encode()))
    skill = 0.55 + 0.1 * (zlib.crc32(model.encode()) % 5) / 5 + 0.02 * frames
    sets = {"id_test": train, **{f"ood_test/{d}": d for d in DOMAINS[train]}}
    metrics = {s: _scores(rng, skill - (0 if s == "id_test" else 0.1)) for s in sets}
    record = {
        "schema": "qpebench-result",
        "schema_version": version,
        "run_id": f"run-{model}-{seed}-{train}-{frames}",
        "created": f"2026-01-0{seed % 9 + 1}T00:00:00Z",
        "split": {
            "name": split or f"{train}_to_all",
            "description": f"Train on {train}, test everywhere else.",
            "sizes": {"train": 100, "id_val": 20, **{s: 30 for s in sets}},
            "dropped_by_buffer": {s: 0 for s in sets},
        },
        "model": {
            "name": model,
            "family": family,
            "frames": frames,
            "step": 1,
            "bands": ["IR10.8"],
            "parameters": 1234 * frames,
            "flops_per_sample": 10,
            "outputs": ["rate", "probability"] if probability else ["rate"],
        },
        "model_config": {"frames": frames, "train": {"seed": seed, "epochs": 2}},
        "metrics": metrics,
        "n_samples": {s: 30 for s in sets},
        "config": {"seed": seed},
        "dataset": {"adapter": "synthetic", "version": "abc123", "store": "/tmp/x"},
        "seed": seed,
        "training": {},
        "provenance": {
            "code_version": "0.1.0",
            "commit": "0" * 40,
            "dirty": False,
            "packages": {"numpy": "2"},
            "python": "3.11",
            "platform": "linux",
            "hardware": {"cpu_count": 2},
        },
        "runtime_s": {"fit": 1.0, "evaluate": 1.0},
    }
    if version == 1:
        del record["model_config"]
        return record
    record["split"]["train_domain"] = train
    record["split"]["test_domains"] = dict(sets)
    record["intervals"] = {
        s: {"csi@1": [m["csi@1"] - 0.02, m["csi@1"] + 0.03]} for s, m in metrics.items()
    }
    record["strata"] = {
        s: {
            "season": {
                v: {"csi@1": float(rng.random()), "rmse": 1.0, "bias": 0.1, "n_samples": 10}
                for v in ("DJF", "JJA")
            },
            "day": {"true": {"csi@1": 0.5, "n_samples": 12}},
        }
        for s in sets
    }
    edges = [0.0, 0.1, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0]  # as the writer does: last bin open
    obs = [4000, 300, 200, 120, 60, 30, 10, 2]
    record["curves"] = {
        s: {
            "histogram": {
                "edges": edges,
                "obs": obs,
                "pred": [int(c * (0.5 + rng.random())) for c in obs],
            }
        }
        for s in sets
    }
    if probability:
        for s in sets:
            record["curves"][s]["reliability@1"] = {
                "bins": [0.0, 0.25, 0.5, 0.75, 1.0],
                "forecast_mean": [0.1, 0.35, 0.6, 0.9],
                "observed_frequency": [0.08, 0.3, 0.65, 0.85],
                "count": [500, 120, 60, 20],
            }
    y, x = np.mgrid[0:8, 0:8]
    truth = np.where(x + y > 6, (x + y - 6) * 1.5, 0.0)
    truth[0, 0] = np.nan
    pred = np.clip(x + y - 5, 0, None) * (1 + 0.1 * seed)
    record["examples"] = {
        s: {
            "time": "2024-06-01T12:00:00",
            "ir108": encode_field(290.0 - 8 * (x + y), scale=0.1, offset=100.0),
            "truth": encode_field(truth, scale=0.01),
            "pred": encode_field(pred, scale=0.01),
        }
        for s in sets
    }
    record["paired"] = {
        "id_test": {"zero_rain": {"csi@1": {"diff": 0.4, "ci": [0.35, 0.45], "p_value": 0.001}}}
    }
    return copy.deepcopy(record)


@pytest.fixture
def make_record():
    """The record factory (:func:`fabricate`)."""
    return fabricate


@pytest.fixture
def records_v2() -> list[dict]:
    """Three seeds of two models on two splits, one model with probabilities, one seed-short."""
    out = []
    for train in DOMAINS:
        for seed in range(3):
            out.append(fabricate("static_cnn", seed, train=train))
            out.append(fabricate("early_fusion", seed, train=train, frames=4, family="temporal"))
        out.append(fabricate("early_fusion", 0, train=train, frames=2, family="temporal"))
        out.append(fabricate("prob_cnn", 0, train=train, probability=True))
    return out


@pytest.fixture
def records_v1() -> list[dict]:
    """Schema-1 records (no model_config and none of the new keys), one seed each."""
    return [fabricate(m, 0, version=1) for m in ("static_cnn", "gpi", "zero_rain")]
