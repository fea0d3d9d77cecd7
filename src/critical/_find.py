"""How callbacks find each other on a trainer: one ``runtime_checkable`` Protocol per role (the
detector, the cut, the run directory, the energy meter, the robustness evaluator) and a finder
for each. By role rather than by class, so the modules below the callbacks (the summary, the run
files) need not import them, and a stand-in with the same members works too.

Example:
    >>> from types import SimpleNamespace
    >>> cut = SimpleNamespace(cut_epoch=3)
    >>> trainer = SimpleNamespace(callbacks=[object(), cut])
    >>> find_cutoff(trainer) is cut, find_detector(trainer)
    (True, None)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, TypeVar, runtime_checkable

__all__ = [
    "Cutoff",
    "Detector",
    "EnergyMeter",
    "RobustnessResults",
    "RunFiles",
    "find_cutoff",
    "find_detector",
    "find_energy",
    "find_first",
    "find_robustness",
    "find_run_directory",
]

T = TypeVar("T")


@runtime_checkable
class Detector(Protocol):
    """Decides the end of the critical period (:class:`~critical.callbacks.CriticalPeriod`):
    ``event`` is ``None`` until it fires, then has ``to_dict()``."""

    event: Any


@runtime_checkable
class Cutoff(Protocol):
    """Cuts k (:class:`~critical.callbacks.AugmentationCutoff`): ``cut_epoch`` is the first epoch
    at the new k, ``None`` before the cut."""

    cut_epoch: int | None


@runtime_checkable
class RunFiles(Protocol):
    """Owns the run directory (:class:`~critical.callbacks.RunDirectory`): ``path`` once made."""

    path: Any

    def ensure_directory(self, trainer: Any) -> Any: ...


@runtime_checkable
class EnergyMeter(Protocol):
    """Measures time and energy (:class:`~critical.callbacks.EnergyTracker`)."""

    history: Any

    def summary(self) -> dict[str, Any]: ...

    def summary_metrics(self) -> dict[str, float]: ...


@runtime_checkable
class RobustnessResults(Protocol):
    """Holds robustness results (:class:`~critical.callbacks.RobustnessEvaluator`)."""

    results: Any
    all_results: dict[str, Any]


def find_first(
    trainer: Any, role: type[T], accept: Callable[[Any], bool] | None = None
) -> T | None:
    """The first callback of ``trainer`` that has ``role`` (and that ``accept`` accepts)."""
    for cb in getattr(trainer, "callbacks", None) or []:
        if isinstance(cb, role) and (accept is None or accept(cb)):
            return cb
    return None


def _decided(cb: Any) -> bool:
    return cb.event is None or callable(getattr(cb.event, "to_dict", None))


def find_detector(trainer: Any) -> Detector | None:
    """The detector: the first callback whose ``event`` is ``None`` or has ``to_dict()``."""
    return find_first(trainer, Detector, _decided)  # type: ignore[type-abstract]  # a Protocol


def find_cutoff(trainer: Any) -> Cutoff | None:
    """The cut: the first callback with a ``cut_epoch``."""
    return find_first(trainer, Cutoff)  # type: ignore[type-abstract]  # a Protocol


def find_run_directory(trainer: Any) -> RunFiles | None:
    """The run directory: the first callback with ``ensure_directory``."""
    return find_first(trainer, RunFiles)  # type: ignore[type-abstract]  # a Protocol


def find_energy(trainer: Any) -> EnergyMeter | None:
    """The energy meter: the first callback with ``summary_metrics``, ``summary``, ``history``."""
    return find_first(trainer, EnergyMeter)  # type: ignore[type-abstract]  # a Protocol


def find_robustness(trainer: Any) -> RobustnessResults | None:
    """The robustness evaluator: the first callback with ``results`` and ``all_results``."""
    return find_first(trainer, RobustnessResults)  # type: ignore[type-abstract]  # a Protocol
