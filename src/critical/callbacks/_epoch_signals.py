"""The readings :class:`~critical.callbacks.CriticalPeriod` feeds its detector each epoch besides
the watched metrics: the training loss (summed on the device, one synchronisation at epoch end),
the learning rate and its shape (read after every batch as Python numbers), the validation loss
of the same epoch, and whether the weights are finite.

Example:
    >>> signals = EpochSignals()
    >>> signals.lr_mean is None  # no batch trained yet
    True
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn

from critical.callbacks._base import PREFIX
from critical.detector import GUARDS, VAL_LOSS_KEYS, LRShape

__all__ = [
    "TRAIN_LOSS_KEYS",
    "EpochSignals",
    "current_lr",
    "logged_readings",
    "read_metrics",
    "weights_finite",
]

#: the logged training-loss names read when ``training_step`` returns no loss, in this order
TRAIN_LOSS_KEYS = ("train/loss", "train_loss", "loss", "train/loss_epoch", "train_loss_epoch")


def current_lr(trainer: pl.Trainer) -> float | None:
    """The largest learning rate of the first optimizer's groups (``None`` for a tensor learning
    rate, which would cost a synchronisation to read)."""
    lrs = [g["lr"] for opt in trainer.optimizers[:1] for g in opt.param_groups if "lr" in g]
    if not lrs or not all(isinstance(v, (int, float)) for v in lrs):
        return None
    return float(max(lrs))


def logged(metrics: Mapping[str, Any], m: str) -> Any:
    """``m`` as logged, with or without the ``critical/`` prefix; the validation loss under any
    of its usual names (``val/loss``, ``val_loss``, ...)."""
    names = VAL_LOSS_KEYS if m in VAL_LOSS_KEYS else (m, PREFIX + m)
    return next((metrics[k] for k in names if k in metrics), None)


def read_metrics(
    trainer: pl.Trainer,
    pl_module: pl.LightningModule,
    metrics: list[str],
    providers: Mapping[str, Any],
    strict: bool,
) -> dict[str, float]:
    """The watched ``metrics`` of the epoch that just ended: from their callbacks
    (``providers``: finalised once per epoch, whatever the callback order), else as logged; a
    missing one is an error with ``strict`` (else left out, which restarts its streak)."""
    values: dict[str, float] = {}
    for m in metrics:
        provider = providers.get(m)
        if provider is not None:
            v = provider.finalize_epoch(trainer, pl_module).get(m)
        else:
            raw = logged(trainer.callback_metrics, m)
            if raw is None and strict:
                raise RuntimeError(
                    f"CriticalPeriod could not find the monitored metric {m!r}; available: "
                    f"{sorted(trainer.callback_metrics)}. Pass strict=False to skip missing "
                    "epochs."
                )
            v = None if raw is None else float(raw)
        if v is not None:
            values[m] = float(v)
    return values


@torch.no_grad()
def weights_finite(pl_module: pl.LightningModule) -> bool:
    """Whether every parameter is finite (one fused norm per tensor, one synchronisation)."""
    params = [p.detach() for p in pl_module.parameters()]
    if not params:
        return True
    norms = torch._foreach_norm(params)
    return bool(torch.isfinite(torch.stack([n.float() for n in norms])).all())


class EpochSignals:
    """Per-epoch loss, learning-rate and validation readings (see the module docstring).

    Args:
        loss: a logged metric to read as the training loss instead of ``training_step``'s output.
        strict: a missing ``loss`` metric is an error (else no reading).
    """

    def __init__(self, loss: str | None = None, strict: bool = True) -> None:
        self.loss, self.strict = loss, strict
        self.reset_fit()

    def reset_fit(self) -> None:
        """A new fit: forget the last one's readings (a resumed fit restores ``lr_shape``)."""
        self.lr_shape = LRShape()
        self.val_epoch: int | None = None  # the last epoch a validation run ended in
        self._val_seen = False
        self._warned_no_loss = False
        self.begin_epoch(None)

    def begin_epoch(self, trainer: pl.Trainer | None) -> None:
        self._loss_sum: torch.Tensor | None = None
        self._loss_n = 0
        #: the learning rate at epoch start (what the detector is fed)
        self.lr = None if trainer is None else current_lr(trainer)
        self.lr_shape.begin_epoch()
        self._lr_sum, self._lr_n, self._lr_now = 0.0, 0, self.lr
        if self.lr is not None:
            self.lr_shape.observe(self.lr)

    def after_batch(self, trainer: pl.Trainer, outputs: Any) -> None:
        lr = current_lr(trainer)  # after this step's scheduler step
        if lr is not None:
            self.lr_shape.observe(lr)
        if self._lr_now is not None:  # the rate this batch trained at
            self._lr_sum += self._lr_now
            self._lr_n += 1
        self._lr_now = lr
        if self.loss is not None:
            return
        loss = outputs.get("loss") if isinstance(outputs, Mapping) else outputs
        if isinstance(loss, torch.Tensor) and loss.numel() == 1:
            loss = loss.detach().float().reshape(())
            self._loss_sum = loss if self._loss_sum is None else self._loss_sum + loss
            self._loss_n += 1

    @property
    def lr_mean(self) -> float | None:
        """The mean rate the epoch's batches trained at (what the run's plot shows)."""
        return self._lr_sum / self._lr_n if self._lr_n else None

    def validation_ended(self, trainer: pl.Trainer) -> None:
        if not trainer.sanity_checking:
            self.val_epoch = trainer.current_epoch

    def epoch_loss(self, trainer: pl.Trainer, guard_learning: bool) -> float | None:
        """The epoch's training loss: the mean of what ``training_step`` returned, else the
        ``loss`` metric, else the first logged of :data:`TRAIN_LOSS_KEYS` (said once; a warning
        when there is none and the learning guard needs one)."""
        if self.loss is not None:
            raw = trainer.callback_metrics.get(self.loss)
            if raw is None and self.strict:
                raise RuntimeError(
                    f"CriticalPeriod could not find the loss metric {self.loss!r}; available: "
                    f"{sorted(trainer.callback_metrics)}"
                )
            return None if raw is None else float(raw)
        if self._loss_sum is not None and self._loss_n > 0:
            return float(self._loss_sum) / self._loss_n  # one sync, at epoch end
        # training_step returned no loss (manual optimization, or a step that returns None):
        # a loss the module logs, else no loss for the learning guard
        key = next((k for k in TRAIN_LOSS_KEYS if k in trainer.callback_metrics), None)
        if not self._warned_no_loss:
            self._warned_no_loss = True
            if key is not None:
                rank_zero_info(
                    f"[critical] training_step returns no loss: CriticalPeriod reads the logged "
                    f"{key!r} as the training loss (pass loss=<key> to choose another)"
                )
            elif guard_learning:
                rank_zero_warn(
                    "CriticalPeriod: training_step returns no loss and none of "
                    f"{list(TRAIN_LOSS_KEYS)} is logged, so the learning guard has no loss and "
                    "objects in every epoch (the detector never fires): pass "
                    "CriticalPeriod(loss='<the key your module logs its loss under>'), or "
                    "guard_learning=False"
                )
        return None if key is None else float(trainer.callback_metrics[key])

    def readings(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        detector: Any,
        aug_provider: Any,
        values: dict[str, float],
    ) -> dict[str, Any]:
        """What the detector is fed this epoch besides the watched metric ``values``: the
        training loss, the learning guard's loss (and whether it is the training loss itself),
        the learning rate, its shape, whether the weights are finite. Under DDP every rank gets
        rank 0's readings, so every rank decides the same."""
        train_loss = self.epoch_loss(trainer, detector.guard_learning)
        guard, guard_is_train = self.guard_loss(
            trainer, pl_module, detector.learning_signal, aug_provider, train_loss
        )
        state: dict[str, Any] = {
            "values": values,
            "loss": train_loss,
            "guard_loss": guard,
            "guard_is_train": guard_is_train,
            "lr": self.lr,
            "finite": weights_finite(pl_module),
            "rose": self.lr_shape.rose,
            "jumped": self.lr_shape.jumped,
        }
        if trainer.world_size > 1:
            state = trainer.strategy.broadcast(state, src=0)
        return state

    def guard_loss(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        signal: str,
        aug_provider: Any,
        train_loss: float | None,
    ) -> tuple[float | None, bool]:
        """The reading of the learning guard's ``signal`` for this epoch, and whether it is the
        training loss itself (``aug_provider``: the AugmentationGap read for ``"aug_loss"``)."""
        if signal == "aug_loss" and aug_provider is not None:
            values = aug_provider.finalize_epoch(trainer, pl_module)
            return values.get("aug_gap/aug_loss"), False
        if signal == "val_loss":
            fresh = self.val_epoch == trainer.current_epoch
            key = next((k for k in VAL_LOSS_KEYS if k in trainer.callback_metrics), None)
            if fresh and key is not None:
                self._val_seen = True
                return float(trainer.callback_metrics[key]), False
            if self._val_seen:
                return None, False  # validated in other epochs: no reading this epoch
        return train_loss, True


