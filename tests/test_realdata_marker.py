"""The ``realdata`` marker: skip without ../shared/data, fail when CI requires it."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest_plugins = ["pytester"]
CONFTEST = (Path(__file__).parent / "conftest.py").read_text()


@pytest.fixture
def realdata_suite(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makeconftest(CONFTEST)
    pytester.makeini("[pytest]\nmarkers =\n    realdata: needs real data\n")
    pytester.makepyfile(
        test_x="""
import pytest

@pytest.mark.realdata
def test_needs_data(real_data):
    assert real_data.is_dir()
"""
    )
    return pytester


def test_skips_with_a_reason_without_the_data(realdata_suite, monkeypatch, tmp_path):
    monkeypatch.setenv("QPEBENCH_DATA", str(tmp_path / "absent"))
    monkeypatch.delenv("QPEBENCH_REQUIRE_REALDATA", raising=False)
    result = realdata_suite.runpytest("-rs")
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(["*real sample data not found at*absent*"])


def test_fails_when_ci_requires_the_data(realdata_suite, monkeypatch, tmp_path):
    monkeypatch.setenv("QPEBENCH_DATA", str(tmp_path / "absent"))
    monkeypatch.setenv("QPEBENCH_REQUIRE_REALDATA", "1")
    result = realdata_suite.runpytest()
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*QPEBENCH_REQUIRE_REALDATA=1 but real sample data not found*"])


def test_runs_with_the_data(realdata_suite, monkeypatch, tmp_path):
    monkeypatch.setenv("QPEBENCH_DATA", str(tmp_path))
    monkeypatch.setenv("QPEBENCH_REQUIRE_REALDATA", "1")
    realdata_suite.runpytest().assert_outcomes(passed=1)
