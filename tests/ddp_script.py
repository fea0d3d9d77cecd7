"""Run by tests/callbacks/test_ddp.py: a 2-process DDP fit on CPU (gloo); each rank writes what it saw."""

import json
import os
import sys

sys.path.insert(0, os.path.dirname(__file__))

import lightning as L
from helpers import TinyDataModule, TinyModule, v02_period
from lightning.pytorch.callbacks import Callback

from critical.callbacks import (
    AugmentationCutoff,
    EnergyTracker,
    GradientConfusion,
    GradientPredictability,
    LayerRotation,
)

# rank 0 settles at epoch 3 (changes 1, .01, .01); rank 1 alone would fire at epoch 2
SCRIPTS = {0: [0.0, 1.0, 1.01, 1.02, 1.03, 1.04], 1: [0.0, 0.0, 0.0, 0.0, 0.0, 0.0]}


class Scripted(TinyModule):
    def training_step(self, batch, batch_idx):
        v = SCRIPTS[self.global_rank][self.current_epoch]
        self.log("scripted", v, on_step=False, on_epoch=True, sync_dist=False)
        return super().training_step(batch, batch_idx)


class Record(Callback):
    def __init__(self):
        self.k, self.planned, self.ran, self.samples = [], [], [], []

    def on_train_epoch_start(self, trainer, pl_module):
        self.k.append(trainer.datamodule.multiplicity)
        self.planned.append(trainer.num_training_batches)
        self.ran.append(0)
        self.samples.append([])

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.ran[-1] += 1


class Orders(Callback):
    """The image indices this rank's sampler yields in each epoch."""

    def __init__(self):
        self.orders = []

    def on_train_epoch_start(self, trainer, pl_module):
        sampler = trainer.train_dataloader.sampler
        self.orders.append(sampler.order(trainer.current_epoch).tolist())


def ddp_trainer(**kwargs) -> L.Trainer:
    """Two CPU processes under DDP (gloo), quiet: no logger, checkpoints, bar or summary."""
    quiet = dict(
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    return L.Trainer(accelerator="cpu", devices=2, strategy="ddp", **quiet, **kwargs)


def main_imagedm(out_dir):
    """The fast path under DDP: ImageDataModule shards the k*N positions over the ranks."""
    from critical.data import ImageDataModule

    L.seed_everything(0)
    dm = ImageDataModule("synthetic", batch_size=8, multiplicity=3, val_size=16, seed=0)
    rec, orders = Record(), Orders()
    cut = AugmentationCutoff("fixed", epoch=2)
    energy = EnergyTracker()
    trainer = ddp_trainer(
        max_epochs=4,
        callbacks=[cut, rec, orders, energy],
    )
    trainer.fit(TinyModule(num_classes=dm.num_classes, channels=dm.in_chans), dm)
    summary = energy.summary()
    result = {
        "rank": trainer.global_rank,
        "k": rec.k,
        "planned": rec.planned,
        "ran": rec.ran,
        "num_train": len(dm.train_data.labels),
        "orders": orders.orders,
        "energy_history": energy.history,
        "flops_per_sample": summary["model"]["flops_per_sample"]["train"],
        "flops_saving": summary["saving_fraction"]["flops"],
    }
    with open(os.path.join(out_dir, f"imagedm_rank{trainer.global_rank}.json"), "w") as f:
        json.dump(result, f)


def main(out_dir):
    L.seed_everything(0)
    cp = v02_period(
        "scripted", mode="absolute", threshold=0.1, patience=2, min_epochs=0, guard_learning=False
    )
    metric_cbs = [GradientConfusion(), GradientPredictability(), LayerRotation()]
    rec = Record()
    trainer = ddp_trainer(
        max_epochs=6,
        callbacks=[cp, AugmentationCutoff(), *metric_cbs, rec],
    )
    trainer.fit(Scripted(), TinyDataModule(n=64, batch_size=8, multiplicity=3))
    result = {
        "rank": trainer.global_rank,
        "event_epoch": cp.event.epoch if cp.event else None,
        "k": rec.k,
        "planned": rec.planned,
        "ran": rec.ran,
        "metrics": [cb.history for cb in metric_cbs],
    }
    with open(os.path.join(out_dir, f"rank{trainer.global_rank}.json"), "w") as f:
        json.dump(result, f)


class NanFromEpoch1(TinyModule):
    """Its training loss turns NaN from epoch 1 on (the run diverges)."""

    def training_step(self, batch, batch_idx):
        loss = super().training_step(batch, batch_idx)
        return loss * float("nan") if self.current_epoch >= 1 else loss


def main_diverge(out_dir):
    """Every rank names the divergence's causes the same (the broadcast readings keep which
    loss the learning guard read)."""
    from critical.callbacks import CriticalPeriod

    L.seed_everything(0)
    cp = CriticalPeriod(monitor="layer_rotation", learning_signal="train_loss", fallback=None)
    trainer = ddp_trainer(
        max_epochs=3,
        limit_val_batches=0,
        callbacks=[cp, LayerRotation()],
    )
    trainer.fit(NanFromEpoch1(), TinyDataModule(n=32, batch_size=8, multiplicity=1))
    with open(os.path.join(out_dir, f"diverge_rank{trainer.global_rank}.json"), "w") as f:
        json.dump({"diverged": cp.diverged, "fired": cp.fired}, f)


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[2] == "imagedm":
        main_imagedm(sys.argv[1])
    elif len(sys.argv) > 2 and sys.argv[2] == "diverge":
        main_diverge(sys.argv[1])
    else:
        main(sys.argv[1])
