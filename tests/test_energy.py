"""EnergyTracker: real offline codecarbon, its failure path, phases and the counterfactual."""

from __future__ import annotations

import json
import sys
import warnings

import pytest
import torch
from helpers import TinyDataModule, TinyModule, tiny_trainer
from lightning.pytorch.callbacks import Callback, ModelCheckpoint

from critical.callbacks.energy import EnergyTracker

KEYS = (
    "duration_s",
    "samples",
    "energy_kwh",
    "co2_kg",
    "cost",
    "total_duration_s",
    "total_energy_kwh",
    "total_co2_kg",
    "total_cost",
)


class EmulatedCut(Callback):
    """Stands in for AugmentationCutoff: at the end of epoch `at`, k -> 1 from epoch at + 1."""

    def __init__(self, at: int) -> None:
        self.at = at
        self.cut_epoch = None
        self.multiplicity_before = None
        self.multiplicity_after = None

    def on_train_epoch_end(self, trainer, pl_module):
        if trainer.current_epoch == self.at:
            dm = trainer.datamodule
            self.multiplicity_before, dm.multiplicity = dm.multiplicity, 1
            self.multiplicity_after = 1
            trainer.reload_dataloaders_every_n_epochs = 1
            self.cut_epoch = self.at + 1


class MultiplicityOnlyCut(EmulatedCut):
    """Changes k without exposing `cut_epoch`: the tracker must infer the boundary."""

    def __init__(self, at: int) -> None:
        self.at = at

    def on_train_epoch_end(self, trainer, pl_module):
        if trainer.current_epoch == self.at:
            trainer.datamodule.multiplicity = 1
            trainer.reload_dataloaders_every_n_epochs = 1


def _energy_warnings(record) -> list[str]:
    return [str(w.message) for w in record if "EnergyTracker" in str(w.message)]


def test_codecarbon_offline_measures_positive_energy(tmp_path):
    tracker = EnergyTracker(price_per_kwh=0.2, currency="EUR", measure_power_secs=0.5)
    trainer = tiny_trainer(tmp_path, max_epochs=3, callbacks=[tracker])
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        trainer.fit(TinyModule(), TinyDataModule(n=64, multiplicity=2))
    assert _energy_warnings(record) == []
    assert tracker.missing is None and not tracker.measuring  # stopped at the end
    assert [h["epoch"] for h in tracker.history] == [0, 1, 2]
    for h in tracker.history:
        assert h["samples"] == 128 and h["multiplicity"] == 2 and h["phase"] == "before"
        assert h["duration_s"] > 0 and h["energy_kwh"] > 0 and h["co2_kg"] > 0
        assert h["cost"] == pytest.approx(0.2 * h["energy_kwh"])
    for key in KEYS:
        assert f"energy/{key}" in trainer.callback_metrics
    last = tracker.history[-1]
    assert trainer.callback_metrics["energy/energy_kwh"].item() == pytest.approx(
        last["energy_kwh"], rel=1e-5
    )
    total = sum(h["energy_kwh"] for h in tracker.history)
    assert trainer.callback_metrics["energy/total_energy_kwh"].item() == pytest.approx(
        total, rel=1e-5
    )
    s = tracker.summary()
    json.dumps(s, allow_nan=False)
    assert s["energy_measured"] and s["currency"] == "EUR" and s["country_iso_code"] == "USA"
    assert s["total"]["samples"] == 384 and s["total"]["energy_kwh"] == pytest.approx(total)
    assert s["cut"]["cut_epoch"] is None and s["phases"]["after"]["epochs"] == 0
    assert s["saving"] is None and s["fit_duration_s"] >= s["total"]["duration_s"]
    assert s["hardware"]["cpu_count"] >= 1


def test_codecarbon_failure_keeps_training_and_warns_once(tmp_path):
    # an invalid tracking mode makes codecarbon's constructor fail for real (codecarbon
    # swallows the error and returns a half-built tracker, whose methods then raise)
    tracker = EnergyTracker(codecarbon_kwargs={"tracking_mode": "not-a-mode"})
    trainer = tiny_trainer(tmp_path, max_epochs=2, callbacks=[tracker])
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        trainer.fit(TinyModule(), TinyDataModule(n=32))
    assert trainer.global_step == 4 and trainer.current_epoch == 2  # training went on
    msgs = _energy_warnings(record)
    assert len(msgs) == 1 and "not measured" in msgs[0] and "codecarbon" in msgs[0]
    assert tracker.missing is not None
    assert [h["samples"] for h in tracker.history] == [32, 32]
    assert all(
        h["duration_s"] > 0 and h["energy_kwh"] is None and h["cost"] is None
        for h in tracker.history
    )
    assert (
        "energy/duration_s" in trainer.callback_metrics
        and "energy/samples" in trainer.callback_metrics
    )
    assert "energy/energy_kwh" not in trainer.callback_metrics
    s = tracker.summary()
    json.dumps(s, allow_nan=False)
    assert (
        not s["energy_measured"]
        and s["total"]["energy_kwh"] is None
        and s["total"]["duration_s"] > 0
    )


