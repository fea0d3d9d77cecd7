"""Repository-wide pytest configuration: the doctests of modules that need an optional extra are
skipped when it is not installed (``pip install -e ".[dev]"`` leaves out ``timeseries``)."""

from __future__ import annotations

import pytest

#: modules whose doctests need aeon (the ``timeseries`` extra)
NEEDS_AEON = ("critical.data.timeseries", "critical.data.series_data")


def _has_aeon() -> bool:
    try:
        import aeon  # noqa: F401
    except ImportError:
        return False
    return True


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if _has_aeon():
        return
    skip = pytest.mark.skip(reason='needs the timeseries extra: pip install -e ".[timeseries]"')
    for item in items:
        if isinstance(item, pytest.DoctestItem) and item.name.startswith(NEEDS_AEON):
            item.add_marker(skip)
