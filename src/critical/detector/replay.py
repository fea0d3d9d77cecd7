"""Running a detector over a finished run's logged rows, as sweeps do."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from critical.detector.rule import (
    DEFAULTS,
    VAL_LOSS_KEYS,
    StabilityDetector,
    fallback_settings,
    reads_validation,
)

__all__ = ["SIGNAL_KEYS", "replay"]

#: the logged columns each ``learning_signal`` reads, in order of preference
SIGNAL_KEYS = {
    "train_loss": ["critical/train_loss"],
    "val_loss": [*VAL_LOSS_KEYS, "critical/train_loss"],
    "aug_loss": ["critical/aug_gap/aug_loss"],
}


def _validated_every_epoch(rows: Sequence[Mapping[str, Any]]) -> bool:
    """Whether every row holds a validation loss or accuracy (the run validated every epoch)."""
    keys = (*VAL_LOSS_KEYS, "val/acc", "val_acc")
    return bool(rows) and all(any(r.get(k) is not None for k in keys) for r in rows)


def _has(rows: Sequence[Mapping[str, Any]], keys: Sequence[str]) -> bool:
    return any(r.get(k) is not None for r in rows for k in keys)


def _mass_left(rows: Sequence[Mapping[str, Any]], prefix: str) -> dict[int, float]:
    """Epoch -> the share of the learning-rate mass after it: logged, else from the rows' rates."""
    logged = {int(r["epoch"]): r.get(prefix + "lr_mass_left") for r in rows}
    if rows and all(v is not None and v != "" for v in logged.values()):
        return {e: float(v) for e, v in logged.items()}  # type: ignore[arg-type]
    rates = [r.get(prefix + "lr_mean", r.get(prefix + "lr")) for r in rows]
    if not rates or any(v is None or v == "" for v in rates):
        return {}
    total, left, out = sum(float(v) for v in rates), 0.0, {}
    if total <= 0:
        return {}
    for row, v in zip(reversed(rows), reversed(rates)):
        out[int(row["epoch"])] = left / total
        left += float(v)
    return out


def _flag(row: Mapping[str, Any], key: str) -> bool | None:
    v = row.get(key)
    return None if v is None or v == "" else bool(float(v))


def _value(row: Mapping[str, Any], m: str, prefix: str) -> Any:
    """Metric ``m`` in a row: ``prefix + m`` or ``m``; a validation loss under any usual name."""
    names = VAL_LOSS_KEYS if m in VAL_LOSS_KEYS else (prefix + m, m)
    return next((row[k] for k in names if row.get(k) is not None), None)


def replay(
    rows: Sequence[Mapping[str, Any]],
    monitor: str | Sequence[str] = DEFAULTS["monitor"],
    *,
    loss_key: str | None = None,
    lr_key: str = "critical/lr",
    diverged_key: str = "critical/diverged",
    prefix: str = "critical/",
    stop: bool = True,
    budget: int | None = None,
    **settings: Any,
) -> StabilityDetector:
    """Run a detector over a run's per-epoch rows (``metrics.csv`` / ``metrics.json`` as read
    by :func:`critical.runfiles.read_rows`) and return it (``.event`` holds the decision).

    Metrics are read from the ``prefix + name`` columns (or ``name`` itself, for a metric the
    module logs, such as ``val/loss``), the loss for the learning guard from ``loss_key`` (by
    default the column of the detector's ``learning_signal``: ``critical/train_loss``,
    ``val/loss`` (``critical/train_loss`` in rows without it) or ``critical/aug_gap/aug_loss``
    (``critical/train_loss`` in a run that logged none, as its live guard read)), the learning
    rate from ``lr_key`` and its shape from ``critical/lr_rose`` and ``critical/lr_jump``,
    whether the run had diverged from ``diverged_key`` (all logged by
    :class:`~critical.callbacks.CriticalPeriod`; a non-finite loss is not). A detector replayed
    on the always-k run of a seed decides what the live detector would have decided in that run,
    since before its cut a detector run *is* the always-k run. ``stop=False`` feeds every row,
    also after the detector fired (for plots of the guards' verdicts). Settings that read
    validation metrics, replayed on rows without a validation value in every epoch, use their
    ``fallback`` (as :class:`~critical.callbacks.CriticalPeriod` does live).

    Budget-aware settings: ``mode="budget"`` reads the fit's epochs from ``budget`` (default:
    the number of rows, right for a finished run); ``floor`` reads ``critical/lr_mass_left``
    where the run logged it, else the learning-rate mass left after each epoch computed from
    the rows' ``critical/lr_mean`` (or ``critical/lr``) over all rows, which a finished
    always-k run holds whole.

    Example:
        >>> rows = [{"epoch": e, "critical/m": 1 - 0.5 ** e} for e in range(8)]
        >>> replay(rows, "m", guard_learning=False, guard_lr=False).event.epoch
        6
    """
    names = [monitor] if isinstance(monitor, str) else list(monitor)
    names = [n[len(prefix) :] if n.startswith(prefix) else n for n in names]
    every = {"monitor": names, "fallback": DEFAULTS["fallback"], **settings}
    if reads_validation(every) and not _validated_every_epoch(rows):
        every = fallback_settings(every)  # the run had no validation each epoch
        fb = every.pop("monitor")
        names = [fb] if isinstance(fb, str) else list(fb)
        names = [n[len(prefix) :] if n.startswith(prefix) else n for n in names]
    every.pop("monitor", None)
    det = StabilityDetector(names, **every)
    ordered = sorted(rows, key=lambda r: r["epoch"])
    det.budget = budget if budget is not None else len(ordered)
    mass = _mass_left(ordered, prefix) if det.floor is not None else {}
    keys = [loss_key] if loss_key else SIGNAL_KEYS[det.learning_signal]
    if not loss_key and det.learning_signal == "aug_loss" and not _has(rows, keys):
        keys = SIGNAL_KEYS["train_loss"]  # no probe in that run: its guard read the training loss
    for row in ordered:
        values = {m: _value(row, m, prefix) for m in names}
        loss = next((row[k] for k in keys if row.get(k) is not None), None)
        diverged = bool(row.get(diverged_key))
        det.update(
            int(row["epoch"]),
            values,
            loss=None if loss is None else float(loss),
            lr=row.get(lr_key),
            finite=not diverged,
            cause="the logged run diverged" if diverged else None,
            lr_rose=_flag(row, prefix + "lr_rose"),
            lr_jump=_flag(row, prefix + "lr_jump"),
            lr_mass_left=mass.get(int(row["epoch"])),
        )
        if det.fired and stop:
            break
    return det
