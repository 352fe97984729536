"""Per-day metric states beside a result record: what every model comparison is computed from.

A job of ``qpebench run`` (one model, seed and configuration) writes its record and, beside it,
a state file (:data:`STATES_FILE`): for every test set the local solar days and their
``(days, state length)`` float64 metric states (:class:`~qpebench.evaluation.DayStates`), the
sufficient statistics of every score, bootstrap interval and paired test. The record refers to
it by name, SHA-256 and size (``states``), and the leaderboard recomputes the comparisons from
these files at render time (``docs/evaluation.md``).

The file is a NumPy ``.npz`` archive of uncompressed members, readable with
``numpy.load(path, allow_pickle=False)``:

- ``format``: :data:`STATES_FORMAT`;
- ``test_sets``: the test-set names, in record order;
- ``layout``: the state length of each metric family, in the model's metric-set order;
- ``days_<i>``: the days of test set ``i``, increasing (``YYYY-MM-DD``);
- ``states_<i>``: its states, one row per day.

A state file may come with a stranger's record, so reading it is bounded and checked before
anything is trusted: a plain file name inside the record's folder, at most
:data:`~qpebench.records.MAX_STATES_BYTES` (checked before reading), the size and SHA-256 the
record gives, a zip of stored (never deflated) members whose central directory is bounded before
it is parsed, every array's declared shape and type checked against its bytes before it is
read, never a pickle, the layout of the record's model card, and pooled scores that reproduce
the record's metrics. Every refusal is one :class:`~qpebench.records.RecordError` line naming
the state file.
"""

from __future__ import annotations

import hashlib
import io
import math
import re
import struct
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from qpebench.atomic import atomic_path
from qpebench.errors import ConfigError, FileFormatError, QpebenchError
from qpebench.evaluation import DayStates, EvalSettings, ModelEvaluation, StateLayout
from qpebench.limits import npy_header
from qpebench.metrics import metric_set
from qpebench.names import check_name, confined
from qpebench.records import MAX_CURVE_POINTS, MAX_STATES_BYTES, RecordError
from qpebench.registry import load_builtins

#: The name the runner gives a job's state file (beside ``record.json``).
STATES_FILE = "states.npz"
#: The ``format`` member of a state file.
STATES_FORMAT = "qpebench-states/1"
#: Members of a state file besides the two per test set.
_FIXED_MEMBERS = ("format", "test_sets", "layout")
#: Most central-directory bytes per member (46 fixed, the name, numpy's zip64 extra field).
_DIRECTORY_BYTES_PER_MEMBER = 256
#: The end-of-central-directory record of a zip without comment: signature, members, directory
#: size and offset.
_EOCD = struct.Struct("<4s6xHII2x")
#: The signature of a zip64 end-of-directory locator (numpy never writes one for such sizes).
_ZIP64_LOCATOR = b"PK\x06\x07"
_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")


