from __future__ import annotations

import pytest

from qpebench import registry as registry_module
from qpebench.errors import DuplicateNameError, UnknownNameError
from qpebench.registry import MODELS, Registry, load_builtins


def test_register_get_and_pattern():
    reg: Registry[int] = Registry("thing", "qpebench.things")
    reg.register("conv4d", 1)

    @reg.register("conv4d_factorized")
    def _factory() -> int:
        return 2

    assert reg.get("conv4d") == 1
    assert reg.names("conv4d*") == ["conv4d", "conv4d_factorized"]
    assert "conv4d" in reg and len(reg) == 2


def test_duplicate_name_raises():
    reg: Registry[int] = Registry("thing", "qpebench.things")
    reg.register("a", 1)
    with pytest.raises(DuplicateNameError, match="thing 'a' is already registered"):
        reg.register("a", 2)


def test_unknown_name_lists_choices_and_suggests():
    reg: Registry[int] = Registry("model", "qpebench.things")
    reg.register("static_cnn", 1)
    reg.register("early_fusion", 2)
    with pytest.raises(UnknownNameError) as info:
        reg.get("static_cn")
    assert str(info.value) == (
        "unknown model 'static_cn'; did you mean 'static_cnn'? choices: early_fusion, static_cnn"
    )
    assert isinstance(info.value, KeyError)


class _EntryPoint:
    def __init__(self, name: str, target):
        self.name, self.value, self._target = name, f"plugin:{name}", target

    def load(self):
        return self._target()


def test_broken_plugin_warns_and_others_load(monkeypatch):
    reg: Registry[int] = Registry("model", "qpebench.models")
    loaded = []

    def good():
        loaded.append("good")
        reg.register("good", 1)

    def bad():
        raise ImportError("no module named torch_geometric")

    eps = [_EntryPoint("bad", bad), _EntryPoint("good", good)]
    monkeypatch.setattr(registry_module, "entry_points", lambda group: eps)
    with pytest.warns(RuntimeWarning, match="plugin 'bad'.*torch_geometric"):
        names = reg.load_plugins()
    assert names == ["good"] and reg.get("good") == 1


def test_builtins_are_registered():
    load_builtins()
    assert {"zero_rain", "auto_estimator", "static_cnn", "early_fusion"} <= set(MODELS.names())
    assert "synthetic" in registry_module.DATASETS
    assert {"categorical", "continuous"} <= set(registry_module.METRICS.names())
    assert "synthetic_europe_to_all" in registry_module.SPLITS


def test_plugin_pointing_at_an_object_is_registered(monkeypatch):
    reg: Registry[object] = Registry("model", "qpebench.models")

    def factory():
        return "built"

    ep = _EntryPoint("my_model", lambda: factory)
    ep.value = "pkg.models:factory"
    monkeypatch.setattr(registry_module, "entry_points", lambda group: [ep])
    assert reg.load_plugins() == ["my_model"]
    assert reg.get("my_model") is factory
