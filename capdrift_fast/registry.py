"""Name -> object registries for benchmarks, metrics and answer filters, with entry-point groups for plugins.

Three registries, each filled from three sources, looked up lazily on first use:

- the built-in modules named in :data:`BUILTIN_MODULES` (imported by name, so this bottom layer imports
  nothing above it statically);
- ``register()`` calls (decorators in those modules, or in user code before a run);
- the installed packages' entry points in the groups ``capdrift_fast.benchmarks``, ``capdrift_fast.metrics``
  and ``capdrift_fast.filters`` (``importlib.metadata``; the entry point's name is the registered name, its
  object the benchmark, metric or filter class), as lm-evaluation-harness and inspect_ai do.

An unknown name raises :class:`~capdrift_fast.errors.UnknownNameError`: "unknown benchmark 'gsm8': Did you
mean ...? Available: ...".
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable
from importlib import metadata
from typing import Any, Generic, TypeVar

from capdrift_fast.errors import PluginError, UnknownNameError

T = TypeVar("T")

BENCHMARK_GROUP = "capdrift_fast.benchmarks"
METRIC_GROUP = "capdrift_fast.metrics"
FILTER_GROUP = "capdrift_fast.filters"

BUILTIN_MODULES: dict[str, tuple[str, ...]] = {
    BENCHMARK_GROUP: (
        "capdrift_fast.benchmarks.ifeval",
        "capdrift_fast.benchmarks.gsm8k",
        "capdrift_fast.benchmarks.superni",
        "capdrift_fast.benchmarks.template",
    ),
    METRIC_GROUP: ("capdrift_fast.metrics.registered",),
    FILTER_GROUP: ("capdrift_fast.metrics.filters",),
}
"""Modules whose import registers the built-in objects of each group (in this order)."""


class Registry(Generic[T]):
    """Registered objects of one kind by name (insertion order kept: built-ins first, then plugins).

    Args:
        kind: what is registered, for messages (``benchmark``, ``metric``).
        group: the entry-point group plugins use.
    """

    def __init__(self, kind: str, group: str) -> None:
        self.kind, self.group = kind, group
        self._items: dict[str, T] = {}
        self._loaded = False

    def register(self, name: str, obj: T | None = None) -> Any:
        """Register ``obj`` under ``name``; without ``obj``, a decorator that registers what it decorates.

        Raises:
            PluginError: ``name`` is already registered to another object.
        """

        def add(o: T) -> T:
            old = self._items.get(name)
            if old is not None and old is not o:
                raise PluginError(f"{self.kind} {name!r} is registered twice ({_where(old)} and {_where(o)}); "
                                  "rename one of them")
            self._items[name] = o
            return o

        return add if obj is None else add(obj)

    def _load(self) -> None:
        if self._loaded:
            return
        self._loaded = True
        for module in BUILTIN_MODULES.get(self.group, ()):
            importlib.import_module(module)
        for ep in metadata.entry_points(group=self.group):
            if ep.name in self._items:
                continue
            try:
                self.register(ep.name, ep.load())
            except Exception as exc:  # a broken plugin names itself, it does not take the run down silently
                raise PluginError(f"entry point {ep.name!r} = {ep.value!r} of group {self.group} could not be "
                                  f"loaded: {exc}") from None

    def get(self, name: str) -> T:
        """The object registered as ``name``.

        Raises:
            UnknownNameError: no such name (the message suggests the closest and lists all).
        """
        self._load()
        try:
            return self._items[name]
        except KeyError:
            raise UnknownNameError(self.kind, str(name), self._items) from None

    def names(self) -> list[str]:
        """Every registered name (built-ins first, in registration order)."""
        self._load()
        return list(self._items)

    def items(self) -> Iterable[tuple[str, T]]:
        """``(name, object)`` pairs, in :meth:`names` order."""
        self._load()
        return list(self._items.items())

    def __contains__(self, name: object) -> bool:
        self._load()
        return name in self._items


def _where(obj: object) -> str:
    return f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', type(obj).__name__)}"


benchmarks: Registry[Any] = Registry("benchmark", BENCHMARK_GROUP)
"""Benchmark classes (:class:`capdrift_fast.benchmarks.base.Benchmark` subclasses) by name."""

metrics: Registry[Any] = Registry("metric", METRIC_GROUP)
"""Metric classes (:class:`capdrift_fast.metrics.base.Metric` subclasses) by name."""

filters: Registry[Any] = Registry("filter", FILTER_GROUP)
"""Answer filters (:class:`capdrift_fast.metrics.filters.Filter` subclasses) by name."""


def register_benchmark(name: str) -> Callable[[T], T]:
    """Class decorator: register a benchmark class under ``name`` (``@register_benchmark("my_bench")``)."""
    return benchmarks.register(name)


def register_metric(name: str) -> Callable[[T], T]:
    """Class decorator: register a metric class under ``name`` (``@register_metric("my_metric")``)."""
    return metrics.register(name)


def register_filter(name: str) -> Callable[[T], T]:
    """Class decorator: register an answer filter class under ``name`` (``@register_filter("my_filter")``)."""
    return filters.register(name)

