"""Gradient norm: how large the mini-batch gradients are, a proxy for the trace of the Fisher
information (Achille et al., ICLR 2019) and the signal of Accordion's critical-regime rule
(Agarwal et al., MLSys 2021)."""

from __future__ import annotations

import lightning.pytorch as pl
import torch
from typing_extensions import override

from critical.callbacks._base import EpochValues, MetricCallback, ProbeSchedule
from critical.metrics.layers import ParamLayout, gradient_layout
from critical.metrics.streaming import StreamingNorm
from critical.validation import check_int


class GradientNorm(MetricCallback):
    """Logs, every epoch, the root-mean-square norm of the mini-batch gradients of the probed
    optimizer steps, whole model and per layer.

    Logged (prefix ``critical/``): ``gradient_norm`` and, with ``log_layers=True``,
    ``gradient_norm/<layer>``. The mean squared mini-batch gradient norm tracks the trace of the
    Fisher information (times 1/batch size), which rises and then falls across the critical
    period (Achille et al., 2019). Accordion (Agarwal et al., 2021) calls training *critical*
    while the epoch-to-epoch relative change of the gradient norm is at least ``eta = 0.5``:
    ``CriticalPeriod(monitor="gradient_norm", rule="relative", threshold=0.5, patience=1)``.

    Gradients are read in ``on_before_optimizer_step`` (after accumulation and AMP unscaling) at
    up to ``max_probes`` optimizer steps per epoch; only their per-parameter norms are taken
    (one fused ``_foreach_norm``), nothing is copied. Memory: one float64 per layer.

    Args:
        max_probes: probed optimizer steps per epoch, >= 1.
        probe_every: probe every n-th optimizer step instead of spreading them evenly.
        log_layers: also log per-layer values.
        name: distinguishes two instances in checkpoints.

    Example:
        >>> import lightning as L
        >>> from critical.callbacks import GradientNorm
        >>> trainer = L.Trainer(callbacks=[GradientNorm()], logger=False)
    """

    metric_names = ("gradient_norm",)

    def __init__(
        self,
        max_probes: int = 32,
        probe_every: int | None = None,
        log_layers: bool = False,
        name: str | None = None,
    ) -> None:
        super().__init__(log_layers, name)
        self.max_probes = check_int("max_probes", max_probes, 1)
        self.probe_every = check_int("probe_every", probe_every, 1, allow_none=True)
        self._schedule = ProbeSchedule(self.max_probes, self.probe_every)
        self._layout: ParamLayout | None = None
        self._acc: StreamingNorm | None = None
        self._step = 0

    @override
    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._layout = gradient_layout(pl_module)
        self.layer_names = list(self._layout.names)
        self._acc = StreamingNorm(self._layout.layer_of_param(), pl_module.device)

    @override
    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._step = 0
        self._schedule.start_epoch(trainer)
        if self._acc is not None:
            self._acc.reset()

    @override
    @torch.no_grad()
    def on_before_optimizer_step(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, optimizer: torch.optim.Optimizer
    ) -> None:
        step, self._step = self._step, self._step + 1
        if self._acc is None or self._layout is None or not self._schedule.is_probe(step):
            return
        grads = [p.grad for p in self._layout.params]
        present = [g for g in grads if g is not None]
        if len(present) < len(grads):
            return  # no fresh gradient for every parameter: not a probe
        norms = torch._foreach_norm([g.to_dense() if g.is_sparse else g for g in present])
        self._acc.update(torch.stack(norms))

    @override
    def _compute_epoch(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> EpochValues:
        assert self._acc is not None
        out = self._acc.compute()
        if out["skipped"]:
            self.warn_once(
                "nonfinite",
                f"GradientNorm: skipped {out['skipped']} probe(s) with a non-finite gradient in "
                f"epoch {trainer.current_epoch}",
            )
        return (
            {"gradient_norm": out["norm"]},
            {"gradient_norm": out["layer_norm"]},
            {"probes": out["count"]},
        )
