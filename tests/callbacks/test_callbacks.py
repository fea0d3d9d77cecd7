"""The metric callbacks in real (tiny, CPU) Lightning fits."""

import itertools
import math
import warnings

import pytest
import torch
from helpers import TinyDataModule, TinyModule, tiny_trainer
from lightning.pytorch.callbacks import Callback

from critical.callbacks import (
    GradientConfusion,
    GradientNorm,
    GradientPredictability,
    LayerRotation,
)
from critical.metrics import gradient_confusion, gradient_layout, layer_rotation, weight_layout


class GradRecorder(Callback):
    """Records every optimizer step's flat gradient (reference for the streaming callbacks)."""

    def __init__(self):
        self.grads = {}  # epoch -> list of flat grads

    def on_before_optimizer_step(self, trainer, pl_module, optimizer):
        lay = gradient_layout(pl_module)
        flat = torch.cat([p.grad.reshape(-1) for p in lay.params]).double()
        self.grads.setdefault(trainer.current_epoch, []).append(flat)


def test_one_history_entry_per_epoch_and_logged(tmp_path):
    cbs = [GradientConfusion(), GradientPredictability(), LayerRotation(log_layers=True)]
    trainer = tiny_trainer(tmp_path, max_epochs=3, callbacks=cbs)
    trainer.fit(TinyModule(), TinyDataModule(n=64, batch_size=8))
    for cb in cbs:
        assert [h["epoch"] for h in cb.history] == [0, 1, 2]
        for name in cb.metric_names:
            assert all(math.isfinite(h[name]) for h in cb.history)
            assert f"critical/{name}" in trainer.callback_metrics
    assert "critical/layer_rotation/net.conv.weight" in trainer.callback_metrics
    rot = [h["layer_rotation"] for h in cbs[2].history]
    assert 0 < rot[0] < rot[1] < rot[2] < 2  # weights keep turning away from theta_0
    for h in cbs[0].history:
        assert -1 <= h["gradient_confusion/min"] <= h["gradient_confusion/mean"] <= 1


def test_stream_values_match_brute_force_on_the_same_gradients(tmp_path):
    rec = GradRecorder()
    # every step probed, sketch exact
    gc = GradientConfusion(max_probes=100, max_share=1, sketch_dim=4096)
    gp = GradientPredictability(max_probes=100, max_share=1)
    trainer = tiny_trainer(tmp_path, max_epochs=2, callbacks=[rec, gc, gp])
    module = TinyModule()
    trainer.fit(module, TinyDataModule(n=64, batch_size=8))
    lengths = gradient_layout(module).lengths
    for epoch in (0, 1):
        g = torch.stack(rec.grads[epoch])
        assert gc.history[epoch]["probes"] == len(g) == 8
        ref = gradient_confusion(g, lengths)
        assert gc.history[epoch]["gradient_confusion/mean"] == pytest.approx(
            ref.mean.item(), abs=1e-5
        )
        assert gc.history[epoch]["gradient_confusion/min"] == pytest.approx(
            ref.min.item(), abs=1e-5
        )
        assert gc.history[epoch]["layers"]["gradient_confusion/mean"] == pytest.approx(
            ref.layer_mean.tolist(), abs=1e-5
        )
        cos = [
            torch.nn.functional.cosine_similarity(a, b, dim=0).item()
            for a, b in itertools.pairwise(g)
        ]
        assert gp.history[epoch]["probes"] == 7
        assert gp.history[epoch]["gradient_predictability"] == pytest.approx(
            sum(cos) / len(cos), abs=1e-5
        )


def test_probe_schedule_is_bounded_and_spread(tmp_path):
    rec = GradRecorder()
    gc = GradientConfusion(max_probes=3)
    gp = GradientPredictability(max_probes=2)
    trainer = tiny_trainer(tmp_path, max_epochs=1, callbacks=[rec, gc, gp])
    trainer.fit(TinyModule(), TinyDataModule(n=96, batch_size=8))  # 12 steps: stride 4
    assert gc.history[0]["probes"] == 3
    assert gp.history[0]["probes"] == 2
    g = torch.stack(rec.grads[0])
    ref = gradient_confusion(g[[0, 4, 8]])
    assert gc.history[0]["gradient_confusion/mean"] == pytest.approx(ref.mean.item(), abs=1e-5)


def test_gradient_accumulation_probes_optimizer_steps(tmp_path):
    gc = GradientConfusion(max_probes=100)
    trainer = tiny_trainer(tmp_path, max_epochs=1, callbacks=[gc], accumulate_grad_batches=2)
    trainer.fit(TinyModule(), TinyDataModule(n=64, batch_size=8))
    assert gc.history[0]["probes"] == 4  # 8 batches, 4 optimizer steps


