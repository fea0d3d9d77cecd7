"""Stop a fit after a given epoch without touching its budget.

``Trainer(max_epochs=N)`` ends a fit after N epochs but also sizes everything read from the
budget: a cosine or OneCycle schedule, a budget-aware detector rule, the learning-rate mass left.
``StopAfterEpoch(last)`` ends the fit once epoch ``last`` (0-based) has ended, its validation and
the checkpoints saved at that epoch's end included, while ``max_epochs`` and so every schedule
stay those of the full run: the first ``last + 1`` epochs are the full run's first epochs.
``critical sweep`` uses it to train a finished trunk's first epochs again when a new branch needs
a checkpoint that is gone (:mod:`critical.sweep.regrow`).

Example:
    >>> import lightning.pytorch as pl
    >>> trainer = pl.Trainer(max_epochs=10, callbacks=[StopAfterEpoch(2)], logger=False)
    >>> trainer.max_epochs
    10
"""

from __future__ import annotations

import lightning.pytorch as pl
from typing_extensions import override

from critical.validation import check_int

__all__ = ["StopAfterEpoch"]


class StopAfterEpoch(pl.Callback):
    """Ends the fit after epoch ``last`` (0-based); the budget and the schedules are unchanged.

    Args:
        last: the last epoch to train, >= 0. A fit resumed at or after it stops after one epoch.
    """

    def __init__(self, last: int) -> None:
        self.last: int = check_int("last", last, minimum=0)

    @override
    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # ModelCheckpoint (ordered last by Lightning) still saves in this same hook
        if trainer.current_epoch >= self.last:
            trainer.should_stop = True
