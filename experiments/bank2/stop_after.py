"""The library's :class:`~critical.callbacks.StopAfterEpoch`
(``src/critical/callbacks/stop_after_epoch.py``, loaded from this checkout), importable as
``stop_after.StopAfterEpoch`` by the bank's runs, whose frozen ``critical`` package predates it
(``prefix.py`` puts this folder on their ``PYTHONPATH``)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

_FILE = Path(__file__).resolve().parents[2] / "src/critical/callbacks/stop_after_epoch.py"
_spec = importlib.util.spec_from_file_location("stop_after_epoch", _FILE)
assert _spec is not None and _spec.loader is not None
_module = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = _module
_spec.loader.exec_module(_module)


class StopAfterEpoch(_module.StopAfterEpoch):  # type: ignore[misc,name-defined]
    """As the library's (this module's name is what the runs' ``--trainer.callbacks+=`` reads)."""
