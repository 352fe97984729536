"""Compose the Hydra configuration and check every value before anything runs.

:func:`compose_config` composes the packaged ``qpebench.conf`` with command-line overrides;
:func:`run_config` turns the result into a frozen :class:`RunConfig`, raising
:class:`~qpebench.errors.ConfigError` (or :class:`~qpebench.errors.UnknownNameError`) with one
line that names the key, the bad value and what is allowed.
"""

from __future__ import annotations

import hashlib
import inspect
import json
from collections.abc import Sequence
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import Any

from hydra import compose, initialize_config_module
from hydra.core.config_store import ConfigStore
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from qpebench.bands import validate_bands
from qpebench.errors import ConfigError, UnknownNameError, unknown_name_message
from qpebench.evaluation import EvalSettings
from qpebench.names import check_name, printable
from qpebench.registry import DATASETS, MODELS, SPLITS, load_builtins
from qpebench.sample import check_window_min
from qpebench.splits import SplitSpec
from qpebench.trainer import TrainSettings

CONFIG_GROUPS = ("data", "split", "train", "model")


def group_options(group: str) -> list[str]:
    """Names of the packaged options of a config group (``split`` → the split files)."""
    folder = files("qpebench.conf").joinpath(group)
    return sorted(p.name[: -len(".yaml")] for p in folder.iterdir() if p.name.endswith(".yaml"))


def _group_choices(group: str) -> list[str]:
    """What ``group=NAME`` accepts: the packaged files, and the registered splits and models."""
    if group == "model":
        return MODELS.names()
    options = group_options(group)
    if group == "split":
        options = sorted({*options, *SPLITS.names()})
    return options


def _explain_override_error(overrides: Sequence[str], exc: Exception) -> str:
    for item in overrides:
        key, _, value = item.partition("=")
        key = key.lstrip("+~")
        if key in CONFIG_GROUPS and value not in _group_choices(key):
            return unknown_name_message(f"{key} config", value, _group_choices(key))
    text = " ".join(line.strip() for line in str(exc).strip().splitlines()) or type(exc).__name__
    return f"bad override in {list(overrides)}: {text}"


def compose_config(overrides: Sequence[str] = ()) -> DictConfig:
    """Compose ``qpebench.conf/config.yaml`` with Hydra ``overrides`` (``key=value`` strings).

    Raises:
        ConfigError: An override does not parse or names an unknown key.
        UnknownNameError: An override selects an unknown option of a config group.
    """
    register_group_options()
    try:
        with initialize_config_module(config_module="qpebench.conf", version_base=None):
            cfg = compose(config_name="config", overrides=list(overrides))
    except (HydraException, OmegaConfBaseException) as exc:
        message = _explain_override_error(overrides, exc)
        if message.startswith("unknown"):
            raise UnknownNameError(message) from None
        raise ConfigError(message) from None
    return cfg


def _int(cfg: DictConfig, key: str, minimum: int) -> int:
    return _check_int(OmegaConf.select(cfg, key), key, minimum)


def _check_int(value: Any, key: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{key} must be an integer, got {value!r}")
    if value < minimum:
        raise ConfigError(f"{key} must be at least {minimum}, got {value}")
    return value


def _check_span(frames: int, step: int, stored: int, where: str = "") -> None:
    """Refuse input frames that reach further back than the stored frames.

    Raises:
        ConfigError: ``step * (frames - 1) + 1`` exceeds ``stored``; the line starts with
            ``where``.
    """
    span = step * (frames - 1) + 1
    if span > stored:
        raise ConfigError(
            f"{where}frames={frames} with step={step} span {span} stored frames; "
            f"the data holds {stored}"
        )


def _check_window(value: Any, key: str) -> float | None:
    """``key``: an input window in minutes (>= 0), or ``None``.

    Raises:
        ConfigError: Not a number of minutes >= 0.
    """
    return None if value is None else check_window_min(value, key)


def _check_bands(value: Any, data: dict[str, Any], key: str) -> tuple[str, ...]:
    """``key``'s band selection: canonical bands (one name or a list), every one in the data.

    Raises:
        ConfigError: Not band names, an empty or repeated selection, or a band the data lacks.
        UnknownNameError: A name that is not a canonical band.
    """
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(b, str) for b in value):
        raise ConfigError(f"{key} must be a list of band names, got {printable(repr(value))}")
    try:
        bands = validate_bands(value)
    except UnknownNameError as exc:
        raise UnknownNameError(f"{key}: {exc}") from None
    except ConfigError as exc:  # its message starts "bands: "
        raise ConfigError(f"{key}: {str(exc).removeprefix('bands: ')}") from None
    missing = [b for b in bands if b not in data.get("bands", bands)]
    if missing:
        raise ConfigError(f"{key} {missing} are not in the data (data.bands={data['bands']})")
    return bands


