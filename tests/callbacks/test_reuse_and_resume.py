"""Issue 20, items 1-3, 6 and 13 for the detector, cut, energy and run-directory callbacks:
re-used callbacks, checkpoints without their state, modules without a returned loss, and the
run directory beside a user's logger."""

from __future__ import annotations

import json
import warnings

import lightning as L
import pytest
import torch
from helpers import TinyDataModule, TinyModule, tiny_trainer, v02_period
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger
from torch import nn

from critical.callbacks import (
    AugmentationCutoff,
    EnergyTracker,
    LayerRotation,
    RunDirectory,
)


def _run(tmp_path, name=None):
    return RunDirectory(root=tmp_path / "runs", name=name, plot=False, print_summary=False)


def test_reused_callbacks_start_each_fit_clean(tmp_path):
    """The notebook pattern: the same callback objects, a second fit on a new model and data."""
    cp = v02_period("layer_rotation", mode="absolute", threshold=10.0, patience=1,
                        min_epochs=1, guard_learning=False, guard_lr=False, verbose=False)  # fmt: skip
    cut, energy, run = AugmentationCutoff(verbose=False), EnergyTracker(), _run(tmp_path)
    callbacks = [LayerRotation(), cp, cut, energy, run]
    data1 = TinyDataModule(multiplicity=3)
    tiny_trainer(tmp_path, max_epochs=4, callbacks=callbacks).fit(TinyModule(), data1)
    first = run.path
    assert cp.event.epoch == 1 and cut.cut_epoch == 2 and data1.multiplicity == 1
    summary1 = (first / "summary.json").read_text()

    data2 = TinyDataModule(multiplicity=3)
    seen = []

    class K(L.Callback):
        def on_train_epoch_start(self, trainer, pl_module):
            seen.append(data2.multiplicity)

    tiny_trainer(tmp_path, max_epochs=4, callbacks=[*callbacks, K()]).fit(TinyModule(), data2)
    assert seen == [3, 3, 1, 1]  # trains at k = 3 until its own cut, not at k = 1 from epoch 0
    assert cp.event.epoch == 1 and [h["epoch"] for h in cp.detector.history] == [0, 1, 2, 3]
    assert [h["epoch"] for h in energy.history] == [0, 1, 2, 3]
    assert run.path != first and (run.path / "summary.json").is_file()
    assert (first / "summary.json").read_text() == summary1  # the first run is never rewritten
    s2 = json.loads((run.path / "summary.json").read_text())
    assert s2["cut"]["cut_epoch"] == 2 and s2["cut"]["multiplicity_before"] == 3


def test_a_named_run_directory_is_not_reused(tmp_path):
    run = _run(tmp_path, name="r")
    tiny_trainer(tmp_path, max_epochs=1, callbacks=[run]).fit(TinyModule(), TinyDataModule())
    with pytest.raises(FileExistsError, match="already holds a finished run"):
        tiny_trainer(tmp_path, max_epochs=1, callbacks=[run]).fit(TinyModule(), TinyDataModule())


class StatefulData(TinyDataModule):
    """Saves its multiplicity in checkpoints (as the library's datamodules do)."""

    def __init__(self, multiplicity: int = 3):
        super().__init__(multiplicity=multiplicity)
        self.save_hyperparameters("multiplicity")

    def state_dict(self):
        return {"multiplicity": self.multiplicity}

    def load_state_dict(self, state):
        self.multiplicity = state["multiplicity"]


def _checkpointed_cut_run(tmp_path):
    ckpt = ModelCheckpoint(dirpath=tmp_path / "ckpt", filename="{epoch}", save_top_k=-1,
                           save_on_train_epoch_end=True)  # fmt: skip
    cut = AugmentationCutoff("fixed", epoch=1, verbose=False)
    trainer = tiny_trainer(tmp_path, max_epochs=3, callbacks=[cut, ckpt], enable_checkpointing=True)
    trainer.fit(TinyModule(), StatefulData())
    return tmp_path / "ckpt" / "epoch=1.ckpt"


def test_stripped_checkpoint_recovers_the_cut_from_the_datamodule(tmp_path):
    path = _checkpointed_cut_run(tmp_path)
    ckpt = torch.load(path, weights_only=False)
    ckpt["callbacks"] = {}
    torch.save(ckpt, tmp_path / "stripped.ckpt")
    data = StatefulData()
    cut = AugmentationCutoff(verbose=False)  # policy detector: would never cut by itself here
    cp = v02_period("layer_rotation", verbose=False)
    with pytest.warns(UserWarning) as rec:
        tiny_trainer(tmp_path, max_epochs=4, callbacks=[LayerRotation(), cp, cut]).fit(
            TinyModule(), data, ckpt_path=tmp_path / "stripped.ckpt"
        )
    messages = [str(w.message) for w in rec]
    assert any("AugmentationCutoff" in m and "kept" in m for m in messages)
    assert any(
        m.startswith("CriticalPeriod: the checkpoint holds no CriticalPeriod") for m in messages
    )
    assert data.multiplicity == 1  # never silently back to k = 3
    assert cut.cut_epoch == 2 and cut.multiplicity_before == 3 and "recovered" in cut.reason
    # a datamodule that saves nothing: the cut cannot be recovered, and a warning says so
    with pytest.warns(UserWarning, match="whether k was cut before epoch 2 is unknown"):
        tiny_trainer(tmp_path, max_epochs=3, callbacks=[AugmentationCutoff(verbose=False),
                     LayerRotation(), v02_period("layer_rotation", verbose=False)]).fit(
            TinyModule(), TinyDataModule(multiplicity=3), ckpt_path=tmp_path / "stripped.ckpt"
        )  # fmt: skip


