"""ImageDataModule: protocol, validation, and multiplicity changes inside a real Trainer.fit."""

from __future__ import annotations

import math

import lightning as L
import pytest
import torch
from helpers import TinyModule, tiny_trainer
from PIL import Image

from critical.data import (
    DatasetNotFoundError,
    ImageDataModule,
    find_multiplicity_target,
    get_multiplicity,
    supports_multiplicity,
)


def _dm(**kwargs) -> ImageDataModule:
    args = {"dataset": "synthetic", "image_size": 8, "batch_size": 32, "seed": 0} | kwargs
    return ImageDataModule(**args)


class CutAfterFirstEpoch(L.Callback):
    """Sets k = 1 (and optionally augment) at the end of epoch 0 and asks for a reload."""

    def __init__(self, augment: bool | None = None) -> None:
        self.augment = augment
        self.batches: list[int] = []
        self.multiplicities: list[int | None] = []
        self.sampler_epochs: list[int] = []

    def on_train_epoch_start(self, trainer, pl_module):
        self.batches.append(trainer.num_training_batches)
        self.multiplicities.append(get_multiplicity(trainer))
        self.sampler_epochs.append(trainer.train_dataloader.sampler.epoch)

    def on_train_epoch_end(self, trainer, pl_module):
        if trainer.current_epoch == 0:
            target = find_multiplicity_target(trainer)
            target.multiplicity = 1
            if self.augment is not None:
                target.augment = self.augment
            trainer.reload_dataloaders_every_n_epochs = 1


def test_cut_changes_num_training_batches_in_fit(tmp_path):
    dm = _dm(multiplicity=3, policy="trivialaugment", train_size=96)
    cb = CutAfterFirstEpoch(augment=False)
    trainer = tiny_trainer(tmp_path, max_epochs=3, callbacks=[cb])
    trainer.fit(TinyModule(), datamodule=dm)
    assert len(dm.train_data) == 96
    assert cb.batches == [9, 3, 3]  # ceil(3 * 96 / 32), then ceil(96 / 32)
    assert cb.multiplicities == [3, 1, 1]
    assert cb.sampler_epochs == [0, 1, 2]  # Lightning's set_epoch reached the sampler
    assert dm.multiplicity == 1 and dm.augment is False
    assert trainer.train_dataloader.augment is None  # the rebuilt loader does not augment


def test_batch_layout_steps_do_not_depend_on_k(tmp_path):
    dm = _dm(multiplicity=4, layout="batch", batch_size=16, train_size=80)
    cb = CutAfterFirstEpoch()
    trainer = tiny_trainer(tmp_path, max_epochs=2, callbacks=[cb], limit_val_batches=0)
    trainer.fit(TinyModule(), datamodule=dm)
    assert cb.batches == [5, 5]  # ceil(80 / 16) images-batches whatever k is
    x, _ = next(iter(dm.train_dataloader()))
    assert x.shape[0] == 16  # k = 1 now: 16 images x 1 view


def test_train_dataloader_follows_multiplicity_and_augment():
    dm = _dm(multiplicity=2, crop_padding=2, flip=True)
    assert supports_multiplicity(dm)
    assert len(dm.train_dataloader()) == math.ceil(2 * 461 / 32)
    dm.multiplicity = 5
    assert len(dm.train_dataloader()) == math.ceil(5 * 461 / 32)
    dm.augment = False
    dm.multiplicity = 1
    loader = dm.train_dataloader()
    loader.sampler.set_epoch(0)
    xs, ys = zip(*loader)
    x, y = torch.cat(xs), torch.cat(ys)
    order = torch.cat(list(loader.sampler.batches(0)))
    assert torch.equal(x, dm.train_data.images[order].float() / 255)  # exact, un-augmented
    assert torch.equal(y, dm.train_data.labels[order])
    val = torch.cat([b for b, _ in dm.val_dataloader()])
    assert torch.equal(val, dm.val_data.images.float() / 255)
    assert len(dm.test_data) == 256 and dm.has_test_split


def test_properties_and_state_dict():
    dm = _dm(multiplicity=3)
    assert (dm.num_classes, dm.in_chans, dm.image_size) == (4, 3, 8)
    assert len(dm.mean) == len(dm.std) == 3 and all(0 < s < 1 for s in dm.std)
    assert dm.classes == ["class0", "class1", "class2", "class3"]
    state = dm.state_dict()
    other = _dm()
    other.load_state_dict(state)
    assert other.multiplicity == 3 and other.augment is True
    digits = ImageDataModule("digits")
    assert (digits.num_classes, digits.in_chans, digits.image_size) == (10, 1, 16)
    assert not digits.has_test_split


