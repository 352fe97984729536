"""The command line end to end on a tiny configuration, and its one-line errors."""

from __future__ import annotations

import json

import pytest

from qpebench.cli import main
from qpebench.config import compose_config, run_config
from qpebench.errors import ConfigError, UnknownNameError
from qpebench.models import load_model
from qpebench.records import RecordError, load_record
from qpebench.registry import MODELS


def tiny_overrides(tmp_path, *extra):
    return [
        "data=synthetic_tiny",
        "train=smoke",
        "progress=false",
        f"paths.cache={tmp_path / 'cache'}",
        f"paths.runs={tmp_path / 'runs'}",
        "data.regions.europe.n_samples=64",
        *extra,
    ]


def one_error_line(capsys, argv) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert err.startswith("qpebench: error: ")
    return err


def run_folder_of(runs):
    folders = [p for p in runs.iterdir() if (p / "run.json").is_file()]
    assert len(folders) == 1, folders
    return folders[0]


def test_run_end_to_end_is_reproducible(tmp_path, capsys):
    argv = ["run", *tiny_overrides(tmp_path)]
    assert main(argv) == 0
    out = capsys.readouterr().out
    run = run_folder_of(tmp_path / "runs")
    # a short summary, not the board; nothing written outside paths.runs
    assert f"run folder: {run}" in out and "| early_fusion |" not in out
    assert "early_fusion seed 0" in out and "qpebench leaderboard publish" in out
    assert not (tmp_path / "board").exists()
    assert json.loads((run / "run.json").read_text())["complete"] is True
    default_models = set(run_config(compose_config()).models)
    jobs = {p.name for p in run.iterdir() if p.is_dir()}
    assert jobs == {f"{m}.seed0" for m in default_models}
    records = {j: load_record(run / j / "record.json") for j in sorted(jobs)}
    # every trained model's file rebuilds it from the registry with the recorded card and config
    for job, record in records.items():
        assert "paired" not in record and record["states"]["file"] == "states.npz"
        assert not (run / job / "checkpoint").exists()  # removed once the record is written
        if record["model"]["trainable"]:
            model = load_model(run / job / "model.pt")
            assert model.card.to_json() == record["model"]
            assert model.config == record["model_config"]
    for job in ("static_cnn.seed0", "early_fusion.seed0"):  # the trainer's log: kept epoch, why
        training = records[job]["training"]
        assert training["selected_epoch"] == 0 and "id_val" in training["selection"]
    rec = records["early_fusion.seed0"]
    assert set(rec["metrics"]) == {
        "id_test",
        "ood_test/conus",
        "ood_test/tropics",
        "ood_test/india",
    }
    assert rec["dataset"]["version"] and rec["provenance"]["packages"]["torch"]
    assert rec["config"]["seeds"] == [0] and rec["seed"] == 0
    assert rec["provenance"]["precision"] == "fp32"
    # the same command again: every job finished before, nothing runs or changes
    stamps = {j: (run / j / "record.json").stat().st_mtime_ns for j in jobs}
    assert main(argv) == 0
    assert "finished before, not run again" in capsys.readouterr().out
    assert {j: (run / j / "record.json").stat().st_mtime_ns for j in jobs} == stamps
    # same seed and config elsewhere: same numbers and the same day states
    assert main(["run", *tiny_overrides(tmp_path, f"paths.runs={tmp_path / 'runs2'}")]) == 0
    run2 = run_folder_of(tmp_path / "runs2")
    assert run2.name == run.name
    for job, first_record in records.items():
        again = load_record(run2 / job / "record.json")
        for key in ("metrics", "intervals", "strata", "curves", "examples", "model", "states"):
            assert again[key] == first_record[key], (job, key)
    # render from the records and their states only; publish is the one way into the boards
    first = (run / "leaderboard.md").read_text()
    capsys.readouterr()
    assert main(["leaderboard", "render", str(run)]) == 0
    assert capsys.readouterr().out.strip() == first.strip()
    assert main(["leaderboard", "publish", str(run), "--out", str(tmp_path / "board")]) == 0
    assert (tmp_path / "board" / "synthetic_europe_to_all.md").read_text() == first
    named = ["leaderboard", "publish", str(run), "--out", str(tmp_path / "board")]
    assert main([*named, "--name", "europe_3_seeds"]) == 0
    assert (tmp_path / "board" / "europe_3_seeds.md").read_text() == first
    assert "--name" in one_error_line(capsys, [*named, "--name", "../escape"])
    assert not (tmp_path / "escape.md").exists()
    err = one_error_line(capsys, ["leaderboard", "render", str(run), "--name", "x"])
    assert "add --out" in err
    board = tmp_path / "rendered"
    assert main(["leaderboard", "render", str(run), "--out", str(board)]) == 0
    stem = board / "synthetic_europe_to_all"
    assert stem.with_suffix(".md").read_text() == first
    assert "<img" in stem.with_suffix(".html").read_text()
    assert "\\toprule" in stem.with_suffix(".tex").read_text()
    assert stem.with_suffix(".csv").read_text().startswith("split,")
    err = one_error_line(
        capsys, ["leaderboard", "render", str(run), "--out", str(board), "--format", "pdf"]
    )
    assert "unknown leaderboard format 'pdf'" in err


