"""Bank v2's runs kept across sessions (experiments/bank2/records.py) and a restored trunk's
first epochs trained again (prefix.py, stop_after.py)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import pytest
import torch
from helpers import load_script

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture()
def rec(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("BANK2_RECORDS", str(tmp_path / "records"))
    return load_script(ROOT / "experiments/bank2/records.py", "bank2_records")


def run(folder: Path, name: str, seed: int, finished: bool = True) -> None:
    d = folder / name
    d.mkdir(parents=True)
    tags = {"model": "m", "budget": 4, "seed": seed, "label": name}
    (d / "config.json").write_text(json.dumps({"tags": tags, "trainer": {"max_epochs": 4}}))
    (d / "metrics.csv").write_text("epoch,val/loss\n0,1.5\n")
    (d / "events.out.tfevents.1").write_text("large")
    if finished:
        (d / "summary.json").write_text("{}")


def test_finished_runs_kept_incrementally_and_restored(rec: Any, tmp_path: Path) -> None:
    out = tmp_path / "out"
    folder = out / "v1" / "s"
    folder.mkdir(parents=True)
    (folder / "sweep.json").write_text("{}")
    run(folder, "trunk-s0", 0)
    run(folder, "fixed-s0", 0, finished=False)  # still training: not kept
    run(folder, "trunk-s1", 1)
    (folder / "checkpoints").mkdir()
    first = rec.save(out)
    assert sorted(p.name for p in first) == ["m-E4-s0.tar.xz", "m-E4-s1.tar.xz"]
    assert rec.save(out) == []  # nothing new
    (folder / "fixed-s0" / "summary.json").write_text("{}")
    assert [p.name for p in rec.save(out)] == ["m-E4-s0.1.tar.xz"]  # only the new run

    fresh = tmp_path / "fresh"
    assert len(rec.restore(fresh)) == 3
    got = fresh / "v1" / "s"
    assert sorted(p.name for p in got.iterdir()) == ["fixed-s0", "trunk-s0", "trunk-s1"]
    assert not list(got.glob("*/events.out.tfevents*"))  # TensorBoard files are not kept
    (got / "trunk-s1" / "metrics.csv").write_text("changed")
    assert rec.restore(fresh) == []  # what is there is never overwritten
    assert (got / "trunk-s1" / "metrics.csv").read_text() == "changed"


def test_prefix_agreement() -> None:
    sys.path.insert(0, str(ROOT / "experiments/bank2"))
    try:
        prefix = load_script(ROOT / "experiments/bank2/prefix.py", "bank2_prefix")
    finally:
        sys.path.remove(str(ROOT / "experiments/bank2"))
    trunk = [{"epoch": e, "val/loss": 1.0 / (e + 1), "train/loss": ""} for e in range(4)]
    assert prefix.agree(trunk, trunk[:2])[0]
    off = [dict(trunk[0]), {**trunk[1], "val/loss": 0.51}]
    ok, how = prefix.agree(trunk, off)
    assert not ok and "epoch 1: val/loss" in how


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


def test_stop_after_epoch_keeps_the_schedule(tmp_path: Path) -> None:
    stop_after = load_script(ROOT / "experiments/bank2/stop_after.py", "bank2_stop_after")
    data = torch.utils.data.TensorDataset(torch.randn(8, 2))
    loader = torch.utils.data.DataLoader(data, batch_size=4)

    def lrs(callbacks: list) -> list[float]:
        seen: list[float] = []
        rec = pl.Callback()
        rec.on_train_epoch_start = lambda t, m: seen.append(t.optimizers[0].param_groups[0]["lr"])
        trainer = pl.Trainer(
            max_epochs=6, callbacks=[*callbacks, rec], logger=False, enable_checkpointing=False,
            enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path,
        )  # fmt: skip
        trainer.fit(_Tiny(), loader)
        return seen

    full, cut = lrs([]), lrs([stop_after.StopAfterEpoch(2)])
    assert len(cut) == 3 and cut == full[:3]  # epochs 0-2, on the full run's learning rates
    with pytest.raises(ValueError, match="last must be >= 0"):
        stop_after.StopAfterEpoch(-1)
