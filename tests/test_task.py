"""critical.task.ImageClassifier: training, logging, LR schedule, inputs, state."""

from __future__ import annotations

import math

import lightning as L
import pytest
import torch
from helpers import make_images, tiny_trainer
from torch.utils.data import DataLoader, TensorDataset

from critical.task import CIFAR10_MEAN, EpochSchedule, ImageClassifier


def _task(**kwargs) -> ImageClassifier:
    args = {
        "model": "small_cnn",
        "num_classes": 4,
        "in_chans": 3,
        "img_size": 8,
        "mean": [0.5],
        "std": [0.25],
    }
    args.update(kwargs)
    return ImageClassifier(**args)


def _loaders(n: int = 64, uint8: bool = False, batch_size: int = 16):
    x, y = make_images(n, num_classes=4, size=8)
    if uint8:
        x = (x * 255).round().to(torch.uint8)
    train = DataLoader(TensorDataset(x, y), batch_size=batch_size, shuffle=True)
    val = DataLoader(TensorDataset(x, y), batch_size=batch_size)
    return train, val


class Recorder(L.Callback):
    """Per epoch: the LR in use and the epoch's logged training loss."""

    def __init__(self) -> None:
        self.lrs: list[float] = []
        self.losses: list[float] = []

    def on_train_epoch_start(self, trainer, pl_module):
        self.lrs.append(trainer.optimizers[0].param_groups[0]["lr"])

    def on_train_epoch_end(self, trainer, pl_module):
        self.losses.append(float(trainer.callback_metrics["train/loss"]))


def test_trains_and_logs(tmp_path):
    rec = Recorder()
    task = _task(lr=0.05, schedule="constant")
    trainer = tiny_trainer(tmp_path, max_epochs=4, callbacks=[rec])
    train, val = _loaders()
    trainer.fit(task, train, val)
    assert rec.losses[-1] < rec.losses[0]
    for key in ("train/loss", "train/acc", "val/loss", "val/acc"):
        assert key in trainer.callback_metrics
    assert 0.0 <= float(trainer.callback_metrics["val/acc"]) <= 1.0
    trainer.test(task, val, verbose=False)
    assert {"test/loss", "test/acc"} <= set(trainer.callback_metrics)


def test_cosine_lr_per_epoch(tmp_path):
    rec = Recorder()
    epochs = 4
    task = _task(lr=0.1, schedule="cosine")
    trainer = tiny_trainer(
        tmp_path, max_epochs=epochs, callbacks=[rec], limit_train_batches=2, limit_val_batches=0
    )
    trainer.fit(task, _loaders()[0])
    expected = [0.1 * 0.5 * (1 + math.cos(math.pi * e / epochs)) for e in range(epochs)]
    assert rec.lrs == pytest.approx(expected)


def test_lr_curve_per_epoch_is_independent_of_steps_per_epoch(tmp_path):
    """What k changes (steps per epoch) must not change the LR-vs-epoch curve."""
    curves = []
    for batches in (1, 3):
        rec = Recorder()
        task = _task(schedule="multistep", milestones=[0.5], warmup_epochs=1, gamma=0.5)
        trainer = tiny_trainer(
            tmp_path,
            max_epochs=4,
            callbacks=[rec],
            limit_train_batches=batches,
            limit_val_batches=0,
        )
        trainer.fit(task, _loaders()[0])
        curves.append(rec.lrs)
    assert curves[0] == curves[1] == pytest.approx([0.05, 0.1, 0.05, 0.05])


def test_epoch_schedule_values():
    s = EpochSchedule("cosine", total_epochs=10, warmup_epochs=2, min_factor=0.1)
    assert s(0) == pytest.approx(1 / 3) and s(1) == pytest.approx(2 / 3)
    assert s(2) == pytest.approx(1.0)
    assert s(10) == pytest.approx(0.1) and s(50) == pytest.approx(0.1)
    assert EpochSchedule("constant")(7) == 1.0
    assert EpochSchedule("multistep", 100, milestones=[50, 0.75])(80) == pytest.approx(0.01)


