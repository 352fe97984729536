"""State files: written atomically beside a record, read back exactly, refused in one line."""

from __future__ import annotations

import hashlib
import io
import json
import os
import zipfile

import numpy as np
import pytest
from tests.benchmark.jobs import Scaled, evaluate, write_job

from qpebench.errors import ConfigError
from qpebench.records import MAX_STATES_BYTES, RecordError, load_record
from qpebench.states import STATES_FILE, STATES_FORMAT, read_states, write_states


@pytest.fixture(scope="module")
def gpi_eval(tiny_store):
    model = Scaled("gpi_like", 1.0)
    return model, evaluate(model, tiny_store, seed=0)


@pytest.fixture
def job(tmp_path, gpi_eval):
    """A job folder (record and states) of the GPI-like model; the record's path."""
    model, ev = gpi_eval
    return write_job(tmp_path / "run", model, ev, seed=0)


def resign(record_path, data: bytes) -> None:
    """Replace the state file by ``data`` and make the record refer to it (size and SHA-256)."""
    (record_path.parent / STATES_FILE).write_bytes(data)
    record = json.loads(record_path.read_text())
    record["states"] = {
        "file": STATES_FILE,
        "sha256": hashlib.sha256(data).hexdigest(),
        "bytes": len(data),
    }
    record_path.write_text(json.dumps(record))


def arrays_of(record_path) -> dict[str, np.ndarray]:
    with np.load(record_path.parent / STATES_FILE, allow_pickle=False) as npz:
        return {k: npz[k] for k in npz.files}


def npz_bytes(arrays: dict, compressed: bool = False, allow_pickle: bool = False) -> bytes:
    buffer = io.BytesIO()
    (np.savez_compressed if compressed else np.savez)(buffer, allow_pickle=allow_pickle, **arrays)
    return buffer.getvalue()


def refused(record_path) -> str:
    """The one-line refusal of the record's states; it names the state file."""
    with pytest.raises(RecordError) as info:
        read_states(record_path, load_record(record_path))
    message = str(info.value)
    assert "\n" not in message and str(record_path.parent / STATES_FILE) in message, message
    return message


def test_states_round_trip_exactly(job, gpi_eval):
    _, ev = gpi_eval
    record = load_record(job)
    ref = record["states"]
    data = (job.parent / STATES_FILE).read_bytes()
    assert ref == {
        "file": STATES_FILE,
        "sha256": hashlib.sha256(data).hexdigest(),
        "bytes": len(data),
    }
    states = read_states(job, record)
    assert list(states) == ["id_test", "ood_test/conus"]
    for test_set, table in states.items():
        want = ev.day_states[test_set]
        assert table.days == want.days and len(want.days) > 10
        assert np.array_equal(table.states, want.states)  # bit for bit
        assert table.scores() == pytest.approx(ev.metrics[test_set], nan_ok=True)
    # the documented layout, readable with numpy alone
    arrays = arrays_of(job)
    assert str(arrays["format"]) == STATES_FORMAT
    assert arrays["test_sets"].tolist() == ["id_test", "ood_test/conus"]
    assert int(arrays["layout"].sum()) == arrays["states_0"].shape[1]
    assert arrays["days_1"].tolist() == list(ev.day_states["ood_test/conus"].days)


def test_state_files_are_never_overwritten_and_named_safely(job, gpi_eval):
    _, ev = gpi_eval
    before = (job.parent / STATES_FILE).read_bytes()
    with pytest.raises(FileExistsError, match="never overwritten"):
        write_states(job.parent / STATES_FILE, ev)
    assert (job.parent / STATES_FILE).read_bytes() == before
    with pytest.raises(ConfigError, match="not safe as a file name"):
        write_states(job.parent / ".hidden.npz", ev)


def test_missing_truncated_altered_and_oversized_files_are_refused(job, refused_cheaply):
    path = job.parent / STATES_FILE
    data = path.read_bytes()
    path.write_bytes(data[:-100])
    assert "the record says" in refused(job) and "truncated" in refused(job)
    altered = bytearray(data)
    altered[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(altered))
    assert "SHA-256" in refused(job) and "altered" in refused(job)
    path.unlink()
    assert "state file missing" in refused(job)
    with path.open("wb") as fh:  # sparse: reading it would take seconds and memory
        fh.truncate(MAX_STATES_BYTES + 1)
    message = refused_cheaply(lambda: read_states(job, load_record(job)), "refused before reading")
    assert str(path) in message
    path.unlink()
    outside = job.parent.parent / "outside.npz"  # the very same bytes, outside the job folder
    outside.write_bytes(data)
    os.symlink(outside, path)
    assert "leads outside the folder" in refused(job)


def test_states_that_are_not_the_records_are_refused(job, tiny_store):
    other = Scaled("gpi_like", 0.5)
    other_job = write_job(job.parent.parent / "other", other, evaluate(other, tiny_store, 0), 0)
    resign(job, (other_job.parent / STATES_FILE).read_bytes())  # a valid file, of another model
    assert "these are not the record's states" in refused(job)


def test_malformed_files_are_refused_before_their_arrays_are_read(job, refused_cheaply):
    arrays = arrays_of(job)
    resign(job, b"not a zip archive at all, but long enough to be looked at")
    assert "not a state file" in refused(job)
    resign(job, npz_bytes(arrays, compressed=True))
    assert "is compressed" in refused(job)
    resign(job, npz_bytes({**arrays, "states_0": arrays["states_0"].astype(object)}, False, True))
    assert "a 2-d array of kind 'f' expected" in refused(job)
    resign(job, npz_bytes({**arrays, "format": np.array("other-format/9")}))
    assert "not a qpebench-states/1 file" in refused(job)
    shifted = arrays["layout"].copy()
    shifted[:2] += [1, -1]  # the same state length, other families
    resign(job, npz_bytes({**arrays, "layout": shifted}))
    assert "is not the record's metric set" in refused(job)
    resign(job, npz_bytes({**arrays, "days_0": arrays["days_0"][::-1].copy()}))
    assert "not increasing YYYY-MM-DD" in refused(job)
    resign(job, npz_bytes({k: v for k, v in arrays.items() if k != "days_1"}))
    assert "do not match its test sets" in refused(job)
    # a header declaring 10^12 rows over a few bytes: refused without allocating them
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        header, {"descr": "<f8", "fortran_order": False, "shape": (10**12, 122)}
    )
    with zipfile.ZipFile(buffer := io.BytesIO(), "w", zipfile.ZIP_STORED) as archive:
        for name, value in arrays.items():
            if name == "states_0":
                archive.writestr("states_0.npy", header.getvalue() + b"\0" * 64)
            else:
                stream = io.BytesIO()
                np.lib.format.write_array(stream, value, allow_pickle=False)
                archive.writestr(f"{name}.npy", stream.getvalue())
    resign(job, buffer.getvalue())
    message = refused_cheaply(lambda: read_states(job, load_record(job)), "header declares")
    assert "states_0" in message
    # a zip directory of many more members than a state file has
    with zipfile.ZipFile(buffer := io.BytesIO(), "w", zipfile.ZIP_STORED) as archive:
        for i in range(500):
            archive.writestr(f"m{i}.npy", b"")
    resign(job, buffer.getvalue())
    assert "zip directory" in refused(job)