def _model_params(
    name: str,
    own: Any,
    data: dict[str, Any],
    frames: int,
    step: int,
    stored: int,
    window: float | None = None,
) -> dict[str, Any]:
    """``model_params.<name>``, its input overrides checked (frames, step, bands, window_min).

    Args:
        name: The model.
        own: Its parameters from the configuration.
        data: The ``data`` configuration (its bands).
        frames: The global ``frames``, for an override of ``step`` alone.
        step: The global ``step``, for an override of ``frames`` alone.
        stored: The stored frames per sample (``data.frames``).
        window: The global ``window_min``: with it (or the model's own), the frames are known
            only on the store, where the runner checks their span.

    Raises:
        ConfigError: Not a mapping, or an override that is out of range, reaches further back
            than the stored frames or selects bands the data lacks (the line names the key).
        UnknownNameError: An unknown band.
    """
    key = f"model_params.{name}"
    if not isinstance(own, dict):
        raise ConfigError(f"{key} must be a mapping of arguments, got {printable(repr(own))}")
    params = dict(own)
    for item in ("frames", "step"):
        if item in params:
            params[item] = _check_int(params[item], f"{key}.{item}", 1)
    if "window_min" in params:
        if "frames" in params:
            raise ConfigError(f"{key}: give frames or window_min, not both")
        params["window_min"] = _check_window(params["window_min"], f"{key}.window_min")
    by_window = "window_min" in params or (window is not None and "frames" not in params)
    if ("frames" in params or "step" in params) and not by_window:
        _check_span(
            params.get("frames", frames),
            params.get("step", step),
            stored,
            f"{key}.{'frames' if 'frames' in params else 'step'}: ",
        )
    if "bands" in params:
        params["bands"] = _check_bands(params["bands"], data, f"{key}.bands")
    return params


def _check_data(data: dict[str, Any]) -> None:
    """Check the ``data`` group against the signature of its registered adapter.

    Raises:
        ConfigError: No adapter, one not safe as a file name, an argument the adapter does
            not take, or a value that is not of the annotated type (int, bool, str).
        UnknownNameError: An unknown adapter.
    """
    adapter = data.get("adapter")
    if adapter is None:
        raise ConfigError("data.adapter is missing: which adapter builds the store?")
    check_name(adapter, "data.adapter")  # it names the store's folder
    params = inspect.signature(DATASETS.get(adapter)).parameters
    allowed = [k for k, p in params.items() if p.kind == p.KEYWORD_ONLY and k != "progress"]
    for key, value in data.items():
        if key == "adapter":
            continue
        if key not in allowed:
            raise ConfigError(f"data.{key}: {adapter} takes no {key!r}; it takes {allowed}")
        kind = _SIMPLE_TYPES.get(str(params[key].annotation))
        wrong_bool = kind is int and isinstance(value, bool)
        if kind is not None and (wrong_bool or not isinstance(value, kind)):
            raise ConfigError(f"data.{key} must be {kind.__name__}, got {value!r}")


_SIMPLE_TYPES: dict[str, type] = {"int": int, "bool": bool, "str": str}


def _folder(paths: dict[str, Any], key: str) -> Path:
    """``paths.<key>`` as a path; whether it can be written is checked before the run starts.

    Raises:
        ConfigError: Not a non-empty string.
    """
    value = paths.get(key)
    if not isinstance(value, str) or not value:
        raise ConfigError(f"paths.{key} must be a folder path, got {printable(repr(value))}")
    return Path(value)


@dataclass(frozen=True)
class RunConfig:
    """A checked run configuration (see ``qpebench/conf/config.yaml``)."""

    data: dict[str, Any]
    split: SplitSpec
    train: TrainSettings
    models: tuple[str, ...]
    model_params: dict[str, dict[str, Any]]
    frames: int
    step: int
    window_min: float | None
    param_budget: int | None
    bands: tuple[str, ...]
    seeds: tuple[int, ...]
    evaluation: EvalSettings
    progress: bool
    cache_dir: Path
    runs_dir: Path
    resolved: dict[str, Any]

    @property
    def config_hash(self) -> str:
        """Hash of the resolved configuration (paths and progress left out)."""
        core = {k: v for k, v in self.resolved.items() if k not in ("paths", "progress")}
        return hashlib.sha256(json.dumps(core, sort_keys=True).encode()).hexdigest()[:12]


def one_job(resolved: dict[str, Any]) -> dict[str, Any]:
    """Fold a sweep job's ``model`` and ``seed`` into ``models`` and ``seeds``.

    ``model=NAME`` trains that model alone (``model_params`` of the others are dropped, so one
    sweep can carry every model's parameters); ``seed=N`` uses that seed alone.

    Raises:
        UnknownNameError: ``model`` is not a registered model.
        ConfigError: ``seed`` is not an integer >= 0.
    """
    out = dict(resolved)
    chosen = out.get("model")
    if chosen is not None:
        model = chosen.get("name") if isinstance(chosen, dict) else None
        if not isinstance(model, str) or model not in MODELS:
            raise UnknownNameError(unknown_name_message("model", str(model), MODELS.names()))
        out["models"] = [model]
        params = out.get("model_params") or {}
        out["model_params"] = {k: v for k, v in params.items() if k == model}
    seed = out.get("seed")
    if seed is not None:
        out["seeds"] = [_check_int(seed, "seed", 0)]
    return out


