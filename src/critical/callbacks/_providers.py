"""What feeds :class:`~critical.callbacks.CriticalPeriod`: the library's metric callbacks its rule
reads (found among the Trainer's callbacks, or added when missing) and whether the fit validates
every epoch (which decides between the primary rule and its fallback).

Example:
    >>> from critical.detector import StabilityDetector
    >>> missing_providers(StabilityDetector(["layer_rotation"], guard_learning=False), [])
    [<critical.callbacks.layer_rotation.LayerRotation object at ...>]
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.utilities import rank_zero_info
from lightning.pytorch.utilities.model_helpers import is_overridden

from critical.callbacks._base import MetricCallback

__all__ = [
    "AUG_LOSS",
    "CLEAN_SIDE",
    "bind_providers",
    "check_clean_side",
    "check_spelling",
    "insert_after",
    "known_metric_names",
    "known_metric_names_to_classes",
    "missing_providers",
    "validates_every_epoch",
    "validation_data_defined",
]

#: the augmented-view loss the default learning guard reads, and the gap's clean-side metrics
AUG_LOSS = "aug_gap/aug_loss"
CLEAN_SIDE = ("aug_gap", "aug_gap/clean_loss", "aug_gap/clean_acc")


def known_metric_names_to_classes() -> dict[str, type[MetricCallback]]:
    """Short metric name -> the library callback class that provides it."""
    from critical._registry import known_metric_classes

    return known_metric_classes()


def known_metric_names() -> dict[str, str]:
    """Short metric name -> the name of the callback class that provides it."""
    return {name: cls.__name__ for name, cls in known_metric_names_to_classes().items()}


def check_spelling(names: Sequence[str]) -> None:
    """A monitored name that is not one of the library's metrics but close to one (a typo) is an
    error; any other name must be a metric the module logs (checked at the first epoch end)."""
    known = known_metric_names()
    for m in names:
        if m in known or "@" in m:  # a library metric, or a named instance's key
            continue
        close = difflib.get_close_matches(m, list(known), n=1, cutoff=0.75)
        if close:
            raise ValueError(
                f"CriticalPeriod monitors {m!r}, which no callback computes: did you mean "
                f"{close[0]!r}? The library's metrics: {', '.join(sorted(known))}; any other "
                "name must be a metric your module logs"
            )


def validation_data_defined(trainer: pl.Trainer, pl_module: pl.LightningModule) -> bool:
    """Whether the fit has validation data: the datamodule's or the module's own
    ``val_dataloader`` (public: :func:`~lightning.pytorch.utilities.model_helpers.is_overridden`),
    or loaders passed to ``fit(val_dataloaders=...)``, which only the fit loop's data source
    knows (Lightning has no public accessor: read where it lives in Lightning 2.x, else judged
    by the module's ``val_dataloader``)."""
    dm = getattr(trainer, "datamodule", None)
    if dm is not None:
        return is_overridden("val_dataloader", dm)
    loop = getattr(getattr(trainer, "fit_loop", None), "epoch_loop", None)
    source = getattr(getattr(loop, "val_loop", None), "_data_source", None)
    if source is not None and callable(getattr(source, "is_defined", None)):
        return bool(source.is_defined())
    return is_overridden("val_dataloader", pl_module)


def validates_every_epoch(trainer: pl.Trainer, pl_module: pl.LightningModule) -> bool:
    """Whether this fit will validate after every training epoch (as far as the trainer tells
    before the first epoch)."""
    if not is_overridden("validation_step", pl_module):
        return False
    if trainer.limit_val_batches == 0 or (trainer.check_val_every_n_epoch or 1) != 1:
        return False
    return validation_data_defined(trainer, pl_module)


def _metric_callbacks(callbacks: Sequence[Any]) -> list[MetricCallback]:
    return [cb for cb in callbacks if isinstance(cb, MetricCallback)]


def missing_providers(
    detector: Any, callbacks: Sequence[Any], guard_reads_aug: bool = False
) -> list[MetricCallback]:
    """A default instance of each metric callback ``detector`` reads that ``callbacks`` lack: the
    one computing each watched library metric, and, with ``guard_reads_aug``, an *optional*
    :class:`~critical.callbacks.AugmentationGap` for the learning guard (augmented side only:
    ``clean=False``; data without a probe then make the guard read the training loss instead of
    failing)."""
    from critical.callbacks.augmentation_gap import AugmentationGap

    known = known_metric_names_to_classes()
    have = _metric_callbacks(callbacks)
    added: list[MetricCallback] = []

    def provided(name: str) -> bool:
        return any(name in cb.metric_names for cb in have + added)

    for m in detector.metrics:
        if m in known and not provided(m):
            added.append(known[m]())
    if guard_reads_aug and not provided(AUG_LOSS):
        gap = AugmentationGap(clean=False)  # the guard reads the augmented side only
        gap.optional = True
        added.append(gap)
    return added


def insert_after(
    trainer: pl.Trainer,
    anchor: Any,
    added: Sequence[MetricCallback],
    pl_module: pl.LightningModule,
    late: str = "",
    verbose: bool = True,
) -> None:
    """Put ``added`` into the Trainer's callbacks right after ``anchor`` (Lightning iterates the
    live list, so they get the hook being run and every later one). ``late`` (why) when the
    fit's ``setup`` has passed: they are set up here and start measuring from this point."""
    if not added:
        return
    callbacks = trainer.callbacks  # type: ignore[attr-defined]  # set by Lightning at runtime
    at = callbacks.index(anchor) + 1
    callbacks[at:at] = list(added)
    names = ", ".join(f"{type(cb).__name__}()" for cb in added)
    if late:
        for cb in added:
            cb.setup(trainer, pl_module, "fit")
            cb.on_fit_start(trainer, pl_module)
            if late != "resume":
                cb.on_train_start(trainer, pl_module)
        rank_zero_info(f"[critical] {late}: CriticalPeriod added {names}, measuring from here")
    elif verbose:
        rank_zero_info(f"[critical] CriticalPeriod added {names} (what its rule reads)")


def bind_providers(
    detector: Any, callbacks: Sequence[Any], guard_reads_aug: bool
) -> tuple[dict[str, MetricCallback], MetricCallback | None]:
    """The callbacks providing ``detector``'s watched metrics and, with ``guard_reads_aug``, the
    augmented-view loss; a library metric without its callback is an error."""
    have = _metric_callbacks(callbacks)
    known = known_metric_names()
    providers: dict[str, MetricCallback] = {}
    for m in detector.metrics:
        provider = next((cb for cb in have if m in cb.metric_names), None)
        if provider is not None:
            providers[m] = provider
        elif m in known:
            raise ValueError(
                f"CriticalPeriod monitors {m!r}, which the {known[m]} callback computes, but no "
                f"{known[m]} is in the Trainer's callbacks: add `{known[m]}()` to them"
            )
    aug = (
        next((cb for cb in have if AUG_LOSS in cb.metric_names), None) if guard_reads_aug else None
    )
    if guard_reads_aug and aug is None:
        raise ValueError(
            "CriticalPeriod(learning_signal='aug_loss') reads the AugmentationGap callback's "
            "loss, and none is in the Trainer's callbacks: add `AugmentationGap()`"
        )
    return providers, aug


def check_clean_side(providers: Mapping[str, Any]) -> None:
    """A monitored metric of the clean side (:data:`CLEAN_SIDE`) whose provider found no clean
    view of the training data: a ``ValueError`` at train start, naming why."""
    for m, cb in providers.items():
        if m in CLEAN_SIDE and getattr(cb, "has_clean", True) is False:
            why = getattr(cb, "clean_how", None)
            raise ValueError(
                f"CriticalPeriod monitors {m!r}, which compares augmented with un-augmented "
                "views, and the training data do not say what an un-augmented view is"
                f"{f' ({why})' if why else ''}: monitor 'aug_gap/aug_loss', give the "
                "dataset a torchvision Compose as its transform, or wrap it in "
                "critical.data.MultiplicityDataset(..., transform=..., eval_transform=...)"
            )
