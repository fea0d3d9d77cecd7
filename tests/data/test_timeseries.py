"""TimeSeriesDataModule on aeon's bundled data (offline): the multiplicity protocol, the splits,
the errors, and real Lightning fits (with the cut) through the API and the CLI."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest
import torch

pytest.importorskip("aeon")

from helpers import v02_period

from critical.callbacks import AugmentationCutoff, LayerRotation
from critical.cli import main
from critical.data import TimeSeriesDataModule, load_bundled
from critical.data.series_data import BUNDLED_DATASETS
from critical.task import ImageClassifier
from tests.helpers import tiny_trainer

ROOT = Path(__file__).resolve().parents[2]
TINY_NET = {"widths": [8, 16, 16]}


def test_basic_motions_official_splits_and_facts():
    train, test = load_bundled("BasicMotions")
    assert (len(train), len(test)) == (40, 40)
    assert tuple(train.values.shape[1:]) == (6, 100) and train.values.dtype == torch.float32
    assert train.classes == ["badminton", "running", "standing", "walking"]
    assert train.labels.bincount().tolist() == [10, 10, 10, 10]
    dm = TimeSeriesDataModule("BasicMotions", val_size=8, seed=0)
    assert (dm.num_classes, dm.in_chans, dm.series_length) == (4, 6, 100)
    assert len(dm.mean) == len(dm.std) == 6 and all(s > 0 for s in dm.std)
    dm.setup("fit")
    assert [len(dm._current()[k]) for k in ("train", "val", "test")] == [32, 8, 40]
    assert dm._current()["val"].labels.bincount().tolist() == [2, 2, 2, 2]  # stratified
    assert dm.has_test_split and "official TEST split (40 series)" in dm.split_names["test"]
    assert sum(len(b[1]) for b in dm.test_dataloader()) == 40


def test_japanese_vowels_is_bundled_with_more_samples():
    train, test = load_bundled("JapaneseVowels")
    assert (len(train), len(test)) == (270, 370)
    assert tuple(train.values.shape[1:]) == (12, 25) and train.num_classes == 9


def test_epoch_layout_shows_every_series_k_times_and_the_cut_shortens_the_epoch():
    dm = TimeSeriesDataModule("BasicMotions", batch_size=16, multiplicity=3)
    n = 40
    loader = dm.train_dataloader()
    assert len(loader) == math.ceil(3 * n / 16)
    xs = torch.cat([x for x, _ in loader])
    assert xs.shape == (3 * n, 6, 100)
    # each series appears exactly 3 times (augmented copies: find them by their labels count)
    assert torch.cat([y for _, y in loader]).bincount().tolist() == [30, 30, 30, 30]
    dm.multiplicity = 1
    assert len(dm.train_dataloader()) == math.ceil(n / 16)
    state = dm.state_dict()
    dm2 = TimeSeriesDataModule("BasicMotions", multiplicity=3)
    dm2.load_state_dict(state)
    assert dm2.multiplicity == 1


def test_batch_layout_holds_k_independently_augmented_views_per_series():
    dm = TimeSeriesDataModule("BasicMotions", batch_size=4, multiplicity=2, layout="batch", p=1.0)
    loader = dm.train_dataloader()
    assert len(loader) == 10  # steps per epoch do not change with k
    x, y = next(iter(loader))
    assert x.shape == (8, 6, 100)
    assert torch.equal(y[0::2], y[1::2])  # views of one series are consecutive
    assert not torch.allclose(x[0], x[1])  # ... and augmented independently
    dm.augment = False
    x, _ = next(iter(dm.train_dataloader()))
    assert torch.equal(x[0], x[1])


def test_bad_inputs_fail_before_training(monkeypatch):
    with pytest.raises(ValueError, match=r"bundled with aeon.*'BasicMotions', 'JapaneseVowels'"):
        TimeSeriesDataModule("Epilepsy")
    with pytest.raises(ValueError, match="did you mean 'JapaneseVowels'"):
        TimeSeriesDataModule("japanesevowels")
    with pytest.raises(ValueError, match="layout"):
        TimeSeriesDataModule("BasicMotions", layout="rows")
    with pytest.raises(ValueError, match="val_size"):
        TimeSeriesDataModule("BasicMotions", val_size=1.5)
    assert "BasicMotions" in BUNDLED_DATASETS
    monkeypatch.setitem(sys.modules, "aeon", None)  # as if the extra were not installed
    with pytest.raises(ImportError, match=r'pip install -e "\.\[timeseries\]"'):
        TimeSeriesDataModule("BasicMotions")


def test_fit_resnet1d_with_the_detector_cuts_k_and_is_measured_from_the_start(tmp_path):
    dm = TimeSeriesDataModule("BasicMotions", batch_size=16, multiplicity=3, val_size=8)
    model = ImageClassifier(
        "resnet1d",
        num_classes=dm.num_classes,
        in_chans=dm.in_chans,
        img_size=dm.series_length,
        mean=dm.mean,
        std=dm.std,
        model_kwargs=TINY_NET,
        optimizer="adamw",
        lr=0.01,
    )
    rotation = LayerRotation()
    cp = v02_period(
        monitor="layer_rotation",
        mode="absolute",
        threshold=1.0,
        patience=1,
        min_epochs=1,
        guard_learning=False,
    )
    cut = AugmentationCutoff()
    trainer = tiny_trainer(tmp_path, max_epochs=3, callbacks=[rotation, cp, cut])
    trainer.fit(model, dm)
    assert cut.cut_epoch == 2 and dm.multiplicity == 1  # fires after epoch 1
    assert len(rotation.history) == 3 and all(h["layer_rotation"] > 0 for h in rotation.history)
    results = trainer.test(model, dm, verbose=False)
    assert 0.0 <= results[0]["test/acc"] <= 1.0


def test_cli_runs_the_experiment_config_and_reports_the_test_split(tmp_path, capsys):
    cfg = ROOT / "experiments" / "basicmotions.yaml"
    main(
        [
            "fit",
            "--config",
            str(cfg),
            "--trainer.max_epochs=3",
            "--trainer.enable_progress_bar=false",
            "--trainer.enable_model_summary=false",
            f"--model.model_kwargs={json.dumps(TINY_NET)}",
            "--critical_period.monitor=layer_rotation",
            "--critical_period.window=1",
            "--critical_period.min_epochs=1",
            "--critical_period.patience=1",
            "--critical_period.threshold=1.0",
            "--critical_period.mode=absolute",
            "--critical_period.guard_learning=false",
            f"--run.root={tmp_path}",
            "--run.name=r",
        ]
    )
    out = capsys.readouterr().out
    run = tmp_path / "r"
    rows = json.loads((run / "metrics.json").read_text())
    assert [r["multiplicity"] for r in rows] == [3, 3, 1]
    rob = json.loads((run / "robustness.json").read_text())
    assert rob["data"] == "test" and rob["num_images"] == 40 and "fgsm_acc" not in rob
    assert "BasicMotions official TEST split (40 series)" in out
    cfg_json = json.loads((run / "config.json").read_text())
    hp = cfg_json["module"]["hparams"]
    assert (hp["in_chans"], hp["num_classes"], hp["img_size"]) == (6, 4, 100)  # linked
    assert len(hp["mean"]) == 6