def write_states(path: Path, evaluation: ModelEvaluation) -> dict[str, Any]:
    """Write the day states of every test set of ``evaluation`` to ``path``, atomically.

    Args:
        path: The state file, in the folder of the record that will refer to it (the runner
            uses ``<job>/states.npz``); its name must be safe (:func:`qpebench.names.check_name`).
        evaluation: The model's evaluation (:func:`qpebench.evaluation.evaluate_model`).

    Returns:
        The reference to store as the record's ``states``: ``{"file": name relative to the
        record's folder, "sha256": hex digest, "bytes": size}``.

    Raises:
        ConfigError: The file name is not safe, the evaluation has no test set (or test sets of
            several layouts), or the file would be larger than
            :data:`~qpebench.records.MAX_STATES_BYTES`.
        FileExistsError: ``path`` exists (a state file, like its record, is never overwritten).
    """
    check_name(path.name, "state file name")
    tables = evaluation.day_states
    layouts = {tuple(np.diff(t.layout.offsets).tolist()) for t in tables.values()}
    if len(layouts) != 1:
        raise ConfigError(f"{path}: day states of one layout expected, got {sorted(layouts)}")
    arrays: dict[str, npt.NDArray[Any]] = {
        "format": np.array(STATES_FORMAT),
        "test_sets": np.array(list(tables), dtype=str),
        "layout": np.array(layouts.pop(), dtype="<i8"),
    }
    for i, table in enumerate(tables.values()):
        arrays[f"days_{i}"] = np.array(table.days, dtype=str)
        arrays[f"states_{i}"] = np.ascontiguousarray(table.states, dtype="<f8")
    buffer = io.BytesIO()
    np.savez(buffer, allow_pickle=False, **arrays)
    data = buffer.getvalue()
    if len(data) > MAX_STATES_BYTES:
        raise ConfigError(
            f"{path}: the day states take {len(data):,} bytes, more than the "
            f"{MAX_STATES_BYTES:,} a reader accepts (records.MAX_STATES_BYTES)"
        )
    try:
        with atomic_path(path, exclusive=True) as tmp:
            tmp.write_bytes(data)
    except FileExistsError:
        raise FileExistsError(f"{path}: a state file is never overwritten") from None
    return {"file": path.name, "sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}


def record_settings(record: Mapping[str, Any], source: str = "record") -> EvalSettings:
    """The evaluation settings a record was made with (``config.evaluation``; defaults if none).

    Raises:
        RecordError: ``config.evaluation`` is not a valid evaluation block.
    """
    load_builtins()  # an installed plugin's metric families, for a caller that is not the CLI
    block = record.get("config", {}).get("evaluation") or {}
    try:
        if not isinstance(block, Mapping):
            raise ConfigError(f"evaluation must be a mapping, got {type(block).__name__}")
        return EvalSettings.from_mapping(block)
    except (QpebenchError, TypeError, ValueError) as exc:
        raise RecordError(f"{source}: config {exc}") from None


def record_layout(record: Mapping[str, Any], source: str = "record") -> StateLayout:
    """The state layout of the record: its ``evaluation.metrics`` and its card's outputs.

    Raises:
        RecordError: The evaluation block is invalid (a metric family not installed here
            included), or the card's outputs, threshold or quantile levels give no metric set.
    """
    names = record_settings(record, source).metrics
    card = record["model"]
    outputs = card.get("outputs") or ["rate"]
    threshold = card.get("rain_threshold")
    levels = card.get("quantile_levels") or []
    try:
        if not isinstance(outputs, list) or not isinstance(levels, list):
            raise ConfigError("outputs and quantile_levels must be lists")
        if len(levels) > MAX_CURVE_POINTS:
            raise ConfigError(f"more than {MAX_CURVE_POINTS} quantile levels")
        if threshold is not None and not isinstance(threshold, int | float):
            raise ConfigError(f"rain_threshold {threshold!r} is not a number")
        families = metric_set(
            names,
            outputs=tuple(str(o) for o in outputs),
            rain_threshold=None if threshold is None else float(threshold),
            quantile_levels=tuple(float(q) for q in levels),
        )
    except (QpebenchError, TypeError, ValueError) as exc:
        raise RecordError(f"{source}: the model card gives no metric set ({exc})") from None
    return StateLayout(families)


def read_states(record_path: Path, record: Mapping[str, Any]) -> dict[str, DayStates]:
    """The day states a loaded record refers to, checked against the reference and the record.

    Args:
        record_path: The record's file (the state file is resolved in its folder).
        record: The record, as :func:`qpebench.records.load_record` returns it (its ``states``
            reference already checked).

    Returns:
        Test set → :class:`~qpebench.evaluation.DayStates`, for every test set of the record.

    Raises:
        RecordError: One line naming the state file: outside the record's folder, missing,
            larger than :data:`~qpebench.records.MAX_STATES_BYTES`, of another size (truncated)
            or SHA-256 (altered) than the record says, malformed, of another layout or days, or
            not reproducing the record's metrics.
    """
    ref = record["states"]
    try:
        path = confined(record_path.parent, ref["file"])
    except ConfigError:
        raise RecordError(
            f"{record_path.parent / ref['file']}: leads outside the folder of {record_path}; "
            "refused"
        ) from None
    data = _read_checked(path, ref)
    parsed = _parse(data, str(path), max_sets=len(record["metrics"]))
    return _check_against_record(parsed, record, str(path), str(record_path))


def _read_checked(path: Path, ref: Mapping[str, Any]) -> bytes:
    try:
        size = path.stat().st_size
        if not path.is_file():
            raise RecordError(f"{path}: not a regular file")
        if size > MAX_STATES_BYTES:
            raise RecordError(
                f"{path}: {size:,} bytes, more than the {MAX_STATES_BYTES:,} a state file may "
                "have; refused before reading"
            )
        if size != ref["bytes"]:
            raise RecordError(
                f"{path}: {size:,} bytes, the record says {ref['bytes']:,} (truncated or replaced)"
            )
        with path.open("rb") as fh:
            data = fh.read(MAX_STATES_BYTES + 1)
    except FileNotFoundError:
        raise RecordError(f"{path}: state file missing (the record refers to it)") from None
    except OSError as exc:
        raise RecordError(f"{path}: cannot read the state file ({exc.strerror or exc})") from None
    if len(data) != ref["bytes"]:
        raise RecordError(f"{path}: changed while being read")
    digest = hashlib.sha256(data).hexdigest()
    if digest != ref["sha256"]:
        raise RecordError(
            f"{path}: SHA-256 {digest[:12]}… differs from the record's {ref['sha256'][:12]}… "
            "(altered)"
        )
    return data


def _open_archive(data: bytes, source: str, max_members: int) -> zipfile.ZipFile:
    """The zip of ``data``, its central directory bounded before ``zipfile`` parses it."""
    if len(data) < _EOCD.size + len(_ZIP64_LOCATOR):
        raise RecordError(f"{source}: not a state file (too short for a zip archive)")
    signature, members, directory, _ = _EOCD.unpack(data[-_EOCD.size :])
    if signature != b"PK\x05\x06" or _ZIP64_LOCATOR in data[-_EOCD.size - 20 : -_EOCD.size]:
        raise RecordError(f"{source}: not a state file (no plain zip directory at its end)")
    if members > max_members or directory > members * _DIRECTORY_BYTES_PER_MEMBER:
        raise RecordError(
            f"{source}: a zip directory of {directory:,} bytes for {members} members, more "
            f"than a state file of {max_members} members has; refused"
        )
    try:
        return zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, EOFError) as exc:
        raise RecordError(f"{source}: not a state file ({exc})") from None