def test_exact_mode_matches_manual_gradients(tmp_path):
    dm = TinyDataModule(n=64, batch_size=8)
    x, y = dm.x, dm.y
    batches = [(x[i : i + 8], y[i : i + 8]) for i in range(0, 32, 8)]
    gc = GradientConfusion(mode="exact", probe_batches=batches)
    module = TinyModule()
    trainer = tiny_trainer(tmp_path, max_epochs=2, callbacks=[gc])
    trainer.fit(module, dm)
    lay = gradient_layout(module)
    grads = []
    for xb, yb in batches:
        loss = torch.nn.functional.cross_entropy(module(xb), yb)
        grads.append(torch.cat([g.reshape(-1) for g in torch.autograd.grad(loss, lay.params)]))
    ref = gradient_confusion(torch.stack(grads).double(), lay.lengths)
    last = gc.history[-1]
    assert last["probes"] == 4
    assert last["gradient_confusion/mean"] == pytest.approx(ref.mean.item(), abs=1e-5)
    assert last["gradient_confusion/min"] == pytest.approx(ref.min.item(), abs=1e-5)
    # the probe passes do not disturb the module: BN statistics restored, .grad untouched
    bn_mean = module.net.bn.running_mean.clone()
    for p in module.parameters():
        p.grad = torch.full_like(p, 0.5)
    grads_before = [p.grad.clone() for p in module.parameters()]
    again = gc._exact(trainer, module)
    assert again["mean"] == pytest.approx(last["gradient_confusion/mean"], abs=1e-6)
    assert torch.equal(module.net.bn.running_mean, bn_mean)
    assert all(torch.equal(p.grad, g) for p, g in zip(module.parameters(), grads_before))
    module.eval()
    gc._exact(trainer, module)
    assert module.training is False


def test_exact_mode_uses_first_train_batches_by_default(tmp_path):
    gc = GradientConfusion(mode="exact", exact_batches=3)
    trainer = tiny_trainer(tmp_path, max_epochs=2, callbacks=[gc])
    trainer.fit(TinyModule(), TinyDataModule(n=64, batch_size=8))
    assert len(gc.probe_batches) == 3 and [h["probes"] for h in gc.history] == [3, 3]


class NaNInjector(Callback):
    """Poisons the gradient of one step before the metric callbacks read it..."""

    def __init__(self, step):
        self.step, self.n = step, 0

    def on_before_optimizer_step(self, trainer, pl_module, optimizer):
        if self.n == self.step:
            pl_module.net.fc.weight.grad[0, 0] = float("nan")
        self.n += 1


class NaNCleaner(Callback):
    """...and cleans it after, so the optimizer step stays finite."""

    def on_before_optimizer_step(self, trainer, pl_module, optimizer):
        for p in pl_module.parameters():
            p.grad.nan_to_num_(0.0)


def test_non_finite_gradient_is_skipped_with_one_warning(tmp_path):
    gc = GradientConfusion(max_probes=100, max_share=1)
    gp = GradientPredictability(max_probes=100, max_share=1)
    trainer = tiny_trainer(tmp_path, max_epochs=2, callbacks=[NaNInjector(3), gc, gp, NaNCleaner()])
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        trainer.fit(TinyModule(), TinyDataModule(n=64, batch_size=8))
    msgs = [str(x.message) for x in w if "non-finite" in str(x.message)]
    assert len(msgs) == 2  # one per callback
    assert [h["probes"] for h in gc.history] == [7, 8]
    assert [h["probes"] for h in gp.history] == [5, 7]  # pairs (2,3) and (3,4) skipped
    assert all(math.isfinite(h["gradient_confusion/mean"]) for h in gc.history)


def test_zero_gradients_and_frozen_parameters(tmp_path):
    module = TinyModule()
    module.net.conv.weight.requires_grad_(False)  # frozen: ignored
    gc = GradientConfusion(log_layers=True)
    lr = LayerRotation()
    trainer = tiny_trainer(tmp_path, max_epochs=1, callbacks=[gc, lr])
    trainer.fit(module, TinyDataModule())
    assert "net.conv.weight" not in lr.layer_names and "net.fc.weight" in lr.layer_names
    assert math.isfinite(gc.history[0]["gradient_confusion/mean"])

    class ZeroGrad(Callback):
        def on_before_optimizer_step(self, trainer, pl_module, optimizer):
            for p in pl_module.parameters():
                if p.grad is not None:
                    p.grad.zero_()

    gc2 = GradientConfusion()
    trainer = tiny_trainer(tmp_path, max_epochs=1, callbacks=[ZeroGrad(), gc2])
    trainer.fit(TinyModule(), TinyDataModule())
    assert gc2.history[0]["gradient_confusion/mean"] == 0.0  # no NaN, no division by zero


