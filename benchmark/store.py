"""The sample store: HDF5 shards, a metadata table and a manifest with the dataset version.

Layout of a store directory::

    manifest.json        what the store holds, its shards with sizes and checksums, and the
                         dataset version (a hash of the content); written last, atomically
    metadata.csv         one row per sample (region, time, season, patch origin, rain fraction …)
    shard-00000.h5       ir (N,T,C,H,W) uint16 packed Tb (CF scale_factor/add_offset, K),
    shard-00001.h5       rain (N,H,W) float32 mm/h (NaN = no data), valid (N,H,W) bool,
    ...                  time (N,T) int64 s since 1970, a metadata group (one column each) and,
                         in generated stores, an aux group (N,H,W) float32 per auxiliary field
                         (true rain, the generator's hidden states: qpebench.sample.AUX_FIELDS)

Every adapter, real or synthetic, writes through :class:`SampleStoreWriter`, which writes each
shard atomically and records it in a progress file, so an interrupted build resumes where it
stopped. :class:`SampleStore` reads samples at random with one HDF5 handle per shard and process.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import numpy.typing as npt
import pandas as pd
import xarray as xr
from pyproj import CRS

from qpebench import __version__
from qpebench.atomic import write_bytes_atomic, write_json_atomic, write_with
from qpebench.bands import validate_bands
from qpebench.errors import (
    ConfigError,
    SampleValidationError,
    StoreError,
    UnknownNameError,
    unknown_name_message,
)
from qpebench.locks import holds_lock
from qpebench.names import check_name
from qpebench.sample import (
    AUX_FIELDS,
    IR_UNITS,
    RAIN_UNITS,
    Sample,
    check_oracle_inputs,
    validate_sample,
)

FORMAT = "qpebench-sample-store"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
METADATA = "metadata.csv"
PROGRESS = ".progress.json"

#: Brightness temperature packing: uint16 counts, 0.01 K resolution from 100 K (CF convention).
TB_SCALE = 0.01
TB_OFFSET = 100.0
_TB_FILL = np.iinfo(np.uint16).max


@dataclass
class SampleBatch:
    """Several samples as stacked arrays plus their metadata rows (the store's unit of I/O).

    ``aux`` holds auxiliary fields ``(N, H, W)`` float32 by name
    (:data:`~qpebench.sample.AUX_FIELDS`): those a generator writes or a reader asked for.
    """

    ir: npt.NDArray[np.float32]
    rain: npt.NDArray[np.float32]
    valid: npt.NDArray[np.bool_]
    time: npt.NDArray[np.int64]
    metadata: pd.DataFrame
    aux: dict[str, npt.NDArray[np.float32]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = self.ir.shape[0]
        if self.ir.ndim != 5:
            raise ValueError(f"ir must be (N, T, C, H, W), got shape {self.ir.shape}")
        h, w = self.ir.shape[-2:]
        if self.rain.shape != (n, h, w) or self.valid.shape != (n, h, w):
            raise ValueError(
                f"rain {self.rain.shape} and valid {self.valid.shape} must be {(n, h, w)}"
            )
        if self.time.shape != (n, self.ir.shape[1]):
            raise ValueError(f"time must be {(n, self.ir.shape[1])}, got {self.time.shape}")
        if len(self.metadata) != n:
            raise ValueError(f"metadata has {len(self.metadata)} rows for {n} samples")
        for name, values in self.aux.items():
            if values.shape != (n, h, w):
                raise ValueError(f"aux {name!r} must be {(n, h, w)}, got {values.shape}")

    def __len__(self) -> int:
        return int(self.ir.shape[0])


@dataclass
class StoreSpec:
    """What a store will hold, fixed before the first shard is written.

    Attributes:
        bands: Canonical bands, in array order.
        frames: Frames per sample (T).
        patch_shape: (H, W) of each patch.
        adapter: Name of the adapter that writes the store.
        adapter_config: The adapter's configuration (JSON-serialisable), part of the version.
        grids: Grid definitions by name (CRS, cell size, corner), referenced by metadata rows.
        sources: Source files with checksums (empty for generated data).
        aux: Auxiliary fields every shard holds (:data:`~qpebench.sample.AUX_FIELDS`).
    """

    bands: tuple[str, ...]
    frames: int
    patch_shape: tuple[int, int]
    adapter: str
    adapter_config: dict[str, Any]
    grids: dict[str, dict[str, Any]]
    sources: list[dict[str, Any]] = field(default_factory=list)
    aux: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        self.bands = validate_bands(list(self.bands))
        self.aux = tuple(str(a) for a in self.aux)
        for name in self.aux:
            if name not in AUX_FIELDS:
                raise UnknownNameError(unknown_name_message("auxiliary field", name, AUX_FIELDS))
        if len(set(self.aux)) != len(self.aux):
            raise ConfigError(f"aux fields {list(self.aux)} repeat a name")
        self.patch_shape = (int(self.patch_shape[0]), int(self.patch_shape[1]))
        if self.frames < 1:
            raise ConfigError(f"frames must be at least 1, got {self.frames}")

    def to_json(self) -> dict[str, Any]:
        """Return the spec as plain JSON types."""
        out = asdict(self)
        out["bands"] = list(self.bands)
        out["patch_shape"] = list(self.patch_shape)
        out["aux"] = list(self.aux)
        return out


def sha256_file(path: Path) -> str:
    """SHA-256 of a file's bytes (hex), read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def pack_tb(ir: npt.NDArray[np.floating[Any]]) -> npt.NDArray[np.uint16]:
    """Pack brightness temperature in K into uint16 counts (0.01 K steps from 100 K)."""
    counts = np.rint((ir - TB_OFFSET) / TB_SCALE)
    if np.isnan(counts).any() or counts.min() < 0 or counts.max() >= _TB_FILL:
        raise ValueError("brightness temperature is NaN or outside [100, 755] K; cannot pack")
    out: npt.NDArray[np.uint16] = counts.astype(np.uint16)
    return out


def unpack_tb(counts: npt.NDArray[np.uint16]) -> npt.NDArray[np.float32]:
    """Inverse of :func:`pack_tb`."""
    return (counts.astype(np.float32) * np.float32(TB_SCALE) + np.float32(TB_OFFSET)).astype(
        np.float32
    )


def _sample_meta(row: dict[Any, Any], bands: Sequence[str], grid: dict[str, Any]) -> dict[str, Any]:
    """A sample's ``meta``: its metadata row plus the store's bands, units and grid.

    Raises:
        SampleValidationError: The row lacks the patch origin.
    """
    if "patch_row" not in row or "patch_col" not in row:
        raise SampleValidationError("metadata row lacks patch_row/patch_col (the patch origin)")
    meta: dict[str, Any] = {str(k): (v.item() if hasattr(v, "item") else v) for k, v in row.items()}
    meta.update(
        bands=list(bands),
        ir_units=IR_UNITS,
        rain_units=RAIN_UNITS,
        crs=grid["crs"],
        cell_size_m=grid["cell_size_m"],
        patch_origin=(int(row["patch_row"]), int(row["patch_col"])),
    )
    return meta


def _metadata_csv(frame: pd.DataFrame) -> bytes:
    buf = io.StringIO()
    frame.to_csv(buf, index=False, lineterminator="\n", float_format="%.6g")
    return buf.getvalue().encode("utf-8")


class SampleStoreWriter:
    """Write a store shard by shard; resumable and atomic.

    The temporary files of a killed build are deleted only while this thread holds the
    store's lock (:func:`qpebench.locks.holds_lock`), because without it they may be another
    live writer's. :func:`qpebench.runner.prepare_store` holds the lock for the whole build; a
    caller that writes a store other jobs may write too should hold it as well.

    Args:
        root: Store directory.
        spec: What the store holds. If a progress file with the same spec exists, finished
            shards are kept and :meth:`has_shard` reports them; with another spec the partial
            store is discarded.

    Raises:
        StoreError: ``root`` already holds a finished store.
    """

    def __init__(self, root: str | os.PathLike[str], spec: StoreSpec) -> None:
        self.root = Path(root)
        self.spec = spec
        if (self.root / MANIFEST).exists():
            raise StoreError(f"{self.root}: a finished sample store is already there")
        self.root.mkdir(parents=True, exist_ok=True)
        if holds_lock(self.root):  # no other job's writer is at work here
            for leftover in self.root.glob(".*.tmp"):  # temp files of a build that was killed
                leftover.unlink()
        self._progress: dict[str, Any] = {"spec": spec.to_json(), "shards": {}}
        progress_path = self.root / PROGRESS
        if progress_path.exists():
            try:
                old = json.loads(progress_path.read_text())
            except (OSError, json.JSONDecodeError):
                old = {}
            if old.get("spec") == self._progress["spec"]:
                self._progress["shards"] = {
                    k: v for k, v in old.get("shards", {}).items() if self._intact(v)
                }
            else:
                for stale in self.root.glob("shard-*.h5"):
                    stale.unlink()

    def _intact(self, entry: dict[str, Any]) -> bool:
        path = self.root / entry["file"]
        return bool(
            path.exists()
            and path.stat().st_size == entry["bytes"]
            and sha256_file(path) == entry["sha256"]
        )

    def has_shard(self, index: int) -> bool:
        """Whether shard ``index`` was written completely by this or an earlier run."""
        return str(index) in self._progress["shards"]

    def write_shard(self, index: int, batch: SampleBatch) -> None:
        """Write ``batch`` as shard ``index`` (atomically) and record it in the progress file.

        Every sample is checked against the interface first.

        Raises:
            ValueError: The batch does not match the spec.
            SampleValidationError: A sample breaks the interface (names the shard and sample).
        """
        n, t, c, h, w = batch.ir.shape
        if (t, c, (h, w)) != (self.spec.frames, len(self.spec.bands), self.spec.patch_shape):
            raise ValueError(
                f"batch of shape {batch.ir.shape} does not match the store spec "
                f"(T={self.spec.frames}, C={len(self.spec.bands)}, HW={self.spec.patch_shape})"
            )
        name = f"shard-{index:05d}.h5"
        for i, row in enumerate(batch.metadata.to_dict("records")):
            grid = self.spec.grids.get(str(row.get("grid")))
            if grid is None:
                raise SampleValidationError(
                    f"{self.root / name} sample {i}: grid {row.get('grid')!r} is not in the "
                    f"store spec ({sorted(self.spec.grids)})"
                )
            meta = _sample_meta(row, self.spec.bands, grid)
            validate_sample(
                Sample(
                    ir=batch.ir[i],
                    rain=batch.rain[i],
                    valid=batch.valid[i],
                    time=batch.time[i],
                    meta=meta,
                ),
                name=f"{self.root / name} sample {i}",
            )
        aux = self._checked_aux(batch, name)
        counts = pack_tb(batch.ir)
        rain = np.ascontiguousarray(batch.rain, dtype=np.float32)
        valid = np.ascontiguousarray(batch.valid, dtype=np.bool_)
        time = np.ascontiguousarray(batch.time, dtype=np.int64)
        meta_csv = _metadata_csv(batch.metadata)
        content = hashlib.sha256()
        for part in (counts.tobytes(), rain.tobytes(), valid.tobytes(), time.tobytes(), meta_csv):
            content.update(part)
        for values in aux.values():
            content.update(values.tobytes())

        def write(tmp: Path) -> None:
            with h5py.File(tmp, "w", libver="latest", track_order=True) as f:
                # fletcher32: a corrupted chunk fails its read instead of returning garbage
                kw: dict[str, Any] = {
                    "compression": "gzip",
                    "compression_opts": 1,
                    "shuffle": True,
                    "fletcher32": True,
                }
                d = f.create_dataset("ir", data=counts, chunks=(1, t, c, h, w), **kw)
                d.attrs.update(
                    units=IR_UNITS,
                    standard_name="toa_brightness_temperature",
                    scale_factor=TB_SCALE,
                    add_offset=TB_OFFSET,
                    _FillValue=_TB_FILL,
                    bands=",".join(self.spec.bands),
                )
                d = f.create_dataset("rain", data=rain, chunks=(1, h, w), **kw)
                d.attrs.update(units=RAIN_UNITS, standard_name="rainfall_rate")
                f.create_dataset("valid", data=valid, chunks=(1, h, w), **kw)
                d = f.create_dataset("time", data=time, chunks=(1, t), fletcher32=True)
                d.attrs.update(units="seconds since 1970-01-01T00:00:00Z", calendar="standard")
                if aux:
                    g = f.create_group("aux")
                    for key, values in aux.items():
                        d = g.create_dataset(key, data=values, chunks=(1, h, w), **kw)
                        d.attrs.update(
                            units=AUX_FIELDS[key].units,
                            role=AUX_FIELDS[key].role,
                            long_name=AUX_FIELDS[key].description,
                        )
                g = f.create_group("metadata")
                for col in batch.metadata.columns:
                    values = batch.metadata[col].to_numpy()
                    if values.dtype == object:
                        g.create_dataset(
                            col, data=values.astype(str).astype(object), dtype=h5py.string_dtype()
                        )
                    else:
                        g.create_dataset(col, data=values)

        write_with(self.root / name, write)
        self._progress["shards"][str(index)] = {
            "file": name,
            "n": n,
            "bytes": (self.root / name).stat().st_size,
            "sha256": sha256_file(self.root / name),
            "content_sha256": content.hexdigest(),
            "metadata_csv": meta_csv.decode("utf-8"),
        }
        write_json_atomic(self.root / PROGRESS, self._progress, indent=0)

    def _checked_aux(self, batch: SampleBatch, name: str) -> dict[str, npt.NDArray[np.float32]]:
        """The batch's auxiliary fields in spec order, checked.

        Raises:
            SampleValidationError: A field missing or extra, or not finite (true rain also
                negative); the message names the shard and field.
        """
        where = self.root / name
        if sorted(batch.aux) != sorted(self.spec.aux):
            raise SampleValidationError(
                f"{where}: aux fields {sorted(batch.aux)}, the store spec says "
                f"{sorted(self.spec.aux)}"
            )
        out = {}
        for key in self.spec.aux:
            values = np.ascontiguousarray(batch.aux[key], dtype=np.float32)
            if not np.isfinite(values).all():
                raise SampleValidationError(f"{where}: aux {key!r} is NaN or infinite")
            if AUX_FIELDS[key].units == RAIN_UNITS and (values < 0).any():
                raise SampleValidationError(f"{where}: aux {key!r} has negative rain rates")
            out[key] = values
        return out

    def finalize(self) -> SampleStore:
        """Write the metadata table and the manifest; return the finished store.

        Raises:
            StoreError: No shard was written, or shard indices have gaps.
        """
        shards = self._progress["shards"]
        if not shards:
            raise StoreError(f"{self.root}: no shard was written")
        order = sorted(shards, key=int)
        if [int(k) for k in order] != list(range(len(order))):
            raise StoreError(f"{self.root}: shards {order} are not numbered 0..{len(order) - 1}")
        frames = []
        for key in order:
            part = pd.read_csv(io.StringIO(shards[key]["metadata_csv"]))
            part.insert(0, "row", np.arange(len(part)))
            part.insert(0, "shard", shards[key]["file"])
            frames.append(part)
        metadata = pd.concat(frames, ignore_index=True)
        version = hashlib.sha256(
            json.dumps(self.spec.to_json(), sort_keys=True).encode()
            + "".join(shards[k]["content_sha256"] for k in order).encode()
        ).hexdigest()[:16]
        metadata_bytes = _metadata_csv(metadata)
        write_bytes_atomic(self.root / METADATA, metadata_bytes)
        manifest = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "dataset_version": version,
            "code_version": __version__,
            "n_samples": len(metadata),
            "units": {"ir": IR_UNITS, "rain": RAIN_UNITS},
            **self.spec.to_json(),
            "shards": [
                {k: v for k, v in shards[key].items() if k != "metadata_csv"} for key in order
            ],
            "metadata_file": METADATA,
            "metadata_sha256": hashlib.sha256(metadata_bytes).hexdigest(),
        }
        write_json_atomic(self.root / MANIFEST, manifest)
        (self.root / PROGRESS).unlink(missing_ok=True)
        return SampleStore(self.root)


