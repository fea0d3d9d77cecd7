"""The per-epoch metric rows of :class:`~critical.callbacks.RunDirectory`, holding only what was
logged in each epoch, and their TensorBoard copy against the epoch.

What was logged in an epoch: ``trainer.callback_metrics`` keeps every metric ever logged, so an
epoch in which a metric got no value (gradient metrics after a divergence, energy after a
codecarbon failure, validation metrics in an epoch without validation) would repeat the previous
epoch's value. Lightning stores a freshly computed tensor in ``callback_metrics`` each time a
metric is logged and computed (its epoch value is a new tensor every epoch, even when the value
is the same), and leaves a metric that was not logged untouched. So a row holds the metrics
whose tensor object is not the one seen when the epoch started: values are never compared, so a
metric that keeps its value (k = 3, epoch after epoch) is still recorded every epoch it is
logged, and one that was not logged is left out (an empty cell in ``metrics.csv``, absent from
the row in ``metrics.json``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
from lightning.pytorch.loggers import TensorBoardLogger

__all__ = ["EpochRows", "scalar", "write_epoch_scalars"]


def scalar(v: Any) -> float | None:
    """A finite Python float from a 0-d/1-element tensor or a number, else None."""
    if isinstance(v, torch.Tensor):
        if v.numel() != 1:
            return None
        v = v.detach().float().item()
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    v = float(v)
    return v if math.isfinite(v) else None


class EpochRows:
    """Rows of the epochs completed so far, one per epoch, sorted by epoch.

    Protocol: :meth:`start` at each training epoch's start (after :meth:`flush` of the previous
    one), :meth:`mark_validated` at validation end, :meth:`mark_done` at the epoch's end;
    :meth:`flush` returns the pending epoch's row once its hooks have all run (at the next
    epoch's start, or at train end), when ``trainer.callback_metrics`` holds everything logged
    for it (other callbacks' ``on_train_epoch_end`` may run after ours).
    """

    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []
        self.pending: dict[str, Any] | None = None
        self._seen: dict[str, Any] = {}  # callback_metrics when the pending epoch started

    def start(self, trainer: Any, epoch: int, multiplicity: int | None) -> None:
        self._seen = dict(trainer.callback_metrics)
        self.pending = {
            "epoch": epoch,
            "multiplicity": multiplicity,
            "done": False,
            "validated": False,
        }

    def mark_validated(self) -> None:
        if self.pending is not None:
            self.pending["validated"] = True

    def mark_done(self) -> None:
        if self.pending is not None:
            self.pending["done"] = True

    def pending_row(self, trainer: Any) -> dict[str, Any] | None:
        """The row of the epoch whose hooks have all run (``None`` if there is none)."""
        pending = self.pending
        if pending is None or not pending["done"]:
            return None
        row: dict[str, Any] = {"epoch": pending["epoch"], "multiplicity": pending["multiplicity"]}
        for k, v in trainer.callback_metrics.items():
            if k in row or self._seen.get(k) is v:  # not logged in this epoch
                continue
            value = scalar(v)
            if value is not None:
                row[k] = value
        return row

    def flush(self, trainer: Any) -> dict[str, Any] | None:
        """Record the pending epoch's row, if complete, and return it."""
        row = self.pending_row(trainer)
        self.pending = None
        if row is not None:
            self.add(row)
        return row

    def add(self, row: dict[str, Any]) -> None:
        self.rows = [r for r in self.rows if r["epoch"] != row["epoch"]] + [row]
        self.rows.sort(key=lambda r: r["epoch"])

    def samples_seen(self, epoch: int) -> int | None:
        """Training samples up to and including ``epoch`` (``energy/samples`` of the rows),
        ``None`` when a row lacks them."""
        counts = [r.get("energy/samples") for r in self.rows if r["epoch"] <= epoch]
        known = [float(c) for c in counts if c is not None]
        if not counts or len(known) < len(counts):
            return None
        return round(sum(known))


def write_epoch_scalars(
    loggers: Any, row: Mapping[str, Any], samples_seen: int | None = None
) -> None:
    """Write a row's scalars into every TensorBoard logger of ``loggers``, at step = the epoch
    (``by_epoch/<name>``) and, when known, at step = the training samples seen so far
    (``by_samples/<name>``), so that runs with different k line up (Lightning logs epoch metrics
    at the global step, which depends on k)."""
    writers = [lg.experiment for lg in loggers if isinstance(lg, TensorBoardLogger)]
    if not writers:
        return
    epoch = int(row["epoch"])
    for writer in writers:
        for key, value in row.items():
            if key == "epoch" or scalar(value) is None:
                continue
            writer.add_scalar(f"by_epoch/{key}", float(value), global_step=epoch)
            if samples_seen is not None:
                writer.add_scalar(f"by_samples/{key}", float(value), global_step=samples_seen)
        writer.flush()
