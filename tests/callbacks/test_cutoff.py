"""CriticalPeriod and AugmentationCutoff in real fits: the decision, the switch, and resume."""

import warnings

import pytest
import torch
from helpers import TinyDataModule, TinyModule, make_images, tiny_trainer, v02_period
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from torch.utils.data import DataLoader, TensorDataset

from critical.callbacks import (
    AugmentationCutoff,
    EnergyTracker,
    GradientPredictability,
    LayerRotation,
)
from critical.data import MultiplicityDataset

# changes 1, 0.01, 0.01, ...: with patience 2 the detector fires at the end of epoch 3
SCRIPT = [0.0, 1.0, 1.01, 1.02, 1.03, 1.04, 1.05, 1.06]


class Scripted(TinyModule):
    def __init__(self, script=SCRIPT):
        super().__init__()
        self.script = script

    def training_step(self, batch, batch_idx):
        self.log("scripted", float(self.script[self.current_epoch]), on_step=False, on_epoch=True)
        return super().training_step(batch, batch_idx)


class BatchCounter(Callback):
    def __init__(self):
        self.planned, self.ran, self.k = [], [], []

    def on_train_epoch_start(self, trainer, pl_module):
        self.planned.append(trainer.num_training_batches)
        self.ran.append(0)
        self.k.append(trainer.datamodule.multiplicity)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.ran[-1] += 1


def fit(tmp_path, callbacks, epochs=6, module=None, dm=None, **kw):
    counter = BatchCounter()
    dm = dm or TinyDataModule(n=64, batch_size=16, multiplicity=3)
    trainer = tiny_trainer(tmp_path, max_epochs=epochs, callbacks=[*callbacks, counter], **kw)
    trainer.fit(module or Scripted(), dm)
    return trainer, counter, dm


def test_detector_fires_at_expected_epoch_and_k_drops_next_epoch(tmp_path):
    cp = v02_period(
        "scripted", mode="absolute", threshold=0.1, patience=2, min_epochs=0, guard_learning=False
    )
    seen = []
    cp.add_listener(lambda ev, trainer, module: seen.append((ev.epoch, trainer.current_epoch)))
    cut = AugmentationCutoff()
    trainer, counter, dm = fit(tmp_path, [cp, cut])
    assert cp.event.epoch == 3 and cp.event.reason == "stable" and seen == [(3, 3)]
    assert cut.cut_epoch == 4 and cut.multiplicity_before == 3 and dm.multiplicity == 1
    assert counter.k == [3, 3, 3, 3, 1, 1]
    assert counter.planned == [12, 12, 12, 12, 4, 4]  # trainer.num_training_batches agrees...
    assert counter.ran == counter.planned  # ...with what really ran
    assert trainer.callback_metrics["critical/critical_period_over"] == 1.0
    assert trainer.callback_metrics["critical/critical_period_epoch"] == 3.0
    assert trainer.callback_metrics["critical/multiplicity"] == 1.0
    assert trainer.reload_dataloaders_every_n_epochs == 0  # the user's setting is restored


def test_detector_on_real_metric_callbacks_any_order(tmp_path):
    cp = v02_period(
        "layer_rotation", threshold=10.0, patience=1, min_epochs=1, guard_learning=False
    )  # huge threshold: fires early
    cut = AugmentationCutoff()
    _, counter, _ = fit(tmp_path, [cut, cp, LayerRotation()], epochs=4, module=TinyModule())
    # rotation exists from epoch 0; first change at epoch 1; min_epochs=1 by default
    assert cp.event.epoch == 1 and cut.cut_epoch == 2
    assert counter.k == [3, 3, 1, 1]


def test_deadline_forces_the_cut(tmp_path):
    cp = v02_period("scripted", threshold=1e-9, patience=1, min_epochs=0, deadline=2)
    cut = AugmentationCutoff()
    _, counter, _ = fit(tmp_path, [cp, cut], epochs=4)
    assert cp.event.reason == "deadline" and cp.event.epoch == 1
    assert counter.k == [3, 3, 1, 1]


