"""Per-pixel tree ensembles (scikit-learn) on hand-made IR features.

Each pixel is one example: the features of :mod:`qpebench.baselines.pixel_features` in, the
radar rain rate out (target ``log1p(rain)``, prediction ``expm1`` clipped at 0), in the manner
of the random-forest SEVIRI retrieval of Kühnlein, Appelhans, Thies & Nauss (2014, Remote
Sens. Environ. 141, 129–143). The fit uses a seeded uniform random sample of at most
``max_pixels`` valid training pixels, drawn while reading the training set block by block
(each pixel gets a uniform key; the ``max_pixels`` smallest keys are kept), so memory stays
bounded whatever the training-set size.

The models use two frames when the configuration has two or more (the second-to-last and the
last, ``step`` stored frames apart) for the IR10.8 change feature, else one.

The fitted estimator is saved with ``skops.io`` (no pickle) as a uint8 tensor; loading refuses
any type outside :data:`ALLOWED_TYPES` and the types ``skops`` trusts by default, and, before
anything is decompressed, a ``skops`` zip whose members declare more than
:data:`MAX_ESTIMATOR_BYTES` (or the global limit of :mod:`qpebench.limits`) or whose ``.npy``
headers declare arrays larger than the member holding them.
"""

from __future__ import annotations

import io
import math
import time
import zipfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeAlias

import numpy as np
import numpy.typing as npt
import skops.io
import torch
from sklearn.ensemble import HistGradientBoostingRegressor, RandomForestRegressor
from threadpoolctl import threadpool_limits

from qpebench.errors import ConfigError, FileFormatError
from qpebench.limits import check_declared, check_zip, human, npy_header
from qpebench.models import F32, ModelCard, RainModel, TrainData, check_input
from qpebench.registry import MODELS

from .ir_formulas import (
    PATCH_PIXELS,
    check_int,
    check_positive,
    check_state,
    not_fitted_error,
    require_bands,
)
from .pixel_features import (
    check_window,
    feature_names,
    feature_ops_per_pixel,
    pixel_features,
    training_blocks,
)

Estimator: TypeAlias = HistGradientBoostingRegressor | RandomForestRegressor

#: Types a saved estimator may hold beyond those ``skops`` trusts by default (its tree
#: structures); anything else in a model file is refused.
ALLOWED_TYPES: tuple[str, ...] = (
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
    "sklearn.tree._tree.Tree",
)

#: Most bytes a saved estimator may declare (all its ``skops`` members together), checked before
#: ``skops`` reads or decompresses anything, so a hostile estimator costs at most this much. The
#: default random forest (50 trees, ``max_depth`` 16, ``min_samples_leaf`` 10, 100 000 pixels:
#: at most ~20 000 nodes of ~75 bytes per tree) takes at most ~75 MB (35 MiB measured on
#: 100 000 smooth pixels), the default gradient boosting 0.8 MB; the estimators the tests save
#: take 1 MB (8 trees) and 0.3 MB. 256 MiB keeps a margin of three for larger forests while a
#: ``skops`` bomb is refused under the 500 MiB a hostile input may cost.
MAX_ESTIMATOR_BYTES = 256 * 1024**2

#: Samples per prediction block (bounds the feature array: 64 patches of 64×64 ≈ 4 MB/feature).
PREDICT_BLOCK = 64


def _tree_sizes(estimator: Estimator) -> tuple[int, float, int]:
    """Total nodes, comparisons per pixel and trees of a fitted ensemble.

    The comparisons are each tree's mean root-to-leaf depth (leaves weighted by their training
    samples), summed over the trees.
    """
    nodes, comparisons = 0, 0.0
    if isinstance(estimator, HistGradientBoostingRegressor):
        # scikit-learn keeps the boosted trees in the private ``_predictors`` (one per iteration)
        trees = [p.nodes for iteration in estimator._predictors for p in iteration]
        for t in trees:
            leaf = t["is_leaf"].astype(bool)
            nodes += t.size
            comparisons += float(np.average(t["depth"][leaf], weights=t["count"][leaf]))
        return nodes, comparisons, len(trees)
    for member in estimator.estimators_:
        tree = member.tree_
        left, right = tree.children_left, tree.children_right
        depth = np.zeros(tree.node_count)
        frontier, level = np.array([0]), 0
        while frontier.size:
            depth[frontier] = level
            nxt = np.concatenate([left[frontier], right[frontier]])
            frontier, level = nxt[nxt >= 0], level + 1
        leaf = left < 0
        nodes += tree.node_count
        comparisons += float(np.average(depth[leaf], weights=tree.weighted_n_node_samples[leaf]))
    return nodes, comparisons, len(estimator.estimators_)


