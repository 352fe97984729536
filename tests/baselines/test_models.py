"""Every registered model: forward, backward, save/load, determinism (parametrized over the
registry, so a new model is tested by registering it)."""

from __future__ import annotations

import inspect

import numpy as np
import pytest
import torch

from qpebench.bands import DEFAULT_BANDS
from qpebench.baselines.ir_formulas import auto_estimator_rate
from qpebench.errors import ConfigError
from qpebench.models import TrainData
from qpebench.registry import MODELS, load_builtins
from qpebench.training import TorchRainModel, TrainSettings

load_builtins()
FRAMES = 4
SMALL = TrainSettings(epochs=1, batch_size=8, patience=1, device="cpu")


def build(name: str, seed: int = 0):
    torch.manual_seed(seed)
    factory = MODELS.get(name)
    kw = {"train": SMALL} if "train" in inspect.signature(factory).parameters else {}
    return factory(frames=FRAMES, bands=DEFAULT_BANDS, **kw)


def model_input(model, n=2, size=32, seed=0):
    rng = np.random.default_rng(seed)
    return rng.uniform(200, 300, (n, model.card.frames, len(model.card.bands), size, size)).astype(
        np.float32
    )


@pytest.mark.parametrize("name", MODELS.names())
@pytest.mark.parametrize("size", [32, 30])
def test_predict_shape_and_range(name, size):
    model = build(name)
    out = model.predict(model_input(model, size=size))
    assert out.shape == (2, size, size) and out.dtype == np.float32
    assert np.isfinite(out).all() and (out >= 0).all()
    card = model.card.to_json()
    assert card["name"] == name and card["frames"] >= 1 and card["causal"]


@pytest.mark.parametrize(
    "name", [n for n in MODELS.names() if isinstance(build(n), TorchRainModel)]
)
def test_torch_models_backward_save_load_and_seed(name, tmp_path):
    model = build(name)
    x = torch.from_numpy(model_input(model))
    z = model.net(model._normalise(x))
    assert z.shape == (2, 32, 32)
    z.sum().backward()
    grads = [p.grad for p in model.net.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert model.card.parameters == sum(p.numel() for p in model.net.parameters())
    assert model.card.flops_per_sample > 1e6

    model.mean = torch.arange(len(model.card.bands), dtype=torch.float32) + 250
    model.save(tmp_path / "m.pt")
    other = build(name, seed=1)
    xin = model_input(model)
    assert not np.allclose(other.predict(xin), model.predict(xin))
    other.load(tmp_path / "m.pt")
    np.testing.assert_array_equal(other.predict(xin), model.predict(xin))
    twin = build(name)
    for a, b in zip(
        twin.net.state_dict().values(), build(name).net.state_dict().values(), strict=True
    ):
        assert torch.equal(a, b)


def test_load_refuses_another_models_file(tmp_path):
    build("static_cnn").save(tmp_path / "s.pt")
    with pytest.raises(ConfigError, match="holds model 'static_cnn', not 'early_fusion'"):
        build("early_fusion").load(tmp_path / "s.pt")


def test_fit_is_deterministic_and_learns(tiny_store):
    md = tiny_store.metadata
    eu = md["region"] == "europe"
    data = TrainData(
        tiny_store,
        np.flatnonzero(eu & (md["year"] <= 2022)),
        np.flatnonzero(eu & (md["year"] == 2023)),
    )
    logs, preds = [], []
    batch = tiny_store.read(np.flatnonzero(eu)[:4], frames=FRAMES)
    for _ in range(2):
        model = build("early_fusion")
        logs.append(model.fit(data, seed=3, progress=False))
        preds.append(model.predict(batch.ir))
    # Same seed, same numbers: to float32 rounding (oneDNN's CPU kernels may differ in the last
    # bits between calls inside one process; fresh processes have given identical records).
    for a, b in zip(logs[0]["history"], logs[1]["history"], strict=True):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-5)
        assert a["val_loss"] == pytest.approx(b["val_loss"], rel=1e-5)
    np.testing.assert_allclose(preds[0], preds[1], rtol=1e-4, atol=1e-5)
    assert logs[0]["n_train"] == data.train.size
    # it learns: three epochs lower the training loss
    model = MODELS.get("early_fusion")(
        frames=FRAMES,
        bands=DEFAULT_BANDS,
        train=TrainSettings(epochs=3, batch_size=8, patience=3, device="cpu"),
    )
    history = model.fit(data, seed=3, progress=False)["history"]
    assert history[-1]["train_loss"] < 0.9 * history[0]["train_loss"]


def test_auto_estimator_formula():
    # R = 1.1183e11 exp(-3.6382e-2 T^1.2), checked at 200, 220 and 250 K
    t = np.array([200.0, 220.0, 250.0], np.float32)
    expected = 1.1183e11 * np.exp(-3.6382e-2 * t.astype(np.float64) ** 1.2)
    np.testing.assert_allclose(auto_estimator_rate(t), expected, rtol=1e-5)
    assert 80 < expected[0] < 90 and expected[2] < 0.2


def test_auto_estimator_needs_ir108():
    with pytest.raises(ConfigError, match="needs band IR10.8"):
        MODELS.get("auto_estimator")(frames=1, bands=["WV6.2"])