_ARRAYS = ("ir", "rain", "valid", "time")


def stack_oracle(batch: SampleBatch, names: Sequence[str]) -> npt.NDArray[np.float32]:
    """The batch's IR with the oracle fields ``names`` appended as channels of every frame.

    Args:
        batch: Samples read with ``aux`` holding ``names``.
        names: Oracle fields (:data:`~qpebench.sample.AUX_FIELDS`), in channel order.

    Returns:
        ``(N, T, C + len(names), H, W)`` float32; ``batch.ir`` itself when ``names`` is empty.

    Raises:
        ConfigError: A name is a truth field (never a model input).
        UnknownNameError: Not an auxiliary field.
    """
    names = check_oracle_inputs(names, "model input")
    if not names:
        return batch.ir
    n, t, _, h, w = batch.ir.shape
    extra = np.stack([batch.aux[k] for k in names], axis=1)[:, None]  # (N,1,K,H,W)
    return np.concatenate([batch.ir, np.broadcast_to(extra, (n, t, len(names), h, w))], axis=2)


_MANIFEST_KEYS = (
    "dataset_version",
    "n_samples",
    "bands",
    "frames",
    "patch_shape",
    "grids",
    "shards",
    "adapter",
    "metadata_sha256",
)


#: Largest manifest accepted, checked before JSON parsing (a real one is a few kB per shard).
MAX_MANIFEST_BYTES = 64 * 1024**2
_SHARD_KEYS: dict[str, type] = {
    "file": str,
    "n": int,
    "bytes": int,
    "sha256": str,
}