class PixelEnsemble(RainModel):
    """A scikit-learn tree ensemble applied pixel by pixel (see the module docstring).

    Args:
        card: The model card; ``parameters`` and ``flops_per_sample`` are set from the fitted
            trees (before the fit, ``flops_per_sample`` is the estimate ``estimated_depth``).
        make: Builds the unfitted estimator from the seed.
        window: Texture window of the features.
        max_pixels: Most training pixels the estimator is fitted on.
        estimated_depth: Comparisons per pixel summed over the trees, expected before the fit.
        n_jobs: Threads of the OpenMP pools (scikit-learn's histogram boosting and tree
            prediction) during fit and predict; one thread keeps a busy machine from stalling
            OpenMP's busy-waiting barriers.
    """

    def __init__(
        self,
        card: ModelCard,
        make: Callable[[int], Estimator],
        *,
        window: int,
        max_pixels: int,
        estimated_depth: float,
        n_jobs: int,
    ) -> None:
        self.features = feature_names(card.bands, card.frames, window)
        self.feature_ops = feature_ops_per_pixel(card.bands, card.frames, window)
        self._unfitted_card = replace(
            card,
            trainable=True,
            flops_per_sample=int((self.feature_ops + estimated_depth) * PATCH_PIXELS),
        )
        self.card = self._unfitted_card
        self.make = make
        self.window = window
        self.max_pixels = max_pixels
        self.n_jobs = n_jobs
        self.estimator: Estimator | None = None

    def _use(self, estimator: Estimator | None) -> None:
        """Adopt ``estimator`` and count its nodes and comparisons into the card."""
        self.estimator = estimator
        if estimator is None:
            self.card = self._unfitted_card
            return
        nodes, comparisons, trees = _tree_sizes(estimator)
        # per pixel: features, the comparisons down each tree, one addition per leaf value
        per_pixel = self.feature_ops + comparisons + trees
        self.card = replace(
            self._unfitted_card, parameters=nodes, flops_per_sample=round(per_pixel * PATCH_PIXELS)
        )

    def _training_pixels(
        self, data: TrainData, seed: int, progress: bool
    ) -> tuple[F32, npt.NDArray[np.float64], int]:
        """A uniform random sample of ≤ ``max_pixels`` valid training pixels.

        Returns:
            Their features, their ``log1p(rain)`` targets and the number of valid pixels seen.

        Raises:
            ConfigError: The training set has no valid pixel.
        """
        rng = np.random.default_rng(seed)
        x = np.empty((0, len(self.features)), np.float32)
        y = np.empty(0)
        keys = np.empty(0)
        n_valid = 0
        for batch in training_blocks(data, self.card, progress=progress):
            _, feats = pixel_features(batch.ir, self.card.bands, window=self.window)
            valid = batch.valid.reshape(-1)
            n_valid += int(valid.sum())
            x = np.concatenate([x, feats[valid]])
            y = np.concatenate([y, np.log1p(batch.rain.reshape(-1)[valid].astype(np.float64))])
            keys = np.concatenate([keys, rng.random(int(valid.sum()))])
            if keys.size > self.max_pixels:
                keep = np.argpartition(keys, self.max_pixels)[: self.max_pixels]
                x, y, keys = x[keep], y[keep], keys[keep]
        order = np.argsort(keys, kind="stable")  # a canonical order, whatever the partition did
        if order.size == 0:
            raise ConfigError(f"{self.card.name}: the training set has no valid pixel")
        return x[order], y[order], n_valid

    def fit(
        self,
        data: TrainData,
        *,
        seed: int,
        progress: bool = True,
        checkpoint_dir: Path | None = None,
    ) -> dict[str, Any]:
        """Fit on a seeded random sample of the valid pixels of ``data.train``."""
        start = time.perf_counter()
        x, y, n_valid = self._training_pixels(data, seed, progress)
        read_seconds = time.perf_counter() - start
        estimator = self.make(seed)
        with threadpool_limits(limits=self.n_jobs, user_api="openmp"):
            estimator.fit(x, y)
        self._use(estimator)
        return {
            "n_pixels": n_valid,
            "n_fit_pixels": int(y.size),
            "features": self.features,
            "nodes": self.card.parameters,
            "flops_per_sample": self.card.flops_per_sample,
            "read_seconds": read_seconds,
            "train_seconds": time.perf_counter() - start,
        }

    def predict(self, ir: F32) -> F32:
        """Rain rate in mm/h ``(N, H, W)``: ``expm1`` of the ensemble, clipped at 0.

        Raises:
            NotFittedError: The model is not fitted.
            SampleValidationError: ``ir`` does not match the card's frames and bands.
        """
        if self.estimator is None:
            raise not_fitted_error(self.card.name)
        check_input(self.card, ir)
        n, _, _, h, w = ir.shape
        out = np.empty((n, h, w), np.float32)
        for s in range(0, n, PREDICT_BLOCK):
            block = ir[s : s + PREDICT_BLOCK]
            _, feats = pixel_features(block, self.card.bands, window=self.window)
            with threadpool_limits(limits=self.n_jobs, user_api="openmp"):
                z = self.estimator.predict(feats).reshape(-1, h, w)
            out[s : s + PREDICT_BLOCK] = np.expm1(np.clip(z, 0.0, None))
        return out

    def state(self) -> dict[str, torch.Tensor]:
        """The fitted estimator as ``skops`` bytes in a uint8 tensor ``estimator``."""
        if self.estimator is None:
            return {}
        data = np.frombuffer(skops.io.dumps(self.estimator), dtype=np.uint8).copy()
        return {"estimator": torch.from_numpy(data)}

    def load_state(self, state: Mapping[str, torch.Tensor]) -> None:
        """Restore :meth:`state` (an empty state leaves the model unfitted).

        Raises:
            ConfigError: Another key, not a ``skops`` file, a type outside
                :data:`ALLOWED_TYPES`, another estimator class or another feature count.
        """
        if not state:
            self._use(None)
            return
        name = self.card.name
        check_state(name, state, {"estimator": None})
        if state["estimator"].dtype != torch.uint8:
            raise ConfigError(
                f"{name}: state 'estimator' must be uint8 bytes, got {state['estimator'].dtype}"
            )
        data = state["estimator"].numpy().tobytes()
        _check_sizes(data, f"{name}: state 'estimator'")
        try:
            untrusted = skops.io.get_untrusted_types(data=data)
        except Exception as exc:  # skops raises zipfile/JSON/KeyError for foreign bytes
            raise ConfigError(f"{name}: state 'estimator' is not a skops file ({exc})") from None
        refused = sorted(set(untrusted) - set(ALLOWED_TYPES))
        if refused:
            raise ConfigError(
                f"{name}: the saved estimator holds untrusted types {refused}; refused to load "
                f"(allowed beyond skops defaults: {list(ALLOWED_TYPES)})"
            )
        try:
            estimator = skops.io.loads(data, trusted=list(ALLOWED_TYPES))
        except Exception as exc:  # a damaged file passes the type audit but fails to build
            raise ConfigError(f"{name}: the saved estimator cannot be loaded ({exc})") from None
        expected = type(self.make(0))
        if type(estimator) is not expected:
            raise ConfigError(
                f"{name}: the saved estimator is a {type(estimator).__name__}, "
                f"expected {expected.__name__}"
            )
        if estimator.n_features_in_ != len(self.features):
            raise ConfigError(
                f"{name}: the saved estimator takes {estimator.n_features_in_} features, this "
                f"configuration gives {len(self.features)} ({self.features})"
            )
        self._use(estimator)