def _split(mapping: dict[str, Any]) -> SplitSpec:
    """The split of the ``split`` group: its packaged file, or a registered plugin split."""
    if set(mapping) == {"name"}:  # a plugin split registered in code (register_group_options)
        spec: SplitSpec = SPLITS.get(str(mapping["name"]))
        return spec
    return SplitSpec.from_mapping(mapping)


def register_group_options() -> None:
    """Make every registered split and model selectable: ``split=NAME`` and ``model=NAME``.

    Packaged splits are files of the ``split`` group; a plugin's split (registered in code or
    through the ``qpebench.splits`` entry point) gets a group option holding its name, which
    :func:`run_config` resolves through the registry. Every registered model (a plugin's too)
    is an option ``{name: NAME}`` of the ``model`` group: Hydra's sweeps run over it, and no YAML
    file has to follow the registry. A name that is not a safe file name gets no option.
    """
    load_builtins()
    store = ConfigStore.instance()
    packaged = set(group_options("split"))
    for name in SPLITS.names():
        if name not in packaged:
            store.store(group="split", name=name, node={"name": name})
    for name in MODELS.names():
        try:
            check_name(name, "model name")
        except ConfigError:
            continue  # refused by run_config when it is chosen through `models`
        store.store(group="model", name=name, node={"name": name})


def run_config(cfg: DictConfig) -> RunConfig:
    """Check a composed configuration.

    Names that become file names (the split, its test sets, the models) must be safe names
    (:func:`qpebench.names.check_name`); the output folders are checked by the runner, which
    creates them.

    Raises:
        ConfigError: A value of the wrong type or out of range, or an unsafe model name.
        SplitError: An unsafe split or test-set name, or a malformed split.
        UnknownNameError: An unknown model or band.
    """
    load_builtins()
    try:
        resolved: dict[str, Any] = OmegaConf.to_container(cfg, resolve=True)  # type: ignore[assignment]
    except OmegaConfBaseException as exc:
        raise ConfigError(f"cannot resolve the configuration: {exc}") from None
    resolved = one_job(resolved)
    frames = _int(cfg, "frames", 1)
    seeds = resolved.get("seeds")
    if isinstance(seeds, int) and not isinstance(seeds, bool):
        seeds = [seeds]
    if (
        not isinstance(seeds, list)
        or not seeds
        or any(isinstance(s, bool) or not isinstance(s, int) or s < 0 for s in seeds)
        or len(set(seeds)) != len(seeds)
    ):
        raise ConfigError(
            f"seeds must be a non-empty list of distinct integers >= 0, got {seeds!r}"
        )
    evaluation = EvalSettings.from_mapping(dict(resolved.get("evaluation") or {}))
    window_min = _check_window(resolved.get("window_min"), "window_min")
    data = dict(resolved["data"])
    step = _int(cfg, "step", 1)
    stored_frames = _int(cfg, "data.frames", 1)
    if window_min is None:
        _check_span(frames, step, stored_frames)
    param_budget = None if cfg.get("param_budget") is None else _int(cfg, "param_budget", 1)
    bands = _check_bands(resolved["bands"], data, "bands")
    models = resolved["models"]
    if isinstance(models, str):
        models = [models]
    if not isinstance(models, list) or not models:
        raise ConfigError(f"models must be a non-empty list of names, got {models!r}")
    expanded: list[str] = []
    for entry in models:
        names = MODELS.names(str(entry)) if any(ch in str(entry) for ch in "*?[") else [entry]
        if not names or names[0] not in MODELS:
            raise UnknownNameError(unknown_name_message("model", str(entry), MODELS.names()))
        expanded += [check_name(n, "model name") for n in names if n not in expanded]
    models = expanded
    model_params: dict[str, dict[str, Any]] = {}
    for name, own in (resolved.get("model_params") or {}).items():
        if name not in models:
            raise ConfigError(
                f"model_params.{name}: " + unknown_name_message("model in models", name, models)
            )
        model_params[str(name)] = _model_params(
            name, own, data, frames, step, stored_frames, window_min
        )
    train_cfg = dict(resolved["train"])
    unknown = sorted(set(train_cfg) - set(TrainSettings.__dataclass_fields__))
    if unknown:
        raise ConfigError(
            f"train: unknown keys {unknown}; allowed: {sorted(TrainSettings.__dataclass_fields__)}"
        )
    train = TrainSettings(**train_cfg)
    _check_data(data)
    progress = resolved.get("progress", True)
    if not isinstance(progress, bool):
        raise ConfigError(f"progress must be true or false, got {progress!r}")
    paths = resolved["paths"]
    return RunConfig(
        data=data,
        split=_split(dict(resolved["split"])),
        train=train,
        models=tuple(str(m) for m in models),
        model_params=model_params,
        frames=frames,
        step=step,
        window_min=window_min,
        param_budget=param_budget,
        bands=bands,
        seeds=tuple(seeds),
        evaluation=evaluation,
        progress=progress,
        cache_dir=_folder(paths, "cache"),
        runs_dir=_folder(paths, "runs"),
        resolved=resolved,
    )
