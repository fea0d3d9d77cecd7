"""Per-step learning-rate schedules across a cut: their rhythm, their following and their checks
(used by :class:`~critical.callbacks.AugmentationCutoff`).

With the epoch layout a cut from k to k' divides the optimizer steps per epoch by about k / k'.
A scheduler stepped per optimizer step and sized at fit start for k (``OneCycleLR``, a per-step
``LambdaLR`` warm-up + cosine, ``SequentialLR``, timm's schedulers stepped per update) would then
be only part-way through its schedule when the run ends. :class:`ScheduleFollower` keeps each
such scheduler at the position the uncut run would have at the same *epoch progress*: after
batch ``b`` (0-based) of epoch ``e`` (both counted in the cut run), the position is

    ``base + (e - first_cut_epoch) * per_epoch + floor((b + 1) * per_epoch / batches)``

where ``per_epoch`` is the scheduler's positions per epoch before the cut, ``batches`` the
batches of the current epoch and ``base`` the position at the start of the first cut epoch. It
is exact at every epoch boundary (and so at the run's last step), needs no knowledge of the
schedule's shape, and only steps forward: a torch ``LRScheduler`` is stepped until its
``last_epoch`` reaches the position; a timm ``Scheduler`` (no ``last_epoch``) is told it with
``step_update(num_updates=position)``, which assumes that its positions are optimizer updates
(timm's per-update schedules under Lightning are stepped with ``global_step``). Resuming needs
only ``base``, ``first_cut_epoch`` and ``per_epoch`` (:meth:`state_dict`); the schedulers' own
state is in the checkpoint.

Epoch-interval schedulers and ``ReduceLROnPlateau`` are left alone.

The functions below take what the cutoff knows explicitly: :func:`per_epoch_before` re-derives
Lightning's rhythm of stepping a scheduler (positions per epoch before the cut),
:func:`follow` starts the follower at the first cut epoch, :func:`follow_batch` advances it
after each batch, :func:`warn_step_schedules` warns when ``follow_schedule=False`` leaves a
per-step schedule unfinished and :func:`check_schedule_length` checks a sized schedule at fit
start.

Example:
    >>> import torch
    >>> opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    >>> sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1 - s / 12)
    >>> for _ in range(6):
    ...     opt.step(); sched.step()  # epoch 0 at k = 3: six steps
    >>> follower = ScheduleFollower()
    >>> follower.start([sched], first_epoch=1, per_epoch=[6], updates=6)
    >>> for b in range(2):  # epoch 1 at k = 1: two steps, each worth three positions
    ...     opt.step(); sched.step()
    ...     follower.after_batch([sched], epoch=1, batch=b, batches=2, updates=7 + b)
    >>> sched.last_epoch, opt.param_groups[0]["lr"]
    (12, 0.0)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn

__all__ = [
    "ScheduleFollower",
    "check_rebuilt_epochs",
    "check_schedule_length",
    "follow",
    "follow_batch",
    "per_epoch_before",
    "position",
    "step_schedulers",
    "warn_step_schedules",
]


def position(scheduler: Any, updates: int) -> int:
    """A scheduler's position: ``last_epoch`` for torch schedulers, else ``updates`` (the
    optimizer updates so far, for timm's per-update schedulers)."""
    last = getattr(scheduler, "last_epoch", None)
    return int(last) if isinstance(last, int) else int(updates)


def step_schedulers(trainer: Any) -> list[Any]:
    """The trainer's schedulers that step per optimizer step (``interval="step"``), excluding
    ``ReduceLROnPlateau``."""
    return [
        c.scheduler
        for c in getattr(trainer, "lr_scheduler_configs", [])
        if c.interval == "step" and not c.reduce_on_plateau
    ]