def _check_sizes(data: bytes, where: str) -> None:
    """Refuse ``skops`` bytes declaring too much, before ``skops`` decompresses anything.

    Checks every zip member's declared size (alone, together, and against
    :data:`MAX_ESTIMATOR_BYTES`) and that each ``.npy`` member's header declares an array no
    larger than the member (``numpy`` allocates the declared shape before reading).

    Raises:
        ConfigError: Naming ``where``, the member and the sizes; or not a zip archive.
    """
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            total = check_zip(archive, where)
            check_declared(where, "skops archive", total, MAX_ESTIMATOR_BYTES, unit="bytes")
            for info in archive.infolist():
                if info.filename.endswith(".npy"):
                    _check_npy(archive, info, f"{where}:{info.filename}")
    except ConfigError:
        raise  # already names ``where`` and the member (a ConfigError is a ValueError too)
    except FileFormatError as exc:
        raise ConfigError(str(exc)) from None
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
        raise ConfigError(f"{where} is not a skops file ({exc})") from None


def _check_npy(archive: zipfile.ZipFile, info: zipfile.ZipInfo, where: str) -> None:
    """Refuse a ``.npy`` member whose header declares more data than the member holds."""
    with archive.open(info) as fh:
        shape, _, dtype = npy_header(fh, where)
    nbytes = math.prod(shape) * dtype.itemsize
    if nbytes > info.file_size:
        raise ConfigError(
            f"{where}: array header declares shape {shape} ({human(nbytes)}), the member holds "
            f"{human(info.file_size)}; refused before reading"
        )


def _card(name: str, frames: int, bands: Sequence[str], step: int, description: str) -> ModelCard:
    """The card of a pixel ensemble: all configured bands, two frames where there are two."""
    require_bands(name, bands, ["IR10.8"])
    check_int(f"{name} frames", frames, 1)
    return ModelCard(
        name=name,
        family="sklearn",
        description=description,
        frames=min(frames, 2),
        bands=tuple(bands),
        step=step,
    )