def _file_identity(path: Path) -> tuple[int, ...] | None:
    """Device, inode, size and modification time of ``path`` (``None`` if it is gone).

    An atomic rewrite changes the inode, so a replaced file never keeps its identity.
    """
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns


def _load_manifest(path: Path) -> dict[str, Any]:
    """The manifest as a JSON object, its size bounded before parsing.

    Raises:
        StoreError: Too large, not JSON, or not a JSON object.
    """
    try:
        size = path.stat().st_size
        if size > MAX_MANIFEST_BYTES:
            raise StoreError(
                f"{path}: {size:,} bytes, more than the {MAX_MANIFEST_BYTES:,} a manifest may "
                "have; refused before parsing"
            )
        manifest = json.loads(path.read_bytes())
    except (OSError, ValueError, RecursionError) as exc:  # JSONDecodeError is a ValueError
        raise StoreError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(manifest, dict):
        raise StoreError(f"{path}: a manifest is a JSON object, not {type(manifest).__name__}")
    return manifest


def _check_shards(manifest: dict[str, Any], path: Path) -> None:
    """Every shard entry names a file inside the store and has the size and checksum keys.

    Raises:
        StoreError: A malformed entry, or a file name that is not a plain name in the store.
    """
    shards = manifest["shards"]
    if not isinstance(shards, list):
        raise StoreError(f"{path}: 'shards' must be a list, not {type(shards).__name__}")
    for i, shard in enumerate(shards):
        if not isinstance(shard, dict) or any(
            not isinstance(shard.get(k), t) or isinstance(shard.get(k), bool)
            for k, t in _SHARD_KEYS.items()
        ):
            wanted = ", ".join(f"{k}: {t.__name__}" for k, t in _SHARD_KEYS.items())
            raise StoreError(f"{path}: shards[{i}] must be an object with {wanted}")
        check_name(shard["file"], f"{path}: shards[{i}] file", error=StoreError)


