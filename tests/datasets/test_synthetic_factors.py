"""Factor-separated synthetic presets: europe with ONE factor of conus, tropics or india."""

from __future__ import annotations

import re
from dataclasses import fields, is_dataclass, replace
from importlib.resources import files
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from qpebench.datasets.synthetic import (
    SyntheticConfig,
    build_synthetic_store,
    region_seed,
    render_chunk,
    target_times,
)
from qpebench.datasets.synthetic_regions import (
    FACTOR_BASE,
    FACTOR_DONORS,
    FACTOR_PRESETS,
    REGIONS,
    RegionPreset,
    factor_preset,
    get_region,
)
from qpebench.errors import ConfigError
from qpebench.names import check_name
from qpebench.registry import SPLITS
from qpebench.splits import SHIFT_FACTORS, SplitSpec

CONF = Path(str(files("qpebench.conf")))
EUROPE = REGIONS["europe"]
FACTOR_NAMES = [name for per in FACTOR_PRESETS.values() for name in per.values()]


def leaves(obj: Any, prefix: str = "") -> dict[str, Any]:
    """Every field of a (nested) dataclass by dotted path: ``{"sensor.blur_km": 4.0, ...}``."""
    out: dict[str, Any] = {}
    for f in fields(obj):
        value = getattr(obj, f.name)
        if is_dataclass(value):
            out.update(leaves(value, f"{prefix}{f.name}."))
        else:
            out[f"{prefix}{f.name}"] = value
    return out


def model_leaves(preset: RegionPreset) -> dict[str, Any]:
    """The sensor, radar and climate fields of a preset (not its name and description)."""
    return {k: v for k, v in leaves(preset).items() if k.split(".")[0] != k}


def scope(factor: str) -> set[str]:
    """The fields a factor takes from the donor, written out independently of the code."""
    every = set(model_leaves(EUROPE))
    return {
        "climate": {k for k in every if k.startswith("climate.")},
        "sensor": {k for k in every if k.startswith("sensor.")} - {"sensor.frame_step_s"},
        "radar": {k for k in every if k.startswith("radar.")},
        "step": {"sensor.frame_step_s"},
    }[factor]


def wrong_fields(preset: RegionPreset, donor: RegionPreset, factor: str) -> list[str]:
    """Fields that are not the donor's inside the factor's scope or not europe's outside it."""
    got, base, giver = model_leaves(preset), model_leaves(EUROPE), model_leaves(donor)
    inside = scope(factor)
    return sorted(k for k, v in got.items() if v != (giver[k] if k in inside else base[k]))


CASES = [(d, f) for d in FACTOR_DONORS for f in SHIFT_FACTORS]


@pytest.mark.parametrize(("donor", "factor"), CASES)
def test_a_preset_differs_from_europe_in_its_factor_only(donor, factor):
    preset = get_region(f"europe_{donor}_{factor}")
    giver = REGIONS[donor]
    assert preset.name == FACTOR_PRESETS[donor][factor] == f"europe_{donor}_{factor}"
    assert wrong_fields(preset, giver, factor) == []
    base, got = model_leaves(EUROPE), model_leaves(preset)
    changed = {k for k in base if got[k] != base[k]}
    assert changed == {k for k in scope(factor) if model_leaves(giver)[k] != base[k]}
    if factor == "step" and donor == "india":
        assert changed == set()  # india's SEVIRI runs at europe's 15 min too: a null shift
    else:
        assert changed, "the factor changes nothing"
    assert donor in preset.description and preset.description.startswith("europe with ")


def test_the_field_check_can_fail():
    """The check above catches a preset that copies more (or less) than its factor."""
    conus = REGIONS["conus"]
    sensor = get_region("europe_conus_sensor")
    whole_sensor = replace(sensor, sensor=conus.sensor)  # frame_step_s copied too
    assert wrong_fields(whole_sensor, conus, "sensor") == ["sensor.frame_step_s"]
    partial = replace(sensor, sensor=replace(sensor.sensor, blur_km=EUROPE.sensor.blur_km))
    assert wrong_fields(partial, conus, "sensor") == ["sensor.blur_km"]
    step = get_region("europe_tropics_step")
    leaky = replace(step, radar=REGIONS["tropics"].radar)
    assert "radar.network" in wrong_fields(leaky, REGIONS["tropics"], "step")
    climate = get_region("europe_india_climate")
    half = replace(climate, climate=replace(climate.climate, lat_deg=EUROPE.climate.lat_deg))
    assert wrong_fields(half, REGIONS["india"], "climate") == ["climate.lat_deg"]


