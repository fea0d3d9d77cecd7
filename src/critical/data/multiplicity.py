"""Multiplicity for users' own data: a Dataset wrapper and a small DataModule.

**The protocol for your own LightningDataModule.** ``critical``'s callbacks find the object
that controls augmentation multiplicity k with
:func:`critical.data.protocol.find_multiplicity_target` (``trainer.datamodule`` first, then the
train dataloader's ``dataset``). To make your datamodule controllable:

1. give it a readable and writable ``int`` attribute ``multiplicity`` (k >= 1) — and optionally
   a writable ``bool`` ``augment``;
2. honour both in ``train_dataloader()``: each call builds a loader for the *current* values
   (the cutoff callback changes them at an epoch boundary and then makes Lightning call
   ``train_dataloader()`` again through ``trainer.reload_dataloaders_every_n_epochs``).

The simplest way is to wrap your training dataset in :class:`MultiplicityDataset` and forward
the attribute, which is what :class:`MultiplicityDataModule` does::

    class MyData(L.LightningDataModule):
        def __init__(self):
            super().__init__()
            self.train_set = MultiplicityDataset(my_dataset, multiplicity=3, transform=my_aug)

        @property
        def multiplicity(self) -> int:
            return self.train_set.multiplicity

        @multiplicity.setter
        def multiplicity(self, k: int) -> None:
            self.train_set.multiplicity = k

        def train_dataloader(self):
            return DataLoader(self.train_set, batch_size=128, shuffle=True, num_workers=4)

Semantics of :class:`MultiplicityDataset` (the "epoch" layout of :mod:`critical.data.loader`):
``len = k * N``; index ``i`` shows sample ``i mod N`` and applies the random ``transform`` at
every access, so with a shuffling sampler each sample appears exactly k times per epoch, its
copies independently augmented, and steps per epoch scale with k. The index arithmetic does not
depend on k, so DataLoader workers (persistent or not) keep working after k changes: the
sampler in the main process decides which indices exist, and a worker with a stale copy of the
wrapper maps them correctly. (A change of ``augment`` reaches workers when the DataLoader is
rebuilt, as Lightning's reload does; persistent workers of an *existing* loader keep the value
they started with.) Under DDP, Lightning's ``DistributedSampler`` shards the k*N indices when
it rebuilds the loader.

Example:
    >>> import torch
    >>> from torch.utils.data import TensorDataset
    >>> base = TensorDataset(torch.zeros(4, 3, 8, 8), torch.arange(4))
    >>> ds = MultiplicityDataset(base, multiplicity=3, transform=lambda x: x + torch.rand(1))
    >>> len(ds), int(ds[5][1])
    (12, 1)
    >>> ds.multiplicity = 1
    >>> len(ds)
    4
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import lightning as L
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset
from typing_extensions import override

from critical.data.probe import seeded_rngs, spread_indices
from critical.data.protocol import MultiplicityMixin
from critical.validation import check_bool, check_int, check_type

__all__ = ["MultiplicityDataModule", "MultiplicityDataset"]


class MultiplicityDataset(MultiplicityMixin, Dataset):
    """Wrap a map-style dataset so that it holds ``multiplicity`` augmented copies of each sample.

    Args:
        dataset: any map-style dataset with ``__len__`` and ``__getitem__``.
        multiplicity: k >= 1 (settable later).
        transform: random transform applied on every access to the input — the first element of
            a tuple / list sample (e.g. ``(image, label)``), or the whole sample otherwise.
        augment: apply ``transform`` (settable; ``False`` returns the raw samples).
        eval_transform: deterministic transform giving the un-augmented input (e.g.
            ``ToTensor``); used for the clean side of :meth:`probe_views` (``None``: the raw
            input, which must then be a tensor).

    Any index ``i >= 0`` maps to ``dataset[i % N]`` (not only ``i < k * N``), so workers holding
    an older k still serve the main process's sampler; iteration (``iter(ds)``) stops at
    ``len(ds)``.

    Example:
        >>> ds = MultiplicityDataset(["a", "b"], multiplicity=2, transform=str.upper)
        >>> [ds[i] for i in range(len(ds))]
        ['A', 'B', 'A', 'B']
        >>> ds.augment = False
        >>> list(ds)
        ['a', 'b', 'a', 'b']
        >>> ds.multiplicity = 0
        Traceback (most recent call last):
        ...
        ValueError: `multiplicity` must be an integer >= 1, got 0
    """

    def __init__(
        self,
        dataset: Any,
        multiplicity: int = 1,
        transform: Callable[[Any], Any] | None = None,
        augment: bool = True,
        eval_transform: Callable[[Any], Any] | None = None,
    ) -> None:
        if not hasattr(dataset, "__len__") or not hasattr(dataset, "__getitem__"):
            raise ValueError(
                f"dataset must be a map-style dataset (with __len__ and __getitem__), "
                f"got {type(dataset).__name__}"
            )
        if transform is not None and not callable(transform):
            raise ValueError(f"`transform` must be callable or None, got {transform!r}")
        if eval_transform is not None and not callable(eval_transform):
            raise ValueError(f"`eval_transform` must be callable or None, got {eval_transform!r}")
        self.dataset = dataset
        self.transform = transform
        self.eval_transform = eval_transform
        self.multiplicity = multiplicity
        self.augment = augment

    @property
    def base_len(self) -> int:
        """N, the number of distinct samples."""
        return len(self.dataset)

    def __len__(self) -> int:
        return self._multiplicity * len(self.dataset)

    def __getitem__(self, index: int) -> Any:
        n = len(self.dataset)
        if index < 0:
            index += len(self)
            if index < 0:
                raise IndexError(f"index out of range for a dataset of length {len(self)}")
        sample = self.dataset[int(index) % n]
        if self.transform is None or not self._augment:
            return sample
        if isinstance(sample, tuple):
            return (self.transform(sample[0]), *sample[1:])
        if isinstance(sample, list):
            return [self.transform(sample[0]), *sample[1:]]
        return self.transform(sample)

    def __iter__(self) -> Iterator[Any]:
        for i in range(len(self)):
            yield self[i]

    def probe_views(self, num: int, views: int, seed: int) -> tuple[Tensor, list[Tensor], Tensor]:
        """A fixed probe of ``num`` samples (spread over the data set, so over the classes of a
        class-sorted one: :func:`~critical.data.probe.spread_indices`), through
        ``eval_transform``, and ``views`` copies through ``transform`` drawn under RNGs seeded
        with ``seed`` (torch's, Python's and NumPy's global RNGs are left as they were); samples
        must be ``(input, label)`` pairs of tensors after the transforms. What
        :class:`~critical.callbacks.AugmentationGap` compares."""
        samples = [self.dataset[i] for i in spread_indices(len(self.dataset), num)]
        if not samples or not isinstance(samples[0], (tuple, list)):
            raise ValueError(
                "probe_views needs (input, label) samples; this dataset yields "
                f"{type(samples[0]).__name__ if samples else 'nothing'}"
            )
        labels = torch.as_tensor([int(s[1]) for s in samples])

        def stack(fn: Callable[[Any], Any] | None) -> Tensor:
            xs = [s[0] if fn is None else fn(s[0]) for s in samples]
            if not all(isinstance(x, Tensor) for x in xs):
                raise ValueError(
                    "probe_views needs tensor inputs after the transforms: give "
                    "MultiplicityDataset an `eval_transform` (e.g. ToTensor)"
                )
            return torch.stack(xs)

        clean = stack(self.eval_transform)
        augment = self.transform if self._augment else self.eval_transform
        with seeded_rngs(seed):
            out = [stack(augment) for _ in range(views)]
        return clean, out, labels


class _Transformed(Dataset):
    """Apply a deterministic transform to the input of each sample (val / test)."""

    def __init__(self, dataset: Any, transform: Callable[[Any], Any] | None) -> None:
        self.dataset, self.transform = dataset, transform

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> Any:
        sample = self.dataset[index]
        if self.transform is None:
            return sample
        if isinstance(sample, (tuple, list)):
            return (self.transform(sample[0]), *sample[1:])
        return self.transform(sample)


class MultiplicityDataModule(MultiplicityMixin, L.LightningDataModule):
    """A LightningDataModule around your own datasets, implementing the multiplicity protocol.

    Args:
        train_dataset: the training dataset (map-style, un-augmented samples).
        val_dataset, test_dataset: optional evaluation datasets.
        transform: random training transform (applied per access, see
            :class:`MultiplicityDataset`).
        eval_transform: deterministic transform for val / test (e.g. ``ToTensor``).
        multiplicity: k >= 1 (settable; honoured by the next ``train_dataloader()``).
        augment: apply ``transform`` (settable).
        batch_size: training batch size; ``eval_batch_size`` defaults to it.
        num_workers, persistent_workers, pin_memory: passed to every ``DataLoader``.
        loader_kwargs: further ``DataLoader`` arguments (e.g. ``{"collate_fn": ...}``).

    The train loader shuffles (Lightning swaps in a ``DistributedSampler`` under DDP).

    Example:
        >>> import torch
        >>> from torch.utils.data import TensorDataset
        >>> dm = MultiplicityDataModule(TensorDataset(torch.rand(10, 3, 4, 4), torch.arange(10)),
        ...                             multiplicity=2, batch_size=4)
        >>> len(dm.train_dataloader())
        5
        >>> dm.multiplicity = 1
        >>> len(dm.train_dataloader())
        3
    """

    def __init__(
        self,
        train_dataset: Any,
        val_dataset: Any | None = None,
        test_dataset: Any | None = None,
        transform: Callable[[Any], Any] | None = None,
        eval_transform: Callable[[Any], Any] | None = None,
        multiplicity: int = 1,
        augment: bool = True,
        batch_size: int = 32,
        eval_batch_size: int | None = None,
        num_workers: int = 0,
        persistent_workers: bool = False,
        pin_memory: bool = False,
        loader_kwargs: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        check_int("batch_size", batch_size, 1)
        check_int("eval_batch_size", eval_batch_size, 1, allow_none=True)
        check_int("num_workers", num_workers, 0)
        check_bool("persistent_workers", persistent_workers)
        check_bool("pin_memory", pin_memory)
        check_type("loader_kwargs", loader_kwargs, dict, "a dict", allow_none=True)
        # the plain constructor arguments, recorded in checkpoints and in a run's config.json
        self.save_hyperparameters(
            ignore=["train_dataset", "val_dataset", "test_dataset", "transform", "eval_transform"]
        )
        self.train_set = MultiplicityDataset(
            train_dataset, multiplicity, transform, augment, eval_transform
        )
        self.val_set = (
            _Transformed(val_dataset, eval_transform) if val_dataset is not None else None
        )
        self.test_set = (
            _Transformed(test_dataset, eval_transform) if test_dataset is not None else None
        )
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size or batch_size
        self.num_workers = num_workers
        self.persistent_workers = persistent_workers and num_workers > 0
        self.pin_memory = pin_memory
        self.loader_kwargs = dict(loader_kwargs or {})

    @property
    def multiplicity(self) -> int:
        """k, forwarded to the wrapped training dataset."""
        return self.train_set.multiplicity

    @multiplicity.setter
    def multiplicity(self, value: int) -> None:
        self.train_set.multiplicity = value

    def probe_views(self, num: int, views: int, seed: int) -> tuple[Tensor, list[Tensor], Tensor]:
        """:meth:`MultiplicityDataset.probe_views` of the training set."""
        return self.train_set.probe_views(num, views, seed)

    @property
    def augment(self) -> bool:
        """Whether the training transform is applied."""
        return self.train_set.augment

    @augment.setter
    def augment(self, value: bool) -> None:
        self.train_set.augment = value

    def _loader(self, dataset: Any, batch_size: int, shuffle: bool) -> DataLoader:
        return DataLoader(
            dataset,
            batch_size=batch_size,
            shuffle=shuffle,
            num_workers=self.num_workers,
            persistent_workers=self.persistent_workers,
            pin_memory=self.pin_memory,
            **self.loader_kwargs,
        )

    @override
    def train_dataloader(self) -> DataLoader:
        """A shuffling loader over the k*N items of the current multiplicity."""
        return self._loader(self.train_set, self.batch_size, shuffle=True)

    @override
    def val_dataloader(self) -> DataLoader | list:
        """Validation loader (``[]`` without a validation dataset)."""
        return (
            [] if self.val_set is None else self._loader(self.val_set, self.eval_batch_size, False)
        )

    @override
    def test_dataloader(self) -> DataLoader | list:
        """Test loader (``[]`` without a test dataset)."""
        return (
            []
            if self.test_set is None
            else self._loader(self.test_set, self.eval_batch_size, False)
        )