class ScheduleFollower:
    """Keeps per-step schedulers at the uncut run's position for the same epoch progress (see
    the module docstring)."""

    def __init__(self) -> None:
        self.first_epoch: int | None = None
        self.per_epoch: list[int] = []
        self.base: list[int] = []

    @property
    def active(self) -> bool:
        return self.first_epoch is not None

    def start(
        self, schedulers: Sequence[Any], first_epoch: int, per_epoch: Sequence[int], updates: int
    ) -> None:
        """Begin following at the start of ``first_epoch`` (the first epoch at the new k);
        ``per_epoch``: each scheduler's positions per epoch before the cut; ``updates``: the
        optimizer updates so far (the position of timm schedulers)."""
        self.first_epoch = int(first_epoch)
        self.per_epoch = [int(n) for n in per_epoch]
        self.base = [position(s, updates) for s in schedulers]

    def target(self, i: int, epoch: int, batch: int, batches: int) -> int:
        """Scheduler ``i``'s position after ``batch`` (0-based) of ``epoch``."""
        assert self.first_epoch is not None
        n = self.per_epoch[i]
        done = min(batch + 1, batches)
        return self.base[i] + (epoch - self.first_epoch) * n + (done * n) // max(batches, 1)

    def after_batch(
        self, schedulers: Sequence[Any], epoch: int, batch: int, batches: int, updates: int
    ) -> None:
        """Step each scheduler forward to its target after a training batch."""
        if not self.active or epoch < (self.first_epoch or 0):
            return
        for i, s in enumerate(schedulers[: len(self.per_epoch)]):
            goal = self.target(i, epoch, batch, batches)
            if isinstance(getattr(s, "last_epoch", None), int):
                while s.last_epoch < goal:
                    s.step()
            elif callable(getattr(s, "step_update", None)):
                s.step_update(num_updates=goal)

    def state_dict(self) -> dict[str, Any]:
        return {
            "first_epoch": self.first_epoch,
            "per_epoch": list(self.per_epoch),
            "base": list(self.base),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.first_epoch = state.get("first_epoch")
        self.per_epoch = [int(n) for n in state.get("per_epoch", [])]
        self.base = [int(n) for n in state.get("base", [])]


def per_epoch_before(
    trainer: pl.Trainer, scheduler: Any, batches_before_cut: float | None
) -> int | None:
    """A scheduler's positions per epoch before the cut: counted from the batches of the last
    epoch before it (``batches_before_cut``; Lightning steps it once per optimizer step), or,
    when the cut was applied on resume, its position over the epochs completed."""
    before = batches_before_cut
    config = next(c for c in trainer.lr_scheduler_configs if c.scheduler is scheduler)
    if (
        before is not None
        and math.isfinite(before)
        and before > 0
        and trainer.lightning_module.automatic_optimization
    ):
        b, acc, freq = int(before), int(trainer.accumulate_grad_batches), int(config.frequency)
        lcm = acc * freq // math.gcd(acc, freq)
        last = 1 if (b % acc != 0 and b % freq == 0) else 0  # the epoch's last batch steps too
        return b // lcm + last
    epochs = trainer.current_epoch
    pos = position(scheduler, trainer.global_step)
    return round(pos / epochs) if epochs > 0 and pos > 0 else None


def follow(
    trainer: pl.Trainer,
    follower: ScheduleFollower,
    batches_before_cut: float | None,
    verbose: bool,
) -> None:
    """Start keeping the per-step schedulers on their epoch-progress course."""
    schedulers = step_schedulers(trainer)
    if not schedulers:
        return
    per_epoch = [per_epoch_before(trainer, s, batches_before_cut) for s in schedulers]
    if any(n is None for n in per_epoch):
        rank_zero_warn(
            "AugmentationCutoff: could not tell how many steps per epoch the learning-rate "
            f"scheduler(s) {', '.join(type(s).__name__ for s in schedulers)} took before the "
            "cut; they are left as they are (their schedule will not finish)"
        )
        return
    follower.start(
        schedulers, trainer.current_epoch, [int(n or 0) for n in per_epoch], trainer.global_step
    )
    now = trainer.num_training_batches
    if verbose and math.isfinite(now):
        names = ", ".join(type(s).__name__ for s in schedulers)
        rank_zero_info(
            f"[critical] the per-step schedule(s) {names} keep their place after the cut: "
            f"{', '.join(str(n) for n in per_epoch)} position(s) per epoch over {int(now)} "
            "batches, as in the uncut run"
        )


def follow_batch(trainer: pl.Trainer, follower: ScheduleFollower, batch_idx: int) -> None:
    """After training batch ``batch_idx``: step the followed schedulers to their targets."""
    if follower.active:
        batches = trainer.num_training_batches
        follower.after_batch(
            step_schedulers(trainer),
            trainer.current_epoch,
            batch_idx,
            int(batches) if math.isfinite(batches) else batch_idx + 1,
            trainer.global_step,
        )


def warn_step_schedules(
    trainer: pl.Trainer, before: float, now: float, follow_schedule: bool, warned: bool
) -> bool:
    """Steps per epoch shrank and ``follow_schedule=False``: a learning-rate schedule stepped
    per optimizer step and sized at the start will not reach its end. Warns once (``warned``:
    already warned); returns whether it has warned."""
    step = [type(s).__name__ for s in step_schedulers(trainer)]
    if step and not follow_schedule and not warned:
        rank_zero_warn(
            f"AugmentationCutoff: steps per epoch fell from {int(before)} to {int(now)} at the "
            f"cut, and the learning-rate scheduler(s) {', '.join(step)} step per optimizer "
            "step (interval='step') and follow_schedule=False: a schedule sized at the start "
            "(e.g. from trainer.estimated_stepping_batches) will not finish, so its learning "
            "rate at the last epoch stays high. Leave follow_schedule=True to keep it on its "
            "course of epoch progress."
        )
        return True
    return warned


def check_schedule_length(trainer: pl.Trainer, data: Any) -> None:
    """A per-step scheduler with a known length must cover the fit's optimizer steps (``data``:
    the training data whose ``multiplicity`` the message names, or ``None``)."""
    sized = [
        s for s in step_schedulers(trainer) if isinstance(getattr(s, "total_steps", None), int)
    ]
    if not sized:
        return
    need = trainer.estimated_stepping_batches
    if not math.isfinite(need):
        return
    for s in sized:
        if s.total_steps < need:
            k = int(data.multiplicity) if data is not None else None
            raise ValueError(
                f"{type(s).__name__} was sized for {s.total_steps} optimizer steps, but this "
                f"fit takes {int(need)} (trainer.estimated_stepping_batches, at "
                f"multiplicity k={k}): it would fail once it passes step {s.total_steps}. "
                "Size it from self.trainer.estimated_stepping_batches in "
                "configure_optimizers (or from len(train_dataloader()) at the multiplicity "
                "the fit starts with)"
            )


def check_rebuilt_epochs(
    trainer: pl.Trainer, before: float | None, k: int, k_before: int, follow: bool, warned: bool
) -> bool:
    """At the first epoch of a loader rebuilt for multiplicity ``k`` (``before``: the batches an
    epoch had before the cut, at ``k_before``): warns when a lower k did not shrink the epochs
    (naming an integer ``limit_train_batches``, which caps them), else when a per-step schedule
    is not followed (``follow``: :func:`warn_step_schedules`). Returns whether that has
    warned."""
    now = trainer.num_training_batches
    if before is None or not math.isfinite(before):
        return warned
    if k < k_before and now >= before:
        limit = trainer.limit_train_batches
        why = (
            f"Trainer(limit_train_batches={limit}) caps the batches an epoch, so the cut saves "
            "nothing"
            if isinstance(limit, int) and not isinstance(limit, bool)
            else "does train_dataloader() honour `multiplicity`?"
        )
        rank_zero_warn(
            f"AugmentationCutoff set multiplicity to {k} but the train dataloader still has "
            f"{now} batches (was {before}): {why}"
        )
        return warned
    if now < before:
        return warn_step_schedules(trainer, before, now, follow, warned)
    return warned
