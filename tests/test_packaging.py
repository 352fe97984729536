"""Packaging guards: every code folder is installed under ``qpebench``, nothing else is."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FOLDERS = {
    "benchmark": "qpebench",
    "datasets": "qpebench.datasets",
    "baselines": "qpebench.baselines",
    "leaderboard": "qpebench.leaderboard",
}


def _pyproject() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text())


def _expected_packages(root: Path = REPO) -> set[str]:
    out = set()
    for folder, package in FOLDERS.items():
        for init in (root / folder).rglob("__init__.py"):
            rel = init.parent.relative_to(root / folder).parts
            out.add(".".join((package, *rel)))
    return out


def test_every_code_subpackage_is_listed_in_pyproject():
    listed = set(_pyproject()["tool"]["setuptools"]["packages"])
    missing = _expected_packages() - listed
    assert not missing, f"add to [tool.setuptools] packages: {sorted(missing)}"
    stale = listed - _expected_packages()
    assert not stale, f"listed packages without an __init__.py: {sorted(stale)}"


def test_guard_detects_a_missing_subpackage(tmp_path):
    # The guard above must fail when a folder gains a sub-package nobody listed:
    # a copy of the package folders' layout with one new sub-package.
    for init in (p for folder in FOLDERS for p in (REPO / folder).rglob("__init__.py")):
        copy = tmp_path / init.relative_to(REPO)
        copy.parent.mkdir(parents=True, exist_ok=True)
        copy.write_text("")
    (tmp_path / "baselines" / "probe").mkdir()
    (tmp_path / "baselines" / "probe" / "__init__.py").write_text("")
    listed = set(_pyproject()["tool"]["setuptools"]["packages"])
    assert _expected_packages(tmp_path) - listed == {"qpebench.baselines.probe"}


def test_only_the_qpebench_namespace_is_installed():
    tool = _pyproject()["tool"]["setuptools"]
    assert all(p == "qpebench" or p.startswith("qpebench.") for p in tool["packages"])
    assert set(tool["package-dir"]) == set(FOLDERS.values())
    for name in ("benchmark", "baselines", "leaderboard"):
        spec = importlib.util.find_spec(name)
        assert spec is None or REPO not in Path(spec.origin or "").parents, name


def test_huggingface_datasets_still_resolves_beside_ours(tmp_path):
    """A faithful stand-in for HuggingFace `datasets` installed in site-packages wins
    `import datasets`, while `qpebench.datasets` is ours, when run from the repository root."""
    site = tmp_path / "site"
    pkg = site / "datasets"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("__version__ = '3.0.0'\nIS_HUGGINGFACE = True\n")
    dist = site / "datasets-3.0.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: datasets\nVersion: 3.0.0\n")
    (dist / "top_level.txt").write_text("datasets\n")
    code = (
        "import site, sys; site.addsitedir(sys.argv[1]);"
        "import datasets, qpebench.datasets, qpebench.datasets.synthetic;"
        "print(datasets.IS_HUGGINGFACE, datasets.__file__);"
        "print(qpebench.datasets.synthetic.__name__)"
    )
    out = subprocess.run(
        [sys.executable, "-P", "-c", code, str(site)],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    assert out[0].startswith("True ") and str(site) in out[0]
    assert out[1] == "qpebench.datasets.synthetic"
    # Our distribution installs no top-level `datasets`.
    from importlib.metadata import distribution

    files = distribution("qpebench").files or []
    assert not any(str(f).split("/")[0] == "datasets" for f in files)


def test_pytest_does_not_put_the_repo_folders_on_sys_path():
    spec = importlib.util.find_spec("datasets")
    assert spec is None or REPO / "datasets" not in Path(spec.origin or "").parents
