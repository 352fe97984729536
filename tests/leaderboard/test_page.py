from __future__ import annotations

import os
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from qpebench.errors import ConfigError
from qpebench.leaderboard import curves, render
from qpebench.leaderboard.aggregate import group_records
from qpebench.leaderboard.page import page
from qpebench.records import RecordError

CHROMIUM = Path(shutil.which("chromium") or "/usr/bin/chromium")
VOID = {"meta", "img", "br", "hr", "link", "input"}


class Checker(HTMLParser):
    """Checks nesting and collects every URL-bearing attribute."""

    def __init__(self):
        super().__init__()
        self.stack: list[str] = []
        self.urls: list[str] = []
        self.images = 0

    def handle_starttag(self, tag, attrs):
        if tag not in VOID:
            self.stack.append(tag)
        self.images += tag == "img"
        self.urls += [v for k, v in attrs if k in ("src", "href", "action", "poster", "srcset")]

    def handle_endtag(self, tag):
        assert self.stack and self.stack[-1] == tag, f"</{tag}> closes {self.stack[-1:]}"
        self.stack.pop()


def check_html(text: str) -> Checker:
    checker = Checker()
    checker.feed(text)
    checker.close()
    assert checker.stack == [], f"unclosed: {checker.stack}"
    assert text.startswith("<!DOCTYPE html>")
    assert all(u.startswith("data:image/png;base64,") for u in checker.urls)
    lowered = text.lower()
    assert "<script" not in lowered and "url(" not in lowered and "@import" not in lowered
    assert "http://" not in lowered and "https://" not in lowered
    return checker


def test_page_is_well_formed_and_self_contained(records_v2):
    text = page(group_records(records_v2), title="A <b>&")
    checker = check_html(text)
    assert "<title>A &lt;b&gt;&amp;</title>" in text
    # 2 splits x (3 performance + 1 frames + 3 reliability + 3 histograms + 3 examples) + transfer
    assert checker.images == 2 * 13 + 1
    assert 'class="note"' in text  # the † footnote


def test_v1_records_get_notes_not_errors(records_v1):
    text = page(group_records(records_v1))
    checker = check_html(text)
    assert checker.images == 3  # performance diagrams only
    for note in (
        "No skill-vs-frames plot",
        "No reliability diagram",
        "No rain-rate histogram",
        "No example maps",
        "No strata",
        "No paired comparisons",
        "No transfer matrix: the records lack split.train_domain",
    ):
        assert note in text


def test_render_writes_every_format_identically(records_v2, tmp_path):
    europe = [r for r in records_v2 if r["split"]["name"] == "europe_to_all"]
    first = render(europe, tmp_path / "a", title="t")
    second = render(list(reversed(europe)), tmp_path / "b", title="t")
    assert set(first) == {"md", "csv", "tex", "html"}
    assert first["html"].name == "europe_to_all.html"
    for fmt, path in first.items():
        assert path.read_bytes() == second[fmt].read_bytes(), fmt
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == sorted(
        p.name for p in first.values()
    )


def test_render_checks_its_input(records_v1, tmp_path):
    with pytest.raises(ConfigError, match="unknown leaderboard format 'pdf'"):
        render(records_v1, tmp_path, formats=("md", "pdf"))
    assert not list(tmp_path.iterdir())
    with pytest.raises(RecordError, match="no result record"):
        render([], tmp_path)
    written = render(records_v1, tmp_path, formats=("md",))
    assert list(written) == ["md"] and written["md"].name == "europe_to_all.md"


