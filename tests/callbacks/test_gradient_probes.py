"""The gradient callbacks' probing: skipped steps, checkpoints inside an epoch, the shared read,
and exact mode leaving the module's own training untouched."""

import contextlib
import itertools
import math
import warnings

import pytest
import torch
from helpers import TinyDataModule, TinyModule, make_images, tiny_trainer
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from torch.utils.data import DataLoader, TensorDataset

from critical.callbacks import (
    GradientConfusion,
    GradientNorm,
    GradientPredictability,
    LayerRotation,
)
from critical.callbacks._probe import ProbeSchedule, shared_reader
from critical.metrics import GradientReader, gradient_confusion, gradient_layout
from critical.task import ImageClassifier


class RealGradRecorder(Callback):
    """The flat gradient of every optimizer step that had a backward pass, per epoch."""

    def __init__(self):
        self.grads = {}

    def on_before_optimizer_step(self, trainer, pl_module, optimizer):
        lay = gradient_layout(pl_module)
        if any(p.grad is None for p in lay.params):
            return
        flat = torch.cat([p.grad.reshape(-1) for p in lay.params]).double()
        self.grads.setdefault(trainer.current_epoch, []).append(flat)


class SkippingModule(TinyModule):
    """``training_step`` returns None on odd batches: Lightning skips backward and the step."""

    def training_step(self, batch, batch_idx):
        loss = super().training_step(batch, batch_idx)
        return None if batch_idx % 2 else loss


def test_schedule_moves_a_probe_past_skipped_steps():
    class T:
        num_training_batches, accumulate_grad_batches = 12, 1

    s = ProbeSchedule(max_probes=3, every=None)
    s.start_epoch(T())
    fresh = [True, True, True, True, False, False, True, True, True, True, True, True]
    assert [i for i, f in enumerate(fresh) if s.advance(f)] == [0, 6, 8]  # 4 and 5 skipped
    s.start_epoch(T())
    assert [i for i in range(12) if s.advance(True)] == [0, 4, 8]


def test_default_schedule_probes_a_small_share_of_long_and_short_epochs():
    s = ProbeSchedule(max_probes=32, every=None, max_share=0.125)
    assert s.stride_for(391) == 12  # CIFAR-10 at batch 128: 32 probes
    assert s.stride_for(100) == 7  # 13 probes, not 32 (every 3rd step)
    assert s.stride_for(16) == 4  # at least 4 probes
    assert s.stride_for(3) == 1


def test_skipped_steps_are_not_probed(tmp_path):
    """(#11.1) With half the steps skipped, the statistics are those of the real steps."""
    rec = RealGradRecorder()
    gc = GradientConfusion(max_probes=100, max_share=1, sketch_dim=4096)
    gp = GradientPredictability(max_probes=100, max_share=1)
    gn = GradientNorm(max_probes=100, max_share=1)
    trainer = tiny_trainer(tmp_path, max_epochs=2, callbacks=[rec, gc, gp, gn])
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*returned `None`")
        trainer.fit(SkippingModule(), TinyDataModule(n=64, batch_size=8))  # 8 batches, 4 real
    lengths = gradient_layout(trainer.lightning_module).lengths
    for epoch in (0, 1):
        g = torch.stack(rec.grads[epoch])
        assert len(g) == 4
        ref = gradient_confusion(g, lengths)
        h = gc.history[epoch]
        assert h["probes"] == 4
        assert h["gradient_confusion/mean"] == pytest.approx(ref.mean.item(), abs=1e-5)
        assert h["gradient_confusion/min"] == pytest.approx(ref.min.item(), abs=1e-5)
        cos = [
            torch.nn.functional.cosine_similarity(a, b, dim=0).item()
            for a, b in itertools.pairwise(g)
        ]
        assert gp.history[epoch]["probes"] == 3  # consecutive real steps
        assert gp.history[epoch]["gradient_predictability"] == pytest.approx(sum(cos) / 3, abs=1e-5)
        rms = float(g.norm(dim=1).square().mean().sqrt())
        assert gn.history[epoch]["probes"] == 4
        assert gn.history[epoch]["gradient_norm"] == pytest.approx(rms, rel=1e-5)