def test_uint8_input_matches_float():
    task = _task().eval()
    x8 = torch.randint(0, 256, (3, 3, 8, 8), dtype=torch.uint8)
    with torch.no_grad():
        torch.testing.assert_close(task(x8), task(x8.float() / 255))
    with pytest.raises(TypeError, match="uint8"):
        task(torch.zeros(1, 3, 8, 8, dtype=torch.int64))


def test_trains_on_uint8_batches(tmp_path):
    trainer = tiny_trainer(tmp_path, max_epochs=1)
    train, val = _loaders(uint8=True)
    trainer.fit(_task(), train, val)
    assert math.isfinite(float(trainer.callback_metrics["val/loss"]))


def test_normalization_buffers_round_trip(tmp_path):
    task = _task(mean=[0.1, 0.2, 0.3], std=[0.4, 0.5, 0.6])
    sd = task.state_dict()
    assert sd["mean"].flatten().tolist() == pytest.approx([0.1, 0.2, 0.3])
    assert sd["std"].flatten().tolist() == pytest.approx([0.4, 0.5, 0.6])
    other = _task()  # different statistics, loaded from the state dict
    other.load_state_dict(sd)
    torch.testing.assert_close(other.mean, task.mean)
    torch.testing.assert_close(other.std, task.std)
    # Checkpoint round trip through Lightning (hyperparameters + buffers).
    trainer = tiny_trainer(tmp_path, max_epochs=1, limit_train_batches=1, limit_val_batches=0)
    trainer.fit(task, _loaders()[0])
    path = tmp_path / "m.ckpt"
    trainer.save_checkpoint(path)
    loaded = ImageClassifier.load_from_checkpoint(path)
    torch.testing.assert_close(loaded.std, task.std)
    x = torch.rand(2, 3, 8, 8)
    task.eval(), loaded.eval()
    torch.testing.assert_close(loaded(x), task(x))


def test_default_normalization():
    task = ImageClassifier(model="small_cnn", num_classes=10)
    assert task.mean.flatten().tolist() == pytest.approx(list(CIFAR10_MEAN))
    gray = ImageClassifier(model="small_cnn", num_classes=10, in_chans=1, img_size=8)
    assert gray.mean.flatten().tolist() == [0.5] and gray.std.flatten().tolist() == [0.5]


def test_weight_decay_groups():
    task = _task(weight_decay=1e-3)
    groups = task.param_groups()
    assert [g["weight_decay"] for g in groups] == [1e-3, 0.0]
    assert all(p.ndim > 1 for p in groups[0]["params"])
    assert all(p.ndim <= 1 for p in groups[1]["params"])
    assert len(_task(decay_norm_and_bias=True).param_groups()) == 1
    vit = ImageClassifier(model="vit_cifar_tiny", model_kwargs={"depth": 1})
    no_decay = {id(p) for p in vit.param_groups()[1]["params"]}
    assert id(vit.net.pos_embed) in no_decay and id(vit.net.cls_token) in no_decay


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"schedule": "linear"}, "cosine"),
        ({"lr": 0.0}, "lr must be > 0"),
        ({"lr": -1.0}, "lr must be > 0"),
        ({"model": "nope"}, "valid names"),
        ({"optimizer": "adam"}, "sgd"),
        ({"mean": [0.5, 0.5]}, "in_chans=3"),
        ({"std": [0.0]}, "std must be > 0"),
        ({"schedule": "multistep", "milestones": [1.5]}, "milestone"),
        ({"gamma": 0.0}, "gamma"),
        ({"label_smoothing": 1.0}, "label_smoothing"),
        ({"num_classes": 1}, "num_classes"),
        ({"schedule_epochs": 2, "warmup_epochs": 2}, "warmup_epochs"),
    ],
)
def test_invalid_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        _task(**kwargs)


