"""The training data an :class:`~critical.callbacks.AugmentationCutoff` cuts: found and checked
settable at fit start, and checked again once the loaders exist.

:func:`resolve_data` finds the object that holds the multiplicity k (through
:func:`critical.data.find_multiplicity_target`: the datamodule, or the train dataloader's
dataset) and sets ``multiplicity`` (and ``augment`` with ``disable_augmentation``) to their
current values, so that a cut that could not be applied fails now rather than at the end of the
critical period. :func:`check_loaders_read` checks that the built train dataloader reads that same
object.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import lightning.pytorch as pl

from critical.data.protocol import find_multiplicity_target

__all__ = ["check_loaders_read", "resolve_data"]


def resolve_data(
    trainer: pl.Trainer,
    pl_module: pl.LightningModule,
    target: int,
    stages: Sequence[int],
    disable_augmentation: bool,
    multiplicity_before: int | None,
) -> Any:
    """The training data whose ``multiplicity`` the cut sets, checked settable, and ``target``
    and ``stages`` checked against its k (or against ``multiplicity_before``, the k restored
    from a checkpoint)."""
    data = find_multiplicity_target(trainer, pl_module)
    if data is None:
        dm = trainer.datamodule  # type: ignore[attr-defined]  # undeclared: Lightning sets it on the Trainer
        raise ValueError(
            "AugmentationCutoff found no training data with a settable `multiplicity`: "
            f"the datamodule ({type(dm).__name__ if dm is not None else 'none'}) has no "
            "`multiplicity` attribute, and no train dataloader (passed to trainer.fit, or "
            "returned by train_dataloader()) has a `dataset` with one. Wrap the training "
            "dataset in critical.data.MultiplicityDataset (created once, e.g. in __init__ "
            "or setup, and returned in a DataLoader), or give your LightningDataModule a "
            "settable integer `multiplicity` honoured by train_dataloader()"
        )
    if disable_augmentation and not hasattr(data, "augment"):
        raise ValueError(
            f"disable_augmentation=True needs a settable `augment` attribute on {type(data).__name__}"
        )
    k = int(data.multiplicity)
    names = ["multiplicity"] + (["augment"] if disable_augmentation else [])
    for attr in names:
        try:
            setattr(data, attr, getattr(data, attr))  # the cut sets it: fail now, not then
        except Exception as err:
            raise ValueError(
                f"AugmentationCutoff cannot set `{attr}` on {type(data).__name__} "
                f"({type(err).__name__}: {err}); the cut would fail at the end of the "
                f"critical period. Give {type(data).__name__} a settable `{attr}` honoured by "
                "train_dataloader() (see critical.data.MultiplicityDataset)"
            ) from err
    top = max((target, *stages))
    if top > k and (multiplicity_before is None or top > multiplicity_before):
        what = "`target` and `stages`" if stages else "`target`"
        raise ValueError(
            f"AugmentationCutoff: {what} must be integers in [1, {k}] (the training data's "
            f"multiplicity k={k}: a cut lowers k), got {[*stages, target]}"
            if stages
            else f"AugmentationCutoff: {what} must be an integer in [1, {k}] (the training "
            f"data's multiplicity k={k}: a cut lowers k), got {target}"
        )
    return data


def check_loaders_read(trainer: pl.Trainer, data: Any) -> None:
    """The loaders exist now: the data found at fit start must be what they read."""
    built = find_multiplicity_target(trainer)
    if built is not None and built is not data:
        raise ValueError(
            f"AugmentationCutoff: the train dataloader reads a different "
            f"{type(built).__name__} than the one train_dataloader() returned at fit start, "
            "so a cut could not reach it: create the dataset once (e.g. in __init__ or "
            "setup) and return a new DataLoader over that same object"
        )
