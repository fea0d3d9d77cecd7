"""Gradient predictability (after Chen, Yuille & Zhou, ICLR 2023): does the next step's gradient
point where this one did?"""

from __future__ import annotations

import lightning.pytorch as pl
import torch
from typing_extensions import override

from critical.callbacks._base import EpochValues, MetricCallback, ProbeSchedule, read_into
from critical.metrics.layers import ParamLayout, gradient_layout
from critical.metrics.streaming import StreamingCosine
from critical.validation import check_int


class GradientPredictability(MetricCallback):
    """Logs, every epoch, the mean cosine between the gradient of a step and of the next step.

    Logged (prefix ``critical/``): ``gradient_predictability`` (whole model) and, with
    ``log_layers=True``, ``gradient_predictability/<layer>``.

    Gradients are read in ``on_before_optimizer_step`` (after accumulation and AMP unscaling) at
    up to ``max_probes`` pairs of consecutive optimizer steps ``(s, s + 1)`` spread over the epoch;
    nothing extra is computed. A pair with a non-finite gradient is skipped (one warning).

    Memory: 2 P elements of ``state_dtype`` on ``state_device`` (this step's and the previous
    probed step's gradient).

    Args:
        max_probes: pairs of consecutive steps per epoch, >= 1.
        probe_every: start a pair every n-th optimizer step instead of spreading them evenly.
        log_layers: also log per-layer values.
        state_device: device of the O(P) state (default: the module's).
        state_dtype: ``"float32"`` (default), ``"bfloat16"``, ``"float16"`` or ``"float64"``.
        name: distinguishes two instances in checkpoints.

    Example:
        >>> import lightning as L
        >>> from critical.callbacks import GradientPredictability
        >>> trainer = L.Trainer(callbacks=[GradientPredictability()], logger=False)
    """

    metric_names = ("gradient_predictability",)

    def __init__(
        self,
        max_probes: int = 32,
        probe_every: int | None = None,
        log_layers: bool = False,
        state_device: str | torch.device | None = None,
        state_dtype: str | torch.dtype = "float32",
        name: str | None = None,
    ) -> None:
        super().__init__(log_layers, name, state_device, state_dtype)
        self.max_probes = check_int("max_probes", max_probes, 1)
        self.probe_every = check_int("probe_every", probe_every, 1, allow_none=True)
        self._schedule = ProbeSchedule(self.max_probes, self.probe_every)
        self._layout: ParamLayout | None = None
        self._acc: StreamingCosine | None = None
        self._bufs: list[torch.Tensor] = []
        self._views: list[list[torch.Tensor]] = []
        self._norms: list[torch.Tensor | None] = [None, None]
        self._cur = 0
        self._prev_step: int | None = None
        self._step = 0

    @override
    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._layout = gradient_layout(pl_module)
        self.layer_names = list(self._layout.names)
        dev = self._state_device(pl_module)
        self._bufs = [self._layout.new_buffer(self.state_dtype, dev) for _ in range(2)]
        self._views = [self._layout.param_views(b) for b in self._bufs]
        self._acc = StreamingCosine(self._layout.lengths, dev)

    @override
    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._step = 0
        self._prev_step = None
        self._schedule.start_epoch(trainer)
        assert self._acc is not None  # built in on_fit_start
        self._acc.reset()

    @override
    def on_before_optimizer_step(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, optimizer: torch.optim.Optimizer
    ) -> None:
        step, self._step = self._step, self._step + 1
        closes_pair = self._prev_step == step - 1
        if not (closes_pair or self._schedule.is_probe(step)):
            return
        cur, prev = self._cur, 1 - self._cur
        assert self._layout is not None and self._acc is not None  # built in on_fit_start
        read_into(self._layout, self._views[cur])
        self._norms[cur] = self._acc.layer_norms(self._bufs[cur])
        if closes_pair:
            self._acc.update(self._bufs[prev], self._bufs[cur], self._norms[prev], self._norms[cur])
        # keep this gradient only if it opens a pair (probe steps) - a closing step of a
        # stride-1 schedule is also the next probe
        self._prev_step = step if self._schedule.is_probe(step) else None
        self._cur = 1 - self._cur

    @override
    def _compute_epoch(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> EpochValues:
        assert self._acc is not None  # built in on_fit_start
        out = self._acc.compute()
        if out["skipped"]:
            self.warn_once(
                "nonfinite",
                f"GradientPredictability: skipped {out['skipped']} step pair(s) with a non-finite "
                f"gradient in epoch {trainer.current_epoch}",
            )
        return (
            {"gradient_predictability": out["mean"]},
            {"gradient_predictability": out["layer_mean"]},
            {"probes": out["count"]},
        )
