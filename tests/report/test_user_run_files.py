"""A user's own fit, as issue 25 (item 2) found it: its seed, class names, the test accuracy of
``trainer.test`` after the fit, what each split is, and a fixed cut told from the detector's
verdict, in ``config.json``, ``summary.json`` and the printed summary."""

from __future__ import annotations

import json
import os

import lightning as L
import matplotlib
import pytest
from helpers import TinyDataModule, UserModule, tiny_trainer, v02_period
from torch.utils.data import DataLoader, TensorDataset

from critical.callbacks import AugmentationCutoff, RunDirectory
from critical.report.run_plot import run_figure
from critical.report.runs import load_run
from critical.summary import empty_summary, format_summary

matplotlib.use("Agg")


class UserData(TinyDataModule):
    def test_dataloader(self):
        return DataLoader(TensorDataset(self.x[:32], self.y[:32]), batch_size=16)


def _fit(tmp_path, cutoff, *, seed=3, epochs=3):
    L.seed_everything(seed, verbose=False)
    run = RunDirectory(root=tmp_path, name="mine", plot=False, print_summary=False)
    period = v02_period("val/loss", verbose=False)  # the default monitor: the validation loss
    trainer = tiny_trainer(tmp_path, max_epochs=epochs, callbacks=[period, cutoff, run])
    module, data = UserModule(), UserData(multiplicity=3)
    trainer.fit(module, data)
    trainer.test(module, datamodule=data, verbose=False)
    os.environ.pop("PL_GLOBAL_SEED", None)  # no seed for the tests that follow
    return run


@pytest.fixture(scope="module")
def fixed_run(tmp_path_factory):
    return _fit(tmp_path_factory.mktemp("fixed"), AugmentationCutoff("fixed", epoch=1))


def test_seed_and_class_names_are_recorded_without_tags(fixed_run):
    config = json.loads((fixed_run.path / "config.json").read_text())
    assert config["seed"] == 3 and not config["tags"]
    run = load_run(fixed_run.path)
    assert run.seed == 3
    assert (run.model, run.dataset) == ("UserModule", "UserData")
    assert "unknown" not in run.setting.label


def test_test_accuracy_after_the_fit_reaches_the_summary(fixed_run):
    s = json.loads((fixed_run.path / "summary.json").read_text())
    evaluations = json.loads((fixed_run.path / "evaluations.json").read_text())
    assert s["test_accuracy_key"] == "test_acc"
    assert s["test_acc"] == pytest.approx(evaluations[-1]["metrics"]["test_acc"])
    # what each split is: validation every epoch with its size, test after the fit
    assert s["splits"]["val"] == "the val dataloader's data (64 samples), evaluated every epoch"
    assert s["splits"]["test"] == (
        "the test dataloader's data (32 samples), evaluated after the fit (trainer.test)"
    )
    # the report reads it too
    assert load_run(fixed_run.path).final("test_acc") == s["test_acc"]


def test_a_fixed_cut_is_told_from_the_detectors_verdict(fixed_run):
    s = fixed_run.summary
    assert s["cut"]["policy"] == "fixed" and s["cut"]["cut_epoch"] == 1
    assert s["critical_period"]["decided_cut"] is False
    text = format_summary(s)
    assert "critical period: the cut was fixed at epoch 1; the detector only watched" in text
    assert "critical period: over" not in text
    assert "k=3 -> 1 from epoch 1 (a fixed cut)" in text


def test_fixed_cut_wording_when_the_detector_fired():
    s = empty_summary()
    s.update(
        epochs=40,
        cut={"cut_epoch": 15, "multiplicity_before": 3, "multiplicity_after": 1,
             "source": "cutoff", "policy": "fixed"},
        critical_period={"over": True, "epoch": 28, "reason": "stable", "decided_cut": False},
    )  # fmt: skip
    text = format_summary(s)
    assert "critical period: over at the end of epoch 28" not in text
    assert (
        "the cut was fixed at epoch 15; the detector only watched and would have called it "
        "over at the end of epoch 28 (stable)"
    ) in " ".join(text.split())
    s["cut"]["policy"] = "detector"
    s["critical_period"]["decided_cut"] = True
    assert "critical period: over at the end of epoch 28 (stable)" in format_summary(s)


def test_plot_shows_the_watched_val_loss_and_an_integer_k_axis(tmp_path):
    run = _fit(tmp_path, AugmentationCutoff("never"), epochs=2)
    fig = run_figure(load_run(run.path))
    panels = {ax.get_title(): ax for ax in fig.axes if ax.get_visible() and ax.get_title()}
    watched = panels["val_loss (watched by the detector)"]
    (line, *_) = watched.get_lines()
    assert list(line.get_xdata()) == [0, 1]
    k_axis = panels["multiplicity k"]
    assert list(k_axis.get_yticks()) == [3] and k_axis.get_ylim() == (2.5, 3.5)
