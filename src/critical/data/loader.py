"""Device-resident batch loaders with augmentation multiplicity k (no Lightning import).

Layouts (``layout=``):

* ``"epoch"`` (default): an epoch holds k independently augmented copies of each of the N
  training images: the epoch's order is a random permutation of the k*N positions, position
  ``p`` showing image ``p mod N``, so every image appears exactly k times, its copies scattered
  over the epoch. Batches hold ``batch_size`` samples; **steps per epoch scale with k**
  (``ceil(k*N / batch_size)`` on one device).
* ``"batch"`` (repeated augmentation, Hoffer et al. 2020; Berman et al. 2019): the k views of an
  image sit in the same batch: each batch holds ``batch_size`` images x k views =
  ``batch_size * k`` samples (views of one image are consecutive); **steps per epoch do not
  change with k** (``ceil(N / batch_size)``), but the batch, its memory and its per-step cost
  grow k times.

Interaction with learning-rate schedules:

* epoch layout, schedule stepped per epoch (``interval="epoch"``): one epoch = k passes over
  the data, so the schedule advances k times slower per image seen; cutting k to 1 mid-run
  makes later epochs k times shorter, the schedule continues by epoch number unchanged.
* epoch layout, schedule stepped per optimizer step (``interval="step"``, e.g. OneCycle or
  cosine with ``total_steps``): the schedule sees k times more steps per epoch. A schedule whose
  length was computed as ``epochs * steps_per_epoch`` (e.g. from
  ``trainer.estimated_stepping_batches`` at the start) stays calibrated to the *initial* k:
  after a cut to k = 1, each epoch advances it k times fewer steps, so the run ends with the
  schedule not finished (LR still high); with ``max_steps`` instead of ``max_epochs`` the run
  simply needs more epochs. Prefer epoch-based schedules, or recompute the horizon at the cut.
* batch layout: steps per epoch are independent of k, so both kinds of schedule are unaffected
  by a change of k; the effective batch is k times larger (the usual large-batch LR caveats).

Reshuffling is reproducible from ``(seed, epoch)``: Lightning calls ``loader.sampler.set_epoch``
before each epoch; used outside Lightning without ``set_epoch``, a loader advances its epoch by
one at each new pass. Augmentation randomness comes from a generator seeded by ``(seed, epoch,
rank)`` on the data's device.

Distributed: each of ``world_size`` ranks takes the positions ``rank, rank + world_size, ...``
of the epoch's order (:func:`shard_indices`), after padding the order by wrapping around (or
dropping the tail with ``drop_last``) to a multiple of ``world_size``: shares are disjoint,
cover the epoch, and all ranks run the same number of batches.

Example:
    >>> import torch
    >>> from critical.data.loader import MultiplicitySampler
    >>> s = MultiplicitySampler(num_images=5, batch_size=4, multiplicity=3, seed=0)
    >>> len(s), torch.cat(list(s)).bincount().tolist()
    (4, [3, 3, 3, 3, 3])
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from typing import get_args

import torch
from torch import Tensor

from critical.choices import Layout as Layout
from critical.data.augment import BatchAugment, to_float
from critical.data.protocol import validate_multiplicity

__all__ = [
    "LAYOUTS",
    "AugmentedLoader",
    "MultiplicitySampler",
    "TensorLoader",
    "epoch_order",
    "shard_indices",
    "validate_multiplicity",
]

LAYOUTS: tuple[str, ...] = get_args(Layout)
_MIX = 0x9E3779B97F4A7C15  # golden-ratio constant for seed mixing


def _mix_seed(*parts: int) -> int:
    h = 0
    for p in parts:
        h = ((h ^ (int(p) & 0xFFFFFFFFFFFFFFFF)) * _MIX + 0x632BE59BD9B4E019) & 0xFFFFFFFFFFFFFFFF
        h ^= h >> 29
    return h & 0x7FFFFFFFFFFFFFFF


def shard_indices(
    indices: Tensor, rank: int = 0, world_size: int = 1, drop_last: bool = False
) -> Tensor:
    """This rank's share of ``indices`` (positions ``rank::world_size``), equal on all ranks.

    The sequence is first padded by wrapping around to a multiple of ``world_size``
    (``drop_last=False``, as ``DistributedSampler``) or cut to one (``drop_last=True``).

    Example:
        >>> shard_indices(torch.arange(5), rank=0, world_size=2)
        tensor([0, 2, 4])
        >>> shard_indices(torch.arange(5), rank=1, world_size=2)
        tensor([1, 3, 0])
        >>> shard_indices(torch.arange(5), rank=1, world_size=2, drop_last=True)
        tensor([1, 3])
    """
    if not isinstance(world_size, int) or world_size < 1:
        raise ValueError(f"world_size must be an int >= 1, got {world_size!r}")
    if not isinstance(rank, int) or not 0 <= rank < world_size:
        raise ValueError(f"rank must be an int in [0, {world_size - 1}], got {rank!r}")
    n = indices.numel()
    if world_size == 1:
        return indices
    if drop_last:
        total = (n // world_size) * world_size
        indices = indices[:total]
    else:
        total = math.ceil(n / world_size) * world_size
        if total > n:
            pad = total - n
            indices = torch.cat([indices, indices.repeat(math.ceil(pad / n))[:pad]])
    return indices[rank:total:world_size]


def epoch_order(
    num_images: int, multiplicity: int = 1, seed: int = 0, epoch: int = 0, shuffle: bool = True
) -> Tensor:
    """The epoch's image order for the epoch layout: k*N positions, each image exactly k times.

    ``randperm(k*N) % N`` with a generator seeded by ``(seed, epoch)`` (``arange`` when not
    shuffling). Deterministic given its arguments.

    Example:
        >>> epoch_order(3, multiplicity=2, shuffle=False).tolist()
        [0, 1, 2, 0, 1, 2]
        >>> bool(torch.equal(epoch_order(10, 2, seed=1, epoch=4), epoch_order(10, 2, 1, 4)))
        True
    """
    total = multiplicity * num_images
    if not shuffle:
        return torch.arange(total) % max(num_images, 1)
    g = torch.Generator().manual_seed(_mix_seed(seed, epoch, 1))
    return torch.randperm(total, generator=g) % max(num_images, 1)


class MultiplicitySampler:
    """Yields per-batch index tensors of images for one rank, for layout ``epoch`` or ``batch``.

    Args:
        num_images: N, the number of training images.
        batch_size: samples per batch (epoch layout) or images per batch (batch layout, whose
            batches hold ``batch_size * multiplicity`` samples).
        multiplicity: k >= 1.
        layout: ``"epoch"`` or ``"batch"``.
        shuffle: reshuffle every epoch (from ``(seed, epoch)``).
        seed: base seed.
        rank, world_size: this process's share under distributed training.
        drop_last: drop the last incomplete batch (and the tail not divisible by world_size).

    ``set_epoch(e)`` selects the epoch (Lightning calls it); without it, each new pass advances
    the epoch by one. ``len()`` is the number of batches this rank yields per epoch.

    Example:
        >>> s = MultiplicitySampler(4, batch_size=2, multiplicity=2, layout="batch", seed=0)
        >>> [b.tolist() for b in s]  # 2 images x 2 views per batch
        [[2, 2, 0, 0], [1, 1, 3, 3]]
    """

    def __init__(
        self,
        num_images: int,
        batch_size: int,
        multiplicity: int = 1,
        layout: str = "epoch",
        shuffle: bool = True,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        drop_last: bool = False,
    ) -> None:
        if not isinstance(num_images, int) or num_images < 0:
            raise ValueError(f"num_images must be an int >= 0, got {num_images!r}")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}")
        if layout not in LAYOUTS:
            raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
        if not isinstance(world_size, int) or world_size < 1:
            raise ValueError(f"world_size must be an int >= 1, got {world_size!r}")
        if not isinstance(rank, int) or not 0 <= rank < world_size:
            raise ValueError(f"rank must be an int in [0, {world_size - 1}], got {rank!r}")
        self.num_images = num_images
        self.batch_size = batch_size
        self.multiplicity = validate_multiplicity(multiplicity)
        self.layout = layout
        self.shuffle = bool(shuffle)
        self.seed = int(seed)
        self.rank = rank
        self.world_size = world_size
        self.drop_last = bool(drop_last)
        self.epoch = 0
        self._epoch_was_set = False
        self._passes = 0

    def set_epoch(self, epoch: int) -> None:
        """Use ``epoch`` for the next pass (reshuffle reproducible from ``(seed, epoch)``)."""
        self.epoch = int(epoch)
        self._epoch_was_set = True

    def _begin_pass(self) -> int:
        if not self._epoch_was_set and self._passes > 0:
            self.epoch += 1
        self._epoch_was_set = False
        self._passes += 1
        return self.epoch

    @property
    def samples_per_rank(self) -> int:
        """Items of the (sharded) epoch order on this rank: samples (epoch) or images (batch)."""
        total = self.num_images * (self.multiplicity if self.layout == "epoch" else 1)
        if self.world_size == 1:
            return total
        if self.drop_last:
            return total // self.world_size
        return math.ceil(total / self.world_size)

    def __len__(self) -> int:
        n = self.samples_per_rank
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def order(self, epoch: int) -> Tensor:
        """This rank's order of image indices for ``epoch`` (before batching / view repeats)."""
        if self.layout == "epoch":
            full = epoch_order(self.num_images, self.multiplicity, self.seed, epoch, self.shuffle)
        else:
            full = epoch_order(self.num_images, 1, self.seed, epoch, self.shuffle)
        return shard_indices(full, self.rank, self.world_size, self.drop_last)

    def batches(self, epoch: int) -> Iterator[Tensor]:
        """The batches of ``epoch`` (index tensors of images, with k views in batch layout)."""
        order = self.order(epoch)
        for b in range(len(self)):
            idx = order[b * self.batch_size : (b + 1) * self.batch_size]
            if self.layout == "batch" and self.multiplicity > 1:
                idx = idx.repeat_interleave(self.multiplicity)
            yield idx

    def __iter__(self) -> Iterator[Tensor]:
        return self.batches(self._begin_pass())


