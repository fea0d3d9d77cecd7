"""The multiplicity protocol: how callbacks find and change augmentation multiplicity k.

A training data source *supports multiplicity* when it has a readable and writable integer
attribute ``multiplicity`` (k >= 1) whose value decides how many independently augmented copies
of each training image the next train dataloader it builds will hold. Optionally it also has a
writable boolean ``augment`` that turns augmentation on or off.

Our datamodules (:mod:`critical.data.datamodule`) and :class:`critical.data.MultiplicityDataset`
implement it. A user's own ``LightningDataModule`` implements it by exposing ``multiplicity`` and
honouring it in ``train_dataloader()``.

Lookup order used by the callbacks (:func:`find_multiplicity_target`): ``trainer.datamodule``
if it has ``multiplicity``, else the dataset (or the loader itself) of the train dataloader(s):
those Lightning built, else those passed to ``trainer.fit(train_dataloaders=...)``, else (with
``pl_module``, at fit start) those ``LightningModule.train_dataloader()`` returns. A found
``multiplicity`` that is not an integer >= 1 (``0``, ``-1``, ``2.5``) is an error, not a reason
to look elsewhere.

Example:
    >>> from critical.data.protocol import supports_multiplicity
    >>> class DM:
    ...     multiplicity = 3
    >>> supports_multiplicity(DM())
    True
"""

from __future__ import annotations

from typing import Any

from critical.validation import check_bool, check_int

__all__ = [
    "MultiplicityMixin",
    "find_multiplicity_target",
    "get_multiplicity",
    "supports_multiplicity",
    "validate_multiplicity",
]


def validate_multiplicity(k: object, owner: str | None = None) -> int:
    """``k`` as an int if it is an int >= 1, else ``ValueError`` (naming ``owner``, the object
    whose attribute it is, when given).

    Example:
        >>> validate_multiplicity(3)
        3
        >>> validate_multiplicity(0)
        Traceback (most recent call last):
        ...
        ValueError: `multiplicity` must be an integer >= 1, got 0
        >>> validate_multiplicity(2.5, owner="MyData")
        Traceback (most recent call last):
        ...
        ValueError: `MyData.multiplicity` must be an integer >= 1, got 2.5
    """
    return int(check_int("multiplicity" if owner is None else f"{owner}.multiplicity", k, 1))


class MultiplicityMixin:
    """The protocol's two attributes, validated: ``multiplicity`` (int >= 1) and ``augment``
    (bool), saved in and restored from Lightning checkpoints (``state_dict`` /
    ``load_state_dict``, for a datamodule listing this mixin first). Subclasses set
    ``self.multiplicity`` and ``self.augment`` in ``__init__`` (or override the properties)."""

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
        self._augment = check_bool("augment", value)

    def state_dict(self) -> dict[str, Any]:
        """``multiplicity`` and ``augment``, saved in Lightning checkpoints."""
        return {"multiplicity": self.multiplicity, "augment": self.augment}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore ``multiplicity`` and ``augment`` from a checkpoint."""
        if "multiplicity" in state_dict:
            self.multiplicity = int(state_dict["multiplicity"])
        if "augment" in state_dict:
            self.augment = bool(state_dict["augment"])


def supports_multiplicity(obj: Any) -> bool:
    """True when ``obj`` exposes an integer ``multiplicity`` attribute."""
    k = getattr(obj, "multiplicity", None)
    return isinstance(k, int) and not isinstance(k, bool)


def _candidate(obj: Any) -> Any | None:
    """``obj`` if it has a ``multiplicity`` attribute that is not ``None``; the attribute must
    then be an integer >= 1."""
    try:
        k = getattr(obj, "multiplicity", None)
    except Exception:  # noqa: BLE001 - a property that cannot be read yet
        return None
    if k is None:
        return None
    validate_multiplicity(k, owner=type(obj).__name__)
    return obj


def _in_loaders(loaders: Any) -> Any | None:
    for loader in _flatten(loaders):
        for obj in (getattr(loader, "dataset", None), loader):
            found = None if obj is None else _candidate(obj)
            if found is not None:
                return found
    return None


def find_multiplicity_target(trainer: Any, pl_module: Any = None) -> Any | None:
    """The object whose ``multiplicity`` controls the trainer's training data, or ``None``.

    Looked up in the order of the module docstring; with ``pl_module`` (allowed to call
    ``train_dataloader()``), the LightningModule or datamodule whose ``train_dataloader()``
    Lightning has not called yet is asked for its loader once (at fit start: the callbacks need
    k before the first epoch). Raises ``ValueError`` when the ``multiplicity`` found is not an
    integer >= 1.
    """
    dm = getattr(trainer, "datamodule", None)
    found = None if dm is None else _candidate(dm)
    if found is not None:
        return found
    try:
        loaders = trainer.train_dataloader
    except Exception:  # noqa: BLE001 - not yet set up
        loaders = None
    found = _in_loaders(loaders)
    if found is not None or loaders is not None:
        return found
    # before Lightning built them: the loaders passed to fit(), or the module's own
    loop = getattr(trainer, "fit_loop", None)
    source = getattr(getattr(loop, "_data_source", None), "instance", None)
    if source is not None and not hasattr(source, "train_dataloader"):  # loaders, not a module
        return _in_loaders(source)
    if pl_module is not None:
        from lightning.pytorch.utilities.model_helpers import is_overridden

        owner = source if source is not None else pl_module
        if is_overridden("train_dataloader", owner):
            return _in_loaders(owner.train_dataloader())
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
