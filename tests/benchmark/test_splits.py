from __future__ import annotations

import datetime as dt
import time
from importlib.resources import files
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from qpebench.errors import SplitError
from qpebench.registry import SPLITS
from qpebench.splits import (
    Condition,
    ResolvedSplit,
    SplitLeakageError,
    SplitSpec,
    format_summary,
    patch_footprints,
    sample_times,
)

SPLIT_DIR = Path(str(files("qpebench.conf").joinpath("split")))
SHIPPED = sorted(p.stem for p in SPLIT_DIR.glob("*.yaml"))
SYNTHETIC = [n for n in SHIPPED if n.startswith("synthetic_")]
REAL = [n for n in SHIPPED if not n.startswith("synthetic_")]


def meta(rows):
    return pd.DataFrame(rows, columns=["region", "year", "time", "rain_fraction"])


SPEC = {
    "name": "t",
    "train": {"region": ["europe"], "year": [2021]},
    "id_val": {"region": ["europe"], "year": [2022]},
    "id_test": {"region": ["europe"], "year": [2023]},
    "ood_test": {"conus": {"region": ["conus"]}},
    "temporal_buffer_hours": 24,
}


def test_resolve_and_buffer():
    m = meta(
        [
            ("europe", 2021, "2021-12-31T20:00:00Z", 0.1),
            ("europe", 2021, "2021-06-01T00:00:00Z", 0.1),
            ("europe", 2022, "2022-01-01T02:00:00Z", 0.2),  # 6 h after a train sample: dropped
            ("europe", 2022, "2022-05-01T00:00:00Z", 0.2),
            ("europe", 2023, "2023-05-01T00:00:00Z", 0.3),
            ("conus", 2021, "2021-12-31T21:00:00Z", 0.4),  # other region: no buffer applies
        ]
    )
    split = SplitSpec.from_mapping(SPEC).resolve(m)
    assert split.sets["train"].tolist() == [0, 1]
    assert split.sets["id_val"].tolist() == [3]
    assert split.dropped_by_buffer == {"id_val": 1, "id_test": 0, "ood_test/conus": 0}
    assert split.sets["ood_test/conus"].tolist() == [5]
    assert list(split.test_sets) == ["id_test", "ood_test/conus"]
    summary = split.summary(m)
    assert summary.set_index("set").loc["id_val", "dropped_by_buffer"] == 1


def test_buffer_follows_the_set_order():
    """A later set keeps away from every earlier set, not from train alone."""
    m = meta(
        [
            ("europe", 2021, "2021-06-01T00:00:00Z", 0),  # train
            ("europe", 2022, "2022-06-01T00:00:00Z", 0),  # id_val
            ("europe", 2023, "2023-06-01T00:00:00Z", 0),  # id_test
            ("europe", 2022, "2022-06-01T12:00:00Z", 0),  # ood: 12 h after id_val: dropped
            ("europe", 2023, "2023-06-02T23:00:00Z", 0),  # ood: 47 h after id_test: kept
            ("europe", 2023, "2023-06-01T23:30:00Z", 0),  # ood: 23.5 h after id_test: dropped
            ("europe", 2023, "2023-07-01T00:00:00Z", 0),  # ood: far from all: kept
        ]
    )
    spec = SplitSpec.from_mapping(
        {
            "name": "ordered",
            "train": {"time": ["2021-06-01T00:00:00Z"]},
            "id_val": {"time": ["2022-06-01T00:00:00Z"]},
            "id_test": {"time": ["2023-06-01T00:00:00Z"]},
            "ood_test": {
                "rest": {"time": {"min": "2022-06-01T06:00:00Z", "not": ["2023-06-01T00:00:00Z"]}}
            },
        }
    )
    split = spec.resolve(m)
    assert split.sets["ood_test/rest"].tolist() == [4, 6]
    # dropped: the 12 h and 23.5 h samples
    assert split.dropped_by_buffer == {"id_val": 0, "id_test": 0, "ood_test/rest": 2}
    # filters that select one sample twice are refused before the buffer could hide it
    overlapping = SplitSpec.from_mapping(
        {
            "name": "overlap",
            "train": {"time": ["2021-06-01T00:00:00Z"]},
            "id_val": {"time": ["2022-06-01T00:00:00Z"]},
            "id_test": {"time": ["2023-06-01T00:00:00Z"]},
            "ood_test": {"rest": {"time": {"min": "2022-06-01T06:00:00Z"}}},
        }
    )
    with pytest.raises(SplitLeakageError, match="'id_test' and 'ood_test/rest' share 1 samples"):
        overlapping.resolve(m)
    # a sample the buffer dropped no longer pushes later sets away
    m2 = meta(
        [
            ("europe", 2021, "2021-06-01T00:00:00Z", 0),  # train
            ("europe", 2021, "2021-06-01T20:00:00Z", 0),  # id_val, dropped (20 h)
            ("europe", 2021, "2021-06-02T14:00:00Z", 0),  # id_val, kept (38 h)
            ("europe", 2021, "2021-06-04T14:30:00Z", 0),  # id_test, kept (48.5 h after id_val)
        ]
    )
    spec2 = SplitSpec.from_mapping(
        {
            "name": "chain",
            "train": {"time": {"max": "2021-06-01T10:00:00Z"}},
            "id_val": {"time": {"min": "2021-06-01T10:00:00Z", "max": "2021-06-03T00:00:00Z"}},
            "id_test": {"time": {"min": "2021-06-03T00:00:00Z"}},
        }
    )
    resolved = spec2.resolve(m2)
    assert resolved.sets["id_val"].tolist() == [2]
    assert resolved.sets["id_test"].tolist() == [3]


