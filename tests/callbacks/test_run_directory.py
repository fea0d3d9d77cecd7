"""RunDirectory and the atomic writers of critical.io."""

from __future__ import annotations

import json
import os

import pytest
import torch
from helpers import TinyDataModule, TinyModule, make_images, read_csv, tiny_trainer, v02_period
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import TensorBoardLogger

from critical.callbacks.energy import EnergyTracker
from critical.callbacks.robustness import RobustnessEvaluator
from critical.callbacks.run_directory import RunDirectory
from critical.detector import CriticalPeriodEvent
from critical.io import atomic_write_bytes, atomic_write_csv, atomic_write_json
from critical.runfiles import read_json


class FakeCriticalPeriod(Callback):
    """Stands in for CriticalPeriod + AugmentationCutoff: fires at the end of epoch `at`."""

    def __init__(self, at: int) -> None:
        self.at = at
        self.event = None
        self.cut_epoch = None
        self.multiplicity_before = None
        self.multiplicity_after = None

    def on_train_epoch_end(self, trainer, pl_module):
        if trainer.current_epoch == self.at:
            self.event = CriticalPeriodEvent(
                epoch=self.at,
                reason="stable",
                metrics=("m",),
                values={"m": 0.5},
                changes={"m": 0.001},
            )
            dm = trainer.datamodule
            self.multiplicity_before, dm.multiplicity = dm.multiplicity, 1
            self.multiplicity_after = 1
            trainer.reload_dataloaders_every_n_epochs = 1
            self.cut_epoch = self.at + 1


class LateLogger(Callback):
    """Logs in its on_train_epoch_end, which runs after RunDirectory's (it comes later)."""

    def on_train_epoch_end(self, trainer, pl_module):
        pl_module.log("late/epoch_squared", float(trainer.current_epoch**2))


class Crash(Callback):
    def __init__(self, at: int) -> None:
        self.at = at

    def on_train_epoch_start(self, trainer, pl_module):
        if trainer.current_epoch == self.at:
            raise RuntimeError("boom")


def _listing(path):
    return {p.name: p.read_bytes() for p in sorted(path.iterdir()) if p.is_file()}


def test_run_directory_is_complete_after_a_fit(tmp_path):
    run = RunDirectory(root=tmp_path / "runs", name="exp1")
    assert run.path == tmp_path / "runs" / "exp1" and not run.path.exists()
    energy = EnergyTracker(output_dir="run_dir")  # codecarbon's emissions.csv into the run
    rob = RobustnessEvaluator(
        num_images=16, batch_size=16, pgd_steps=2, corruptions=["contrast"], severities=[1]
    )
    callbacks = [run, energy, rob, FakeCriticalPeriod(at=1), LateLogger()]
    trainer = tiny_trainer(tmp_path, max_epochs=4, callbacks=callbacks)
    trainer.fit(TinyModule(lr=0.05), TinyDataModule(n=32, multiplicity=2))

    names = {p.name for p in run.path.iterdir()}
    assert {
        "config.json",
        "metrics.csv",
        "metrics.json",
        "cut_event.json",
        "energy.json",
        "robustness.json",
        "hparams.yaml",
    } <= names
    assert any(n.startswith("events.out.tfevents") for n in names)
    assert "emissions.csv" in names
    assert "exception.txt" not in names and not any(n.endswith(".tmp") for n in names)

    rows = read_csv(run.path / "metrics.csv")
    assert [int(r["epoch"]) for r in rows] == [0, 1, 2, 3]
    assert [int(r["multiplicity"]) for r in rows] == [2, 2, 1, 1]
    assert [float(r["late/epoch_squared"]) for r in rows] == [0.0, 1.0, 4.0, 9.0]
    assert all(
        r["val/acc"] != "" and r["train/loss"] != "" and float(r["energy/energy_kwh"]) > 0
        for r in rows
    )
    assert list(rows[0])[:2] == ["epoch", "multiplicity"]
    rows_json = read_json(run.path / "metrics.json")
    assert [r["epoch"] for r in rows_json] == [0, 1, 2, 3] and rows_json == run.rows

    cut = read_json(run.path / "cut_event.json")
    assert cut["fired"] and cut["cut_epoch"] == 2 and cut["multiplicity_before"] == 2
    assert cut["event"]["epoch"] == 1 and cut["event"]["reason"] == "stable"

    e = read_json(run.path / "energy.json")
    assert (
        e["cut"]["cut_epoch"] == 2
        and len(e["history"]) == 4
        and e["saving"]["duration_s"] is not None
    )
    r = read_json(run.path / "robustness.json")
    assert r == json.loads(json.dumps(rob.results)) and r["num_images"] == 16

    cfg = read_json(run.path / "config.json")
    assert cfg["name"] == "exp1" and cfg["trainer"]["max_epochs"] == 4
    assert cfg["trainer"]["precision"] == "32-true" and cfg["trainer"]["devices"] == 1
    assert cfg["module"]["class"].endswith("TinyModule") and cfg["datamodule"]["multiplicity"] == 2
    by_class = {c["class"].rsplit(".", 1)[-1]: c["init_args"] for c in cfg["callbacks"]}
    assert by_class["EnergyTracker"]["country_iso_code"] == "USA"  # settings, not a repr
    assert by_class["EnergyTracker"]["output_dir"] == "run_dir"
    assert by_class["RobustnessEvaluator"]["num_images"] == 16
    assert {"torch", "lightning", "critical", "python"} <= set(cfg["versions"])
    assert cfg["loggers"][0]["class"] == "TensorBoardLogger"
    assert os.path.samefile(cfg["loggers"][0]["log_dir"], run.path)