def _array(archive: zipfile.ZipFile, name: str, source: str, kind: str, ndim: int) -> Any:
    """Member ``name`` as an array of ``kind`` (``f``/``i`` 8 bytes, ``U`` text) and ``ndim``.

    The ``.npy`` header's shape and type are checked against the member's bytes before the
    array is read, so a header cannot make it allocate more than the member holds.
    """
    where = f"{source}: {name}"
    info = archive.getinfo(f"{name}.npy")
    if info.compress_type != zipfile.ZIP_STORED:
        raise RecordError(f"{where} is compressed; a state file stores its members uncompressed")
    try:
        raw = archive.read(info)
    except (zipfile.BadZipFile, ValueError, EOFError) as exc:
        raise RecordError(f"{where}: not an array ({exc})") from None
    stream = io.BytesIO(raw)
    try:
        shape, fortran, dtype = npy_header(stream, where)
    except FileFormatError as exc:
        raise RecordError(str(exc)) from None
    wanted = dtype.kind == kind and (kind == "U" or dtype.itemsize == 8) and not dtype.hasobject
    if not wanted or len(shape) != ndim:
        raise RecordError(
            f"{where}: a {ndim}-d array of kind {kind!r} expected, got {dtype} {shape}"
        )
    if math.prod(shape) * dtype.itemsize != len(raw) - stream.tell() or fortran:
        raise RecordError(f"{where}: its header declares {dtype} {shape}, not what it holds")
    return np.lib.format.read_array(io.BytesIO(raw), allow_pickle=False)


