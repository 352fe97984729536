"""The trainer: streaming statistics, exact batches, checkpoints and resume, DDP, protocol."""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from qpebench.bands import DEFAULT_BANDS
from qpebench.errors import ConfigError
from qpebench.models import TrainData
from qpebench.torchdata import BandMoments
from qpebench.trainer import CHECKPOINT, Trainer, TrainSettings, train_settings

SCRIPT = Path(__file__).with_name("fit_script.py")
_spec = importlib.util.spec_from_file_location("fit_script", SCRIPT)
fit_script = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(fit_script)
BASE = TrainSettings(epochs=2, batch_size=8, device="cpu", workers=0)


def fit(
    settings: TrainSettings,
    data: TrainData,
    checkpoint_dir: Path | None = None,
    name: str = "early_fusion",
):
    torch.manual_seed(0)
    m = fit_script.build(name, settings)
    log = Trainer(settings, checkpoint_dir=checkpoint_dir, progress=False).fit(m, data, seed=0)
    return m, log


def assert_same_weights(a, b, atol: float = 0.0) -> None:
    sa, sb = a.state(), b.state()
    assert sa.keys() == sb.keys()
    for key in sa:
        if atol:
            torch.testing.assert_close(sa[key], sb[key], atol=atol, rtol=0, msg=key)
        else:
            assert torch.equal(sa[key], sb[key]), key


def test_streaming_moments_equal_the_in_memory_computation(tiny_store, tiny_split):
    ir = tiny_store.read(tiny_split.train, frames=2, bands=DEFAULT_BANDS).ir
    moments = BandMoments(len(DEFAULT_BANDS))
    for start in range(0, len(ir), 5):  # uneven blocks
        moments.add(torch.from_numpy(ir[start : start + 5]))
    mean, std = moments.mean_std()
    x = ir.astype(np.float64)
    np.testing.assert_allclose(mean, x.mean(axis=(0, 1, 3, 4)), rtol=1e-6)
    np.testing.assert_allclose(std, x.std(axis=(0, 1, 3, 4), ddof=1), rtol=1e-6)


def test_streamed_fit_equals_the_preloaded_fit(tiny_split):
    preloaded, log_a = fit(replace(BASE, preload=True), tiny_split)
    streamed, log_b = fit(replace(BASE, preload=False, workers=1), tiny_split)
    assert log_a["preload"]["used"] and not log_b["preload"]["used"]
    assert_same_weights(preloaded, streamed)
    assert log_a["history"] == log_b["history"]


def test_preload_auto_follows_the_memory_budget(tiny_split):
    _, small = fit(replace(BASE, epochs=1, memory_budget="1K"), tiny_split)
    _, large = fit(replace(BASE, epochs=1, memory_budget="1G"), tiny_split)
    assert not small["preload"]["used"] and large["preload"]["used"]
    assert small["preload"]["bytes"] == large["preload"]["bytes"] > 1024


def test_accumulated_micro_batches_equal_one_big_batch(tiny_split):
    """Exact for a network without batch normalisation (which normalises each micro-batch)."""
    one, log_one = fit(BASE, tiny_split, name="plain")
    four, log_four = fit(replace(BASE, accumulate=4), tiny_split, name="plain")
    assert_same_weights(one, four, atol=1e-5)
    assert not np.allclose(
        one.state()["net.body.0.weight"],
        fit_script.build("plain", BASE).state()["net.body.0.weight"],
    )
    for a, b in zip(log_one["history"], log_four["history"], strict=True):
        assert a["val_loss"] == pytest.approx(b["val_loss"], rel=1e-5)


def test_the_kept_epoch_and_the_reason_are_recorded(tiny_split):
    _, best = fit(replace(BASE, epochs=3), tiny_split)
    losses = [h["val_loss"] for h in best["history"]]
    assert best["epochs_run"] == 3 and not best["stopped_early"]
    assert best["selected_epoch"] == int(np.argmin(losses))
    assert "lowest id_val loss" in best["selection"]
    _, final = fit(replace(BASE, epochs=3, select="final"), tiny_split)
    assert final["selected_epoch"] == 2 and "final" in final["selection"]


