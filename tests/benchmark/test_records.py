"""Result records: schema v2 validated on write and load, v1 still readable, never overwritten."""

from __future__ import annotations

import copy
import json
import re

import numpy as np
import pytest

from qpebench.records import (
    SCHEMA,
    SCHEMA_VERSION,
    RecordError,
    decode_field,
    encode_field,
    load_record,
    write_record,
)


def field(value: float = 1.0) -> dict:
    return encode_field(np.full((4, 5), value), scale=0.01)


def v2_record() -> dict:
    return {
        "schema": SCHEMA,
        "schema_version": SCHEMA_VERSION,
        "run_id": "r",
        "created": "2026-11-26T00:00:00Z",
        "split": {"name": "s", "train_domain": "europe", "test_domains": {"id_test": "europe"}},
        "model": {"name": "m", "frames": 1, "bands": ["IR10.8"], "parameters": 0},
        "model_config": {},
        "metrics": {"id_test": {"csi@1": 0.5, "rmse": 1.2, "pearson_r": None}},
        "intervals": {"id_test": {"csi@1": [0.4, 0.6], "rmse": None}},
        "strata": {"id_test": {"season": {"DJF": {"csi@1": 0.4, "n_samples": 3}}}},
        "curves": {"id_test": {"histogram": {"edges": [0, 1], "pred": [1], "obs": [2]}}},
        "examples": {
            "id_test": {"time": "t", "ir108": field(250.0), "truth": field(), "pred": field()}
        },
        "paired": {
            "id_test": {"other": {"csi@1": {"diff": 0.1, "ci": [0.0, 0.2], "p_value": 0.01}}}
        },
        "n_samples": {"id_test": 3},
        "config": {},
        "dataset": {"adapter": "synthetic", "version": "v"},
        "seed": 0,
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
        "runtime_s": {},
    }


def test_v2_record_round_trips(tmp_path):
    path = write_record(tmp_path / "r.json", v2_record())
    assert load_record(path) == json.loads(path.read_text())
    with pytest.raises(FileExistsError, match="never overwritten"):
        write_record(path, v2_record())


def test_nan_and_numpy_values_become_json(tmp_path):
    record = v2_record()
    record["metrics"]["id_test"]["csi@1"] = float("nan")
    record["metrics"]["id_test"]["rmse"] = np.float32(1.5)
    loaded = load_record(write_record(tmp_path / "r.json", record))
    assert loaded["metrics"]["id_test"]["csi@1"] is None
    assert loaded["metrics"]["id_test"]["rmse"] == 1.5


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda r: r.pop("strata"), "missing key 'strata'"),
        (
            lambda r: r["intervals"]["id_test"].update({"rmse": [2.0, 1.0]}),
            r"intervals\['id_test'\]",
        ),
        (lambda r: r["intervals"].update({"ood_test/x": {}}), "names test sets"),
        (
            lambda r: r["strata"]["id_test"]["season"]["DJF"].update({"csi@1": "high"}),
            "is not a number",
        ),
        (lambda r: r["examples"]["id_test"].update({"pred": [[1.0]]}), "not a zlib-base64"),
        (
            lambda r: r["examples"]["id_test"]["truth"].update({"data": "AAAA"}),
            r"\['truth'\]: corrupt zlib stream",
        ),
        (
            lambda r: r["paired"]["id_test"]["other"]["csi@1"].pop("p_value"),
            "needs diff .number., ci",
        ),
        (lambda r: r["metrics"]["id_test"].update({"csi@1": True}), "is not a number"),
        (lambda r: r.update({"schema_version": 1}), f"written as schema version {SCHEMA_VERSION}"),
        (lambda r: r["split"].pop("name"), "split lacks 'name'"),
        (lambda r: r["dataset"].pop("version"), "dataset lacks 'version'"),
        (lambda r: r["model"].update({"parameters": "many"}), r"model\['parameters'\] must be"),
        (lambda r: r["model"].update({"frames": True}), r"model\['frames'\] must be"),
        (lambda r: r["provenance"].pop("commit"), "provenance lacks 'commit'"),
        (lambda r: r["provenance"].update({"packages": []}), r"provenance\['packages'\]"),
        (lambda r: r["runtime_s"].update({"fit": "slow"}), "is not a number"),
        (lambda r: r["strata"].update({"id_test": []}), r"strata\['id_test'\] must be a mapping"),
        (lambda r: r["intervals"].update({"id_test": [0.1, 0.2]}), "must be a mapping"),
        (
            lambda r: r["paired"]["id_test"]["other"]["csi@1"].update({"p_value": 7}),
            r"p_value in \(0, 1\]",
        ),
        (
            lambda r: r["paired"]["id_test"]["other"]["csi@1"].update({"p_value": "abc"}),
            r"p_value in \(0, 1\]",
        ),
        (
            lambda r: r["paired"]["id_test"]["other"]["csi@1"].update({"ci": ["lo", "hi"]}),
            r"ci \(\[lo, hi\]\)",
        ),
        (
            lambda r: r["curves"]["id_test"]["histogram"].update({"obs": [1, 2, 3]}),
            "edges and counts do not fit",
        ),
        (lambda r: r["curves"]["id_test"].update({"histogram": [1]}), "must be a mapping"),
        (
            lambda r: r["examples"]["id_test"]["pred"].update({"shape": [2, 2, 5]}),
            "a field is 2-D",
        ),
        (lambda r: r.update({"schema_version": 7}), "schema version 7"),
    ],
)
def test_invalid_records_are_refused_on_write(tmp_path, edit, message):
    record = v2_record()
    edit(record)
    with pytest.raises(RecordError, match=message):
        write_record(tmp_path / "r.json", record)
    assert not (tmp_path / "r.json").exists()