@pytest.mark.parametrize(
    "kwargs, ks",
    [
        (dict(policy="fixed", epoch=2), [3, 3, 1, 1]),
        (dict(policy="fixed", epoch=0), [1, 1, 1, 1]),
        (dict(policy="fixed", fraction=0.75), [3, 3, 3, 1]),
        (dict(policy="never"), [3, 3, 3, 3]),
        (dict(policy="fixed", epoch=1, target=2), [3, 2, 2, 2]),
    ],
)
def test_fixed_and_never_policies(tmp_path, kwargs, ks):
    _, counter, _ = fit(tmp_path, [AugmentationCutoff(**kwargs)], epochs=4, module=TinyModule())
    assert counter.k == ks
    assert counter.planned == counter.ran == [4 * k for k in ks]


def test_disable_augmentation_needs_and_sets_augment(tmp_path):
    with pytest.raises(ValueError, match="augment"):
        fit(tmp_path, [AugmentationCutoff("fixed", epoch=1, disable_augmentation=True)], epochs=2)
    dm = TinyDataModule(n=64, batch_size=16, multiplicity=3)
    dm.augment = True
    fit(
        tmp_path, [AugmentationCutoff("fixed", epoch=1, disable_augmentation=True)], epochs=2, dm=dm
    )
    assert dm.augment is False and dm.multiplicity == 1


def test_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="exactly one CriticalPeriod"):
        fit(tmp_path, [AugmentationCutoff()], epochs=1)
    # a library metric without its callback: the detector adds the callback (no error)
    trainer, _, _ = fit(tmp_path, [v02_period("gradient_predictability")], epochs=1)
    added = [cb for cb in trainer.callbacks if type(cb).__name__ == "GradientPredictability"]
    assert len(added) == 1 and len(added[0].history) == 1
    with pytest.raises(RuntimeError, match="available"):
        fit(tmp_path, [v02_period("val/nothing")], epochs=1)

    class NoK(TinyDataModule):
        def __init__(self):
            super().__init__()
            del self.multiplicity

        def train_dataloader(self):  # a plain dataset: nothing anywhere has a multiplicity
            return DataLoader(TensorDataset(self.x, self.y), batch_size=self.batch_size)

    with pytest.raises(ValueError, match="no training data with a settable `multiplicity`"):
        fit(tmp_path, [AugmentationCutoff("never")], epochs=1, dm=NoK())

    class NewEachCall(NoK):
        def train_dataloader(self):  # a dataset with a multiplicity, but a new one every call
            self.multiplicity = 1
            out = TinyDataModule.train_dataloader(self)
            del self.multiplicity
            return out

    with pytest.raises(ValueError, match="create the dataset once"):
        fit(tmp_path, [AugmentationCutoff("never")], epochs=1, dm=NewEachCall())
    for kwargs, match in [
        (dict(policy="sometimes"), r"\['detector', 'fixed', 'never'\]"),
        (dict(policy="fixed"), "exactly one of"),
        (dict(policy="fixed", epoch=1, fraction=0.5), "exactly one of"),
        (dict(policy="detector", epoch=3), "only apply"),
        (dict(policy="fixed", fraction=1.5), ">= 0 and <= 1"),
        (dict(target=0), "target"),
    ]:
        with pytest.raises(ValueError, match=match):
            AugmentationCutoff(**kwargs)


def test_warns_when_the_datamodule_ignores_multiplicity(tmp_path):
    class Ignores(TinyDataModule):
        def train_dataloader(self):
            k, self.multiplicity = self.multiplicity, 3
            try:
                return super().train_dataloader()
            finally:
                self.multiplicity = k

    with pytest.warns(UserWarning, match="honour"):
        fit(tmp_path, [AugmentationCutoff("fixed", epoch=1)], epochs=2, dm=Ignores(multiplicity=3))


def _callbacks():
    return [
        LayerRotation(),
        GradientPredictability(),
        v02_period(
            "scripted",
            mode="absolute",
            threshold=0.1,
            patience=2,
            min_epochs=0,
            guard_learning=False,
        ),
        AugmentationCutoff(),
    ]