def test_an_existing_run_is_never_overwritten(tmp_path):
    root = tmp_path / "runs"
    first = RunDirectory(root=root, name="same")
    twin = RunDirectory(root=root, name="same")  # constructed before the first run exists
    tiny_trainer(tmp_path, max_epochs=1, callbacks=[first]).fit(TinyModule(), TinyDataModule(n=16))
    before = _listing(first.path)
    with pytest.raises(FileExistsError, match="already exists"):
        RunDirectory(root=root, name="same")
    with pytest.raises(FileExistsError, match="already exists"):
        tiny_trainer(tmp_path, max_epochs=1, callbacks=[twin]).fit(
            TinyModule(), TinyDataModule(n=16)
        )
    assert _listing(first.path) == before
    # automatic names are fresh
    a, b = RunDirectory(root=root), RunDirectory(root=root, tensorboard=False)
    for run in (a, b):
        tiny_trainer(tmp_path, max_epochs=1, callbacks=[run]).fit(
            TinyModule(), TinyDataModule(n=16)
        )
    assert a.path != b.path and a.path.parent == root == b.path.parent
    assert (a.path / "metrics.csv").is_file() and not list(b.path.glob("events.out.tfevents*"))
    assert _listing(first.path) == before


def test_a_crashed_fit_leaves_the_completed_epochs(tmp_path):
    run = RunDirectory(root=tmp_path, name="crashed")
    energy = EnergyTracker()
    trainer = tiny_trainer(tmp_path, max_epochs=5, callbacks=[run, energy, Crash(at=2)])
    with pytest.raises(RuntimeError, match="boom"):
        trainer.fit(TinyModule(), TinyDataModule(n=16))
    rows = read_csv(run.path / "metrics.csv")
    assert [int(r["epoch"]) for r in rows] == [0, 1]
    assert [r["epoch"] for r in read_json(run.path / "metrics.json")] == [0, 1]
    assert "RuntimeError: boom" in (run.path / "exception.txt").read_text()
    assert len(read_json(run.path / "energy.json")["history"]) == 2
    assert read_json(run.path / "cut_event.json") == {"fired": False}
    assert (run.path / "config.json").is_file()
    assert not energy.measuring  # codecarbon stopped


def test_own_tensorboard_logger_is_kept_and_state_round_trips(tmp_path):
    logger = TensorBoardLogger(save_dir=tmp_path / "tb", name="mine")
    run = RunDirectory(root=tmp_path / "runs", name="r")
    trainer = tiny_trainer(tmp_path, max_epochs=2, callbacks=[run], logger=logger)
    trainer.fit(TinyModule(), TinyDataModule(n=16))
    assert trainer.loggers == [logger]
    assert not list(run.path.glob("events.out.tfevents*"))
    assert read_json(run.path / "config.json")["loggers"][0]["log_dir"] == logger.log_dir
    state = run.state_dict()
    resumed = RunDirectory(root=tmp_path / "runs", name="r2")
    resumed.load_state_dict(state)
    assert resumed.rows == run.rows and resumed.resumed_from == str(run.path)


def test_argument_validation(tmp_path):
    with pytest.raises(ValueError, match="name"):
        RunDirectory(root=tmp_path, name="../escape")
    with pytest.raises(ValueError, match="name"):
        RunDirectory(root=tmp_path, name=".hidden")
    with pytest.raises(ValueError, match="tensorboard"):
        RunDirectory(root=tmp_path, tensorboard="yes")