def logged_readings(
    detector: Any, state: Mapping[str, Any], lr_mean: float | None, mass_left: float | None
) -> dict[str, float]:
    """What :class:`~critical.callbacks.CriticalPeriod` logs each epoch (prefix ``critical/``),
    so that :func:`critical.detector.replay` can re-run the detector on ``metrics.csv`` and plots
    can show the guards' verdicts: ``critical_period_over`` (0 before the event, 1 from the
    firing epoch on), ``critical_period_epoch`` once fired, what the guards read
    (``train_loss``, ``lr`` at epoch start, ``lr_rose`` and ``lr_jump`` (0/1), ``diverged``,
    ``lr_mass_left`` with a floor), ``lr_mean`` (the mean rate the epoch's batches trained at,
    what the run's plot shows) and the verdicts: ``guard/finite``, ``guard/learning``,
    ``guard/lr`` (1: the guard objected this epoch), ``pace`` (the loss's pace, once
    measurable) and ``change/<metric>`` (each watched metric's change in the detector's mode).
    A non-finite loss is not logged."""
    entry = detector.history[-1]
    metrics = {
        PREFIX + "critical_period_over": float(detector.fired),
        PREFIX + "diverged": float(detector.diverged is not None),
        PREFIX + "lr_rose": float(bool(state["rose"])),
        PREFIX + "lr_jump": float(bool(state["jumped"])),
        **{PREFIX + "guard/" + g: float(g in entry["blocked"]) for g in GUARDS},
        **{PREFIX + "change/" + m: float(c) for m, c in entry["changes"].items()},
    }
    if entry["pace"] is not None and math.isfinite(entry["pace"]):
        metrics[PREFIX + "pace"] = float(entry["pace"])
    if lr_mean is not None:
        metrics[PREFIX + "lr_mean"] = lr_mean
    if detector.event is not None:
        metrics[PREFIX + "critical_period_epoch"] = float(detector.event.epoch)
    readings = (("train_loss", state["loss"]), ("lr", state["lr"]), ("lr_mass_left", mass_left))
    for key, v in readings:
        if v is not None and math.isfinite(v):
            metrics[PREFIX + key] = float(v)
    return metrics
