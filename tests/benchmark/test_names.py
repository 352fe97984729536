"""Names that become paths, output paths kept in their folder, writable folders checked first."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from tests.benchmark.test_cli import tiny_overrides

from qpebench.config import compose_config, run_config
from qpebench.errors import ConfigError, SplitError
from qpebench.names import MAX_NAME_LENGTH, check_name, check_writable, confined, printable
from qpebench.registry import DATASETS, MODELS
from qpebench.runner import prepare_store, run_benchmark


@pytest.mark.parametrize("name", ["ok_name-1.2", "a", "_x", "A" * MAX_NAME_LENGTH, "v1.0.tar"])
def test_safe_names_are_accepted(name):
    assert check_name(name, "split name") == name


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("..", "not safe"),
        (".", "not safe"),
        (".hidden", "not safe"),
        ("a/b", "not safe"),
        ("/abs", "not safe"),
        ("..\\x", "not safe"),
        ("a b", "not safe"),
        ("-rf", "not safe"),
        ("a\x00b", "not safe"),
        ("a\nb", "not safe"),
        ("é", "not safe"),
        ("a" * (MAX_NAME_LENGTH + 1), f"is {MAX_NAME_LENGTH + 1} characters long"),
        ("", "non-empty string"),
        (None, "non-empty string"),
        (7, "non-empty string"),
    ],
)
def test_unsafe_names_are_refused_in_one_line(name, why):
    with pytest.raises(ConfigError, match=why) as caught:
        check_name(name, "split name")
    assert "\n" not in str(caught.value) and "\x00" not in str(caught.value)
    assert str(caught.value).startswith("split name")


def test_check_name_raises_the_given_error():
    with pytest.raises(SplitError):
        check_name("../x", "split name", error=SplitError)


def test_a_long_name_is_quoted_shortened():
    with pytest.raises(ConfigError) as caught:
        check_name("x" * 300, "split name")
    assert len(str(caught.value)) < 150


def test_confined_joins_and_resolves_under_the_root(tmp_path):
    assert confined(tmp_path, "a", "b.md") == tmp_path.resolve() / "a" / "b.md"
    assert confined(tmp_path) == tmp_path.resolve()
    assert confined(tmp_path, "a", "..", "b") == tmp_path.resolve() / "b"


@pytest.mark.parametrize("parts", [("..", "x"), ("a", "..", "..", "x"), ("/etc/passwd",), ("..",)])
def test_confined_refuses_a_path_outside_the_root(tmp_path, parts):
    root = tmp_path / "root"
    with pytest.raises(ConfigError, match="outside its folder"):
        confined(root, *parts)


def test_confined_refuses_a_symbolic_link_out_of_the_root(tmp_path):
    root, outside = tmp_path / "root", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    os.symlink(outside, root / "link")
    os.symlink(outside / "file.md", root / "file.md")
    with pytest.raises(ConfigError, match="outside its folder"):
        confined(root, "link", "x.md")
    with pytest.raises(ConfigError, match="outside its folder"):
        confined(root, "file.md")
    os.symlink(root / "inner", root / "inner_link")
    assert confined(root, "inner_link", "x") == root.resolve() / "inner" / "x"


def test_check_writable_creates_the_folder(tmp_path):
    folder = tmp_path / "a" / "b"
    assert check_writable(folder, "paths.runs") == folder
    assert folder.is_dir() and list(folder.iterdir()) == []  # the probe file is gone


def test_check_writable_refuses_in_one_line(tmp_path):
    a_file = tmp_path / "file"
    a_file.write_text("x")
    for folder in (Path("/dev/null/x"), a_file, a_file / "sub"):
        with pytest.raises(ConfigError, match="is not a writable folder") as caught:
            check_writable(folder, "paths.runs")
        assert "\n" not in str(caught.value)


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_check_writable_refuses_a_read_only_folder(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        with pytest.raises(ConfigError, match="not a writable folder"):
            check_writable(folder, "paths.runs")
    finally:
        folder.chmod(0o700)


def test_printable_drops_control_characters_and_terminal_escapes():
    assert printable("plain text, é → ✓") == "plain text, é → ✓"
    assert printable("\x1b[31mred\x1b[0m\x07 ok") == "red ok"
    assert printable("a\x1b[2J\x1b[Hb\x9bc\x00d") == "abcd"


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("split.name=../../../escaped_board", "split name '../../../escaped_board' is not safe"),
        ("split.name=/tmp/escaped", "split name '/tmp/escaped' is not safe"),
        (f"split.name={'x' * 300}", "is 300 characters long; at most 100"),
        ("+split.ood_test.evil$name={region:[europe]}", "ood_test set name 'evil$name' is not"),
    ],
)
def test_unsafe_split_names_in_the_configuration_are_refused(tmp_path, override, message):
    with pytest.raises(SplitError, match=message.replace("$", r"\$")) as caught:
        run_config(compose_config(tiny_overrides(tmp_path, override)))
    assert "\n" not in str(caught.value)


def test_an_unsafe_registered_model_name_is_refused(tmp_path):
    MODELS.register("evil/../../x", MODELS.get("zero_rain"))
    try:
        with pytest.raises(ConfigError, match="model name 'evil/../../x' is not safe"):
            run_config(compose_config(tiny_overrides(tmp_path, "models=['evil/../../x']")))
    finally:
        MODELS.unregister("evil/../../x")


def test_an_unsafe_registered_adapter_name_is_refused(tmp_path):
    DATASETS.register("../stores", DATASETS.get("synthetic"))
    try:
        with pytest.raises(ConfigError, match="data.adapter '../stores' is not safe"):
            run_config(compose_config(tiny_overrides(tmp_path, "data.adapter=../stores")))
    finally:
        DATASETS.unregister("../stores")


@pytest.mark.parametrize("key", ["runs"])
def test_an_unwritable_output_folder_fails_before_any_work(tmp_path, key):
    cfg = run_config(compose_config(tiny_overrides(tmp_path, f"paths.{key}=/dev/null/x")))
    started = time.perf_counter()
    with pytest.raises(ConfigError, match=f"paths.{key} /dev/null/x is not a writable folder"):
        run_benchmark(cfg, log=lambda line: pytest.fail(f"work started: {line}"))
    assert time.perf_counter() - started < 0.5
    assert not (tmp_path / "cache").exists()  # no store built


def test_an_unwritable_cache_fails_before_the_store_is_built(tmp_path):
    cfg = run_config(compose_config(tiny_overrides(tmp_path, "paths.cache=/dev/null/x")))
    started = time.perf_counter()
    with pytest.raises(ConfigError, match="paths.cache /dev/null/x is not a writable folder"):
        prepare_store(cfg.data, cfg.cache_dir, progress=False)
    assert time.perf_counter() - started < 0.5


@pytest.mark.parametrize("value", ["null", "''", "3"])
def test_a_folder_path_must_be_a_string(tmp_path, value):
    with pytest.raises(ConfigError, match="paths.runs must be a folder path"):
        run_config(compose_config(tiny_overrides(tmp_path, f"paths.runs={value}")))
