"""Scoring external prediction files: exact scores, truth export, and every refusal."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from pyproj import CRS

from qpebench import predictions
from qpebench.errors import ConfigError, FileFormatError
from qpebench.metrics import metric_set
from qpebench.predictions import (
    PredictionError,
    evaluate_predictions,
    export_truth,
    format_report,
)

LAEA = CRS.from_epsg(3035)
CELL = 4000.0
N_TIMES, H, W = 6, 24, 20


def grid_file(
    path: Path,
    rain: np.ndarray,
    times: np.ndarray,
    *,
    y: np.ndarray | None = None,
    x: np.ndarray | None = None,
    crs: CRS = LAEA,
    units: str | None = "mm h-1",
    attrs: dict | None = None,
) -> Path:
    """Write a grid-layout file the way a submitter would, with xarray."""
    y = 3.0e6 - (np.arange(rain.shape[1]) + 0.5) * CELL if y is None else y
    x = 4.0e6 + (np.arange(rain.shape[2]) + 0.5) * CELL if x is None else x
    rain_attrs = {"grid_mapping": "crs", **({"units": units} if units else {}), **(attrs or {})}
    ds = xr.Dataset(
        {
            "rain_rate": (("time", "y", "x"), rain, rain_attrs),
            "crs": ((), np.int32(0), {**crs.to_cf(), "crs_wkt": crs.to_wkt()}),
        },
        coords={
            "time": ("time", times),
            "y": ("y", y, {"standard_name": "projection_y_coordinate", "units": "m"}),
            "x": ("x", x, {"standard_name": "projection_x_coordinate", "units": "m"}),
        },
    )
    ds.to_netcdf(path, engine="h5netcdf")
    return path


def fields(seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Truth with NaN holes, a correlated prediction, and the valid times."""
    rng = np.random.default_rng(seed)
    truth = (rng.gamma(0.5, 3.0, (N_TIMES, H, W)) * (rng.random((N_TIMES, H, W)) < 0.6)).astype(
        np.float32
    )
    truth[:, :3, :] = np.nan  # no radar along one edge
    truth[2, 10:14, 5:9] = np.nan
    pred = np.clip(np.nan_to_num(truth) + rng.normal(0, 1.5, truth.shape), 0, None)
    pred = pred.astype(np.float32)
    times = np.datetime64("2023-07-01T00:00", "ns") + np.arange(N_TIMES) * np.timedelta64(15, "m")
    return truth, pred, times


@pytest.fixture
def pair(tmp_path: Path) -> tuple[Path, Path, np.ndarray, np.ndarray, np.ndarray]:
    truth, pred, times = fields(0)
    t = grid_file(tmp_path / "truth.nc", truth, times)
    p = grid_file(tmp_path / "pred.nc", pred, times)
    return p, t, pred, truth, times


def refused(pred: Path, truth: Path) -> str:
    with pytest.raises(PredictionError) as info:
        evaluate_predictions(pred, truth)
    message = str(info.value)
    return message


# --- scores -------------------------------------------------------------------------------