def test_early_stopping_only_with_a_constant_schedule():
    with pytest.raises(ConfigError, match="only schedule=constant"):
        TrainSettings(patience=2)
    assert TrainSettings(patience=2, schedule="constant").patience == 2


def test_model_files_from_before_the_trainer_load_their_settings():
    old = {"epochs": 12, "batch_size": 16, "lr": 0.002, "weight_decay": 0.0001, "patience": 4,
           "device": "auto", "deterministic": True}  # fmt: skip
    assert train_settings(old) == TrainSettings(epochs=12, batch_size=16)
    with pytest.raises(ConfigError, match="unknown settings"):
        train_settings({**old, "schedule": "onecycle", "bogus": 1})


def test_batch_size_must_split_into_micro_batches(tiny_split):
    with pytest.raises(ConfigError, match=r"batch_size=8 does not split .* train.accumulate=3"):
        fit(replace(BASE, accumulate=3), tiny_split)
    with pytest.raises(ConfigError, match="fewer than train.batch_size=64"):
        fit(replace(BASE, batch_size=64), tiny_split)


def test_bf16_trains_on_cpu_and_fp16_needs_cuda(tiny_split):
    m, log = fit(replace(BASE, epochs=1, precision="bf16"), tiny_split)
    assert log["precision"] == "bf16" and np.isfinite(log["history"][0]["val_loss"])
    assert all(torch.isfinite(v).all() for v in m.state().values())
    with pytest.raises(ConfigError, match="fp16 needs a CUDA device"):
        Trainer(replace(BASE, precision="fp16"))
    assert Trainer(BASE).precision == "fp32"  # auto on CPU


def test_a_checkpoint_of_another_configuration_is_refused(tiny_split, tmp_path):
    fit(replace(BASE, epochs=1), tiny_split, checkpoint_dir=tmp_path)
    assert (tmp_path / CHECKPOINT).exists()
    with pytest.raises(ConfigError, match="checkpoint of another configuration") as info:
        fit(replace(BASE, epochs=1, lr=1e-3), tiny_split, checkpoint_dir=tmp_path)
    assert "\n" not in str(info.value) and CHECKPOINT in str(info.value)
    # settings that change speed, not results, do not make another configuration
    fit(replace(BASE, epochs=1, workers=1, preload=False), tiny_split, checkpoint_dir=tmp_path)


def test_a_damaged_checkpoint_is_one_line(tiny_split, tmp_path):
    fit(replace(BASE, epochs=1), tiny_split, checkpoint_dir=tmp_path)
    path = tmp_path / CHECKPOINT
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(ConfigError, match="cannot read the checkpoint") as info:
        fit(replace(BASE, epochs=1), tiny_split, checkpoint_dir=tmp_path)
    assert "\n" not in str(info.value)


def test_a_finished_fit_run_again_returns_its_result(tiny_split, tmp_path):
    first, log = fit(BASE, tiny_split, checkpoint_dir=tmp_path)
    again, log_again = fit(BASE, tiny_split, checkpoint_dir=tmp_path)
    assert_same_weights(first, again)
    assert log_again["history"] == log["history"]
    assert log_again["resumed_from"] == {"epoch": 2, "step": 0}


# ---- separate processes: kill -9 and resume, torchrun DDP ----------------------------------


def write_spec(tmp: Path, name: str, tiny_split, model: str = "early_fusion", **extra) -> Path:
    settings = {
        "epochs": 3,
        "batch_size": 8,
        "device": "cpu",
        "workers": 0,
        **extra.pop("settings", {}),
    }
    spec = {
        "store": str(tiny_split.store.root),
        "train": tiny_split.train.tolist(),
        "val": tiny_split.val.tolist(),
        "settings": settings,
        "seed": 7,
        "out": str(tmp / name / "out"),
        "checkpoint_dir": str(tmp / name / "ckpt"),
        "step_sleep": 0.0,
        "model": model,
        **extra,
    }
    path = tmp / f"{name}.json"
    path.write_text(json.dumps(spec))
    return path


