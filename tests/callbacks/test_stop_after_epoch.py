"""StopAfterEpoch: a fit ended after a given epoch, its budget and schedule those of the full run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import pytest
import torch

from critical.callbacks import StopAfterEpoch


class _Tiny(pl.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.w = torch.nn.Linear(2, 1)

    def training_step(self, batch: Any, _: int) -> torch.Tensor:
        return self.w(batch[0]).pow(2).mean()

    def configure_optimizers(self) -> Any:
        opt = torch.optim.SGD(self.parameters(), lr=1.0)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=self.trainer.max_epochs)
        return [opt], [sched]


def _fit(tmp_path: Path, callbacks: list[pl.Callback]) -> tuple[list[float], list[str]]:
    """The learning rate at each epoch's start, and the checkpoints saved."""
    seen: list[float] = []

    class Record(pl.Callback):
        def on_train_epoch_start(self, trainer: pl.Trainer, _: pl.LightningModule) -> None:
            seen.append(trainer.optimizers[0].param_groups[0]["lr"])

    ckpt = pl.callbacks.ModelCheckpoint(
        dirpath=tmp_path, filename="{epoch}", save_top_k=-1, save_on_train_epoch_end=True
    )
    trainer = pl.Trainer(
        max_epochs=6, callbacks=[*callbacks, Record(), ckpt], logger=False,
        enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path,
    )  # fmt: skip
    data = torch.utils.data.TensorDataset(torch.randn(8, 2))
    trainer.fit(_Tiny(), torch.utils.data.DataLoader(data, batch_size=4))
    return seen, sorted(p.name for p in tmp_path.glob("*.ckpt"))


def test_stops_after_the_epoch_on_the_full_runs_schedule(tmp_path: Path) -> None:
    full, _ = _fit(tmp_path / "full", [])
    cut, saved = _fit(tmp_path / "cut", [StopAfterEpoch(2)])
    assert len(full) == 6 and cut == full[:3]  # epochs 0-2, at the full run's learning rates
    assert saved == ["epoch=0.ckpt", "epoch=1.ckpt", "epoch=2.ckpt"]  # the last one included


def test_bad_argument() -> None:
    with pytest.raises(ValueError, match="`last` must be an integer >= 0"):
        StopAfterEpoch(-1)
    with pytest.raises(ValueError, match="`last` must be an integer"):
        StopAfterEpoch(1.5)  # type: ignore[arg-type]
