"""Which rule :class:`~critical.callbacks.CriticalPeriod` runs: its primary settings, or their
fallback where the fit does not validate every epoch (or its validation logs no loss), each
built as a fresh detector with the learning signal the data allow and the fit's budget.

Example:
    >>> from critical.detector import DEFAULTS
    >>> rules = RuleChoice(dict(DEFAULTS), verbose=False)
    >>> rules.may_fall_back, rules.build("fallback").metrics, rules.active
    (True, ['layer_rotation'], 'fallback')
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from lightning.pytorch.utilities import rank_zero_info

from critical.detector import (
    VAL_LOSS_KEYS,
    StabilityDetector,
    fallback_settings,
    reads_validation,
)

__all__ = ["RuleChoice"]


class RuleChoice:
    """The primary settings, which rule is active, and what every rule built here shares.

    Attributes:
        primary: the detector settings the callback was constructed with.
        active: ``"primary"`` or ``"fallback"``.
        signal_override: the learning signal to read instead of the settings' (``"train_loss"``
            where no probe of the training data can be drawn), or ``None``.
        budget: the fit's epochs (for ``mode="budget"``), or ``None``.
    """

    def __init__(self, primary: dict[str, Any], verbose: bool = True) -> None:
        self.primary = primary
        self.verbose = verbose
        self.active = "primary"
        self.signal_override: str | None = None
        self.budget: int | None = None

    def build(self, which: str) -> StabilityDetector:
        """A fresh detector for the primary rule or its fallback, which becomes :attr:`active`."""
        settings = dict(self.primary if which == "primary" else fallback_settings(self.primary))
        if self.signal_override is not None:
            settings["learning_signal"] = self.signal_override
        detector = StabilityDetector(settings.pop("monitor"), **settings)
        detector.budget = self.budget
        self.active = which
        return detector

    @property
    def may_fall_back(self) -> bool:
        """The primary rule is in use, reads validation and has a fallback."""
        return (
            self.active == "primary"
            and reads_validation(self.primary)
            and isinstance(self.primary.get("fallback"), Mapping)
        )

    def reason_to_fall_back(
        self, detector: StabilityDetector, val_epoch: int | None, epoch: int, logged: Any
    ) -> str | None:
        """At the end of the first epoch: why the primary rule cannot run in this fit (no
        validation ran, or it logged no loss the rule watches), or ``None``."""
        if not self.may_fall_back or detector.history:
            return None
        if val_epoch != epoch:
            return f"no validation ran in epoch {epoch}"
        watches_loss = any(m in VAL_LOSS_KEYS for m in detector.metrics)
        if watches_loss and not any(k in logged for k in VAL_LOSS_KEYS):
            return f"the validation logs no loss (none of {', '.join(VAL_LOSS_KEYS)})"
        return None

    def announce(self, detector: StabilityDetector, why: str) -> None:
        if self.verbose:
            rank_zero_info(
                f"[critical] {why}: the detector uses its fallback rule "
                f"(monitor {', '.join(detector.metrics)}, "
                f"learning_signal {detector.learning_signal})"
            )