def test_no_trainable_parameters_is_a_clear_error(tmp_path):
    module = TinyModule().requires_grad_(False)
    trainer = tiny_trainer(tmp_path)
    for cb in (GradientConfusion(), GradientPredictability(), LayerRotation()):
        with pytest.raises(ValueError, match="no trainable parameters"):
            cb.on_fit_start(trainer, module)


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: GradientConfusion(mode="fast"), r"\['stream', 'exact'\]"),
        (lambda: GradientConfusion(max_probes=1), "max_probes"),
        (lambda: GradientConfusion(sketch_dim=-1), "sketch_dim"),
        (lambda: GradientConfusion(state_dtype="int8"), "float32"),
        (lambda: GradientPredictability(max_probes=0), "max_probes"),
        (lambda: GradientPredictability(probe_every=0), "probe_every"),
        (lambda: GradientNorm(max_share=0), "max_share"),
        (lambda: GradientConfusion(max_share=1.5), "max_share"),
        (lambda: LayerRotation(include="biases"), r"\['weights', 'all'\]"),
        (lambda: LayerRotation(aggregate="sum"), r"\['mean', 'median', 'max'\]"),
    ],
)
def test_invalid_arguments(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_reduced_precision_cpu_state(tmp_path):
    lr = LayerRotation(state_dtype="bfloat16", state_device="cpu")
    gc = GradientConfusion(state_dtype="bfloat16", state_device="cpu")
    module = TinyModule()
    trainer = tiny_trainer(tmp_path, max_epochs=2, callbacks=[lr, gc])
    theta0 = torch.cat([p.detach().reshape(-1).clone() for p in weight_layout(module).params])
    trainer.fit(module, TinyDataModule())
    assert lr.theta0.dtype == torch.bfloat16
    theta = torch.cat([p.detach().reshape(-1) for p in weight_layout(module).params])
    ref = layer_rotation(theta0, theta, weight_layout(module).lengths).mean().item()
    assert lr.history[-1]["layer_rotation"] == pytest.approx(ref, abs=5e-3)
    assert math.isfinite(gc.history[-1]["gradient_confusion/mean"])


def test_gradient_norm_matches_the_gradients_it_read(tmp_path):
    """GradientNorm's epoch value is the RMS of the probed steps' whole-model gradient norms."""
    seen = []

    class Spy(Callback):
        def on_before_optimizer_step(self, trainer, pl_module, optimizer):
            g = torch.cat(
                [p.grad.reshape(-1) for p in pl_module.parameters() if p.grad is not None]
            )
            seen.append(float(g.norm()))

    gn = GradientNorm(max_probes=1000, log_layers=True)
    trainer = tiny_trainer(tmp_path, max_epochs=2, callbacks=[Spy(), gn])
    trainer.fit(TinyModule(lr=0.05), TinyDataModule(n=64))
    per_epoch = len(seen) // 2
    for e in range(2):
        norms = torch.tensor(seen[e * per_epoch : (e + 1) * per_epoch], dtype=torch.float64)
        assert gn.history[e]["gradient_norm"] == pytest.approx(
            float(norms.square().mean().sqrt()), rel=1e-5
        )
    layers = gn.history[-1]["layers"]["gradient_norm"]
    assert len(layers) == len(gn.layer_names) and all(v > 0 for v in layers)
    assert "critical/gradient_norm" in trainer.callback_metrics


# ---------------------------------------------------------------------------- instance names
def test_two_instances_logging_the_same_keys_are_an_error_at_fit_start(tmp_path):
    """(#20.12) Lightning would average the two instances' values into one key."""
    trainer = tiny_trainer(
        tmp_path, callbacks=[GradientConfusion(), GradientConfusion(mode="exact")]
    )
    with pytest.raises(ValueError, match=r"both log critical/gradient_confusion/max.*`name`"):
        trainer.fit(TinyModule(), TinyDataModule())


def test_a_named_instance_logs_and_serves_its_own_keys(tmp_path):
    from critical.callbacks import CriticalPeriod

    stream = GradientConfusion(max_probes=4, sketch_dim=64)
    exact = GradientConfusion(mode="exact", name="exact", exact_batches=3)
    rot, rot_all = LayerRotation(), LayerRotation(include="all", name="all")
    cp = CriticalPeriod(monitor="gradient_confusion@exact/mean", guard_learning=False)
    trainer = tiny_trainer(tmp_path, max_epochs=2, callbacks=[stream, exact, rot, rot_all, cp])
    trainer.fit(TinyModule(), TinyDataModule())
    logged = trainer.logged_metrics
    plain, named = "critical/gradient_confusion/mean", "critical/gradient_confusion@exact/mean"
    assert float(logged[plain]) == pytest.approx(stream.history[-1]["gradient_confusion/mean"])
    assert float(logged[named]) == pytest.approx(exact.history[-1]["gradient_confusion@exact/mean"])
    assert float(logged[plain]) != pytest.approx(float(logged[named]), abs=1e-3)
    assert float(logged["critical/layer_rotation@all"]) != float(logged["critical/layer_rotation"])
    assert exact.metric_names == tuple(
        f"gradient_confusion@exact/{s}" for s in ("mean", "min", "max")
    )
    # the detector reads the named instance's value
    values = [e["values"]["gradient_confusion@exact/mean"] for e in cp.detector.history]
    assert values == pytest.approx([h["gradient_confusion@exact/mean"] for h in exact.history])


def test_a_name_must_be_a_plain_string():
    with pytest.raises(ValueError, match="name"):
        GradientNorm(name="a/b")