def test_invalid_record_is_refused_on_load(tmp_path):
    record = v2_record()
    del record["paired"]
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(record))
    with pytest.raises(RecordError, match=r"bad.json: missing key 'paired'"):
        load_record(path)


def test_version_1_records_still_load(tmp_path):
    record = copy.deepcopy(v2_record())
    for key in ("intervals", "strata", "curves", "examples", "paired"):
        del record[key]
    record["schema_version"] = 1
    path = tmp_path / "v1.json"
    path.write_text(json.dumps(record))
    assert load_record(path)["schema_version"] == 1


def test_encoded_fields_round_trip_to_their_resolution():
    rng = np.random.default_rng(0)
    rain = rng.gamma(0.5, 3.0, (64, 64))
    rain[:3] = np.nan
    rain[10, 10] = 1000.0  # above the encodable range: clipped
    enc = encode_field(rain, scale=0.01)
    back = decode_field(json.loads(json.dumps(enc)))
    assert np.array_equal(np.isnan(back), np.isnan(rain))
    ok = np.isfinite(rain) & (rain < 600)
    assert np.abs(back[ok] - rain[ok]).max() <= 0.005 + 1e-12
    assert back[10, 10] == pytest.approx(655.34)
    tb = rng.uniform(190, 300, (64, 64))
    assert np.abs(decode_field(encode_field(tb, scale=0.01, offset=100.0)) - tb).max() <= 0.005
    assert len(json.dumps(enc)) < 20_000  # lists of rounded values: ~50 kB
    with pytest.raises(ValueError, match="2-D"):
        encode_field(rain[0], scale=0.01)


STATES_REF = {"file": "states.npz", "sha256": "0" * 64, "bytes": 1000}


def test_v3_records_carry_states_or_paired(tmp_path):
    record = v2_record()
    assert record["schema_version"] == SCHEMA_VERSION == 3
    record["states"] = dict(STATES_REF)
    del record["paired"]  # comparisons are made at render time from the states
    assert load_record(write_record(tmp_path / "states.json", record))["states"] == STATES_REF
    del record["states"]
    with pytest.raises(RecordError, match="missing key 'paired' or 'states'"):
        write_record(tmp_path / "neither.json", record)