def _parse(
    data: bytes, source: str, max_sets: int
) -> tuple[list[int], dict[str, tuple[tuple[str, ...], npt.NDArray[np.float64]]]]:
    """Layout sizes and, per test set, the days and states of a state file's bytes."""
    max_members = len(_FIXED_MEMBERS) + 2 * max_sets
    with _open_archive(data, source, max_members) as archive:
        names = archive.namelist()
        if not {f"{m}.npy" for m in _FIXED_MEMBERS} <= set(names):
            raise RecordError(f"{source}: not a state file (members {sorted(names)[:8]})")
        if str(_array(archive, "format", source, "U", 0)) != STATES_FORMAT:
            raise RecordError(f"{source}: not a {STATES_FORMAT} file")
        test_sets = [str(s) for s in _array(archive, "test_sets", source, "U", 1)]
        layout = [int(n) for n in _array(archive, "layout", source, "i", 1)]
        expected = {f"{m}.npy" for m in _FIXED_MEMBERS}
        expected |= {f"{k}_{i}.npy" for i in range(len(test_sets)) for k in ("days", "states")}
        if sorted(names) != sorted(expected) or len(set(test_sets)) != len(test_sets):
            raise RecordError(f"{source}: its members do not match its test sets {test_sets}")
        if not layout or min(layout) < 1:
            raise RecordError(f"{source}: layout {layout} is not a list of state lengths")
        sets = {}
        for i, test_set in enumerate(test_sets):
            days = tuple(str(d) for d in _array(archive, f"days_{i}", source, "U", 1))
            states = _array(archive, f"states_{i}", source, "f", 2)
            ok_days = all(_DAY.fullmatch(d) for d in days) and list(days) == sorted(set(days))
            if not days or not ok_days:
                raise RecordError(f"{source}: days of {test_set} are not increasing YYYY-MM-DD")
            if states.shape != (len(days), sum(layout)):
                raise RecordError(
                    f"{source}: states of {test_set} have shape {states.shape}, expected "
                    f"({len(days)}, {sum(layout)})"
                )
            sets[test_set] = (days, np.ascontiguousarray(states, dtype=np.float64))
    return layout, sets


def _same(value: Any, computed: float) -> bool:
    if value is None:
        return math.isnan(computed)
    return math.isclose(float(value), computed, rel_tol=1e-9, abs_tol=1e-12)


def _check_against_record(
    parsed: tuple[list[int], dict[str, tuple[tuple[str, ...], npt.NDArray[np.float64]]]],
    record: Mapping[str, Any],
    source: str,
    record_source: str,
) -> dict[str, DayStates]:
    sizes, sets = parsed
    layout = record_layout(record, record_source)  # its settings too: refused now, not later
    own = np.diff(layout.offsets).tolist()
    if sizes != own:
        raise RecordError(
            f"{source}: state layout {sizes} is not the record's metric set {own} (other "
            "outputs or metric families, or another qpebench version)"
        )
    if sorted(sets) != sorted(record["metrics"]):
        raise RecordError(
            f"{source}: test sets {sorted(sets)} are not the record's {sorted(record['metrics'])}"
        )
    out = {}
    for test_set, (days, states) in sets.items():
        table = DayStates(layout, days, states)
        scores, recorded = table.scores(), record["metrics"][test_set]
        for metric in sorted(set(scores) | set(recorded)):
            if metric not in scores or metric not in recorded:
                raise RecordError(
                    f"{source}: {test_set} {metric} is not in both the states and the record"
                )
            if not _same(recorded[metric], scores[metric]):
                raise RecordError(
                    f"{source}: {test_set} {metric} = {scores[metric]:.6g} from the states, "
                    f"{recorded[metric]!r} in the record: these are not the record's states"
                )
        out[test_set] = table
    return out
