"""Per-step learning-rate schedules across a cut: the schedule keeps its place (issue 18).

Each test trains a module of its own with a datamodule of its own (a settable ``multiplicity``)
under a per-step schedule sized from ``trainer.estimated_stepping_batches``, once uncut (k = 3
throughout) and once with a fixed cut to k = 1, and compares the learning rate at every epoch
boundary after the cut and after the last step.
"""

from __future__ import annotations

import math
from pathlib import Path

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from critical.callbacks import AugmentationCutoff

N, BATCH, EPOCHS, K, CUT = 24, 4, 5, 3, 2  # k = 3: 18 batches per epoch, k = 1: 6


class Repeat(torch.utils.data.Dataset):
    def __init__(self, x, y, k):
        self.x, self.y, self.multiplicity = x, y, k

    def __len__(self):
        return len(self.x) * self.multiplicity

    def __getitem__(self, i):
        return self.x[i % len(self.x)], self.y[i % len(self.y)]


class Data(L.LightningDataModule):
    """A user's own datamodule: a settable `multiplicity` its train_dataloader honours."""

    def __init__(self, k: int = K, n: int = N):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.x, self.y = torch.randn(n, 6, generator=g), torch.arange(n) % 3
        self.multiplicity = k

    def train_dataloader(self):
        return DataLoader(Repeat(self.x, self.y, self.multiplicity), batch_size=BATCH)


def onecycle(opt, total):
    return torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.5, total_steps=total)


def warmup_cosine(opt, total):
    warm = max(1, total // 10)

    def f(step):
        if step < warm:
            return (step + 1) / warm
        return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warm) / (total - warm))))

    return torch.optim.lr_scheduler.LambdaLR(opt, f)


def sequential(opt, total):
    warm = max(1, total // 5)
    return torch.optim.lr_scheduler.SequentialLR(
        opt,
        [
            torch.optim.lr_scheduler.LinearLR(opt, start_factor=0.1, total_iters=warm),
            torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=total - warm),
        ],
        milestones=[warm],
    )


SCHEDULES = {"onecycle": onecycle, "warmup_cosine": warmup_cosine, "sequential": sequential}


class Module(L.LightningModule):
    """A user's own module: SGD, a per-step schedule sized from estimated_stepping_batches."""

    def __init__(self, schedule: str = "onecycle", total: int | None = None):
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Linear(6, 3)
        self.schedule, self.total = schedule, total

    def training_step(self, batch, batch_idx):
        x, y = batch
        return nn.functional.cross_entropy(self.net(x), y)

    def configure_optimizers(self):
        opt = torch.optim.SGD(self.parameters(), lr=0.5, momentum=0.9)
        total = self.total or int(self.trainer.estimated_stepping_batches)
        sched = SCHEDULES[self.schedule](opt, total)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


class LRLog(Callback):
    """The learning rate at each epoch start and after the last step of the fit."""

    def __init__(self):
        self.at_epoch: dict[int, float] = {}
        self.final: float | None = None

    def on_train_epoch_start(self, trainer, pl_module):
        self.at_epoch[trainer.current_epoch] = trainer.optimizers[0].param_groups[0]["lr"]

    def on_train_end(self, trainer, pl_module):
        self.final = trainer.optimizers[0].param_groups[0]["lr"]


def _fit(module, data, callbacks, epochs=EPOCHS, **kw):
    trainer = L.Trainer(
        max_epochs=epochs,
        callbacks=callbacks,
        logger=False,
        enable_checkpointing=any(isinstance(c, ModelCheckpoint) for c in callbacks),
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator="cpu",
        **kw,
    )
    trainer.fit(module, data)
    return trainer


def _uncut(schedule: str) -> LRLog:
    log = LRLog()
    _fit(Module(schedule), Data(), [AugmentationCutoff(policy="never"), log])
    return log


