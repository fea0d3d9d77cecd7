"""The stability detector's rule and guards (:class:`StabilityDetector`).

Plain Python, no Lightning and no torch: it is fed one value per watched metric per completed
epoch (plus the epoch's training loss and learning-rate shape, for the guards) and says when
the metrics have stopped changing *and* nothing says the cut would be unsafe.

Rule
----
For each watched metric the detector keeps the epoch values ``v_e`` (optionally smoothed by a
trailing moving average over ``window`` epochs) and measures the change between consecutive
epochs in one of three ways (``mode``):

* ``"scaled"`` (default): the change against the metric's own scale,
  ``r_e = n * |v_e - v_{e-1}| / (max(v) - min(v))`` over the ``n + 1`` values seen so far: the
  slope of the curve on axes normalised by the range seen so far and by the epochs elapsed, so
  ``r = 1`` is Fukase et al.'s 45-degree slope, a straight line always reads 1, and a curve that
  has bent over reads less. Unitless, and the same for a metric scaled by any factor, for any
  learning rate, model or schedule length. A curve that jumped in its first epoch and then
  drifts linearly (layer rotation at a large learning rate) reads ~1, not "flat".
* ``"absolute"``: ``|v_e - v_{e-1}|`` (right for metrics with a known scale).
* ``"relative"``: ``|v_e - v_{e-1}| / max(|v_{e-1}|, eps)`` (Accordion's rule on the gradient
  norm is ``mode="relative", threshold=0.5, patience=1``).
* ``"budget"``: the least-squares slope of the last ``window`` raw values against the epoch as a
  fraction of the whole budget, ``e / (E - 1)`` (``E``: :attr:`StabilityDetector.budget`, the
  fit's epochs, set by the caller); no smoothing. Fukase et al.'s rule (public code,
  baunilhamarga/critical-periods) is this slope on layer rotation over 5 epochs below 1 (45
  degrees): :data:`FUKASE_RULE`. The budget is in the rule: per unit of budget the same
  per-epoch change is steeper in a longer fit, so a longer fit waits for a flatter curve.

Besides the rule, ``floor`` is a budget backstop: the detector fires (reason ``"floor"``) at
the end of the first epoch after which at most ``floor`` of the fit's learning-rate mass is left
(``lr_mass_left``: the sum of the learning rate over the steps still to come over its sum over
the whole fit, fed by the caller), if nothing fired earlier and the run has not diverged. Late,
low-learning-rate epochs are where augmentation buys least under every schedule.

An epoch is *stable* for a metric when the change is below ``threshold``. A metric is *settled*
after ``patience`` consecutive stable epochs. The detector fires at the end of the first epoch in
which the settled metrics satisfy ``combine`` ("any" or "all"), at least ``min_epochs`` epochs
have completed and no guard objects. With ``deadline`` it fires at the end of epoch ``deadline``
at the latest (reason ``"deadline"``), unless the run has diverged.

Guards (on by default, each switchable)
---------------------------------------
A flat metric can lie: it saturates after a large first-epoch move, the network dies, the run
diverges to NaN, or the learning rate is tiny during warm-up. While a guard objects, an epoch is
not stable for any metric (streaks restart):

* ``guard_finite``: a non-finite training loss, weights (``finite=False``) or watched metric
  marks the run *diverged*; a diverged run is never declared stable (nor cut by the deadline).
* ``guard_learning``: the loss it reads (``learning_signal``: by default the loss on fresh
  augmented views of a fixed training probe, else the training or the validation loss) is still
  improving at a good share of its own pace:
  its mean improvement per epoch over the last ``loss_window`` epochs is at least
  ``loss_threshold`` times its mean improvement per epoch since epoch 1,
  ``[(L_{e-w} - L_e) / w] / [(L_1 - L_e) / (e - 1)] >= loss_threshold`` (epoch 0, which holds
  the first transient drop, is left out). Scale-free like the ``"scaled"`` rule: a loss that
  still falls steadily (a straight line reads 1) or faster blocks the cut; one that has bent
  over (the rapid-learning phase is over) lets it through, even when it keeps creeping towards
  zero. Needs ``loss_window + 2`` epochs of loss; until then it objects.
* ``guard_lr``: the learning rate rose during the epoch (warm-up, or a warm restart), or made a
  discontinuous drop (a step schedule, see :class:`~critical.detector.guards.LRShape`) within
  the last ``lr_cooldown`` epochs. A smooth anneal (cosine, linear decay, OneCycle's second
  phase), stepped per epoch or per step, never blocks. Without the per-step flags (``lr_rose``,
  ``lr_jump``; older logs) it falls back to the epoch-start rates: a rise since the previous
  epoch, or a fall by more than half.

The shipped defaults (:data:`DEFAULTS`) were selected on a bank of 10 settings by a protocol
fixed before its runs (experiments/bank/PROTOCOL.md; docs/results.md): the validation loss
(``monitor="val/loss"``) on the scaled rule with ``threshold=0.3``, ``patience=1`` and a
3-epoch moving average, the learning guard on the augmented-view loss, and, for a fit that does
not validate every epoch, the ``fallback`` rule (layer rotation, ``threshold=0.5``).
:data:`V02_RULE` is version 0.2's default.

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
from dataclasses import asdict, dataclass, field
from typing import Any

from critical.detector.guards import learning_pace
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

MODES = ("scaled", "absolute", "relative", "budget")
COMBINES = ("any", "all")

#: The detector's defaults: the one source for :class:`StabilityDetector`,
#: :class:`~critical.callbacks.CriticalPeriod` and ``critical sweep`` (whose detector entries
#: accept exactly these keys). Selected on the bank of 10 settings by the protocol committed
#: before its runs (experiments/bank/PROTOCOL.md; the selection in
#: experiments/bank/selected.yaml, the scores in docs/results.md): the validation loss on the
#: scaled rule (0.3, patience 1, a 3-epoch moving average), the learning guard reading the loss
#: on fresh augmented views of a training probe (:class:`~critical.callbacks.AugmentationGap`),
#: and, for a fit that does not validate every epoch, the data-agnostic rule selected on all 10
#: settings (layer rotation, 0.5).
DEFAULTS: dict[str, Any] = {
    "monitor": "val/loss",
    "mode": "scaled",
    "threshold": 0.3,
    "patience": 1,
    "min_epochs": 3,
    "deadline": None,
    "combine": "any",
    "window": 3,
    "guard_finite": True,
    "guard_learning": True,
    "loss_window": 3,
    "loss_threshold": 0.5,
    "guard_lr": True,
    "lr_cooldown": 2,
    "learning_signal": "aug_loss",
    "fallback": {"monitor": "layer_rotation", "threshold": 0.5, "patience": 1, "window": 3},
    "floor": None,
}

#: The version-0.2 default (layer rotation, scaled 0.3, patience 2, the training-loss guard):
#: a baseline in the bank and what ``CriticalPeriod(**V02_RULE)`` still runs.
V02_RULE: dict[str, Any] = {
    **{k: v for k, v in DEFAULTS.items() if k != "fallback"},
    "monitor": "layer_rotation",
    "patience": 2,
    "window": 1,
    "learning_signal": "train_loss",
    "fallback": None,
}

#: Fukase et al.'s rule as their public code states it: the slope of mean layer rotation
#: (1 - cos to the initial kernels) over the last 5 epochs against epoch / (E - 1) below 1
#: (45 degrees), checked from the 5th epoch on, no guards but divergence.
FUKASE_RULE: dict[str, Any] = {
    **{k: v for k, v in DEFAULTS.items() if k != "fallback"},
    "monitor": "layer_rotation",
    "mode": "budget",
    "threshold": 1.0,
    "patience": 1,
    "window": 5,
    "min_epochs": 5,
    "guard_learning": False,
    "guard_lr": False,
    "learning_signal": "train_loss",
    "fallback": None,
}

#: what ``guard_learning`` reads (the caller feeds it; :class:`~critical.callbacks.CriticalPeriod`
#: and :func:`~critical.detector.replay` choose the source from this setting): the training loss,
#: the validation loss (``val/loss``; the training loss where no validation loss is logged), or
#: the loss on fresh augmented views of a fixed training probe
#: (:class:`~critical.callbacks.AugmentationGap`'s ``aug_gap/aug_loss``)
LEARNING_SIGNALS = ("train_loss", "val_loss", "aug_loss")


#: the names a validation loss is logged under, in the order they are looked up (a ``val/loss``
#: monitor and ``learning_signal="val_loss"`` read the first one present)
VAL_LOSS_KEYS = ("val/loss", "val_loss", "valid/loss", "validation/loss")


def reads_validation(settings: Mapping[str, Any]) -> bool:
    """Whether detector ``settings`` read validation metrics: a ``val/...`` (or ``val_...``)
    monitor, or ``learning_signal="val_loss"``.

    Example:
        >>> reads_validation({"monitor": "val/loss"}), reads_validation({"monitor": "aug_gap"})
        (True, False)
    """
    monitor = settings.get("monitor", DEFAULTS["monitor"])
    names = [monitor] if isinstance(monitor, str) else list(monitor)
    val = any(str(m).removeprefix("critical/").startswith(("val/", "val_")) for m in names)
    return val or settings.get("learning_signal") == "val_loss"


def fallback_settings(settings: Mapping[str, Any]) -> dict[str, Any]:
    """The settings to use in a run without validation each epoch: when ``settings`` read
    validation and have a fallback, the fallback's rule with every setting the user gave (any
    setting of ``settings`` other than ``monitor`` that differs from :data:`DEFAULTS`: a
    ``deadline``, ``min_epochs``, a threshold, the guards) holding over the shipped fallback's
    values, and a ``fallback`` of the user's own holding over those; else ``settings``
    themselves (without the ``fallback`` key). A per-metric threshold (a mapping) stays with the
    metrics it names.

    Example:
        >>> fb = fallback_settings({"monitor": "val/loss", "deadline": 4,
        ...                         "fallback": DEFAULTS["fallback"]})
        >>> fb["monitor"], fb["deadline"], fb["threshold"]
        ('layer_rotation', 4, 0.5)
        >>> fb = fallback_settings({"monitor": "val/loss", "learning_signal": "train_loss",
        ...                         "threshold": 0.2, "fallback": {"monitor": "aug_gap"}})
        >>> fb["monitor"], fb["learning_signal"], fb["threshold"]
        ('aug_gap', 'train_loss', 0.2)
    """
    fb = settings.get("fallback")
    if not (reads_validation(settings) and isinstance(fb, Mapping)):
        return {k: v for k, v in settings.items() if k != "fallback"}
    given = {
        k: v
        for k, v in settings.items()
        if k in DEFAULTS
        and k not in ("monitor", "fallback")
        and v != DEFAULTS[k]
        and not (k == "threshold" and isinstance(v, Mapping))
    }
    base = {k: v for k, v in DEFAULTS.items() if k != "fallback"}
    if dict(fb) == DEFAULTS["fallback"]:  # the shipped fallback: the user's settings hold over it
        return {**base, **fb, **given, "fallback": None}
    return {**base, **given, **fb, "fallback": None}  # the user's own fallback says it all


#: guard names, as they appear in ``history[i]["blocked"]``
GUARDS = ("finite", "learning", "lr")


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
        mode: str = DEFAULTS["mode"],
        threshold: float | Mapping[str, float] = DEFAULTS["threshold"],
        patience: int = DEFAULTS["patience"],
        min_epochs: int = DEFAULTS["min_epochs"],
        deadline: int | None = DEFAULTS["deadline"],
        combine: str = DEFAULTS["combine"],
        window: int = DEFAULTS["window"],
        guard_finite: bool = DEFAULTS["guard_finite"],
        guard_learning: bool = DEFAULTS["guard_learning"],
        loss_window: int = DEFAULTS["loss_window"],
        loss_threshold: float = DEFAULTS["loss_threshold"],
        guard_lr: bool = DEFAULTS["guard_lr"],
        lr_cooldown: int = DEFAULTS["lr_cooldown"],
        learning_signal: str = DEFAULTS["learning_signal"],
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
            return self._budget_slope(m)
        sm = self._smoothed[m]
        diff = abs(sm[-1] - sm[-2])
        if self.mode == "absolute":
            return diff
        if self.mode == "relative":
            return diff / max(abs(sm[-2]), self.eps)
        scale = max(sm) - min(sm)
        return 0.0 if scale <= 0 else diff * (len(sm) - 1) / scale

    def _budget_slope(self, m: str) -> float:
        """Least-squares slope of the last ``window`` values against epoch / (budget - 1)."""
        if self.budget is None or self.budget < 2:
            raise ValueError(
                "mode='budget' needs the fit's epochs: set `StabilityDetector.budget` (the "
                "CriticalPeriod callback sets it from trainer.max_epochs)"
            )
        ys = self._raw[m][-self.window :]
        xs = [e / (self.budget - 1) for e in self._epochs[m][-self.window :]]
        mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
        sxx = sum((x - mx) ** 2 for x in xs)
        sxy = sum((x - mx) * (y - my) for x, y in zip(xs, ys))
        return 0.0 if sxx <= 0 else sxy / sxx

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
