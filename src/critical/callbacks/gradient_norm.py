"""Gradient norm: how large the mini-batch gradients are, a proxy for the trace of the Fisher
information (Achille et al., ICLR 2019) and the signal of Accordion's critical-regime rule
(Agarwal et al., MLSys 2021)."""

from __future__ import annotations

import lightning.pytorch as pl
import torch
from typing_extensions import override

from critical.callbacks._base import EpochValues
from critical.callbacks._probe import GradientCallback
from critical.metrics.streaming import StreamingNorm


class GradientNorm(GradientCallback):
    """Logs, every epoch, the root-mean-square norm of the mini-batch gradients of the probed
    optimizer steps, whole model and per layer.

    Logged (prefix ``critical/``): ``gradient_norm`` and, with ``log_layers=True``,
    ``gradient_norm/<layer>``. The mean squared mini-batch gradient norm tracks the trace of the
    Fisher information (times 1/batch size), which rises and then falls across the critical
    period (Achille et al., 2019). Accordion (Agarwal et al., 2021) calls training *critical*
    while the epoch-to-epoch relative change of the gradient norm is at least ``eta = 0.5``
    (the example below builds that rule).

    Gradients are read in ``on_before_optimizer_step`` (after accumulation and AMP unscaling) at
    up to ``max_probes`` optimizer steps per epoch (steps with a backward pass; see
    :class:`~critical.callbacks.GradientConfusion` for the schedule); only their norms are taken
    (one fused ``_foreach_norm``, shared with the other gradient callbacks probing the same
    step), nothing is copied. Memory: ``L + 1`` floats per probe. The norm is the one before
    any gradient clipping (Lightning clips after this hook).

    Under FSDP / FSDP2 each rank takes the squared norms of the gradient elements it holds and
    the epoch's partial sums are added over the ranks at epoch end (one collective, none per
    step): the values equal a one-process run's on the same global batches. With several
    optimizers, the gradient of ``optimizer_index``'s parameters at its steps (see
    :class:`~critical.callbacks.GradientConfusion`).

    Args:
        max_probes: probed optimizer steps per epoch, >= 1.
        probe_every: probe every n-th optimizer step instead of spreading them evenly.
        max_share: at most this share of an epoch's steps is probed (but at least 4 probes).
        log_layers: also log per-layer values.
        name: names this instance: its keys become ``critical/gradient_norm@<name>`` (needed
            for a second instance; also its checkpoint key).
        optimizer_index: which optimizer's parameters and steps are followed (default the first).

    Example:
        >>> import lightning as L
        >>> from critical.callbacks import CriticalPeriod, GradientNorm
        >>> accordion = CriticalPeriod(monitor="gradient_norm", mode="relative", threshold=0.5,
        ...                            patience=1, guard_learning=False, guard_lr=False)
        >>> trainer = L.Trainer(callbacks=[GradientNorm(), accordion], logger=False)
    """

    metric_names = ("gradient_norm",)

    def __init__(
        self,
        max_probes: int = 32,
        probe_every: int | None = None,
        max_share: float = 0.125,
        log_layers: bool = False,
        name: str | None = None,
        optimizer_index: int = 0,
    ) -> None:
        super().__init__(
            max_probes, probe_every, max_share, log_layers, name, optimizer_index=optimizer_index
        )
        self._acc: StreamingNorm | None = None

    @override
    def _build(self, pl_module: pl.LightningModule, device: torch.device) -> None:
        assert self._layout is not None  # set before _build
        self._acc = StreamingNorm(self._layout.layer_of_param(), device, self._shard)

    @override
    def _on_step(self, trainer: pl.Trainer, fresh: bool) -> None:
        if not self._schedule.advance(fresh):
            return
        assert self._reader is not None and self._acc is not None  # built in on_fit_start
        self._acc.update_sq(self._reader.partial_sq_norms(trainer.global_step))

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
            self._info(out["count"]),
        )