def test_models_list_prints_cards(capsys):
    assert main(["models", "list"]) == 0
    out = capsys.readouterr().out
    for name in ("zero_rain", "auto_estimator", "static_cnn", "early_fusion"):
        assert name in out
    assert main(["models", "list", "--json", "static*"]) == 0
    cards = json.loads(capsys.readouterr().out)
    assert [c["name"] for c in cards] == ["static_cnn"] and cards[0]["parameters"] > 0
    argv = ["models", "list", "--json", "-o", "param_budget=150000", "-o", "step=3", "-o"]
    assert main([*argv, "frames=2", "conv4d*"]) == 0
    cards = json.loads(capsys.readouterr().out)
    assert [c["name"] for c in cards] == ["conv4d", "conv4d_factorized"]
    for card in cards:
        assert card["frames"] == 2 and card["step"] == 3
        assert abs(card["parameters"] - 150_000) < 0.08 * 150_000


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("models=[static_cn]", "unknown model 'static_cn'; did you mean 'static_cnn'?"),
        ("frames=0", "frames must be at least 1, got 0"),
        ("frames=9", "frames=9 with step=1 span 9 stored frames; the data holds 4"),
        ("step=2", "frames=4 with step=2 span 7 stored frames; the data holds 4"),
        ("step=0", "step must be at least 1, got 0"),
        ("param_budget=abc", "param_budget must be an integer, got 'abc'"),
        ("train.epochs=-1", "train.epochs must be at least 1, got -1"),
        ("split=europe_to_all", "unknown split config 'europe_to_all'"),
        ("bands=[IR10.8,IR3.9]", r"bands \['IR3.9'\] are not in the data"),
        (
            "+data.regions.europa={n_samples:1,years:[2021,2021]}",
            "unknown synthetic region 'europa'; did you mean 'europe'",
        ),
        ("data.regions.europe.n_samples=0", "data.regions.europe.n_samples must be positive"),
        (
            "+model_params.static_cnn.depth=3",
            r"model static_cnn: \['depth'\] not accepted; static_cnn takes \['width'",
        ),
        ("model_params={static_cnn:{depth:3}}", "To append to your config use"),
        ("train.device=gpu", "train.device: 'gpu' is not a device"),
        ("train.weight_decay=-1", "train.weight_decay must be >= 0"),
        ("train.lr=abc", "train.lr must be a number, got 'abc'"),
        ("+train.momentum=0.9", r"train: unknown keys \['momentum'\]"),
        ("data.patch_size=abc", "data.patch_size must be int, got 'abc'"),
        ("data.seed=abc", "data.seed must be int"),
        ("+data.foo=1", "data.foo: synthetic takes no 'foo'"),
        ("progress=maybe", "progress must be true or false"),
        ("seeds=[]", "seeds must be a non-empty list of distinct integers"),
        ("seeds=[0,0]", "seeds must be a non-empty list of distinct integers"),
        ("+evaluation.bootstraps=10", r"evaluation: unknown keys \['bootstraps'\]"),
        ("evaluation.ci_level=2", r"evaluation.ci_level must be in \(0, 1\)"),
        ("evaluation.strata=[moon]", "'moon' is neither a stratifier"),
    ],
)
def test_bad_config_values_give_one_clear_line(tmp_path, capsys, override, message):
    err = one_error_line(capsys, ["run", *tiny_overrides(tmp_path, override)])
    assert pytest.importorskip("re").search(message, err), err