def test_missing_codecarbon_keeps_training_and_warns_once(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "codecarbon", None)  # `import codecarbon` raises ImportError
    tracker = EnergyTracker()
    trainer = tiny_trainer(tmp_path, max_epochs=2, callbacks=[tracker])
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        trainer.fit(TinyModule(), TinyDataModule(n=32))
    msgs = _energy_warnings(record)
    assert len(msgs) == 1 and "imported" in msgs[0]
    assert len(tracker.history) == 2 and tracker.history[0]["energy_kwh"] is None


def _check_counterfactual(s, k_before=3):
    before, after = s["phases"]["before"], s["phases"]["after"]
    cf = s["counterfactual_after"]
    for q in ("duration_s", "energy_kwh", "co2_kg", "cost"):
        per = before[q] / before["samples"]
        assert s["per_sample_before"][q] == pytest.approx(per)
        assert cf[q] == pytest.approx(per * cf["samples"])
        assert s["saving"][q] == pytest.approx(cf[q] - after[q])
        assert s["saving_fraction"][q] == pytest.approx(s["saving"][q] / (before[q] + cf[q]))
    assert cf["samples"] == pytest.approx(after["samples"] * k_before)


def test_phase_split_and_counterfactual_with_a_cut(tmp_path):
    tracker = EnergyTracker()
    trainer = tiny_trainer(tmp_path, max_epochs=4, callbacks=[tracker, EmulatedCut(at=1)])
    trainer.fit(TinyModule(), TinyDataModule(n=64, multiplicity=3))
    assert [h["multiplicity"] for h in tracker.history] == [3, 3, 1, 1]
    assert [h["samples"] for h in tracker.history] == [192, 192, 64, 64]
    assert [h["phase"] for h in tracker.history] == ["before", "before", "after", "after"]
    s = tracker.summary()
    assert s["cut"] == {
        "cut_epoch": 2,
        "source": "cutoff",
        "multiplicity_before": 3,
        "multiplicity_after": 1,
    }
    assert s["phases"]["before"]["epochs"] == 2 and s["phases"]["before"]["samples"] == 384
    assert s["phases"]["after"]["epochs"] == 2 and s["phases"]["after"]["samples"] == 128
    assert s["phases"]["after"]["energy_kwh"] > 0
    assert s["total"]["energy_kwh"] == pytest.approx(
        s["phases"]["before"]["energy_kwh"] + s["phases"]["after"]["energy_kwh"]
    )
    _check_counterfactual(s)
    assert s["counterfactual_after"]["samples"] == 384
    m = tracker.summary_metrics()
    assert m["energy/saving_energy_kwh"] == pytest.approx(s["saving"]["energy_kwh"])
    assert m["energy/after_duration_s"] == pytest.approx(s["phases"]["after"]["duration_s"])


def test_phase_boundary_inferred_from_multiplicity(tmp_path):
    tracker = EnergyTracker(log_metrics=False)
    trainer = tiny_trainer(tmp_path, max_epochs=3, callbacks=[tracker, MultiplicityOnlyCut(at=0)])
    trainer.fit(TinyModule(), TinyDataModule(n=32, multiplicity=2))
    s = tracker.summary()
    assert s["cut"] == {
        "cut_epoch": 1,
        "source": "multiplicity",
        "multiplicity_before": 2,
        "multiplicity_after": 1,
    }
    assert [h["phase"] for h in tracker.history] == ["before", "after", "after"]
    _check_counterfactual(s, k_before=2)
    assert not any(k.startswith("energy/") for k in trainer.callback_metrics)  # log_metrics=False


def _entry(epoch, samples, k, seconds, kwh=None):
    return {
        "epoch": epoch,
        "multiplicity": k,
        "duration_s": seconds,
        "samples": samples,
        "energy_kwh": kwh,
        "co2_kg": None if kwh is None else kwh / 2,
        "cpu_energy_kwh": None,
        "gpu_energy_kwh": None,
        "ram_energy_kwh": None,
        "cost": None if kwh is None else kwh * 0.13,
    }


