"""qpebench: does an IR rain retrieval still work in another region, satellite or radar network?

The core package: the sample interface, the band catalogue, the registries, the sample store,
splits, metrics, the runner and the command line. Adapters live in :mod:`qpebench.datasets`,
models in :mod:`qpebench.baselines` and result rendering in :mod:`qpebench.leaderboard`.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("qpebench")
except PackageNotFoundError:  # pragma: no cover - running from a source tree without install
    __version__ = "0+unknown"

__all__ = ["__version__"]