def test_the_registry_lists_every_factor_preset():
    assert FACTOR_BASE == "europe" and set(FACTOR_PRESETS) == {"conus", "tropics", "india"}
    assert all(list(per) == list(SHIFT_FACTORS) for per in FACTOR_PRESETS.values())
    assert len(set(FACTOR_NAMES)) == 12 and set(FACTOR_NAMES) <= set(REGIONS)
    for name in FACTOR_NAMES:
        assert re.fullmatch(r"[a-z0-9_]+", name) and check_name(name, "region") == name
        assert factor_preset(EUROPE, *_donor_factor(name)) == REGIONS[name]


def _donor_factor(name: str) -> tuple[RegionPreset, str]:
    _, donor, factor = name.split("_")
    return REGIONS[donor], factor


def test_descriptions_say_what_changed():
    assert get_region("europe_conus_radar").description == (
        "europe with conus's radar network (MRMS)"
    )
    assert "600 s instead of 900 s" in get_region("europe_tropics_step").description
    assert "no shift" in get_region("europe_india_step").description
    assert "ABI on GOES-16" in get_region("europe_conus_sensor").description
    assert "900 s frame step" in get_region("europe_conus_sensor").description


def test_an_unknown_factor_is_refused():
    with pytest.raises(ConfigError, match="unknown shift factor 'wind'") as err:
        factor_preset(EUROPE, REGIONS["conus"], "wind")
    assert all(f in str(err.value) for f in SHIFT_FACTORS)


# ---- the generator renders them ---------------------------------------------------------------


def render(name: str, n: int = 8, frames: int = 3):
    preset = get_region(name)
    times = target_times(preset, n, (2024, 2024), 0)
    cfg = SyntheticConfig(patch_size=16, frames=frames)
    return render_chunk(preset, cfg, times, region_seed(0, name, 0))


@pytest.mark.parametrize("factor", SHIFT_FACTORS)
def test_the_generator_renders_each_factor(factor):
    name = FACTOR_PRESETS["conus"][factor]
    b = render(name)
    md = b.metadata
    assert np.isfinite(b.ir).all() and set(md["region"]) == set(md["grid"]) == {name}
    steps = set(np.diff(b.time, axis=1).ravel().tolist())
    conus = REGIONS["conus"]
    expect = {
        # (frame step, sensor, satellite, radar network, inside conus's latitudes)
        "climate": (900, "SEVIRI", "Meteosat-11", "OPERA", True),
        "sensor": (900, "ABI", "GOES-16", "OPERA", False),
        "radar": (900, "SEVIRI", "Meteosat-11", "MRMS", False),
        "step": (600, "SEVIRI", "Meteosat-11", "OPERA", False),
    }[factor]
    assert steps == {expect[0]} and set(md["frame_step_s"]) == {expect[0]}
    assert set(md["sensor"]) == {expect[1]} and set(md["satellite"]) == {expect[2]}
    assert set(md["radar_network"]) == {expect[3]}
    lat_range = (conus if expect[4] else EUROPE).climate.lat_deg
    assert md["lat"].between(*lat_range).all()


def test_step_and_sensor_presets_keep_their_frame_clocks():
    assert set(np.diff(render("europe_tropics_step").time, axis=1).ravel()) == {600}
    assert set(np.diff(render("europe_tropics_sensor").time, axis=1).ravel()) == {900}
    assert set(np.diff(render("europe_india_step").time, axis=1).ravel()) == {900}


# ---- the data configuration and the split -----------------------------------------------------


def load(*parts: str) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(CONF.joinpath(*parts).read_text())
    return data


