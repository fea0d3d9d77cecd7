"""The stability detector: decides when the critical period of training is over.

Plain Python, no Lightning and no torch: it is fed one value per watched metric per completed
epoch and says when those values have stopped changing. The Lightning side lives in
:class:`critical.callbacks.CriticalPeriod`.

Rule
----
For each watched metric the detector keeps the epoch values ``v_e`` (optionally smoothed by a
trailing moving average over ``window`` epochs) and the change between consecutive epochs:

* ``mode="absolute"``: ``delta_e = |v_e - v_{e-1}|``
* ``mode="relative"``: ``delta_e = |v_e - v_{e-1}| / max(|v_{e-1}|, eps)``

An epoch is *stable* for a metric when ``delta_e < threshold``. A metric is *settled* after
``patience`` consecutive stable epochs. The detector fires at the end of the first epoch in
which the settled metrics satisfy ``combine`` ("any": one of them, "all": every one of them) and
at least ``min_epochs`` epochs have completed. If ``deadline`` is given it fires at the end of
epoch ``deadline`` at the latest, with reason ``"deadline"``.

Epochs are counted as *completed training epochs*: the end of Lightning's ``current_epoch == e``
is the point where ``e + 1`` epochs have completed. The threshold is a per-epoch change, so it
does not depend on the total number of epochs of the run.

Relative thresholds are meaningless for metrics that hover near zero (the mean pairwise gradient
cosine often does): use ``mode="absolute"`` (the default) or a smoothing ``window`` for those.

Example:
    >>> from critical.detector import StabilityDetector
    >>> det = StabilityDetector(["loss"], threshold=0.05, patience=2)
    >>> [det.update(e, {"loss": v}) is not None for e, v in enumerate([1.0, 0.5, 0.48, 0.47])]
    [False, False, False, True]
    >>> det.event.epoch, det.event.reason
    (3, 'stable')
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from critical.validation import check_int

__all__ = ["COMBINES", "DEFAULTS", "MODES", "CriticalPeriodEvent", "StabilityDetector"]

MODES = ("absolute", "relative")
COMBINES = ("any", "all")

#: The detector's defaults, the one source for :class:`StabilityDetector`,
#: :class:`~critical.callbacks.CriticalPeriod` and ``critical sweep`` (whose detector entries
#: accept exactly these keys).
DEFAULTS: dict[str, Any] = {
    "monitor": "layer_rotation",
    "threshold": 0.01,
    "mode": "absolute",
    "patience": 2,
    "min_epochs": 1,
    "deadline": None,
    "combine": "any",
    "window": 1,
}


@dataclass(frozen=True)
class CriticalPeriodEvent:
    """What the detector decided, and why.

    Attributes:
        epoch: the (0-based) training epoch at whose end the detector fired; the cut takes effect
            from epoch ``epoch + 1``.
        reason: ``"stable"`` (the metrics settled) or ``"deadline"`` (the deadline forced it).
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