def _read_rows(
    datasets: dict[str, h5py.Dataset], rows: npt.NDArray[np.int64], first_frame: int
) -> dict[str, np.ndarray]:
    """Read sorted unique ``rows`` of a shard's arrays (``ir`` and ``time`` from one frame on).

    Contiguous runs of rows are read as slices, much faster in h5py than fancy indexing.
    """
    cuts = np.flatnonzero(np.diff(rows) != 1) + 1
    runs = [(int(run[0]), int(run[-1]) + 1) for run in np.split(rows, cuts)]
    out = {}
    for name, data in datasets.items():
        frames = slice(first_frame, None) if name in ("ir", "time") else slice(None)
        parts = [data[lo:hi, frames] for lo, hi in runs]
        out[name] = parts[0] if len(parts) == 1 else np.concatenate(parts)
    return out


#: libhdf5 chunk cache of each open shard dataset, in bytes: none. A sample is one chunk, read
#: once per epoch, so a cache is never hit; libhdf5's default (8 MiB per dataset) and even 1 MiB
#: grew a reader's memory with every shard it opened (docs/performance.md, training section).
SHARD_CHUNK_CACHE = 0
#: Shard files one reader (process) keeps open; the least recently used is closed beyond this, so
#: a reader's memory does not grow with the size of the store.
MAX_OPEN_SHARDS = 64


