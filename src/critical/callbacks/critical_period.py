"""The critical-period callback: runs the stability detector on the epoch metrics and tells its
listeners (e.g. :class:`~critical.callbacks.AugmentationCutoff`) when the critical period is over."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities import rank_zero_info

from critical.callbacks._base import PREFIX, MetricCallback
from critical.detector import DEFAULTS, CriticalPeriodEvent, StabilityDetector

Listener = Callable[[CriticalPeriodEvent, "pl.Trainer", "pl.LightningModule"], None]


def known_metric_names() -> dict[str, str]:
    """Short metric name -> the callback class that provides it."""
    from critical.callbacks.gradient_confusion import GradientConfusion
    from critical.callbacks.gradient_norm import GradientNorm
    from critical.callbacks.gradient_predictability import GradientPredictability
    from critical.callbacks.layer_rotation import LayerRotation

    return {
        name: cls.__name__
        for cls in (GradientConfusion, GradientNorm, GradientPredictability, LayerRotation)
        for name in cls.metric_names
    }


class CriticalPeriod(Callback):
    """Declares the critical period over when the watched metrics stop changing.

    At the end of every training epoch it reads the watched metrics, feeds them to a
    :class:`~critical.detector.StabilityDetector` and, the first time the detector fires, records
    a :class:`~critical.detector.CriticalPeriodEvent` (epoch, reason, values, changes), logs it and
    calls every listener registered with :meth:`add_listener`. See
    :mod:`critical.detector` for the rule (threshold on the per-epoch change, absolute or
    relative, ``patience``, ``min_epochs``, ``deadline``, ``combine``, ``window``).

    Metrics are named as the metric callbacks log them, with or without the ``critical/`` prefix
    (``"layer_rotation"``, ``"gradient_predictability"``, ``"gradient_confusion/mean"``, ...); the
    values are pulled from those callbacks, so callback order does not matter. Any other logged
    metric (e.g. ``"train/loss"``) is read from ``trainer.callback_metrics``.

    Under DDP, rank 0's values are broadcast before the detector runs, so every rank fires in the
    same epoch with the same event.

    Logged (prefix ``critical/``): ``critical_period_over`` (0 before the event, 1 from the
    firing epoch on) and ``critical_period_epoch`` once fired.

    Args:
        monitor: metric name or names.
        threshold: per-epoch change below which an epoch is stable (float, or a mapping from
            metric to threshold).
        mode: ``"absolute"`` (default; right for metrics near zero) or ``"relative"``.
        patience: consecutive stable epochs needed.
        min_epochs: earliest number of completed epochs at which it may fire.
        deadline: number of completed epochs at which it fires anyway (``None``: never forced).
        combine: ``"any"`` or ``"all"`` of the metrics must settle.
        window: trailing moving average over this many epochs before differencing.
        strict: raise if a monitored metric is not available at epoch end (else warn-free skip,
            which resets the metric's streak).
        verbose: print a line when the critical period ends.
        name: distinguishes two instances in checkpoints.

    Example:
        >>> import lightning as L
        >>> from critical.callbacks import CriticalPeriod, LayerRotation
        >>> cp = CriticalPeriod(monitor="layer_rotation", threshold=0.01, patience=2)
        >>> cp.add_listener(lambda event, trainer, module: print("cut after epoch", event.epoch))
        >>> trainer = L.Trainer(callbacks=[LayerRotation(), cp], logger=False)
    """

    def __init__(
        self,
        monitor: str | Sequence[str] = DEFAULTS["monitor"],
        threshold: float | Mapping[str, float] = DEFAULTS["threshold"],
        mode: str = DEFAULTS["mode"],
        patience: int = DEFAULTS["patience"],
        min_epochs: int = DEFAULTS["min_epochs"],
        deadline: int | None = DEFAULTS["deadline"],
        combine: str = DEFAULTS["combine"],
        window: int = DEFAULTS["window"],
        strict: bool = True,
        verbose: bool = True,
        name: str | None = None,
    ) -> None:
        names = [monitor] if isinstance(monitor, str) else list(monitor)
        short = [n[len(PREFIX) :] if n.startswith(PREFIX) else n for n in names]
        if isinstance(threshold, Mapping):
            threshold = {
                (k[len(PREFIX) :] if k.startswith(PREFIX) else k): v for k, v in threshold.items()
            }
        self.detector = StabilityDetector(
            short,
            threshold=threshold,
            mode=mode,
            patience=patience,
            min_epochs=min_epochs,
            deadline=deadline,
            combine=combine,
            window=window,
        )
        self.monitor = short
        self.strict = strict
        self.verbose = verbose
        self.name = name
        self._listeners: list[Listener] = []
        self._providers: dict[str, MetricCallback] = {}

    # ----------------------------------------------------------------- public API
    @property
    def event(self) -> CriticalPeriodEvent | None:
        """The event, once the critical period is over (``None`` before)."""
        return self.detector.event

    @property
    def fired(self) -> bool:
        return self.detector.fired

    def add_listener(self, listener: Listener) -> None:
        """Call ``listener(event, trainer, pl_module)`` when the critical period ends (once).

        Listeners run on every rank, in the epoch-end hook of the firing epoch.
        """
        if not callable(listener):
            raise ValueError(f"listener must be callable, got {listener!r}")
        if listener not in self._listeners:
            self._listeners.append(listener)

    def remove_listener(self, listener: Listener) -> None:
        if listener in self._listeners:
            self._listeners.remove(listener)

    @property
    def state_key(self) -> str:
        return self._generate_state_key(monitor=tuple(self.monitor), name=self.name)

    # ----------------------------------------------------------------- hooks
    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        known = known_metric_names()
        metric_cbs = [cb for cb in trainer.callbacks if isinstance(cb, MetricCallback)]
        self._providers = {}
        for m in self.monitor:
            provider = next((cb for cb in metric_cbs if m in cb.metric_names), None)
            if provider is not None:
                self._providers[m] = provider
            elif m in known:
                raise ValueError(
                    f"CriticalPeriod monitors {m!r}, which the {known[m]} callback computes, but no "
                    f"{known[m]} is in the Trainer's callbacks: add `{known[m]}()` to them"
                )

    def _read(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> dict[str, float]:
        values: dict[str, float] = {}
        for m in self.monitor:
            provider = self._providers.get(m)
            if provider is not None:
                v = provider.finalize_epoch(trainer, pl_module).get(m)
            else:
                raw = trainer.callback_metrics.get(m, trainer.callback_metrics.get(PREFIX + m))
                if raw is None and self.strict:
                    raise RuntimeError(
                        f"CriticalPeriod could not find the monitored metric {m!r}; available: "
                        f"{sorted(trainer.callback_metrics)}. Pass strict=False to skip missing epochs."
                    )
                v = None if raw is None else float(raw)
            if v is not None and math.isfinite(v):
                values[m] = float(v)
        return values

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        values = self._read(trainer, pl_module)
        if trainer.world_size > 1:
            values = trainer.strategy.broadcast(values, src=0)
        was_fired = self.detector.fired
        event = self.detector.update(trainer.current_epoch, values)
        if event is not None and not was_fired:
            if self.verbose:
                vals = ", ".join(f"{k}={v:.4g}" for k, v in event.values.items())
                rank_zero_info(
                    f"[critical] critical period over at the end of epoch {event.epoch} "
                    f"({event.reason}; {vals})"
                )
            for listener in list(self._listeners):
                listener(event, trainer, pl_module)
        metrics = {PREFIX + "critical_period_over": float(self.detector.fired)}
        if self.detector.event is not None:
            metrics[PREFIX + "critical_period_epoch"] = float(self.detector.event.epoch)
        pl_module.log_dict(
            metrics, on_step=False, on_epoch=True, sync_dist=False, rank_zero_only=False
        )

    # ----------------------------------------------------------------- checkpoint
    def state_dict(self) -> dict[str, Any]:
        return {"detector": self.detector.state_dict(), "monitor": list(self.monitor)}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.detector.load_state_dict(state_dict["detector"])
