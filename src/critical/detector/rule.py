"""The stability detector's rule and guards (:class:`StabilityDetector`).

Plain Python, no Lightning and no torch: it is fed one value per watched metric per completed
epoch (plus the epoch's training loss and learning-rate shape, for the guards) and says when
the metrics have stopped changing *and* nothing says the cut would be unsafe.

The rule, the guards and the shipped defaults are described in the package docstring
(:mod:`critical.detector`); the settings live in :mod:`critical.detector.settings`.

Epochs are counted as *completed training epochs*: the end of Lightning's ``current_epoch == e``
is the point where ``e + 1`` epochs have completed.

Example:
    >>> from critical.detector import StabilityDetector
    >>> det = StabilityDetector(["m"], mode="absolute", threshold=0.05, patience=2, window=1,
    ...                         min_epochs=1, guard_learning=False, guard_lr=False)
    >>> [det.update(e, {"m": v}) is not None for e, v in enumerate([1.0, 0.5, 0.48, 0.47])]
    [False, False, False, True]
    >>> det.event.epoch, det.event.reason
    (3, 'stable')
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from critical.detector.changes import budget_slope, step_change
from critical.detector.event import CriticalPeriodEvent
from critical.detector.guards import learning_pace
from critical.detector.settings import (
    COMBINES,
    DEFAULTS,
    FUKASE_RULE,
    LEARNING_SIGNALS,
    MODES,
    V02_RULE,
    VAL_LOSS_KEYS,
    Combine,
    LearningSignal,
    Mode,
    fallback_settings,
    reads_validation,
)
from critical.validation import check_bool, check_choice, check_int, check_number

__all__ = [
    "COMBINES",
    "DEFAULTS",
    "FUKASE_RULE",
    "GUARDS",
    "LEARNING_SIGNALS",
    "MODES",
    "V02_RULE",
    "VAL_LOSS_KEYS",
    "CriticalPeriodEvent",
    "StabilityDetector",
    "fallback_settings",
    "reads_validation",
]

#: guard names, as they appear in ``history[i]["blocked"]``
GUARDS = ("finite", "learning", "lr")


def _finite(v: Any) -> bool:
    return v is not None and not isinstance(v, bool) and math.isfinite(float(v))


class StabilityDetector:
    """Fires once when watched metrics stop changing between epochs and no guard objects.

    Args (defaults in :data:`DEFAULTS`):
        metrics: names of the watched metrics (at least one).
        mode: ``"scaled"``, ``"absolute"`` or ``"relative"`` change (module docstring).
        threshold: a positive change below which an epoch counts as stable; a single number, or a
            mapping from metric name to its own threshold.
        patience: consecutive stable epochs needed (>= 1).
        min_epochs: never fire before this many epochs have completed (>= 0).
        deadline: fire at the end of this many completed epochs at the latest (``None``: never
            forced). Must be >= ``min_epochs``.
        combine: ``"any"`` (one settled metric suffices) or ``"all"``.
        window: trailing moving-average length applied to each metric before differencing.
        guard_finite, guard_learning, guard_lr: the guards (module docstring).
        loss_window: epochs over which the training loss's improvement is measured (>= 1).
        loss_threshold: the share of its own average pace at or above which the loss counts as
            still improving (> 0).
        lr_cooldown: epochs after a learning-rate drop during which no cut is made (>= 0).
        learning_signal: the loss ``guard_learning`` reads (:data:`LEARNING_SIGNALS`); recorded
            here, chosen by the caller that feeds ``loss``.
        fallback: for settings that read validation metrics, the settings (a mapping of these
            arguments, the library defaults filling the rest) a caller uses instead in a run
            without validation each epoch (:func:`fallback_settings`); recorded here.
        floor: fire once at most this share of the fit's learning-rate mass is left (module
            docstring; ``None``: no floor).
        eps: floor of the denominator in relative mode.

    Attributes:
        history: one entry per update: ``epoch``, ``values``, ``changes``, ``blocked`` (the
            guards that objected), ``loss``, ``lr``, ``pace`` (the loss's
            :func:`~critical.detector.guards.learning_pace`), ``lr_rose``, ``lr_jump``.
        event: the :class:`CriticalPeriodEvent`, once fired.
        diverged: ``{"epoch", "cause"}`` from the first epoch with a non-finite loss, weights or
            metric (with ``guard_finite``), else ``None``.
    """

    def __init__(
        self,
        metrics: str | Sequence[str],
        *,
        mode: Mode = DEFAULTS["mode"],
        threshold: float | Mapping[str, float] = DEFAULTS["threshold"],
        patience: int = DEFAULTS["patience"],
        min_epochs: int = DEFAULTS["min_epochs"],
        deadline: int | None = DEFAULTS["deadline"],
        combine: Combine = DEFAULTS["combine"],
        window: int = DEFAULTS["window"],
        guard_finite: bool = DEFAULTS["guard_finite"],
        guard_learning: bool = DEFAULTS["guard_learning"],
        loss_window: int = DEFAULTS["loss_window"],
        loss_threshold: float = DEFAULTS["loss_threshold"],
        guard_lr: bool = DEFAULTS["guard_lr"],
        lr_cooldown: int = DEFAULTS["lr_cooldown"],
        learning_signal: LearningSignal = DEFAULTS["learning_signal"],
        fallback: Mapping[str, Any] | None = DEFAULTS["fallback"],
        floor: float | None = DEFAULTS["floor"],
        eps: float = 1e-12,
    ) -> None:
        names = [metrics] if isinstance(metrics, str) else list(metrics)
        if not names or not all(isinstance(m, str) and m for m in names):
            raise ValueError(f"`metrics` must be one or more non-empty names, got {metrics!r}")
        if len(set(names)) != len(names):
            raise ValueError(f"`metrics` has duplicates: {names!r}")
        self.metrics: list[str] = names

        if isinstance(threshold, Mapping):
            unknown, missing = set(threshold) - set(names), set(names) - set(threshold)
            if unknown or missing:
                raise ValueError(
                    f"`threshold` mapping must name exactly the watched metrics {names}; "
                    f"unknown: {sorted(unknown)}, missing: {sorted(missing)}"
                )
            thresholds = {m: threshold[m] for m in names}
        else:
            thresholds = dict.fromkeys(names, threshold)
        self.thresholds: dict[str, float] = {
            m: check_number(f"threshold for {m!r}", t, minimum=0, exclusive=True)
            for m, t in thresholds.items()
        }
        self.mode = check_choice("mode", mode, MODES)
        self.combine = check_choice("combine", combine, COMBINES)
        self.patience = check_int("patience", patience, 1)
        self.min_epochs = check_int("min_epochs", min_epochs, 0)
        self.window = check_int("window", window, 1)
        self.deadline = check_int("deadline", deadline, 1, allow_none=True)
        if deadline is not None and deadline < min_epochs:
            raise ValueError(f"`deadline` ({deadline}) must be >= `min_epochs` ({min_epochs})")
        self.guard_finite = check_bool("guard_finite", guard_finite)
        self.guard_learning = check_bool("guard_learning", guard_learning)
        self.loss_window = check_int("loss_window", loss_window, 1)
        self.loss_threshold = check_number(
            "loss_threshold", loss_threshold, minimum=0, exclusive=True
        )
        self.guard_lr = check_bool("guard_lr", guard_lr)
        self.lr_cooldown = check_int("lr_cooldown", lr_cooldown, 0)
        self.learning_signal = check_choice("learning_signal", learning_signal, LEARNING_SIGNALS)
        if fallback is not None:
            if not isinstance(fallback, Mapping):
                raise ValueError(
                    f"`fallback` must be a mapping of detector settings or None, got {fallback!r}"
                )
            extra = set(fallback) - (set(DEFAULTS) - {"fallback"})
            if extra:
                raise ValueError(
                    f"unknown `fallback` keys {sorted(extra)}; valid: "
                    f"{sorted(set(DEFAULTS) - {'fallback'})}"
                )
            fallback = dict(fallback)
        self.fallback = fallback
        self.floor = check_number("floor", floor, minimum=0, maximum=1, allow_none=True)
        self.eps = check_number("eps", eps, minimum=0, exclusive=True)
        #: the fit's epochs, for ``mode="budget"`` (set by the caller before the first update)
        self.budget: int | None = None

        self.history: list[dict[str, Any]] = []
        self._raw: dict[str, list[float]] = {m: [] for m in names}
        self._epochs: dict[str, list[int]] = {m: [] for m in names}  # of the raw values
        self._smoothed: dict[str, list[float]] = {m: [] for m in names}
        self._streak: dict[str, int] = dict.fromkeys(names, 0)
        self._losses: list[float] = []
        self._lrs: list[float] = []
        self._last_drop: int | None = None
        self.event: CriticalPeriodEvent | None = None
        self.diverged: dict[str, Any] | None = None

    @property
    def fired(self) -> bool:
        return self.event is not None

    def settings(self) -> dict[str, Any]:
        """The constructor's arguments (what ``config.json`` and sweeps record)."""
        out = {"monitor": list(self.metrics), "mode": self.mode}
        thresholds = set(self.thresholds.values())
        out["threshold"] = thresholds.pop() if len(thresholds) == 1 else dict(self.thresholds)
        for key in DEFAULTS:
            if key not in out and key != "monitor":
                out[key] = getattr(self, key)
        return out

    # ------------------------------------------------------------------ the rule
    def _change(self, m: str) -> float:
        if self.mode == "budget":
            w = self.window
            return budget_slope(self._raw[m][-w:], self._epochs[m][-w:], self.budget)
        return step_change(self._smoothed[m], self.mode, self.eps)

    def _guards(
        self, epoch: int, pace: float | None, lr: float | None, rose: bool | None
    ) -> list[str]:
        blocked = []
        if self.guard_finite and self.diverged is not None:
            blocked.append("finite")
        # no pace yet (too few epochs): still learning; no improvement since epoch 1: not
        if self.guard_learning and (pace is None or pace >= self.loss_threshold):
            blocked.append("learning")
        if self.guard_lr:
            if rose is None and lr is not None and len(self._lrs) >= 2:
                rose = self._lrs[-1] > self._lrs[-2] * (1 + 1e-9)  # epoch-start rates only
            jumped = self._last_drop is not None and epoch - self._last_drop < self.lr_cooldown
            if rose or jumped:
                blocked.append("lr")
        return blocked

    def update(
        self,
        epoch: int,
        values: Mapping[str, float | None],
        *,
        loss: float | None = None,
        lr: float | None = None,
        finite: bool = True,
        cause: str | None = None,
        lr_rose: bool | None = None,
        lr_jump: bool | None = None,
        lr_mass_left: float | None = None,
    ) -> CriticalPeriodEvent | None:
        """Feed one completed epoch; returns the event the first time the detector fires.

        Args:
            epoch: the epoch that just ended.
            values: the watched metrics' values (missing or non-finite: not recorded, and the
                metric's stable streak restarts).
            loss: the epoch's training loss (for ``guard_learning`` and ``guard_finite``).
            lr: the epoch's learning rate at its start (for ``guard_lr`` without the flags).
            finite: ``False`` when the weights (or anything else the caller checked) are not
                finite; ``cause`` says what.
            lr_rose, lr_jump: whether the learning rate rose, or made a discontinuous drop,
                during the epoch (:class:`~critical.detector.guards.LRShape`; ``None``: judge
                from the epoch-start rates).
            lr_mass_left: the share of the fit's learning-rate mass still to come after this
                epoch (for ``floor``).
        """
        epoch = int(epoch)
        if self.guard_finite and self.diverged is None:
            causes = []
            if loss is not None and not _finite(loss):
                causes.append(f"training loss is {loss}")
            if not finite:
                causes.append(cause or "not finite")
            causes += [
                f"{m} is {values[m]}"
                for m in self.metrics
                if values.get(m) is not None and not _finite(values[m])
            ]
            if causes:
                self.diverged = {"epoch": epoch, "cause": "; ".join(causes)}
        if loss is not None:
            self._losses.append(float(loss))
        if lr is not None and _finite(lr):
            self._lrs.append(float(lr))
            if lr_jump is None and len(self._lrs) >= 2 and self._lrs[-1] < 0.5 * self._lrs[-2]:
                self._last_drop = epoch
        if lr_jump:
            self._last_drop = epoch
        pace = learning_pace(self._losses, self.loss_window)
        blocked = self._guards(epoch, pace, lr, lr_rose)

        changes: dict[str, float] = {}
        recorded: dict[str, float] = {}
        for m in self.metrics:
            v = values.get(m)
            if not _finite(v):
                self._streak[m] = 0
                continue
            assert v is not None
            recorded[m] = float(v)
            raw = self._raw[m]
            raw.append(float(v))
            self._epochs[m].append(epoch)
            budget = self.mode == "budget"  # a regression over the window, not an average
            tail = raw[-1:] if budget else raw[-self.window :]
            self._smoothed[m].append(sum(tail) / len(tail))
            # a change is only meaningful once the moving average (or fit) has a full window
            if len(raw) > self.window - budget:
                c = self._change(m)
                changes[m] = c
                stable = c < self.thresholds[m] and not blocked
                self._streak[m] = self._streak[m] + 1 if stable else 0
            else:
                self._streak[m] = 0
        self.history.append(
            {
                "epoch": epoch,
                "values": recorded,
                "changes": changes,
                "blocked": blocked,
                "loss": loss if _finite(loss) else None,
                "lr": lr if _finite(lr) else None,
                "pace": pace,
                "lr_rose": lr_rose,
                "lr_jump": lr_jump,
                "lr_mass_left": lr_mass_left,
            }
        )
        if self.event is not None:
            return None

        completed = epoch + 1
        settled = tuple(m for m in self.metrics if self._streak[m] >= self.patience)
        ok = bool(settled) if self.combine == "any" else len(settled) == len(self.metrics)
        last_values = {m: self._smoothed[m][-1] for m in self.metrics if self._smoothed[m]}
        if ok and not blocked and completed >= self.min_epochs:
            self.event = CriticalPeriodEvent(epoch, "stable", settled, last_values, changes)
        elif self.deadline is not None and completed >= self.deadline and self.diverged is None:
            self.event = CriticalPeriodEvent(
                epoch, "deadline", tuple(self.metrics), last_values, changes
            )
        elif (
            self.floor is not None
            and lr_mass_left is not None
            and lr_mass_left <= self.floor
            and completed >= self.min_epochs
            and self.diverged is None
        ):
            self.event = CriticalPeriodEvent(
                epoch, "floor", tuple(self.metrics), last_values, changes
            )
        return self.event

    # ------------------------------------------------------------------ checkpoint
    def state_dict(self) -> dict[str, Any]:
        return {
            "history": [dict(h) for h in self.history],
            "raw": {m: list(v) for m, v in self._raw.items()},
            "epochs": {m: list(v) for m, v in self._epochs.items()},
            "smoothed": {m: list(v) for m, v in self._smoothed.items()},
            "streak": dict(self._streak),
            "losses": list(self._losses),
            "lrs": list(self._lrs),
            "last_drop": self._last_drop,
            "event": None if self.event is None else self.event.to_dict(),
            "diverged": self.diverged,
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
        saved = state.get("epochs", {})  # older checkpoints: the epochs the history recorded
        self._epochs = {
            m: [int(e) for e in saved[m]]
            if m in saved
            else [int(h["epoch"]) for h in self.history if m in h.get("values", {})]
            for m in self.metrics
        }
        self._smoothed = {m: list(state.get("smoothed", {}).get(m, [])) for m in self.metrics}
        self._streak = {m: int(state.get("streak", {}).get(m, 0)) for m in self.metrics}
        self._losses = [float(v) for v in state.get("losses", [])]
        self._lrs = [float(v) for v in state.get("lrs", [])]
        self._last_drop = state.get("last_drop")
        ev = state.get("event")
        self.event = None if ev is None else CriticalPeriodEvent.from_dict(ev)
        self.diverged = state.get("diverged")

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.settings().items())
        return f"{type(self).__name__}({args})"
