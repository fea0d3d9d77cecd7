"""The multiplicity protocol: how callbacks find and change augmentation multiplicity k.

A training data source *supports multiplicity* when it has a readable and writable integer
attribute ``multiplicity`` (k >= 1) whose value decides how many independently augmented copies
of each training image the next train dataloader it builds will hold. Optionally it also has a
writable boolean ``augment`` that turns augmentation on or off.

Our datamodules (:mod:`critical.data.datamodule`) and :class:`critical.data.MultiplicityDataset`
implement it. A user's own ``LightningDataModule`` implements it by exposing ``multiplicity`` and
honouring it in ``train_dataloader()``.

Lookup order used by the callbacks (:func:`find_multiplicity_target`):
``trainer.datamodule`` if it has ``multiplicity``, else the dataset of the train dataloader if it
has ``multiplicity``.

Example:
    >>> from critical.data.protocol import supports_multiplicity
    >>> class DM:
    ...     multiplicity = 3
    >>> supports_multiplicity(DM())
    True
"""

from __future__ import annotations

from typing import Any

__all__ = ["supports_multiplicity", "find_multiplicity_target", "get_multiplicity"]


def supports_multiplicity(obj: Any) -> bool:
    """True when ``obj`` exposes an integer ``multiplicity`` attribute."""
    k = getattr(obj, "multiplicity", None)
    return isinstance(k, int) and not isinstance(k, bool)


def find_multiplicity_target(trainer: Any) -> Any | None:
    """The object whose ``multiplicity`` controls the trainer's training data, or ``None``."""
    dm = getattr(trainer, "datamodule", None)
    if dm is not None and supports_multiplicity(dm):
        return dm
    try:
        loaders = trainer.train_dataloader
    except Exception:  # noqa: BLE001 - not yet set up
        loaders = None
    for loader in _flatten(loaders):
        ds = getattr(loader, "dataset", None)
        if ds is not None and supports_multiplicity(ds):
            return ds
        if supports_multiplicity(loader):
            return loader
    return None


def get_multiplicity(trainer: Any) -> int | None:
    """Current multiplicity k of the trainer's training data, or ``None`` if it exposes none."""
    target = find_multiplicity_target(trainer)
    return None if target is None else int(target.multiplicity)


def _flatten(obj: Any) -> list[Any]:
    if obj is None:
        return []
    if isinstance(obj, (list, tuple)):
        return [x for o in obj for x in _flatten(o)]
    if isinstance(obj, dict):
        return [x for o in obj.values() for x in _flatten(o)]
    return [obj]
