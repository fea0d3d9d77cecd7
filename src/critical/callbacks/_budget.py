"""The fit's budget in epochs, and a step budget that follows a change of k.

A cut from k to k' divides the optimizer steps per epoch by about k / k'. Under an epoch budget
(``Trainer(max_epochs=E)``) the fit then ends sooner: that is the saving. Under a step budget
(``Trainer(max_steps=N)`` ending the fit before ``max_epochs`` does) it would not: the fit would
train N steps whatever k is, only more epochs of fewer views, and a per-step schedule kept on
its course of epoch progress would run past its end. :class:`StepBudget` therefore rescales the
steps left at each change of k by the ratio of the optimizer updates per epoch after and before
it (rounded down, so a sized per-step schedule never passes its end): the cut run trains the
same epochs of data as the uncut run, in fewer steps. ``max_steps`` goes back to the user's
value when the fit ends; a resumed fit gets the rescaled value back from the checkpoint.

:func:`epoch_budget` is the fit's length in epochs for what needs one (a budget-aware rule, a
staged plan): ``max_epochs``, or under a step budget ``ceil(max_steps / updates per epoch)``.

Example:
    >>> from types import SimpleNamespace
    >>> loop = SimpleNamespace(epoch_loop=SimpleNamespace(max_steps=40))
    >>> trainer = SimpleNamespace(max_epochs=-1, num_training_batches=12,
    ...                           accumulate_grad_batches=1, fit_loop=loop, global_step=12)
    >>> trainer.max_steps = 40
    >>> epoch_budget(trainer)  # 40 steps at 12 an epoch
    4
    >>> budget = StepBudget()
    >>> budget.start(trainer, k_start=3, k_now=3)
    40
    >>> trainer.num_training_batches = 4  # the first epoch at k = 1
    >>> budget.follow(trainer, k=1)  # 28 steps left at k = 3 are 9 at k = 1
    21
"""

from __future__ import annotations

import math
from typing import Any

from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn

__all__ = ["StepBudget", "epoch_budget", "stage_plan", "step_bound", "updates_per_epoch"]


def updates_per_epoch(trainer: Any) -> int | None:
    """Optimizer updates the current epoch takes, or ``None`` where its batches are not known
    (an iterable dataset, or before the loader is built)."""
    b = trainer.num_training_batches
    if not isinstance(b, (int, float)) or not math.isfinite(b) or b < 1:
        return None
    return math.ceil(int(b) / max(1, int(getattr(trainer, "accumulate_grad_batches", 1) or 1)))


def step_bound(trainer: Any, per: int | None = None) -> int | None:
    """``max_steps`` where it ends the fit before ``max_epochs`` does at ``per`` optimizer
    updates an epoch (default: the current epoch's; where unknown, whenever ``max_steps`` is
    set), else ``None``."""
    max_steps = getattr(trainer, "max_steps", -1)
    if not isinstance(max_steps, int) or max_steps <= 0:
        return None
    epochs = getattr(trainer, "max_epochs", None)
    per = per if per is not None else updates_per_epoch(trainer)
    if isinstance(epochs, int) and epochs > 0 and per and epochs * per <= max_steps:
        return None
    return max_steps


def epoch_budget(trainer: Any) -> int | None:
    """The epochs the fit trains: ``max_epochs``, or under a step budget the epochs its steps
    take at the current updates per epoch (rounded up); ``None`` without either."""
    steps = step_bound(trainer)
    if steps is not None:
        per = updates_per_epoch(trainer)
        return math.ceil(steps / per) if per else None
    epochs = getattr(trainer, "max_epochs", None)
    return epochs if isinstance(epochs, int) and epochs > 0 else None