class AugmentedLoader:
    """Iterable of augmented ``(float images in [0, 1], int64 labels)`` batches, on the device.

    Wraps ``uint8`` images ``(N, C, H, W)`` and labels kept on the training device; each batch
    is gathered with ``index_select`` and augmented by ``augment`` (a :class:`BatchAugment`, or
    ``None`` for no augmentation: plain conversion to float). Floating-point data of any shape
    ``(N, ...)``, such as time series ``(N, C, T)``, are accepted too, with any ``augment``
    called as ``augment(batch, generator=...)`` (e.g.
    :class:`~critical.data.augment_ts.SeriesAugment`). ``sampler`` decides the indices
    (and carries ``set_epoch``, which Lightning calls). ``len()`` is the number of batches of
    this epoch, so ``trainer.num_training_batches`` is right.

    Example:
        >>> x = torch.randint(0, 256, (10, 3, 8, 8), dtype=torch.uint8)
        >>> y = torch.arange(10)
        >>> loader = AugmentedLoader(x, y, MultiplicitySampler(10, 4, multiplicity=2),
        ...                          BatchAugment(crop_padding=2))
        >>> len(loader), [tuple(b[0].shape) for b in loader][-1]
        (5, (4, 3, 8, 8))
    """

    def __init__(
        self,
        images: Tensor,
        labels: Tensor,
        sampler: MultiplicitySampler,
        augment: BatchAugment | Callable[..., Tensor] | None = None,
        seed: int = 0,
    ) -> None:
        if not (images.dtype == torch.uint8 and images.ndim == 4) and not (
            images.is_floating_point() and images.ndim >= 2
        ):
            raise ValueError(
                f"images must be a uint8 (N, C, H, W) tensor or a floating-point (N, ...) one, "
                f"got {images.dtype} {tuple(images.shape)}"
            )
        if labels.shape[0] != images.shape[0]:
            raise ValueError(f"{labels.shape[0]} labels for {images.shape[0]} images")
        if sampler.num_images != images.shape[0]:
            raise ValueError(
                f"sampler covers {sampler.num_images} images, data has {images.shape[0]}"
            )
        self.images = images
        self.labels = labels.to(images.device)
        self.sampler = sampler
        self.augment = augment
        self.seed = int(seed)

    @property
    def device(self) -> torch.device:
        """Where the data and the batches live."""
        return self.images.device

    def __len__(self) -> int:
        return len(self.sampler)

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        epoch = self.sampler._begin_pass()
        dev = self.images.device
        gen = torch.Generator(device=dev)
        gen.manual_seed(_mix_seed(self.seed, epoch, self.sampler.rank, 2))
        for idx in self.sampler.batches(epoch):
            idx = idx.to(dev, non_blocking=True)
            x = self.images.index_select(0, idx)
            y = self.labels.index_select(0, idx)
            if self.augment is None:
                yield to_float(x), y
            else:
                yield self.augment(x, generator=gen), y