def test_data_config_is_data_synthetic_plus_the_factor_presets():
    factors, full = load("data", "synthetic_factors.yaml"), load("data", "synthetic.yaml")
    assert factors["frames"] == 7  # room for the study's 6 frames, or 4 at step 2
    assert {k: v for k, v in factors.items() if k not in ("regions", "frames")} == {
        k: v for k, v in full.items() if k not in ("regions", "frames")
    }
    regions = factors["regions"]
    assert {k: regions[k] for k in full["regions"]} == full["regions"]
    assert set(regions) == set(full["regions"]) | set(FACTOR_NAMES)
    for name in FACTOR_NAMES:
        first, last = regions[name]["years"]
        assert regions[name]["n_samples"] == 400 and first == last


def _overlap(a: tuple[float, float], b: tuple[float, float]) -> bool:
    return a[0] <= b[1] and b[0] <= a[1]


def test_data_config_separates_in_time_the_presets_that_share_a_place():
    """Presets at one place (europe and its sensor/radar/step presets; a donor and its climate
    preset) are in different years, else the footprint guard refuses the split: two test sets
    under two grid names would cover one place at adjacent times."""
    regions = load("data", "synthetic_factors.yaml")["regions"]
    names = list(regions)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            ca, cb = REGIONS[a].climate, REGIONS[b].climate
            if _overlap(ca.lat_deg, cb.lat_deg) and _overlap(ca.lon_deg, cb.lon_deg):
                assert not _overlap(regions[a]["years"], regions[b]["years"]), (a, b)


def test_split_extends_synthetic_europe_to_all():
    raw = load("split", "synthetic_europe_factors.yaml")
    spec, full = SPLITS.get("synthetic_europe_factors"), SPLITS.get("synthetic_europe_to_all")
    assert spec == SplitSpec.from_mapping(raw)
    assert (spec.train, spec.id_val, spec.id_test) == (full.train, full.id_val, full.id_test)
    assert spec.temporal_buffer_hours == full.temporal_buffer_hours
    assert list(spec.ood_test) == [*full.ood_test, *FACTOR_NAMES]
    for name in FACTOR_NAMES:
        assert spec.ood_test[name]["region"].values == (name,)
        assert spec.domains[f"ood_test/{name}"] == name
    assert {k: spec.domains[k] for k in full.domains} == full.domains
    assert set(spec.domains) == set(spec.filters())


@pytest.fixture(scope="module")
def factor_store(tmp_path_factory):
    """The regions and years of data=synthetic_factors, a few samples each, tiny patches."""
    regions = load("data", "synthetic_factors.yaml")["regions"]
    small = {k: {**v, "n_samples": 48 if k == "europe" else 4} for k, v in regions.items()}
    root = tmp_path_factory.mktemp("factors") / "store"
    return build_synthetic_store(
        root,
        regions=small,
        patch_size=16,
        frames=2,
        bands=["IR10.8"],
        shard_size=8,
        progress=False,
        workers=1,
    )


def test_the_split_resolves_on_a_store_of_the_data_config(factor_store):
    md = factor_store.metadata
    assert (
        set(md["region"])
        == set(md["grid"])
        == {"europe", "conus", "tropics", "india"} | set(FACTOR_NAMES)
    )
    split = SPLITS.get("synthetic_europe_factors").resolve(
        md,
        patch_shape=factor_store.patch_shape,
        frames=factor_store.frames,
        grids=factor_store.manifest["grids"],
    )
    assert all(idx.size > 0 for idx in split.sets.values())
    for name in FACTOR_NAMES:
        part = md.iloc[split.sets[f"ood_test/{name}"]]
        assert set(part["region"]) == {name} and len(part) == 4
    assert split.domains()["ood_test/europe_conus_radar"] == "europe_conus_radar"
    assert split.domains()["ood_test/conus"] == "conus"
    radar = md[md["region"] == "europe_india_radar"]
    assert set(radar["radar_network"]) == {"IMD"} and set(radar["sensor"]) == {"SEVIRI"}
    assert set(radar["satellite"]) == {"Meteosat-11"}
