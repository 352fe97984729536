"""Every registered model: fit, predict, backward, save/load, determinism, cards.

Parametrized over the registry, so a new model is tested by registering it.
"""

from __future__ import annotations

import inspect

import numpy as np
import pytest
import torch

from qpebench.bands import DEFAULT_BANDS
from qpebench.baselines.temporal import STEMS
from qpebench.baselines.unet import UNet2d
from qpebench.errors import ConfigError, NotFittedError, SampleValidationError
from qpebench.models import MODEL_FORMAT, RainModel, TrainData, build_model, load_model
from qpebench.registry import MODELS, load_builtins
from qpebench.trainer import TrainSettings
from qpebench.training import OutputSpec, TorchRainModel

load_builtins()
FRAMES = 4
SMALL = TrainSettings(epochs=1, batch_size=8, device="cpu")
NAMES = MODELS.names()
TORCH = [n for n in NAMES if "train" in inspect.signature(MODELS.get(n)).parameters]


def build(name: str, seed: int = 0, frames: int = FRAMES, **params) -> RainModel:
    torch.manual_seed(seed)
    if name in TORCH:
        params.setdefault("train", SMALL)
    return build_model(name, frames=frames, bands=DEFAULT_BANDS, **params)


def model_input(model: RainModel, n: int = 2, size: int = 32, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    shape = (n, model.card.frames, len(model.card.bands), size, size)
    return rng.uniform(190, 300, shape).astype(np.float32)


@pytest.fixture(scope="module")
def fitted(tiny_split):
    """Each registered model fitted once on the tiny store's training region (seed 3)."""
    cache: dict[str, RainModel] = {}

    def get(name: str) -> RainModel:
        if name not in cache:
            model = build(name)
            model.fit(tiny_split, seed=3, progress=False)
            cache[name] = model
        return cache[name]

    return get


@pytest.mark.parametrize("name", NAMES)
def test_fit_predict_shape_range_and_card(name, fitted, tiny_store):
    model = fitted(name)
    for size in (32, 30):
        out = model.predict(model_input(model, size=size))
        assert out.shape == (2, size, size) and out.dtype == np.float32
        assert np.isfinite(out).all() and (out >= 0).all()
    card = model.card.to_json()
    assert card["name"] == name and card["causal"] and card["outputs"][0] == "rate"
    assert 1 <= card["frames"] <= FRAMES and set(card["bands"]) <= set(DEFAULT_BANDS)
    assert card["step"] == 1 and card["parameters"] >= 0
    if name != "zero_rain":
        assert card["flops_per_sample"] > 0
    # the runner reads exactly the card's input from the store
    batch = tiny_store.read([0, 1], frames=model.card.frames, bands=model.card.bands)
    assert model.predict(batch.ir).shape == (2, 32, 32)


@pytest.mark.parametrize("name", [n for n in NAMES if build(n).card.trainable])
def test_fit_reads_only_training_and_validation_samples(tiny_split, name, tiny_store, spy_store):
    data = tiny_split
    spy = spy_store
    model = build(name, frames=3, step=1) if name in TORCH else build(name)
    model.fit(TrainData(spy, data.train, data.val), seed=0, progress=False)
    read = np.concatenate([idx for idx, _ in spy.reads])
    assert set(read) <= set(data.train) | set(data.val) and set(data.train) <= set(read)
    for _, kw in spy.reads:
        assert kw["frames"] == model.card.frames and kw["step"] == model.card.step
        assert list(kw["bands"]) == list(model.card.bands)
    if isinstance(model, TorchRainModel):  # normalisation from the training set alone
        c = model.card
        ir = tiny_store.read(data.train, frames=c.frames, step=c.step, bands=c.bands).ir
        np.testing.assert_allclose(model.mean, ir.mean(axis=(0, 1, 3, 4)), rtol=1e-5)


@pytest.mark.parametrize("name", NAMES)
def test_predict_checks_the_input(name, fitted):
    model = fitted(name)
    wrong = np.full((1, model.card.frames + 1, len(model.card.bands), 8, 8), 250, np.float32)
    with pytest.raises(SampleValidationError, match=f"{name} takes IR"):
        model.predict(wrong)
    if model.card.trainable:
        with pytest.raises(NotFittedError, match=f"{name} is not fitted"):
            build(name).predict(model_input(model))


@pytest.mark.parametrize("name", NAMES)
def test_fit_is_deterministic_under_a_seed(tiny_split, name, fitted, tiny_store):
    model = fitted(name)
    again = build(name)  # the runner seeds torch before building, then fit() seeds the rest
    again.fit(tiny_split, seed=3, progress=False)
    x = model_input(model)
    # torch: to float32 rounding (oneDNN's CPU kernels may differ in the last bits between
    # calls inside one process; fresh processes have given identical records)
    np.testing.assert_allclose(again.predict(x), model.predict(x), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", NAMES)
def test_save_load_round_trip(name, fitted, tmp_path):
    model = fitted(name)
    model.save(tmp_path / "m.pt")
    payload = torch.load(tmp_path / "m.pt", weights_only=True)
    assert payload["format"] == MODEL_FORMAT and payload["card"] == model.card.to_json()
    assert payload["config"]["frames"] == FRAMES
    loaded = load_model(tmp_path / "m.pt")
    assert type(loaded) is type(model) and loaded.card == model.card
    x = model_input(model, seed=5)
    np.testing.assert_array_equal(loaded.predict(x), model.predict(x))
    if name in TORCH:  # the weights came from the file, not from the seeded initialisation
        fresh = build(name, seed=1).state()
        assert any(not torch.equal(v, fresh[k]) for k, v in loaded.state().items())


@pytest.mark.parametrize("name", TORCH)
def test_torch_models_backward_and_seeded_init(name):
    model = build(name)
    assert isinstance(model, TorchRainModel)
    twin, other = build(name).net.state_dict(), build(name, seed=1).net.state_dict()
    for key, value in model.net.state_dict().items():
        assert torch.equal(value, twin[key]), key
    assert any(not torch.equal(v, other[k]) for k, v in twin.items() if v.is_floating_point())
    z = model.forward(torch.from_numpy(model_input(model)))["z"]
    assert z.shape == (2, 32, 32) and (z >= 0).all()
    z.sum().backward()
    for pname, p in model.net.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), pname
    assert model.card.parameters == sum(p.numel() for p in model.net.parameters())
    assert model.card.flops_per_sample > 1e6


@pytest.mark.parametrize("name", sorted(STEMS))
def test_probabilistic_outputs(tiny_split, name, tiny_store):
    model = build(name, probability=True, rain_threshold=0.5, quantiles=[0.1, 0.5, 0.9])
    assert model.card.outputs == ("rate", "probability", "quantiles")
    assert model.card.quantile_levels == (0.1, 0.5, 0.9) and model.card.rain_threshold == 0.5
    log = model.fit(tiny_split, seed=0, progress=False)
    assert np.isfinite(log["best_val_loss"])
    out = model.predict_outputs(model_input(model))
    assert out["probability"].shape == (2, 32, 32) and out["quantiles"].shape == (2, 3, 32, 32)
    assert ((out["probability"] >= 0) & (out["probability"] <= 1)).all()
    assert (np.diff(out["quantiles"], axis=1) >= 0).all() and (out["quantiles"] >= 0).all()
    np.testing.assert_array_equal(out["rate"], model.predict(model_input(model)))


def test_output_losses_are_the_documented_ones():
    spec = OutputSpec(probability=True, rain_threshold=1.0, quantiles=(0.25, 0.75))
    raw = torch.randn(2, spec.channels, 4, 4)
    rain = torch.rand(2, 4, 4) * 4
    valid = torch.ones(2, 4, 4, dtype=torch.bool)
    valid[0, 0, 0] = False
    out = spec.decode(raw)
    m = valid.float()
    y = torch.log1p(rain)
    w = (1 + rain).clamp_max(20) * m
    rate = ((out["z"] - y) ** 2 * w).sum() / w.sum()
    p = torch.sigmoid(raw[:, 1])
    t = (rain >= 1.0).float()
    bce = (-(t * torch.log(p) + (1 - t) * torch.log(1 - p)) * m).sum() / m.sum()
    q1 = torch.nn.functional.softplus(raw[:, 2])
    q2 = q1 + torch.nn.functional.softplus(raw[:, 3])
    pin = 0.0
    for level, q in ((0.25, q1), (0.75, q2)):
        e = y - q
        pin = pin + torch.where(e >= 0, level * e, (level - 1) * e)
    pin = (pin / 2 * m).sum() / m.sum()
    torch.testing.assert_close(spec.loss(out, rain, valid), rate + bce + pin)
    for bad in ([0.5, 0.5], [0.0, 0.5], [0.9, 0.1]):
        with pytest.raises(ConfigError, match="quantiles must increase strictly"):
            OutputSpec(quantiles=tuple(bad))


@pytest.mark.parametrize("name", sorted(STEMS))
def test_param_budget_picks_the_closest_width(name):
    model = build(name, param_budget=150_000)
    width = model.net.decoder.enc1[0].out_channels
    stem = sum(p.numel() for p in model.net.stem.parameters())
    features = model.net.decoder.enc1[0].in_channels

    def total(w: int) -> int:
        return stem + sum(p.numel() for p in UNet2d(features, w).parameters())

    assert model.card.parameters == total(width)
    assert abs(total(width) - 150_000) <= min(abs(total(width + d) - 150_000) for d in (-1, 1))
    assert abs(model.card.parameters - 150_000) < 0.08 * 150_000
    with pytest.raises(ConfigError, match="param_budget=10 is below the smallest model"):
        build(name, param_budget=10)


def test_step_selects_frames_further_apart(tiny_split, tiny_store, spy_store):
    model = build("early_fusion", frames=2, step=3)
    assert model.card.step == 3 and model.card.span == 4 and model.card.frames == 2
    spy = spy_store
    data = tiny_split
    model.fit(TrainData(spy, data.train, data.val), seed=0, progress=False)
    assert {kw["step"] for _, kw in spy.reads} == {3}
    # the normalisation saw frames 0 and 3 of each training sample
    full = tiny_store.read(data.train).ir[:, [0, 3]]
    np.testing.assert_allclose(model.mean, full.mean(axis=(0, 1, 3, 4)), rtol=1e-5)
    with pytest.raises(ConfigError, match="model early_fusion: step must be a positive integer"):
        build("early_fusion", step=0)


def build_two(name: str, **params) -> RainModel:
    return build_model(name, frames=2, bands=DEFAULT_BANDS, train=SMALL, **params)


def test_load_refuses_other_files_and_mismatched_weights(tmp_path):
    bad = tmp_path / "not-a-model.pt"
    bad.write_bytes(b"hello")
    with pytest.raises(ConfigError, match="not-a-model.pt: not a qpebench model file"):
        load_model(bad)
    torch.save({"weights": torch.zeros(2)}, tmp_path / "plain.pt")
    with pytest.raises(ConfigError, match="no 'qpebench-model' format tag"):
        load_model(tmp_path / "plain.pt")
    model = build_two("early_fusion")
    model.save(tmp_path / "ef.pt")
    payload = torch.load(tmp_path / "ef.pt", weights_only=True)
    payload["format_version"] = 99
    torch.save(payload, tmp_path / "v99.pt")
    with pytest.raises(ConfigError, match="model file version 99"):
        load_model(tmp_path / "v99.pt")
    with pytest.raises(ConfigError, match="early_fusion: saved weights do not fit"):
        build_model("early_fusion", frames=3, bands=DEFAULT_BANDS, train=SMALL).load_state(
            payload["state"]
        )
    # through load_model the same refusal starts with the file and is one line (torch's is not)
    payload["format_version"] = 1
    payload["config"] = {**payload["config"], "frames": 3}
    torch.save(payload, tmp_path / "frames3.pt")
    with pytest.raises(ConfigError) as info:
        load_model(tmp_path / "frames3.pt")
    message = str(info.value)
    assert message.startswith(f"{tmp_path / 'frames3.pt'}: early_fusion: saved weights do not fit")
    assert "\n" not in message and "\t" not in message
    with pytest.raises(ConfigError, match=r"model early_fusion: \['depth'\] not accepted"):
        build_two("early_fusion", depth=3)
