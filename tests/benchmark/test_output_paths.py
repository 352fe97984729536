"""An output folder that is a file, or lies under one, is one line naming it before any work."""

from __future__ import annotations

import pytest
from tests.benchmark.test_cli import one_error_line, tiny_overrides


@pytest.mark.parametrize("key", ["runs", "cache"])
@pytest.mark.parametrize("under_a_file", [False, True])
def test_run_refuses_an_output_path_that_is_not_a_folder(tmp_path, capsys, key, under_a_file):
    a_file = tmp_path / "a_file"
    a_file.write_text("not a folder")
    bad = a_file / "sub" if under_a_file else a_file
    err = one_error_line(capsys, ["run", *tiny_overrides(tmp_path, f"paths.{key}={bad}")])
    assert f"paths.{key} {bad} is not a writable folder" in err
    runs = tmp_path / "runs"
    assert not runs.exists() or not any(runs.iterdir())  # no run started, nothing trained
    assert key == "cache" or not (tmp_path / "cache").exists()  # no store built


@pytest.mark.parametrize("rebuild", [[], ["--rebuild"]])
def test_prepare_refuses_a_cache_that_is_not_a_folder(tmp_path, capsys, rebuild):
    a_file = tmp_path / "a_file"
    a_file.write_text("not a folder")
    argv = ["prepare", *rebuild, *tiny_overrides(tmp_path, f"paths.cache={a_file}")]
    assert f"paths.cache {a_file} is not a writable folder" in one_error_line(capsys, argv)
    assert a_file.read_text() == "not a folder"
