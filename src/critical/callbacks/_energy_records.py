"""EnergyTracker's per-epoch records and what is built from them: the cut read from the trainer,
each epoch's entry in the history (its cost and phase), the values logged per epoch, the
summary's assembly and the checkpoint state. The arithmetic itself is
:mod:`critical.accounting`'s; :class:`~critical.callbacks.EnergyTracker` calls these with its
own state.

Example:
    >>> history = []
    >>> entry = {"epoch": 0, "multiplicity": 3, "duration_s": 2.0, "samples": 300,
    ...          "energy_kwh": 0.5, "co2_kg": None}
    >>> history = add_entry(history, entry, price_per_kwh=0.2, cut={"source": None})
    >>> entry["cost"], entry["phase"], entry["flops"]
    (0.1, 'before', None)
    >>> epoch_metrics(history, entry)["energy/total_cost"]
    0.1
"""

from __future__ import annotations

from typing import Any, Protocol

import lightning.pytorch as pl

from critical._find import find_cutoff
from critical.accounting import (
    QUANTITIES,
    cut_boundary,
    phase,
    phase_summary,
    summary_scalars,
    theoretical_saving,
    totals,
)
from critical.callbacks._epoch_meter import EpochMeter
from critical.callbacks._measurement import summarize_measurement

__all__ = [
    "PREFIX",
    "Tracker",
    "add_entry",
    "boundary",
    "checkpoint_state",
    "epoch_metrics",
    "read_cut",
    "restore_state",
    "summarize",
    "summary_metrics",
]

#: prefix of every key EnergyTracker logs
PREFIX = "energy/"


class Tracker(Protocol):
    """What these functions read and restore of an :class:`~critical.callbacks.EnergyTracker`."""

    country_iso_code: str
    region: str | None
    price_per_kwh: float
    currency: str
    history: list[dict[str, Any]]
    fit_duration_s: float | None
    max_epochs: int | None
    interrupted_epoch: dict[str, Any] | None
    _meter: EpochMeter
    _cut: dict[str, Any]
    _resume_partial: dict[str, Any] | None

    @property
    def model(self) -> dict[str, Any] | None: ...
    @property
    def missing(self) -> str | None: ...
    @property
    def measurement(self) -> dict[str, dict[str, Any]] | None: ...
    @property
    def _energy_here(self) -> bool: ...


def read_cut(trainer: pl.Trainer) -> dict[str, Any]:
    """The cut as the trainer's :class:`~critical.callbacks.AugmentationCutoff` knows it
    (``{"source": None}`` without one; ``plan`` only for a staged cut)."""
    cutoff = find_cutoff(trainer)
    if cutoff is None:
        return {"source": None}
    cut = {
        "source": "cutoff",
        "cut_epoch": getattr(cutoff, "cut_epoch", None),
        "multiplicity_before": getattr(cutoff, "multiplicity_before", None),
        "multiplicity_after": getattr(cutoff, "multiplicity_after", None),
    }
    plan = getattr(cutoff, "plan", None)
    if getattr(cutoff, "stages", ()) and plan:
        cut["plan"] = [list(step) for step in plan]
    return cut


def boundary(history: list[dict[str, Any]], cut: dict[str, Any]) -> dict[str, Any]:
    """``cut_epoch`` (None: no cut), where it came from, and k before/after."""
    cutoff = cut if cut.get("source") == "cutoff" else None
    return cut_boundary(history, cutoff)


def add_entry(
    history: list[dict[str, Any]],
    entry: dict[str, Any],
    price_per_kwh: float,
    cut: dict[str, Any],
) -> list[dict[str, Any]]:
    """The history with ``entry`` in its epoch's place (replacing an older one); ``entry`` gains
    ``flops`` (``None`` if absent), ``cost`` and ``phase``."""
    entry.setdefault("flops", None)
    entry["cost"] = None if entry["energy_kwh"] is None else entry["energy_kwh"] * price_per_kwh
    history = [h for h in history if h["epoch"] != entry["epoch"]]
    history.append(entry)
    history.sort(key=lambda h: h["epoch"])
    entry["phase"] = phase(entry["epoch"], boundary(history, cut)["cut_epoch"])
    return history


def epoch_metrics(history: list[dict[str, Any]], entry: dict[str, Any]) -> dict[str, float]:
    """What is logged for ``entry``: its quantities and the running totals (``None``: left out)."""
    total = totals(history)
    metrics: dict[str, Any] = {"samples": float(entry["samples"])}
    for q in QUANTITIES:
        metrics[q] = entry[q]
        metrics[f"total_{q}"] = total[q]
    return {PREFIX + k: float(v) for k, v in metrics.items() if v is not None}


def summarize(tracker: Tracker) -> dict[str, Any]:
    """:meth:`EnergyTracker.summary <critical.callbacks.EnergyTracker.summary>` of ``tracker``."""
    bounds = boundary(tracker.history, tracker._cut)
    accounts = phase_summary(tracker.history, bounds)
    energy = [h.get("energy_kwh") for h in tracker.history]
    available = bool(energy) and all(v is not None for v in energy)
    return {
        "country_iso_code": tracker.country_iso_code,
        "region": tracker.region,
        "price_per_kwh": tracker.price_per_kwh,
        "currency": tracker.currency,
        "energy_available": available,
        **summarize_measurement(tracker.measurement, accounts["total"], available),
        "missing": tracker.missing,
        "not_written": dict(tracker._meter.not_written),
        "hardware": tracker._meter.hardware,
        "model": tracker.model,
        "fit_duration_s": tracker.fit_duration_s,
        "max_epochs": tracker.max_epochs,
        "cut": bounds,
        "theoretical_saving": theoretical_saving(
            bounds["multiplicity_before"],
            bounds["multiplicity_after"],
            bounds["cut_epoch"],
            tracker.max_epochs,
            tracker._cut.get("plan"),  # a staged cut counts each of its steps
        ),
        **accounts,
        "interrupted_epoch": tracker.interrupted_epoch,
    }


def summary_metrics(summary: dict[str, Any]) -> dict[str, float]:
    """The scalars of a summary logged at fit end, prefixed ``energy/``."""
    return summary_scalars(summary, PREFIX)


def checkpoint_state(tracker: Tracker) -> dict[str, Any]:
    """``tracker``'s checkpoint state; a running epoch is stored as ``partial_epoch``."""
    partial = None
    if tracker._meter.current is not None:
        tracker._meter.rotate()  # read the energy so far (a task split: no effect on results)
        partial = tracker._meter.values(tracker._energy_here)
    return {
        "history": [dict(h) for h in tracker.history],
        "cut": dict(tracker._cut),
        "missing": tracker.missing,
        "fit_duration_s": tracker.fit_duration_s,
        "partial_epoch": partial,
        "measurement": tracker.measurement,
        "model": tracker.model,
    }


def restore_state(tracker: Tracker, state_dict: dict[str, Any]) -> None:
    """Restore :func:`checkpoint_state` into ``tracker`` (a partial epoch is completed by the
    next ``on_train_epoch_start``)."""
    tracker.history = [dict(h) for h in state_dict.get("history", [])]
    tracker._cut = dict(state_dict.get("cut", {}))
    tracker.fit_duration_s = state_dict.get("fit_duration_s")
    tracker._meter.measurement = state_dict.get("measurement") or tracker._meter.measurement
    if state_dict.get("model") and tracker._meter.flops.info is None:
        tracker._meter.flops.info = dict(state_dict["model"])
    partial = state_dict.get("partial_epoch")
    tracker._resume_partial = dict(partial) if partial else None