def test_a_cut_saved_under_another_key_is_kept(tmp_path):
    path = _checkpointed_cut_run(tmp_path)  # saved by AugmentationCutoff(policy="fixed", epoch=1)
    cut = AugmentationCutoff("fixed", epoch=3, verbose=False)  # another key
    data = StatefulData()
    with pytest.warns(UserWarning, match=r"its cut is kept: k=3 -> 1 from epoch 1"):
        tiny_trainer(tmp_path, max_epochs=4, callbacks=[cut]).fit(
            TinyModule(), data, ckpt_path=path
        )
    assert cut.cut_epoch == 1 and data.multiplicity == 1


class Manual(L.LightningModule):
    """Manual optimization, two optimizers, training_step returns None; logs its loss."""

    def __init__(self, log_key: str | None = "train_loss"):
        super().__init__()
        self.automatic_optimization = False
        self.a, self.b = nn.Linear(3 * 8 * 8, 8), nn.Linear(8, 4)
        self.log_key = log_key

    def training_step(self, batch, batch_idx):
        x, y = batch
        opt_a, opt_b = self.optimizers()
        loss = nn.functional.cross_entropy(self.b(torch.relu(self.a(x.flatten(1)))), y)
        opt_a.zero_grad()
        opt_b.zero_grad()
        self.manual_backward(loss)
        opt_a.step()
        opt_b.step()
        if self.log_key:
            self.log(self.log_key, loss, on_step=False, on_epoch=True)

    def configure_optimizers(self):
        return torch.optim.SGD(self.a.parameters(), 0.1), torch.optim.SGD(self.b.parameters(), 0.1)


def test_no_returned_loss_reads_a_logged_one_or_warns(tmp_path):
    cp = v02_period("layer_rotation", verbose=False)
    tiny_trainer(tmp_path, max_epochs=6, callbacks=[LayerRotation(), cp]).fit(
        Manual(), TinyDataModule()
    )
    losses = [h["loss"] for h in cp.detector.history]
    assert all(v is not None for v in losses) and losses[-1] < losses[0]
    assert cp.detector.history[-1]["pace"] is not None  # the learning guard can judge
    cp = v02_period("layer_rotation", verbose=False)
    with pytest.warns(UserWarning, match="training_step returns no loss and none of"):
        tiny_trainer(tmp_path, max_epochs=2, callbacks=[LayerRotation(), cp]).fit(
            Manual(log_key=None), TinyDataModule()
        )


def test_run_directory_beside_a_users_csv_logger_and_no_extra_logger(tmp_path):
    logger = CSVLogger(tmp_path / "logs", name="csv")
    run = RunDirectory(root=None, plot=False, print_summary=False)
    trainer = tiny_trainer(tmp_path, max_epochs=1, callbacks=[run], logger=logger)
    trainer.fit(TinyModule(), TinyDataModule())
    assert trainer.loggers == [logger]  # no TensorBoardLogger added next to the user's logger
    assert run.path.parent == tmp_path / "logs" / "csv" / "version_0"
    assert (run.path / "summary.json").is_file()


def test_default_logger_events_land_in_the_run_directory(tmp_path):
    run = RunDirectory(root=tmp_path / "runs", plot=False, print_summary=False)
    trainer = L.Trainer(max_epochs=1, callbacks=[run], accelerator="cpu", default_root_dir=tmp_path,
                        enable_progress_bar=False, enable_model_summary=False,
                        enable_checkpointing=False)  # fmt: skip
    trainer.fit(TinyModule(), TinyDataModule())
    assert list(run.path.glob("events.out.tfevents*"))
    assert not (tmp_path / "lightning_logs").exists()


def test_validate_and_test_after_fit_reach_the_run_directory(tmp_path):
    run = RunDirectory(root=tmp_path / "runs", plot=False, print_summary=False)
    trainer = tiny_trainer(tmp_path, max_epochs=1, callbacks=[run])
    module, data = TinyModule(), TinyDataModule()
    trainer.fit(module, data)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.validate(module, data)
    evaluations = json.loads((run.path / "evaluations.json").read_text())
    assert evaluations[0]["stage"] == "validate" and "val/acc" in evaluations[0]["metrics"]
    summary = json.loads((run.path / "summary.json").read_text())
    assert summary["evaluations"][0]["metrics"] == evaluations[0]["metrics"]