# ---------------------------------------------------------------------------------- critical.io


def test_atomic_writers(tmp_path):
    atomic_write_json(
        tmp_path / "a.json", {"x": 1.5, "nan": float("nan"), "p": tmp_path, "t": (1, 2)}
    )
    assert read_json(tmp_path / "a.json") == {
        "x": 1.5,
        "nan": None,
        "p": str(tmp_path),
        "t": [1, 2],
    }
    atomic_write_csv(tmp_path / "m.csv", [{"epoch": 0, "a": 0.1}, {"epoch": 1, "b": None, "c": 2}])
    assert read_csv(tmp_path / "m.csv") == [
        {"epoch": "0", "a": "0.1", "b": "", "c": ""},
        {"epoch": "1", "a": "", "b": "", "c": "2"},
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json", "m.csv"]


def test_a_failed_write_keeps_the_old_file_and_no_temp_file(tmp_path, monkeypatch):
    target = tmp_path / "f.json"
    atomic_write_json(target, {"v": 1})

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        atomic_write_bytes(target, b'{"v": 2}')
    monkeypatch.undo()
    assert read_json(target) == {"v": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["f.json"]


def test_rows_do_not_repeat_stale_validation_values(tmp_path):
    run = RunDirectory(root=tmp_path, name="r", tensorboard=False)
    trainer = tiny_trainer(tmp_path, max_epochs=4, callbacks=[run], check_val_every_n_epoch=2)
    trainer.fit(TinyModule(), TinyDataModule())
    assert [("val/acc" in r) for r in run.rows] == [False, True, False, True]
    assert all("train/loss" in r for r in run.rows)


def test_a_checkpoint_at_validation_end_warns_and_one_at_epoch_end_holds_the_row(tmp_path):
    from lightning.pytorch.callbacks import ModelCheckpoint

    def fit(name, **ckpt):
        run = RunDirectory(root=tmp_path, name=name, tensorboard=False)
        mc = ModelCheckpoint(
            dirpath=tmp_path / f"{name}-ckpt",
            filename="{epoch}",
            save_top_k=-1,
            every_n_epochs=1,
            **ckpt,
        )
        trainer = tiny_trainer(
            tmp_path,
            max_epochs=2,
            callbacks=[run, mc],
            check_val_every_n_epoch=2,
            enable_checkpointing=True,
        )
        trainer.fit(TinyModule(), TinyDataModule())
        return torch.load(tmp_path / f"{name}-ckpt" / "epoch=1.ckpt", weights_only=False)

    with pytest.warns(UserWarning, match="save_on_train_epoch_end"):
        early = fit("early")
    late = fit("late", save_on_train_epoch_end=True)

    def rows(ckpt):
        return next(v["rows"] for k, v in ckpt["callbacks"].items() if k.startswith("RunDirectory"))

    assert [r["epoch"] for r in rows(early)] == [0]
    assert [r["epoch"] for r in rows(late)] == [0, 1] and "val/acc" in rows(late)[1]


# ------------------------------------------------------------------ what an epoch logged (#11.3)


class Sometimes(Callback):
    """Logs `sometimes/x` only in the epochs listed (like gradient metrics that stop after a
    divergence), and `always/k` with the same value every epoch."""

    def __init__(self, epochs) -> None:
        self.epochs = set(epochs)

    def on_train_epoch_end(self, trainer, pl_module):
        if trainer.current_epoch in self.epochs:
            pl_module.log("sometimes/x", float(trainer.current_epoch + 1))
        pl_module.log("always/k", 3.0)


class CodecarbonFailsAt(Callback):
    """Makes the energy tracker's codecarbon session fail for real from epoch `at` on: its
    `stop_task` raises, which EnergyTracker must survive (energy is then not measured)."""

    def __init__(self, tracker, at: int) -> None:
        self.tracker, self.at = tracker, at

    def on_train_epoch_start(self, trainer, pl_module):
        session = self.tracker._meter.session
        if trainer.current_epoch == self.at and session is not None:

            def broken():
                raise RuntimeError("codecarbon broke")

            session._tracker.stop_task = broken


def test_an_epoch_without_a_value_is_empty_not_the_previous_value(tmp_path):
    run = RunDirectory(root=tmp_path, name="r", tensorboard=False, plot=False)
    energy = EnergyTracker()
    callbacks = [run, energy, Sometimes(epochs=[0, 1]), CodecarbonFailsAt(energy, at=2)]
    trainer = tiny_trainer(tmp_path, max_epochs=4, callbacks=callbacks)
    with pytest.warns(UserWarning, match="codecarbon broke"):
        trainer.fit(TinyModule(), TinyDataModule(n=16))
    rows = read_csv(run.path / "metrics.csv")
    assert [r["sometimes/x"] for r in rows] == ["1.0", "2.0", "", ""]
    assert [r["always/k"] for r in rows] == ["3.0"] * 4  # the same value, logged every epoch
    assert [r["energy/energy_kwh"] != "" for r in rows] == [True, True, False, False]
    assert all(r["energy/duration_s"] != "" for r in rows)  # time is still measured
    as_json = read_json(run.path / "metrics.json")
    assert ["sometimes/x" in r for r in as_json] == [True, True, False, False]
    assert ["energy/energy_kwh" in r for r in as_json] == [True, True, False, False]


# ------------------------------------------------------------------ an unwritable run (#11.5)


class RemoveRunDirectory(Callback):
    """At the end of epoch `at`, the run directory disappears and a file takes its place, so
    every later write into it fails (whatever the user's privileges)."""

    def __init__(self, run, at: int) -> None:
        self.run, self.at = run, at

    def on_train_epoch_end(self, trainer, pl_module):
        if trainer.current_epoch == self.at:
            self.run.path.rename(self.run.path.with_name("moved"))
            self.run.path.write_text("not a directory")


def test_an_unwritable_run_directory_warns_keeps_training_and_says_what_was_lost(tmp_path, capsys):
    run = RunDirectory(root=tmp_path, name="r", tensorboard=False)
    callbacks = [run, EnergyTracker(), RemoveRunDirectory(run, at=1)]
    trainer = tiny_trainer(tmp_path, max_epochs=4, callbacks=callbacks)
    with pytest.warns(UserWarning, match="could not write") as record:
        trainer.fit(TinyModule(), TinyDataModule(n=16))
    assert trainer.current_epoch == 4  # training went on
    lost = [str(w.message) for w in record if "could not write" in str(w.message)]
    assert len(lost) == len(set(lost))  # one warning per file
    assert {"metrics.csv", "metrics.json", "energy.json", "summary.json"} <= set(run.not_written)
    assert [r["epoch"] for r in run.rows] == [0, 1, 2, 3]  # kept in memory
    out = capsys.readouterr().out
    assert "not written: metrics.csv" in out and "not written: summary.json" in out
    # what was written before the directory went away is intact
    moved = tmp_path / "moved"
    assert [r["epoch"] for r in read_json(moved / "metrics.json")] == [0]


# ------------------------------------------------------------------ the summary (#14.2)


def test_a_users_trainer_gets_a_printed_summary_summary_json_and_plot(tmp_path, capsys):
    from critical.runfiles import run_status

    run = RunDirectory(root=tmp_path, name="r", tensorboard=False)
    energy = EnergyTracker()
    callbacks = [run, energy, FakeCriticalPeriod(at=0)]
    trainer = tiny_trainer(tmp_path, max_epochs=3, callbacks=callbacks)
    trainer.fit(TinyModule(), TinyDataModule(n=32, multiplicity=3))
    out = capsys.readouterr().out
    assert "critical: run summary" in out and str(run.path) in out
    assert "multiplicity: k=3 -> 1 from epoch 1" in out
    assert "energy" in out and ("estimated" in out or "measured" in out)
    s = read_json(run.path / "summary.json")
    assert s == run.summary
    assert s["cut"]["cut_epoch"] == 1 and s["saved"] is True
    assert s["theoretical_saving"] == pytest.approx(1 - (3 + 2) / 9)
    assert s["flops_saving"] == pytest.approx(s["theoretical_saving"])
    assert s["saving_fraction"]["energy_kwh"] is not None and s["saving_check"]["message"]
    assert s["energy_available"] and s["energy_method"] in (
        "measured",
        "partly estimated",
        "estimated",
    )
    assert s["model"]["flops_per_sample"]["train"] > 0
    assert (run.path / "plot.png").is_file() and s["plot"] == str(run.path / "plot.png")
    assert run_status(run.path).complete


class CutAtTheEnd(FakeCriticalPeriod):
    """Fires at the end of the last epoch, as the README's defaults did: nothing is saved."""


def test_the_summary_says_plainly_when_nothing_was_saved(tmp_path, capsys):
    run = RunDirectory(root=tmp_path, name="late", tensorboard=False, plot=False)
    trainer = tiny_trainer(tmp_path, max_epochs=3, callbacks=[run, CutAtTheEnd(at=2)])
    trainer.fit(TinyModule(), TinyDataModule(n=16, multiplicity=3))
    s = run.summary
    assert s["cut"]["cut_epoch"] == 3 and s["saved"] is False and s["theoretical_saving"] == 0.0
    assert "nothing saved: the cut was decided at the end of the last epoch (2)" in s["saving_note"]
    assert "nothing saved" in capsys.readouterr().out
    # no cut at all
    run = RunDirectory(root=tmp_path, name="never", tensorboard=False, plot=False)
    trainer = tiny_trainer(tmp_path, max_epochs=2, callbacks=[run, FakeCriticalPeriod(at=99)])
    trainer.fit(TinyModule(), TinyDataModule(n=16, multiplicity=3))
    assert run.summary["saved"] is False and "k was never cut" in run.summary["saving_note"]


def test_an_early_stopped_run_with_a_summary_is_finished(tmp_path):
    from lightning.pytorch.callbacks import EarlyStopping

    from critical.runfiles import run_status

    run = RunDirectory(root=tmp_path, name="r", tensorboard=False, plot=False, print_summary=False)
    stop = EarlyStopping(monitor="train/loss", patience=0, stopping_threshold=10.0)
    trainer = tiny_trainer(tmp_path, max_epochs=5, callbacks=[run, stop])
    trainer.fit(TinyModule(), TinyDataModule(n=16))
    assert len(run.rows) < 5 and (run.path / "summary.json").is_file()
    assert run_status(run.path).complete
    (run.path / "summary.json").unlink()  # without it: fewer epochs than max_epochs
    assert run_status(run.path).status == "incomplete"


# ------------------------------------------------------------------ TensorBoard by epoch (#14.5)


def test_tensorboard_has_the_epoch_metrics_against_the_epoch(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    def fit(name, k):
        run = RunDirectory(root=tmp_path, name=name, plot=False, print_summary=False)
        trainer = tiny_trainer(tmp_path, max_epochs=3, callbacks=[run, EnergyTracker()])
        trainer.fit(TinyModule(), TinyDataModule(n=32, multiplicity=k))
        acc = EventAccumulator(str(run.path))
        acc.Reload()
        return acc

    for k in (1, 3):  # different k: different global steps, the same epochs
        acc = fit(f"k{k}", k)
        tags = acc.Tags()["scalars"]
        assert "by_epoch/train/loss" in tags and "by_epoch/energy/duration_s" in tags
        assert [e.step for e in acc.Scalars("by_epoch/train/loss")] == [0, 1, 2]
        assert [e.step for e in acc.Scalars("by_epoch/multiplicity")] == [0, 1, 2]
        assert [e.value for e in acc.Scalars("by_epoch/multiplicity")] == [k, k, k]
        assert [e.step for e in acc.Scalars("by_samples/train/loss")] == [
            32 * k * e for e in (1, 2, 3)
        ]


def test_config_records_settings_never_object_reprs(tmp_path):
    from torch.utils.data import DataLoader, TensorDataset

    from critical.callbacks import AugmentationCutoff, LayerRotation
    from critical.data import MultiplicityDataModule

    x, y = make_images(32)
    cp = v02_period("layer_rotation")
    callbacks = [
        RunDirectory(root=tmp_path, name="r", tensorboard=False, plot=False, print_summary=False),
        RobustnessEvaluator(when="never", dataloader=DataLoader(TensorDataset(x, y))),
        LayerRotation(),
        cp,
        AugmentationCutoff("never", critical_period=cp),
    ]
    dm = MultiplicityDataModule(TensorDataset(x, y), multiplicity=2, batch_size=8)
    tiny_trainer(tmp_path, max_epochs=1, callbacks=callbacks).fit(TinyModule(), dm)
    text = (tmp_path / "r" / "config.json").read_text()
    assert " at 0x" not in text  # no repr with a memory address
    cfg = json.loads(text)
    by_class = {c["class"].rsplit(".", 1)[-1]: c["init_args"] for c in cfg["callbacks"]}
    assert by_class["RobustnessEvaluator"]["dataloader"] == {
        "class": "torch.utils.data.dataloader.DataLoader"
    }
    assert by_class["AugmentationCutoff"]["critical_period"] == {
        "class": "critical.callbacks.critical_period.CriticalPeriod"
    }
    assert (
        by_class["CriticalPeriod"]["monitor"] == ["layer_rotation"]
        or by_class["CriticalPeriod"]["monitor"] == "layer_rotation"
    )
    hp = cfg["datamodule"]["hparams"]
    assert hp["multiplicity"] == 2 and hp["batch_size"] == 8 and "train_dataset" not in hp
