"""What :class:`~critical.data.ImageDataModule` and :class:`~critical.data.TimeSeriesDataModule`
share: the splits held as tensors on the training device, a train loader that honours
``multiplicity`` and ``layout`` and augments whole batches, and un-augmented evaluation loaders,
all sharded over DDP ranks.

A subclass sets, in its ``__init__``, the attributes the loaders read (``dataset``,
``batch_size``, ``eval_batch_size``, ``multiplicity``, ``layout``, ``seed``, ``drop_last``,
``augment``, ``augmentation``, ``data_device``) and implements :meth:`DeviceDataModule._load`
(the splits, loaded once) and :meth:`DeviceDataModule._tensors` (a split's inputs and labels).

Example:
    >>> from critical.data import ImageDataModule
    >>> dm = ImageDataModule("synthetic", batch_size=64, multiplicity=2)
    >>> isinstance(dm, DeviceDataModule), len(dm.train_dataloader())  # 2 x 461 images / 64
    (True, 15)
"""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_info
from typing_extensions import override

from critical.data.augment_basic import to_float
from critical.data.loader import AugmentedLoader, MultiplicitySampler, TensorLoader
from critical.data.protocol import MultiplicityMixin

__all__ = ["DeviceDataModule"]


class DeviceDataModule(MultiplicityMixin, L.LightningDataModule):
    """Base class: device-resident splits and the loaders over them (see the module docstring)."""

    dataset: str
    batch_size: int
    eval_batch_size: int
    layout: str
    seed: int
    drop_last: bool
    augment: bool
    augmentation: Any
    data_device: str | None
    _device_splits: dict[str, Any] | None = None
    _device: torch.device | None = None

    def _load(self) -> Any:
        """The splits ``{"train", "val", "test"}`` (``test`` may be None), loaded once."""
        raise NotImplementedError

    @staticmethod
    def _tensors(data: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """A split's inputs and labels."""
        raise NotImplementedError

    def _target_device(self) -> torch.device:
        if self.data_device is not None:
            return torch.device(self.data_device)
        trainer = self.trainer
        return trainer.strategy.root_device if trainer is not None else torch.device("cpu")

    @override
    def setup(self, stage: str | None = None) -> None:
        """Load and split the data (once) and put it on the training device."""
        splits = self._load()
        device = self._target_device()
        if self._device_splits is None or self._device != device:
            self._device_splits = {
                k: (v.to(device) if v is not None else None) for k, v in splits.items()
            }
            self._device = device
            n = {k: len(v) if v is not None else 0 for k, v in splits.items()}
            test = n["test"] if splits["test"] is not None else "val"
            rank_zero_info(
                f"{type(self).__name__}: {self.dataset} train={n['train']} val={n['val']} "
                f"test={test} on {device}, multiplicity={self.multiplicity}, "
                f"layout={self.layout}"
            )

    def _current(self) -> Any:
        if self._device_splits is None:
            self.setup()
        assert self._device_splits is not None
        return self._device_splits

    def _dist(self) -> tuple[int, int]:
        trainer = self.trainer
        if trainer is None:
            return 0, 1
        return int(trainer.global_rank), int(trainer.world_size)

    @override
    def train_dataloader(self) -> AugmentedLoader:
        """A loader for the current ``multiplicity`` / ``augment``, yielding device batches."""
        train = self._current()["train"]
        rank, world = self._dist()
        sampler = MultiplicitySampler(
            len(train),
            self.batch_size,
            multiplicity=self.multiplicity,
            layout=self.layout,
            shuffle=True,
            seed=self.seed,
            rank=rank,
            world_size=world,
            drop_last=self.drop_last,
        )
        aug = self.augmentation if self.augment and not self.augmentation.is_identity else None
        x, y = self._tensors(train)
        return AugmentedLoader(x, y, sampler, aug, seed=self.seed)

    def probe_views(
        self, num: int, views: int, seed: int
    ) -> tuple[torch.Tensor, list[torch.Tensor], torch.Tensor]:
        """A fixed probe of ``num`` training samples (the same ones at every call: the first of
        a seeded permutation), un-augmented, and ``views`` freshly augmented copies of it drawn
        with ``seed``: what :class:`~critical.callbacks.AugmentationGap` compares."""
        train = self._current()["train"]
        x_all, y_all = self._tensors(train)
        g = torch.Generator().manual_seed(self.seed)
        idx = torch.randperm(x_all.shape[0], generator=g)[: min(num, x_all.shape[0])]
        idx = idx.to(x_all.device)
        x, y = x_all.index_select(0, idx), y_all.index_select(0, idx)
        gen = torch.Generator(device=x.device).manual_seed(int(seed))
        aug = self.augmentation if self.augment and not self.augmentation.is_identity else None
        out = [to_float(x) if aug is None else aug(x, generator=gen) for _ in range(views)]
        return to_float(x), out, y

    def _eval_loader(self, data: Any) -> TensorLoader | list[Any]:
        if data is None or len(data) == 0:
            return []
        rank, world = self._dist()
        x, y = self._tensors(data)
        return TensorLoader(x, y, self.eval_batch_size, rank, world)

    @override
    def val_dataloader(self) -> TensorLoader | list[Any]:
        """Un-augmented validation batches (``[]`` when ``val_size`` is 0)."""
        return self._eval_loader(self._current()["val"])

    @override
    def test_dataloader(self) -> TensorLoader | list[Any]:
        """Un-augmented batches of the test split, else of the validation split."""
        cur = self._current()
        return self._eval_loader(cur["test"] if cur["test"] is not None else cur["val"])

    @override
    def predict_dataloader(self) -> TensorLoader | list[Any]:
        """Same as ``test_dataloader()``."""
        return self.test_dataloader()
