"""(#20.3) Manual optimization with two optimizers (a GAN's generator and discriminator): the
gradient callbacks follow one optimizer (the first by default): its parameters, at its steps.
The whole model's ``.grad`` at the generator's step still holds the discriminator's gradient of
another loss; reading it gave a value matching no definition."""

from __future__ import annotations

import math

import lightning as L
import pytest
import torch
from helpers import tiny_trainer
from lightning.pytorch.callbacks import Callback
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, TensorDataset

from critical.callbacks import GradientConfusion, GradientNorm, GradientPredictability


class GAN(L.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.automatic_optimization = False
        self.gen = nn.Sequential(nn.Linear(4, 16), nn.Tanh(), nn.Linear(16, 4))
        self.disc = nn.Sequential(nn.Linear(4, 16), nn.Tanh(), nn.Linear(16, 1))

    def training_step(self, batch, batch_idx):
        (x,) = batch
        opt_g, opt_d = self.optimizers()
        ones, zeros = torch.ones(len(x), 1), torch.zeros(len(x), 1)
        fake = self.gen(torch.randn(len(x), 4))
        g_loss = F.binary_cross_entropy_with_logits(self.disc(fake), ones)
        opt_g.zero_grad()
        self.manual_backward(g_loss)  # also leaves a gradient on the discriminator
        opt_g.step()
        d_loss = F.binary_cross_entropy_with_logits(
            self.disc(x), ones
        ) + F.binary_cross_entropy_with_logits(self.disc(fake.detach()), zeros)
        opt_d.zero_grad()
        self.manual_backward(d_loss)
        opt_d.step()

    def configure_optimizers(self):
        return [
            torch.optim.SGD(self.gen.parameters(), lr=0.1),
            torch.optim.SGD(self.disc.parameters(), lr=0.1),
        ]


class Record(Callback):
    """Per optimizer, the gradients of its parameters at each of its steps; and the whole
    model's at every optimizer step (what the callbacks read before)."""

    def __init__(self) -> None:
        self.grads: dict[str, list[list[torch.Tensor]]] = {"0": [], "1": [], "whole": []}

    def on_train_epoch_start(self, trainer, pl_module):
        for v in self.grads.values():
            v.append([])

    def on_before_optimizer_step(self, trainer, pl_module, optimizer):
        i = next(i for i, o in enumerate(trainer.optimizers) if o is optimizer)
        params = [p for g in optimizer.param_groups for p in g["params"]]
        self.grads[str(i)][-1].append(flat(params))
        self.grads["whole"][-1].append(flat(list(pl_module.parameters())))


def flat(params) -> torch.Tensor:
    return torch.cat(
        [(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1) for p in params]
    ).double()


def cos(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(a @ b / (a.norm() * b.norm()))


def reference(grads: list[torch.Tensor]) -> dict[str, float]:
    n = len(grads)
    pairs = [cos(grads[i], grads[j]) for i in range(n) for j in range(n) if i != j]
    return {
        "gradient_confusion/mean": sum(pairs) / len(pairs),
        "gradient_confusion/min": min(pairs),
        "gradient_confusion/max": max(pairs),
        "gradient_predictability": sum(cos(grads[i], grads[i + 1]) for i in range(n - 1)) / (n - 1),
        "gradient_norm": math.sqrt(sum(float(g @ g) for g in grads) / n),
    }


def every_step(**kw):  # every step probed; the sketch is exact for these small layers
    return [
        GradientConfusion(probe_every=1, max_probes=100, sketch_dim=4096, **kw),
        GradientPredictability(probe_every=1, max_probes=100, **kw),
        GradientNorm(probe_every=1, max_probes=100, **kw),
    ]


def test_each_optimizer_is_measured_on_its_own_parameters_and_steps(tmp_path):
    gen, disc, rec = every_step(), every_step(optimizer_index=1, name="disc"), Record()
    torch.manual_seed(0)
    data = DataLoader(TensorDataset(torch.randn(48, 4) + 2), batch_size=8)
    tiny_trainer(tmp_path, max_epochs=2, callbacks=[*gen, *disc, rec]).fit(GAN(), data)
    for cbs, key, suffix in ((gen, "0", ""), (disc, "1", "@disc")):
        for epoch in range(2):
            ref = reference(rec.grads[key][epoch])
            got = {k: v for cb in cbs for k, v in cb.history[epoch].items()}
            for name, value in ref.items():
                head, sep, tail = name.partition("/")
                assert got[f"{head}{suffix}{sep}{tail}"] == pytest.approx(value, abs=1e-5), name
            assert cbs[0].history[epoch]["probes"] == 6  # one per batch: that optimizer's steps
    # the whole model's .grad at every optimizer step (what was read before) is another thing
    before = reference(rec.grads["whole"][0])["gradient_predictability"]
    assert abs(before - reference(rec.grads["0"][0])["gradient_predictability"]) > 0.1


def test_an_optimizer_index_out_of_range_is_a_clear_error(tmp_path):
    data = DataLoader(TensorDataset(torch.randn(16, 4)), batch_size=8)
    trainer = tiny_trainer(tmp_path, max_epochs=1, callbacks=[GradientNorm(optimizer_index=2)])
    with pytest.raises(ValueError, match=r"optimizer_index=2.*2 optimizer"):
        trainer.fit(GAN(), data)