def test_cosine_without_max_epochs_fails(tmp_path):
    trainer = tiny_trainer(tmp_path, max_epochs=-1, max_steps=2)
    with pytest.raises(ValueError, match="max_epochs"):
        trainer.fit(_task(), _loaders()[0])


def test_adamw_label_smoothing_channels_last(tmp_path):
    task = _task(
        optimizer="adamw", lr=1e-3, label_smoothing=0.1, channels_last=True, weight_decay=0.05
    )
    trainer = tiny_trainer(tmp_path, max_epochs=1, limit_val_batches=0)
    trainer.fit(task, _loaders()[0])
    assert isinstance(trainer.optimizers[0], torch.optim.AdamW)
    assert math.isfinite(float(trainer.callback_metrics["train/loss"]))


def test_lightning_cli_parses_arguments(monkeypatch):
    from lightning.pytorch.cli import LightningCLI

    monkeypatch.setattr("sys.argv", ["critical"])
    cli = LightningCLI(
        ImageClassifier,
        run=False,
        args=[
            "--model.model=small_cnn",
            "--model.mean=[0.5]",
            "--model.schedule=multistep",
            "--model.milestones=[0.5, 0.75]",
            "--model.model_kwargs={drop_rate: 0.1}",
            "--trainer.accelerator=cpu",
            "--trainer.logger=false",
        ],
        save_config_callback=None,
    )
    assert isinstance(cli.model, ImageClassifier)
    assert cli.model.hparams.milestones == [0.5, 0.75]
    assert cli.model.net.drop_rate == 0.1


def test_compile_flag_compiles_in_place():
    task = _task(compile=True)
    keys = set(task.state_dict())
    task.configure_model()
    task.configure_model()  # idempotent
    assert task.net._compiled_call_impl is not None
    assert set(task.state_dict()) == keys
    assert _task().net._compiled_call_impl is None


def test_model_summary_counts_flops():
    # Lightning's summary counts FLOPs on example_input_array: it printed "FLOPs 0" without it
    from lightning.pytorch.utilities.model_summary import ModelSummary

    task = ImageClassifier("small_cnn", num_classes=10, in_chans=1, img_size=16)
    assert tuple(task.example_input_array.shape) == (1, 1, 16, 16)
    assert ModelSummary(task).total_flops > 0
    rgb = ImageClassifier("cifar_resnet20", num_classes=10, in_chans=3, img_size=32)
    assert tuple(rgb.example_input_array.shape) == (1, 3, 32, 32)
    assert ModelSummary(rgb).total_flops > ModelSummary(task).total_flops


@pytest.mark.parametrize("interval", ["epoch", "step"])
def test_checkpoint_loads_with_weights_only(tmp_path, interval):
    """LightningCLI's --ckpt_path reads a checkpoint with weights_only=True: the LambdaLR state
    (our EpochSchedule / StepSchedule objects) must be allowed, and the resumed fit must go on."""
    task = _task(lr=0.1, schedule="cosine", warmup_epochs=1, schedule_interval=interval)
    trainer = tiny_trainer(tmp_path, max_epochs=2, limit_train_batches=2, limit_val_batches=0)
    trainer.fit(task, _loaders()[0])
    path = tmp_path / "last.ckpt"
    trainer.save_checkpoint(path)
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    (sched,) = ckpt["lr_schedulers"]
    assert sched["last_epoch"] == (2 if interval == "epoch" else 4)
    resumed = tiny_trainer(tmp_path, max_epochs=3, limit_train_batches=2, limit_val_batches=0)
    resumed.fit(
        _task(lr=0.1, schedule="cosine", warmup_epochs=1, schedule_interval=interval),
        _loaders()[0],
        ckpt_path=str(path),
        weights_only=True,
    )
    assert resumed.current_epoch == 3