@pytest.mark.parametrize("resume_after", [2, 5])  # before the cut (epoch 4), after it
def test_resume_continues_with_same_history_theta0_and_cut(tmp_path, resume_after):
    ckpt = ModelCheckpoint(
        dirpath=tmp_path / "ckpt", save_top_k=-1, every_n_epochs=1, filename="{epoch}"
    )
    full = _callbacks()
    _, full_counter, _ = fit(tmp_path / "a", [*full, ckpt], epochs=7, enable_checkpointing=True)
    path = tmp_path / "ckpt" / f"epoch={resume_after - 1}.ckpt"

    resumed = _callbacks()
    counter = BatchCounter()
    dm = TinyDataModule(n=64, batch_size=16, multiplicity=3)  # a fresh datamodule starts at k=3
    trainer = tiny_trainer(tmp_path / "b", max_epochs=7, callbacks=[*resumed, counter])
    trainer.fit(Scripted(), dm, ckpt_path=str(path))

    assert counter.k == full_counter.k[resume_after:]
    assert counter.planned == full_counter.planned[resume_after:]
    assert resumed[3].cut_epoch == full[3].cut_epoch == 4
    assert resumed[2].event == full[2].event
    assert [h["epoch"] for h in resumed[0].history] == list(range(7))
    assert torch.equal(resumed[0].theta0, full[0].theta0)
    for a, b in zip(resumed[0].history[:resume_after], full[0].history[:resume_after]):
        assert a == b
    assert len(resumed[2].detector.history) == 7


def test_fixed_cut_branches_off_an_always_k_checkpoint(tmp_path):
    ckpt = ModelCheckpoint(
        dirpath=tmp_path / "ckpt", save_top_k=-1, every_n_epochs=1, filename="{epoch}"
    )
    _, trunk, _ = fit(
        tmp_path / "a",
        [AugmentationCutoff("never"), ckpt],
        epochs=3,
        module=TinyModule(),
        enable_checkpointing=True,
    )
    assert trunk.k == [3, 3, 3]
    branch = AugmentationCutoff("fixed", epoch=2)
    counter = BatchCounter()
    trainer = tiny_trainer(tmp_path / "b", max_epochs=5, callbacks=[branch, counter])
    dm = TinyDataModule(n=64, batch_size=16, multiplicity=3)
    trainer.fit(TinyModule(), dm, ckpt_path=str(tmp_path / "ckpt" / "epoch=1.ckpt"))
    assert branch.cut_epoch == 2 and counter.k == [1, 1, 1] and counter.planned == [4, 4, 4]


class StepCounter(Callback):
    def __init__(self):
        self.steps = 0

    def on_before_optimizer_step(self, trainer, pl_module, optimizer):
        self.steps += 1


def test_a_metric_name_typo_fails_before_the_first_step(tmp_path):
    steps = StepCounter()
    with pytest.raises(ValueError, match="did you mean 'layer_rotation'"):
        fit(tmp_path, [LayerRotation(), v02_period("layer_rotaton"), steps], epochs=1)
    assert steps.steps == 0


class Exploding(TinyModule):
    """Training goes to NaN from epoch 1 (a learning rate far too large, scripted)."""

    def training_step(self, batch, batch_idx):
        loss = super().training_step(batch, batch_idx)
        return loss * float("nan") if self.current_epoch >= 1 else loss


class FlatThenNaN(Exploding):
    def training_step(self, batch, batch_idx):
        self.log("scripted", 1.0, on_step=False, on_epoch=True)
        return super().training_step(batch, batch_idx)


def test_a_diverged_run_is_never_declared_stable_and_says_so(tmp_path):
    # a flat metric, a deadline, no still-learning guard: only the finite guard stands in the way
    cp = v02_period(
        "scripted",
        mode="absolute",
        threshold=10.0,
        patience=1,
        min_epochs=2,
        deadline=4,
        guard_learning=False,
    )
    with pytest.warns(UserWarning, match=r"diverged in epoch 1 \(training loss is nan"):
        trainer, _, dm = fit(tmp_path, [cp, AugmentationCutoff()], module=FlatThenNaN())
    assert cp.event is None and cp.diverged["epoch"] == 1
    assert cp.diverged["cause"] == "training loss is nan; the weights are not finite"
    assert dm.multiplicity == 3 and trainer.callback_metrics["critical/critical_period_over"] == 0


