"""A Lightning callback that ends a fit after a given epoch, the schedule untouched (the fit keeps
its ``max_epochs``, so the learning rate follows the same curve as the full run): used by
``prefix.py`` to train a trunk's first epochs again, with their checkpoints.

    >>> StopAfterEpoch(4).last
    4
"""

from __future__ import annotations

from lightning.pytorch import Callback, LightningModule, Trainer


class StopAfterEpoch(Callback):
    """Stops the fit once epoch ``last`` (0-based) has ended, its validation and checkpoint
    included (``ModelCheckpoint`` saves in the same hook, after this callback)."""

    def __init__(self, last: int) -> None:
        if last < 0:
            raise ValueError(f"StopAfterEpoch: last must be >= 0, got {last}")
        self.last = last

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if trainer.current_epoch >= self.last:
            trainer.should_stop = True
