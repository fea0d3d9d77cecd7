"""The un-augmented view of a user's own dataset, inferred from its torchvision transform.

A map-style dataset whose ``transform`` is a torchvision ``Compose`` (``transforms`` or
``transforms.v2``, as ``ImageFolder`` and the torchvision data sets hold it) says which of its
steps are augmentation: :func:`clean_transform` keeps the deterministic steps (``ToTensor``,
``Normalize``, ``Resize``, ``CenterCrop``, ...), turns a random crop into a centre crop of the
same size (``RandomResizedCrop(s)`` into ``Resize(s)`` then ``CenterCrop(s)``) and drops the
other random steps (any ``Random*`` class, ``ColorJitter``, ``AutoAugment``, ``RandAugment``,
``TrivialAugmentWide``, ``AugMix``, ``GaussianBlur``, ...). Whatever it keeps that it does not
know (a ``Lambda``, a class of the user's) stays, so :class:`~critical.data.probe.DatasetProbe`
accepts the result only after two reads of the same sample under different seeds agree and
have the augmented view's shape; otherwise no clean view is known, as before.

Example:
    >>> from torchvision import transforms as T
    >>> tf = T.Compose([T.RandomCrop(32, padding=4), T.RandomHorizontalFlip(), T.ToTensor()])
    >>> clean, changed = clean_transform(tf)
    >>> [type(t).__name__ for t in clean.transforms], changed
    (['CenterCrop', 'ToTensor'], ['RandomCrop -> CenterCrop', 'RandomHorizontalFlip dropped'])
"""

from __future__ import annotations

from typing import Any

__all__ = ["clean_transform", "transform_owner"]

#: augmentation steps that are not named ``Random*``
AUGMENTERS = frozenset(
    {
        "ColorJitter",
        "AutoAugment",
        "RandAugment",
        "TrivialAugmentWide",
        "AugMix",
        "GaussianBlur",
        "GaussianNoise",
        "ElasticTransform",
        "ScaleJitter",
        "JPEG",
        "MixUp",
        "CutMix",
    }
)


def _module(t: Any) -> Any:
    """The torchvision transforms module ``t`` comes from (``v2`` or the classic one)."""
    if type(t).__module__.startswith("torchvision.transforms.v2"):
        from torchvision.transforms import v2

        return v2
    from torchvision import transforms

    return transforms


def _steps(t: Any, changed: list[str]) -> list[Any] | None:
    """The clean replacement of one step (``[]``: dropped), or ``None`` if it is not a
    torchvision transform this module reads."""
    name = type(t).__name__
    if name == "Compose":
        inner: list[Any] = []
        for step in t.transforms:
            clean = _steps(step, changed)
            inner.extend([step] if clean is None else clean)
        return [_module(t).Compose(inner)] if inner else []
    if name in ("RandomCrop", "RandomResizedCrop"):
        tv = _module(t)
        size = list(t.size) if isinstance(t.size, (tuple, list)) else t.size
        changed.append(f"{name} -> CenterCrop")
        if name == "RandomResizedCrop":
            return [tv.Resize(size), tv.CenterCrop(size)]
        return [tv.CenterCrop(size)]
    if name.startswith("Random") or name in AUGMENTERS:
        changed.append(f"{name} dropped")
        return []
    return None


def clean_transform(transform: Any) -> tuple[Any | None, list[str]]:
    """The transform without its augmentation (module docstring) and what was changed, or
    ``(None, [])`` for anything but a torchvision ``Compose`` (a bare random step included)."""
    if type(transform).__name__ != "Compose" or not type(transform).__module__.startswith(
        "torchvision.transforms"
    ):
        return None, []
    changed: list[str] = []
    steps = _steps(transform, changed)
    return (steps[0] if steps else None), changed  # nothing left: no clean view


def transform_owner(dataset: Any) -> Any | None:
    """The object whose ``transform`` a map-style dataset applies (through ``Subset``), or
    ``None``."""
    seen = 0
    while dataset is not None and seen < 8:
        if getattr(dataset, "transform", None) is not None:
            return dataset
        dataset, seen = getattr(dataset, "dataset", None), seen + 1
    return None
