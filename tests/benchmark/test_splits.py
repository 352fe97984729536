from __future__ import annotations

import pandas as pd
import pytest

from qpebench.errors import SplitError
from qpebench.registry import SPLITS
from qpebench.splits import SplitSpec


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
    assert split.dropped_by_buffer["id_val"] == 1
    assert split.sets["ood_test/conus"].tolist() == [5]
    assert list(split.test_sets) == ["id_test", "ood_test/conus"]
    summary = split.summary(m)
    assert summary.set_index("set").loc["id_val", "dropped_by_buffer"] == 1


def test_sets_sharing_a_sample_are_refused():
    m = meta(
        [
            ("europe", 2021, "2021-01-01T00:00:00Z", 0),
            ("europe", 2022, "2022-06-01T00:00:00Z", 0),
            ("europe", 2023, "2023-06-01T00:00:00Z", 0),
        ]
    )
    bad = dict(SPEC, temporal_buffer_hours=0, id_test={"region": ["europe"], "year": [2023, 2021]})
    with pytest.raises(SplitError, match="sets 'train' and 'id_test' share 1 samples"):
        SplitSpec.from_mapping(bad).resolve(m)


def test_bad_split_definitions():
    with pytest.raises(SplitError, match=r"missing \['id_test'\]"):
        SplitSpec.from_mapping({k: v for k, v in SPEC.items() if k != "id_test"})
    with pytest.raises(SplitError, match="filters on 'sensr'"):
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


def test_packaged_split_on_the_tiny_store(tiny_store):
    split = SPLITS.get("synthetic_europe_to_all")
    spec = SplitSpec.from_mapping(
        {
            **SPEC,
            "name": "x",
            "ood_test": {"conus": {"region": ["conus"]}, "india": {"region": ["india"]}},
            "train": split.train,
            "id_val": split.id_val,
            "id_test": split.id_test,
        }
    )
    resolved = spec.resolve(tiny_store.metadata)
    md = tiny_store.metadata
    assert set(md.iloc[resolved.sets["train"]]["year"]) <= {2021, 2022}
    assert set(md.iloc[resolved.sets["ood_test/india"]]["region"]) == {"india"}
