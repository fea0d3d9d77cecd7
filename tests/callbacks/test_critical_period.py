"""The guards read the schedule's shape; every decision explains itself; the user's accuracy
key is found (issue 18, items 3-5)."""

from __future__ import annotations

import json
import math

import lightning as L
import pytest
import torch
from helpers import TinyDataModule, TinyModule, tiny_trainer, v02_detector, v02_period
from torch import nn

from critical.callbacks import AugmentationCutoff, CriticalPeriod, LayerRotation, RunDirectory
from critical.detector import DEFAULTS, LRShape, StabilityDetector, explain, learning_pace, replay
from critical.runfiles import find_accuracy_key, read_rows


def _flags(epochs):
    """(rose, jumped) per epoch of a schedule given as lists of per-step learning rates."""
    shape, out = LRShape(), []
    for steps in epochs:
        shape.begin_epoch()
        for lr in steps:
            shape.observe(lr)
        out.append((shape.rose, shape.jumped))
    return out


def _per_epoch(f, epochs, steps=5):
    return [[f(e)] * steps for e in range(epochs)]


def _per_step(f, epochs, steps=20):
    return [[f(e * steps + i, epochs * steps) for i in range(steps)] for e in range(epochs)]


@pytest.mark.parametrize("epochs", [10, 15, 40, 100])
def test_smooth_anneals_never_jump(epochs):
    def cos(e):
        return 0.5 * (1 + math.cos(math.pi * e / epochs))

    for flags in (
        _flags(_per_epoch(cos, epochs)),  # cosine stepped per epoch, to zero
        _flags(_per_epoch(lambda e: 1 - e / epochs, epochs)),  # linear decay, to zero
        _flags(_per_step(lambda s, n: 0.5 * (1 + math.cos(math.pi * s / n)), epochs)),
    ):
        assert not any(j for _, j in flags)
        assert not any(r for r, _ in flags)


def test_onecycle_rises_then_anneals_without_jumps():
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=1.0, total_steps=200)
    epochs = []
    for _ in range(10):
        steps = []
        for _ in range(20):
            opt.step()
            sched.step()
            steps.append(opt.param_groups[0]["lr"])
        epochs.append(steps)
    flags = _flags(epochs)
    assert [r for r, _ in flags] == [True] * 3 + [False] * 7  # pct_start 0.3: 60 of 200 steps
    assert not any(j for _, j in flags)


@pytest.mark.parametrize("gamma", [0.1, 0.2, 0.5])
def test_step_drops_jump(gamma):
    flags = _flags(_per_epoch(lambda e: 1.0 * gamma ** (e >= 5) * gamma ** (e >= 8), 10))
    assert [j for _, j in flags] == [e in (5, 8) for e in range(10)]
    # with a linear warm-up first (the drop is still discontinuous)
    warm = _flags(_per_epoch(lambda e: min(1.0, (e + 1) / 3) * gamma ** (e >= 6), 10))
    assert [r for r, _ in warm] == [False, True, True] + [False] * 7
    assert [j for _, j in warm] == [e == 6 for e in range(10)]


def test_detector_lr_guard_uses_the_flags():
    det = StabilityDetector("m", mode="absolute", threshold=1.0, patience=1, min_epochs=0,
                            guard_learning=False, lr_cooldown=2)  # fmt: skip
    blocked = []
    for e, (rose, jump) in enumerate([(True, False), (False, False), (False, True), (False, False),
                                      (False, False)]):  # fmt: skip
        det.update(e, {"m": 0.0}, lr=1.0, lr_rose=rose, lr_jump=jump)
        blocked.append(det.history[-1]["blocked"])
        det.event = None  # keep feeding
    assert blocked == [["lr"], [], ["lr"], ["lr"], []]


def test_learning_pace():
    assert learning_pace([3.0, 2.0, 1.0], window=2) is None  # needs window + 2 epochs
    assert learning_pace([3.0, 2.0, 1.8, 1.6, 1.4], window=2) == pytest.approx(1.0)  # a line
    assert learning_pace([3.0, 2.0, 2.0, 2.0, 2.0], window=2) == 0.0  # no improvement


class PerStep(TinyModule):
    """A module of its own: SGD with a per-step schedule sized from estimated_stepping_batches."""

    def __init__(self, kind: str):
        super().__init__(lr=0.1)
        self.kind = kind

    def configure_optimizers(self):
        opt = torch.optim.SGD(self.parameters(), lr=self.lr, momentum=0.9)
        total = int(self.trainer.estimated_stepping_batches)
        if self.kind == "onecycle":
            sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=self.lr, total_steps=total)
            return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}
        if self.kind == "warmup_cosine":
            warm = total // 5

            def f(s):
                if s < warm:
                    return (s + 1) / warm
                return 0.5 * (1 + math.cos(math.pi * (s - warm) / (total - warm)))

            sched = torch.optim.lr_scheduler.LambdaLR(opt, f)
            return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}
        sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=[4, 7], gamma=0.1)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "epoch"}}


