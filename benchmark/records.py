"""Result records: one JSON file per (model, seed, configuration), schema-versioned, validated.

A record carries the metrics of every test set (pooled, per stratum, with day-block bootstrap
intervals, curves and one example map), the model card, the full configuration, the dataset
version, the seed, the provenance (code version and commit with a dirty flag, package versions,
hardware and numeric libraries, precision, runtime) and a reference to its per-day metric states
(``states``: file name beside the record, SHA-256 and size; :mod:`qpebench.states`), from which
the leaderboard computes every model comparison. Records are written atomically and never
overwritten. Version 2 records (comparisons stored in ``paired``, no states) and version 1
records (no strata, intervals, curves, examples, comparisons) still load.

A record may come from anyone (``leaderboard validate`` reads submitted ones), so loading bounds
what it may cost: the file's size (:data:`MAX_RECORD_BYTES`) before JSON parsing, every curve's
length (:data:`MAX_CURVE_POINTS`), every example map's declared cells (:data:`MAX_FIELD_CELLS`)
before decompressing it (bounded by that declared size), and every name that becomes part of a
file name (split, model, run id, test sets) is checked with :func:`qpebench.names.check_name`.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import os
import platform
import re
import subprocess
import zlib
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from qpebench import __version__
from qpebench.atomic import write_json_atomic
from qpebench.errors import FileFormatError, QpebenchError
from qpebench.limits import check_declared, decompress_bounded, human
from qpebench.names import check_name

SCHEMA = "qpebench-result"
SCHEMA_VERSION = 3
READABLE_VERSIONS = (1, 2, 3)
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
#: Keys version 2 adds.
REQUIRED_V2: dict[str, type | tuple[type, ...]] = {
    "intervals": dict,
    "strata": dict,
    "curves": dict,
    "examples": dict,
}
#: Required in version 2 only: from version 3 on, comparisons are computed at render time from
#: the day states (``states``), and a record carries ``paired`` or ``states`` (or both).
OPTIONAL_V3: dict[str, type | tuple[type, ...]] = {"paired": dict, "states": dict}
#: What the dirty flag of a record looks at (git pathspecs, from the repository root).
CODE_PATHS = (
    ":/benchmark",
    ":/datasets",
    ":/baselines",
    ":/leaderboard/*.py",
    ":/pyproject.toml",
    ":/Makefile",
    ":/tools",
)
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


#: Largest record file accepted, checked before JSON parsing (records are a few hundred kB).
MAX_RECORD_BYTES = 16 * 1024**2
#: Most points of one curve list (histogram edges and counts, reliability bins).
MAX_CURVE_POINTS = 10_000
#: Most cells of one encoded field (an example map; 2048 × 2048).
MAX_FIELD_CELLS = 2048 * 2048
#: Largest state file a record may refer to (a few MB: days × state length × 8 bytes per set).
MAX_STATES_BYTES = 64 * 1024**2
#: Keys of a record's ``states`` reference.
STATES_KEYS = ("bytes", "file", "sha256")
_SHA256 = re.compile(r"[0-9a-f]{64}")
#: The only prefix a test-set name may have; the part after it must be a safe name.
OOD_PREFIX = "ood_test/"


class RecordError(QpebenchError, ValueError):
    """A result record does not follow the schema."""


def _number(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, int | float)


def _interval(ci: Any) -> bool:
    """Whether ``ci`` is ``None`` or an interval ``[lo, hi]`` of numbers with ``lo <= hi``."""
    return ci is None or (
        isinstance(ci, list) and len(ci) == 2 and all(map(_number, ci)) and ci[0] <= ci[1]
    )


def _check_scores(source: str, where: str, scores: Any) -> None:
    if not isinstance(scores, dict):
        raise RecordError(f"{source}: {where} must map metric names to numbers")
    for name, value in scores.items():
        if value is not None and not _number(value):
            raise RecordError(f"{source}: {where}[{name!r}] = {value!r} is not a number")


def _mapping(source: str, where: str, value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise RecordError(f"{source}: {where} must be a mapping, got {type(value).__name__}")
    return value


def _numbers(source: str, where: str, value: Any) -> list[Any]:
    if isinstance(value, list) and len(value) > MAX_CURVE_POINTS:
        raise RecordError(
            f"{source}: {where} has {len(value):,} values, more than the {MAX_CURVE_POINTS:,} "
            "accepted"
        )
    if not isinstance(value, list) or not all(v is None or _number(v) for v in value):
        raise RecordError(f"{source}: {where} must be a list of numbers")
    return value


def _check_names(record: dict[str, Any], source: str) -> None:
    """Refuse names that become file names: split, model, run id and test sets."""
    check_name(record["run_id"], f"{source}: run_id", error=RecordError)
    check_name(record["split"]["name"], f"{source}: split name", error=RecordError)
    check_name(record["model"]["name"], f"{source}: model name", error=RecordError)
    for test_set in record["metrics"]:
        check_name(test_set.removeprefix(OOD_PREFIX), f"{source}: test set", error=RecordError)


#: What every record's nested parts must hold (key → type), checked on write and load.
NESTED: dict[str, dict[str, type | tuple[type, ...]]] = {
    "split": {"name": str},
    "dataset": {"adapter": str, "version": str},
    "model": {"name": str, "frames": int, "bands": list, "parameters": int},
}
#: What version 2 adds to them.
NESTED_V2: dict[str, dict[str, type | tuple[type, ...]]] = {
    "split": {"train_domain": str, "test_domains": dict},
    "provenance": {
        "code_version": str,
        "commit": (str, type(None)),
        "dirty": (bool, type(None)),
        "packages": dict,
        "python": str,
        "platform": str,
        "hardware": dict,
    },
}


def _check_nested(record: dict[str, Any], source: str, spec: dict[str, Any]) -> None:
    for part, keys in spec.items():
        for key, kind in keys.items():
            if key not in record[part]:
                raise RecordError(f"{source}: {part} lacks {key!r} (of type {kind})")
            value = record[part][key]
            if not isinstance(value, kind) or (isinstance(value, bool) and kind is int):
                raise RecordError(
                    f"{source}: {part}[{key!r}] must be {kind}, got {type(value).__name__}"
                )


def _check_curves(source: str, test_set: str, curves: dict[str, Any]) -> None:
    for name, curve in curves.items():
        where = f"curves[{test_set!r}][{name!r}]"
        curve = _mapping(source, where, curve)
        if name == "histogram":
            edges = _numbers(source, f"{where}['edges']", curve.get("edges"))
            pred = _numbers(source, f"{where}['pred']", curve.get("pred"))
            obs = _numbers(source, f"{where}['obs']", curve.get("obs"))
            if len(pred) != len(obs) or len(edges) not in (len(obs), len(obs) + 1):
                raise RecordError(f"{source}: {where}: edges and counts do not fit together")
        elif name.startswith("reliability@"):
            keys = ("forecast_mean", "observed_frequency", "count")
            lists = [_numbers(source, f"{where}[{k!r}]", curve.get(k)) for k in keys]
            bins = _numbers(source, f"{where}['bins']", curve.get("bins"))
            if {len(v) for v in lists} != {len(bins) - 1}:
                raise RecordError(f"{source}: {where}: one value per bin expected")


def _check_states_ref(source: str, ref: dict[str, Any]) -> None:
    """Check the ``states`` reference: a safe file name beside the record, SHA-256, size."""
    if sorted(ref) != list(STATES_KEYS):
        raise RecordError(f"{source}: states must hold {list(STATES_KEYS)}, got {sorted(ref)}")
    check_name(ref["file"], f"{source}: states file", error=RecordError)
    if not isinstance(ref["sha256"], str) or _SHA256.fullmatch(ref["sha256"]) is None:
        raise RecordError(f"{source}: states['sha256'] must be 64 lowercase hex digits")
    size = ref["bytes"]
    if not (isinstance(size, int) and not isinstance(size, bool) and 0 < size <= MAX_STATES_BYTES):
        raise RecordError(
            f"{source}: states['bytes'] = {size!r}; a state file has 1 to "
            f"{MAX_STATES_BYTES:,} bytes"
        )


def _check_v2(record: dict[str, Any], source: str) -> None:
    test_sets = set(record["metrics"])
    for key in [*REQUIRED_V2, *(["paired"] if "paired" in record else [])]:
        extra = set(record[key]) - test_sets
        if extra:
            raise RecordError(f"{source}: {key} names test sets {sorted(extra)} without metrics")
    _check_nested(record, source, NESTED_V2)
    _mapping(source, "split['test_domains']", record["split"]["test_domains"])
    for test_set, intervals in record["intervals"].items():
        for metric, ci in _mapping(source, f"intervals[{test_set!r}]", intervals).items():
            if not _interval(ci):
                raise RecordError(f"{source}: intervals[{test_set!r}][{metric!r}] = {ci!r}")
    strata_intervals = _mapping(source, "strata_intervals", record.get("strata_intervals", {}))
    extra = set(strata_intervals) - set(record["metrics"])
    if extra:
        raise RecordError(
            f"{source}: strata_intervals names test sets {sorted(extra)} without metrics"
        )
    for test_set, by_column in strata_intervals.items():
        for column, by_value in _mapping(
            source, f"strata_intervals[{test_set!r}]", by_column
        ).items():
            where = f"strata_intervals[{test_set!r}][{column!r}]"
            for value, by_metric in _mapping(source, where, by_value).items():
                for metric, ci in _mapping(source, f"{where}[{value!r}]", by_metric).items():
                    if not _interval(ci):
                        raise RecordError(f"{source}: {where}[{value!r}][{metric!r}] = {ci!r}")
    windows = _mapping(source, "input_window_min", record.get("input_window_min", {}))
    for name, minutes in windows.items():
        if minutes is not None and not _number(minutes):
            raise RecordError(f"{source}: input_window_min[{name!r}] = {minutes!r}")
    ceiling = _mapping(source, "split['truth_ceiling']", record["split"].get("truth_ceiling", {}))
    for test_set, scores in ceiling.items():
        _check_scores(source, f"split['truth_ceiling'][{test_set!r}]", scores)
    for test_set, by_column in record["strata"].items():
        for column, by_value in _mapping(source, f"strata[{test_set!r}]", by_column).items():
            where = f"strata[{test_set!r}][{column!r}]"
            for value, scores in _mapping(source, where, by_value).items():
                _check_scores(source, f"{where}[{value!r}]", scores)
    for test_set, curves in record["curves"].items():
        _check_curves(source, test_set, _mapping(source, f"curves[{test_set!r}]", curves))
    for test_set, example in record["examples"].items():
        example = _mapping(source, f"examples[{test_set!r}]", example)
        for key in ("ir108", "truth", "pred"):
            decode_field(example.get(key), f"{source}: examples[{test_set!r}][{key!r}]")
    for test_set, others in record.get("paired", {}).items():
        for other, by_metric in _mapping(source, f"paired[{test_set!r}]", others).items():
            where = f"paired[{test_set!r}][{other!r}]"
            for metric, test in _mapping(source, where, by_metric).items():
                test = _mapping(source, f"{where}[{metric!r}]", test)
                p_value, diff, ci = test.get("p_value"), test.get("diff"), test.get("ci")
                ok = (
                    {"diff", "ci", "p_value"} <= set(test)
                    and _number(p_value)
                    and 0 < float(p_value or 0) <= 1
                    and (diff is None or _number(diff))
                    and (
                        ci is None
                        or (isinstance(ci, list) and len(ci) == 2 and all(map(_number, ci)))
                    )
                )
                if not ok:
                    raise RecordError(
                        f"{source}: {where}[{metric!r}] needs diff (number), ci ([lo, hi]) "
                        f"and p_value in (0, 1], got {test!r}"
                    )


def validate_record(record: dict[str, Any], source: str = "record") -> dict[str, Any]:
    """Check a record's schema, keys and types, down to what rendering reads.

    Raises:
        RecordError: Naming the source and the first problem.
    """
    if record.get("schema") != SCHEMA:
        raise RecordError(f"{source}: not a {SCHEMA} record (schema={record.get('schema')!r})")
    version = record.get("schema_version")
    if version not in READABLE_VERSIONS:
        raise RecordError(
            f"{source}: schema version {version!r}, expected one of {list(READABLE_VERSIONS)}"
        )
    required = {**REQUIRED, **(REQUIRED_V2 if version >= 2 else {})}
    if version == 2:
        required["paired"] = dict
    for key, kind in required.items():
        if key not in record:
            raise RecordError(f"{source}: missing key {key!r}")
        if not isinstance(record[key], kind):
            raise RecordError(f"{source}: {key!r} must be {kind}, got {type(record[key]).__name__}")
    if version >= 3:
        if not set(OPTIONAL_V3) & set(record):
            raise RecordError(
                f"{source}: missing key 'paired' or 'states' (a version 3 record refers to its "
                "day states or carries its paired tests)"
            )
        for key, kind in OPTIONAL_V3.items():
            if key in record and not isinstance(record[key], kind):
                raise RecordError(
                    f"{source}: {key!r} must be {kind}, got {type(record[key]).__name__}"
                )
        if "states" in record:
            _check_states_ref(source, record["states"])
    for test_set, scores in record["metrics"].items():
        _check_scores(source, f"metrics[{test_set!r}]", scores)
    _check_nested(record, source, NESTED)
    _check_names(record, source)
    for name, value in record["runtime_s"].items():
        if not _number(value):
            raise RecordError(f"{source}: runtime_s[{name!r}] = {value!r} is not a number")
    if version >= 2:
        _check_v2(record, source)
    return record


FIELD_ENCODING = "zlib-base64-uint16le"
_MISSING = 65535


def encode_field(
    values: npt.NDArray[np.floating[Any]], *, scale: float, offset: float = 0.0
) -> dict[str, Any]:
    """A 2-D field as compact JSON: ``value = offset + scale · count`` in uint16 counts.

    Counts are rounded and clipped to 0–65534 (65535 marks NaN), zlib-compressed and base64
    encoded: an example map of 64 × 64 costs a few kB of the record instead of ~50 kB as lists.
    """
    field = np.asarray(values, np.float64)
    if field.ndim != 2:
        raise ValueError(f"encode_field takes a 2-D field, got shape {field.shape}")
    counts = np.clip(np.round((np.nan_to_num(field, nan=offset) - offset) / scale), 0, _MISSING - 1)
    counts[np.isnan(field)] = _MISSING
    data = zlib.compress(counts.astype("<u2").tobytes(), 9)
    return {
        "encoding": FIELD_ENCODING,
        "shape": list(field.shape),
        "scale": scale,
        "offset": offset,
        "data": base64.b64encode(data).decode("ascii"),
    }


def decode_field(obj: Any, source: str = "field") -> npt.NDArray[np.float64]:
    """The field :func:`encode_field` encoded, NaN where missing.

    The declared shape is checked against :data:`MAX_FIELD_CELLS` first, and the data is
    decompressed only up to the size that shape declares.

    Raises:
        RecordError: Not an encoded field, a shape too large, or data that does not decode to
            its shape.
    """
    keys = {"encoding", "shape", "scale", "offset", "data"}
    if not isinstance(obj, dict) or not keys <= set(obj) or obj["encoding"] != FIELD_ENCODING:
        raise RecordError(f"{source}: not a {FIELD_ENCODING} field")
    shape = obj["shape"]
    if (
        not isinstance(shape, list)
        or len(shape) != 2
        or not all(isinstance(n, int) and not isinstance(n, bool) and n > 0 for n in shape)
    ):
        raise RecordError(f"{source}: a field is 2-D (two positive integers), got shape {shape!r}")
    try:
        cells = check_declared(
            source, f"field shape {shape}", shape[0] * shape[1], MAX_FIELD_CELLS, unit="cells"
        )
        raw = decompress_bounded(
            base64.b64decode(obj["data"], validate=True), "zlib", source, declared=2 * cells
        )
        counts = np.frombuffer(raw, "<u2").reshape(shape)
    except FileFormatError as exc:
        raise RecordError(str(exc)) from None
    except (binascii.Error, ValueError, TypeError) as exc:
        raise RecordError(f"{source}: field data does not decode ({exc})") from None
    out = float(obj["offset"]) + float(obj["scale"]) * counts.astype(np.float64)
    out[counts == _MISSING] = np.nan
    return out


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
    if record.get("schema_version") != SCHEMA_VERSION:
        raise RecordError(
            f"{path}: schema version {record.get('schema_version')!r}; new records are written as "
            f"schema version {SCHEMA_VERSION}"
        )
    validate_record(record, str(path))
    try:
        write_json_atomic(path, record, exclusive=True)
    except FileExistsError:
        raise FileExistsError(f"{path}: a result record is never overwritten") from None
    return path


def load_record(path: Path) -> dict[str, Any]:
    """Load and validate a record.

    Raises:
        RecordError: Larger than :data:`MAX_RECORD_BYTES`, not JSON, or not a valid record.
    """
    try:
        size = Path(path).stat().st_size
        if size > MAX_RECORD_BYTES:
            raise RecordError(
                f"{path}: {human(size)}, more than the {human(MAX_RECORD_BYTES)} a record "
                "may have; refused before parsing"
            )
        record = json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
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


def cpu_model(cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    """The CPU's model name (``/proc/cpuinfo``), else :func:`platform.processor`."""
    try:
        for line in cpuinfo.read_text(errors="replace").splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and value.strip():
                return value.strip()
    except OSError:
        pass
    return platform.processor()


