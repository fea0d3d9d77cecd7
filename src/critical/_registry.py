"""The registry of the library's metric callbacks: each declares, once and on its own class, the
names it logs (``metric_names``), its key in the ``critical`` CLI (``cli_key``, by default the
first name's head) and its columns in the printed run summary (``summary_columns``);
:class:`~critical.callbacks._base.MetricCallback` records every library subclass that declares
``metric_names`` here when the class is created. The detector's known names, the CLI's callback
keys and monitor choices and the summary's per-epoch columns are read from here.

This module imports nothing (it is on the bottom floor, so the summary can read it) and is
complete once :mod:`critical.callbacks` is imported (its ``__init__`` imports every callback).
``critical fit --help`` must not import Lightning, so :func:`declared_metrics` reads the same
declarations from the callbacks' source files instead (``tests/test_cli.py`` checks that both
agree).

Example:
    >>> import critical.callbacks
    >>> entries = {e.key: e for e in metric_entries()}
    >>> entries["layer_rotation"].names, entries["gradient_norm"].cls.__name__
    (('layer_rotation',), 'GradientNorm')
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "MetricEntry",
    "declared_metric_names",
    "declared_metrics",
    "known_metric_classes",
    "metric_entries",
    "register",
    "summary_columns",
]

#: a column of the printed per-epoch table: (title, logged key, format)
Column = tuple[str, str, str]


@dataclass(frozen=True)
class MetricEntry:
    """One metric callback class: what it logs, its CLI key and its summary columns (with the
    logged keys: ``critical/`` + the metric's name)."""

    cls: Any
    key: str
    names: tuple[str, ...]
    columns: tuple[Column, ...] = ()


_ENTRIES: dict[str, MetricEntry] = {}


def register(cls: Any) -> None:
    """Record a metric callback class (called by ``MetricCallback.__init_subclass__``)."""
    names = tuple(cls.metric_names)
    key = getattr(cls, "cli_key", None) or names[0].partition("/")[0]
    other = _ENTRIES.get(key)
    if other is not None and other.cls.__qualname__ != cls.__qualname__:
        raise TypeError(f"{cls.__name__} and {other.cls.__name__} both take the key {key!r}")
    columns = tuple(
        (title, f"critical/{name}", fmt) for title, name, fmt in getattr(cls, "summary_columns", ())
    )
    _ENTRIES[key] = MetricEntry(cls, key, names, columns)


def metric_entries() -> list[MetricEntry]:
    """The registered metric callbacks, by key."""
    return [_ENTRIES[k] for k in sorted(_ENTRIES)]


def known_metric_classes() -> dict[str, Any]:
    """Metric name -> the library callback class that logs it."""
    return {name: e.cls for e in metric_entries() for name in e.names}


def summary_columns() -> list[Column]:
    """The metric columns of the printed per-epoch table, in key order."""
    return [c for e in metric_entries() for c in e.columns]


def declared_metrics() -> list[tuple[str, tuple[str, ...]]]:
    """``(cli key, metric names)`` of each class in ``critical/callbacks/*.py`` whose body declares
    ``metric_names``, read from the source without importing it (for ``critical fit --help``,
    which must not import Lightning), by key: what :func:`metric_entries` holds once the callbacks
    are imported."""
    found: dict[str, tuple[str, ...]] = {}
    for path in sorted((Path(__file__).parent / "callbacks").glob("*.py")):
        text = path.read_text(encoding="utf-8")
        if "metric_names = (" not in text:
            continue
        for node in ast.parse(text).body:
            if not isinstance(node, ast.ClassDef):
                continue
            values = {
                t.id: stmt.value
                for stmt in node.body
                if isinstance(stmt, ast.Assign)
                for t in stmt.targets
                if isinstance(t, ast.Name) and t.id in ("metric_names", "cli_key")
            }
            if "metric_names" not in values:
                continue
            names = tuple(ast.literal_eval(values["metric_names"]))
            key = ast.literal_eval(values["cli_key"]) if "cli_key" in values else None
            found[key or names[0].partition("/")[0]] = names
    return sorted(found.items())


def declared_metric_names() -> tuple[str, ...]:
    """Every metric name :func:`declared_metrics` finds, by key."""
    return tuple(name for _, names in declared_metrics() for name in names)
