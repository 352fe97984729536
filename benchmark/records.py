"""Result records: one JSON file per (run, model), schema-versioned, validated on write and load.

A record carries the metrics of every test set, the model card, the full configuration, the
dataset version, the seed, and the provenance (code version and commit with a dirty flag,
package versions, hardware, runtime). Records are written atomically and never overwritten.
"""

from __future__ import annotations

import json
import math
import os
import platform
import subprocess
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from qpebench import __version__
from qpebench.atomic import write_json_atomic
from qpebench.errors import QpebenchError

SCHEMA = "qpebench-result"
SCHEMA_VERSION = 1
REQUIRED: dict[str, type | tuple[type, ...]] = {
    "schema": str,
    "schema_version": int,
    "run_id": str,
    "created": str,
    "split": dict,
    "model": dict,
    "metrics": dict,
    "n_samples": dict,
    "config": dict,
    "dataset": dict,
    "seed": int,
    "training": dict,
    "provenance": dict,
    "runtime_s": dict,
}
PACKAGES = (
    "qpebench",
    "numpy",
    "torch",
    "h5py",
    "xarray",
    "pyproj",
    "pandas",
    "scikit-learn",
    "skops",
    "scipy",
    "hydra-core",
)


class RecordError(QpebenchError, ValueError):
    """A result record does not follow the schema."""


def validate_record(record: dict[str, Any], source: str = "record") -> dict[str, Any]:
    """Check a record's schema, keys and types.

    Raises:
        RecordError: Naming the source and the first problem.
    """
    if record.get("schema") != SCHEMA:
        raise RecordError(f"{source}: not a {SCHEMA} record (schema={record.get('schema')!r})")
    if record.get("schema_version") != SCHEMA_VERSION:
        raise RecordError(
            f"{source}: schema version {record.get('schema_version')!r}, expected {SCHEMA_VERSION}"
        )
    for key, kind in REQUIRED.items():
        if key not in record:
            raise RecordError(f"{source}: missing key {key!r}")
        if not isinstance(record[key], kind):
            raise RecordError(f"{source}: {key!r} must be {kind}, got {type(record[key]).__name__}")
    for test_set, scores in record["metrics"].items():
        if not isinstance(scores, dict):
            raise RecordError(f"{source}: metrics[{test_set!r}] must map metric names to numbers")
        for name, value in scores.items():
            if value is not None and not isinstance(value, int | float):
                raise RecordError(f"{source}: metrics[{test_set!r}][{name!r}] = {value!r}")
    for key in ("name", "frames", "bands", "parameters"):
        if key not in record["model"]:
            raise RecordError(f"{source}: model card lacks {key!r}")
    return record


def _json_safe(obj: Any) -> Any:
    if isinstance(obj, float):
        return None if math.isnan(obj) or math.isinf(obj) else obj
    if isinstance(obj, dict):
        return {str(k): _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_json_safe(v) for v in obj]
    if hasattr(obj, "item"):  # numpy scalars
        return _json_safe(obj.item())
    return obj


def write_record(path: Path, record: dict[str, Any]) -> Path:
    """Validate and write ``record`` to ``path`` atomically.

    Raises:
        RecordError: The record is invalid.
        FileExistsError: ``path`` exists (records are never overwritten).
    """
    record = _json_safe(record)
    validate_record(record, str(path))
    try:
        write_json_atomic(path, record, exclusive=True)
    except FileExistsError:
        raise FileExistsError(f"{path}: a result record is never overwritten") from None
    return path


def load_record(path: Path) -> dict[str, Any]:
    """Load and validate a record.

    Raises:
        RecordError: Not JSON, or not a valid record.
    """
    try:
        record = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise RecordError(f"{path}: cannot read a JSON record ({exc})") from None
    if not isinstance(record, dict):
        raise RecordError(f"{path}: a record must be a JSON object")
    return validate_record(record, str(path))


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(
            ["git", *args],
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
            cwd=Path(__file__).resolve().parent,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip()


def provenance(device: str) -> dict[str, Any]:
    """Code version, commit and dirty flag, package versions, hardware and platform."""
    packages: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            packages[name] = version(name)
        except PackageNotFoundError:
            packages[name] = None
    commit = _git("rev-parse", "HEAD")
    status = _git("status", "--porcelain", "--untracked-files=no")
    hardware: dict[str, Any] = {
        "machine": platform.machine(),
        "processor": platform.processor(),
        "cpu_count": os.cpu_count(),
        "device": device,
    }
    if device.startswith("cuda"):
        import torch

        hardware["gpu"] = torch.cuda.get_device_name(0)
    return {
        "code_version": __version__,
        "commit": commit,
        "dirty": bool(status) if status is not None else None,
        "packages": packages,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "hardware": hardware,
    }


def now_utc() -> str:
    """The current UTC time as ISO 8601 with a ``Z``."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