def test_counterfactual_estimate_rules():
    t = EnergyTracker()
    # partial last epoch at k=1 (30 samples): scaled by k_before / k = 3 -> 90 samples
    t.history = [
        _entry(0, 300, 3, 3.0, 0.3),
        _entry(1, 300, 3, 3.0, 0.3),
        _entry(2, 100, 1, 1.2, 0.1),
        _entry(3, 30, 1, 0.4, 0.03),
    ]
    t._cut = {"source": "cutoff", "cut_epoch": 2, "multiplicity_before": 3, "multiplicity_after": 1}
    s = t.summary()
    assert s["counterfactual_after"]["samples"] == pytest.approx(300 + 90)
    assert s["counterfactual_after"]["duration_s"] == pytest.approx(0.01 * 390)
    assert s["saving"]["duration_s"] == pytest.approx(3.9 - 1.6)
    assert s["saving"]["energy_kwh"] == pytest.approx(0.39 - 0.13)
    # an epoch length bounded whatever k (integer limit_train_batches): the cap gives no saving
    t.history = [_entry(0, 300, 3, 3.0, 0.3), _entry(1, 300, 1, 3.0, 0.3)]
    t._cut = {"source": "cutoff", "cut_epoch": 1, "multiplicity_before": 3, "multiplicity_after": 1}
    s = t.summary()
    assert s["counterfactual_after"]["samples"] == 300 and s["saving"][
        "duration_s"
    ] == pytest.approx(0)
    # cut not fired: everything is "before", no counterfactual; energy missing: None, time kept
    t.history = [_entry(0, 300, 3, 3.0), _entry(1, 300, 3, 3.0)]
    t._cut = {
        "source": "cutoff",
        "cut_epoch": None,
        "multiplicity_before": 3,
        "multiplicity_after": None,
    }
    s = t.summary()
    assert s["phases"]["before"]["epochs"] == 2 and s["saving"] is None
    assert s["per_sample_before"]["duration_s"] == pytest.approx(0.01)
    assert s["per_sample_before"]["energy_kwh"] is None and s["total"]["energy_kwh"] is None
    # cut at epoch 0: no "before" epochs to estimate from
    t.history = [_entry(0, 100, 1, 1.0, 0.1)]
    t._cut = {"source": "cutoff", "cut_epoch": 0, "multiplicity_before": 3, "multiplicity_after": 1}
    assert t.summary()["counterfactual_after"] is None
    json.dumps(t.summary(), allow_nan=False)


@pytest.mark.filterwarnings("ignore:Be aware that when using `ckpt_path`")
def test_state_dict_round_trip_and_resume_completes_the_checkpointed_epoch(tmp_path):
    tracker = EnergyTracker(name="a")
    ckpt = ModelCheckpoint(
        dirpath=tmp_path / "ckpt", filename="{epoch}", save_top_k=-1, save_on_train_epoch_end=False
    )  # i.e. at validation end
    trainer = tiny_trainer(
        tmp_path, max_epochs=2, callbacks=[tracker, ckpt], enable_checkpointing=True
    )
    trainer.fit(TinyModule(), TinyDataModule(n=32, multiplicity=2))
    assert [h["epoch"] for h in tracker.history] == [0, 1]

    fresh = EnergyTracker(name="a")
    fresh.load_state_dict(tracker.state_dict())
    assert fresh.history == tracker.history
    assert fresh.summary()["total"] == tracker.summary()["total"]

    # ModelCheckpoint saves at validation end, before the tracker closes the epoch: the
    # checkpoint carries epoch 1 as a partial epoch, which the resumed run completes
    state = torch.load(tmp_path / "ckpt" / "epoch=1.ckpt", weights_only=False)["callbacks"]
    assert tracker.state_key in state and state[tracker.state_key]["partial_epoch"]["epoch"] == 1
    resumed = EnergyTracker(name="a")
    other = EnergyTracker(name="b")  # a second instance with its own state key
    trainer = tiny_trainer(tmp_path, max_epochs=3, callbacks=[resumed, other])
    trainer.fit(
        TinyModule(),
        TinyDataModule(n=32, multiplicity=2),
        ckpt_path=tmp_path / "ckpt" / "epoch=1.ckpt",
    )
    assert [h["epoch"] for h in resumed.history] == [0, 1, 2]
    assert [h["samples"] for h in resumed.history] == [64, 64, 64]
    assert resumed.history[1]["energy_kwh"] > 0
    assert [h["epoch"] for h in other.history] == [2]


def test_argument_validation():
    with pytest.raises(ValueError, match="country_iso_code"):
        EnergyTracker(country_iso_code="us")
    with pytest.raises(ValueError, match=r"energy-mix table.*FRA"):
        EnergyTracker(country_iso_code="XYZ")
    with pytest.raises(ValueError, match="price_per_kwh"):
        EnergyTracker(price_per_kwh=-1)
    with pytest.raises(ValueError, match="measure_power_secs"):
        EnergyTracker(measure_power_secs=0)
    with pytest.raises(ValueError, match="log_level"):
        EnergyTracker(log_level="loud")
    with pytest.raises(ValueError, match="tracking_mode"):
        EnergyTracker(tracking_mode="node")
    assert "country_iso_code='FRA'" in repr(EnergyTracker(country_iso_code="FRA"))
