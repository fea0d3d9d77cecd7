"""MultiplicityDataset / MultiplicityDataModule: users' own data, workers, Lightning reload."""

from __future__ import annotations

import math

import lightning as L
import pytest
import torch
from helpers import TinyModule, make_images, tiny_trainer
from torch.utils.data import DataLoader, TensorDataset

from critical.data import (
    MultiplicityDataModule,
    MultiplicityDataset,
    find_multiplicity_target,
    supports_multiplicity,
)


def _noise(x: torch.Tensor) -> torch.Tensor:
    return x + 0.1 * torch.randn_like(x)


class _Indexed(torch.utils.data.Dataset):
    """Returns (image, base index) so tests can count how often each sample is served."""

    def __init__(self, n: int) -> None:
        self.x = torch.zeros(n, 1, 2, 2)

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int):
        return self.x[i], i


def test_len_index_mapping_and_independent_copies():
    base = TensorDataset(torch.zeros(5, 3, 4, 4), torch.arange(5))
    ds = MultiplicityDataset(base, multiplicity=3, transform=_noise)
    assert len(ds) == 15 and ds.base_len == 5 and supports_multiplicity(ds)
    assert [int(ds[i][1]) for i in range(15)] == list(range(5)) * 3
    copies = [ds[i][0] for i in (2, 7, 12)]
    assert not torch.equal(copies[0], copies[1]) and not torch.equal(copies[1], copies[2])
    assert not torch.equal(ds[2][0], ds[2][0])  # random per access
    ds.augment = False
    assert torch.equal(ds[2][0], base[2][0])
    assert int(ds[-1][1]) == 4 and len(list(ds)) == 15  # iteration stops at len
    with pytest.raises(IndexError):
        ds[-16]


def test_each_sample_k_times_per_epoch_with_shuffle():
    ds = MultiplicityDataset(_Indexed(13), multiplicity=4)
    ids = torch.cat([b[1] for b in DataLoader(ds, batch_size=5, shuffle=True)])
    assert ids.bincount(minlength=13).tolist() == [4] * 13


def test_persistent_workers_follow_multiplicity_changes():
    ds = MultiplicityDataset(_Indexed(12), multiplicity=1, transform=_noise)
    loader = DataLoader(ds, batch_size=4, shuffle=True, num_workers=2, persistent_workers=True)
    first = torch.cat([b[1] for b in loader])
    assert first.bincount(minlength=12).tolist() == [1] * 12
    ds.multiplicity = 3  # workers keep their k = 1 copy; the main-process sampler decides
    assert len(loader) == 9
    second = torch.cat([b[1] for b in loader])
    assert second.bincount(minlength=12).tolist() == [3] * 12
    ds.multiplicity = 2
    third = torch.cat([b[1] for b in loader])
    assert third.bincount(minlength=12).tolist() == [2] * 12


def test_validation():
    with pytest.raises(ValueError, match="map-style"):
        MultiplicityDataset(iter([1, 2]))
    with pytest.raises(ValueError, match="multiplicity"):
        MultiplicityDataset([1, 2], multiplicity=0)
    with pytest.raises(ValueError, match="callable"):
        MultiplicityDataset([1, 2], transform="flip")
    with pytest.raises(ValueError, match="batch_size"):
        MultiplicityDataModule([1, 2], batch_size=0)


class _Cut(L.Callback):
    def __init__(self) -> None:
        self.batches: list[int] = []

    def on_train_epoch_start(self, trainer, pl_module):
        self.batches.append(trainer.num_training_batches)

    def on_train_epoch_end(self, trainer, pl_module):
        if trainer.current_epoch == 0:
            find_multiplicity_target(trainer).multiplicity = 1
            trainer.reload_dataloaders_every_n_epochs = 1


def test_multiplicity_datamodule_in_fit(tmp_path):
    x, y = make_images(48)
    dm = MultiplicityDataModule(
        TensorDataset(x, y),
        val_dataset=TensorDataset(x[:16], y[:16]),
        transform=_noise,
        multiplicity=3,
        batch_size=16,
    )
    cb = _Cut()
    trainer = tiny_trainer(tmp_path, max_epochs=3, callbacks=[cb])
    trainer.fit(TinyModule(), datamodule=dm)
    assert cb.batches == [math.ceil(3 * 48 / 16), 3, 3]
    assert dm.state_dict() == {"multiplicity": 1, "augment": True}