@pytest.mark.parametrize(
    "kwargs, words",
    [
        ({"dataset": "mnist"}, ["'cifar10'", "'digits'", "'synthetic'"]),
        ({"layout": "views"}, ["'epoch'", "'batch'"]),
        ({"multiplicity": 0}, ["multiplicity", ">= 1"]),
        ({"multiplicity": 2.0}, ["multiplicity"]),
        ({"augment": "yes"}, ["augment", "True or False"]),
        ({"policy": "autoaugment"}, ["'none'", "'trivialaugment'", "'randaugment'"]),
        ({"batch_size": 0}, ["batch_size"]),
        ({"val_size": 1.5}, ["val_size"]),
        ({"train_size": 0}, ["train_size"]),
        ({"dataset": "folder"}, ["root"]),
    ],
)
def test_constructor_validation(kwargs, words):
    with pytest.raises(ValueError) as err:
        _dm(**kwargs)
    for w in words:
        assert w in str(err.value)


def test_multiplicity_setter_validates():
    dm = _dm()
    for bad in (0, -1, 1.5, True, "2"):
        with pytest.raises(ValueError, match="multiplicity"):
            dm.multiplicity = bad
    with pytest.raises(ValueError, match="augment"):
        dm.augment = 1
    assert dm.multiplicity == 1


def test_train_size_subsets_stratified():
    dm = _dm(train_size=100)
    dm.setup("fit")
    assert len(dm.train_data) == 100
    assert dm.train_data.labels.bincount().tolist() == [25, 25, 25, 25]


def test_cifar_offline_error_from_datamodule(tmp_path):
    dm = ImageDataModule("cifar10", root=str(tmp_path), download=False)
    with pytest.raises(DatasetNotFoundError, match=r"cifar-10-python\.tar\.gz"):
        dm.setup("fit")


def test_folder_and_digits_datamodules(tmp_path):
    root = tmp_path / "imgs"
    for c in ("a", "b"):
        (root / c).mkdir(parents=True)
        for i in range(10):
            Image.new("RGB", (12, 12), color=(20 * i, 100 if c == "a" else 0, 0)).save(
                root / c / f"{i}.png"
            )
    dm = ImageDataModule(
        "folder",
        root=str(root),
        cache_dir=str(tmp_path / "cache"),
        batch_size=4,
        val_size=4,
        multiplicity=2,
        policy="randaugment",
    )
    dm.prepare_data()
    assert list((tmp_path / "cache").glob("*.pt"))
    dm.setup("fit")
    assert (dm.num_classes, dm.in_chans, dm.image_size) == (2, 3, 12)
    assert len(dm.train_dataloader()) == math.ceil(2 * 16 / 4)
    assert len(dm.val_data) == 4 and dm.val_data.labels.bincount().tolist() == [2, 2]

    digits = ImageDataModule("digits", batch_size=64, cutout=4)
    x, y = next(iter(digits.train_dataloader()))
    assert x.shape == (64, 1, 16, 16) and y.dtype == torch.int64
    assert len(digits.train_data) + len(digits.val_data) == 1797


def test_resume_restores_multiplicity(tmp_path):
    dm = _dm(multiplicity=3, train_size=64)
    trainer = tiny_trainer(tmp_path, max_epochs=2, callbacks=[CutAfterFirstEpoch()])
    trainer.fit(TinyModule(), datamodule=dm)
    ckpt = tmp_path / "last.ckpt"
    trainer.save_checkpoint(ckpt)

    fresh = _dm(multiplicity=3, train_size=64)  # constructed with the initial k
    seen = CutAfterFirstEpoch()
    resumed = tiny_trainer(tmp_path, max_epochs=3, callbacks=[seen])
    resumed.fit(TinyModule(), datamodule=fresh, ckpt_path=ckpt)
    assert fresh.multiplicity == 1 and seen.batches == [2]  # ceil(64 / 32) with k = 1


def test_datamodule_records_its_arguments_as_hyperparameters():
    dm = ImageDataModule("synthetic", multiplicity=3, batch_size=16, policy="trivialaugment")
    assert dm.hparams["multiplicity"] == 3 and dm.hparams["batch_size"] == 16
    assert dm.hparams["policy"] == "trivialaugment" and dm.hparams["dataset"] == "synthetic"


def test_label_noise_flips_training_labels_only():
    from critical.data import ImageDataModule

    clean = ImageDataModule("digits", val_size=0.2, test_size=0.1, seed=1)._load()
    noisy_dm = ImageDataModule("digits", val_size=0.2, test_size=0.1, seed=1, label_noise=0.2)
    noisy = noisy_dm._load()
    flipped = (noisy["train"].labels != clean["train"].labels).float().mean().item()
    assert abs(flipped - 0.2) < 0.01  # exactly round(0.2 N), each to another class
    assert noisy["val"].labels.equal(clean["val"].labels)
    assert noisy["test"].labels.equal(clean["test"].labels)
    assert torch.equal(noisy["train"].images, clean["train"].images)
    assert "20% of the labels flipped" in noisy_dm.split_names["train"]