def test_reader_norms_and_flat_gradient_channels_last_included():
    net = torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3),
        torch.nn.BatchNorm2d(4),
        torch.nn.Flatten(),
        torch.nn.LazyLinear(2),
    )
    net(torch.rand(2, 3, 6, 6))
    net[0].to(memory_format=torch.channels_last)
    net(torch.rand(2, 3, 6, 6).contiguous(memory_format=torch.channels_last)).sum().backward()
    net[3].bias.grad[0] = float("nan")
    lay = gradient_layout(net)
    reader = GradientReader(lay)
    sq, finite = reader.sq_norms(token=1)
    assert reader.sq_norms(token=1)[0] is sq  # one read per token
    assert not bool(finite)
    net[3].bias.grad[0] = 0.0
    sq, finite = reader.sq_norms(token=2)
    per_layer = [sum(float(p.grad.double().square().sum()) for p in m.parameters()) for m in net]
    per_layer = [v for v in per_layer if v]  # the Flatten has no parameters
    assert bool(finite) and sq.tolist() == pytest.approx([sum(per_layer), *per_layer], rel=1e-5)
    flat = reader.flat(token=2)
    assert net[0].weight.grad.stride() != net[0].weight.grad.contiguous().stride()
    segments = torch.split(flat, lay.lengths)
    assert [float(s.double().square().sum()) for s in segments] == pytest.approx(per_layer)
    ref = torch.cat([p.grad.permute(0, 2, 3, 1).reshape(-1) for p in lay.params[:1]])
    assert torch.equal(segments[0][: ref.numel()], ref)  # conv weight in memory order


def test_gradient_callbacks_share_one_read(tmp_path):
    gc, gp, gn = GradientConfusion(), GradientPredictability(), GradientNorm()
    trainer = tiny_trainer(tmp_path, max_epochs=1, callbacks=[gc, gp, gn])
    trainer.fit(TinyModule(), TinyDataModule(n=64, batch_size=8))
    assert gc._reader is gp._reader is gn._reader
    assert isinstance(gc._reader, GradientReader)
    other = GradientConfusion(state_dtype="bfloat16")
    lay = gradient_layout(trainer.lightning_module)
    assert shared_reader(trainer, lay, torch.bfloat16, torch.device("cpu")) is not gc._reader
    assert shared_reader(trainer, lay, torch.float32, torch.device("cpu")) is gc._reader
    assert other.state_dtype == torch.bfloat16


@contextlib.contextmanager
def host_syncs_forbidden():
    """Tensor -> Python conversions (which synchronise with a GPU) raise inside the block."""

    def forbidden(*args, **kwargs):
        raise AssertionError("host synchronisation on the hot path")

    names = ("item", "tolist", "numpy", "__bool__", "__float__", "__int__")
    saved = {n: getattr(torch.Tensor, n) for n in names}
    for n in names:
        setattr(torch.Tensor, n, forbidden)
    try:
        yield
    finally:
        for n, f in saved.items():
            setattr(torch.Tensor, n, f)


def test_no_tensor_to_python_conversion_between_epoch_start_and_end(tmp_path):
    """The CPU stand-in for ``torch.cuda.set_sync_debug_mode("error")``: the hooks that run
    inside an epoch never turn a tensor into a Python value."""
    cbs = [
        GradientConfusion(max_share=1),
        GradientPredictability(max_share=1),
        GradientNorm(max_share=1),
        LayerRotation(),
    ]
    for cb in cbs:
        for hook in ("on_train_epoch_start", "on_after_backward", "on_before_optimizer_step"):
            fn = getattr(cb, hook)
            if fn is None:
                continue

            def guarded(*a, __fn=fn, **k):
                with host_syncs_forbidden():
                    return __fn(*a, **k)

            setattr(cb, hook, guarded)
    trainer = tiny_trainer(tmp_path, max_epochs=2, callbacks=cbs)
    trainer.fit(TinyModule(), TinyDataModule(n=64, batch_size=8))
    assert [h["probes"] for h in cbs[0].history] == [8, 8]
    assert all(len(cb.history) == 2 for cb in cbs)


# ---------------------------------------------------------------------------- checkpoints
def identical_batches(n_batches=8, batch_size=8):
    """Every batch the same images: a step's gradient depends only on the weights, so a resumed
    run (whose data iterator restarts) sees what an uninterrupted one sees."""
    x, y = make_images(batch_size, seed=1)
    ds = TensorDataset(x.repeat(n_batches, 1, 1, 1), y.repeat(n_batches))
    return DataLoader(ds, batch_size=batch_size, shuffle=False)


def probes():
    return [
        GradientConfusion(max_probes=3, sketch_dim=64),
        GradientPredictability(max_probes=3),
        GradientNorm(max_probes=3),
        LayerRotation(),
    ]