@pytest.mark.parametrize("schedule", list(SCHEDULES))
def test_schedule_keeps_its_place_after_the_cut(schedule):
    ref = _uncut(schedule)
    log = LRLog()
    cutoff = AugmentationCutoff(policy="fixed", epoch=CUT, verbose=False)
    trainer = _fit(Module(schedule), Data(), [cutoff, log])
    assert trainer.num_training_batches == N // BATCH  # k = 1 after the cut
    for e in range(CUT, EPOCHS):
        assert log.at_epoch[e] == pytest.approx(ref.at_epoch[e], rel=1e-6, abs=1e-12), e
    assert log.final == pytest.approx(ref.final, rel=1e-6, abs=1e-12)
    # the follower only steps the scheduler forward: the last position is the uncut run's
    sched = trainer.lr_scheduler_configs[0].scheduler
    assert sched.last_epoch == K * N // BATCH * EPOCHS


def test_without_following_the_schedule_stops_early_and_warns():
    ref = _uncut("onecycle")
    log = LRLog()
    cutoff = AugmentationCutoff(policy="fixed", epoch=CUT, follow_schedule=False, verbose=False)
    with pytest.warns(UserWarning, match="follow_schedule=False"):
        _fit(Module("onecycle"), Data(), [cutoff, log])
    assert log.final > 10 * ref.final  # stopped part-way: the learning rate stays high


def test_public_recipe_shape_ends_at_the_uncut_final_lr():
    """Own module, own datamodule, per-step OneCycleLR from estimated_stepping_batches, k = 3,
    a fixed cut at 40% of the run: ends at the uncut run's final learning rate."""
    ref = _uncut("onecycle")
    log = LRLog()
    cut = AugmentationCutoff(policy="fixed", fraction=0.4, verbose=False)
    _fit(Module("onecycle"), Data(), [cut, log])
    assert cut.cut_epoch == 2
    assert log.final == pytest.approx(ref.final, rel=1e-6)


def test_schedule_sized_from_the_data_length_fails_before_the_first_step():
    """The public recipe's bug: steps_per_epoch from len(dataset) / batch (k = 1) with k = 3."""
    steps = []

    class Count(Callback):
        def on_train_batch_start(self, *args):
            steps.append(1)

    total = N // BATCH * EPOCHS  # 30, sized for k = 1; the fit at k = 3 takes 90
    with pytest.raises(ValueError, match=r"sized for 30 optimizer steps.*takes 90") as err:
        _fit(Module("onecycle", total=total), Data(), [AugmentationCutoff(policy="never"), Count()])
    assert "estimated_stepping_batches" in str(err.value)
    assert not steps


@pytest.mark.parametrize("when", ["at_cut", "after_cut_mid_epoch"])
def test_resume_keeps_the_schedule_exact(tmp_path: Path, when):
    ref = _uncut("onecycle")
    ckpt_dir = tmp_path / "ckpt"
    if when == "at_cut":  # a checkpoint at the end of the last epoch at k
        ckpt = ModelCheckpoint(dirpath=ckpt_dir, save_top_k=-1, every_n_epochs=1)
        ckpt_name = f"epoch={CUT - 1}-step={K * N // BATCH * CUT}.ckpt"
    else:  # inside the first epoch at k = 1
        ckpt = ModelCheckpoint(dirpath=ckpt_dir, save_top_k=-1, every_n_train_steps=2)
        ckpt_name = f"epoch={CUT}-step={K * N // BATCH * CUT + 4}.ckpt"
    _fit(Module("onecycle"), Data(), [AugmentationCutoff(policy="fixed", epoch=CUT), ckpt])
    assert (ckpt_dir / ckpt_name).exists(), sorted(p.name for p in ckpt_dir.iterdir())
    log = LRLog()
    trainer = L.Trainer(
        max_epochs=EPOCHS,
        callbacks=[AugmentationCutoff(policy="fixed", epoch=CUT), log],
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator="cpu",
    )
    trainer.fit(Module("onecycle"), Data(), ckpt_path=str(ckpt_dir / ckpt_name))
    for e in log.at_epoch:
        if e > CUT or when == "at_cut":
            assert log.at_epoch[e] == pytest.approx(ref.at_epoch[e], rel=1e-6), e
    assert log.final == pytest.approx(ref.final, rel=1e-6)