@pytest.mark.parametrize(
    "kind, objects",
    [
        # OneCycle: the first 30% of 10 epochs warm up; the anneal never blocks
        ("onecycle", [0, 1, 2]),
        ("warmup_cosine", [0, 1]),  # warm-up over the first 20%
        # the epoch scheduler drops at the end of epochs 3 and 6 (seen at their last batch):
        # blocked then and for lr_cooldown=2 epochs
        ("multistep", [3, 4, 6, 7]),
    ],
)
def test_lr_guard_verdicts_on_logged_runs(tmp_path, kind, objects):
    cp = CriticalPeriod("layer_rotation", guard_learning=False, verbose=False)
    run = RunDirectory(root=tmp_path, name="r", tensorboard=False, plot=False, print_summary=False)
    trainer = tiny_trainer(tmp_path, max_epochs=10, callbacks=[LayerRotation(), cp, run])
    trainer.fit(PerStep(kind), TinyDataModule(n=64, batch_size=16, multiplicity=1))
    rows = read_rows(tmp_path / "r")
    assert [r["epoch"] for r in rows if r["critical/guard/lr"]] == objects
    # replaying the logged rows gives the same verdicts as the live detector
    det = replay(rows, "layer_rotation", guard_learning=False, stop=False)
    assert [h["epoch"] for h in det.history if "lr" in h["blocked"]] == objects


def test_the_summary_and_cut_event_say_why(tmp_path):
    cp = v02_period("layer_rotation", verbose=False)  # the learning guard never lets go
    run = RunDirectory(root=tmp_path, name="r", tensorboard=False, plot=False, print_summary=False)
    trainer = tiny_trainer(
        tmp_path, max_epochs=4, callbacks=[LayerRotation(), cp, AugmentationCutoff(), run]
    )
    trainer.fit(TinyModule(), TinyDataModule(n=64, batch_size=16, multiplicity=3))
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    text = summary["critical_period"]["explanation"]
    assert text.startswith("not over after 4 epochs")
    assert "the learning guard objected in epochs 0-3" in text
    held = {h["by"]: h for h in summary["critical_period"]["held_back"]}
    assert held["learning"]["count"] == 4
    event = json.loads((tmp_path / "r" / "cut_event.json").read_text())
    assert event["fired"] is False and event["explanation"] == text
    rows = read_rows(tmp_path / "r")
    assert [r["critical/guard/learning"] for r in rows] == [1.0] * 4


def test_a_fired_detector_records_the_guards_at_the_cut():
    det = v02_detector("m", mode="absolute", threshold=0.05, patience=1, min_epochs=1,
                       loss_window=1, guard_lr=False)  # fmt: skip
    for e, v in enumerate([1.0, 0.5, 0.48, 0.47]):
        det.update(e, {"m": v}, loss=[3.0, 1.0, 0.5, 0.49][e], lr_rose=False, lr_jump=False)
    account = explain(det)
    assert account["over"] and account["epoch"] == 3
    assert account["at_fire"]["pace"] == pytest.approx(0.01 / 0.255)
    assert account["at_fire"]["blocked"] == [] and account["at_fire"]["changes"]["m"] < 0.05
    # the epochs before: the learning guard held it back in epochs 0-2
    assert {h["by"]: h["epochs"] for h in account["held_back"]}["learning"] == "0-2"


class OwnAccuracy(TinyModule):
    def validation_step(self, batch, batch_idx):
        x, y = batch
        self.log("val_acc", (self(x).argmax(-1) == y).float().mean())


def test_the_users_accuracy_key_is_found(tmp_path):
    run = RunDirectory(root=tmp_path, name="a", tensorboard=False, plot=False, print_summary=False)
    tiny_trainer(tmp_path, max_epochs=2, callbacks=[run]).fit(OwnAccuracy(), TinyDataModule())
    assert run.summary["accuracy_key"] == "val_acc"
    assert run.summary["val_acc"] is not None
    from critical.summary import format_summary

    assert "logged as `val_acc`" in format_summary(run.summary)
    run2 = RunDirectory(
        root=tmp_path, name="b", tensorboard=False, plot=False, print_summary=False,
        accuracy_key="train/loss",
    )  # fmt: skip
    tiny_trainer(tmp_path, max_epochs=1, callbacks=[run2]).fit(OwnAccuracy(), TinyDataModule())
    assert run2.summary["accuracy_key"] == "train/loss"
    assert find_accuracy_key(["val/accuracy", "val_acc"]) == "val_acc"


