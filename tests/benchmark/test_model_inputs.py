"""Per-model input (``model_params.<name>.frames/step/bands``) over the global one."""

from __future__ import annotations

import json
import re
from dataclasses import replace

import pytest
from tests.benchmark.test_cli import one_error_line, tiny_overrides

from qpebench.cli import main
from qpebench.config import compose_config, run_config
from qpebench.errors import ConfigError
from qpebench.records import load_record
from qpebench.runner import build_configured


def test_model_params_override_the_input_of_that_model_only(tmp_path):
    cfg = run_config(
        compose_config(
            tiny_overrides(
                tmp_path,
                "models=[early_fusion,static_cnn,gpi]",
                "+model_params.early_fusion.frames=2",
                "+model_params.early_fusion.step=3",
                "+model_params.static_cnn.bands=[IR12.0,IR10.8]",
                "+model_params.static_cnn.width=8",
            )
        )
    )
    fused = build_configured("early_fusion", cfg)
    assert (fused.card.frames, fused.card.step, fused.card.bands) == (2, 3, cfg.bands)
    assert (fused.config["frames"], fused.config["step"]) == (2, 3)
    static = build_configured("static_cnn", cfg)
    assert static.card.bands == ("IR12.0", "IR10.8") and static.config["width"] == 8
    assert static.card.step == cfg.step == 1
    gpi = build_configured("gpi", cfg)
    assert (gpi.config["frames"], gpi.config["step"]) == (cfg.frames, cfg.step)
    assert gpi.config["bands"] == list(cfg.bands)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("frames=0", "model_params.early_fusion.frames must be at least 1, got 0"),
        ("frames=two", "model_params.early_fusion.frames must be an integer, got 'two'"),
        ("step=0", "model_params.early_fusion.step must be at least 1, got 0"),
        (
            "frames=5",
            "model_params.early_fusion.frames: frames=5 with step=1 span 5 stored frames; "
            "the data holds 4",
        ),
        (
            "step=2",
            "model_params.early_fusion.step: frames=4 with step=2 span 7 stored frames; "
            "the data holds 4",
        ),
        ("bands=[IR10.8,IR3.9]", "model_params.early_fusion.bands ['IR3.9'] are not in the data"),
        ("bands=[IR99]", "model_params.early_fusion.bands: unknown band 'IR99'"),
        ("bands=[]", "model_params.early_fusion.bands: the band selection is empty"),
        ("bands=[IR10.8,IR10.8]", "model_params.early_fusion.bands: ['IR10.8', 'IR10.8'] names"),
        ("bands=3", "model_params.early_fusion.bands must be a list of band names, got 3"),
        ("window_min=-5", "model_params.early_fusion.window_min must be a number of minutes >= 0"),
        ("window_min=ten", "model_params.early_fusion.window_min must be a number of minutes"),
    ],
)
def test_a_bad_per_model_input_is_one_line_naming_the_key(tmp_path, capsys, override, message):
    argv = ["run", *tiny_overrides(tmp_path, f"+model_params.early_fusion.{override}")]
    assert message in one_error_line(capsys, argv)
    assert not (tmp_path / "cache").exists()  # refused before the store is built


def test_model_params_of_a_model_must_be_a_mapping(tmp_path, capsys):
    err = one_error_line(capsys, ["run", *tiny_overrides(tmp_path, "+model_params.gpi=3")])
    assert re.search("model_params.gpi must be a mapping of arguments, got 3$", err), err


def test_models_list_shows_the_per_model_input(capsys):
    argv = ["models", "list", "--json", "-o", "+model_params.early_fusion.frames=2"]
    assert main([*argv, "-o", "+model_params.early_fusion.bands=[IR10.8]", "early_fusion"]) == 0
    (card,) = json.loads(capsys.readouterr().out)
    assert (card["frames"], card["step"], card["bands"]) == (2, 1, ["IR10.8"])


def test_a_window_in_minutes_becomes_frames_on_the_training_interval(tmp_path):
    cfg = run_config(
        compose_config(
            tiny_overrides(
                tmp_path,
                "models=[early_fusion,conv3d_time,static_cnn]",
                "window_min=30",
                "+model_params.conv3d_time.frames=2",  # the model's own frames win
                "+model_params.static_cnn.window_min=0",
            )
        )
    )
    assert build_configured("early_fusion", cfg, 900).card.frames == 3  # SEVIRI: 15 min apart
    assert build_configured("early_fusion", cfg, 600).card.frames == 4  # ABI: 10 min apart
    assert build_configured("conv3d_time", cfg, 600).card.frames == 2
    assert build_configured("static_cnn", cfg, 600).card.frames == 1
    with pytest.raises(ConfigError, match="window_min=30 needs the one frame interval"):
        build_configured("early_fusion", cfg)  # none known, or a training set mixing them
    with pytest.raises(ConfigError, match="spanning 7 stored frames; the data holds 4"):
        build_configured("early_fusion", replace(cfg, window_min=90.0), 900)
    plain = replace(cfg, window_min=None, model_params={})
    assert build_configured("early_fusion", plain, None).card.frames == plain.frames  # no window
    with pytest.raises(ConfigError, match="window_min=30 is not a whole number .* 20 min"):
        build_configured("early_fusion", replace(cfg, step=2), 600)


def test_frames_and_a_window_for_one_model_are_refused(tmp_path, capsys):
    extra = ["+model_params.early_fusion.frames=2", "+model_params.early_fusion.window_min=30"]
    err = one_error_line(capsys, ["run", *tiny_overrides(tmp_path, *extra)])
    assert err.endswith("model_params.early_fusion: give frames or window_min, not both")


@pytest.mark.slow
def test_a_run_trains_and_records_a_model_on_its_own_input(tmp_path, capsys):
    extra = ["models=[early_fusion]", "+model_params.early_fusion.frames=2"]
    argv = ["run", *tiny_overrides(tmp_path, *extra, "+model_params.early_fusion.step=2")]
    assert main(argv) == 0
    capsys.readouterr()
    (record_file,) = (tmp_path / "runs").glob("*/early_fusion.seed0.*/record.json")
    record = load_record(record_file)
    assert (record["model"]["frames"], record["model"]["step"]) == (2, 2)
    assert (record["model_config"]["frames"], record["model_config"]["step"]) == (2, 2)
    assert record["config"]["model_params"] == {"early_fusion": {"frames": 2, "step": 2}}
    # 2 frames 2 store steps apart: 30 min of SEVIRI (Europe, India), 20 min of ABI and AHI
    windows = {"train": 30.0, "id_test": 30.0, "ood_test/india": 30.0, "ood_test/conus": 20.0}
    assert windows.items() <= record["input_window_min"].items()
    assert record["input_window_min"]["ood_test/tropics"] == 20.0