def test_branch_resumed_from_an_uncut_run(tmp_path: Path):
    """A k = 1 branch off an always-k run's checkpoint (how sweeps take fixed cuts): the cut is
    applied on resume and the schedule still ends where the uncut run ends."""
    ref = _uncut("warmup_cosine")
    ckpt = ModelCheckpoint(dirpath=tmp_path, save_top_k=-1, every_n_epochs=1)
    _fit(Module("warmup_cosine"), Data(), [AugmentationCutoff(policy="never"), ckpt])
    log = LRLog()
    trainer = L.Trainer(
        max_epochs=EPOCHS,
        callbacks=[AugmentationCutoff(policy="fixed", epoch=CUT), log],
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator="cpu",
    )
    path = tmp_path / f"epoch={CUT - 1}-step={K * N // BATCH * CUT}.ckpt"
    trainer.fit(Module("warmup_cosine"), Data(), ckpt_path=str(path))
    for e in range(CUT, EPOCHS):
        assert log.at_epoch[e] == pytest.approx(ref.at_epoch[e], rel=1e-6), e
    assert log.final == pytest.approx(ref.final, rel=1e-6, abs=1e-12)


def test_timm_scheduler_stepped_per_update():
    timm_scheduler = pytest.importorskip("timm.scheduler")

    class TimmModule(Module):
        def configure_optimizers(self):
            opt = torch.optim.SGD(self.parameters(), lr=0.5)
            total = int(self.trainer.estimated_stepping_batches)
            sched = timm_scheduler.CosineLRScheduler(
                opt, t_initial=total, warmup_t=total // 10, warmup_lr_init=0.01, t_in_epochs=False
            )
            return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

        def lr_scheduler_step(self, scheduler, metric):
            scheduler.step_update(num_updates=self.global_step)

    ref = LRLog()
    _fit(TimmModule(), Data(), [AugmentationCutoff(policy="never"), ref])
    log = LRLog()
    _fit(TimmModule(), Data(), [AugmentationCutoff(policy="fixed", epoch=CUT), log])
    for e in range(CUT, EPOCHS):
        assert log.at_epoch[e] == pytest.approx(ref.at_epoch[e], rel=1e-6), e
    assert log.final == pytest.approx(ref.final, rel=1e-6)


def test_epoch_schedulers_are_untouched():
    class EpochModule(Module):
        def configure_optimizers(self):
            opt = torch.optim.SGD(self.parameters(), lr=0.5)
            sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=EPOCHS)
            return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "epoch"}}

    ref = LRLog()
    _fit(EpochModule(), Data(), [AugmentationCutoff(policy="never"), ref])
    log = LRLog()
    _fit(EpochModule(), Data(), [AugmentationCutoff(policy="fixed", epoch=CUT), log])
    assert log.at_epoch == pytest.approx(ref.at_epoch)


def test_multiplicity_that_cannot_be_set_fails_at_fit_start():
    class Raising(Data):
        def __init__(self):
            L.LightningDataModule.__init__(self)
            self.x, self.y = Data().x, Data().y

        @property
        def multiplicity(self):
            return K

        @multiplicity.setter
        def multiplicity(self, value):
            raise RuntimeError("k is fixed in this datamodule")

    with pytest.raises(ValueError, match="cannot set `multiplicity` on Raising"):
        _fit(Module(), Raising(), [AugmentationCutoff(policy="fixed", epoch=CUT)])

    class NoSetter(L.LightningDataModule):
        x, y = Data().x, Data().y

        @property
        def multiplicity(self):
            return K

        def train_dataloader(self):
            return DataLoader(TensorDataset(self.x, self.y), batch_size=BATCH)

    with pytest.raises(ValueError, match="cannot set `multiplicity` on NoSetter"):
        _fit(Module(), NoSetter(), [AugmentationCutoff(policy="fixed", epoch=CUT)])