#: The oneDNN (MKL-DNN) version in ``torch.__config__.show()``.
_ONEDNN = re.compile(r"(?:MKL-DNN|oneDNN) v(\d+(?:\.\d+)*)")


def numeric_environment(device: str) -> dict[str, Any]:
    """What makes the same code give other digits elsewhere: kernels, threads and libraries.

    Torch's CPU kernel set (``torch.backends.cpu.get_cpu_capability()``: AVX2, AVX512 …), its
    intra-op thread count, the oneDNN version it was built with, and for a CUDA device the GPU
    model and the cuDNN version (``None`` where there is none).
    """
    import torch

    found = _ONEDNN.search(torch.__config__.show())
    out: dict[str, Any] = {
        "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "torch_threads": torch.get_num_threads(),
        "onednn": found.group(1) if found and torch.backends.mkldnn.is_available() else None,
    }
    if device.startswith("cuda"):
        out["gpu"] = torch.cuda.get_device_name(torch.device(device))
        cudnn = torch.backends.cudnn
        out["cudnn"] = cudnn.version() if cudnn.is_available() else None
    return out


def provenance(device: str, precision: str = "fp32") -> dict[str, Any]:
    """Code version, commit and dirty flag, package versions, hardware, platform and precision.

    ``hardware`` holds what explains a difference between machines: the CPU model, torch's CPU
    kernel set and thread count, oneDNN, the GPU and cuDNN (:func:`numeric_environment`).

    Args:
        device: The torch device the model was trained on (``cpu``, ``cuda:0`` …).
        precision: The training precision (``fp32``, ``bf16`` …).
    """
    packages: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            packages[name] = version(name)
        except PackageNotFoundError:
            packages[name] = None
    commit = _git("rev-parse", "HEAD")
    # code and packaging only (untracked files there count: they may be code); outputs such as
    # leaderboard/results/ or a rendered board/ folder do not make a run dirty
    status = _git("status", "--porcelain", "--", *CODE_PATHS)
    hardware: dict[str, Any] = {
        "machine": platform.machine(),
        "processor": platform.processor(),
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "device": device,
        **numeric_environment(device),
    }
    return {
        "code_version": __version__,
        "commit": commit,
        "dirty": bool(status) if status is not None else None,
        "packages": packages,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "hardware": hardware,
        "precision": precision,
    }


def now_utc() -> str:
    """The current UTC time as ISO 8601 with a ``Z``."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