def test_sets_sharing_a_sample_are_refused():
    m = meta(
        [
            ("europe", 2021, "2021-01-01T00:00:00Z", 0),
            ("europe", 2022, "2022-06-01T00:00:00Z", 0),
            ("europe", 2023, "2023-06-01T00:00:00Z", 0),
        ]
    )
    bad = dict(
        SPEC,
        temporal_buffer_hours=0,
        id_test={"region": ["europe"], "year": [2023, 2021]},
        ood_test={},
    )
    with pytest.raises(SplitLeakageError, match="sets 'train' and 'id_test' share 1 samples"):
        SplitSpec.from_mapping(bad).resolve(m)


@pytest.mark.parametrize("name", ["../x", "/abs", ".hidden", "a/b", "x" * 101, "", None, 3])
def test_unsafe_split_names_are_refused(name):
    with pytest.raises(SplitError, match="split name") as caught:
        SplitSpec.from_mapping(dict(SPEC, name=name))
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize("key", ["../x", ".hidden", "a/b", "<script>", 2024])
def test_unsafe_test_set_names_are_refused(key):
    with pytest.raises(SplitError, match="split 't': ood_test set name"):
        SplitSpec.from_mapping(dict(SPEC, ood_test={key: {"region": ["conus"]}}))


def test_bad_split_definitions():
    with pytest.raises(SplitError, match=r"missing \['id_test'\]"):
        SplitSpec.from_mapping({k: v for k, v in SPEC.items() if k != "id_test"})
    with pytest.raises(SplitError, match="filters on 'sensr'.*derived from time: hour, date, doy"):
        SplitSpec.from_mapping(dict(SPEC, train={"sensr": ["ABI"]})).resolve(
            meta([("europe", 2021, "2021-01-01T00:00:00Z", 0)])
        )
    with pytest.raises(SplitError, match="set 'id_test' selects no sample"):
        SplitSpec.from_mapping(SPEC).resolve(
            meta(
                [
                    ("europe", 2021, "2021-01-01T00:00:00Z", 0),
                    ("europe", 2022, "2022-06-01T00:00:00Z", 0),
                    ("conus", 2024, "2024-06-01T00:00:00Z", 0),
                ]
            )
        )
    with pytest.raises(SplitError, match=r"train.year: a range takes the keys \['min', 'max'"):
        SplitSpec.from_mapping(dict(SPEC, train={"year": {"from": 2021}}))
    with pytest.raises(SplitError, match="train.year: a range needs a min, a max or a not"):
        SplitSpec.from_mapping(dict(SPEC, train={"year": {"min": None}}))
    with pytest.raises(SplitError, match="train.region allows no value"):
        SplitSpec.from_mapping(dict(SPEC, train={"region": []}))
    with pytest.raises(SplitError, match=r"train.year.min: expected a single value"):
        SplitSpec.from_mapping(dict(SPEC, train={"year": {"min": [2021]}}))
    with pytest.raises(SplitError, match="temporal_buffer_hours must be a number >= 0"):
        SplitSpec.from_mapping(dict(SPEC, temporal_buffer_hours="a day"))
    with pytest.raises(SplitError, match="train.year: cannot compare the bounds '2021'"):
        SplitSpec.from_mapping(dict(SPEC, train={"year": {"min": "2021"}})).resolve(
            meta([("europe", 2021, "2021-01-01T00:00:00Z", 0)])
        )
    with pytest.raises(
        SplitError, match=r"temporal buffer needs the metadata columns \['region'\]"
    ):
        by_year = {"train": {"year": 2021}, "id_val": {"year": 2022}, "id_test": {"year": 2023}}
        SplitSpec.from_mapping(dict(SPEC, ood_test={}, **by_year)).resolve(
            meta(
                [
                    ("europe", 2021, "2021-01-01T00:00:00Z", 0),
                    ("europe", 2022, "2022-01-01T00:00:00Z", 0),
                    ("europe", 2023, "2023-01-01T00:00:00Z", 0),
                ]
            ).drop(columns="region")
        )


