"""What the detector's guards measure: plain Python, one number or flag per epoch.

* :func:`learning_pace`: how fast a loss still falls, against its own average pace
  (``guard_learning``);
* :class:`LRShape`: the shape of the learning-rate schedule, step by step: a warm-up (the rate
  rises) and a *discontinuous* drop (a step schedule) against a smooth anneal (cosine, linear
  decay, OneCycle's second phase), which must not block a cut (``guard_lr``).

Example:
    >>> round(learning_pace([2.0, 1.0, 0.9, 0.8, 0.75, 0.72], window=2), 3)
    0.571
    >>> shape = LRShape()
    >>> for lr in [0.1, 0.1, 0.1, 0.01]:  # a step drop after a flat stretch
    ...     shape.observe(lr)
    >>> shape.jumped, shape.rose
    (True, False)
    >>> shape.begin_epoch()
    >>> for lr in [0.010, 0.009, 0.008]:  # then a smooth decay
    ...     shape.observe(lr)
    >>> shape.jumped
    False
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

__all__ = ["LRShape", "learning_pace"]


def learning_pace(losses: Sequence[float], window: int) -> float | None:
    """``[(L_{e-w} - L_e) / w] / [(L_1 - L_e) / (e - 1)]``: the loss's mean improvement per epoch
    over the last ``window`` epochs against its mean improvement per epoch since epoch 1 (epoch 0,
    which holds the first transient drop, is left out). 1 for a straight line, more while it
    still accelerates, less once it has bent over; ``0.0`` when the loss has not improved since
    epoch 1 at all; ``None`` with fewer than ``window + 2`` finite values."""
    tail = list(losses[1:])
    if len(tail) < window + 1 or not all(math.isfinite(v) for v in tail):
        return None
    recent = (tail[-window - 1] - tail[-1]) / window
    overall = (tail[0] - tail[-1]) / (len(tail) - 1)
    if overall <= 0:
        return 0.0
    return recent / overall


class LRShape:
    """Classifies each change of the learning rate as it is observed (after every optimizer
    step, and at each epoch start).

    * a *rise* (warm-up, or a warm restart): the rate went above its value at the start of the
      epoch (the last value before it) by more than ``rise_tolerance`` of the highest rate seen (OneCycle's last scheduler
      step, past the end of its schedule, nudges the rate up by a few millionths of the peak:
      not a warm-up);
    * a *jump*: a drop of at least ``jump_ratio`` of the rate at once that is either at least
      ``contrast`` times the previous non-zero change, or comes after a whole epoch without any
      change: a discontinuity, as in step schedules. A smooth anneal, stepped per step or per
      epoch, changes in every epoch and by similar amounts from one change to the next (its
      relative drops grow large only in the last few changes of an anneal to zero, where the
      absolute changes shrink), so it is never a jump.

    :meth:`begin_epoch` resets the per-epoch flags :attr:`rose` and :attr:`jumped`; the memory of
    the last rate and change carries over (a drop at the epoch boundary is seen).

    Args:
        jump_ratio: the smallest relative drop counted as a jump (0.3: a drop to 70% or less).
        contrast: how many times larger than the previous change a jump must be.
    """

    def __init__(
        self, jump_ratio: float = 0.3, contrast: float = 3.0, rise_tolerance: float = 1e-3
    ) -> None:
        self.jump_ratio = float(jump_ratio)
        self.contrast = float(contrast)
        self.rise_tolerance = float(rise_tolerance)
        self.rose = False
        self.jumped = False
        self._last: float | None = None
        self._prev_change = 0.0
        self._peak = 0.0
        self._start: float | None = None
        self._changed = False  # a change in the current epoch
        self._flat_epochs = 0  # whole epochs without a change since the last one

    def begin_epoch(self) -> None:
        if self._last is not None:
            self._flat_epochs = 0 if self._changed else self._flat_epochs + 1
        self._changed = False
        self.rose = False
        self.jumped = False
        self._start = self._last  # a rise at the epoch boundary counts for the new epoch

    def observe(self, lr: float) -> None:
        lr = float(lr)
        if not math.isfinite(lr):
            return
        self._peak = max(self._peak, lr)
        if self._start is None:
            self._start = lr
        elif lr - self._start > self.rise_tolerance * self._peak:
            self.rose = True
        last = self._last
        self._last = lr
        if last is None:
            return
        change = lr - last
        if abs(change) <= 1e-12 * max(abs(last), 1e-30):
            return
        sudden = -change >= self.contrast * self._prev_change or self._flat_epochs >= 1
        if -change >= self.jump_ratio * last and sudden:
            self.jumped = True
        self._prev_change = abs(change)
        self._changed = True
        self._flat_epochs = 0

    def state_dict(self) -> dict[str, Any]:
        return {
            "last": self._last,
            "prev_change": self._prev_change,
            "peak": self._peak,
            "start": self._start,
            "rose": self.rose,
            "jumped": self.jumped,
            "changed": self._changed,
            "flat_epochs": self._flat_epochs,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._last = state.get("last")
        self._prev_change = float(state.get("prev_change", 0.0))
        self._peak = float(state.get("peak", 0.0))
        self._start = state.get("start")
        self.rose = bool(state.get("rose", False))
        self.jumped = bool(state.get("jumped", False))
        self._changed = bool(state.get("changed", False))
        self._flat_epochs = int(state.get("flat_epochs", 0))