def direct_scores(pred: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    accumulators = metric_set()
    for acc in accumulators:
        acc.update(pred, truth, np.isfinite(truth))
    out: dict[str, float] = {}
    for acc in accumulators:
        out.update(acc.result())
    return out


def assert_same_scores(result: dict, expected: dict[str, float]) -> None:
    assert result["metrics"].keys() == expected.keys()
    for name, value in expected.items():
        got = result["metrics"][name]
        if math.isnan(value):
            assert got is None, name
        else:
            assert got == pytest.approx(value, rel=1e-12, abs=1e-12), name


def test_scores_equal_metric_set_on_the_same_arrays(pair) -> None:
    p, t, pred, truth, _ = pair
    result = evaluate_predictions(p, t)
    assert_same_scores(result, direct_scores(pred, truth))
    assert result["pred"] == str(p) and result["truth"] == str(t)
    assert result["layout"] == "grid"
    assert result["n_times"] == N_TIMES
    assert result["n_pixels"] == int(np.isfinite(truth).sum())
    assert result["metrics_version"] == predictions.METRICS_VERSION
    json.dumps(result, allow_nan=False)  # JSON-safe


def test_times_are_aligned_not_taken_in_file_order(pair, tmp_path: Path) -> None:
    _, t, pred, truth, times = pair
    order = np.array([3, 0, 5, 1, 4, 2])
    shuffled = grid_file(tmp_path / "shuffled.nc", pred[order], times[order])
    assert_same_scores(evaluate_predictions(shuffled, t), direct_scores(pred, truth))


def test_small_batches_give_the_same_scores(pair, monkeypatch: pytest.MonkeyPatch) -> None:
    p, t, pred, truth, _ = pair
    monkeypatch.setattr(predictions, "BATCH_PIXELS", H * W * 2)  # 2 fields per read
    assert_same_scores(evaluate_predictions(p, t), direct_scores(pred, truth))


def test_metric_families_can_be_chosen(pair) -> None:
    p, t, *_ = pair
    names = evaluate_predictions(p, t, metrics=["continuous"])["metrics"]
    assert "rmse" in names and not any(n.startswith(("csi", "fss")) for n in names)


def test_nan_in_the_prediction_is_allowed_where_the_truth_is_nan(pair, tmp_path: Path) -> None:
    _, t, pred, truth, times = pair
    holes = np.where(np.isfinite(truth), pred, np.nan).astype(np.float32)
    p = grid_file(tmp_path / "holes.nc", holes, times)
    assert_same_scores(evaluate_predictions(p, t), direct_scores(holes, truth))


def test_prediction_equal_to_truth_is_perfect(tiny_store, tmp_path: Path) -> None:
    indices = np.flatnonzero(tiny_store.metadata["region"] == "europe")[:10]
    truth = tmp_path / "truth.nc"
    export_truth(tiny_store, indices, truth)
    result = evaluate_predictions(truth, truth)
    assert result["layout"] == "patch" and result["n_times"] == indices.size
    for t in ("0.1", "1"):
        assert result["metrics"][f"csi@{t}"] == 1.0
    assert result["metrics"]["rmse"] == 0.0
    assert result["metrics"]["fss33@1"] == 1.0


def test_format_report(pair) -> None:
    p, t, *_ = pair
    result = evaluate_predictions(p, t)
    lines = format_report(result).splitlines()
    assert lines[0] == f"prediction: {p}"
    assert lines[1] == f"truth:      {t}"
    assert lines[2].startswith(f"scored:     {N_TIMES} times, {result['n_pixels']} pixels")
    rows = dict(line.split() for line in lines[3:])
    assert rows.keys() == result["metrics"].keys()
    assert rows["rmse"] == f"{result['metrics']['rmse']:.4f}"
    assert rows["n_pixels"] == str(result["n_pixels"])
    single = format_report({**result, "metrics": {"csi@15": None}})
    assert single.splitlines()[-1] == "  csi@15         n/a"


# --- truth export -------------------------------------------------------------------------


@pytest.fixture
def exported(tiny_store, tmp_path: Path) -> tuple[Path, np.ndarray]:
    indices = np.flatnonzero(tiny_store.metadata["region"] == "europe")[[7, 0, 30, 12, 21, 44]]
    path = tmp_path / "patch_truth.nc"
    export_truth(tiny_store, indices, path)
    return path, indices


def test_export_truth_round_trips(tiny_store, exported) -> None:
    path, indices = exported
    batch = tiny_store.read(indices)
    with xr.open_dataset(path, engine="h5netcdf") as ds:
        assert ds["rain_rate"].dims == ("sample", "y", "x")
        assert ds["rain_rate"].attrs["units"] == "mm h-1"
        np.testing.assert_array_equal(
            ds["rain_rate"].values, np.where(batch.valid, batch.rain, np.nan)
        )
        np.testing.assert_array_equal(
            ds["time"].values.astype("datetime64[s]").astype(np.int64), batch.time[:, -1]
        )
        np.testing.assert_array_equal(ds["sample_index"].values, indices)
        for k, i in enumerate(indices):
            y, x = tiny_store.coords(int(i))
            np.testing.assert_array_equal(ds["y"].values[k], y)
            np.testing.assert_array_equal(ds["x"].values[k], x)
        grid = tiny_store.manifest["grids"][tiny_store.metadata["grid"].iloc[indices[0]]]
        assert CRS.from_wkt(ds["crs"].attrs["crs_wkt"]) == CRS.from_user_input(grid["crs"])


def test_export_truth_refuses_several_grids(tiny_store, tmp_path: Path) -> None:
    md = tiny_store.metadata
    mixed = [int(np.flatnonzero(md["grid"] == g)[0]) for g in md["grid"].unique()[:2]]
    with pytest.raises(ConfigError, match="one grid"):
        export_truth(tiny_store, mixed, tmp_path / "mixed.nc")
    assert not (tmp_path / "mixed.nc").exists()


def rewrite(src: Path, dst: Path, edit) -> Path:
    """Open an exported truth with xarray, change it like a submitter would, write it back."""
    with xr.open_dataset(src, engine="h5netcdf") as ds:
        out = edit(ds.load())
    out.to_netcdf(dst, engine="h5netcdf")
    return dst


def test_patch_prediction_in_another_order_scores_the_same(exported, tmp_path: Path) -> None:
    truth, _ = exported
    rng = np.random.default_rng(3)

    def noisy(ds: xr.Dataset) -> xr.Dataset:
        rain = ds["rain_rate"]
        ds["rain_rate"] = rain.fillna(0) + np.abs(rng.normal(0, 1, rain.shape)).astype(np.float32)
        ds["rain_rate"].attrs = rain.attrs
        return ds

    pred = rewrite(truth, tmp_path / "pred.nc", noisy)
    shuffled = rewrite(
        pred, tmp_path / "shuffled.nc", lambda ds: ds.isel(sample=[3, 5, 0, 1, 4, 2])
    )
    with xr.open_dataset(pred) as p, xr.open_dataset(truth) as t:
        expected = direct_scores(p["rain_rate"].values, t["rain_rate"].values)
    assert_same_scores(evaluate_predictions(pred, truth), expected)
    assert_same_scores(evaluate_predictions(shuffled, truth), expected)


def test_patch_shifted_by_a_fraction_of_a_cell_is_refused(exported, tmp_path: Path) -> None:
    truth, _ = exported

    def shift(ds: xr.Dataset) -> xr.Dataset:
        ds["x"].values[2] += 0.01 * CELL
        return ds

    message = refused(rewrite(truth, tmp_path / "pred.nc", shift), truth)
    assert "x coordinates differ from the truth's" in message
    assert "0.01 cell" in message and "at y=" in message


def test_patch_missing_sample_is_refused(exported, tmp_path: Path) -> None:
    truth, _ = exported
    pred = rewrite(truth, tmp_path / "pred.nc", lambda ds: ds.isel(sample=[0, 1, 2, 4, 5]))
    message = refused(pred, truth)
    assert "lacks 1 of the truth's 6 samples" in message and "at y=" in message


def test_layouts_must_match(exported, pair) -> None:
    truth, _ = exported
    grid_pred = pair[0]
    message = refused(grid_pred, truth)
    assert "grid layout" in message and "patch layout" in message


# --- refusals -----------------------------------------------------------------------------


def test_wrong_grid_shape(pair, tmp_path: Path) -> None:
    _, t, pred, _, times = pair
    p = grid_file(tmp_path / "small.nc", pred[:, :-1], times)
    assert f"grid shape (y, x) = ({H - 1}, {W}) differs from the truth's ({H}, {W})" in refused(
        p, t
    )


def test_shifted_coordinates(pair, tmp_path: Path) -> None:
    _, t, pred, _, times = pair
    x = 4.0e6 + (np.arange(W) + 0.5) * CELL + 0.5 * CELL  # corners instead of centres
    message = refused(grid_file(tmp_path / "shifted.nc", pred, times, x=x), t)
    assert "x coordinates differ from the truth's by up to 2000 m (0.5 cell)" in message


def test_coordinates_within_tolerance_are_accepted(pair, tmp_path: Path) -> None:
    _, t, pred, truth, times = pair
    y = 3.0e6 - (np.arange(H) + 0.5) * CELL + 1e-4 * CELL
    p = grid_file(tmp_path / "close.nc", pred, times, y=y)
    assert_same_scores(evaluate_predictions(p, t), direct_scores(pred, truth))


def test_other_crs(pair, tmp_path: Path) -> None:
    _, t, pred, _, times = pair
    other = CRS.from_proj4("+proj=laea +lat_0=40 +lon_0=-100 +ellps=WGS84 +units=m")
    message = refused(grid_file(tmp_path / "crs.nc", pred, times, crs=other), t)
    assert "CRS differs from the truth's" in message and "ETRS89" in message


@pytest.mark.parametrize(
    ("units", "found"),
    [("kg m-2 s-1", "3600 mm/h"), ("m s-1", "a speed"), ("mm", "an accumulation")],
)
def test_wrong_units(pair, tmp_path: Path, units: str, found: str) -> None:
    _, t, pred, _, times = pair
    message = refused(grid_file(tmp_path / "units.nc", pred, times, units=units), t)
    assert f"units {units!r}" in message and found in message
    assert "expected a rain rate in mm/h ('mm h-1'" in message


@pytest.mark.parametrize("alias", ["mm/h", "mm hr-1", "mm/hr"])
def test_unit_aliases_are_accepted(pair, tmp_path: Path, alias: str) -> None:
    _, t, pred, _, times = pair
    evaluate_predictions(grid_file(tmp_path / "alias.nc", pred, times, units=alias), t)


def test_missing_units(pair, tmp_path: Path) -> None:
    _, t, pred, _, times = pair
    message = refused(grid_file(tmp_path / "nounits.nc", pred, times, units=None), t)
    assert "rain_rate has no units attribute, expected 'mm h-1'" in message


def test_negative_values(pair, tmp_path: Path) -> None:
    _, t, pred, _, times = pair
    bad = pred.copy()
    bad[1, 5, 6] = -0.5
    bad[4, 0, 0] = -2.0  # where the truth is NaN: still refused
    message = refused(grid_file(tmp_path / "neg.nc", bad, times), t)
    assert "2 negative values" in message and "min -2 mm/h" in message
    assert "first at 2023-07-01T00:15:00Z, (y, x) index (5, 6)" in message


def test_nan_where_truth_is_valid(pair, tmp_path: Path) -> None:
    _, t, pred, truth, times = pair
    bad = pred.copy()
    rows, cols = np.nonzero(np.isfinite(truth[3]))
    bad[3, rows[:4], cols[:4]] = np.nan
    bad[5, rows[0], cols[0]] = np.inf
    message = refused(grid_file(tmp_path / "nan.nc", bad, times), t)
    assert "5 NaN or infinite values where the truth has data" in message
    assert f"first at 2023-07-01T00:45:00Z, (y, x) index ({rows[0]}, {cols[0]})" in message


def test_missing_times(pair, tmp_path: Path) -> None:
    _, t, pred, _, times = pair
    message = refused(grid_file(tmp_path / "few.nc", pred[[0, 2, 3]], times[[0, 2, 3]]), t)
    assert f"lacks 3 of the truth's {N_TIMES} times" in message
    assert "2023-07-01T00:15:00Z, 2023-07-01T01:00:00Z, 2023-07-01T01:15:00Z" in message


def test_missing_times_lists_only_the_first_few(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    truth = rng.random((12, 4, 4)).astype(np.float32)
    times = np.datetime64("2024-01-01", "ns") + np.arange(12) * np.timedelta64(1, "h")
    t = grid_file(tmp_path / "truth.nc", truth, times)
    p = grid_file(tmp_path / "pred.nc", truth[:2], times[:2])
    message = refused(p, t)
    assert "lacks 10 of the truth's 12 times" in message and "(5 more)" in message


def test_extra_times(pair, tmp_path: Path) -> None:
    _, t, pred, _, times = pair
    more = np.concatenate([times, [times[-1] + np.timedelta64(1, "D")]])
    p = grid_file(tmp_path / "more.nc", np.concatenate([pred, pred[:1]]), more)
    message = refused(p, t)
    assert "1 times not in the truth file" in message and "2023-07-02T01:15:00Z" in message


def test_duplicate_times(pair, tmp_path: Path) -> None:
    _, t, pred, _, times = pair
    dup = times.copy()
    dup[4] = dup[1]
    message = refused(grid_file(tmp_path / "dup.nc", pred, dup), t)
    assert "1 duplicate times: 2023-07-01T00:15:00Z" in message


def test_wrong_dim_order(pair, tmp_path: Path) -> None:
    _, t, *_ = pair
    p = tmp_path / "order.nc"
    with xr.open_dataset(pair[0]) as ds:
        ds.load().transpose("time", "x", "y").to_netcdf(p, engine="h5netcdf")
    message = refused(p, t)
    assert "rain_rate has dims ('time', 'x', 'y'), expected ('time', 'y', 'x')" in message


def test_missing_variable(pair, tmp_path: Path) -> None:
    _, t, *_ = pair
    p = tmp_path / "renamed.nc"
    with xr.open_dataset(pair[0]) as ds:
        ds.load().rename({"rain_rate": "precip"}).to_netcdf(p, engine="h5netcdf")
    message = refused(p, t)
    assert f"{p}: no variable 'rain_rate'" in message and "precip" in message


def test_not_a_netcdf_file(pair, tmp_path: Path) -> None:
    _, t, *_ = pair
    p = tmp_path / "pred.nc"
    p.write_text("time,rain\n2023-07-01,1.0\n")
    message = refused(p, t)
    assert message.startswith(f"{p}: not a readable netCDF4 file")


def test_netcdf3_file_gets_a_hint(pair, tmp_path: Path) -> None:
    _, t, *_ = pair
    p = tmp_path / "classic.nc"
    with xr.open_dataset(pair[0]) as ds:
        ds.load().to_netcdf(p, engine="scipy")
    assert "a netCDF3 file: write netCDF4 instead" in refused(p, t)


def test_truncated_file(pair, tmp_path: Path) -> None:
    _, t, *_ = pair
    data = pair[0].read_bytes()
    p = tmp_path / "truncated.nc"
    p.write_bytes(data[: len(data) // 2])
    assert refused(p, t).startswith(f"{p}: HDF5 file cannot be opened (truncated): it holds")


def test_empty_truth_is_refused(pair, tmp_path: Path) -> None:
    p, _, _, truth, times = pair
    t = grid_file(tmp_path / "empty.nc", truth[:0], times[:0])
    assert refused(p, t) == f"{t}: no time to score (empty file)"


def test_missing_file_is_named(pair, tmp_path: Path) -> None:
    _, t, *_ = pair
    assert refused(tmp_path / "nope.nc", t) == f"{tmp_path / 'nope.nc'}: no such file"


def test_truth_file_errors_name_the_truth(pair, tmp_path: Path) -> None:
    p, *_ = pair
    t = tmp_path / "truth.txt"
    t.write_text("not netcdf")
    assert refused(p, t).startswith(f"{t}: ")


def test_packed_values_are_refused(pair, tmp_path: Path) -> None:
    _, t, pred, _, times = pair
    p = grid_file(tmp_path / "packed.nc", pred, times, attrs={"scale_factor": 0.1})
    assert "rain_rate is packed (scale_factor)" in refused(p, t)


def test_non_nan_fill_value_is_refused(pair, tmp_path: Path) -> None:
    _, t, pred, _, times = pair
    p = tmp_path / "fill.nc"
    ds = xr.open_dataset(grid_file(tmp_path / "src.nc", pred, times)).load()
    ds["rain_rate"].encoding["_FillValue"] = -9999.0
    ds.to_netcdf(p, engine="h5netcdf")
    assert "rain_rate:_FillValue is -9999.0" in refused(p, t)


def test_missing_grid_mapping(pair, tmp_path: Path) -> None:
    _, t, *_ = pair
    p = tmp_path / "nocrs.nc"
    with xr.open_dataset(pair[0]) as ds:
        ds.load().drop_vars("crs").to_netcdf(p, engine="h5netcdf")
    assert "grid-mapping variable 'crs' is missing" in refused(p, t)


def test_time_without_cf_units(pair, tmp_path: Path) -> None:
    _, t, pred, *_ = pair
    p = grid_file(tmp_path / "steps.nc", pred, np.arange(N_TIMES))
    assert "time units None, expected CF time units" in refused(p, t)


def test_errors_are_value_errors(pair, tmp_path: Path) -> None:
    _, t, *_ = pair
    p = tmp_path / "x.nc"
    p.write_text("x")
    with pytest.raises(FileFormatError):
        evaluate_predictions(p, t)
    with pytest.raises(ValueError):
        evaluate_predictions(p, t)


def test_target_attribute_is_just_data(pair, tmp_path: Path) -> None:
    _, t, pred, truth, times = pair
    hostile = {"_target_": "os.system", "_args_": "touch pwned"}
    p = grid_file(tmp_path / "target.nc", pred, times, attrs=hostile)
    with xr.open_dataset(p) as ds:
        assert ds["rain_rate"].attrs["_target_"] == "os.system"
    assert_same_scores(evaluate_predictions(p, t), direct_scores(pred, truth))
    assert not (Path.cwd() / "pwned").exists()


def test_crs_given_as_cf_attributes_only_matches_the_same_crs_in_wkt(pair, tmp_path: Path) -> None:
    p, t, pred, truth, _ = pair

    def cf_only(ds: xr.Dataset) -> xr.Dataset:
        attrs = {k: v for k, v in ds["crs"].attrs.items() if k not in ("crs_wkt", "spatial_ref")}
        ds["crs"].attrs = attrs
        return ds

    cf = rewrite(p, tmp_path / "cf.nc", cf_only)
    with xr.open_dataset(cf, engine="h5netcdf") as ds:
        assert "crs_wkt" not in ds["crs"].attrs and "grid_mapping_name" in ds["crs"].attrs
        assert CRS.from_cf(dict(ds["crs"].attrs)) != LAEA  # pyproj alone calls them different
    assert_same_scores(evaluate_predictions(cf, t), direct_scores(pred, truth))


def test_crs_without_a_proj_form_is_refused_in_one_line(pair, tmp_path: Path) -> None:
    p, t, *_ = pair
    engineering = (
        'ENGCRS["local",EDATUM["x"],CS[Cartesian,2],AXIS["x",east,LENGTHUNIT["metre",1]],'
        'AXIS["y",north,LENGTHUNIT["metre",1]]]'
    )

    def local(ds: xr.Dataset) -> xr.Dataset:
        ds["crs"].attrs = {"crs_wkt": engineering}
        return ds

    message = refused(rewrite(p, tmp_path / "eng.nc", local), t)
    assert "CRS differs from the truth's" in message and "local" in message
