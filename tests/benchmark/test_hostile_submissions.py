"""Hostile external submissions: prediction files, model files and result records.

Each hostile file is small and built here by a generator (nothing large is materialised); each
must be refused with a one-line qpebench error naming the file, quickly and in little memory
(the ``refused_cheaply`` fixture), or, where it is not a resource attack, with a true message.
"""

from __future__ import annotations

import base64
import io
import json
import zipfile
import zlib
from pathlib import Path

import h5netcdf
import numpy as np
import pytest
import skops.io
import torch
from pyproj import CRS
from sklearn.ensemble import RandomForestRegressor
from tests.benchmark.test_records import v2_record

from qpebench.bands import DEFAULT_BANDS
from qpebench.baselines.sklearn_pixel import MAX_ESTIMATOR_BYTES
from qpebench.errors import ConfigError
from qpebench.limits import ENV_MAX_DECOMPRESSED
from qpebench.models import MAX_PARAMETERS, build_model, load_model
from qpebench.predictions import MAX_RECORDS, PredictionError, evaluate_predictions
from qpebench.records import MAX_RECORD_BYTES, RecordError, load_record

CELL = 4000.0


SMALL_CAP = 100 * 1024


@pytest.fixture
def small_cap(monkeypatch: pytest.MonkeyPatch) -> None:
    """A global decompression cap of 100 KiB, independent of this machine's memory.

    Only for a test of the global cap itself: the default is a quarter of the machine's memory
    (at most 4 GiB), so reaching it would take a file of gigabytes and its message would vary
    by machine. Every other test here runs with the defaults.
    """
    monkeypatch.setenv(ENV_MAX_DECOMPRESSED, str(SMALL_CAP))


@pytest.fixture
def default_cap(monkeypatch: pytest.MonkeyPatch) -> None:
    """The default global cap (a quarter of memory, at most 4 GiB), whatever the environment.

    The model-file bombs run with it: a loader must refuse them cheaply without any setting.
    """
    monkeypatch.delenv(ENV_MAX_DECOMPRESSED, raising=False)


def netcdf(
    path: Path,
    n: int,
    h: int,
    w: int,
    *,
    patch: bool = True,
    rain: np.ndarray | None = None,
    times: np.ndarray | None = None,
    compression: str | None = None,
) -> Path:
    """A prediction or truth file; without ``rain`` only dimensions are declared (no data)."""
    record = "sample" if patch else "time"
    with h5netcdf.File(path, "w") as f:
        f.dimensions.update({record: n, "y": h, "x": w})
        crs = f.create_variable("crs", (), np.int32)
        crs.attrs["crs_wkt"] = CRS.from_epsg(3035).to_wkt()
        time = f.create_variable("time", (record,), np.int64, chunks=(min(n, 1 << 16),))
        time.attrs["units"] = "seconds since 1970-01-01 00:00:00"
        coords = {}
        for name, size in (("y", h), ("x", w)):
            dims = (record, name) if patch else (name,)
            coords[name] = f.create_variable(
                name, dims, np.float64, chunks=(1, size) if patch else (size,)
            )
            coords[name].attrs.update(standard_name=f"projection_{name}_coordinate", units="m")
        values = f.create_variable(
            "rain_rate",
            (record, "y", "x"),
            np.float32,
            chunks=(1, min(h, 256), min(w, 256)),
            fillvalue=np.float32(np.nan),
            compression=compression,
        )
        values.attrs.update(units="mm h-1", grid_mapping="crs")
        if rain is not None:
            centres = {"y": 3.0e6 - (np.arange(h) + 0.5) * CELL, "x": 4.0e6 + np.arange(w) * CELL}
            for name, var in coords.items():
                var[...] = np.broadcast_to(centres[name], var.shape)
            time[...] = 1_688_169_600 + 900 * np.arange(n) if times is None else times
            values[...] = rain
    return path


@pytest.fixture
def truth(tmp_path: Path) -> Path:
    rain = np.random.default_rng(0).gamma(0.5, 3.0, (2, 4, 4)).astype(np.float32)
    return netcdf(tmp_path / "truth.nc", 2, 4, 4, rain=rain)


# --- prediction files ---------------------------------------------------------------------


def test_prediction_declaring_huge_patch_coordinates_is_refused_cheaply(
    truth: Path, tmp_path: Path, refused_cheaply
) -> None:
    # 9 kB declaring y(sample=30000, y=30000): 7.2 GB of coordinates if read
    pred = netcdf(tmp_path / "pred.nc", 30_000, 30_000, 64)
    message = refused_cheaply(lambda: evaluate_predictions(pred, truth), "grid shape")
    assert message.startswith(f"{pred}: ")