def run_script(*args: str, timeout: float = 300) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(args, capture_output=True, text=True, timeout=timeout, env=env)
    assert done.returncode == 0, done.stderr[-3000:]


def load_result(tmp: Path, name: str) -> tuple[dict[str, torch.Tensor], dict]:
    out = tmp / name / "out"
    state = torch.load(out / "state.pt", weights_only=True)
    return state, json.loads((out / "log.json").read_text())


def comparable(log: dict) -> dict:
    return {k: v for k, v in log.items() if k not in ("train_seconds", "resumed_from")}


def test_kill_9_midway_then_resume_gives_the_uninterrupted_fit(tiny_split, tmp_path):
    steps = {"checkpoint_steps": 1}
    whole = write_spec(tmp_path, "whole", tiny_split, settings=steps)
    run_script(sys.executable, "-P", str(SCRIPT), str(whole))
    killed = write_spec(tmp_path, "killed", tiny_split, settings=steps, step_sleep=0.15)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-P", str(SCRIPT), str(killed)], env=env)
    checkpoint = tmp_path / "killed" / "ckpt" / CHECKPOINT
    deadline = time.monotonic() + 120
    while not checkpoint.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(1.0)  # a few steps into the fit: past the first epoch's checkpoints
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    saved = torch.load(checkpoint, weights_only=True)["progress"]
    assert not saved["finished"] and (saved["epoch"], saved["step"]) != (0, 0)
    assert not (tmp_path / "killed" / "out").exists()
    run_script(sys.executable, "-P", str(SCRIPT), str(killed))  # the same command again
    state_a, log_a = load_result(tmp_path, "whole")
    state_b, log_b = load_result(tmp_path, "killed")
    assert log_b["resumed_from"] == {"epoch": saved["epoch"], "step": saved["step"]}
    assert comparable(log_a) == comparable(log_b)
    for key in state_a:
        assert torch.equal(state_a[key], state_b[key]), key


def run_ddp_pair(tmp: Path, tiny_split, model: str, one_accumulate: int) -> tuple:
    settings = {"select": "final"}
    one = write_spec(
        tmp, f"{model}1", tiny_split, model, checkpoint_dir=None,
        settings={**settings, "accumulate": one_accumulate},
    )  # fmt: skip
    run_script(sys.executable, "-P", str(SCRIPT), str(one))
    two = write_spec(tmp, f"{model}2", tiny_split, model, checkpoint_dir=None, settings=settings)
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    run_script(*torchrun, "--nproc_per_node=2", str(SCRIPT), str(two))
    return load_result(tmp, f"{model}1"), load_result(tmp, f"{model}2")


def test_two_process_ddp_equals_one_process_with_the_same_global_batch(tiny_split, tmp_path):
    (state_a, log_a), (state_b, log_b) = run_ddp_pair(tmp_path, tiny_split, "plain", 1)
    assert log_a["processes"] == 1 and log_b["processes"] == 2
    for key in state_a:
        torch.testing.assert_close(state_a[key], state_b[key], atol=1e-5, rtol=0, msg=key)
    for a, b in zip(log_a["history"], log_b["history"], strict=True):
        assert a["val_loss"] == pytest.approx(b["val_loss"], rel=1e-5)
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-5)


def test_batch_norm_ddp_trains_like_one_process_with_the_same_micro_batches(tiny_split, tmp_path):
    """The weights follow the same path; batch norm's running statistics are rank 0's."""
    (state_a, log_a), (state_b, log_b) = run_ddp_pair(tmp_path, tiny_split, "early_fusion", 2)
    running = ("running_mean", "running_var", "num_batches_tracked")
    weights = [k for k in state_a if not k.endswith(running)]
    for key in weights:
        torch.testing.assert_close(state_a[key], state_b[key], atol=1e-5, rtol=0, msg=key)
    for a, b in zip(log_a["history"], log_b["history"], strict=True):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-5)