class TensorLoader:
    """Un-augmented, ordered ``(float images in [0, 1], labels)`` batches for val / test.

    Under distributed training each rank takes its :func:`shard_indices` share (padded by
    wrapping, like Lightning's default ``DistributedSampler``, so all ranks have the same
    number of batches).

    Example:
        >>> x = torch.zeros(5, 1, 2, 2, dtype=torch.uint8)
        >>> [len(b[1]) for b in TensorLoader(x, torch.arange(5), batch_size=2)]
        [2, 2, 1]
    """

    def __init__(
        self,
        images: Tensor,
        labels: Tensor,
        batch_size: int,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}")
        self.images = images
        self.labels = labels.to(images.device)
        self.batch_size = batch_size
        self.indices = shard_indices(torch.arange(images.shape[0]), rank, world_size)
        self._sharded = world_size > 1

    def __len__(self) -> int:
        return math.ceil(self.indices.numel() / self.batch_size)

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        idx_all = self.indices.to(self.images.device)
        for b in range(len(self)):
            if not self._sharded:  # single process: plain slices
                sl = slice(b * self.batch_size, (b + 1) * self.batch_size)
                yield to_float(self.images[sl]), self.labels[sl]
            else:
                idx = idx_all[b * self.batch_size : (b + 1) * self.batch_size]
                yield to_float(self.images.index_select(0, idx)), self.labels.index_select(0, idx)