def test_corrupt_store_gives_one_clear_line(tmp_path, capsys):
    assert main(["prepare", *tiny_overrides(tmp_path)]) == 0
    store_dir = next((tmp_path / "cache" / "stores").iterdir())
    shard = store_dir / "shard-00001.h5"
    shard.write_bytes(shard.read_bytes()[:1000])
    err = one_error_line(capsys, ["run", *tiny_overrides(tmp_path)])
    assert "shard-00001.h5: shard is truncated or altered" in err
    err = one_error_line(capsys, ["store", "verify", str(store_dir)])
    assert "truncated" in err


def test_models_accept_shell_patterns():
    cfg = run_config(compose_config(["models=[static_cnn,'conv4d*',early_fusion,'static*']"]))
    assert cfg.models == ("static_cnn", "conv4d", "conv4d_factorized", "early_fusion")
    assert len(run_config(compose_config(["models=['*']"])).models) == len(MODELS)
    with pytest.raises(UnknownNameError, match="unknown model 'lstm\\*'"):
        run_config(compose_config(["models=['lstm*']"]))


def test_config_api_errors():
    with pytest.raises(UnknownNameError):
        run_config(compose_config(["models=[nope]"]))
    with pytest.raises(ConfigError, match="bad override"):
        compose_config(["frames"])


def test_bad_record_is_refused(tmp_path):
    path = tmp_path / "r.json"
    path.write_text(json.dumps({"schema": "qpebench-result", "schema_version": 1}))
    with pytest.raises(RecordError, match="missing key 'run_id'"):
        load_record(path)


def test_evaluate_predictions_text_json_and_refusal(tmp_path, capsys, tiny_store):
    import numpy as np
    import xarray as xr

    from qpebench.predictions import export_truth

    idx = np.flatnonzero(tiny_store.metadata["region"].to_numpy() == "conus")
    truth = tmp_path / "truth.nc"
    export_truth(tiny_store, idx, truth)
    with xr.open_dataset(truth, engine="h5netcdf") as ds:
        pred = ds.load()
    pred["rain_rate"] = pred["rain_rate"].fillna(0.0)
    pred.to_netcdf(tmp_path / "pred.nc", engine="h5netcdf")
    argv = ["evaluate-predictions", "--pred", str(tmp_path / "pred.nc"), "--truth", str(truth)]
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "csi@1" in text and str(tmp_path / "pred.nc") in text
    assert main([*argv, "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["metrics"]["csi@1"] == 1.0 and result["metrics"]["rmse"] == 0.0
    assert result["n_times"] == idx.size
    pred["rain_rate"] = pred["rain_rate"] * 1e-3
    pred["rain_rate"].attrs["units"] = "m h-1"
    pred.to_netcdf(tmp_path / "pred_m.nc", engine="h5netcdf")
    bad = ["evaluate-predictions", "--pred", str(tmp_path / "pred_m.nc"), "--truth", str(truth)]
    err = one_error_line(capsys, bad)
    assert "pred_m.nc" in err and "m h-1" in err


def test_splits_list_and_show(tmp_path, capsys):
    assert main(["splits", "list"]) == 0
    out = capsys.readouterr().out
    for name in ("synthetic_europe_to_all", "synthetic_conus_to_all", "europe_to_conus"):
        assert f"\n{name}: " in f"\n{out}"
    argv = ["splits", "show", *tiny_overrides(tmp_path, "split=synthetic_conus_to_all")]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "split synthetic_conus_to_all on" in out and "ood_test/europe" in out
    assert "train = conus" in out and "ood_test/europe = europe" in out
    assert "rain_fraction" in out and "dropped_by_buffer" in out


def test_leaderboard_validate_reports_each_bad_record(tmp_path, capsys):
    from tests.benchmark.test_records import v2_record

    from qpebench.records import write_record

    good = write_record(tmp_path / "good.json", v2_record())
    broken = v2_record()
    del broken["paired"]
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(broken))
    assert main(["leaderboard", "validate", str(good)]) == 0
    assert "1 of 1 records valid" in capsys.readouterr().out
    assert main(["leaderboard", "validate", str(good), str(bad)]) == 1
    out = capsys.readouterr().out
    assert "invalid: " in out and "bad.json: missing key 'paired'" in out
    assert "1 of 2 records valid" in out
