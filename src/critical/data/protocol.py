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

__all__ = [
    "MultiplicityMixin",
    "find_multiplicity_target",
    "get_multiplicity",
    "supports_multiplicity",
    "validate_multiplicity",
]


def validate_multiplicity(k: object) -> int:
    """``k`` as an int if it is an int >= 1, else ``ValueError``.

    Example:
        >>> validate_multiplicity(3)
        3
        >>> validate_multiplicity(0)
        Traceback (most recent call last):
        ...
        ValueError: multiplicity must be an int >= 1, got 0
    """
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"multiplicity must be an int >= 1, got {k!r}")
    return int(k)


class MultiplicityMixin:
    """The protocol's two attributes, validated: ``multiplicity`` (int >= 1) and ``augment``
    (bool). Subclasses set ``self.multiplicity`` and ``self.augment`` in ``__init__``."""

    _multiplicity: int = 1
    _augment: bool = True

    @property
    def multiplicity(self) -> int:
        """Augmentation multiplicity k (int >= 1), honoured by the next train dataloader."""
        return self._multiplicity

    @multiplicity.setter
    def multiplicity(self, value: int) -> None:
        self._multiplicity = validate_multiplicity(value)

    @property
    def augment(self) -> bool:
        """Whether the training data are augmented (honoured by the next train dataloader)."""
        return self._augment

    @augment.setter
    def augment(self, value: bool) -> None:
        if not isinstance(value, bool):
            msg = f"augment must be a bool (True or False), got {value!r}"
            raise ValueError(msg)
        self._augment = value


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
