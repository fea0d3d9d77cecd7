"""Per-step learning-rate schedules across a cut (used by
:class:`~critical.callbacks.AugmentationCutoff`).

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

from collections.abc import Sequence
from typing import Any

__all__ = ["ScheduleFollower", "position", "step_schedulers"]


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
