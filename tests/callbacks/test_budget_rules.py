"""Budget-aware rules (issue 26): the learning-rate mass still to come and a floor on it, and
Fukase et al.'s slope against epoch / budget, live and replayed."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from helpers import TinyDataModule, TinyModule, tiny_trainer

from critical.callbacks import AugmentationCutoff, CriticalPeriod, LayerRotation
from critical.callbacks._lr_plan import lr_mass_left
from critical.detector import FUKASE_RULE, StabilityDetector, replay

OFF = dict(guard_learning=False, guard_lr=False, window=1, patience=1, fallback=None)


def test_floor_fires_once_little_lr_mass_is_left():
    det = StabilityDetector(["m"], threshold=1e-9, min_epochs=2, floor=0.3, **OFF)
    left = [0.9, 0.7, 0.5, 0.3, 0.1]
    events = [det.update(e, {"m": float(e)}, lr_mass_left=v) for e, v in enumerate(left)]
    assert [ev is not None for ev in events] == [False, False, False, True, False]
    assert det.event.epoch == 3 and det.event.reason == "floor"
    assert det.history[3]["lr_mass_left"] == 0.3


def test_floor_waits_for_min_epochs_and_never_cuts_a_diverged_run():
    det = StabilityDetector(["m"], threshold=1e-9, min_epochs=3, floor=0.5, **OFF)
    for e in range(3):
        det.update(e, {"m": float(e)}, lr_mass_left=0.1)
    assert det.event.epoch == 2  # the first epoch with 3 completed
    det = StabilityDetector(["m"], threshold=1e-9, min_epochs=0, floor=0.5, **OFF)
    det.update(0, {"m": 0.0}, loss=float("nan"), lr_mass_left=0.4)
    det.update(1, {"m": 1.0}, lr_mass_left=0.1)
    assert det.diverged is not None and not det.fired


def test_budget_slope_is_fukases_regression():
    values = [0.1, 0.3, 0.45, 0.55, 0.6, 0.63, 0.65]
    epochs = 20
    settings = {k: v for k, v in FUKASE_RULE.items() if k != "monitor"}
    det = StabilityDetector(["layer_rotation"], **settings)
    det.budget = epochs
    for e, v in enumerate(values):
        det.update(e, {"layer_rotation": v}, loss=1.0)
        if e >= 4:  # their code: a line through the last 5 values against e / (E - 1)
            x = np.arange(e - 4, e + 1) / (epochs - 1)
            slope = np.polyfit(x, values[e - 4 : e + 1], 1)[0]
            assert det.history[-1]["changes"]["layer_rotation"] == pytest.approx(slope)
    slopes = [round(h["changes"]["layer_rotation"], 2) for h in det.history[4:]]
    assert slopes == [2.38, 1.54, 0.91] and det.event.epoch == 6  # below 1 (45 degrees)
    # per unit of budget the same curve is steeper in a longer fit and flatter in a shorter one
    for budget, fired in ((200, None), (8, 4)):
        det = StabilityDetector(["layer_rotation"], **settings)
        det.budget = budget
        for e, v in enumerate(values):
            det.update(e, {"layer_rotation": v}, loss=1.0)
        assert (det.event.epoch if det.fired else None) == fired


def test_budget_mode_needs_the_budget():
    det = StabilityDetector(
        ["m"], mode="budget", window=2, **{k: v for k, v in OFF.items() if k != "window"}
    )
    det.update(0, {"m": 0.0})
    with pytest.raises(ValueError, match="budget"):
        det.update(1, {"m": 1.0})


def _trainer(opt, configs, epochs=4, steps=8):
    return SimpleNamespace(
        max_epochs=epochs,
        optimizers=[opt],
        lr_scheduler_configs=configs,
        estimated_stepping_batches=steps,
    )


def _config(sched, interval, frequency=1):
    return SimpleNamespace(
        scheduler=sched, interval=interval, frequency=frequency, reduce_on_plateau=False
    )


def test_lr_mass_left_plays_a_per_step_onecycle_forward_without_touching_it():
    params = [torch.zeros(3, requires_grad=True)]
    opt = torch.optim.SGD(params, lr=0.1, momentum=0.9)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.5, total_steps=40)
    # the reference: an identical schedule stepped for real, 10 steps per epoch
    ref_opt = torch.optim.SGD([torch.zeros(3, requires_grad=True)], lr=0.1, momentum=0.9)
    ref = torch.optim.lr_scheduler.OneCycleLR(ref_opt, max_lr=0.5, total_steps=40)
    rates = []
    for _ in range(40):
        rates.append(ref_opt.param_groups[0]["lr"])
        ref_opt.step()
        ref.step()
    per_epoch = [sum(rates[i * 10 : (i + 1) * 10]) for i in range(4)]
    expected = [sum(per_epoch[i + 1 :]) / sum(per_epoch) for i in range(4)]
    left, how = lr_mass_left(_trainer(opt, [_config(sched, "step")], epochs=4, steps=40))
    assert left == pytest.approx(expected) and "per step" in how
    assert sched.last_epoch == 0 and opt.param_groups[0]["lr"] == pytest.approx(rates[0])


def test_lr_mass_left_without_a_scheduler_or_with_a_plateau_is_the_epochs_left():
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
    left, how = lr_mass_left(_trainer(opt, []))
    assert left == [0.75, 0.5, 0.25, 0.0] and "constant" in how
    plateau = SimpleNamespace(
        scheduler=torch.optim.lr_scheduler.ReduceLROnPlateau(opt),
        interval="epoch",
        frequency=1,
        reduce_on_plateau=True,
    )
    left, how = lr_mass_left(_trainer(opt, [plateau]))
    assert left == [0.75, 0.5, 0.25, 0.0] and "ReduceLROnPlateau" in how


class Cosine(TinyModule):
    """Per-step cosine annealing sized from the fit's steps."""

    def configure_optimizers(self):
        opt = torch.optim.SGD(self.parameters(), lr=0.1, momentum=0.9)
        steps = int(self.trainer.estimated_stepping_batches)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