def comparable(history):
    return [{k: v for k, v in h.items() if k != "layers"} for h in history]


@pytest.mark.parametrize(
    "where", ["mid_epoch", "after_last_step"], ids=["every_n_train_steps", "val_end"]
)
def test_resume_inside_an_epoch_completes_its_statistics(tmp_path, where):
    """(#11.6) Resumed from a checkpoint taken inside epoch 1, the gradient callbacks report for
    epoch 1 what an uninterrupted run reports."""
    torch.manual_seed(0)
    full = probes()
    tiny_trainer(tmp_path / "a", max_epochs=2, callbacks=full, limit_val_batches=0).fit(
        TinyModule(), identical_batches()
    )
    if where == "mid_epoch":  # epoch 1 after its step 4 (which opens a predictability pair)
        ckpt = ModelCheckpoint(dirpath=tmp_path / "ck", every_n_train_steps=13, save_top_k=-1)
        kw, val = {"limit_val_batches": 0}, None
    else:  # validation every 2nd epoch: saved after epoch 1's last step, before its epoch end
        ckpt = ModelCheckpoint(dirpath=tmp_path / "ck", save_top_k=-1)
        kw, val = {"check_val_every_n_epoch": 2}, identical_batches(1)
    trainer = tiny_trainer(
        tmp_path / "b", max_epochs=2, callbacks=[*probes(), ckpt], enable_checkpointing=True, **kw
    )
    torch.manual_seed(0)
    trainer.fit(TinyModule(), identical_batches(), val)
    (path,) = sorted((tmp_path / "ck").glob("*.ckpt"))
    resumed = probes()
    trainer = tiny_trainer(tmp_path / "c", max_epochs=2, callbacks=resumed, **kw)
    trainer.fit(TinyModule(), identical_batches(), val, ckpt_path=str(path))
    for a, b in zip(full, resumed):
        assert [h["epoch"] for h in b.history] == [0, 1]
        for ha, hb in zip(comparable(a.history), comparable(b.history)):
            assert hb == pytest.approx(ha, abs=1e-6), type(a).__name__
    assert full[1].history[1]["probes"] == 3


def test_resume_without_the_epoch_state_marks_the_epoch_partial(tmp_path):
    ckpt = ModelCheckpoint(dirpath=tmp_path / "ck", every_n_train_steps=12, save_top_k=-1)
    trainer = tiny_trainer(
        tmp_path / "a",
        max_epochs=2,
        callbacks=[ckpt],
        enable_checkpointing=True,
        limit_val_batches=0,
    )
    trainer.fit(TinyModule(), identical_batches())  # no metric callback in the checkpoint
    (path,) = sorted((tmp_path / "ck").glob("*.ckpt"))
    gc = GradientConfusion(max_probes=3)
    trainer = tiny_trainer(tmp_path / "b", max_epochs=2, callbacks=[gc], limit_val_batches=0)
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        trainer.fit(TinyModule(), identical_batches(), ckpt_path=str(path))
    assert [h["epoch"] for h in gc.history] == [1]
    assert gc.history[0]["partial"] is True and gc.history[0]["probes"] == 2
    assert any("partial" in str(x.message) for x in w)


# ---------------------------------------------------------------------------- exact mode
def test_exact_mode_leaves_the_module_training_untouched(tmp_path):
    """(#11.8) The extra passes of exact mode change neither the module's train accuracy
    (torchmetrics state), nor its batch-norm statistics, nor the random data order."""
    results = []
    for callbacks in ([], [GradientConfusion(mode="exact", exact_batches=3)]):
        torch.manual_seed(0)
        module = ImageClassifier("small_cnn", num_classes=4, in_chans=3, img_size=8, lr=0.05)
        trainer = tiny_trainer(tmp_path, max_epochs=2, callbacks=callbacks)
        trainer.fit(module, TinyDataModule(n=64, batch_size=8))
        results.append(
            (
                float(trainer.callback_metrics["train/acc"]),
                float(trainer.callback_metrics["train/loss"]),
                [p.detach().clone() for p in module.parameters()],
            )
        )
        if callbacks:
            assert all(math.isfinite(h["gradient_confusion/mean"]) for h in callbacks[0].history)
    (acc0, loss0, w0), (acc1, loss1, w1) = results
    assert acc1 == acc0
    assert loss1 == pytest.approx(loss0, abs=1e-6)
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(w0, w1))