@pytest.mark.parametrize(
    ("ref", "message"),
    [
        ({**STATES_REF, "file": "../states.npz"}, "states file '../states.npz' is not safe"),
        ({**STATES_REF, "file": "a/b.npz"}, "is not safe as a file name"),
        ({**STATES_REF, "sha256": "ABC"}, "64 lowercase hex digits"),
        ({**STATES_REF, "bytes": 0}, "a state file has 1 to"),
        ({**STATES_REF, "bytes": 10**12}, "a state file has 1 to"),
        ({**STATES_REF, "bytes": True}, "a state file has 1 to"),
        ({**STATES_REF, "url": "https://x"}, r"states must hold \['bytes', 'file', 'sha256'\]"),
        ("states.npz", "'states' must be <class 'dict'>, got str"),
    ],
)
def test_bad_states_references_are_refused(tmp_path, ref, message):
    record = v2_record()
    record["states"] = ref
    with pytest.raises(RecordError, match=message):
        write_record(tmp_path / "r.json", record)


def test_version_2_records_still_need_paired(tmp_path):
    record = v2_record()
    record["schema_version"] = 2
    path = tmp_path / "v2.json"
    path.write_text(json.dumps(record))
    assert load_record(path)["paired"] == record["paired"]
    del record["paired"]
    path.write_text(json.dumps(record))
    with pytest.raises(RecordError, match="missing key 'paired'$"):
        load_record(path)


def test_provenance_explains_a_cross_machine_difference(tmp_path, monkeypatch):
    import platform

    import torch

    from qpebench.records import cpu_model, numeric_environment, provenance

    prov = provenance("cpu", precision="bf16")
    hardware = prov["hardware"]
    assert prov["precision"] == "bf16" and provenance("cpu")["precision"] == "fp32"
    assert hardware["torch_cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert hardware["torch_threads"] == torch.get_num_threads() >= 1
    assert hardware["onednn"] is None or hardware["onednn"][0].isdigit()
    assert "gpu" not in hardware and "cudnn" not in hardware  # a CPU run has neither
    assert isinstance(hardware["cpu_model"], str)
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nvendor_id\t: X\nmodel name\t: Example CPU 9000 @ 3GHz\n")
    assert cpu_model(cpuinfo) == "Example CPU 9000 @ 3GHz"
    assert cpu_model(tmp_path / "absent") == platform.processor()
    # a CUDA device adds the GPU and cuDNN (this machine may have none: stand-ins)
    names = []
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda d: names.append(d) or "Fake GPU")
    monkeypatch.setattr(torch.backends.cudnn, "is_available", lambda: True)
    monkeypatch.setattr(torch.backends.cudnn, "version", lambda: 90100)
    cuda = numeric_environment("cuda:1")
    assert cuda["gpu"] == "Fake GPU" and cuda["cudnn"] == 90100
    assert names == [torch.device("cuda:1")]
    # the record keeps it
    record = v2_record()
    record["provenance"] = prov
    assert load_record(write_record(tmp_path / "r.json", record))["provenance"] == prov


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("input_window_min", {"id_test": "45"}, "input_window_min['id_test'] = '45'"),
        ("strata_intervals", [1], "strata_intervals must be a mapping"),
        ("strata_intervals", {"nowhere": {}}, "strata_intervals names test sets ['nowhere']"),
    ],
)
def test_the_study_keys_are_checked(tmp_path, key, value, message):
    record = v2_record()
    record[key] = value
    path = tmp_path / "r.json"
    path.write_text(json.dumps(record))
    with pytest.raises(RecordError, match=re.escape(message)):
        load_record(path)


def test_a_bad_truth_ceiling_is_refused(tmp_path):
    record = v2_record()
    record["split"]["truth_ceiling"] = {"id_test": {"csi@1": "high"}}
    with pytest.raises(RecordError, match=r"truth_ceiling'\]\['id_test'\]\['csi@1'\] = 'high'"):
        write_record(tmp_path / "r.json", record)
