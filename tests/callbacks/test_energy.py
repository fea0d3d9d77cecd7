"""EnergyTracker: real offline codecarbon, its failure path, phases and the counterfactual."""

from __future__ import annotations

import json
import statistics
import sys
import warnings

import pytest
import torch
from helpers import TinyDataModule, TinyModule, tiny_trainer
from lightning.pytorch.callbacks import Callback, ModelCheckpoint

from critical.callbacks._flops import count_flops
from critical.callbacks.energy import EnergyTracker

# TinyNet on 3x8x8 images: conv 3->8 (3x3, 64 positions) and linear 8->4, 2 FLOPs per MAC.
# Forward: 2*(8*3*9)*64 + 2*8*4 = 27,712; backward: the conv's weight gradient (27,648; no input
# gradient) and the linear's weight and input gradients (64 each).
TINY_FORWARD = 27_712
TINY_TRAIN = 2 * 27_648 + 3 * 64

KEYS = (
    "duration_s",
    "samples",
    "flops",
    "total_flops",
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
    """EnergyTracker's warnings, less the one saying energy is estimated (expected here: no
    RAPL counters on these machines)."""
    return [
        str(w.message)
        for w in record
        if "EnergyTracker" in str(w.message) and "is estimated" not in str(w.message)
    ]


def _check_measurement(s, record):
    """energy.json's account of how energy was obtained is consistent, and said once."""
    m = s["measurement"]
    assert set(m) == {"cpu", "gpu", "ram"}
    tracked = {k: v for k, v in m.items() if v["method"] is not None}
    assert "cpu" in tracked and "ram" in tracked
    for v in m.values():
        assert isinstance(v["measured"], bool) and v["detail"]
    shares = [v["share"] for v in tracked.values()]
    assert sum(shares) == pytest.approx(1.0, abs=1e-6)
    assert s["energy_available"]
    assert s["energy_measured"] == all(v["measured"] for v in tracked.values())
    estimated = [k for k, v in tracked.items() if not v["measured"]]
    expected = "measured" if not estimated else "estimated"
    if estimated and len(estimated) < len(tracked):
        expected = "partly estimated"
    assert s["energy_method"] == expected
    said = [str(w.message) for w in record if "is estimated" in str(w.message)]
    assert len(said) == (1 if estimated else 0)
    for k in estimated:
        assert k.upper() in said[0] and k.upper() in s["energy_method_detail"]


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
        assert h["flops"] == 128 * TINY_TRAIN
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
    assert s["currency"] == "EUR" and s["country_iso_code"] == "USA"
    _check_measurement(s, record)
    assert s["total"]["samples"] == 384 and s["total"]["energy_kwh"] == pytest.approx(total)
    assert s["total"]["flops"] == 384 * TINY_TRAIN
    assert s["cut"]["cut_epoch"] is None and s["phases"]["after"]["epochs"] == 0
    assert s["saving"] is None and s["fit_duration_s"] >= s["total"]["duration_s"]
    assert s["theoretical_saving"] == 0.0 and s["max_epochs"] == 3  # no cut: nothing saved
    assert s["hardware"]["cpu_count"] >= 1
    assert s["model"] == {
        "params": sum(p.numel() for p in TinyModule().parameters()),
        "trainable_params": sum(p.numel() for p in TinyModule().parameters()),
        "flops_per_sample": {"train": TINY_TRAIN, "forward": TINY_FORWARD},
        "input_shape": [3, 8, 8],
        "flops_method": s["model"]["flops_method"],
    }
    assert "FlopCounterMode" in s["model"]["flops_method"]
    assert trainer.callback_metrics["energy/flops"].item() == pytest.approx(128 * TINY_TRAIN)


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
    assert not s["energy_available"] and not s["energy_measured"] and s["energy_method"] is None
    assert s["total"]["energy_kwh"] is None and s["total"]["duration_s"] > 0
    assert s["total"]["flops"] == 64 * TINY_TRAIN  # FLOPs do not need codecarbon


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


def _check_counterfactual(s, history, k_before=3):
    before, after = s["phases"]["before"], s["phases"]["after"]
    cf = s["counterfactual_after"]
    # the per-sample cost: median over the pre-cut epochs, the first (warm-up) left out if
    # another one exists
    before_epochs = [h for h in history if h["phase"] == "before"]
    used = before_epochs[1:] or before_epochs
    assert s["per_sample_epochs"] == [h["epoch"] for h in used]
    for q in ("duration_s", "energy_kwh", "co2_kg", "cost", "flops"):
        per = statistics.median(h[q] / h["samples"] for h in used)
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
    _check_counterfactual(s, tracker.history)
    assert s["counterfactual_after"]["samples"] == 384
    # 4 epochs, k 3 -> 1 from epoch 2: at most 1 - (3*2 + 2) / (3*4) of the compute is saved
    assert s["theoretical_saving"] == pytest.approx(1 / 3)
    assert s["saving_fraction"]["flops"] == pytest.approx(1 / 3)
    check = s["saving_check"]
    assert check["reference"] == "flops" and check["compute_fraction"] == pytest.approx(1 / 3)
    assert set(check["checks"]) == {"duration_s", "energy_kwh"} and check["message"]
    assert check["agrees"] == all(c["agrees"] for c in check["checks"].values())
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
    _check_counterfactual(s, tracker.history, k_before=2)
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
        "flops": 10.0 * samples,
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
    # a codecarbon keyword typo fails here, naming the closest valid key
    with pytest.raises(ValueError, match=r"unknown key 'gpu_id' \(did you mean 'gpu_ids'\?\)"):
        EnergyTracker(codecarbon_kwargs={"gpu_id": [0]})
    with pytest.raises(ValueError, match="force_cpu_power"):
        EnergyTracker(codecarbon_kwargs={"force_cpu_powr": 10})
    with pytest.raises(ValueError, match="output_dir"):
        EnergyTracker(output_dir=3)
    with pytest.raises(ValueError, match="log_metrics"):
        EnergyTracker(log_metrics="no")
    assert EnergyTracker(codecarbon_kwargs={"pue": 1.2}).codecarbon_kwargs == {"pue": 1.2}
    assert "country_iso_code='FRA'" in repr(EnergyTracker(country_iso_code="FRA"))


def test_flop_count_leaves_the_module_untouched():
    module = TinyModule()
    module.train()
    module.net.bn.eval()  # a submodule in its own mode: restored as it was
    for p in module.parameters():
        p.grad = None
    stats = (module.net.bn.running_mean.clone(), module.net.bn.num_batches_tracked.clone())
    weights = [p.detach().clone() for p in module.parameters()]
    x = torch.rand(7, 3, 8, 8)
    rng = torch.get_rng_state()
    train, forward = count_flops(module, x)
    assert (train, forward) == (TINY_TRAIN, TINY_FORWARD)
    assert module.training and module.net.conv.training and not module.net.bn.training
    assert all(p.grad is None for p in module.parameters())
    assert torch.equal(module.net.bn.running_mean, stats[0])
    assert torch.equal(module.net.bn.num_batches_tracked, stats[1])
    assert all(torch.equal(p, w) for p, w in zip(module.parameters(), weights))
    assert torch.equal(torch.get_rng_state(), rng)


class DictBatches(TinyModule):
    """Trains on dict batches, which FLOP counting cannot find a model input in."""

    def training_step(self, batch, batch_idx):
        return super().training_step((batch["x"], batch["y"]), batch_idx)


class DictData(TinyDataModule):
    def train_dataloader(self):
        rows = [{"x": x, "y": y} for x, y in zip(self.x, self.y)]
        return torch.utils.data.DataLoader(rows, batch_size=self.batch_size)


def test_an_uncountable_batch_warns_once_and_training_goes_on(tmp_path):
    tracker = EnergyTracker()
    trainer = tiny_trainer(tmp_path, max_epochs=2, callbacks=[tracker])
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        trainer.fit(DictBatches(), DictData(n=32))
    msgs = [m for m in _energy_warnings(record) if "FLOPs" in m]
    assert len(msgs) == 1 and "dict" in msgs[0]
    assert trainer.current_epoch == 2 and [h["samples"] for h in tracker.history] == [32, 32]
    assert all(h["flops"] is None for h in tracker.history)
    s = tracker.summary()
    assert s["model"] is None and s["total"]["flops"] is None and s["energy_available"]
    assert "energy/flops" not in trainer.callback_metrics


def test_an_output_dir_that_cannot_be_created_keeps_training_and_measuring(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a directory")
    tracker = EnergyTracker(output_dir=blocker / "emissions")
    trainer = tiny_trainer(tmp_path, max_epochs=2, callbacks=[tracker])
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        trainer.fit(TinyModule(), TinyDataModule(n=32))
    msgs = _energy_warnings(record)
    assert len(msgs) == 1 and "emissions.csv" in msgs[0] and "cannot be created" in msgs[0]
    assert trainer.current_epoch == 2 and tracker.missing is None
    assert all(h["energy_kwh"] > 0 for h in tracker.history)
    assert "cannot be created" in tracker.summary()["not_written"]["emissions.csv"]


def test_measurement_of_hardware_that_is_not_here():
    # No RAPL and no GPU on the test machines: stand-ins with the names and attributes of
    # codecarbon 3.x's hardware objects check how counters are told apart from models.
    from critical.callbacks._measurement import describe_measurement, summarize_measurement

    def obj(name, **attrs):
        return type(name, (), attrs)()

    nvidia = obj("NvidiaGPUDevice", _has_counter=True)
    tracker = obj(
        "OfflineEmissionsTracker",
        _conf={"gpu_model": "1 x NVIDIA H100", "ram_total_size": 64.0},
        _hardware=[
            obj("RAM", _force_ram_power=None, total_power=lambda self: obj("P", W=20.0)),
            obj("CPU", _mode="intel_rapl"),
            obj("GPU", devices=obj("AllGPUDevices", devices=[nvidia])),
        ],
    )
    m = describe_measurement(tracker)
    assert (m["cpu"]["method"], m["cpu"]["measured"]) == ("intel_rapl", True)
    assert (m["gpu"]["method"], m["gpu"]["measured"]) == ("nvml_energy_counter", True)
    assert "H100" in m["gpu"]["detail"]
    assert (m["ram"]["method"], m["ram"]["measured"]) == ("ram_model", False)
    assert "64.0 GB -> 20 W" in m["ram"]["detail"]
    total = {"energy_kwh": 1.0, "cpu_energy_kwh": 0.2, "gpu_energy_kwh": 0.7, "ram_energy_kwh": 0.1}
    s = summarize_measurement(m, total, available=True)
    assert s["energy_method"] == "partly estimated" and not s["energy_measured"]
    assert s["measurement"]["gpu"]["share"] == pytest.approx(0.7)
    nvidia._has_counter = False  # a GPU without an energy counter: power readings
    assert describe_measurement(tracker)["gpu"]["method"] == "nvml_power"
    # a tracker whose hardware cannot be read: unknown, never an exception
    assert describe_measurement(obj("Broken"))["cpu"]["method"] == "unknown"
    assert summarize_measurement(m, total, available=False)["energy_method"] is None
