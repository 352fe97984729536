"""The model interface every registry entry implements, the model card, and model files.

A registry entry in :data:`qpebench.registry.MODELS` is a factory
``(frames, bands, step=1, **params) -> RainModel``. A :class:`RainModel` estimates the rain rate
(mm/h, non-negative) at the target time from the IR frames ``(N, T, C, H, W)`` (the card's
frames, every ``step``-th stored frame back from the target, and the card's bands); it may learn
from the training set only (``fit``). Build models with :func:`build_model` (which records the
factory arguments as the model's ``config``) and reload a saved one with :func:`load_model`: the
file holds the card, the config and the learned tensors, and is read with
``torch.load(weights_only=True)`` (no pickle of arbitrary objects) after checking the zip members
it is made of (:func:`check_model_zip`: stored uncompressed, as ``torch.save`` writes them, inside
the file, and declaring at most :data:`MAX_MODEL_BYTES` in all); a model rebuilt from its config is
refused above :data:`MAX_PARAMETERS` before it is built.
"""

from __future__ import annotations

import dataclasses
import inspect
import zipfile
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch

from qpebench.atomic import write_with
from qpebench.errors import ConfigError, FileFormatError, SampleValidationError, one_line
from qpebench.limits import check_declared, check_zip, human
from qpebench.registry import MODELS, load_builtins
from qpebench.sample import check_oracle_inputs
from qpebench.store import SampleBatch, SampleStore, stack_oracle

F32 = npt.NDArray[np.float32]

#: Identifies a qpebench model file (and its layout version).
MODEL_FORMAT = "qpebench-model"
MODEL_FORMAT_VERSION = 1
#: Most learned parameters a model may have: checked on the meta device before a network is
#: built (from a configuration or a model file), and the cap on ``param_budget``.
MAX_PARAMETERS = 200_000_000
#: Most bytes the zip members of a model file may declare in all: :data:`MAX_PARAMETERS` values
#: of 8 bytes (float64 or int64 at most; buffers such as batch-norm statistics count too) plus
#: 64 MiB for the card, the config, the pickle and torch's own records.
MAX_MODEL_BYTES = MAX_PARAMETERS * 8 + 64 * 1024**2
#: What a model can output besides the rain rate.
OUTPUT_KINDS = ("rate", "probability", "quantiles")


@dataclass(frozen=True)
class ModelCard:
    """What a model needs and costs, carried into every result record.

    Attributes:
        name: Registry name.
        family: ``"reference"``, ``"ir_formula"``, ``"cnn"``, ``"temporal"``, ``"sklearn"`` …
        description: One line.
        frames: Input frames the model uses.
        bands: Canonical bands the model uses, in order.
        step: The frames are every ``step``-th stored frame, counted back from the target.
        outputs: ``"rate"`` always; ``"probability"`` (of rain ≥ ``rain_threshold``) and
            ``"quantiles"`` (at ``quantile_levels``) where the model gives them.
        rain_threshold: Rain rate in mm/h of the ``probability`` output.
        quantile_levels: Levels of the ``quantiles`` output, increasing.
        trainable: Whether the model learns from the training set.
        parameters: Learned parameter count (for tree ensembles: nodes).
        flops_per_sample: Floating-point operations of one forward pass on one 64×64 patch
            (for tree ensembles: node comparisons; see ``docs/models.md``).
        causal: Uses only frames at or before the target time.
        oracle_inputs: Hidden generator states the model reads as extra channels of every
            frame (:data:`~qpebench.sample.AUX_FIELDS` of role ``oracle``), to measure what an
            input could add at most; a truth field (``true_rain``) is refused. Empty for every
            model that estimates rain from IR alone.
    """

    name: str
    family: str
    description: str
    frames: int
    bands: tuple[str, ...]
    step: int = 1
    outputs: tuple[str, ...] = ("rate",)
    rain_threshold: float | None = None
    quantile_levels: tuple[float, ...] = ()
    trainable: bool = False
    parameters: int = 0
    flops_per_sample: int = 0
    causal: bool = True
    oracle_inputs: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        checked = check_oracle_inputs(self.oracle_inputs, f"model {self.name}")
        object.__setattr__(self, "oracle_inputs", checked)

    @property
    def channels(self) -> int:
        """Input channels per frame: the bands, then the oracle fields."""
        return len(self.bands) + len(self.oracle_inputs)

    def to_json(self) -> dict[str, Any]:
        """The card as plain JSON types."""
        out = asdict(self)
        for key in ("bands", "outputs", "quantile_levels", "oracle_inputs"):
            out[key] = list(out[key])
        return out

    @property
    def span(self) -> int:
        """Stored frames the input covers: ``step · (frames − 1) + 1``."""
        return self.step * (self.frames - 1) + 1