def test_a_floor_cuts_live_and_replays_to_the_same_epoch(tmp_path):
    from critical.callbacks import RunDirectory
    from critical.runfiles import read_rows

    # the detector's own rule cannot fire here (an unreachable threshold): only the floor can
    cp = CriticalPeriod(monitor="layer_rotation", threshold=1e-9, floor=0.25, guard_learning=False)
    cut = AugmentationCutoff()
    run = RunDirectory(root=str(tmp_path / "runs"), print_summary=False)
    data = TinyDataModule(n=64, batch_size=16, multiplicity=3)
    trainer = tiny_trainer(tmp_path, max_epochs=8, callbacks=[cp, cut, run], limit_val_batches=0)
    trainer.fit(Cosine(), data)
    # a per-step cosine over 8 epochs of 12 steps leaves 0.335, 0.185, 0.083 of its mass after
    # epochs 2, 3, 4 (summed by hand): the first share <= 0.25 is after epoch 3
    assert cp.fired and cp.event.reason == "floor" and cp.event.epoch == 3
    assert cut.cut_epoch == 4 and data.multiplicity == 1
    rows = read_rows(run.path)
    assert [round(r["critical/lr_mass_left"], 3) for r in rows][2:5] == [0.335, 0.185, 0.083]
    det = replay(rows, "layer_rotation", threshold=1e-9, floor=0.25, guard_learning=False)
    assert det.event.epoch == 3 and det.event.reason == "floor"
    # replayed from the logged rates alone (a run that did not log the share)
    bare = [{k: v for k, v in r.items() if k != "critical/lr_mass_left"} for r in rows]
    det = replay(bare, "layer_rotation", threshold=1e-9, floor=0.25, guard_learning=False)
    assert det.event.epoch == 3
    assert "lr_mass_left" in cp.state_dict() and len(cp.state_dict()["lr_mass_left"]) == 8


def test_fukases_rule_runs_live_with_the_fits_budget(tmp_path):
    cp = CriticalPeriod(**FUKASE_RULE)
    trainer = tiny_trainer(tmp_path, max_epochs=6, callbacks=[LayerRotation(), cp])
    trainer.fit(TinyModule(), TinyDataModule(n=64, batch_size=16))
    assert cp.detector.budget == 6 and cp.detector.mode == "budget"
    changes = [h["changes"] for h in cp.detector.history]
    assert changes[3] == {} and "layer_rotation" in changes[4]  # from the 5th epoch on


class OneCycle(TinyModule):
    def configure_optimizers(self):
        opt = torch.optim.SGD(self.parameters(), lr=0.1, momentum=0.9)
        steps = int(self.trainer.estimated_stepping_batches)
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.2, total_steps=steps)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


