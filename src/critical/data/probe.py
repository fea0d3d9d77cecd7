"""A fixed probe of a user's own training data: the samples :class:`~critical.callbacks.AugmentationGap`
re-reads every epoch, found wherever the training data are reachable.

Most Lightning projects have a map-style ``Dataset`` whose ``__getitem__`` applies random
transforms (often sorted by class, as ``ImageFolder`` lists its files), inside a ``DataLoader``
built by a datamodule or passed to ``fit``. Re-reading a fixed, seeded set of indices spread over
that data set gives fresh augmented views of the same samples every epoch, without any method of
ours on the user's side:

* :func:`spread_indices` picks the indices: one per equal stretch of the index range, at a
  seeded position inside it, so a class-sorted set is probed across all its classes;
* :func:`find_probe_source` finds the data: an object with ``probe_views`` (the library's
  datamodules, :class:`~critical.data.MultiplicityDataset`) first, else the map-style dataset of
  the train dataloader Lightning built (through ``Subset``; a ``ConcatDataset`` of k copies of one
  data set is read as that one);
* :class:`DatasetProbe` reads it: ``probe_views(num, views, seed)`` returns ``(clean, [views],
  labels)``, each view collated as the loader collates a batch, under RNGs seeded for the read
  and restored afterwards (torch, ``random`` and NumPy), so the probe neither draws from nor
  disturbs the training's random streams. ``clean`` is ``None`` unless asked for (``clean=True``)
  and the dataset's transform is a torchvision ``Compose`` whose augmentation steps can be taken
  out (:mod:`critical.data.clean_view`; checked to give the same view twice).

Example:
    >>> import torch
    >>> from torch.utils.data import TensorDataset
    >>> spread_indices(100, 4, seed=0)  # one index in each quarter
    [24, 42, 61, 98]
    >>> ds = TensorDataset(torch.rand(8, 3), torch.arange(8) // 2)  # sorted by class
    >>> clean, views, labels = DatasetProbe(ds).probe_views(4, views=2, seed=0)
    >>> clean is None, len(views), views[0].shape, labels.tolist()  # every class
    (True, 2, torch.Size([4, 3]), [0, 1, 2, 3])
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import ConcatDataset, IterableDataset
from torch.utils.data._utils.collate import default_collate

from critical._rng import seeded_rngs
from critical.data.clean_view import clean_transform, transform_owner
from critical.data.protocol import _flatten

__all__ = ["DatasetProbe", "find_probe_source", "seeded_rngs", "spread_indices"]


def spread_indices(n: int, num: int, seed: int = 0) -> list[int]:
    """``min(num, n)`` distinct indices of ``range(n)``, one in each of ``num`` equal stretches
    of it, at a position drawn with ``seed``: spread over the whole set (and so over the classes
    of a class-sorted one), the same for the same arguments.

    Example:
        >>> spread_indices(10, 3, seed=1), spread_indices(3, 8)
        ([0, 4, 7], [0, 1, 2])
    """
    if n <= 0 or num <= 0:
        return []
    if num >= n:
        return list(range(n))
    g = torch.Generator().manual_seed(int(seed))
    u = torch.rand(num, generator=g, dtype=torch.float64)
    starts = torch.arange(num, dtype=torch.float64) * n / num
    idx = (starts + u * (n / num)).floor().long().clamp_(0, n - 1)
    return [int(i) for i in idx]


def _base(dataset: Any) -> Any:
    """A ``ConcatDataset`` of copies of one data set (k copies: a multiplicity) read as that one."""
    if isinstance(dataset, ConcatDataset):
        parts = dataset.datasets
        if parts and all(p is parts[0] for p in parts):
            return _base(parts[0])
    return dataset


class DatasetProbe:
    """Fresh augmented views of a fixed probe of a map-style dataset, read through its own
    ``__getitem__`` (its own random transforms), and with ``clean=True`` its un-augmented view
    where the transform allows (module docstring; :attr:`clean_how` says what was found).

    Args:
        dataset: map-style (``__len__``, ``__getitem__``), yielding ``(input, label, ...)``.
        collate_fn: how the samples become a batch (the training loader's; default: torch's).
        index_seed: seeds which indices form the probe (fixed for the fit).
        clean: also read the un-augmented view, where it can be inferred.
    """

    def __init__(
        self,
        dataset: Any,
        collate_fn: Callable[[list[Any]], Any] | None = None,
        index_seed: int = 0,
        clean: bool = False,
    ) -> None:
        self.dataset = _base(dataset)
        self.collate_fn = collate_fn or default_collate
        self.index_seed = int(index_seed)
        self.clean = bool(clean)
        #: how the clean view was inferred, or why none is known (``None``: not asked yet)
        self.clean_how: str | None = None
        self._owner: Any = None
        self._clean_tf: Any = None

    def __repr__(self) -> str:
        return f"DatasetProbe({type(self.dataset).__name__}, {len(self.dataset)} samples)"

    def _batch(self, indices: list[int], transform: Any = None) -> tuple[Tensor, Tensor]:
        owner = self._owner if transform is not None else None
        saved = owner.transform if owner is not None else None
        try:
            if owner is not None:
                owner.transform = transform  # the clean read; put back below
            batch = self.collate_fn([self.dataset[i] for i in indices])
        finally:
            if owner is not None:
                owner.transform = saved
        if (
            not isinstance(batch, (tuple, list))
            or len(batch) < 2
            or not isinstance(batch[0], Tensor)
            or not isinstance(batch[1], Tensor)
        ):
            raise ValueError(
                f"a probe of {type(self.dataset).__name__} needs (input, label) samples that "
                f"collate into tensors; its batches are {type(batch).__name__}"
            )
        return batch[0], batch[1]

    def _infer_clean(self, index: int, augmented: Tensor) -> None:
        """Find the clean transform once, and keep it only if two reads of one sample under
        different seeds agree and have the augmented view's shape."""
        self._owner = transform_owner(self.dataset)
        tf, changed = clean_transform(getattr(self._owner, "transform", None))
        if tf is None:
            self.clean_how = (
                f"nothing is left of its transform without {', '.join(changed)}"
                if changed
                else "the dataset's transform is not a torchvision Compose"
            )
            return
        reads = []
        try:
            for seed in (1, 2):
                with seeded_rngs(seed):
                    reads.append(self._batch([index], tf)[0])
        except Exception as e:  # noqa: BLE001 - whatever fails, no clean view is known
            self.clean_how = f"without {', '.join(changed)} it fails ({type(e).__name__}: {e})"
            return
        if not torch.equal(reads[0], reads[1]):
            self.clean_how = f"without {', '.join(changed) or 'nothing'} it is still random"
        elif reads[0].shape[1:] != augmented.shape[1:]:
            self.clean_how = (
                f"without {', '.join(changed)} its shape is {tuple(reads[0].shape[1:])}"
            )
        else:
            self._clean_tf = tf
            self.clean_how = f"its transform with {', '.join(changed) or 'no change'}"

    def probe_views(
        self, num: int, views: int, seed: int
    ) -> tuple[Tensor | None, list[Tensor], Tensor]:
        """``views`` freshly augmented reads of the probe's ``num`` samples (drawn under
        ``seed``), their clean read (``None`` where not asked for or not known) and labels."""
        indices = spread_indices(len(self.dataset), num, self.index_seed)
        out: list[Tensor] = []
        labels: Tensor | None = None
        with seeded_rngs(seed):
            for _ in range(views):
                x, y = self._batch(indices)
                out.append(x)
                labels = y if labels is None else labels
        assert labels is not None  # views >= 1
        if self.clean and self.clean_how is None:
            self._infer_clean(indices[0], out[0])
        clean = None
        if self._clean_tf is not None:
            with seeded_rngs(seed):
                clean = self._batch(indices, self._clean_tf)[0]
        return clean, out, labels