def test_truth_declaring_huge_patch_coordinates_is_refused_cheaply(
    truth: Path, tmp_path: Path, refused_cheaply
) -> None:
    hostile = netcdf(tmp_path / "hostile_truth.nc", 30_000, 30_000, 64)
    message = refused_cheaply(lambda: evaluate_predictions(truth, hostile), "refused before")
    assert message.startswith(f"{hostile}: ")


def test_prediction_with_a_deflate_chunk_bomb_is_refused_cheaply(
    truth: Path, tmp_path: Path, refused_cheaply
) -> None:
    import h5py

    rain = np.ones((2, 4, 4), np.float32)
    pred = netcdf(tmp_path / "pred.nc", 2, 4, 4, rain=rain, compression="gzip")
    assert evaluate_predictions(pred, truth)["n_pixels"] == 32  # the honest file scores
    with h5py.File(pred, "r+") as f:  # one 64-byte chunk now inflates to 200 MiB
        f["rain_rate"].id.write_direct_chunk((1, 0, 0), zlib.compress(bytes(200 << 20), 9))
    message = refused_cheaply(lambda: evaluate_predictions(pred, truth), "decompresses to more")
    assert message.startswith(f"{pred}:/rain_rate chunk (1, 0, 0): ")


def test_prediction_shorter_than_its_superblock_declares_is_refused(
    truth: Path, tmp_path: Path
) -> None:
    pred = netcdf(tmp_path / "pred.nc", 2, 4, 4, rain=np.ones((2, 4, 4), np.float32))
    data = pred.read_bytes()
    pred.write_bytes(data[: len(data) * 9 // 10])
    with pytest.raises(PredictionError, match=r"truncated.*its superblock declares"):
        evaluate_predictions(pred, truth)


@pytest.mark.parametrize("role", ["pred", "truth"])
def test_a_billion_step_time_dimension_is_refused_cheaply(
    truth: Path, tmp_path: Path, refused_cheaply, role: str
) -> None:
    hostile = netcdf(tmp_path / "times.nc", 10**9, 4, 4, patch=False)
    if role == "pred":
        grid_truth = netcdf(
            tmp_path / "grid_truth.nc", 2, 4, 4, patch=False, rain=np.ones((2, 4, 4), np.float32)
        )
        call = lambda: evaluate_predictions(hostile, grid_truth)  # noqa: E731
        match = "declares 1,000,000,000 records"
    else:
        call = lambda: evaluate_predictions(truth, hostile)  # noqa: E731
        match = f"more than the {MAX_RECORDS:,} accepted"
    message = refused_cheaply(call, match)
    assert message.startswith(f"{hostile}: ")


def test_all_nan_truth_is_refused(tmp_path: Path) -> None:
    nan = np.full((2, 4, 4), np.nan, np.float32)
    truth = netcdf(tmp_path / "nan_truth.nc", 2, 4, 4, rain=nan)
    pred = netcdf(tmp_path / "pred.nc", 2, 4, 4, rain=np.zeros((2, 4, 4), np.float32))
    with pytest.raises(PredictionError, match="no valid truth pixel") as info:
        evaluate_predictions(pred, truth)
    assert str(info.value).startswith(f"{truth}: ")


def test_time_out_of_range_is_refused_with_its_value(truth: Path, tmp_path: Path) -> None:
    rain = np.zeros((2, 4, 4), np.float32)
    pred = netcdf(tmp_path / "pred.nc", 2, 4, 4, rain=rain, times=np.array([0, 10**12]))
    with pytest.raises(PredictionError) as info:
        evaluate_predictions(pred, truth)
    message = str(info.value)
    assert message.startswith(f"{pred}: time[1] = 1000000000000 seconds since 1970")
    assert "outside the accepted valid times 1900-01-01T00:00:00Z to 2200-01-01" in message
    assert "calendar" not in message


# --- model files --------------------------------------------------------------------------

BOMB_BYTES = 640 * 1024**2  # declared (decompressed) size of a bomb member: 640 MiB of zeros


def write_bomb(
    archive: zipfile.ZipFile, name: str, head: bytes = b"", *, size: int = BOMB_BYTES
) -> None:
    """A deflated member of ``head`` and zeros, ``size`` bytes in all, written in chunks."""
    info = zipfile.ZipInfo(name)
    info.compress_type = zipfile.ZIP_DEFLATED
    chunk = bytes(1 << 20)
    with archive.open(info, "w", force_zip64=True) as out:
        out.write(head)
        left = size - len(head)
        for _ in range(left // len(chunk)):
            out.write(chunk)
        out.write(bytes(left % len(chunk)))


def forest_file(path: Path, *, bomb: bool = False) -> Path:
    """A saved ``random_forest``; with ``bomb``, one skops array replaced by a 640 MiB bomb."""
    model = build_model("random_forest", frames=4, bands=DEFAULT_BANDS)
    rng = np.random.default_rng(0)
    forest = RandomForestRegressor(n_estimators=2, max_depth=2, random_state=0)
    data = skops.io.dumps(forest.fit(rng.random((50, len(model.features))), rng.random(50)))
    model.load_state({"estimator": torch.frombuffer(bytearray(data), dtype=torch.uint8)})
    if bomb:
        source, out = zipfile.ZipFile(io.BytesIO(data)), io.BytesIO()
        first = next(n for n in source.namelist() if n.endswith(".npy"))
        with zipfile.ZipFile(out, "w") as archive:
            for info in source.infolist():
                if info.filename != first:
                    archive.writestr(info, source.read(info))
                    continue
                head = io.BytesIO()
                shape = ((BOMB_BYTES - 128) // 8,)
                header = {"descr": "<f8", "fortran_order": False, "shape": shape}
                np.lib.format.write_array_header_1_0(head, header)
                write_bomb(archive, first, head.getvalue())
        model.state = lambda: {
            "estimator": torch.frombuffer(bytearray(out.getvalue()), dtype=torch.uint8)
        }
    model.save(path)
    return path


def test_forest_file_round_trips(tmp_path: Path) -> None:
    loaded = load_model(forest_file(tmp_path / "forest.pt"))
    assert loaded.card.parameters > 0


@pytest.mark.usefixtures("default_cap")
def test_skops_bomb_in_a_model_file_is_refused_cheaply(tmp_path: Path, refused_cheaply) -> None:
    # With the default cap (4 GiB here) the 640 MiB bomb passes the global limit; only
    # MAX_ESTIMATOR_BYTES (256 MiB) refuses it before skops inflates it. At the former 1 GiB,
    # skops inflated it (over 640 MiB).
    assert BOMB_BYTES > MAX_ESTIMATOR_BYTES
    path = forest_file(tmp_path / "bomb.pt", bomb=True)
    assert path.stat().st_size < 5 * 1024**2
    message = refused_cheaply(
        lambda: load_model(path), f"state 'estimator'.*more than the {MAX_ESTIMATOR_BYTES:,}"
    )
    assert message.startswith(f"{path}: random_forest: state 'estimator'")


def test_skops_array_header_larger_than_its_member_is_refused() -> None:
    model = build_model("random_forest", frames=4, bands=DEFAULT_BANDS)
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        head = io.BytesIO()
        header = {"descr": "<f8", "fortran_order": False, "shape": (10**12,)}
        np.lib.format.write_array_header_1_0(head, header)
        archive.writestr("1.npy", head.getvalue() + bytes(64))
        archive.writestr("schema.json", "{}")
    state = {"estimator": torch.frombuffer(bytearray(out.getvalue()), dtype=torch.uint8)}
    with pytest.raises(ConfigError) as info:
        model.load_state(state)
    # the refusal of _check_npy unchanged, not wrapped into "is not a skops file (...)"
    assert str(info.value).startswith(
        "random_forest: state 'estimator':1.npy: array header declares shape (1000000000000,)"
    )
    assert "not a skops file" not in str(info.value)


def test_model_file_asking_for_a_huge_network_is_refused_cheaply(
    tmp_path: Path, refused_cheaply
) -> None:
    model = build_model("conv4d", frames=2, bands=DEFAULT_BANDS[:2])
    payload = {
        "format": "qpebench-model",
        "format_version": 1,
        "card": model.card.to_json(),
        "config": {**model.config, "width": 4096},
        "state": {},
    }
    path = tmp_path / "wide.pt"
    torch.save(payload, path)
    assert path.stat().st_size < 4096
    message = refused_cheaply(lambda: load_model(path), f"at most {MAX_PARAMETERS:,}")
    assert message.startswith(f"{path}: ")


def test_param_budget_above_the_cap_is_refused() -> None:
    with pytest.raises(ConfigError, match="param_budget=1,000,000,000,000 is above"):
        build_model("static_cnn", frames=1, bands=DEFAULT_BANDS, param_budget=10**12)


def saved_cnn(path: Path) -> tuple[Path, zipfile.ZipInfo]:
    """A saved ``static_cnn`` and the zip member of its largest tensor's data."""
    build_model("static_cnn", frames=1, bands=DEFAULT_BANDS).save(path)
    with zipfile.ZipFile(path) as archive:
        records = [i for i in archive.infolist() if "/data/" in i.filename]
    return path, max(records, key=lambda i: i.file_size)


def rewrite_record(path: Path, record: str, out: Path, *, size: int | None = None) -> Path:
    """``path`` copied to ``out``, member ``record`` deflated (padded with zeros to ``size``)."""
    with zipfile.ZipFile(path) as source, zipfile.ZipFile(out, "w") as archive:
        for info in source.infolist():
            if info.filename != record:
                archive.writestr(info, source.read(info))  # stored, as torch.save wrote it
            elif size is None:
                archive.writestr(record, source.read(info), zipfile.ZIP_DEFLATED)
            else:
                write_bomb(archive, record, source.read(info), size=size)
    return out


def test_torch_save_stores_every_member_uncompressed(tmp_path: Path) -> None:
    # load_model refuses compressed members on this premise: check it against this torch
    path, _ = saved_cnn(tmp_path / "cnn.pt")
    with zipfile.ZipFile(path) as archive:
        assert {i.compress_type for i in archive.infolist()} == {zipfile.ZIP_STORED}
    assert load_model(path).card.name == "static_cnn"


def test_torch_load_inflates_a_deflated_tensor_record(tmp_path: Path) -> None:
    # what makes a deflated record a bomb: torch.load reads (inflates) it as the tensor's data
    path, record = saved_cnn(tmp_path / "cnn.pt")
    deflated = rewrite_record(path, record.filename, tmp_path / "deflated.pt")
    with zipfile.ZipFile(deflated) as archive:
        assert archive.getinfo(record.filename).compress_size < record.file_size
    original = torch.load(path, weights_only=True)["state"]
    again = torch.load(deflated, weights_only=True)["state"]
    assert all(torch.equal(original[k], again[k]) for k in original)
    with pytest.raises(ConfigError) as info:  # load_model refuses even an honest one
        load_model(deflated)
    assert str(info.value).startswith(f"{deflated}:{record.filename}: zip member is compressed")


@pytest.mark.usefixtures("default_cap")
def test_model_file_with_a_bomb_tensor_record_is_refused_cheaply(
    tmp_path: Path, refused_cheaply
) -> None:
    # A real tensor's data record deflated and padded to 640 MiB: within the default cap (4 GiB
    # here), so checking declared sizes alone let torch.load inflate all of it (648 MiB) before
    # torch compared its size with the tensor's.
    path, record = saved_cnn(tmp_path / "cnn.pt")
    bomb = rewrite_record(path, record.filename, tmp_path / "bomb.pt", size=BOMB_BYTES)
    assert bomb.stat().st_size < 2 * 1024**2
    message = refused_cheaply(lambda: load_model(bomb), "zip member is compressed")
    assert message.startswith(f"{bomb}:{record.filename}: ")


@pytest.mark.usefixtures("small_cap")
def test_model_file_member_above_the_global_cap_is_refused(tmp_path: Path) -> None:
    path, record = saved_cnn(tmp_path / "cnn.pt")
    assert record.file_size > SMALL_CAP  # stored, inside the file: only the global cap refuses it
    with pytest.raises(ConfigError) as info:
        load_model(path)
    assert str(info.value).startswith(f"{path}:{record.filename}: header declares")
    assert f"more than the limit {SMALL_CAP:,} bytes" in str(info.value)


def test_model_file_declaring_more_than_a_model_holds_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path, _ = saved_cnn(tmp_path / "cnn.pt")
    monkeypatch.setattr("qpebench.models.MAX_MODEL_BYTES", 1000)
    with pytest.raises(ConfigError, match=r"zip members of the model file declares .* 1,000 acc"):
        load_model(path)


def test_a_state_that_does_not_fit_is_refused_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / "power_law.pt"
    build_model("power_law", frames=1, bands=DEFAULT_BANDS).save(path)
    payload = torch.load(path, weights_only=True)
    payload["state"] = {"log_a": torch.tensor(0.0), "b": torch.tensor(1.0), "extra": torch.ones(3)}
    torch.save(payload, path)
    with pytest.raises(ConfigError) as info:
        load_model(path)
    assert str(info.value) == (
        f"{path}: power_law: state has ['b', 'extra', 'log_a'], expected ['b', 'log_a']"
    )


def test_pickled_objects_in_a_model_file_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "pickle.pt"
    torch.save({"format": "qpebench-model", "payload": RandomForestRegressor()}, path)
    with pytest.raises(ConfigError, match="not a qpebench model file"):
        load_model(path)


# --- result records -----------------------------------------------------------------------


def field(data: bytes, shape: list[int]) -> dict:
    return {
        "encoding": "zlib-base64-uint16le",
        "shape": shape,
        "scale": 0.01,
        "offset": 0.0,
        "data": base64.b64encode(data).decode("ascii"),
    }


def record_file(path: Path, rec: dict) -> Path:
    path.write_text(json.dumps(rec))
    return path


def zlib_bomb(size: int) -> bytes:
    """A zlib stream of ``size`` zero bytes, compressed a chunk at a time."""
    engine, chunk, parts = zlib.compressobj(9), bytes(1 << 20), []
    for _ in range(size // len(chunk)):
        parts.append(engine.compress(chunk))
    parts.append(engine.flush())
    return b"".join(parts)


def test_valid_record_loads(tmp_path: Path) -> None:
    assert load_record(record_file(tmp_path / "r.json", v2_record()))["run_id"] == "r"


def test_zlib_bomb_example_map_is_refused_cheaply(tmp_path: Path, refused_cheaply) -> None:
    rec = v2_record()
    rec["examples"]["id_test"]["pred"] = field(zlib_bomb(BOMB_BYTES), [64, 64])
    path = record_file(tmp_path / "bomb.json", rec)
    message = refused_cheaply(lambda: load_record(path), "decompresses to more than")
    assert message.startswith(f"{path}: examples['id_test']['pred']")


def test_example_map_declaring_a_huge_shape_is_refused_cheaply(
    tmp_path: Path, refused_cheaply
) -> None:
    rec = v2_record()
    rec["examples"]["id_test"]["truth"] = field(zlib.compress(bytes(8)), [100_000, 100_000])
    path = record_file(tmp_path / "shape.json", rec)
    message = refused_cheaply(lambda: load_record(path), "10,000,000,000 cells")
    assert message.startswith(f"{path}: examples['id_test']['truth']")


def test_record_file_too_large_is_refused_before_parsing(tmp_path: Path, refused_cheaply) -> None:
    path = tmp_path / "huge.json"
    with path.open("wb") as fh:
        fh.truncate(MAX_RECORD_BYTES + 1)  # sparse: nothing written
    message = refused_cheaply(lambda: load_record(path), "refused before parsing")
    assert message.startswith(f"{path}: ")


def test_overlong_curve_is_refused(tmp_path: Path) -> None:
    rec = v2_record()
    rec["curves"]["id_test"]["histogram"] = {"edges": [0] * 20_001, "pred": [0] * 20_000}
    path = record_file(tmp_path / "curve.json", rec)
    with pytest.raises(RecordError, match="has 20,001 values, more than the 10,000 accepted"):
        load_record(path)


@pytest.mark.parametrize(
    ("edit", "what"),
    [
        (lambda r: r["split"].update(name="../../x"), "split name '../../x'"),
        (lambda r: r["split"].update(name="/etc/passwd"), "split name '/etc/passwd'"),
        (lambda r: r["split"].update(name="s" * 300), "split name 'sss.*is 300 characters"),
        (lambda r: r["model"].update(name="../m"), "model name '../m'"),
        (lambda r: r.update(run_id="a/b"), "run_id 'a/b'"),
        (lambda r: r["metrics"].update({"ood_test/../../x": {}}), "test set '../../x'"),
        (lambda r: r["metrics"].update({"../x": {}}), r"test set '\.\./x'"),
    ],
)
def test_names_that_become_file_names_are_checked_on_load(tmp_path: Path, edit, what) -> None:
    rec = v2_record()
    edit(rec)
    path = record_file(tmp_path / "names.json", rec)
    with pytest.raises(RecordError, match=what) as info:
        load_record(path)
    assert str(info.value).startswith(f"{path}: ") and "\n" not in str(info.value)