def test_the_guard_reads_the_loss_training_step_returns(tmp_path):
    cp = v02_period("scripted", guard_lr=False)
    seen = []

    class Spy(Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            seen.append((trainer.current_epoch, float(outputs["loss"])))

    trainer, _, _ = fit(tmp_path, [cp, Spy()], epochs=2)
    for e in range(2):
        mean = sum(v for ep, v in seen if ep == e) / sum(1 for ep, _ in seen if ep == e)
        assert cp.detector.history[e]["loss"] == pytest.approx(mean, rel=1e-5)
    assert trainer.callback_metrics["critical/train_loss"] == pytest.approx(
        cp.detector.history[-1]["loss"]
    )
    assert trainer.callback_metrics["critical/lr"] > 0


# ------------------------------------------------------------------ bring your own data (#14.1)


class Batches(Callback):
    """Batches planned and run per epoch, whatever the data source."""

    def __init__(self):
        self.planned, self.ran = [], []

    def on_train_epoch_start(self, trainer, pl_module):
        self.planned.append(trainer.num_training_batches)
        self.ran.append(0)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.ran[-1] += 1


def _own_dataset(k=3):
    x, y = make_images(64)
    return MultiplicityDataset(TensorDataset(x, y), multiplicity=k, transform=lambda t: t + 0.01)


class OwnLoader(TinyModule):
    """Returns its own loader from train_dataloader(), over a dataset made once."""

    def __init__(self):
        super().__init__()
        self.train_set = _own_dataset()

    def train_dataloader(self):
        return DataLoader(self.train_set, batch_size=16, shuffle=True)


class NewDatasetEachCall(TinyModule):
    def train_dataloader(self):
        return DataLoader(_own_dataset(), batch_size=16, shuffle=True)


def test_a_loader_passed_to_fit_is_cut(tmp_path):
    ds = _own_dataset()
    cut, batches = AugmentationCutoff("fixed", epoch=2), Batches()
    trainer = tiny_trainer(tmp_path, max_epochs=4, callbacks=[cut, batches])
    trainer.fit(TinyModule(), train_dataloaders=DataLoader(ds, batch_size=16, shuffle=True))
    assert cut.multiplicity_before == 3 and ds.multiplicity == 1
    assert batches.planned == batches.ran == [12, 12, 4, 4]


def test_a_loader_returned_by_the_module_is_cut(tmp_path):
    module = OwnLoader()
    cut, batches = AugmentationCutoff("fixed", epoch=1), Batches()
    tiny_trainer(tmp_path, max_epochs=3, callbacks=[cut, batches]).fit(module)
    assert module.train_set.multiplicity == 1
    assert batches.planned == batches.ran == [12, 4, 4]
    # a cut at epoch 0 applies before the first epoch
    module, batches = OwnLoader(), Batches()
    cut = AugmentationCutoff("fixed", epoch=0)
    tiny_trainer(tmp_path, max_epochs=2, callbacks=[cut, batches]).fit(module)
    assert batches.planned == batches.ran == [4, 4]


def test_a_module_that_makes_a_new_dataset_per_call_is_told_what_to_do(tmp_path):
    steps = StepCounter()
    trainer = tiny_trainer(tmp_path, max_epochs=2, callbacks=[AugmentationCutoff("never"), steps])
    with pytest.raises(ValueError, match="create the dataset once"):
        trainer.fit(NewDatasetEachCall())
    assert steps.steps == 0


# ------------------------------------------------------------------ late errors (#11.7)


class BadK(TinyDataModule):
    def __init__(self, k):
        super().__init__()
        self.multiplicity = k


@pytest.mark.parametrize("k", [0, -1, 2.5])
def test_an_invalid_user_multiplicity_fails_before_the_first_step(tmp_path, k):
    for callbacks in ([AugmentationCutoff("never")], [EnergyTracker(log_metrics=False)]):
        steps = StepCounter()
        with pytest.raises(ValueError, match=r"`BadK.multiplicity` must be an integer >= 1"):
            fit(tmp_path, [*callbacks, steps], epochs=1, dm=BadK(k), module=TinyModule())
        assert steps.steps == 0


def test_a_target_above_k_or_a_string_flag_fails_before_the_first_step(tmp_path):
    steps = StepCounter()
    with pytest.raises(ValueError, match=r"`target` must be an integer in \[1, 3\]"):
        fit(tmp_path, [AugmentationCutoff("fixed", epoch=1, target=5), steps], epochs=2)
    assert steps.steps == 0
    with pytest.raises(ValueError, match="`disable_augmentation` must be True or False"):
        AugmentationCutoff(disable_augmentation="no")
    with pytest.raises(ValueError, match="`verbose` must be True or False"):
        AugmentationCutoff(verbose="yes")
    with pytest.raises(ValueError, match="`fraction` must be a finite number >= 0 and <= 1"):
        AugmentationCutoff("fixed", fraction=float("nan"))
    with pytest.raises(ValueError, match="`critical_period` must be a CriticalPeriod"):
        AugmentationCutoff(critical_period="cp")


# ------------------------------------------------------------------ step schedules (D)


class OneCycle(TinyModule):
    def configure_optimizers(self):
        opt = torch.optim.SGD(self.parameters(), lr=self.lr)
        total = self.trainer.estimated_stepping_batches
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=self.lr, total_steps=total)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