def check_input(card: ModelCard, ir: F32) -> None:
    """Check that ``ir`` is ``(N, card.frames, card.channels, H, W)``.

    Raises:
        SampleValidationError: The shape does not match the card.
    """
    expected = (card.frames, card.channels)
    if ir.ndim != 5 or tuple(ir.shape[1:3]) != expected:
        oracle = f" then oracle fields {list(card.oracle_inputs)}" if card.oracle_inputs else ""
        raise SampleValidationError(
            f"{card.name} takes IR (N, T={card.frames}, C={card.channels}, H, W) with bands "
            f"{list(card.bands)}{oracle}, got shape {tuple(ir.shape)}"
        )


def read_inputs(
    store: SampleStore, indices: npt.NDArray[np.int64] | Sequence[int], card: ModelCard
) -> SampleBatch:
    """The samples as ``card``'s model sees them.

    Its frames, step and bands, then its oracle fields as extra channels of every frame
    (:func:`~qpebench.store.stack_oracle`).

    Raises:
        UnknownNameError: The store lacks a band or an oracle field the card names.
    """
    batch = store.read(
        indices, frames=card.frames, step=card.step, bands=card.bands, aux=card.oracle_inputs
    )
    return replace(batch, ir=stack_oracle(batch, card.oracle_inputs))


@dataclass(frozen=True)
class TrainData:
    """The training and validation sets a model may learn from (indices into one store)."""

    store: SampleStore
    train: npt.NDArray[np.int64]
    val: npt.NDArray[np.int64]


class RainModel(ABC):
    """Estimates rain rate at the target time from IR frames.

    Attributes:
        card: The model card.
        config: The factory arguments that rebuild this model (set by :func:`build_model`).
    """

    card: ModelCard
    config: dict[str, Any]

    def fit(
        self,
        data: TrainData,
        *,
        seed: int,
        progress: bool = True,
        checkpoint_dir: Path | None = None,
    ) -> dict[str, Any]:
        """Learn from ``data.train`` (and select on ``data.val``); fixed models do nothing.

        Args:
            data: The training and validation sets.
            seed: The training seed.
            progress: Show progress.
            checkpoint_dir: Where a model that trains long keeps its checkpoint, so that the
                same fit run again resumes (torch models; the others fit in one go).

        Returns:
            A training log (losses, epochs, time) recorded in the result.
        """
        return {}

    @abstractmethod
    def predict(self, ir: F32) -> F32:
        """Rain rate in mm/h ``(N, H, W)`` from IR ``(N, T, C, H, W)`` (card's frames and bands)."""

    def predict_outputs(self, ir: F32) -> dict[str, F32]:
        """Every output of the card from IR ``(N, T, C, H, W)``.

        Returns:
            ``rate`` ``(N, H, W)`` in mm/h, and where the card has them ``probability``
            ``(N, H, W)`` in [0, 1] and ``quantiles`` ``(N, Q, H, W)`` in mm/h.
        """
        return {"rate": self.predict(ir)}

    def state(self) -> dict[str, torch.Tensor]:
        """What the model learned, as named tensors (empty for fixed models)."""
        return {}

    def load_state(self, state: Mapping[str, torch.Tensor]) -> None:
        """Restore what :meth:`state` returned.

        Raises:
            ConfigError: ``state`` does not fit this model.
        """
        if state:
            raise ConfigError(f"{self.card.name} learns nothing but got state {sorted(state)}")

    def save(self, path: str | Path) -> None:
        """Write card, config and state to ``path`` atomically (see :func:`load_model`)."""
        payload = {
            "format": MODEL_FORMAT,
            "format_version": MODEL_FORMAT_VERSION,
            "card": self.card.to_json(),
            "config": self.config,
            "state": self.state(),
        }
        write_with(Path(path), lambda tmp: torch.save(payload, tmp))