def find_probe_source(trainer: Any, clean: bool = False) -> tuple[Any | None, str]:
    """Where a probe of the training data can be read, and how it was found (or why not).

    Returns ``(source, how)``: ``source`` has ``probe_views(num, views, seed)`` — the datamodule
    or training dataset itself when it offers the method, else a :class:`DatasetProbe` over the
    map-style dataset of the train dataloader Lightning built (call it from ``on_train_start``
    on; ``clean``: it also infers the un-augmented view) — or is ``None``, and ``how`` says why
    (an iterable dataset, no loader yet).
    """
    dm = getattr(trainer, "datamodule", None)
    if callable(getattr(dm, "probe_views", None)):
        return dm, type(dm).__name__
    try:
        loader = next(iter(_flatten(trainer.train_dataloader)), None)
    except Exception:  # noqa: BLE001 - no loader built yet
        loader = None
    if loader is None:
        return None, "no training dataloader was built yet"
    dataset = getattr(loader, "dataset", None)
    for obj in (dataset, loader):
        if callable(getattr(obj, "probe_views", None)):
            return obj, type(obj).__name__
    if dataset is None or isinstance(dataset, IterableDataset):
        kind = (
            "no dataset" if dataset is None else f"an iterable dataset ({type(dataset).__name__})"
        )
        return None, f"the training loader holds {kind}, from which no fixed probe can be drawn"
    if not hasattr(dataset, "__len__") or not hasattr(dataset, "__getitem__"):
        return None, f"the training dataset ({type(dataset).__name__}) is not map-style"
    probe = DatasetProbe(dataset, getattr(loader, "collate_fn", None), clean=clean)
    return probe, f"{type(probe.dataset).__name__} ({len(probe.dataset)} samples)"