def stage_plan(first_epoch: int, ks: list[int], end: int | None) -> list[list[int]]:
    """``[[first epoch, k], ...]``: the epochs from ``first_epoch`` to the budget's ``end``
    split evenly among the multiplicities ``ks`` (all from ``first_epoch`` without a budget,
    said once where there are stages).

    Example:
        >>> stage_plan(10, [2, 1], end=30)
        [[10, 2], [20, 1]]
    """
    if len(ks) > 1 and end is None:
        rank_zero_warn(
            "AugmentationCutoff(stages=...): this fit has no epoch budget to split among the "
            f"stages, so k goes to {ks[-1]} at once"
        )
    span = max((end or 0) - first_epoch, 0)
    return [[first_epoch + round(i * span / len(ks)), k] for i, k in enumerate(ks)]


class StepBudget:
    """A binding ``max_steps`` rescaled at each change of k (module docstring).

    Attributes:
        given: the user's ``max_steps`` (``None``: the fit is not bounded by steps).
        now: the fit's ``max_steps`` after the changes so far.
        k, per_epoch: the multiplicity and the optimizer updates an epoch ``now`` was set at.
    """

    def __init__(self) -> None:
        self.given: int | None = None
        self.now: int | None = None
        self.k: int | None = None
        self.per_epoch: int | None = None

    def start(
        self, trainer: Any, k_start: int, k_now: int, strict: bool = True, verbose: bool = False
    ) -> int | None:
        """At train start: note a binding step budget, given for multiplicity ``k_start`` (the
        fit's first k) while the loaders are built at ``k_now`` (another k where a cut was
        applied on resume: the updates per epoch at ``k_start`` are then estimated in
        proportion), or put back the rescaled one a resumed fit had. ``strict``: a
        ``ValueError`` where the updates per epoch cannot be known; ``verbose``: say so once.
        Returns the step budget (``None``: the fit is not bounded by steps)."""
        if self.now is not None and self.given == getattr(trainer, "max_steps", -1):
            _set(trainer, self.now)  # resumed: the steps left were rescaled before the stop
            return self.given
        per = updates_per_epoch(trainer)
        if per is not None and k_now != k_start:
            per = math.ceil(per * k_start / k_now)
        bound = step_bound(trainer, per)
        if bound is not None and per is None and strict:
            raise ValueError(
                f"AugmentationCutoff: this fit ends after max_steps={bound} optimizer steps and "
                "its epochs have no known length (an iterable dataset?), so a cut cannot be "
                "turned into fewer steps. Give the budget in epochs (Trainer(max_epochs=...), "
                "max_steps=-1) with a sized dataset."
            )
        self.given = self.now = bound
        self.k, self.per_epoch = int(k_start), per
        if bound is not None and per and verbose:
            rank_zero_info(
                f"[critical] this fit ends after max_steps={bound} optimizer steps (about "
                f"{math.ceil(bound / per)} epochs at k={k_start}): a change of k rescales the "
                "steps left, so a cut run trains as many epochs of data in fewer steps"
            )
        return bound

    def follow(self, trainer: Any, k: int, verbose: bool = False) -> int | None:
        """At the start of an epoch at multiplicity ``k`` (its loader built): if k changed, the
        steps left times the ratio of the updates per epoch now and before, rounded down (said
        once with ``verbose``). Returns the new ``max_steps`` when it changed, else ``None``."""
        if self.now is None or self.k == k:
            return None
        per = updates_per_epoch(trainer)
        if not per or not self.per_epoch:
            return None
        done = int(trainer.global_step)
        self.now = done + max(0, self.now - done) * per // self.per_epoch
        if verbose:
            rank_zero_info(f"[critical] max_steps rescaled to {self.now} for k={k}")
        self.k, self.per_epoch = int(k), per
        _set(trainer, self.now)
        return self.now

    def restore(self, trainer: Any) -> None:
        """When the fit ends: the user's ``max_steps`` again (a later fit starts from it)."""
        if self.given is not None:
            _set(trainer, self.given)

    def state_dict(self) -> dict[str, Any]:
        return {"given": self.given, "now": self.now, "k": self.k, "per_epoch": self.per_epoch}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.given, self.now = state.get("given"), state.get("now")
        self.k, self.per_epoch = state.get("k"), state.get("per_epoch")


def _set(trainer: Any, max_steps: int) -> None:
    trainer.fit_loop.epoch_loop.max_steps = int(max_steps)