def test_report_finds_the_accuracy_key(tmp_path):
    from critical.report import load_runs, summarize

    for seed in (0, 1):
        run = RunDirectory(root=tmp_path, name=f"s{seed}", tensorboard=False, plot=False,
                           print_summary=False, tags={"seed": seed, "policy": "always"})  # fmt: skip
        L.seed_everything(seed)
        tiny_trainer(tmp_path, max_epochs=1, callbacks=[run]).fit(OwnAccuracy(), TinyDataModule())
    from critical.report import to_markdown

    summary = summarize(load_runs(tmp_path))
    assert summary.accuracy_key == "val_acc"
    assert "`val_acc`" in to_markdown(summary)  # the report names the key it compared
    assert all(v["acc"] is not None for g in summary.groups for v in g.values.values())


# ----------------------------------------------------------------- a validation-based rule's fallback
VAL_RULE = dict(monitor="val/acc", guard_learning=False, guard_lr=False,
                fallback={"monitor": "layer_rotation", "guard_learning": False, "guard_lr": False})  # fmt: skip


def test_fallback_when_the_fit_does_not_validate(tmp_path):
    from critical.detector import fallback_settings, reads_validation

    assert reads_validation(VAL_RULE) and fallback_settings(VAL_RULE)["monitor"] == "layer_rotation"
    cp = CriticalPeriod(**VAL_RULE, verbose=False)
    tiny_trainer(tmp_path, max_epochs=3, callbacks=[LayerRotation(), cp]).fit(
        TinyModule(), TinyDataModule()
    )
    assert cp.active == "primary" and cp.detector.metrics == ["val/acc"]
    assert cp.detector.history[-1]["values"]  # val/acc read every epoch
    for kwargs in ({"limit_val_batches": 0}, {"check_val_every_n_epoch": 2}):
        cp = CriticalPeriod(**VAL_RULE, verbose=False)
        tiny_trainer(tmp_path, max_epochs=3, callbacks=[LayerRotation(), cp], **kwargs).fit(
            TinyModule(), TinyDataModule()
        )
        assert cp.active == "fallback" and cp.detector.metrics == ["layer_rotation"]
        assert len(cp.detector.history) == 3
    # the fallback keeps the guards the user chose: without AugmentationGap, the default rule
    # with the training-loss guard runs its fallback (layer rotation) with that guard too
    cp = CriticalPeriod(learning_signal="train_loss", verbose=False)
    tiny_trainer(tmp_path, max_epochs=2, callbacks=[LayerRotation(), cp], limit_val_batches=0).fit(
        TinyModule(), TinyDataModule()
    )
    assert cp.active == "fallback" and cp.detector.metrics == ["layer_rotation"]
    assert cp.detector.learning_signal == "train_loss"
    assert cp.detector.thresholds == {"layer_rotation": 0.5}
    # a validation rule falls back to the library's data-agnostic rule unless told otherwise
    assert CriticalPeriod(monitor="val/acc").detector.fallback == DEFAULTS["fallback"]
    assert CriticalPeriod(monitor="val/acc", fallback=None).detector.fallback is None


class LogsValUnderscoreLoss(TinyModule):
    def validation_step(self, batch, batch_idx):
        x, y = batch
        self.log("val_loss", nn.functional.cross_entropy(self(x), y))


def test_the_default_monitor_reads_a_validation_loss_under_its_usual_names(tmp_path):
    """The shipped default watches the validation loss; a module logging `val_loss` (not
    `val/loss`) is read as well, live and in replay."""
    cp = CriticalPeriod(learning_signal="train_loss", verbose=False)
    run = RunDirectory(root=tmp_path, name="r", tensorboard=False, plot=False, print_summary=False)
    tiny_trainer(tmp_path, max_epochs=3, callbacks=[cp, run]).fit(
        LogsValUnderscoreLoss(), TinyDataModule()
    )
    assert cp.active == "primary" and cp.detector.metrics == ["val/loss"]
    values = [h["values"]["val/loss"] for h in cp.detector.history]
    assert len(values) == 3 and len(set(values)) == 3  # a fresh reading every epoch
    rows = read_rows(tmp_path / "r")
    det = replay(rows, learning_signal="train_loss", stop=False)
    assert [h["values"] for h in det.history] == [h["values"] for h in cp.detector.history]


def test_replay_uses_the_fallback_on_rows_without_validation():
    rows = [{"epoch": e, "critical/layer_rotation": 1 - 0.5**e} for e in range(8)]
    det = replay(rows, **VAL_RULE, mode="absolute", threshold=0.05, patience=1, min_epochs=1)
    assert det.metrics == ["layer_rotation"] and det.fired
    with_val = [{**r, "val/acc": 0.5} for r in rows]
    det = replay(with_val, **VAL_RULE, mode="absolute", threshold=0.05, patience=1, min_epochs=1)
    assert det.metrics == ["val/acc"]
