"""The default set-up on a user's own data, written the ordinary way: `CriticalPeriod()` and
`AugmentationCutoff()` alone, a datamodule with nothing of ours but `multiplicity`."""

from __future__ import annotations

import logging

import lightning as L
import numpy as np
import pytest
import torch
from helpers import UserModule, make_images, tiny_trainer
from PIL import Image
from torch.utils.data import ConcatDataset, DataLoader, IterableDataset, Subset, TensorDataset
from torchvision import datasets, transforms

from critical.callbacks import (
    AugmentationCutoff,
    AugmentationGap,
    CriticalPeriod,
    LayerRotation,
)
from critical.data import MultiplicityDataset
from critical.data.probe import DatasetProbe, find_probe_source, seeded_rngs, spread_indices


def write_image_folder(root, classes: int = 4, per_class: int = 12, size: int = 16) -> None:
    """A tiny ImageFolder tree of PNGs (class-dependent colour plus noise)."""
    rng = np.random.default_rng(0)
    for c in range(classes):
        d = root / f"class{c}"
        d.mkdir(parents=True)
        base = rng.integers(0, 255, 3)
        for i in range(per_class):
            px = np.clip(base + rng.normal(0, 25, (size, size, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(px).save(d / f"{i:03d}.png")


class FolderData(L.LightningDataModule):
    """The ordinary way: ImageFolder, PIL transforms, `multiplicity` as k copies."""

    def __init__(self, root, multiplicity: int = 3) -> None:
        super().__init__()
        self.root, self.multiplicity = root, multiplicity
        aug = [transforms.RandomCrop(16, padding=2), transforms.RandomHorizontalFlip()]
        self.train_set = datasets.ImageFolder(
            root, transforms.Compose([*aug, transforms.ToTensor()])
        )
        self.eval_set = datasets.ImageFolder(root, transforms.ToTensor())

    def train_dataloader(self):
        data = ConcatDataset([self.train_set] * self.multiplicity)
        return DataLoader(data, batch_size=16, shuffle=True)

    def val_dataloader(self):
        return DataLoader(self.eval_set, batch_size=32)

    def test_dataloader(self):
        return DataLoader(self.eval_set, batch_size=32)


def _gap(trainer) -> AugmentationGap:
    return next(cb for cb in trainer.callbacks if isinstance(cb, AugmentationGap))


def test_two_callbacks_on_an_image_folder_datamodule(tmp_path):
    write_image_folder(tmp_path / "train")
    data = FolderData(tmp_path / "train")
    cp, cut = CriticalPeriod(deadline=3), AugmentationCutoff()
    trainer = tiny_trainer(tmp_path, max_epochs=4, callbacks=[cp, cut])
    trainer.fit(UserModule(), data)
    gap = _gap(trainer)  # added by the detector, reading the user's own training set
    assert gap.optional and gap.unavailable is None
    assert cp.active == "primary" and cp.detector.learning_signal == "aug_loss"
    assert [h["epoch"] for h in gap.history] == [0, 1, 2, 3]
    assert "aug_gap/aug_loss" in gap.history[0] and "aug_gap" not in gap.history[0]
    assert not any(isinstance(cb, LayerRotation) for cb in trainer.callbacks)  # validates
    # the watched validation loss was read under its underscore name
    assert cp.detector.history[-1]["values"]["val/loss"] > 0
    assert cp.fired and cut.cut_epoch == cp.event.epoch + 1 and data.multiplicity == 1
    assert trainer.test(UserModule(), data, verbose=False)[0]["test_acc"] >= 0


def test_probe_of_a_class_sorted_folder_covers_every_class(tmp_path):
    write_image_folder(tmp_path / "train", classes=4, per_class=16)
    folder = datasets.ImageFolder(
        tmp_path / "train",
        transforms.Compose([transforms.RandomCrop(16, 2), transforms.ToTensor()]),
    )
    assert folder.targets == sorted(folder.targets)  # ImageFolder lists files by class
    _, views, labels = DatasetProbe(ConcatDataset([folder] * 3)).probe_views(8, 2, seed=1)
    assert sorted(set(labels.tolist())) == [0, 1, 2, 3]
    assert views[0].shape == (8, 3, 16, 16) and not torch.equal(views[0], views[1])
    # the library's wrapper draws its probe the same way (it drew the first N before)
    ds = MultiplicityDataset(folder, 3, eval_transform=None)
    _, _, wrapped = ds.probe_views(8, 1, seed=0)
    assert sorted(set(wrapped.tolist())) == [0, 1, 2, 3]


def test_probe_is_seeded_and_leaves_the_training_rngs_alone():
    x, y = make_images(32)
    ds = TensorDataset(x, y)

    class Noisy(torch.utils.data.Dataset):
        def __len__(self):
            return len(ds)

        def __getitem__(self, i):
            a, b = ds[i]
            return a + torch.randn_like(a) + float(np.random.rand()), b

    probe = DatasetProbe(Subset(Noisy(), list(range(20))))
    torch.manual_seed(7)
    np.random.seed(7)
    expected = (torch.rand(3), np.random.rand())
    torch.manual_seed(7)
    np.random.seed(7)
    a = probe.probe_views(6, 1, seed=3)[1][0]
    assert torch.equal(torch.rand(3), expected[0]) and np.random.rand() == expected[1]
    assert torch.equal(probe.probe_views(6, 1, seed=3)[1][0], a)  # same seed: same views
    assert not torch.equal(probe.probe_views(6, 1, seed=4)[1][0], a)
    assert spread_indices(20, 6, 0) == spread_indices(20, 6, 0)
    with seeded_rngs(1):
        pass


class KCopies(torch.utils.data.Dataset):
    """A user's own dataset with `multiplicity` (index i shows sample i mod N)."""

    def __init__(self, n: int = 48, multiplicity: int = 3) -> None:
        self.x, self.y = make_images(n)
        self.multiplicity = multiplicity

    def __len__(self):
        return len(self.x) * self.multiplicity

    def __getitem__(self, i):
        j = i % len(self.x)
        return self.x[j] + 0.05 * torch.randn_like(self.x[j]), self.y[j]


def test_plain_dataloader_passed_to_fit_without_validation(tmp_path):
    data = KCopies()
    loader = DataLoader(data, batch_size=16, shuffle=True)
    cp = CriticalPeriod()
    trainer = tiny_trainer(tmp_path, max_epochs=3, callbacks=[cp, AugmentationCutoff()])
    trainer.fit(UserModule(), train_dataloaders=loader)
    # no validation: the fallback rule, whose layer rotation the detector added too
    assert cp.active == "fallback" and cp.detector.metrics == ["layer_rotation"]
    rotation = next(cb for cb in trainer.callbacks if isinstance(cb, LayerRotation))
    assert len(rotation.history) == 3
    gap = _gap(trainer)
    assert gap.unavailable is None and len(gap.history) == 3
    assert cp.detector.learning_signal == "aug_loss"


def test_a_deadline_holds_in_the_fallback_rule(tmp_path):
    cp = CriticalPeriod(deadline=4, min_epochs=2)
    cut = AugmentationCutoff()
    data = KCopies()
    trainer = tiny_trainer(tmp_path, max_epochs=6, callbacks=[cp, cut], limit_val_batches=0)
    trainer.fit(UserModule(), train_dataloaders=DataLoader(data, batch_size=16, shuffle=True))
    assert cp.active == "fallback"
    assert cp.detector.deadline == 4 and cp.detector.min_epochs == 2
    assert cp.fired and cp.event.epoch <= 3  # by the end of the 4th epoch at the latest
    assert cut.cut_epoch == cp.event.epoch + 1 and data.multiplicity == 1


class Stream(IterableDataset):
    def __iter__(self):
        x, y = make_images(48)
        for i in range(len(x)):
            yield x[i], y[i]


def test_an_iterable_dataset_makes_the_guard_read_the_training_loss(tmp_path, caplog):
    cp = CriticalPeriod(monitor="layer_rotation")
    trainer = tiny_trainer(tmp_path, max_epochs=2, callbacks=[cp])
    with caplog.at_level(logging.INFO):
        trainer.fit(UserModule(), train_dataloaders=DataLoader(Stream(), batch_size=16))
    assert cp.detector.learning_signal == "train_loss"
    assert "iterable dataset" in caplog.text and "reads the training loss instead" in caplog.text
    assert len(_gap(trainer).history) == 0 and len(cp.detector.history) == 2


def test_an_augmentation_gap_asked_for_by_name_still_fails_on_an_iterable_dataset(tmp_path):
    trainer = tiny_trainer(tmp_path, max_epochs=1, callbacks=[AugmentationGap()])
    with pytest.raises(ValueError, match="iterable dataset"):
        trainer.fit(UserModule(), train_dataloaders=DataLoader(Stream(), batch_size=16))
    assert trainer.global_step == 0


def test_clean_side_metrics_need_a_known_clean_view(tmp_path):
    cp = CriticalPeriod(monitor="aug_gap")
    trainer = tiny_trainer(tmp_path, max_epochs=1, callbacks=[cp])
    loader = DataLoader(KCopies(), batch_size=16)
    with pytest.raises(ValueError, match="eval_transform"):
        trainer.fit(UserModule(), train_dataloaders=loader)
    assert trainer.global_step == 0


def test_module_train_dataloader_and_listed_callbacks_are_kept(tmp_path):
    class OwnLoader(UserModule):
        def __init__(self) -> None:
            super().__init__()
            self.data = KCopies()

        def train_dataloader(self):
            return DataLoader(self.data, batch_size=16, shuffle=True)

    mine = AugmentationGap(num_samples=8)
    cp = CriticalPeriod(monitor="layer_rotation")
    trainer = tiny_trainer(tmp_path, max_epochs=2, callbacks=[cp, mine])
    trainer.fit(OwnLoader())
    gaps = [cb for cb in trainer.callbacks if isinstance(cb, AugmentationGap)]
    assert gaps == [mine] and mine.history[0]["samples"] == 8
    source, how = find_probe_source(trainer)
    assert isinstance(source, DatasetProbe) and "KCopies" in how


def test_a_misspelt_monitor_is_the_first_error():
    with pytest.raises(ValueError, match="did you mean 'layer_rotation'"):
        CriticalPeriod(monitor="layer_rotaton")
    with pytest.raises(ValueError, match="did you mean 'layer_rotation'"):
        CriticalPeriod(fallback={"monitor": "layer_rotaton"})
    CriticalPeriod(monitor="layer_rotation@all")  # a named instance's key is not a typo


def test_the_defaults_on_a_manual_optimization_gan(tmp_path, caplog):
    from test_manual_optimization import GAN

    cp = CriticalPeriod()
    trainer = tiny_trainer(tmp_path, max_epochs=3, callbacks=[cp])
    loader = DataLoader(TensorDataset(torch.randn(32, 4)), batch_size=8)
    with caplog.at_level(logging.INFO):
        trainer.fit(GAN(), loader)  # no labels, no classifier: no probe; no validation
    assert cp.active == "fallback" and cp.detector.learning_signal == "train_loss"
    assert "reads the training loss instead" in caplog.text
    assert len(cp.detector.history) == 3


def test_the_defaults_never_cut_a_diverged_run(tmp_path):
    class Diverges(UserModule):
        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=1e6)

    cp, cut = CriticalPeriod(deadline=3), AugmentationCutoff()
    data = KCopies()
    trainer = tiny_trainer(tmp_path, max_epochs=4, callbacks=[cp, cut])
    with pytest.warns(UserWarning, match="diverged"):
        trainer.fit(Diverges(), train_dataloaders=DataLoader(data, batch_size=16))
    assert cp.diverged is not None and not cp.fired and cut.cut_epoch is None


@pytest.mark.parametrize("where", ["datamodule", "fit", "none"])
def test_the_rule_is_chosen_before_training_from_the_validation_data(tmp_path, where, caplog):
    class TrainOnly(L.LightningDataModule):  # no val_dataloader; the module has a validation_step
        multiplicity = 3

        def train_dataloader(self):
            return DataLoader(KCopies(), batch_size=16, shuffle=True)

    cp = CriticalPeriod()
    trainer = tiny_trainer(tmp_path, max_epochs=2, callbacks=[cp])
    val = DataLoader(TensorDataset(*make_images(16)), batch_size=16)
    with caplog.at_level(logging.INFO):
        if where == "datamodule":
            trainer.fit(UserModule(), TrainOnly())
        else:
            train = DataLoader(KCopies(), batch_size=16)
            trainer.fit(UserModule(), train, val if where == "fit" else None)
    expected = "primary" if where == "fit" else "fallback"
    assert cp.active == expected
    assert "measuring from here" not in caplog.text  # decided at setup, not after epoch 0
    rotations = [cb for cb in trainer.callbacks if isinstance(cb, LayerRotation)]
    assert len(rotations) == (expected == "fallback")
    assert all(len(r.history) == 2 for r in rotations)


def test_a_validation_that_logs_no_loss_makes_the_default_fall_back(tmp_path, caplog):
    from helpers import TinyDataModule, TinyModule  # validates, logs val/acc only

    cp = CriticalPeriod()
    trainer = tiny_trainer(tmp_path, max_epochs=3, callbacks=[cp])
    with caplog.at_level(logging.INFO):
        trainer.fit(TinyModule(), TinyDataModule(multiplicity=3))
    assert cp.active == "fallback" and len(cp.detector.history) == 3
    assert "the validation logs no loss" in caplog.text


def test_a_branch_without_validation_resumes_from_a_validated_trunk(tmp_path):
    from lightning.pytorch.callbacks import ModelCheckpoint

    class Data(L.LightningDataModule):
        def __init__(self):
            super().__init__()
            self.train_set, self.multiplicity = KCopies(), 3

        def train_dataloader(self):
            self.train_set.multiplicity = self.multiplicity
            return DataLoader(self.train_set, batch_size=16, shuffle=True)

        def val_dataloader(self):
            return DataLoader(TensorDataset(*make_images(16)), batch_size=16)

    ckpt = ModelCheckpoint(dirpath=tmp_path / "ck", save_top_k=-1, every_n_epochs=1)
    trunk = CriticalPeriod()
    tiny_trainer(tmp_path, max_epochs=2, callbacks=[trunk, ckpt], enable_checkpointing=True).fit(
        UserModule(), Data()
    )
    assert trunk.active == "primary"
    branch, cut = CriticalPeriod(), AugmentationCutoff("fixed", epoch=2)
    trainer = tiny_trainer(tmp_path, max_epochs=4, callbacks=[branch, cut], limit_val_batches=0)
    with pytest.warns(UserWarning, match="starts from the resume point"):
        trainer.fit(UserModule(), Data(), ckpt_path=str(tmp_path / "ck" / "epoch=1-step=18.ckpt"))
    assert branch.active == "fallback" and [h["epoch"] for h in branch.detector.history] == [2, 3]
    assert cut.cut_epoch == 2


def test_an_image_folder_with_torchvision_transforms_has_a_clean_view(tmp_path, caplog):
    """Its Compose says which steps are augmentation: the gap and the clean side are measured,
    so a rule watching them runs on the user's own pipeline."""
    write_image_folder(tmp_path / "train")
    data = FolderData(tmp_path / "train")
    user_transform = data.train_set.transform
    cp = CriticalPeriod(monitor="aug_gap", min_epochs=1, deadline=2)
    gap = AugmentationGap(num_samples=8, views=1)
    trainer = tiny_trainer(tmp_path, max_epochs=2, callbacks=[gap, cp, AugmentationCutoff()])
    with caplog.at_level(logging.INFO):
        trainer.fit(UserModule(), data)
    assert gap.has_clean and "critical/aug_gap/clean_loss" in trainer.callback_metrics
    assert "the clean view is known: its transform with RandomCrop -> CenterCrop" in caplog.text
    assert data.train_set.transform is user_transform
