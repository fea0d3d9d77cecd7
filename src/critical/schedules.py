"""The learning-rate schedules of :class:`~critical.task.ImageClassifier`: the multiplier per
epoch (:class:`EpochSchedule`: cosine, multistep, constant, with warm-up), the same evaluated per
optimizer step (:class:`StepSchedule`), and the scheduler a configuration asks for
(:func:`build_scheduler`, OneCycle included). Plain torch, no Lightning.

Why the schedule is epoch-based by default: the callbacks of this library change the
augmentation multiplicity k during training, and with it the number of optimization steps per
epoch (an epoch holds k copies of the dataset). Stepping the scheduler once per epoch keeps the
LR-vs-epoch curve identical across policies, so runs differ only in what they are meant to differ
in. Per-step schedules (``schedule_interval="step"``: the schedule evaluated at every optimizer
step, with warm-up in steps; ``schedule="onecycle"``: torch's ``OneCycleLR``), sized from
``trainer.estimated_stepping_batches`` as most recipes do, keep that curve too when
:class:`~critical.callbacks.AugmentationCutoff` cuts k: it advances them by the ratio of the steps
per epoch before and after the cut (``follow_schedule=True``, its default).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, get_args

import torch

from critical.choices import Interval, Schedule

__all__ = ["INTERVALS", "SCHEDULES", "EpochSchedule", "StepSchedule", "build_scheduler"]

SCHEDULES = get_args(Schedule)
INTERVALS = get_args(Interval)


def _resolve_milestones(milestones: Sequence[float], total_epochs: int | None) -> list[int]:
    """Milestones in epochs: values in (0, 1) are fractions of ``total_epochs``, others epochs."""
    out = []
    for m in milestones:
        m = float(m)
        if m <= 0:
            raise ValueError(f"milestones must be positive, got {list(milestones)}")
        if m < 1:
            if total_epochs is None:
                raise ValueError(
                    "fractional milestones need the number of epochs (trainer.max_epochs or "
                    f"schedule_epochs), got milestones={list(milestones)}"
                )
            out.append(max(1, round(m * total_epochs)))
        elif m.is_integer():
            out.append(int(m))
        else:
            raise ValueError(
                "a milestone is either a fraction in (0, 1) of the epochs or a whole epoch number "
                f">= 1, got {m}"
            )
    return sorted(out)


class EpochSchedule:
    """Learning-rate multiplier as a function of the epoch index (for ``LambdaLR``).

    * ``"cosine"``: after warmup, ``min_factor + (1 - min_factor) * (1 + cos(pi t)) / 2`` with
      ``t = (epoch - warmup_epochs) / (total_epochs - warmup_epochs)``, clamped to ``t <= 1``;
    * ``"multistep"``: ``gamma ** (number of milestones <= epoch)``;
    * ``"constant"``: 1.

    During the first ``warmup_epochs`` epochs the factor ramps linearly as
    ``(epoch + 1) / (warmup_epochs + 1)`` (multiplied by the multistep factor, if any).

    Args:
        name: one of ``"cosine"``, ``"multistep"``, ``"constant"``.
        total_epochs: the number of training epochs (needed by cosine and fractional milestones).
        warmup_epochs: epochs of linear warmup.
        min_factor: the cosine's final multiplier.
        milestones: epochs (ints >= 1) or fractions of ``total_epochs`` (floats in (0, 1)).
        gamma: multistep decay factor.

    Example:
        >>> s = EpochSchedule("cosine", total_epochs=4)
        >>> [round(s(e), 3) for e in range(4)]
        [1.0, 0.854, 0.5, 0.146]
        >>> s = EpochSchedule("multistep", total_epochs=10, milestones=(0.5, 8), gamma=0.1)
        >>> [s(e) for e in (0, 4, 5, 8)]
        [1.0, 1.0, 0.1, 0.010000000000000002]
    """

    def __init__(
        self,
        name: str = "cosine",
        total_epochs: int | None = None,
        warmup_epochs: int = 0,
        min_factor: float = 0.0,
        milestones: Sequence[float] = (0.5, 0.75),
        gamma: float = 0.1,
    ) -> None:
        if name not in SCHEDULES or name == "onecycle":
            valid = [n for n in SCHEDULES if n != "onecycle"]
            raise ValueError(f"schedule must be one of {valid}, got {name!r}")
        if total_epochs is not None and total_epochs < 1:
            raise ValueError(f"total_epochs must be >= 1, got {total_epochs}")
        if warmup_epochs < 0:
            raise ValueError(f"warmup_epochs must be >= 0, got {warmup_epochs}")
        if not 0.0 <= min_factor <= 1.0:
            raise ValueError(f"min_factor must be in [0, 1], got {min_factor}")
        if not 0.0 < gamma <= 1.0:
            raise ValueError(f"gamma must be in (0, 1], got {gamma}")
        if name == "cosine":
            if total_epochs is None:
                raise ValueError(
                    "the cosine schedule needs the number of epochs: set Trainer(max_epochs=...) "
                    "or ImageClassifier(schedule_epochs=...)"
                )
            if warmup_epochs >= total_epochs:
                raise ValueError(
                    f"warmup_epochs ({warmup_epochs}) must be < the epochs ({total_epochs})"
                )
        self.name = name
        self.total_epochs = total_epochs
        self.warmup_epochs = int(warmup_epochs)
        self.min_factor = float(min_factor)
        self.milestones = (
            _resolve_milestones(milestones, total_epochs) if name == "multistep" else []
        )
        self.gamma = float(gamma)

    def __call__(self, epoch: float) -> float:
        warm = 1.0
        if epoch < self.warmup_epochs:
            warm = (epoch + 1) / (self.warmup_epochs + 1)
        if self.name == "cosine":
            if epoch < self.warmup_epochs:
                return warm
            assert self.total_epochs is not None  # __init__: the cosine schedule needs it
            span = self.total_epochs - self.warmup_epochs
            t = min(1.0, (epoch - self.warmup_epochs) / span)
            return self.min_factor + (1.0 - self.min_factor) * 0.5 * (1.0 + math.cos(math.pi * t))
        if self.name == "multistep":
            return warm * self.gamma ** sum(epoch >= m for m in self.milestones)
        return warm

    def __repr__(self) -> str:
        return (
            f"EpochSchedule({self.name!r}, total_epochs={self.total_epochs}, "
            f"warmup_epochs={self.warmup_epochs}, min_factor={self.min_factor}, "
            f"milestones={self.milestones}, gamma={self.gamma})"
        )


class StepSchedule:
    """An :class:`EpochSchedule` evaluated at every optimizer step (for a ``LambdaLR`` stepped
    per step): the cosine and multistep parts at the fractional epoch ``step /
    steps_per_epoch``, the warm-up linear in steps, ``(step + 1) / (warmup steps + 1)``.

    Example:
        >>> s = StepSchedule(EpochSchedule("cosine", total_epochs=2, warmup_epochs=1), 4)
        >>> [round(s(i), 3) for i in range(8)]
        [0.2, 0.4, 0.6, 0.8, 1.0, 0.854, 0.5, 0.146]
    """

    def __init__(self, schedule: EpochSchedule, steps_per_epoch: float) -> None:
        if not steps_per_epoch > 0:
            raise ValueError(f"steps_per_epoch must be > 0, got {steps_per_epoch}")
        self.schedule = schedule
        self.steps_per_epoch = float(steps_per_epoch)

    def __call__(self, step: int) -> float:
        epoch = step / self.steps_per_epoch
        warm_steps = self.schedule.warmup_epochs * self.steps_per_epoch
        if step < warm_steps:
            factor = (step + 1) / (warm_steps + 1)
            if self.schedule.name == "multistep":
                factor *= self.schedule.gamma ** sum(epoch >= m for m in self.schedule.milestones)
            return factor
        return self.schedule(max(epoch, float(self.schedule.warmup_epochs)))

    def __repr__(self) -> str:
        return f"StepSchedule({self.schedule!r}, steps_per_epoch={self.steps_per_epoch})"


# A checkpoint of a LambdaLR schedule holds these objects (LambdaLR saves a callable object's
# state); LightningCLI's ``--ckpt_path`` reads checkpoints with ``torch.load(weights_only=True)``,
# which refuses any class not allowed here. They hold only numbers, strings and lists.
# (and under critical.task, where they lived before: checkpoints written then name them there)
torch.serialization.add_safe_globals(
    [
        EpochSchedule,
        StepSchedule,
        (EpochSchedule, "critical.task.EpochSchedule"),
        (StepSchedule, "critical.task.StepSchedule"),
    ]
)


def build_scheduler(
    opt: torch.optim.Optimizer,
    schedule: str,
    interval: str,
    epochs: int | None,
    *,
    warmup_epochs: int,
    min_factor: float,
    milestones: Sequence[float],
    gamma: float,
    lr: float,
    trainer: Any = None,
) -> torch.optim.lr_scheduler.LRScheduler:
    """The scheduler of ``opt``: a ``LambdaLR`` over :class:`EpochSchedule` stepped once per epoch
    (``interval="epoch"``), or per optimizer step (``"step"``: a :class:`StepSchedule`, or
    ``OneCycleLR`` for ``schedule="onecycle"``) sized from ``trainer.estimated_stepping_batches``
    over ``trainer.max_epochs`` (``trainer`` is needed only then)."""
    scheduler: torch.optim.lr_scheduler.LRScheduler
    if interval == "epoch":
        multiplier = EpochSchedule(schedule, epochs, warmup_epochs, min_factor, milestones, gamma)
        # one scheduler step per epoch, whatever the multiplicity k
        scheduler = torch.optim.lr_scheduler.LambdaLR(opt, multiplier)
    else:
        # sized as most recipes size it: from the optimizer steps of the whole fit at the
        # multiplicity it starts with (AugmentationCutoff keeps it on course after a cut)
        total = int(trainer.estimated_stepping_batches)
        max_epochs = int(trainer.max_epochs or 0)
        if epochs is None or max_epochs < 1 or total < 1:
            raise ValueError(
                "a per-step schedule needs Trainer(max_epochs=...) and a finite number of "
                "training batches"
            )
        per_epoch = total / max_epochs
        if schedule == "onecycle":
            pct = warmup_epochs / epochs if warmup_epochs else 0.3
            scheduler = torch.optim.lr_scheduler.OneCycleLR(
                opt, max_lr=lr, total_steps=round(per_epoch * epochs), pct_start=pct
            )
        else:
            multiplier = EpochSchedule(
                schedule, epochs, warmup_epochs, min_factor, milestones, gamma
            )
            scheduler = torch.optim.lr_scheduler.LambdaLR(opt, StepSchedule(multiplier, per_epoch))
    return scheduler