def test_a_staged_reduction_3_2_1_keeps_its_plan_and_the_schedule(tmp_path):
    from lightning.pytorch.callbacks import Callback, ModelCheckpoint

    class Batches(Callback):
        def __init__(self):
            self.per_epoch = []

        def on_train_epoch_end(self, trainer, pl_module):
            self.per_epoch.append(trainer.num_training_batches)

    cut, count = AugmentationCutoff("fixed", epoch=2, stages=(2,)), Batches()
    data = TinyDataModule(n=48, batch_size=16, multiplicity=3)
    ckpt = ModelCheckpoint(dirpath=tmp_path / "ck", save_top_k=-1, every_n_epochs=1)
    trainer = tiny_trainer(
        tmp_path, max_epochs=6, callbacks=[cut, count, ckpt], enable_checkpointing=True
    )
    trainer.fit(OneCycle(), data)
    assert cut.plan == [[2, 2], [4, 1]] and data.multiplicity == 1
    assert count.per_epoch == [9, 9, 6, 6, 3, 3]  # 48 images x k / 16 per batch
    sched = trainer.lr_scheduler_configs[0].scheduler
    assert sched.last_epoch == sched.total_steps == 54  # ends where the uncut run would
    # resumed in the middle stage: the plan holds, k steps down on time
    data2 = TinyDataModule(n=48, batch_size=16, multiplicity=3)
    cut2, count2 = AugmentationCutoff("fixed", epoch=2, stages=(2,)), Batches()
    trainer2 = tiny_trainer(tmp_path, max_epochs=6, callbacks=[cut2, count2])
    trainer2.fit(OneCycle(), data2, ckpt_path=str(tmp_path / "ck" / "epoch=2-step=24.ckpt"))
    assert cut2.plan == [[2, 2], [4, 1]] and count2.per_epoch == [6, 3, 3]


def test_stages_must_step_down_to_the_target():
    with pytest.raises(ValueError, match="decrease strictly"):
        AugmentationCutoff(stages=(1,))
    with pytest.raises(ValueError, match="decrease strictly"):
        AugmentationCutoff(stages=(2, 3))


def test_a_step_budget_is_the_same_fit_as_its_epochs_for_the_budget_rules(tmp_path):
    """max_steps=54 at 9 steps an epoch is 6 epochs: Fukase et al.'s rule reads that budget, and
    a staged cut trains exactly the epoch-budget run's steps (9+9+6+6+3+3), its OneCycle sized
    for 54 steps ending where the uncut run's would."""
    cp = CriticalPeriod(**FUKASE_RULE)
    trainer = tiny_trainer(
        tmp_path / "a", max_epochs=-1, max_steps=54, callbacks=[LayerRotation(), cp]
    )
    trainer.fit(TinyModule(), TinyDataModule(n=48, batch_size=16, multiplicity=3))
    assert cp.detector.budget == 6
    cut = AugmentationCutoff("fixed", epoch=2, stages=(2,))
    data = TinyDataModule(n=48, batch_size=16, multiplicity=3)
    trainer = tiny_trainer(tmp_path / "b", max_epochs=-1, max_steps=54, callbacks=[cut])
    trainer.fit(OneCycle(), data)
    assert cut.plan == [[2, 2], [4, 1]] and trainer.global_step == 36
    sched = trainer.lr_scheduler_configs[0].scheduler
    assert sched.last_epoch == sched.total_steps == 54


def test_lightnings_default_budget_is_named_for_a_budget_aware_rule(tmp_path):
    """Without max_epochs Lightning trains for 1000: a floor or Fukase et al.'s slope would read
    that as the budget, so the detector says so (here early stopping ends the fit)."""
    from lightning.pytorch.callbacks import Callback

    class StopAfterOne(Callback):
        def on_train_epoch_end(self, trainer, pl_module):
            trainer.should_stop = True

    cp = CriticalPeriod(**FUKASE_RULE)
    trainer = tiny_trainer(
        tmp_path, max_epochs=None, callbacks=[LayerRotation(), cp, StopAfterOne()]
    )
    with pytest.warns(UserWarning, match=r"budget as max_epochs=1000, which is what Lightning"):
        trainer.fit(TinyModule(), TinyDataModule(n=32, batch_size=16))
    assert trainer.current_epoch == 1 and cp.detector.budget == 1000