def test_a_step_schedule_is_warned_about_only_when_not_followed(tmp_path):
    cut = AugmentationCutoff("fixed", epoch=1, follow_schedule=False)
    with pytest.warns(UserWarning, match=r"from 12 to 4 .*OneCycleLR.*interval='step'") as rec:
        fit(tmp_path, [cut], epochs=3, module=OneCycle())
    assert sum("follow_schedule=False" in str(w.message) for w in rec) == 1
    with warnings.catch_warnings():  # followed (the default): nothing to warn about
        warnings.filterwarnings("error", ".*interval='step'.*")
        fit(tmp_path, [AugmentationCutoff("fixed", epoch=1)], epochs=3, module=OneCycle())
    with warnings.catch_warnings():  # an epoch-based schedule (or none) is fine
        warnings.filterwarnings("error", ".*interval='step'.*")
        fit(tmp_path, [AugmentationCutoff("fixed", epoch=1)], epochs=3, module=TinyModule())


def test_a_diverged_run_says_so_in_its_summary(tmp_path):
    from critical.callbacks import RunDirectory

    cp = v02_period("scripted", threshold=10.0, patience=1, min_epochs=2, guard_learning=False)
    run = RunDirectory(root=tmp_path, name="r", tensorboard=False, plot=False, print_summary=False)
    with pytest.warns(UserWarning, match="diverged"):
        fit(tmp_path, [cp, AugmentationCutoff(), run], epochs=3, module=FlatThenNaN())
    assert (
        run.summary["diverged"]["epoch"] == 1
        and "diverged in epoch 1" in run.summary["saving_note"]
    )
    assert run.summary["saved"] is False
    # the logged rows carry the divergence, so a detector replayed on them (as sweeps do) does not
    # cut either, although the NaN loss itself is not logged
    from critical.detector import replay
    from critical.runfiles import read_rows

    rows = read_rows(tmp_path / "r")
    assert [r.get("critical/diverged") for r in rows] == [0.0, 1.0, 1.0]
    kwargs = {"mode": "absolute", "threshold": 10.0, "patience": 1, "min_epochs": 2, "window": 1}
    kwargs["guard_learning"] = False
    assert not replay(rows, "scripted", prefix="", **kwargs).fired
    assert replay(rows, "scripted", prefix="", **kwargs, guard_finite=False, guard_lr=False).fired


def _step_fit(path, cut, module=None, ckpt=None, resume=None, max_steps=40):
    """A fit bounded by max_steps (12 steps an epoch at k = 3, 4 at k = 1)."""
    callbacks = [cut, BatchCounter()] + ([ckpt] if ckpt else [])
    kw = {"enable_checkpointing": True} if ckpt else {}
    trainer = tiny_trainer(path, max_epochs=-1, max_steps=max_steps, callbacks=callbacks, **kw)
    data = TinyDataModule(n=64, batch_size=16, multiplicity=3)
    trainer.fit(module or TinyModule(), data, ckpt_path=resume)
    return trainer, callbacks[1]