def test_malformed_curves_are_named(make_record, tmp_path):
    rec = make_record("m", 0)
    rec["curves"]["id_test"]["histogram"]["pred"] = [1, 2]
    with pytest.raises(RecordError, match=r"run-m-0-europe-1/m: curves/id_test/histogram"):
        render([rec], tmp_path, formats=("html",))
    rec = make_record("m", 0)
    rec["examples"]["id_test"]["truth"] = [[1.0]]
    with pytest.raises(RecordError, match="differ in shape"):
        render([rec], tmp_path, formats=("html",))
    rec["examples"]["id_test"]["truth"] = {"encoding": "zlib-base64-uint16le"}
    with pytest.raises(RecordError, match="examples/id_test/truth: not a zlib"):
        render([rec], tmp_path, formats=("html",))


def test_examples_as_encoded_fields_or_lists(make_record):
    rec = make_record("m", 1)
    encoded = curves.example(rec, "id_test")
    assert np.isnan(encoded.truth[0, 0]) and encoded.ir108[0, 0] == pytest.approx(290.0)
    for key in ("ir108", "truth", "pred"):
        values = getattr(encoded, key)
        rec["examples"]["id_test"][key] = [
            [None if np.isnan(v) else v for v in row] for row in values
        ]
    listed = curves.example(rec, "id_test")
    for key in ("ir108", "truth", "pred"):
        np.testing.assert_array_equal(getattr(listed, key), getattr(encoded, key))


def test_open_last_histogram_bin(make_record):
    rec = make_record("m", 0)
    h = curves.histogram(rec, "id_test")
    assert len(h.edges) == len(h.pred) + 1 and h.edges[-1] == pytest.approx(20.0 * 20.0 / 10.0)
    rec["curves"]["id_test"]["histogram"]["edges"] = [
        0.0,
        1.0,
        2.0,
        3.0,
        5.0,
        8.0,
        13.0,
        21.0,
        34.0,
    ]
    assert list(curves.histogram(rec, "id_test").edges) == [0, 1, 2, 3, 5, 8, 13, 21, 34]
    rec["curves"]["id_test"]["histogram"]["edges"] = [0.0, 2.0, 1.0, 3.0, 5.0, 8.0, 13.0, 21.0]
    with pytest.raises(RecordError, match="edges must increase"):
        curves.histogram(rec, "id_test")
    assert curves.histogram(rec, "ood_test/conus") is not None
    del rec["curves"]
    assert curves.histogram(rec, "id_test") is None


def longest_inked_band(pixels: np.ndarray) -> int:
    inked = (pixels < 235).any(axis=(1, 2))
    best = run = 0
    for row in inked:
        run = run + 1 if row else 0
        best = max(best, run)
    return best


@pytest.mark.parametrize("schema", [1, 2])
def test_chromium_screenshot(schema, make_record, tmp_path):
    if not CHROMIUM.exists():
        reason = f"needs {CHROMIUM} (Debian's chromium package; .ci/run installs it)"
        if os.environ.get("QPEBENCH_REQUIRE_BROWSER") == "1":
            pytest.fail(f"QPEBENCH_REQUIRE_BROWSER=1 but {reason}", pytrace=False)
        pytest.skip(reason)
    records = [
        make_record(m, s, version=schema, frames=f, probability=p)
        for m, f, p in (("static_cnn", 1, False), ("prob_cnn", 2, True))
        for s in range(2)
    ]
    html_path = render(records, tmp_path / "page", formats=("html",))["html"]
    shot = tmp_path / "shot.png"
    subprocess.run(
        [
            str(CHROMIUM),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            f"--user-data-dir={tmp_path / 'profile'}",
            f"--screenshot={shot}",
            "--window-size=1400,3000",
            html_path.resolve().as_uri(),
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    image = Image.open(shot).convert("RGB")
    assert image.size == (1400, 3000)
    pixels = np.asarray(image).astype(int)
    assert pixels.std() > 20  # not blank
    # a plot (axes spine, image) inks several hundred consecutive pixel rows; tables never do
    assert longest_inked_band(pixels) > 300
    coloured = (pixels.max(axis=2) - pixels.min(axis=2)) > 100  # markers, curves, colour maps
    assert coloured.sum() > 2000