def test_range_not_and_derived_filters():
    times = pd.date_range("2021-12-30T00:00", periods=12, freq="7h", tz="UTC")
    m = pd.DataFrame(
        {
            "time": times.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "lat": np.linspace(40, 62, 12),
            "day": [True, False] * 6,
            "year": times.year,
            "region": "europe",
            "frame_step_s": 900,
        }
    )

    def rows(condition, column):
        return np.flatnonzero(Condition.parse(condition, "t").mask(column)).tolist()

    assert rows({"min": 50}, m["lat"]) == [i for i in range(12) if m["lat"][i] >= 50]
    assert rows({"max": 50}, m["lat"]) == [i for i in range(12) if m["lat"][i] < 50]
    assert rows({"min": 44, "max": 52, "not": [48]}, m["lat"]) == [
        i for i in range(12) if 44 <= m["lat"][i] < 52 and m["lat"][i] != 48
    ]
    assert rows({"not": [2021]}, m["year"]) == [i for i in range(12) if m["year"][i] != 2021]
    assert rows(True, m["day"]) == [0, 2, 4, 6, 8, 10]
    assert rows(["false"], m["day"]) == [1, 3, 5, 7, 9, 11]
    derived = SplitSpec.from_mapping(
        {
            "name": "derived",
            "temporal_buffer_hours": 0,
            "train": {"hour": {"min": 12}},
            "id_val": {"date": dt.date(2021, 12, 31), "hour": {"max": 12}},
            "id_test": {"doy": {"max": 3}, "hour": {"max": 12}},
            "ood_test": {"rest": {"date": {"max": "2021-12-31"}, "hour": {"max": 12}}},
        }
    ).resolve(m)
    assert {k: v.tolist() for k, v in derived.sets.items()} == {
        "train": [2, 3, 6, 9, 10],
        "id_val": [4, 5],
        "id_test": [7, 8, 11],
        "ood_test/rest": [0, 1],
    }
    # YAML dates and datetimes become the stored strings
    assert Condition.parse({"min": dt.date(2022, 1, 1)}, "t").minimum == "2022-01-01"
    stamp = dt.datetime(2022, 1, 1, 6, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    assert Condition.parse([stamp], "t").values == ("2022-01-01T04:00:00Z",)


def patch_meta(rows):
    """Rows (time, grid, patch_row, patch_col) of one region, 15-min frame step."""
    m = pd.DataFrame(rows, columns=["time", "grid", "patch_row", "patch_col"])
    m["region"] = "europe"
    m["frame_step_s"] = 900
    m["rain_fraction"] = 0.1
    return m


def leak_spec(**sets):
    base = {"name": "leak", "temporal_buffer_hours": 0}
    return SplitSpec.from_mapping({**base, **{k: {"time": v} for k, v in sets.items()}})


T0, T1, T2 = "2021-01-01T00:00:00Z", "2021-01-01T01:00:00Z", "2021-01-03T00:00:00Z"


def test_overlapping_patches_at_adjacent_times_are_refused():
    # 4 frames of 15 min: input windows of targets 60 min apart touch (T1 - 45 min = T0 + 15)
    m = patch_meta([(T0, "eu", 0, 0), (T1, "eu", 40, 50), (T2, "eu", 0, 0)])
    spec = leak_spec(train=[T0], id_val=[T1], id_test=[T2])
    with pytest.raises(SplitLeakageError) as err:
        spec.resolve(m, patch_shape=(64, 64), frames=4)
    message = str(err.value)
    for part in (
        "sets 'train' and 'id_val'",
        "sample 0 (2021-01-01T00:00:00Z, patch origin (0, 0))",
        "sample 1 (2021-01-01T01:00:00Z, patch origin (40, 50))",
        "on grid 'eu'",
        "60 min apart",
        "1 such pairs (train/id_val: 1)",
    ):
        assert part in message
    # one frame less and the windows no longer meet
    assert spec.resolve(m, patch_shape=(64, 64), frames=3).sets["id_val"].tolist() == [1]
    # the check needs the store's patch shape: without it, the split resolves
    assert spec.resolve(m).sets["id_val"].tolist() == [1]


def test_what_does_not_leak():
    # the same place two days apart
    rows = [(T0, "eu", 0, 0), (T2, "eu", 0, 0), ("2021-01-05T00:00:00Z", "eu", 0, 0)]
    spec = leak_spec(train=[T0], id_val=[T2], id_test=["2021-01-05T00:00:00Z"])
    assert spec.resolve(patch_meta(rows), patch_shape=(64, 64), frames=4).sets[
        "id_val"
    ].tolist() == [1]
    # the same time in another region: a cross-region split needs no time separation
    other_region = patch_meta([(T0, "eu", 0, 0), (T0, "us", 0, 0), (T2, "eu", 0, 0)])
    other_region.loc[1, "region"] = "conus"
    spec = SplitSpec.from_mapping(
        {
            "name": "regions",
            "temporal_buffer_hours": 0,
            "train": {"region": "europe", "time": [T0]},
            "id_val": {"time": [T2]},
            "id_test": {"region": "conus"},
        }
    )
    resolved = spec.resolve(other_region, patch_shape=(64, 64), frames=4)
    assert resolved.sets["id_test"].tolist() == [1]


#: Two grids over Germany: a 4 km European LAEA grid and a 1 km national one (another
#: projection centre and cell size, stored under another region label).
GRIDS = {
    "europe": {
        "crs": "+proj=laea +lat_0=51 +lon_0=8.5 +ellps=WGS84 +units=m",
        "cell_size_m": 4000.0,
        "x_min": -1360000.0,
        "y_max": 1108000.0,
    },
    "germany": {
        "crs": "+proj=stere +lat_0=90 +lat_ts=60 +lon_0=10 +ellps=WGS84 +units=m",
        "cell_size_m": 1000.0,
        "x_min": -523462.0,
        "y_max": -3758645.0,
    },
}


def two_grid_meta(germany_time: str, germany_origin: tuple[int, int]) -> pd.DataFrame:
    """A Europe patch over central Germany at T0 (train) and a Germany patch (test)."""
    m = pd.DataFrame(
        [
            (T0, "europe", "europe", 277, 340),
            (T2, "europe", "europe", 0, 0),
            (germany_time, "germany", "germany", *germany_origin),
        ],
        columns=["time", "region", "grid", "patch_row", "patch_col"],
    )
    m["frame_step_s"] = 900
    m["rain_fraction"] = 0.1
    return m


TWO_GRIDS = {
    "name": "two_grids",
    "temporal_buffer_hours": 0,
    "train": {"region": "europe", "time": [T0]},
    "id_val": {"region": "europe", "time": [T2]},
    "id_test": {"region": "germany"},
}


def lonlat_box(grid: str, row: int, col: int, shape=(64, 64)) -> tuple[float, ...]:
    """The patch's corner cells' centres in lon/lat, projected here with pyproj directly."""
    from pyproj import Transformer

    g = GRIDS[grid]
    to_lonlat = Transformer.from_crs(g["crs"], "EPSG:4326", always_xy=True)
    cell = g["cell_size_m"]
    xs = [g["x_min"] + (col + c + 0.5) * cell for c in (0, shape[1] - 1)]
    ys = [g["y_max"] - (row + r + 0.5) * cell for r in (0, shape[0] - 1)]
    lon, lat = to_lonlat.transform([x for x in xs for _ in ys], [y for _ in xs for y in ys])
    return min(lon), max(lon), min(lat), max(lat)


def test_patch_footprints_hold_the_patch_and_no_more_than_a_cell_around_it():
    m = two_grid_meta(T0, (450, 500))
    boxes = patch_footprints(m, (64, 64), GRIDS)
    for box, row in zip(boxes, m.itertuples(), strict=True):
        lon0, lon1, lat0, lat1 = lonlat_box(row.grid, row.patch_row, row.patch_col)
        assert box[0] <= lon0 and box[1] >= lon1 and box[2] <= lat0 and box[3] >= lat1
        # a cell of 4 km is at most ~0.06° of longitude at these latitudes
        assert lon0 - box[0] < 0.1 and box[1] - lon1 < 0.1 and box[3] - lat1 < 0.05
    with pytest.raises(SplitError, match="grid 'germany' of the store has no usable definition"):
        patch_footprints(m, (64, 64), {"europe": GRIDS["europe"]}, "s")


def test_one_place_under_two_grids_and_labels_at_adjacent_times_is_refused():
    germany = lonlat_box("germany", 450, 500)
    europe = lonlat_box("europe", 277, 340)
    assert germany[0] < europe[1] and europe[0] < germany[1]  # the two patches overlap
    assert germany[2] < europe[3] and europe[2] < germany[3]
    m = two_grid_meta("2021-01-01T00:30:00Z", (450, 500))
    spec = SplitSpec.from_mapping(TWO_GRIDS)
    # the label- and grid-based checks alone do not see it
    assert spec.resolve(m, patch_shape=(64, 64), frames=4).sets["id_test"].tolist() == [2]
    with pytest.raises(SplitLeakageError) as err:
        spec.resolve(m, patch_shape=(64, 64), frames=4, grids=GRIDS)
    message = str(err.value)
    assert "sets 'train' and 'id_test' hold patches on different grids" in message
    assert "sample 0 (2021-01-01T00:00:00Z, region 'europe', grid 'europe'" in message
    assert "sample 2 (2021-01-01T00:30:00Z, region 'germany', grid 'germany'" in message
    assert "\n" not in message


@pytest.mark.parametrize(
    ("when", "origin"),
    [
        ("2021-01-01T01:15:00Z", (450, 500)),  # same place, windows 75 min apart: they do not touch
        ("2021-01-01T00:30:00Z", (0, 0)),  # same time, the far corner of the German grid
    ],
)
def test_two_grids_apart_in_time_or_space_do_not_leak(when, origin):
    m = two_grid_meta(when, origin)
    spec = SplitSpec.from_mapping(TWO_GRIDS)
    resolved = spec.resolve(m, patch_shape=(64, 64), frames=4, grids=GRIDS)
    assert resolved.sets["id_test"].tolist() == [2]


def test_adjacent_times_elsewhere_in_the_region_are_refused():
    """Patches that only touch, an hour apart: no shared pixel, but one weather system."""
    m = patch_meta([(T0, "eu", 0, 0), (T2, "eu", 0, 0), (T1, "eu", 0, 64)])
    spec = leak_spec(train=[T0], id_val=[T2], id_test=[T1])
    with pytest.raises(SplitLeakageError) as err:
        spec.resolve(m, patch_shape=(64, 64), frames=4)
    message = str(err.value)
    assert "sets 'train' and 'id_test' hold adjacent times in region 'europe'" in message
    assert "sample 0 (2021-01-01T00:00:00Z) and sample 2 (2021-01-01T01:00:00Z)" in message
    assert "60 min apart, within the input window of 60 min" in message
    # with a buffer the later sample is dropped instead (and the set is then empty)
    buffered = SplitSpec.from_mapping(
        {
            "name": "leak",
            "temporal_buffer_hours": 2,
            "train": {"time": [T0]},
            "id_val": {"time": [T2]},
            "id_test": {"time": [T1]},
        }
    )
    with pytest.raises(SplitError, match=r"'id_test' selects no sample \(1 dropped by the"):
        buffered.resolve(m, patch_shape=(64, 64), frames=4)


def test_every_leaking_pair_is_counted():
    rows = [(T0, "eu", 0, 0), (T0, "eu", 100, 100)]  # train
    rows += [("2021-01-01T00:15:00Z", "eu", 10, 10), ("2021-01-01T00:15:00Z", "eu", 90, 90)]
    rows += [("2021-01-01T00:30:00Z", "eu", 0, 0)]  # ood: overlaps train 0 and id_val 2
    rows += [(T2, "eu", 500, 500)]  # id_test, clean
    m = patch_meta(rows)
    spec = SplitSpec.from_mapping(
        {
            "name": "leak",
            "temporal_buffer_hours": 0,
            "train": {"time": [T0]},
            "id_val": {"time": ["2021-01-01T00:15:00Z"]},
            "id_test": {"time": [T2]},
            "ood_test": {"x": {"time": ["2021-01-01T00:30:00Z"]}},
        }
    )
    with pytest.raises(SplitLeakageError, match=r"4 such pairs") as err:
        spec.resolve(m, patch_shape=(64, 64), frames=2)
    assert "train/id_val: 2" in str(err.value)
    assert "train/ood_test/x: 1" in str(err.value) and "id_val/ood_test/x: 1" in str(err.value)


def test_the_patch_check_needs_its_columns():
    m = patch_meta([(T0, "eu", 0, 0), (T1, "eu", 0, 0), (T2, "eu", 0, 0)])
    spec = leak_spec(train=[T0], id_val=[T1], id_test=[T2])
    with pytest.raises(SplitError, match=r"patch-overlap check needs .*\['frame_step_s'\]"):
        spec.resolve(m.drop(columns="frame_step_s"), patch_shape=(8, 8))
    with pytest.raises(SplitError, match="must be positive"):
        spec.resolve(m, patch_shape=(0, 8))


def fabricated(n: int, seed: int = 0) -> pd.DataFrame:
    """n samples of one region on a dense 15-min clock, 64-px patches on a 20x15 grid."""
    rng = np.random.default_rng(seed)
    t = np.datetime64("2021-01-01T00:00:00") + rng.integers(0, 4 * 35040, n) * np.timedelta64(
        15, "m"
    )
    return pd.DataFrame(
        {
            "region": "europe",
            "grid": "europe",
            "time": pd.to_datetime(t, utc=True).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "patch_row": rng.integers(0, 20, n) * 64,
            "patch_col": rng.integers(0, 15, n) * 64,
            "frame_step_s": 900,
            "year": pd.to_datetime(t).year,
            "month": pd.to_datetime(t).month,
        }
    )


def test_patch_check_is_fast_on_1e5_samples():
    """A guard against quadratic work (seconds, not minutes), not a benchmark: a loose bound."""
    m = fabricated(100_000)
    definition = {
        "name": "big",
        "train": {"month": {"not": [3, 6, 9, 12]}},
        "id_val": {"month": [3, 9]},
        "id_test": {"month": [6, 12]},
    }
    spec = SplitSpec.from_mapping(definition)
    spec.resolve(m.iloc[:1000], patch_shape=(64, 64), frames=4)  # warm up pandas
    start = time.perf_counter()
    split = spec.resolve(m, patch_shape=(64, 64), frames=4)
    assert time.perf_counter() - start < 10.0
    assert sum(s.size for s in split.sets.values()) > 90_000
    # without a buffer, the interleaved months leak at their boundaries; found as fast
    no_buffer = SplitSpec.from_mapping({**definition, "temporal_buffer_hours": 0})
    start = time.perf_counter()
    with pytest.raises(SplitLeakageError, match="such pairs"):
        no_buffer.resolve(m, patch_shape=(64, 64), frames=4)
    assert time.perf_counter() - start < 10.0


def test_patch_check_agrees_with_brute_force():
    m = fabricated(3000, seed=1)
    m["patch_row"] = np.random.default_rng(2).integers(0, 300, len(m))
    m["patch_col"] = np.random.default_rng(3).integers(0, 300, len(m))
    m["time"] = pd.to_datetime(m["time"]).dt.strftime("2021-01-01T%H:%M:%SZ")  # one crowded day
    definition = {
        "name": "brute",
        "temporal_buffer_hours": 0,
        "train": {"hour": {"max": 8}},
        "id_val": {"hour": {"min": 8, "max": 16}},
        "id_test": {"hour": {"min": 16}},
    }
    spec = SplitSpec.from_mapping(definition)
    # the sets as filtered: a buffer of a microsecond drops nothing (the sets' hours differ)
    # and, without frame steps, leaves the filters and the shared check only
    filtered = SplitSpec.from_mapping({**definition, "temporal_buffer_hours": 1e-9})
    no_steps = m.drop(columns="frame_step_s")
    sets = [filtered.resolve(no_steps).sets[k] for k in ("train", "id_val", "id_test")]
    t = sample_times(m)
    r, c = m["patch_row"].to_numpy(), m["patch_col"].to_numpy()
    expected = 0
    for a in range(3):
        for b in range(a + 1, 3):
            i, j = sets[a][:, None], sets[b][None, :]
            near = (np.abs(r[i] - r[j]) < 32) & (np.abs(c[i] - c[j]) < 32)
            expected += int((near & (np.abs(t[i] - t[j]) <= 2 * 900)).sum())
    assert expected > 0
    with pytest.raises(SplitLeakageError, match=f" {expected} such pairs"):
        spec.resolve(m, patch_shape=(32, 32), frames=2)


def test_summary_format_and_domains():
    m = meta(
        [
            ("europe", 2021, "2021-01-01T00:00:00Z", 0.1),
            ("europe", 2021, "2021-01-01T06:00:00Z", 0.3),
            ("europe", 2022, "2022-06-01T00:00:00Z", 0.2),
            ("europe", 2023, "2023-05-01T00:00:00Z", 0.3),
            ("conus", 2023, "2023-05-01T00:00:00Z", 0.4),
        ]
    )
    m["sensor"] = ["SEVIRI"] * 4 + ["ABI"]
    m["day"] = [True, False, True, True, False]
    split = SplitSpec.from_mapping(SPEC).resolve(m)
    summary = split.summary(m)
    assert list(summary.columns) == [
        "set",
        "samples",
        "regions",
        "sensors",
        "first",
        "last",
        "days",
        "rain_fraction",
        "day_fraction",
        "dropped_by_buffer",
    ]
    train = summary.set_index("set").loc["train"]
    assert (train["samples"], train["days"], train["rain_fraction"]) == (2, 1, 0.2)
    assert (train["first"], train["last"], train["day_fraction"]) == (
        "2021-01-01 00:00",
        "2021-01-01 06:00",
        0.5,
    )
    assert summary.set_index("set").loc["ood_test/conus", "sensors"] == "ABI"
    text = format_summary(summary).splitlines()
    assert len(text) == 5 and len({len(line) for line in text}) == 1  # aligned columns
    assert "0.2000" in text[1]
    no_day = split.summary(m.drop(columns=["day", "sensor"]))
    assert no_day["day_fraction"].isna().all() and set(no_day["sensors"]) == {"-"}
    assert split.domains() == {
        "train": "europe/2021",
        "id_val": "europe/2022",
        "id_test": "europe/2023",
        "ood_test/conus": "conus",
    }


def test_domain_labels_of_conditions():
    spec = SplitSpec.from_mapping(
        {
            "name": "d",
            "train": {"region": "europe", "lat": {"min": 50}, "month": [1, 2]},
            "id_val": {"day": True, "year": {"min": 2021, "max": 2023}},
            "id_test": {"season": ["DJF", "MAM"], "sensor": {"not": ["ABI"]}},
            "ood_test": {"n": {"day": False}, "all": {"month": [3]}},
        }
    )
    assert ResolvedSplit(spec, sets={}).domains() == {
        "train": "europe/lat>=50",
        "id_val": "2021<=year<2023/day",
        "id_test": "sensor!=ABI/DJF+MAM",
        "ood_test/n": "night",
        "ood_test/all": "all",
    }


# ---- the shipped splits ------------------------------------------------------------------


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_split_parses_and_registers(name):
    raw = yaml.safe_load((SPLIT_DIR / f"{name}.yaml").read_text())
    assert raw["name"] == name
    spec = SPLITS.get(name)
    assert spec == SplitSpec.from_mapping(raw)
    assert len(spec.description) > 80 and spec.ood_test
    if name in REAL:
        assert "data=" in spec.description  # names the store it runs on


@pytest.fixture(scope="module")
def synthetic_store(tmp_path_factory):
    """A store with the regions and sample counts of data=synthetic_tiny, on small patches, plus
    a few samples of each factor preset of data=synthetic_factors (synthetic_europe_factors),
    and every region over the years of data=synthetic_ceiling (synthetic_<region>_id)."""
    from qpebench.datasets.synthetic import build_synthetic_store

    data = Path(str(files("qpebench.conf").joinpath("data")))
    cfg = yaml.safe_load((data / "synthetic_tiny.yaml").read_text())
    regions = dict(cfg["regions"])
    factors = yaml.safe_load((data / "synthetic_factors.yaml").read_text())["regions"]
    regions.update({k: {**v, "n_samples": 4} for k, v in factors.items() if k not in regions})
    ceiling = yaml.safe_load((data / "synthetic_ceiling.yaml").read_text())["regions"]
    for name, spec in ceiling.items():  # the tiny store's regions over the ceiling's years
        regions[name] = {"n_samples": max(regions[name]["n_samples"], 64), "years": spec["years"]}
    root = tmp_path_factory.mktemp("splits") / "tiny"
    return build_synthetic_store(
        root,
        regions=regions,
        patch_size=8,
        frames=cfg["frames"],
        bands=["IR10.8"],
        seed=cfg["seed"],
        shard_size=cfg["shard_size"],
        progress=False,
        workers=1,
    )


@pytest.mark.parametrize("name", SYNTHETIC)
def test_synthetic_splits_resolve_leak_free(name, synthetic_store):
    md = synthetic_store.metadata
    split = SPLITS.get(name).resolve(
        md, patch_shape=synthetic_store.patch_shape, frames=synthetic_store.frames
    )
    assert all(idx.size > 0 for idx in split.sets.values())
    for key, flt in split.spec.filters().items():
        part = md.iloc[split.sets[key]]
        if "region" in flt:
            assert set(part["region"]) <= set(flt["region"].values)
        if "day" in flt:
            assert set(part["day"]) == {flt["day"].values[0]}
    assert split.summary(md)["samples"].sum() <= len(md)


def real_metadata() -> pd.DataFrame:
    """Fabricated rows of a real store: four regions, 2021-2024 every 9 h, two patches each."""
    regions = {
        "europe": ("SEVIRI", "OPERA", 900, (60.0, 42.0)),
        "conus": ("ABI", "MRMS", 600, (45.0, 30.0)),
        "india": ("SEVIRI", "IMD radars", 900, (28.0, 15.0)),
        "australia": ("AHI", "BoM Rainfields", 600, (-20.0, -35.0)),
    }
    stamps = pd.date_range("2021-01-01", "2024-12-31T23:00", freq="9h", tz="UTC")
    frames = []
    for region, (sensor, network, step, lats) in regions.items():
        for k, lat in enumerate(lats):
            frames.append(
                pd.DataFrame(
                    {
                        "region": region,
                        "satellite": "sat",
                        "sensor": sensor,
                        "radar_network": network,
                        "grid": region,
                        "time": stamps.strftime("%Y-%m-%dT%H:%M:%SZ"),
                        "year": stamps.year,
                        "month": stamps.month,
                        "season": [
                            ("DJF", "MAM", "JJA", "SON")[(m % 12) // 3] for m in stamps.month
                        ],
                        "local_hour": stamps.hour,
                        "lat": lat,
                        "lon": 0.0,
                        "vza": 50.0,
                        "patch_row": 64 * k,
                        "patch_col": 0,
                        "frame_step_s": step,
                        "accumulation_s": 0,
                        "valid_fraction": 1.0,
                        "rain_fraction": 0.1,
                    }
                )
            )
    return pd.concat(frames, ignore_index=True)


@pytest.mark.parametrize("name", REAL)
def test_real_splits_resolve_on_fabricated_metadata(name):
    md = real_metadata()
    split = SPLITS.get(name).resolve(md, patch_shape=(64, 64), frames=4)
    assert all(idx.size > 100 for idx in split.sets.values())
    train = md.iloc[split.sets["train"]]
    ood = pd.concat([md.iloc[v] for k, v in split.sets.items() if k.startswith("ood_test/")])
    assert set(train["month"]).isdisjoint(set(md.iloc[split.sets["id_test"]]["month"]))
    domains = split.domains()
    assert domains["train"] != next(v for k, v in domains.items() if k.startswith("ood_test/"))
    if name == "europe_north_to_south":
        assert train["lat"].min() >= 50 and ood["lat"].max() < 50
    if name == "cross_sensor_seviri_to_abi":
        assert set(train["sensor"]) == {"SEVIRI"} and set(ood["sensor"]) == {"ABI"}
    if name == "cross_year_europe":
        assert train["year"].max() < 2023 <= ood["year"].min()


def test_declared_domain_labels_override_the_derived_ones():
    base = {
        "name": "d",
        "train": {"region": "europe", "year": [2021]},
        "id_val": {"region": "europe", "year": [2022]},
        "id_test": {"region": "europe", "year": [2023]},
        "ood_test": {"conus": {"region": "conus"}},
    }
    spec = SplitSpec.from_mapping({**base, "domains": {"train": "europe", "id_test": "europe"}})
    assert ResolvedSplit(spec, sets={}).domains() == {
        "train": "europe",
        "id_val": "europe/2022",
        "id_test": "europe",
        "ood_test/conus": "conus",
    }
    with pytest.raises(SplitError, match="domains must map set names"):
        SplitSpec.from_mapping({**base, "domains": {"ood_test/india": "india"}})


def test_the_synthetic_transfer_splits_share_domain_labels():
    europe = SPLITS.get("synthetic_europe_to_all")
    conus = SPLITS.get("synthetic_conus_to_all")
    labels = {
        name: ResolvedSplit(spec, sets={}).domains() for name, spec in (("e", europe), ("c", conus))
    }
    assert labels["e"]["train"] == labels["c"]["ood_test/europe"] == "europe"
    assert labels["c"]["train"] == labels["e"]["ood_test/conus"] == "conus"


def test_a_split_without_buffer_needs_the_frame_step():
    m = patch_meta([(T0, "eu", 0, 0), (T2, "eu", 0, 0), ("2021-01-05T00:00:00Z", "eu", 0, 0)])
    spec = leak_spec(train=[T0], id_val=[T2], id_test=["2021-01-05T00:00:00Z"])
    with pytest.raises(SplitError, match=r"adjacent-times check needs .*frame_step_s"):
        spec.resolve(m.drop(columns="frame_step_s"))
    assert spec.resolve(m).sets["id_test"].tolist() == [2]
