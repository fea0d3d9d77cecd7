"""How the detector measures a metric's change between epochs, in each ``mode``: ``"scaled"``
(on the curve's own range and the epochs elapsed), ``"absolute"``, ``"relative"`` and
``"budget"`` (a least-squares slope against epoch / (E - 1)). Plain Python.

Example:
    >>> step_change([0.0, 0.5, 0.75], "scaled", 1e-12)  # 2 * 0.25 / 0.75
    0.6666666666666666
    >>> step_change([0.0, 0.5, 0.75], "relative", 1e-12)
    0.5
    >>> budget_slope([0.0, 0.1, 0.2], [0, 1, 2], budget=11)  # 0.1 per epoch, E - 1 = 10
    1.0
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["budget_slope", "step_change"]


def step_change(smoothed: Sequence[float], mode: str, eps: float) -> float:
    """The change from the second-last to the last (smoothed) value, in ``mode`` (not
    ``"budget"``): absolute, relative to the previous value (floored at ``eps``), or scaled by
    the range seen so far and the epochs elapsed (a straight line reads 1)."""
    diff = abs(smoothed[-1] - smoothed[-2])
    if mode == "absolute":
        return diff
    if mode == "relative":
        return diff / max(abs(smoothed[-2]), eps)
    scale = max(smoothed) - min(smoothed)
    return 0.0 if scale <= 0 else diff * (len(smoothed) - 1) / scale


def budget_slope(values: Sequence[float], epochs: Sequence[int], budget: int | None) -> float:
    """The least-squares slope of ``values`` against ``epoch / (budget - 1)`` (Fukase et al.'s
    axis: the epochs min-max scaled over the whole budget)."""
    if budget is None or budget < 2:
        raise ValueError(
            "mode='budget' needs the fit's epochs: set `StabilityDetector.budget` (the "
            "CriticalPeriod callback sets it from trainer.max_epochs)"
        )
    xs = [e / (budget - 1) for e in epochs]
    mx, my = sum(xs) / len(xs), sum(values) / len(values)
    sxx = sum((x - mx) ** 2 for x in xs)
    sxy = sum((x - mx) * (y - my) for x, y in zip(xs, values))
    return 0.0 if sxx <= 0 else sxy / sxx
