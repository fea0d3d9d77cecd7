"""The detector's settings: the choices, the shipped defaults, the named rules of the literature
and of earlier versions, and which settings a run without validation falls back to.

Example:
    >>> from critical.detector.settings import DEFAULTS, FUKASE_RULE, reads_validation
    >>> DEFAULTS["monitor"], FUKASE_RULE["mode"], reads_validation(DEFAULTS)
    ('val/loss', 'budget', True)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal, get_args

__all__ = [
    "COMBINES",
    "DEFAULTS",
    "FUKASE_RULE",
    "LEARNING_SIGNALS",
    "MODES",
    "V02_RULE",
    "VAL_LOSS_KEYS",
    "Combine",
    "LearningSignal",
    "Mode",
    "fallback_settings",
    "reads_validation",
]

#: how a change is measured (:class:`~critical.detector.StabilityDetector`'s ``mode``)
Mode = Literal["scaled", "absolute", "relative", "budget"]
#: how several settled metrics combine
Combine = Literal["any", "all"]
#: what ``guard_learning`` reads
LearningSignal = Literal["train_loss", "val_loss", "aug_loss"]

MODES: tuple[str, ...] = get_args(Mode)
COMBINES: tuple[str, ...] = get_args(Combine)

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
LEARNING_SIGNALS: tuple[str, ...] = get_args(LearningSignal)


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