def _plain(value: Any) -> Any:
    """``value`` as JSON-like types (dataclasses as dicts, tuples as lists)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return asdict(value)
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    return value


def build_model(
    name: str, *, frames: int, bands: Sequence[str], step: int = 1, **params: Any
) -> RainModel:
    """Instantiate registry model ``name``; its ``config`` records every factory argument.

    The config holds the defaults too, so a saved model is rebuilt as it was even if a default
    changes later.

    Raises:
        ConfigError: ``frames`` or ``step`` below 1, or ``params`` names an argument the model
            does not take.
    """
    for key, value in (("frames", frames), ("step", step)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"model {name}: {key} must be a positive integer, got {value!r}")
    load_builtins()
    factory: Callable[..., RainModel] = MODELS.get(name)
    signature = inspect.signature(factory)
    unknown = [k for k in params if k not in signature.parameters]
    if unknown:
        allowed = [k for k in signature.parameters if k not in ("frames", "bands", "step")]
        raise ConfigError(f"model {name}: {unknown} not accepted; {name} takes {allowed}")
    arguments = signature.bind(frames=frames, bands=list(bands), step=step, **params)
    arguments.apply_defaults()
    model = factory(**arguments.arguments)
    model.config = _plain(arguments.arguments)
    return model


_ZIP_METHODS = {
    zipfile.ZIP_DEFLATED: "deflate",
    zipfile.ZIP_BZIP2: "bzip2",
    zipfile.ZIP_LZMA: "lzma",
}


def check_model_zip(archive: zipfile.ZipFile, path: Path) -> None:
    """Refuse a model file's zip before ``torch.load`` reads (and allocates) any member.

    ``torch.save`` stores every member uncompressed (``ZIP_STORED``), so a compressed member can
    only be a decompression bomb (``torch.load`` inflates whatever a record declares, then
    compares it with the tensor); a stored member holds its bytes in the file, so the file's own
    size bounds what it costs.

    Raises:
        FileFormatError: A member compressed or reaching past the end of the file, or the
            members declaring more than :data:`MAX_MODEL_BYTES` (or the global decompression
            limit, :func:`qpebench.limits.check_zip`) in all; the message names the file and
            the member.
    """
    size = path.stat().st_size
    for info in archive.infolist():
        where = f"{path}:{info.filename}"
        if info.compress_type != zipfile.ZIP_STORED:
            method = _ZIP_METHODS.get(info.compress_type, f"method {info.compress_type}")
            raise FileFormatError(
                f"{where}: zip member is compressed ({method}, declares "
                f"{human(info.file_size)}); torch.save stores every member uncompressed; "
                "refused before loading"
            )
        if info.compress_size != info.file_size or info.header_offset + info.file_size > size:
            raise FileFormatError(
                f"{where}: stored zip member declares {human(info.file_size)}, more than the "
                f"{human(size)} file holds (corrupt or truncated); refused before loading"
            )
    total = check_zip(archive, path)
    check_declared(path, "zip members of the model file", total, MAX_MODEL_BYTES, unit="bytes")


def load_model(path: str | Path, *, device: str | None = None) -> RainModel:
    """Rebuild the model saved at ``path`` from its registry name and config, then its state.

    Args:
        path: A file written by :meth:`RainModel.save`.
        device: Overrides the saved ``train.device`` of torch models (e.g. ``"cpu"``).

    Raises:
        ConfigError: Not a qpebench model file, one whose zip members fail
            :func:`check_model_zip` (compressed, past the end of the file, or more than
            :data:`MAX_MODEL_BYTES` or the decompression limit), one of another format version,
            one missing a part, one whose model is larger than :data:`MAX_PARAMETERS`, one whose
            state does not fit the rebuilt model, or one whose rebuilt model card differs from
            the saved card. Every message is one line and starts with ``path``.
    """
    path = Path(path)
    try:
        with zipfile.ZipFile(path) as archive:
            check_model_zip(archive, path)
    except FileFormatError as exc:
        raise ConfigError(str(exc)) from None
    except (OSError, zipfile.BadZipFile) as exc:
        raise ConfigError(f"{path}: not a qpebench model file (not a zip archive: {exc})") from None
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a file that is not its own
        raise ConfigError(f"{path}: not a qpebench model file ({one_line(str(exc))})") from None
    if not isinstance(payload, dict) or payload.get("format") != MODEL_FORMAT:
        raise ConfigError(f"{path}: not a qpebench model file (no {MODEL_FORMAT!r} format tag)")
    missing = [k for k in ("format_version", "card", "config", "state") if k not in payload]
    if missing:
        raise ConfigError(f"{path}: model file lacks {missing}")
    if payload["format_version"] != MODEL_FORMAT_VERSION:
        raise ConfigError(
            f"{path}: model file version {payload['format_version']}, this qpebench reads "
            f"{MODEL_FORMAT_VERSION}"
        )
    card, config, state = payload["card"], payload["config"], payload["state"]
    if not isinstance(card, dict) or not isinstance(card.get("name"), str):
        raise ConfigError(f"{path}: model file card must be a mapping with a 'name'")
    if not isinstance(config, dict) or not all(isinstance(k, str) for k in config):
        raise ConfigError(f"{path}: model file config must map argument names to values")
    if not isinstance(state, dict):
        raise ConfigError(f"{path}: model file state must map names to tensors")
    try:
        config = dict(config)
        if device is not None and "train" in config:
            config["train"] = {**(config["train"] or {}), "device": device}
        model = build_model(card["name"], **config)
    except (TypeError, ValueError) as exc:  # ConfigError included: name the file
        raise ConfigError(
            f"{path}: cannot rebuild {card['name']!r} from its config ({one_line(str(exc))})"
        ) from None
    try:
        model.load_state(state)
    except KeyError as exc:
        raise ConfigError(f"{path}: model state lacks {exc}") from None
    except (ValueError, TypeError, RuntimeError) as exc:  # ConfigError included: name the file
        raise ConfigError(f"{path}: {one_line(str(exc))}") from None
    rebuilt = model.card.to_json()
    differ = sorted(k for k in rebuilt if rebuilt[k] != card.get(k))
    if differ:
        raise ConfigError(
            f"{path}: the rebuilt {model.card.name} differs from the saved card in {differ}"
        )
    return model