class StabilityDetector:
    """Fires once when watched metrics stop changing between epochs.

    Args:
        metrics: names of the watched metrics (at least one).
        threshold: a positive change below which an epoch counts as stable; a single float, or a
            mapping from metric name to its own threshold.
        mode: ``"absolute"`` or ``"relative"`` change (see the module docstring).
        patience: consecutive stable epochs needed (>= 1).
        min_epochs: never fire before this many epochs have completed (>= 0).
        deadline: fire at the end of this many completed epochs at the latest (``None``: never
            forced). Must be >= ``min_epochs``.
        combine: ``"any"`` (one settled metric suffices) or ``"all"``.
        window: trailing moving-average length applied to each metric before differencing
            (1 = no smoothing).
        eps: floor of the denominator in relative mode.
    """

    def __init__(
        self,
        metrics: str | Sequence[str],
        *,
        threshold: float | Mapping[str, float] = DEFAULTS["threshold"],
        mode: str = DEFAULTS["mode"],
        patience: int = DEFAULTS["patience"],
        min_epochs: int = DEFAULTS["min_epochs"],
        deadline: int | None = DEFAULTS["deadline"],
        combine: str = DEFAULTS["combine"],
        window: int = DEFAULTS["window"],
        eps: float = 1e-12,
    ) -> None:
        if isinstance(metrics, str):
            metrics = [metrics]
        metrics = list(metrics)
        if not metrics or not all(isinstance(m, str) and m for m in metrics):
            raise ValueError(f"`metrics` must be one or more non-empty names, got {metrics!r}")
        if len(set(metrics)) != len(metrics):
            raise ValueError(f"`metrics` has duplicates: {metrics!r}")
        self.metrics: list[str] = metrics

        if isinstance(threshold, Mapping):
            unknown = set(threshold) - set(metrics)
            missing = set(metrics) - set(threshold)
            if unknown or missing:
                raise ValueError(
                    f"`threshold` mapping must name exactly the watched metrics {metrics}; "
                    f"unknown: {sorted(unknown)}, missing: {sorted(missing)}"
                )
            thresholds = {m: threshold[m] for m in metrics}
        else:
            thresholds = dict.fromkeys(metrics, threshold)
        for m, t in thresholds.items():
            if (
                isinstance(t, bool)
                or not isinstance(t, (int, float))
                or not math.isfinite(t)
                or t <= 0
            ):
                raise ValueError(
                    f"`threshold` for {m!r} must be a positive finite number, got {t!r}"
                )
        self.thresholds: dict[str, float] = {m: float(t) for m, t in thresholds.items()}

        if mode not in MODES:
            raise ValueError(f"`mode` must be one of {list(MODES)}, got {mode!r}")
        if combine not in COMBINES:
            raise ValueError(f"`combine` must be one of {list(COMBINES)}, got {combine!r}")
        self.mode = mode
        self.combine = combine
        self.patience = check_int("patience", patience, 1)
        self.min_epochs = check_int("min_epochs", min_epochs, 0)
        self.window = check_int("window", window, 1)
        if deadline is not None:
            check_int("deadline", deadline, 1)
            if deadline < min_epochs:
                raise ValueError(f"`deadline` ({deadline}) must be >= `min_epochs` ({min_epochs})")
        self.deadline = deadline
        if not (isinstance(eps, (int, float)) and eps > 0):
            raise ValueError(f"`eps` must be positive, got {eps!r}")
        self.eps = float(eps)

        self.history: list[dict[str, Any]] = []  # one entry per update: epoch, values, changes
        self._raw: dict[str, list[float]] = {m: [] for m in metrics}
        self._smoothed: dict[str, list[float]] = {m: [] for m in metrics}
        self._streak: dict[str, int] = dict.fromkeys(metrics, 0)
        self.event: CriticalPeriodEvent | None = None

    @property
    def fired(self) -> bool:
        return self.event is not None

    def _change(self, prev: float, cur: float) -> float:
        diff = abs(cur - prev)
        if self.mode == "absolute":
            return diff
        return diff / max(abs(prev), self.eps)

    def update(self, epoch: int, values: Mapping[str, float]) -> CriticalPeriodEvent | None:
        """Feed the values of one completed epoch; returns the event the first time it fires.

        Metrics missing from ``values`` or with a non-finite value are not recorded for this
        epoch and reset their stable streak (a gap is not evidence of stability). After the
        detector has fired, further updates are recorded in the history but fire nothing.
        """
        epoch = int(epoch)
        changes: dict[str, float] = {}
        recorded: dict[str, float] = {}
        for m in self.metrics:
            v = values.get(m)
            if v is None or not math.isfinite(float(v)):
                self._streak[m] = 0
                continue
            v = float(v)
            recorded[m] = v
            raw = self._raw[m]
            raw.append(v)
            tail = raw[-self.window :]
            smoothed = sum(tail) / len(tail)
            sm = self._smoothed[m]
            sm.append(smoothed)
            # a change is only meaningful once the moving average is over a full window
            if len(raw) > self.window:
                c = self._change(sm[-2], sm[-1])
                changes[m] = c
                self._streak[m] = self._streak[m] + 1 if c < self.thresholds[m] else 0
            else:
                self._streak[m] = 0
        self.history.append({"epoch": epoch, "values": recorded, "changes": changes})
        if self.event is not None:
            return None

        completed = epoch + 1
        settled = tuple(m for m in self.metrics if self._streak[m] >= self.patience)
        ok = bool(settled) if self.combine == "any" else len(settled) == len(self.metrics)
        last_values = {m: self._smoothed[m][-1] for m in self.metrics if self._smoothed[m]}
        if ok and completed >= self.min_epochs:
            self.event = CriticalPeriodEvent(epoch, "stable", settled, last_values, changes)
        elif self.deadline is not None and completed >= self.deadline:
            self.event = CriticalPeriodEvent(
                epoch, "deadline", tuple(self.metrics), last_values, changes
            )
        return self.event

    def state_dict(self) -> dict[str, Any]:
        return {
            "history": [dict(h) for h in self.history],
            "raw": {m: list(v) for m, v in self._raw.items()},
            "smoothed": {m: list(v) for m, v in self._smoothed.items()},
            "streak": dict(self._streak),
            "event": None if self.event is None else self.event.to_dict(),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        unknown = set(state.get("raw", {})) - set(self.metrics)
        if unknown:
            raise ValueError(
                f"checkpointed detector watched {sorted(state['raw'])}, this one watches "
                f"{self.metrics}: build the detector with the same metrics to resume"
            )
        self.history = [dict(h) for h in state.get("history", [])]
        self._raw = {m: list(state.get("raw", {}).get(m, [])) for m in self.metrics}
        self._smoothed = {m: list(state.get("smoothed", {}).get(m, [])) for m in self.metrics}
        self._streak = {m: int(state.get("streak", {}).get(m, 0)) for m in self.metrics}
        ev = state.get("event")
        self.event = None if ev is None else CriticalPeriodEvent.from_dict(ev)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(metrics={self.metrics}, thresholds={self.thresholds}, "
            f"mode={self.mode!r}, patience={self.patience}, min_epochs={self.min_epochs}, "
            f"deadline={self.deadline}, combine={self.combine!r}, window={self.window})"
        )