@MODELS.register("gradient_boosting")
def gradient_boosting(
    frames: int,
    bands: Sequence[str],
    step: int = 1,
    max_pixels: int = 200_000,
    max_iter: int = 100,
    learning_rate: float = 0.1,
    max_leaf_nodes: int = 31,
    min_samples_leaf: int = 20,
    window: int = 5,
    n_jobs: int = 1,
) -> PixelEnsemble:
    """Histogram gradient boosting (scikit-learn) per pixel on the IR features.

    References: Friedman (2001), Greedy function approximation: a gradient boosting machine,
    Ann. Statist. 29, 1189–1232; Ke et al. (2017), LightGBM: a highly efficient gradient
    boosting decision tree, NeurIPS 30 (the histogram binning scikit-learn follows).

    Args:
        frames: Configured frames (two are used where there are two or more).
        bands: Configured bands (all are used; IR10.8 is needed).
        step: Frame step.
        max_pixels: Most training pixels the fit uses.
        max_iter: Boosting iterations (trees); no early stopping.
        learning_rate: Shrinkage.
        max_leaf_nodes: Leaves per tree.
        min_samples_leaf: Fewest training pixels per leaf.
        window: Texture window side (odd).
        n_jobs: OpenMP threads (the result does not depend on it).
    """
    card = _card(
        "gradient_boosting",
        frames,
        bands,
        step,
        "Histogram gradient boosting of log1p(rain) on per-pixel IR features "
        "(Friedman 2001; Ke et al. 2017)",
    )
    for key, value, low in (
        ("max_pixels", max_pixels, 1),
        ("max_iter", max_iter, 1),
        ("max_leaf_nodes", max_leaf_nodes, 2),
        ("min_samples_leaf", min_samples_leaf, 1),
        ("n_jobs", n_jobs, 1),
    ):
        check_int(f"gradient_boosting {key}", value, low)
    check_positive("gradient_boosting learning_rate", learning_rate)
    check_window(window)

    def make(seed: int) -> HistGradientBoostingRegressor:
        return HistGradientBoostingRegressor(
            max_iter=max_iter,
            learning_rate=learning_rate,
            max_leaf_nodes=max_leaf_nodes,
            min_samples_leaf=min_samples_leaf,
            early_stopping=False,
            random_state=seed,
        )

    return PixelEnsemble(
        card,
        make,
        window=window,
        max_pixels=max_pixels,
        estimated_depth=max_iter * (np.log2(max_leaf_nodes) + 1),
        n_jobs=n_jobs,
    )


@MODELS.register("random_forest")
def random_forest(
    frames: int,
    bands: Sequence[str],
    step: int = 1,
    max_pixels: int = 100_000,
    n_estimators: int = 50,
    max_depth: int = 16,
    min_samples_leaf: int = 10,
    max_features: float = 0.33,
    window: int = 5,
    n_jobs: int = 1,
) -> PixelEnsemble:
    """Random forest (scikit-learn) per pixel on the IR features.

    References: Breiman (2001), Random forests, Machine Learning 45, 5–32; Kühnlein et al.
    (2014), Remote Sens. Environ. 141, 129–143 (random forests on SEVIRI for rain rates).

    Args:
        frames: Configured frames (two are used where there are two or more).
        bands: Configured bands (all are used; IR10.8 is needed).
        step: Frame step.
        max_pixels: Most training pixels the fit uses.
        n_estimators: Trees.
        max_depth: Deepest split level.
        min_samples_leaf: Fewest training pixels per leaf.
        max_features: Fraction of the features tried at each split.
        window: Texture window side (odd).
        n_jobs: Threads that build and apply the trees (the result does not depend on it).
    """
    card = _card(
        "random_forest",
        frames,
        bands,
        step,
        "Random forest of log1p(rain) on per-pixel IR features (Breiman 2001; Kühnlein 2014)",
    )
    for key, value, low in (
        ("max_pixels", max_pixels, 1),
        ("n_estimators", n_estimators, 1),
        ("max_depth", max_depth, 1),
        ("min_samples_leaf", min_samples_leaf, 1),
        ("n_jobs", n_jobs, 1),
    ):
        check_int(f"random_forest {key}", value, low)
    check_positive("random_forest max_features", max_features, maximum=1.0)
    check_window(window)

    def make(seed: int) -> RandomForestRegressor:
        return RandomForestRegressor(
            n_estimators=n_estimators,
            max_depth=max_depth,
            min_samples_leaf=min_samples_leaf,
            max_features=max_features,
            n_jobs=n_jobs,
            random_state=seed,
        )

    expected_depth = min(max_depth, np.log2(max(max_pixels / min_samples_leaf, 2.0)))
    return PixelEnsemble(
        card,
        make,
        window=window,
        max_pixels=max_pixels,
        estimated_depth=n_estimators * (expected_depth + 1),
        n_jobs=n_jobs,
    )
