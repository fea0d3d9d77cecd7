"""The critical-period callback: runs the stability detector on the epoch metrics and tells its
listeners (e.g. :class:`~critical.callbacks.AugmentationCutoff`) when the critical period is over."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn
from typing_extensions import override

from critical.callbacks._base import PREFIX, MetricCallback
from critical.callbacks._epoch_signals import EpochSignals, logged_readings, read_metrics
from critical.callbacks._lr_plan import fit_budget, floor_plan
from critical.callbacks._providers import (
    bind_providers,
    check_clean_side,
    check_spelling,
    insert_after,
    missing_providers,
    validates_every_epoch,
)
from critical.callbacks._resume import restore_or_warn
from critical.callbacks._rule_choice import RuleChoice
from critical.detector import (
    DEFAULTS,
    CriticalPeriodEvent,
    StabilityDetector,
    explain,
)
from critical.detector.settings import Combine, LearningSignal, Mode
from critical.validation import check_bool, check_str

Listener = Callable[[CriticalPeriodEvent, "pl.Trainer", "pl.LightningModule"], None]


def _strip(name: str) -> str:
    return name[len(PREFIX) :] if name.startswith(PREFIX) else name


class CriticalPeriod(Callback):
    """Declares the critical period over when the watched metrics stop changing and nothing says
    the model is still learning fast, warming up or diverging.

    At the end of every training epoch it feeds a :class:`~critical.detector.StabilityDetector`
    the watched metrics, the loss its learning guard reads, the learning rate's shape and whether
    the weights are finite (:mod:`critical.callbacks._epoch_signals`). The first time the
    detector fires it records a :class:`~critical.detector.CriticalPeriodEvent`, logs it and
    calls every listener registered with :meth:`add_listener`. The rule (``mode``,
    ``threshold``, ``patience``, ``min_epochs``, ``deadline``, ``combine``, ``window``,
    ``floor``) and the guards (``guard_finite``, ``guard_learning``, ``guard_lr``, all on by
    default) are described in :mod:`critical.detector`.

    **What it reads.** Library metrics (``"layer_rotation"``, ``"gradient_confusion/mean"``,
    ``"aug_gap/aug_loss"``, ...; with or without the ``critical/`` prefix) come from their
    callbacks: at ``setup`` it adds, right after itself, a default instance of each one its
    active rule needs that the Trainer lacks (:mod:`critical.callbacks._providers`), so
    ``CriticalPeriod()`` alone is a complete set-up; listed ones are used as they are. Any other
    name (``"val/loss"``, also read as ``val_loss``, ``valid/loss``, ``validation/loss``) is read
    from ``trainer.callback_metrics``; a name close to a library metric's is an error at
    construction. The learning guard reads ``learning_signal``: the training loss (the epoch mean
    of what ``training_step`` returns, or the ``loss`` metric), the validation loss of the same
    epoch, or the loss on fresh augmented views of a fixed probe of the training data
    (``"aug_loss"``, the default, from :class:`~critical.callbacks.AugmentationGap`; where no
    probe can be drawn, as from an iterable dataset, it says so once and reads the training
    loss). A fit that does not validate every epoch, or whose validation logs no loss, runs the
    ``fallback`` rule (:attr:`active`). A non-finite loss, weights or metric marks the run as
    diverged: a warning names the epoch and the cause, and it is never cut.

    Every decision explains itself (:meth:`explain`, the run summary). Under DDP every rank
    decides on rank 0's readings, so all fire in the same epoch. What it logs each epoch (so
    :func:`critical.detector.replay` can re-run it on ``metrics.csv``, and plots can show the
    guards' verdicts) is listed in :func:`critical.callbacks._epoch_signals.logged_readings`.

    Args:
        monitor: metric name or names.
        mode, threshold, patience, min_epochs, deadline, combine, window: the rule.
        guard_finite, guard_learning, loss_window, loss_threshold, guard_lr, lr_cooldown: the guards.
        learning_signal: what the learning guard reads: ``"train_loss"``, ``"val_loss"`` or
            ``"aug_loss"`` (above; the validation loss: the training loss in a fit without any).
        fallback: for a rule that reads validation metrics (a ``val/...`` monitor or
            ``learning_signal="val_loss"``), the detector settings used instead when the fit does
            not validate every epoch: decided at fit start from the trainer (a
            ``validation_step``, validation data, ``check_val_every_n_epoch=1``), and again at the
            end of epoch 0 if no validation ran then (:attr:`active` says which is in use).
        floor: fire, if nothing fired earlier, at the end of the first epoch after which at
            most this share of the fit's learning-rate mass is left (the schedule played forward
            at train start, :mod:`critical.callbacks._lr_plan`; logged as
            ``critical/lr_mass_left``); ``None`` (default): no floor. ``mode="budget"`` (Fukase
            et al.'s slope against epoch / budget, :data:`~critical.detector.FUKASE_RULE`)
            reads the budget from ``max_epochs``.
        loss: a logged metric to use as the training loss (default: ``training_step``'s output;
            when that is None, as under manual optimization, the first logged of
            ``train/loss``, ``train_loss``, ``loss``, with one message saying which, or a
            warning when there is none).
        strict: raise if a monitored metric is not available at epoch end (else skip the epoch,
            which restarts the metric's streak).
        verbose: print a line when the critical period ends.
        name: distinguishes two instances in checkpoints.

    Example:
        >>> import lightning as L
        >>> from critical.callbacks import CriticalPeriod, LayerRotation
        >>> cp = CriticalPeriod(monitor="layer_rotation")
        >>> cp.add_listener(lambda event, trainer, module: print("cut after epoch", event.epoch))
        >>> trainer = L.Trainer(callbacks=[LayerRotation(), cp], logger=False)
    """

    def __init__(
        self,
        monitor: str | Sequence[str] = DEFAULTS["monitor"],
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
        fallback: dict[str, Any] | None = DEFAULTS["fallback"],
        floor: float | None = DEFAULTS["floor"],
        loss: str | None = None,
        strict: bool = True,
        verbose: bool = True,
        name: str | None = None,
    ) -> None:
        names = [monitor] if isinstance(monitor, str) else list(monitor)
        self.monitor = [_strip(n) for n in names]
        check_spelling(self.monitor)
        if isinstance(fallback, Mapping) and "monitor" in fallback:
            fb = fallback["monitor"]
            check_spelling([_strip(n) for n in ([fb] if isinstance(fb, str) else fb)])
        if isinstance(threshold, Mapping):
            threshold = {_strip(k): v for k, v in threshold.items()}
        # the rule's settings are the arguments named in DEFAULTS (threshold: the stripped one)
        rule = {k: v for k, v in locals().items() if k in DEFAULTS and k != "monitor"}
        self.detector = StabilityDetector(self.monitor, **rule)
        self.verbose = check_bool("verbose", verbose)
        self._rules = RuleChoice(self.detector.settings(), self.verbose)
        self.loss = check_str("loss", loss, allow_none=True)
        self.strict = check_bool("strict", strict)
        self.name = name
        self._listeners: list[Listener] = []
        self._providers: dict[str, MetricCallback] = {}
        self._aug_provider: MetricCallback | None = None
        self._signals = EpochSignals(self.loss, self.strict)
        self._warned_diverged = False
        self._mass_left: list[float] | None = None  # per epoch, the LR mass after it (floor)

    def settings(self) -> dict[str, Any]:
        """The constructor's arguments (recorded in a run's ``config.json``)."""
        return {
            **self._rules.primary,
            "loss": self.loss,
            "strict": self.strict,
            "verbose": self.verbose,
            "name": self.name,
        }

    # ----------------------------------------------------------------- public API
    @property
    def event(self) -> CriticalPeriodEvent | None:
        """The event, once the critical period is over (``None`` before)."""
        return self.detector.event

    @property
    def fired(self) -> bool:
        return self.detector.fired

    def explain(self) -> dict[str, Any]:
        """Why the detector fired, or what held it back (:func:`critical.detector.explain`):
        ``{"over", "epoch", "reason", "held_back", "text"}``."""
        return explain(self.detector)

    @property
    def diverged(self) -> dict[str, Any] | None:
        """``{"epoch", "cause"}`` once a non-finite loss, weights or metric was seen."""
        return self.detector.diverged

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
    def active(self) -> str:
        """Which rule runs: ``"primary"``, or ``"fallback"`` (no validation each epoch)."""
        return self._rules.active

    @property
    @override
    def state_key(self) -> str:
        return self._generate_state_key(monitor=tuple(self.monitor), name=self.name)

    # ----------------------------------------------------------------- hooks
    @override
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage != "fit":
            return
        # a new fit starts clean; a resumed one gets its state restored next
        self._rules.signal_override = None
        self._mass_left = None
        self.detector = self._rules.build("primary")
        self._signals.reset_fit()
        self._warned_diverged = False
        if self._rules.may_fall_back and not validates_every_epoch(trainer, pl_module):
            self.detector = self._rules.build("fallback")
            self._rules.announce(self.detector, "this fit does not validate every epoch")
        self._provide(trainer, pl_module)  # before the checkpoint restores their state

    @override
    def on_load_checkpoint(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        restore_or_warn(
            self,
            checkpoint,
            trainer,
            "the detector starts over (its metric and loss histories restart; it has not fired)",
        )

    def _provide(self, trainer: pl.Trainer, pl_module: pl.LightningModule, late: str = "") -> None:
        """Add the metric callbacks the active rule reads that the Trainer lacks, right after
        this one (:func:`~critical.callbacks._providers.missing_providers`)."""
        callbacks = trainer.callbacks  # type: ignore[attr-defined]  # set by Lightning at runtime
        added = missing_providers(self.detector, callbacks, self._guard_reads_aug)
        insert_after(trainer, self, added, pl_module, late, self.verbose)

    @property
    def _guard_reads_aug(self) -> bool:
        return self.detector.guard_learning and self.detector.learning_signal == "aug_loss"

    def _resolve(self, trainer: pl.Trainer) -> None:
        """Bind the callbacks providing the active detector's metrics (and the augmented-view
        loss)."""
        callbacks = trainer.callbacks  # type: ignore[attr-defined]  # set by Lightning at runtime
        self._providers, self._aug_provider = bind_providers(
            self.detector, callbacks, self._guard_reads_aug
        )

    def _switch_to_fallback(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, why: str
    ) -> None:
        self.detector = self._rules.build("fallback")
        self._provide(trainer, pl_module, late=why)
        self._resolve(trainer)
        self._rules.announce(self.detector, why)

    @override
    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # a resumed fit may run the other rule than setup chose (its checkpoint said which)
        self._provide(trainer, pl_module, late="resume")
        self._resolve(trainer)

    @override
    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._rules.budget = self.detector.budget = fit_budget(trainer, self.detector)
        if self.detector.floor is not None and self._mass_left is None:  # (restored on resume)
            self._mass_left = floor_plan(trainer, self.verbose)
        gap = self._aug_provider
        problem = None if gap is None else gap.resolve(trainer, pl_module)  # type: ignore[attr-defined]
        if problem is not None:  # only an optional (added) AugmentationGap gets here
            self._rules.signal_override = self.detector.learning_signal = "train_loss"
            self._aug_provider = None
            rank_zero_info(
                f"[critical] no probe of the training data for the learning guard ({problem}): "
                "it reads the training loss instead"
            )
        check_clean_side(self._providers)

    @override
    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._signals.begin_epoch(trainer)

    @override
    def on_train_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        self._signals.after_batch(trainer, outputs)

    @override
    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._signals.validation_ended(trainer)

    @override
    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        why = self._rules.reason_to_fall_back(
            self.detector, self._signals.val_epoch, trainer.current_epoch, trainer.callback_metrics
        )
        if why is not None:
            self._switch_to_fallback(trainer, pl_module, why)
        values = read_metrics(
            trainer, pl_module, self.detector.metrics, self._providers, self.strict
        )
        state = self._signals.readings(
            trainer, pl_module, self.detector, self._aug_provider, values
        )
        loss, guard_loss, lr = state["loss"], state["guard_loss"], state["lr"]
        epoch = trainer.current_epoch
        mass_left = (
            self._mass_left[epoch]
            if self._mass_left is not None and epoch < len(self._mass_left)
            else None
        )
        rose, jumped = state["rose"], state["jumped"]
        causes = [] if state["finite"] else ["the weights are not finite"]
        if not state["guard_is_train"] and loss is not None and not math.isfinite(loss):
            causes.append(f"training loss is {loss}")  # (the detector names a fed loss itself)
        was_fired = self.detector.fired
        event = self.detector.update(
            trainer.current_epoch,
            state["values"],
            loss=guard_loss,
            lr=lr,
            finite=not causes,
            cause="; ".join(causes) or None,
            lr_rose=rose,
            lr_jump=jumped,
            lr_mass_left=mass_left,
        )
        if self.detector.diverged is not None and not self._warned_diverged:
            self._warned_diverged = True
            d = self.detector.diverged
            rank_zero_warn(
                f"CriticalPeriod: the run diverged in epoch {d['epoch']} ({d['cause']}); the "
                "critical period is never declared over on a diverged run, so k is not cut"
            )
        if event is not None and not was_fired:
            if self.verbose:
                vals = ", ".join(f"{k}={v:.4g}" for k, v in event.values.items())
                rank_zero_info(
                    f"[critical] critical period over at the end of epoch {event.epoch} "
                    f"({event.reason}; {vals})"
                )
            for listener in list(self._listeners):
                listener(event, trainer, pl_module)
        metrics = logged_readings(self.detector, state, self._signals.lr_mean, mass_left)
        pl_module.log_dict(
            metrics, on_step=False, on_epoch=True, sync_dist=False, rank_zero_only=False
        )

    # ----------------------------------------------------------------- checkpoint
    @override
    def state_dict(self) -> dict[str, Any]:
        return {
            "detector": self.detector.state_dict(),
            "monitor": list(self.monitor),
            "active": self.active,
            "lr_shape": self._signals.lr_shape.state_dict(),
            "lr_mass_left": self._mass_left,
        }

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        saved = state_dict.get("active", "primary")
        self._signals.lr_shape.load_state_dict(state_dict.get("lr_shape", {}))
        self._mass_left = state_dict.get("lr_mass_left")  # the plan the fit started with
        if saved == "fallback" and self.active != "fallback":
            self.detector = self._rules.build("fallback")  # resolved in on_fit_start
        elif saved == "primary" and self.active == "fallback":
            # e.g. a branch off a run that validated every epoch, resumed without validation:
            # the checkpoint's detector ran the other rule, so this fit's rule starts here
            rank_zero_warn(
                "CriticalPeriod: the checkpoint's detector ran the primary rule (monitor "
                f"{', '.join(self.monitor)}); this fit does not validate every epoch, so its "
                f"fallback rule (monitor {', '.join(self.detector.metrics)}) starts from the "
                "resume point"
            )
            return
        self.detector.load_state_dict(state_dict["detector"])
