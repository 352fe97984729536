"""Every failure of the command line is one printable line; ``--debug`` shows the traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import qpebench.datasets.radar as radar
from qpebench.cli import main


def one_error_line(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("qpebench: error: "), err
    return err


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (MemoryError(), "out of memory (the input is too large)"),
        (KeyError("dataset1"), "missing key 'dataset1' in the input"),
        (OSError(28, "No space left on device"), "OSError: [Errno 28] No space left on device"),
        (TypeError("unsupported operand\ntype(s)"), "TypeError: unsupported operand type(s)"),
    ],
)
def test_builtin_errors_escaping_a_reader_are_one_line(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    error: Exception,
    expected: str,
) -> None:
    def fail(*args: object, **kwargs: object) -> None:
        raise error

    monkeypatch.setattr(radar, "detect_source", fail)
    err = one_error_line(capsys, ["inspect", str(tmp_path / "x.h5")])
    assert expected in err and "--debug shows the traceback" in err


def test_debug_shows_the_traceback(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(*args: object, **kwargs: object) -> None:
        raise KeyError("dataset1")

    monkeypatch.setattr(radar, "detect_source", fail)
    with pytest.raises(KeyError, match="dataset1"):
        main(["--debug", "inspect", str(tmp_path / "x.h5")])
    monkeypatch.setenv("QPEBENCH_DEBUG", "1")
    with pytest.raises(KeyError, match="dataset1"):
        main(["inspect", str(tmp_path / "x.h5")])


def test_no_escape_sequence_from_a_file_reaches_the_terminal(tmp_path: Path) -> None:
    # a file name (and content) with ANSI escapes and a bell, as a hostile archive could hold
    bad = tmp_path / "\x1b[2J\x1b[31mred\x07.h5"
    bad.write_bytes(b"\x1b]0;title\x07\x1b[31m not radar")
    done = subprocess.run(
        [Path(sys.executable).parent / "qpebench", "inspect", str(bad)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 2
    assert done.stderr.startswith("qpebench: error: ") and done.stderr.count("\n") == 1
    assert "\x1b" not in done.stderr and "\x07" not in done.stderr
    assert "red.h5" in done.stderr  # the name is still there, without its escapes


def test_validate_prints_no_escape_sequence_from_a_record(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    from tests.benchmark.test_records import v2_record

    record = v2_record()
    record["split"]["name"] = "\x1b[2J\x1b]0;pwned\x07evil"
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(record))
    assert main(["leaderboard", "validate", str(bad)]) == 1
    out = capsys.readouterr().out
    assert "invalid: " in out and "split name" in out and "evil" in out
    assert "\x1b" not in out and "\x07" not in out
