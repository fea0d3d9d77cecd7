"""Tiny models and data shared by the tests: CPU-sized, generated, deterministic."""

from __future__ import annotations

import csv
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import lightning as L
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, TensorDataset


def make_images(n: int = 64, num_classes: int = 4, size: int = 8, channels: int = 3, seed: int = 0):
    """Learnable random images: class-dependent mean plus noise, float in [0, 1]."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % num_classes
    centers = torch.rand(num_classes, channels, size, size, generator=g)
    x = (centers[y] + 0.15 * torch.randn(n, channels, size, size, generator=g)).clamp(0, 1)
    return x, y


class TinyNet(nn.Module):
    """Conv + BN + linear: has weights, biases and norm gains, like a real CNN."""

    def __init__(self, channels: int = 3, num_classes: int = 4, width: int = 8) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, width, 3, padding=1)
        self.bn = nn.BatchNorm2d(width)
        self.fc = nn.Linear(width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.bn(self.conv(x)))
        return self.fc(h.mean(dim=(2, 3)))


class TinyModule(L.LightningModule):
    def __init__(self, lr: float = 0.1, channels: int = 3, num_classes: int = 4) -> None:
        super().__init__()
        self.net = TinyNet(channels, num_classes)
        self.lr = lr

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = nn.functional.cross_entropy(self(x), y)
        self.log("train/loss", loss, on_step=False, on_epoch=True)
        return loss

    def validation_step(self, batch, batch_idx):
        x, y = batch
        acc = (self(x).argmax(-1) == y).float().mean()
        self.log("val/acc", acc)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=self.lr, momentum=0.9)


class UserModule(TinyModule):
    """A user's module, logging with underscores as many do: val_loss, val_acc, test_acc."""

    def validation_step(self, batch, batch_idx):
        x, y = batch
        logits = self(x)
        self.log("val_loss", nn.functional.cross_entropy(logits, y))
        self.log("val_acc", (logits.argmax(-1) == y).float().mean())

    def test_step(self, batch, batch_idx):
        x, y = batch
        self.log("test_acc", (self(x).argmax(-1) == y).float().mean())


class RepeatDataset(Dataset):
    """Index i of the k*N items maps to sample i % N (independent noise per access)."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, multiplicity: int = 1) -> None:
        self.x, self.y, self.multiplicity = x, y, multiplicity

    def __len__(self) -> int:
        return len(self.x) * self.multiplicity

    def __getitem__(self, i: int):
        j = i % len(self.x)
        return self.x[j] + 0.01 * torch.randn_like(self.x[j]), self.y[j]


class TinyDataModule(L.LightningDataModule):
    """Implements the multiplicity protocol the simplest way: a settable attribute."""

    def __init__(self, n: int = 64, batch_size: int = 16, multiplicity: int = 1, seed: int = 0):
        super().__init__()
        self.x, self.y = make_images(n, seed=seed)
        self.batch_size = batch_size
        self.multiplicity = multiplicity

    def train_dataloader(self):
        ds = RepeatDataset(self.x, self.y, self.multiplicity)
        return DataLoader(ds, batch_size=self.batch_size, shuffle=True)

    def val_dataloader(self):
        return DataLoader(TensorDataset(self.x, self.y), batch_size=self.batch_size)


def tiny_trainer(tmp_path, **kwargs) -> L.Trainer:
    defaults = dict(
        accelerator="cpu",
        devices=1,
        max_epochs=3,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=str(tmp_path),
    )
    defaults.update(kwargs)
    return L.Trainer(**defaults)


def read_csv(path: str | Path) -> list[dict[str, str]]:
    """A CSV file with a header as a list of dicts (values are strings), as a reader sees it."""
    with open(path, encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


# The rule mechanics tests were written for the version-0.2 rule (patience 2, no smoothing, the
# training-loss guard); these pin it, so a change of the shipped defaults does not change them.
def v02_period(*args, **kwargs):
    """A ``CriticalPeriod`` with :data:`critical.detector.V02_RULE` under ``kwargs``."""
    from critical.callbacks import CriticalPeriod
    from critical.detector import V02_RULE

    if args:
        kwargs["monitor"] = args[0]
    return CriticalPeriod(**{**V02_RULE, **kwargs})


def _v02_settings(kwargs):
    from critical.detector import V02_RULE

    return {**{k: v for k, v in V02_RULE.items() if k != "monitor"}, **kwargs}


def v02_detector(monitor, **kwargs):
    """A ``StabilityDetector`` with :data:`critical.detector.V02_RULE` under ``kwargs``."""
    from critical.detector import StabilityDetector

    return StabilityDetector(monitor, **_v02_settings(kwargs))


def v02_replay(rows, monitor="layer_rotation", **kwargs):
    """:func:`critical.detector.replay` with :data:`critical.detector.V02_RULE` under ``kwargs``."""
    from critical.detector import replay

    return replay(rows, monitor, **_v02_settings(kwargs))


def load_script(path: Path, name: str) -> ModuleType:
    """A script that is not a package module (e.g. under experiments/), imported by path under
    ``name`` (registered in ``sys.modules``: dataclasses look their module up while built)."""
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def fit_in_process(cmd, stdout=None, **_):
    """The sweep runner's ``subprocess.run`` of ``python -m critical.cli fit ...``: the same
    ``critical fit``, in this process (a fresh interpreter per run costs ~10 s of imports).
    Patch it in as ``monkeypatch.setattr(critical.sweep.runner, "subprocess",
    SimpleNamespace(run=fit_in_process, STDOUT=subprocess.STDOUT))``."""
    import contextlib
    import subprocess

    from critical.cli import main as critical_main

    assert cmd[1:4] == ["-m", "critical.cli", "fit"]
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stdout):
        rc = critical_main(cmd[3:])
    return subprocess.CompletedProcess(cmd, rc)


#: ``critical fit`` flags for a tiny, quiet run of experiments/quickstart.yaml in a sweep test
TINY_FIT_ARGS = [
    "--robustness.when=never",
    "--trainer.enable_progress_bar=false",
    "--trainer.enable_model_summary=false",
    "--data.image_size=8",
    "--run.plot=false",
    "--run.tensorboard=false",
]
