"""What the detector decided: :class:`CriticalPeriodEvent` (the epoch, the reason, the readings).

Example:
    >>> ev = CriticalPeriodEvent(4, "floor", ("layer_rotation",), {"layer_rotation": 0.3})
    >>> CriticalPeriodEvent.from_dict(ev.to_dict()) == ev
    True
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["CriticalPeriodEvent"]


@dataclass(frozen=True)
class CriticalPeriodEvent:
    """What the detector decided, and why.

    Attributes:
        epoch: the (0-based) training epoch at whose end the detector fired; the cut takes effect
            from epoch ``epoch + 1``.
        reason: ``"stable"`` (the metrics settled), ``"deadline"`` (the deadline forced it) or
            ``"floor"`` (at most ``floor`` of the learning-rate mass was left).
        metrics: the metrics that satisfied the rule (for ``"deadline"``: every watched metric).
        values: the last (smoothed) value of every watched metric.
        changes: the last change of every watched metric, in the detector's ``mode``.
    """

    epoch: int
    reason: str
    metrics: tuple[str, ...]
    values: dict[str, float] = field(default_factory=dict)
    changes: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["metrics"] = list(self.metrics)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> CriticalPeriodEvent:
        return cls(
            epoch=int(d["epoch"]),
            reason=str(d["reason"]),
            metrics=tuple(d.get("metrics", ())),
            values=dict(d.get("values", {})),
            changes=dict(d.get("changes", {})),
        )
