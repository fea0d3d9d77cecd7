"""AugmentationGap: the loss on fresh augmented views of a fixed probe against the clean loss."""

from __future__ import annotations

import lightning as L
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from critical.callbacks import AugmentationGap
from critical.data import ImageDataModule, MultiplicityDataModule, MultiplicityDataset
from critical.task import ImageClassifier


def _trainer(callbacks, epochs=2):
    return L.Trainer(
        max_epochs=epochs,
        callbacks=callbacks,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator="cpu",
        limit_val_batches=0,
    )


def _task():
    return ImageClassifier("small_cnn", num_classes=10, in_chans=3, img_size=32, lr=0.05)


def test_gap_on_the_library_datamodule_matches_a_manual_computation():
    gap = AugmentationGap(num_samples=64, views=2)
    data = ImageDataModule("synthetic", batch_size=64, multiplicity=2, val_size=0)
    task = _task()
    trainer = _trainer([gap])
    trainer.fit(task, data)
    assert [h["epoch"] for h in gap.history] == [0, 1]
    last = gap.history[-1]
    assert last["aug_gap"] == pytest.approx(last["aug_gap/aug_loss"] - last["aug_gap/clean_loss"])
    assert 0 <= last["aug_gap/clean_acc"] <= 1 and last["samples"] == 64
    # the clean side, recomputed by hand at the final weights
    clean, views, y = data.probe_views(64, 2, seed=1)  # seed: epoch 1 of seed 0
    task.eval()
    with torch.no_grad():
        ref_clean = nn.functional.cross_entropy(task(clean), y).item()
        ref_aug = sum(nn.functional.cross_entropy(task(v), y).item() for v in views) / 2
    assert last["aug_gap/clean_loss"] == pytest.approx(ref_clean, rel=1e-5)
    assert last["aug_gap/aug_loss"] == pytest.approx(ref_aug, rel=1e-5)
    assert trainer.callback_metrics["critical/aug_gap"].item() == pytest.approx(last["aug_gap"])
    # the probe is the same images every epoch; the views are fresh draws
    c2, v2, y2 = data.probe_views(64, 2, seed=2)
    assert torch.equal(c2, clean) and torch.equal(y2, y) and not torch.equal(v2[0], views[0])


def test_no_augmentation_means_no_gap():
    gap = AugmentationGap(num_samples=32)
    data = ImageDataModule("synthetic", batch_size=64, multiplicity=1, val_size=0)
    data.augment = False
    _trainer([gap], epochs=1).fit(_task(), data)
    assert gap.history[-1]["aug_gap"] == pytest.approx(0.0, abs=1e-6)


def test_own_dataset_through_multiplicity_datamodule():
    x, y = torch.rand(40, 3, 8, 8), torch.arange(40) % 4

    def flip(img):
        return img.flip(-1) if torch.rand(()) < 0.5 else img

    data = MultiplicityDataModule(TensorDataset(x, y), transform=flip, multiplicity=2, batch_size=8)
    gap = AugmentationGap(num_samples=16)
    task = ImageClassifier("small_cnn", num_classes=4, in_chans=3, img_size=8)
    _trainer([gap], epochs=1).fit(task, data)
    assert len(gap.history) == 1 and gap.history[0]["samples"] == 16
    # the probe leaves torch's global RNG where it was
    ds = MultiplicityDataset(TensorDataset(x, y), transform=flip)
    torch.manual_seed(3)
    a = torch.rand(1)
    torch.manual_seed(3)
    ds.probe_views(8, 2, seed=0)
    assert torch.equal(torch.rand(1), a)


def test_a_plain_datamodule_is_probed_through_its_training_set():
    class Plain(L.LightningDataModule):
        multiplicity = 1

        def train_dataloader(self):
            return DataLoader(TensorDataset(torch.rand(8, 3, 8, 8), torch.arange(8) % 4))

    gap = AugmentationGap()
    _trainer([gap], epochs=1).fit(
        ImageClassifier("small_cnn", num_classes=4, in_chans=3, img_size=8), Plain()
    )
    assert gap.history[0]["samples"] == 8 and "aug_gap" not in gap.history[0]


def test_a_module_that_cannot_classify_the_probe_is_an_error_before_training():
    class NoForward(L.LightningModule):  # a training_step of its own, no forward
        def __init__(self):
            super().__init__()
            self.w = nn.Linear(3 * 8 * 8, 4)

        def training_step(self, batch, batch_idx):
            return nn.functional.cross_entropy(self.w(batch[0].flatten(1)), batch[1])

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    loader = DataLoader(TensorDataset(torch.rand(8, 3, 8, 8), torch.arange(8) % 4))
    trainer = _trainer([AugmentationGap()])
    with pytest.raises(ValueError, match="could not be classified by the module"):
        trainer.fit(NoForward(), loader)
    assert trainer.global_step == 0


@pytest.mark.parametrize("kwargs", [{"num_samples": 0}, {"views": 0}, {"loss_fn": 3}])
def test_bad_arguments(kwargs):
    with pytest.raises(ValueError):
        AugmentationGap(**kwargs)
