"""The stability detector: decides when the critical period of training is over.

Plain Python, no Lightning and no torch. The Lightning side lives in
:class:`critical.callbacks.CriticalPeriod`.

* :mod:`~critical.detector.rule`: :class:`StabilityDetector` (the rule, its guards, its state);
* :mod:`~critical.detector.settings`: the choices (``Mode``, ``Combine``, ``LearningSignal``),
  :data:`DEFAULTS` (the one source of its defaults), the named rules (:data:`V02_RULE`,
  :data:`FUKASE_RULE`) and the fallback for a run without validation;
* :mod:`~critical.detector.guards`: what the guards measure (the loss's pace, the learning
  rate's shape);
* :mod:`~critical.detector.explain`: why it fired, or what held it back;
* :mod:`~critical.detector.replay`: the same detector run over a finished run's logged rows (how
  sweeps evaluate detectors without training them again).

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

Example:
    >>> from critical.detector import StabilityDetector
    >>> det = StabilityDetector(["m"], mode="absolute", threshold=0.05, patience=2, window=1,
    ...                         min_epochs=1, guard_learning=False, guard_lr=False)
    >>> [det.update(e, {"m": v}) is not None for e, v in enumerate([1.0, 0.5, 0.48, 0.47])]
    [False, False, False, True]
    >>> det.event.epoch, det.event.reason
    (3, 'stable')
"""

from critical.detector.explain import epoch_ranges, explain
from critical.detector.guards import LRShape, learning_pace
from critical.detector.replay import replay
from critical.detector.rule import (
    COMBINES,
    DEFAULTS,
    FUKASE_RULE,
    GUARDS,
    LEARNING_SIGNALS,
    MODES,
    V02_RULE,
    VAL_LOSS_KEYS,
    CriticalPeriodEvent,
    StabilityDetector,
    fallback_settings,
    reads_validation,
)

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
    "LRShape",
    "StabilityDetector",
    "epoch_ranges",
    "explain",
    "fallback_settings",
    "learning_pace",
    "reads_validation",
    "replay",
]
