"""(#20.1) Callback objects reused for a second ``Trainer(...).fit`` (the notebook pattern) start
clean: fresh histories, theta_0 and probe state, unless the fit resumes from a checkpoint."""

from __future__ import annotations

import pytest
import torch
from helpers import TinyModule, make_images, tiny_trainer
from lightning.pytorch.callbacks import ModelCheckpoint
from torch.utils.data import DataLoader, TensorDataset

from critical.callbacks import (
    GradientConfusion,
    GradientNorm,
    GradientPredictability,
    LayerRotation,
)


def metric_callbacks():
    return [
        GradientConfusion(sketch_dim=64, max_probes=3),
        GradientPredictability(max_probes=3),
        GradientNorm(max_probes=3),
        LayerRotation(),
    ]


def batches():
    x, y = make_images(64)
    return DataLoader(TensorDataset(x, y), batch_size=8)  # fixed order: runs are comparable


def run(tmp_path, callbacks, seed: int, epochs: int = 2, ckpt: str | None = None, **kw):
    torch.manual_seed(seed)
    module = TinyModule()  # the seed sets its initial weights
    trainer = tiny_trainer(
        tmp_path, max_epochs=epochs, callbacks=callbacks, limit_val_batches=0, **kw
    )
    trainer.fit(module, batches(), ckpt_path=ckpt)


def flat(h: dict) -> dict:
    """A history entry with its per-layer values as top-level keys (pytest.approx is flat)."""
    out = {k: v for k, v in h.items() if k != "layers"}
    for key, values in h.get("layers", {}).items():
        out.update({f"{key}[{i}]": v for i, v in enumerate(values)})
    return out


def same(a: list[dict], b: list[dict]) -> bool:
    fa, fb = [flat(h) for h in a], [flat(h) for h in b]
    if [set(h) for h in fa] != [set(h) for h in fb]:
        return False
    return all(hb == pytest.approx(ha, abs=1e-6) for ha, hb in zip(fa, fb))


def test_reused_callbacks_measure_the_second_model_as_fresh_ones_do(tmp_path):
    reused = metric_callbacks()
    run(tmp_path / "first", reused, seed=0)
    first = [list(cb.history) for cb in reused]
    run(tmp_path / "second", reused, seed=1)  # another model: other initial weights
    fresh = metric_callbacks()
    run(tmp_path / "fresh", fresh, seed=1)
    for a, b, before in zip(reused, fresh, first):
        assert [h["epoch"] for h in a.history] == [0, 1], type(a).__name__  # not 4 epochs
        assert same(b.history, a.history), type(a).__name__
        assert not same(before, a.history), type(a).__name__  # the first fit's values differ
    rot_reused, rot_fresh = reused[3], fresh[3]
    assert isinstance(rot_reused, LayerRotation) and isinstance(rot_fresh, LayerRotation)
    assert rot_reused.theta0 is not None and rot_fresh.theta0 is not None
    assert torch.equal(rot_reused.theta0, rot_fresh.theta0)  # the second model's initial weights


def test_a_resumed_fit_keeps_its_history_and_theta0(tmp_path):
    full = metric_callbacks()
    run(tmp_path / "full", full, seed=0, epochs=3)
    reused = metric_callbacks()
    ck = ModelCheckpoint(dirpath=tmp_path / "ck", save_top_k=-1)
    run(tmp_path / "a", [*reused, ck], seed=0, enable_checkpointing=True)
    (path,) = sorted((tmp_path / "ck").glob("epoch=1*.ckpt"))
    run(tmp_path / "other", reused, seed=5)  # the objects measure another model in between
    run(tmp_path / "b", reused, seed=7, epochs=3, ckpt=str(path))  # weights from the checkpoint
    for a, b in zip(full, reused):
        assert [h["epoch"] for h in b.history] == [0, 1, 2], type(a).__name__
        assert same(a.history, b.history), type(a).__name__
    rot_full, rot_resumed = full[3], reused[3]
    assert isinstance(rot_full, LayerRotation) and isinstance(rot_resumed, LayerRotation)
    assert rot_full.theta0 is not None and rot_resumed.theta0 is not None
    assert torch.equal(rot_full.theta0, rot_resumed.theta0)  # the first model's initial weights
