"""One generic registry for datasets, models, metrics and splits.

Built-ins register themselves on import of their folder (:func:`load_builtins` imports them in
one place); third parties plug in through the entry-point groups ``qpebench.datasets``,
``qpebench.models``, ``qpebench.metrics`` and ``qpebench.splits``. A plugin that fails to load
warns and leaves the others working.
"""

from __future__ import annotations

import fnmatch
import importlib
import warnings
from collections.abc import Callable, Iterator
from importlib.metadata import entry_points
from typing import Any, Generic, TypeVar, overload

from qpebench.errors import DuplicateNameError, UnknownNameError, unknown_name_message

T = TypeVar("T")

#: Modules that register the built-ins; imported by :func:`load_builtins`.
BUILTIN_MODULES: tuple[str, ...] = (
    "qpebench.metrics",
    "qpebench.splits",
    "qpebench.datasets",
    "qpebench.baselines",
)


class Registry(Generic[T]):
    """A name → object mapping with clear errors.

    Args:
        kind: What the registry holds, singular (``"model"``), for messages.
        group: The entry-point group third-party plugins register under.
    """

    def __init__(self, kind: str, group: str) -> None:
        self.kind = kind
        self.group = group
        self._items: dict[str, T] = {}

    @overload
    def register(self, name: str) -> Callable[[T], T]: ...

    @overload
    def register(self, name: str, obj: T) -> T: ...

    def register(self, name: str, obj: T | None = None) -> T | Callable[[T], T]:
        """Register ``obj`` under ``name``; without ``obj``, return a decorator.

        Raises:
            DuplicateNameError: ``name`` is already registered.
        """

        def add(item: T) -> T:
            if name in self._items:
                raise DuplicateNameError(f"{self.kind} {name!r} is already registered")
            self._items[name] = item
            return item

        return add if obj is None else add(obj)

    def get(self, name: str) -> T:
        """Return the object registered under ``name``.

        Raises:
            UnknownNameError: ``name`` is not registered; the message lists the choices and the
                closest match.
        """
        try:
            return self._items[name]
        except KeyError:
            raise UnknownNameError(unknown_name_message(self.kind, name, self._items)) from None

    def names(self, pattern: str = "*") -> list[str]:
        """Return the registered names matching a shell-style ``pattern``, sorted."""
        return sorted(n for n in self._items if fnmatch.fnmatchcase(n, pattern))

    def unregister(self, name: str) -> None:
        """Remove ``name`` (for tests and plugin reloads)."""
        self.get(name)
        del self._items[name]

    def load_plugins(self) -> list[str]:
        """Load this registry's entry points; a failing plugin warns instead of raising.

        An entry point naming a module (``my_models = pkg.models``) is imported and registers
        what it defines; one naming an object (``my_model = pkg.models:build``) registers that
        object under the entry point's name.

        Returns:
            The names of the entry points that loaded.
        """
        loaded = []
        for ep in entry_points(group=self.group):
            try:
                obj = ep.load()
                # ``name = pkg.module`` registers itself on import; ``name = pkg:factory``
                # points at the object to register under the entry point's name.
                if ep.name not in self._items and ":" in ep.value:
                    self.register(ep.name, obj)
            except Exception as exc:  # one broken plugin must not break the rest
                warnings.warn(
                    f"qpebench: {self.kind} plugin {ep.name!r} ({ep.value}) failed to load: {exc}",
                    RuntimeWarning,
                    stacklevel=2,
                )
            else:
                loaded.append(ep.name)
        return loaded

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._items)


DATASETS: Registry[Any] = Registry("dataset", "qpebench.datasets")
MODELS: Registry[Any] = Registry("model", "qpebench.models")
METRICS: Registry[Any] = Registry("metric", "qpebench.metrics")
SPLITS: Registry[Any] = Registry("split", "qpebench.splits")
#: File readers of radar products (``qpebench.datasets.radar.RadarReader``), by source name.
RADAR_READERS: Registry[Any] = Registry("radar reader", "qpebench.radar_readers")
#: File readers of geostationary IR products (``qpebench.datasets.satellite.SatelliteReader``).
SATELLITE_READERS: Registry[Any] = Registry("satellite reader", "qpebench.satellite_readers")
ALL_REGISTRIES: tuple[Registry[Any], ...] = (
    DATASETS,
    MODELS,
    METRICS,
    SPLITS,
    RADAR_READERS,
    SATELLITE_READERS,
)

_loaded = False


def load_builtins() -> None:
    """Import the built-in datasets, models, metrics and splits, then the plugins (once)."""
    global _loaded
    if _loaded:
        return
    for module in BUILTIN_MODULES:
        importlib.import_module(module)
    for registry in ALL_REGISTRIES:
        registry.load_plugins()
    _loaded = True