class SampleStore:
    """Random-access reader of a finished store.

    Args:
        root: Store directory.

    Raises:
        StoreError: Not a finished store, or a shard is missing or truncated.
    """

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        manifest_path = self.root / MANIFEST
        if not manifest_path.exists():
            hint = (
                " (an interrupted build: run the same command again to resume)"
                if (self.root / PROGRESS).exists()
                else ""
            )
            raise StoreError(f"{self.root}: not a finished sample store, no {MANIFEST}{hint}")
        # taken before reading: a manifest replaced in between is caught, never missed
        self._manifest_id = _file_identity(manifest_path)
        self.manifest: dict[str, Any] = _load_manifest(manifest_path)
        if self.manifest.get("format") != FORMAT:
            raise StoreError(f"{manifest_path}: not a {FORMAT} manifest")
        if self.manifest.get("format_version") != FORMAT_VERSION:
            raise StoreError(
                f"{manifest_path}: format version {self.manifest.get('format_version')}, "
                f"this qpebench reads {FORMAT_VERSION}"
            )
        missing = [k for k in _MANIFEST_KEYS if k not in self.manifest]
        if missing:
            raise StoreError(f"{manifest_path}: manifest lacks {missing}")
        _check_shards(self.manifest, manifest_path)
        for shard in self.manifest["shards"]:
            path = self.root / shard["file"]
            if not path.exists():
                raise StoreError(f"{path}: shard listed in the manifest is missing")
            size = path.stat().st_size
            if size != shard["bytes"]:
                raise StoreError(
                    f"{path}: shard is truncated or altered ({size} bytes, manifest says "
                    f"{shard['bytes']})"
                )
        metadata_path = self.root / METADATA
        try:
            metadata_bytes = metadata_path.read_bytes()
        except OSError as exc:
            raise StoreError(f"{metadata_path}: cannot read the metadata table ({exc})") from None
        if hashlib.sha256(metadata_bytes).hexdigest() != self.manifest["metadata_sha256"]:
            raise StoreError(f"{metadata_path}: checksum differs from the manifest (altered)")
        self.metadata = pd.read_csv(io.BytesIO(metadata_bytes))
        if len(self.metadata) != self.manifest["n_samples"]:
            raise StoreError(
                f"{metadata_path}: {len(self.metadata)} rows, manifest says "
                f"{self.manifest['n_samples']}"
            )
        self._shard_index = {s["file"]: i for i, s in enumerate(self.manifest["shards"])}
        self._shard_of = self.metadata["shard"].map(self._shard_index).to_numpy()
        self._row_of = self.metadata["row"].to_numpy()
        self._files: dict[int, h5py.File] = {}
        self._datasets: OrderedDict[int, dict[str, h5py.Dataset]] = OrderedDict()
        self._pid = os.getpid()

    @property
    def dataset_version(self) -> str:
        """Content hash of the store: same data and spec, same version."""
        return str(self.manifest["dataset_version"])

    @property
    def bands(self) -> tuple[str, ...]:
        """Canonical bands in array order."""
        return tuple(self.manifest["bands"])

    @property
    def frames(self) -> int:
        """Frames per sample stored."""
        return int(self.manifest["frames"])

    @property
    def patch_shape(self) -> tuple[int, int]:
        """(H, W) of each patch."""
        h, w = self.manifest["patch_shape"]
        return int(h), int(w)

    def __len__(self) -> int:
        return len(self.metadata)

    @property
    def aux(self) -> tuple[str, ...]:
        """Auxiliary fields the store holds (:data:`~qpebench.sample.AUX_FIELDS`)."""
        return tuple(self.manifest.get("aux", ()))

    def _shard_arrays(self, shard: int) -> dict[str, h5py.Dataset]:
        """The open ``ir, rain, valid, time`` and ``aux/*`` datasets of a shard (one per process).

        Raises:
            StoreError: The shard cannot be opened, or the store was rebuilt or removed since
                it was opened (a shard of the new store would not match the metadata read).
        """
        if os.getpid() != self._pid:  # forked into a data-loader worker: reopen
            self._files, self._datasets = {}, OrderedDict()
            self._pid = os.getpid()
        if shard in self._datasets:
            self._datasets.move_to_end(shard)
        else:
            while len(self._datasets) >= MAX_OPEN_SHARDS:
                oldest, _ = self._datasets.popitem(last=False)
                self._files.pop(oldest).close()
            path = self.root / self.manifest["shards"][shard]["file"]
            try:
                f = h5py.File(path, "r", rdcc_nbytes=SHARD_CHUNK_CACHE)
                names = (*_ARRAYS, *(f"aux/{a}" for a in self.aux))
                self._datasets[shard] = {name: f[name] for name in names}
            except (OSError, KeyError) as exc:
                raise StoreError(f"{path}: shard is corrupt or not HDF5 ({exc})") from None
            self._files[shard] = f
            # A rebuild deletes the old manifest before it writes any shard: while the manifest
            # is the one read, the shard just opened belongs to it.
            if _file_identity(self.root / MANIFEST) != self._manifest_id:
                self.close()
                raise StoreError(
                    f"{self.root}: the store was rebuilt or removed while open (by "
                    "`qpebench prepare --rebuild`?); open it again"
                )
        return self._datasets[shard]

    def band_indices(self, bands: Sequence[str] | None) -> list[int]:
        """Positions of ``bands`` in the store's band axis (all bands for ``None``).

        Raises:
            UnknownNameError: A band is not in the store.
        """
        if bands is None:
            return list(range(len(self.bands)))
        out = []
        for b in bands:
            if b not in self.bands:
                raise UnknownNameError(unknown_name_message("band in this store", b, self.bands))
            out.append(self.bands.index(b))
        return out

    def read(
        self,
        indices: Iterable[int] | npt.NDArray[np.integer[Any]],
        *,
        frames: int | None = None,
        step: int = 1,
        bands: Sequence[str] | None = None,
        aux: Sequence[str] = (),
    ) -> SampleBatch:
        """Read samples by global index, in the order given.

        Args:
            indices: Sample indices (rows of :attr:`metadata`).
            frames: Keep ``frames`` frames ending at the target time; all if ``None``.
            step: Keep every ``step``-th stored frame, counted back from the target (so the
                frames are ``step`` store steps apart).
            bands: Canonical bands to keep, in this order; all if ``None``.
            aux: Auxiliary fields to read into ``aux`` (none by default).

        Returns:
            The samples as a :class:`SampleBatch`.

        Raises:
            ConfigError: ``frames`` and ``step`` reach further back than the store holds.
            UnknownNameError: An auxiliary field the store does not hold.
            StoreError: A shard cannot be read.
        """
        for name in aux:
            if name not in self.aux:
                raise UnknownNameError(
                    unknown_name_message(f"auxiliary field in {self.root}", name, self.aux)
                )
        idx = np.asarray(list(indices) if not isinstance(indices, np.ndarray) else indices)
        idx = idx.astype(np.int64)
        if idx.size and (idx.min() < 0 or idx.max() >= len(self)):
            raise IndexError(f"sample index out of range 0..{len(self) - 1}")
        t_all = self.frames
        if isinstance(step, bool) or not isinstance(step, int) or step < 1:
            raise ConfigError(f"step must be a positive integer, got {step!r}")
        t = (t_all - 1) // step + 1 if frames is None else frames
        span = step * (t - 1) + 1
        if t < 1 or span > t_all:
            raise ConfigError(
                f"frames={frames}, step={step} span {span} stored frames: the store holds "
                f"{t_all} frames per sample"
            )
        band_idx = self.band_indices(bands)
        h, w = self.patch_shape
        n = idx.size
        ir = np.empty((n, t, len(band_idx), h, w), np.float32)
        rain = np.empty((n, h, w), np.float32)
        valid = np.empty((n, h, w), np.bool_)
        time = np.empty((n, t), np.int64)
        extra = {name: np.empty((n, h, w), np.float32) for name in aux}
        shards = self._shard_of[idx]
        for shard in np.unique(shards):
            pos = np.flatnonzero(shards == shard)
            rows = self._row_of[idx[pos]]
            order = np.argsort(rows, kind="stable")
            rows_sorted = rows[order]
            uniq, inverse = np.unique(rows_sorted, return_inverse=True)
            arrays = self._shard_arrays(int(shard))
            wanted = {k: arrays[k] for k in (*_ARRAYS, *(f"aux/{a}" for a in aux))}
            try:
                got = _read_rows(wanted, uniq, t_all - span)
            except (OSError, KeyError) as exc:
                path = self.root / self.manifest["shards"][int(shard)]["file"]
                raise StoreError(f"{path}: cannot read shard data ({exc})") from None
            dest = pos[order]
            ir[dest] = unpack_tb(got["ir"][inverse][:, ::step][:, :, band_idx])
            rain[dest] = got["rain"][inverse]
            valid[dest] = got["valid"][inverse]
            time[dest] = got["time"][inverse][:, ::step]
            for name in aux:
                extra[name][dest] = got[f"aux/{name}"][inverse]
        metadata = self.metadata.iloc[idx].reset_index(drop=True)
        return SampleBatch(ir=ir, rain=rain, valid=valid, time=time, metadata=metadata, aux=extra)

    def sample_meta(self, index: int) -> dict[str, Any]:
        """The ``meta`` dict of sample ``index``: its metadata row, grid, units and versions."""
        row = self.metadata.iloc[index].to_dict()
        meta = _sample_meta(row, self.bands, self.manifest["grids"][row["grid"]])
        meta["dataset_version"] = self.dataset_version
        return meta

    def coords(self, index: int) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
        """Cell-centre projected coordinates ``(y, x)`` in metres of sample ``index``."""
        meta = self.sample_meta(index)
        grid = self.manifest["grids"][meta["grid"]]
        h, w = self.patch_shape
        r0, c0 = meta["patch_origin"]
        cell = float(grid["cell_size_m"])
        y = grid["y_max"] - (r0 + np.arange(h) + 0.5) * cell
        x = grid["x_min"] + (c0 + np.arange(w) + 0.5) * cell
        return y, x

    def __getitem__(self, index: int) -> Sample:
        batch = self.read([index])
        return Sample(
            ir=batch.ir[0],
            rain=batch.rain[0],
            valid=batch.valid[0],
            time=batch.time[0],
            meta=self.sample_meta(index),
        )

    def to_xarray(self, index: int) -> xr.Dataset:
        """Sample ``index`` as a CF-annotated ``xarray.Dataset``.

        Variables ``ir (time, band, y, x)`` in K, ``rain (y, x)`` in mm/h (NaN = no data),
        ``valid (y, x)`` and the store's auxiliary fields ``(y, x)``; cell-centre projected
        coordinates ``y``/``x`` in metres; a ``crs`` grid-mapping variable from pyproj; the sample
        metadata as attributes.
        """
        sample = self[index]
        meta = sample["meta"]
        y, x = self.coords(index)
        crs = CRS.from_user_input(meta["crs"])
        grid_mapping = crs.to_cf()
        times = sample["time"].astype("datetime64[s]").astype("datetime64[ns]")
        ds = xr.Dataset(
            {
                "ir": (
                    ("time", "band", "y", "x"),
                    sample["ir"],
                    {
                        "units": IR_UNITS,
                        "standard_name": "toa_brightness_temperature",
                        "grid_mapping": "crs",
                    },
                ),
                "rain": (
                    ("y", "x"),
                    sample["rain"],
                    {"units": "mm h-1", "standard_name": "rainfall_rate", "grid_mapping": "crs"},
                ),
                "valid": (
                    ("y", "x"),
                    sample["valid"],
                    {"long_name": "radar data available and passing quality control"},
                ),
                "crs": ((), 0, grid_mapping),
            },
            coords={
                "time": ("time", times, {"standard_name": "time"}),
                "band": ("band", list(self.bands), {"long_name": "canonical band"}),
                "y": ("y", y, {"units": "m", "standard_name": "projection_y_coordinate"}),
                "x": ("x", x, {"units": "m", "standard_name": "projection_x_coordinate"}),
            },
        )
        if self.aux:
            fields = self.read([index], aux=self.aux).aux
            for name, values in fields.items():
                spec = AUX_FIELDS[name]
                attrs = {"units": spec.units, "long_name": spec.description, "role": spec.role}
                ds[name] = (("y", "x"), values[0], {**attrs, "grid_mapping": "crs"})
        skip = {"bands", "crs", "patch_origin"}
        ds.attrs.update({k: v for k, v in meta.items() if k not in skip and v is not None})
        ds.attrs["valid_time"] = str(times[-1].astype("datetime64[s]")) + "Z"
        return ds

    def verify(self) -> None:
        """Check every shard's SHA-256 against the manifest.

        Raises:
            StoreError: The first shard whose checksum differs.
        """
        for shard in self.manifest["shards"]:
            path = self.root / shard["file"]
            try:
                digest = sha256_file(path)
            except OSError as exc:
                raise StoreError(f"{path}: cannot read the shard ({exc.strerror})") from None
            if digest != shard["sha256"]:
                raise StoreError(f"{path}: checksum differs from the manifest (corrupt shard)")

    def close(self) -> None:
        """Close the open shard files."""
        for f in self._files.values():
            f.close()
        self._files, self._datasets = {}, OrderedDict()

    def __enter__(self) -> SampleStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def remove_store(root: str | os.PathLike[str]) -> None:
    """Delete a store directory (finished or partial)."""
    shutil.rmtree(root, ignore_errors=True)
