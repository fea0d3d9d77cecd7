"""The learning-rate mass still to come: what a budget-aware rule (the detector's ``floor``) reads.

``lr_mass_left(trainer)`` plays the fit's learning-rate schedule forward once, at train start, on
copies of its schedulers bound to a stand-in optimizer (the real ones, and the model, are not
touched), and returns, for each epoch ``e``, the sum of the learning rate over the steps after
epoch ``e`` over its sum over the whole fit. A per-step schedule is played over
``trainer.estimated_stepping_batches`` steps, an epoch schedule over the fit's epochs
(``max_epochs``, or those a binding ``max_steps`` takes:
:func:`~critical.callbacks._budget.epoch_budget`); with
no scheduler the rate is constant and the share left is the share of epochs left. After a cut
:class:`~critical.callbacks.AugmentationCutoff` keeps per-step schedules at the uncut run's
position for the same epoch progress, so the shares hold for a cut run too.
``ReduceLROnPlateau`` (which follows a metric) and schedules that cannot be copied are read as
constant, and the reason is returned.

Example:
    >>> import torch
    >>> from types import SimpleNamespace
    >>> opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    >>> sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda e: 1.0 if e < 2 else 0.0)
    >>> config = SimpleNamespace(scheduler=sched, interval="epoch", frequency=1,
    ...                          reduce_on_plateau=False)
    >>> trainer = SimpleNamespace(max_epochs=4, optimizers=[opt], lr_scheduler_configs=[config],
    ...                           estimated_stepping_batches=8)
    >>> lr_mass_left(trainer)[0]  # all the mass is in the first two epochs
    [0.5, 0.0, 0.0, 0.0]
    >>> opt.param_groups[0]["lr"]  # the real schedule is where it was
    1.0
"""

from __future__ import annotations

import copy
import math
import warnings
from typing import Any

import torch

from critical.callbacks._budget import epoch_budget

__all__ = ["fit_budget", "floor_plan", "lr_mass_left"]

#: ``max_epochs`` as Lightning sets it when neither it nor ``max_steps`` is given
LIGHTNING_DEFAULT_EPOCHS = 1000


def _rate(optimizer: Any) -> float:
    return max(float(g["lr"]) for g in optimizer.param_groups)


def _stand_in(optimizer: torch.optim.Optimizer) -> torch.optim.Optimizer:
    """An SGD optimizer with the same parameter groups' settings and one scalar parameter each."""
    groups = [
        {**{k: v for k, v in g.items() if k != "params"}, "params": [torch.zeros(1)]}
        for g in optimizer.param_groups
    ]
    return torch.optim.SGD(groups, lr=float(optimizer.param_groups[0]["lr"]))


def _play(trainer: Any, epochs: int) -> tuple[list[float], str]:
    """The learning rate summed per epoch over the whole fit, and what was played."""
    optimizer = trainer.optimizers[0] if trainer.optimizers else None
    configs = [
        c
        for c in getattr(trainer, "lr_scheduler_configs", [])
        if getattr(c.scheduler, "optimizer", None) is optimizer
    ]
    constant = [1.0] * epochs
    if optimizer is None or not configs:
        return constant, "constant learning rate (no scheduler)"
    if any(c.reduce_on_plateau for c in configs):
        return constant, "read as constant: ReduceLROnPlateau follows a metric"
    stand_in = _stand_in(optimizer)
    try:
        schedulers = copy.deepcopy([c.scheduler for c in configs], {id(optimizer): stand_in})
    except Exception as e:  # noqa: BLE001 - a scheduler that cannot be copied
        return constant, f"read as constant: the scheduler could not be copied ({e})"
    if not all(isinstance(s, torch.optim.lr_scheduler.LRScheduler) for s in schedulers):
        return constant, "read as constant: not a torch LRScheduler"
    per_step = any(c.interval == "step" for c in configs)
    steps = int(trainer.estimated_stepping_batches) if per_step else epochs
    if not math.isfinite(steps) or steps < epochs:
        return constant, "read as constant: no finite number of steps"
    sums = [0.0] * epochs
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "lr_scheduler.step() before optimizer.step()"
        for t in range(steps):
            sums[min(t * epochs // steps, epochs - 1)] += _rate(stand_in)
            for c, s in zip(configs, schedulers):
                unit = t + 1 if c.interval == "step" else (t + 1) * epochs // steps
                last_unit = t if c.interval == "step" else t * epochs // steps
                if unit != last_unit and unit % max(1, int(c.frequency)) == 0:
                    s.step()
    kind = "per step" if per_step else "per epoch"
    return sums, f"{type(schedulers[0]).__name__} played {kind} over {steps} steps"


def lr_mass_left(trainer: Any) -> tuple[list[float] | None, str]:
    """For each epoch, the share of the fit's learning-rate mass after its end (``None`` without
    an epoch budget), and how the schedule was read (module docstring)."""
    epochs = epoch_budget(trainer)
    if epochs is None:
        return None, "no epoch budget (max_epochs, or max_steps over sized epochs)"
    sums, how = _play(trainer, epochs)
    total = sum(sums)
    if not total > 0:
        return None, f"{how}: no learning-rate mass"
    left, out = total, []
    for s in sums:
        left -= s
        out.append(max(0.0, left / total))
    return out, how


def fit_budget(trainer: Any, detector: Any) -> int | None:
    """The fit's epochs (:func:`~critical.callbacks._budget.epoch_budget`), which
    ``mode="budget"`` needs (else a ``ValueError``)."""
    budget = epoch_budget(trainer)
    if detector.mode == "budget" and budget is None:
        raise ValueError(
            "CriticalPeriod(mode='budget') needs a fit with a budget: max_epochs, or max_steps "
            "over epochs of known length"
        )
    aware = detector.mode == "budget" or detector.floor is not None
    if aware and budget == LIGHTNING_DEFAULT_EPOCHS and getattr(trainer, "max_steps", -1) == -1:
        from lightning.pytorch.utilities import rank_zero_warn

        rank_zero_warn(
            f"CriticalPeriod reads this fit's budget as max_epochs={budget}, which is what "
            "Lightning sets when Trainer(max_epochs=...) is not given: if the fit is meant to "
            "end sooner (early stopping, max_time), give its max_epochs, which the floor and "
            "mode='budget' scale with"
        )
    return budget


def floor_plan(trainer: Any, verbose: bool = True) -> list[float]:
    """:func:`lr_mass_left` for a detector's ``floor``: said once, a ``ValueError`` without a
    budget."""
    from lightning.pytorch.utilities import rank_zero_info

    left, how = lr_mass_left(trainer)
    if left is None:
        raise ValueError(f"CriticalPeriod(floor=...) needs a budget: {how}")
    if verbose:
        rank_zero_info(f"[critical] learning-rate mass for the floor: {how}")
    return left