def test_a_step_budget_is_rescaled_at_the_cut(tmp_path):
    """Under max_steps a cut would shorten the epochs, not the fit (measured before the rescale:
    40 steps over 8 epochs instead of 4, nothing saved). The steps left are rescaled instead:
    40 steps at k = 3 are 3 1/3 epochs; cut after epoch 0 (12 steps), the 28 left are 9 at
    k = 1, so the fit ends after 21 steps, in the 4th epoch, as the uncut one would."""
    trainer, counter = _step_fit(tmp_path / "a", AugmentationCutoff("never"))
    assert trainer.global_step == 40 and counter.k == [3, 3, 3, 3]
    trainer, counter = _step_fit(tmp_path / "b", AugmentationCutoff(policy="fixed", epoch=1))
    assert trainer.global_step == 12 + 9 and counter.k == [3, 1, 1, 1]
    assert counter.ran == [12, 4, 4, 1]
    assert trainer.max_steps == 40  # the user's value again once the fit ended


def test_a_step_schedule_ends_where_it_would_under_a_step_budget(tmp_path):
    """A OneCycle sized for the 40 steps: kept on its course of epoch progress it used to run
    past its end ('Tried to step 41 times') when the fit trained 40 steps after a cut."""
    module = OneCycle()
    trainer, _ = _step_fit(tmp_path, AugmentationCutoff(policy="fixed", epoch=1), module=module)
    sched = trainer.lr_scheduler_configs[0].scheduler
    assert trainer.global_step == 21 and 39 <= sched.last_epoch <= 40
    assert trainer.optimizers[0].param_groups[0]["lr"] < 0.01 * module.lr  # near its end


@pytest.mark.parametrize("resume_after", [1, 2])  # decided but not applied; after the cut
def test_a_rescaled_step_budget_survives_a_resume(tmp_path, resume_after):
    ckpt = ModelCheckpoint(
        dirpath=tmp_path / "ckpt", save_top_k=-1, every_n_epochs=1, filename="{epoch}"
    )
    _step_fit(tmp_path / "a", AugmentationCutoff("fixed", epoch=1), ckpt=ckpt)
    path = str(tmp_path / "ckpt" / f"epoch={resume_after - 1}.ckpt")
    trainer, counter = _step_fit(tmp_path / "b", AugmentationCutoff("fixed", epoch=1), resume=path)
    assert trainer.global_step == 21 and counter.k == [1, 1, 1][resume_after - 1 :]


def test_a_branch_off_an_uncut_step_budget_run_saves_the_steps(tmp_path):
    """A fixed cut applied on resume from a run that kept k (how sweeps take a k = 1 branch)."""
    ckpt = ModelCheckpoint(
        dirpath=tmp_path / "ckpt", save_top_k=-1, every_n_epochs=1, filename="{epoch}"
    )
    _step_fit(tmp_path / "a", AugmentationCutoff("never"), ckpt=ckpt)
    path = str(tmp_path / "ckpt" / "epoch=0.ckpt")
    trainer, counter = _step_fit(tmp_path / "b", AugmentationCutoff("fixed", epoch=1), resume=path)
    assert trainer.global_step == 21 and counter.k == [1, 1, 1]


def test_max_steps_that_never_binds_and_a_cutoff_that_never_cuts_run(tmp_path):
    cut = AugmentationCutoff(policy="fixed", epoch=1)
    data = TinyDataModule(n=64, batch_size=16, multiplicity=3)
    trainer = tiny_trainer(tmp_path / "a", max_epochs=3, max_steps=1000, callbacks=[cut])
    trainer.fit(TinyModule(), data)
    assert cut.cut_epoch == 1 and trainer.global_step == 12 + 4 + 4  # the cut shortened the fit
    never = AugmentationCutoff(policy="never")
    trainer = tiny_trainer(tmp_path / "b", max_epochs=-1, max_steps=20, callbacks=[never])
    trainer.fit(TinyModule(), TinyDataModule(n=64, batch_size=16, multiplicity=3))
    assert trainer.global_step == 20


def test_a_batch_cap_is_named_when_a_cut_cannot_shorten_the_epochs(tmp_path):
    cut = AugmentationCutoff(policy="fixed", epoch=1)
    data = TinyDataModule(n=64, batch_size=8, multiplicity=3)  # 24 batches at k = 3, 8 at k = 1
    trainer = tiny_trainer(tmp_path, max_epochs=3, callbacks=[cut], limit_train_batches=3)
    with pytest.warns(UserWarning, match=r"limit_train_batches=3\) caps the batches"):
        trainer.fit(TinyModule(), data)
    assert cut.cut_epoch == 1 and trainer.global_step == 9  # 3 an epoch, cut or not
