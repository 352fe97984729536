"""A store received from someone else: a hostile manifest is refused in one line, reading nothing
outside the store."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from qpebench.cli import main
from qpebench.errors import StoreError
from qpebench.store import MAX_MANIFEST_BYTES, SampleStore


@pytest.fixture
def copy(tiny_store, tmp_path: Path) -> Path:
    root = tmp_path / "store"
    shutil.copytree(tiny_store.root, root)
    return root


def edit(root: Path, change) -> None:
    path = root / "manifest.json"
    manifest = json.loads(path.read_text())
    path.write_text(json.dumps(change(manifest)))


@pytest.mark.parametrize(
    ("change", "match"),
    [
        (lambda m: [1, 2], "a manifest is a JSON object, not list"),
        (lambda m: {**m, "shards": 5}, "'shards' must be a list, not int"),
        (lambda m: {**m, "shards": [7]}, r"shards\[0\] must be an object with file: str"),
        (
            lambda m: {**m, "shards": [{**m["shards"][0], "bytes": "many"}]},
            r"shards\[0\] must be an object",
        ),
        (
            lambda m: {**m, "shards": [{**m["shards"][0], "file": "/etc/hostname"}]},
            r"shards\[0\] file '/etc/hostname' is not safe as a file name",
        ),
        (
            lambda m: {**m, "shards": [{**m["shards"][0], "file": "../outside.h5"}]},
            r"shards\[0\] file '../outside.h5' is not safe",
        ),
    ],
)
def test_a_hostile_manifest_is_refused(copy: Path, change, match: str) -> None:
    edit(copy, change)
    with pytest.raises(StoreError, match=match):
        SampleStore(copy)


def test_store_verify_on_a_hostile_manifest_is_one_line(
    copy: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    edit(copy, lambda m: {**m, "shards": [{**m["shards"][0], "file": "/etc/hostname"}]})
    assert main(["store", "verify", str(copy)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"qpebench: error: {copy}/manifest.json: ")


def test_an_oversized_manifest_is_refused_before_parsing(copy: Path) -> None:
    with (copy / "manifest.json").open("r+b") as fh:
        fh.truncate(MAX_MANIFEST_BYTES + 1)
    with pytest.raises(StoreError, match="refused before parsing"):
        SampleStore(copy)
