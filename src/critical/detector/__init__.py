"""The stability detector: decides when the critical period of training is over.

Plain Python, no Lightning and no torch. The Lightning side lives in
:class:`critical.callbacks.CriticalPeriod`.

* :mod:`~critical.detector.rule`: :class:`StabilityDetector` (the rule, its guards, its state)
  and :data:`DEFAULTS`, the one source of its defaults;
* :mod:`~critical.detector.guards`: what the guards measure (the loss's pace, the learning
  rate's shape);
* :mod:`~critical.detector.explain`: why it fired, or what held it back;
* :mod:`~critical.detector.replay`: the same detector run over a finished run's logged rows (how
  sweeps evaluate detectors without training them again).

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
