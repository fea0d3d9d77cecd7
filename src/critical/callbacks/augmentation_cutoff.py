"""The augmentation cutoff: drops multiplicity k to its target (default 1) at an epoch boundary."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, get_args

import lightning.pytorch as pl
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities import rank_zero_info
from typing_extensions import override

from critical.callbacks._base import PREFIX
from critical.callbacks._budget import StepBudget, epoch_budget, stage_plan
from critical.callbacks._cutoff_data import check_loaders_read, resolve_data
from critical.callbacks._resume import recover_cut, resume_epoch
from critical.callbacks._schedule import (
    ScheduleFollower,
    check_rebuilt_epochs,
    check_schedule_length,
    follow,
    follow_batch,
)
from critical.callbacks.critical_period import CriticalPeriod
from critical.choices import CutoffPolicy
from critical.detector import CriticalPeriodEvent
from critical.validation import check_bool, check_choice, check_int, check_number, check_type

POLICIES: tuple[str, ...] = get_args(CutoffPolicy)


class AugmentationCutoff(Callback):
    """Sets the training data's multiplicity k to ``target`` once the critical period is over.

    Policies:

    * ``"detector"`` (default): subscribes to the :class:`~critical.callbacks.CriticalPeriod`
      callback (``critical_period=``, or the only one in the Trainer's callbacks) and cuts at the
      end of the epoch in which it fires.
    * ``"fixed"``: cuts after ``epoch`` completed epochs, or after ``fraction * max_epochs``
      (rounded). ``epoch=0`` trains at the target k from the start. Resuming (``ckpt_path``) at
      or after that epoch from a run that kept k applies the cut before the first resumed epoch:
      this is how a k = 1 branch is taken off an always-k run (the cheap oracle of the sweeps).
    * ``"never"``: keeps k (a baseline that logs the same things).

    The cut takes effect at the next epoch boundary: the callback sets ``multiplicity`` (and, with
    ``disable_augmentation=True``, ``augment = False``) on the object found by
    :func:`critical.data.find_multiplicity_target` (the datamodule, or the train dataloader's
    dataset) and makes Lightning rebuild the train dataloader before the next epoch, so that
    epoch runs exactly the target-k number of batches and ``trainer.num_training_batches`` and
    the progress bar agree. Rebuilding also rebuilds Lightning's distributed sampler, so DDP
    sharding stays correct; every rank switches in the same epoch (the detector's decision is
    agreed across ranks). After a resume, the restored state puts k back where it was: a run
    resumed after the cut stays at the target k, one resumed before it still has its k.

    **Staged reduction** (``stages``, e.g. ``stages=(2,)`` for k = 3 -> 2 -> 1): at the cut k
    drops to the first stage, and the epochs left are split evenly among the stages and the
    target (``plan``: ``[[first epoch, k], ...]``, saved in checkpoints); each change is an
    epoch boundary like the cut, with the same schedule keeping and logging.

    The default keeps augmentation on at k = 1, as the seed proposal and Fukase et al. (2025) do;
    ``disable_augmentation=True`` turns it off entirely (Golatkar et al., 2019 style).

    **Learning-rate schedules survive the cut** (``follow_schedule=True``, the default). With
    the epoch layout the cut divides the optimizer steps per epoch by about k / target; a
    scheduler stepped per optimizer step (``interval="step"``: ``OneCycleLR``, a per-step
    ``LambdaLR`` warm-up + cosine, ``SequentialLR``, timm's schedulers stepped per update)
    was sized at fit start for k and would stop part-way. After the cut each such scheduler is
    advanced by the ratio of the steps per epoch before and after it, so its learning rate
    follows the uncut run's *as a function of epoch progress* and ends exactly where the uncut
    run ends (exact at every epoch boundary, also after a resume; see
    :mod:`critical.callbacks._schedule`). Epoch-interval schedulers are untouched.
    ``follow_schedule=False`` leaves per-step schedulers as they are (one warning at the cut).

    **A step budget** (``Trainer(max_steps=N)`` ending the fit before ``max_epochs`` does):
    at each change of k the steps left are rescaled by the ratio of the optimizer updates per
    epoch after and before it, so the cut run trains the same epochs of data as the uncut run
    in fewer steps (without it, a cut would save nothing: N steps whatever k is), and a
    per-step schedule sized for N ends where it would have (:mod:`critical.callbacks._budget`).
    ``trainer.max_steps`` is back at N when the fit ends; a resumed fit gets the rescaled value.

    Checked at fit start, before any training step: that ``multiplicity`` (and ``augment`` with
    ``disable_augmentation``) can be set (by setting the current value), and that a per-step
    scheduler with a known length (``total_steps``, e.g. ``OneCycleLR``) covers
    ``trainer.estimated_stepping_batches`` (a schedule sized from the data set's length at k = 1
    crashes in the second epoch at k = 3).

    Attributes:
        cut_epoch: first (0-based) epoch trained at the target k; ``None`` until decided.
        multiplicity_before: k at the start of training.
        multiplicity_after: the target k.

    Logged (prefix ``critical/``): ``multiplicity``, the k of the epoch that just ended.

    Example:
        >>> import lightning as L
        >>> from critical.callbacks import AugmentationCutoff, CriticalPeriod, LayerRotation
        >>> callbacks = [LayerRotation(), CriticalPeriod("layer_rotation"), AugmentationCutoff()]
        >>> trainer = L.Trainer(callbacks=callbacks, logger=False)
    """

    def __init__(
        self,
        policy: CutoffPolicy = "detector",
        epoch: int | None = None,
        fraction: float | None = None,
        target: int = 1,
        disable_augmentation: bool = False,
        critical_period: CriticalPeriod | None = None,
        follow_schedule: bool = True,
        verbose: bool = True,
        stages: Sequence[int] = (),
    ) -> None:
        self.policy = check_choice("policy", policy, POLICIES)
        check_int("epoch", epoch, 0, allow_none=True)
        check_number("fraction", fraction, minimum=0, maximum=1, allow_none=True)
        if policy == "fixed" and (epoch is None) == (fraction is None):
            raise ValueError("policy='fixed' needs exactly one of `epoch` or `fraction`")
        if policy != "fixed" and (epoch is not None or fraction is not None):
            raise ValueError(f"`epoch`/`fraction` only apply to policy='fixed', not {policy!r}")
        check_type("critical_period", critical_period, CriticalPeriod, "a CriticalPeriod", True)
        self.epoch = epoch
        self.fraction = fraction
        self.target = check_int("target", target, 1)
        self.disable_augmentation = check_bool("disable_augmentation", disable_augmentation)
        self.critical_period = critical_period
        self.follow_schedule = check_bool("follow_schedule", follow_schedule)
        self.verbose = check_bool("verbose", verbose)
        self.stages = tuple(check_int("stages", k, 1) for k in stages)
        if any(
            a <= b for a, b in zip((*self.stages, self.target), (*self.stages, self.target)[1:])
        ):
            raise ValueError(
                f"`stages` must decrease strictly and stay above `target` ({self.target}), "
                f"got {list(stages)}"
            )
        self._follower = ScheduleFollower()
        self._steps = StepBudget()
        #: ``[[first epoch, k], ...]`` from the cut on (one entry without ``stages``)
        self.plan: list[list[int]] = []

        self.cut_epoch: int | None = None
        self.multiplicity_before: int | None = None
        self.multiplicity_after: int = self.target
        self.reason: str | None = None
        self._trainer: pl.Trainer | None = None
        self._data: Any = None
        self._epoch_k: int | None = None
        self._restore_reload: int | None = None
        self._batches_before_cut: float | None = None
        self._fixed_at: int | None = None
        self._resume_epoch: int | None = None
        self._warned_schedule = False

    @property
    @override
    def state_key(self) -> str:
        return self._generate_state_key(
            policy=self.policy, epoch=self.epoch, fraction=self.fraction
        )

    @property
    def cut(self) -> bool:
        """Whether the cut has been decided (it may take effect at the next epoch)."""
        return self.cut_epoch is not None

    # ----------------------------------------------------------------- setup
    @override
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self._trainer = trainer
        if stage == "fit":  # a new fit starts clean; a resumed one gets its state restored next
            self._reset()

    def _reset(self) -> None:
        """The per-fit state, as constructed (the same callback object may serve several fits:
        each decides its own cut)."""
        self.cut_epoch = None
        self.multiplicity_before = None
        self.multiplicity_after = self.target
        self.reason = None
        self._data = None
        self._epoch_k = None
        self._batches_before_cut = None
        self._fixed_at = None
        self._resume_epoch = None
        self._warned_schedule = False
        self._follower = ScheduleFollower()
        self._steps = StepBudget()
        self.plan = []

    def _k_at(self, epoch: int) -> int:
        """The multiplicity the plan gives ``epoch`` (``target`` from the cut on, without
        ``stages``)."""
        ks = [k for first, k in self.plan if first <= epoch]
        return ks[-1] if ks else self.target

    @override
    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._data = resolve_data(
            trainer,
            pl_module,
            self.target,
            self.stages,
            self.disable_augmentation,
            self.multiplicity_before,
        )
        if self.multiplicity_before is None:
            self.multiplicity_before = int(self._data.multiplicity)
        if self.cut_epoch is None:
            check_schedule_length(trainer, self._data)
        if self.policy == "detector":
            cp = self.critical_period
            if cp is None:
                found = [cb for cb in trainer.callbacks if isinstance(cb, CriticalPeriod)]  # type: ignore[attr-defined]  # undeclared: Lightning sets it on the Trainer
                if len(found) != 1:
                    raise ValueError(
                        "AugmentationCutoff(policy='detector') needs exactly one CriticalPeriod "
                        f"callback in the Trainer (found {len(found)}); pass `critical_period=` "
                        "to choose one"
                    )
                cp = found[0]
            self.critical_period = cp
            cp.add_listener(self._on_critical_period_end)
        elif self.policy == "fixed" and self.cut_epoch is None:
            at = self.epoch
            if at is None:
                if trainer.max_epochs is None or trainer.max_epochs < 0:
                    raise ValueError(
                        "AugmentationCutoff(fraction=...) needs Trainer(max_epochs=...); under "
                        "a step budget (max_steps) give the cut as epoch=..."
                    )
                assert self.fraction is not None  # __init__: exactly one of epoch / fraction
                at = round(self.fraction * trainer.max_epochs)
            self._fixed_at = at
            start = self._resume_epoch or 0
            if start >= at:  # from the start, or a branch resumed from a run that kept k
                how = "fixed at epoch 0" if at == 0 else f"fixed at epoch {at}, applied on resume"
                self._decide(trainer, at, how)
        # A cut restored from a checkpoint applies now: a checkpoint holding a decided cut was
        # saved at or after the end of the deciding epoch, so training resumes at or after
        # `cut_epoch` (the trainer's epoch counter itself is restored only after this hook).
        self._apply()

    @override
    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """The loaders exist now: the data found at fit start must be what they read, and a
        step budget (``max_steps``) is noted, to be rescaled at each change of k."""
        check_loaders_read(trainer, self._data)
        if self._data is None or self.multiplicity_before is None:
            return
        cuts = self.policy != "never"  # one that never cuts notes the budget for its branches
        k_now = int(self._data.multiplicity)
        self._steps.start(trainer, self.multiplicity_before, k_now, cuts, self.verbose and cuts)

    @override
    def on_load_checkpoint(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        """Note the epoch training resumes at (the trainer's own counter is restored only after
        ``on_fit_start``), so a fixed cut that is already due applies before the first epoch."""
        self._resume_epoch = resume_epoch(checkpoint)
        recover_cut(self, checkpoint, trainer, self._resume_epoch)

    def _on_critical_period_end(
        self, event: CriticalPeriodEvent, trainer: pl.Trainer, pl_module: pl.LightningModule
    ) -> None:
        if self.cut_epoch is None:
            self._decide(trainer, event.epoch + 1, f"critical period over ({event.reason})")

    # ----------------------------------------------------------------- the cut
    def _decide(self, trainer: pl.Trainer, first_epoch: int, reason: str) -> None:
        self.cut_epoch = first_epoch
        ks = [*self.stages, self.target]
        self.plan = stage_plan(first_epoch, ks, epoch_budget(trainer))
        if self.stages:
            steps = ", ".join(f"k={k} from epoch {e}" for e, k in self.plan)
            reason = f"{reason}; staged: {steps}"
        self.reason = reason
        if self.verbose:
            rank_zero_info(
                f"[critical] multiplicity {self.multiplicity_before} -> "
                f"{' -> '.join(str(k) for k in ks)} from epoch {first_epoch} ({reason})"
            )
        self._batches_before_cut = trainer.num_training_batches
        self._apply(first_epoch)

    def _apply(self, epoch: int | None = None) -> None:
        """Set k on the data for ``epoch`` (the one about to train: by default the resumed one)
        once the cut is decided, and make Lightning rebuild the train dataloader before it if
        it was built with another k."""
        if self.cut_epoch is None or self._data is None:
            return
        if epoch is None:
            epoch = max(self._resume_epoch or 0, self.cut_epoch)
        k = self._k_at(epoch)
        data = self._data
        changed = int(data.multiplicity) != k
        data.multiplicity = k
        if self.disable_augmentation and getattr(data, "augment", False):
            data.augment = False
            changed = True
        trainer = self._trainer
        if changed and trainer is not None and self._restore_reload is None:
            self._restore_reload = trainer.reload_dataloaders_every_n_epochs  # type: ignore[attr-defined]  # undeclared: Lightning sets it on the Trainer
            trainer.reload_dataloaders_every_n_epochs = 1  # type: ignore[attr-defined]  # undeclared: Lightning sets it on the Trainer

    @override
    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._restore_reload is not None:  # the rebuild happened just before this hook
            trainer.reload_dataloaders_every_n_epochs = self._restore_reload  # type: ignore[attr-defined]  # undeclared: Lightning sets it on the Trainer
            self._restore_reload = None
            self._warned_schedule = check_rebuilt_epochs(
                trainer,
                self._batches_before_cut,
                self._k_at(trainer.current_epoch),
                self.multiplicity_before or 0,
                self.follow_schedule,
                self._warned_schedule,
            )
        if (
            self.follow_schedule
            and not self._follower.active
            and self.cut_epoch is not None
            and trainer.current_epoch >= self.cut_epoch
        ):
            follow(trainer, self._follower, self._batches_before_cut, self.verbose)
        self._epoch_k = int(self._data.multiplicity) if self._data is not None else None
        if self._epoch_k is not None:
            self._steps.follow(trainer, self._epoch_k, self.verbose)

    @override
    def on_train_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        follow_batch(trainer, self._follower, batch_idx)

    @override
    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.policy == "fixed" and self.cut_epoch is None:
            assert self._fixed_at is not None  # set by on_fit_start while the cut is undecided
            if trainer.current_epoch + 1 >= self._fixed_at:
                self._decide(trainer, trainer.current_epoch + 1, f"fixed at epoch {self._fixed_at}")
        nxt = trainer.current_epoch + 1
        if (
            self.cut_epoch is not None
            and nxt > self.cut_epoch
            and self._k_at(nxt) != self._k_at(nxt - 1)
        ):
            self._apply(nxt)  # the next stage
        if self._epoch_k is not None:
            pl_module.log(
                PREFIX + "multiplicity", float(self._epoch_k), on_step=False, on_epoch=True
            )

    @override
    def on_exception(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException
    ) -> None:
        self._steps.restore(trainer)

    @override
    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._steps.restore(trainer)
        if self._restore_reload is not None:
            trainer.reload_dataloaders_every_n_epochs = self._restore_reload  # type: ignore[attr-defined]  # undeclared: Lightning sets it on the Trainer
            self._restore_reload = None
        if self.critical_period is not None:
            self.critical_period.remove_listener(self._on_critical_period_end)

    # ----------------------------------------------------------------- checkpoint
    @override
    def state_dict(self) -> dict[str, Any]:
        return {
            "cut_epoch": self.cut_epoch,
            "multiplicity_before": self.multiplicity_before,
            "multiplicity_after": self.multiplicity_after,
            "reason": self.reason,
            "schedule": self._follower.state_dict(),
            "plan": [list(p) for p in self.plan],
            "step_budget": self._steps.state_dict(),
        }

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.cut_epoch = state_dict.get("cut_epoch")
        self.multiplicity_before = state_dict.get("multiplicity_before")
        self.multiplicity_after = state_dict.get("multiplicity_after", self.target)
        self.reason = state_dict.get("reason")
        self._follower.load_state_dict(state_dict.get("schedule", {}))
        self.plan = [[int(e), int(k)] for e, k in state_dict.get("plan", [])]
        self._steps.load_state_dict(state_dict.get("step_budget", {}))
        # strategies that restore after `on_fit_start` (e.g. DeepSpeed) reach here late
        self._apply()
