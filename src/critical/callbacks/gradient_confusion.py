"""Gradient confusion (Sankararaman et al., ICML 2020): do mini-batch gradients agree?"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from itertools import islice
from typing import Any

import lightning.pytorch as pl
import torch
from typing_extensions import override

from critical.callbacks._base import EpochValues, MetricCallback, ProbeSchedule, read_into
from critical.metrics.functional import gradient_confusion
from critical.metrics.layers import ParamLayout, gradient_layout
from critical.metrics.streaming import StreamingConfusion
from critical.validation import check_choice, check_int

MODES = ("stream", "exact")
LossFn = Callable[[pl.LightningModule, Any], torch.Tensor]


class GradientConfusion(MetricCallback):
    """Logs, every epoch, the mean and most negative pairwise cosine between mini-batch gradients.

    Logged (prefix ``critical/``): ``gradient_confusion/mean`` and ``gradient_confusion/min`` for
    the whole model, and with ``log_layers=True`` the same per layer (``.../<layer>``; a layer is
    a module with its own trainable parameters).

    Modes:

    * ``"stream"`` (default, no extra computation): reads the gradients training already computed,
      in ``on_before_optimizer_step`` (after accumulation and AMP unscaling), at up to
      ``max_probes`` optimizer steps spread over the epoch. The mean pairwise cosine is exact over
      the probed steps, from a running sum of unit gradients. The minimum is estimated from a
      signed-hash sketch of each probe (exact for layers of at most ``sketch_dim`` elements; see
      :class:`~critical.metrics.StreamingConfusion`). Gradients of different steps are taken at
      different weights; early in training, when weights move fast, this mixes drift into the
      statistic.
    * ``"exact"``: at each epoch end, evaluates the gradients of ``exact_batches`` fixed probe
      batches (the first batches of the train dataloader at fit start, or ``probe_batches``) at
      the frozen current weights and reports their exact mean and minimum pairwise cosine. Cost:
      ``exact_batches`` extra forward + backward passes per epoch (Fukase et al. pay a full pass
      over the training set) and ``exact_batches * P`` floats during the computation. Batch-norm
      running statistics are saved and restored; the model's ``.grad`` is not touched. The loss is
      ``loss_fn(pl_module, batch)``, by default the module's ``training_step`` with its logging
      silenced. Under DDP each rank uses its own probe batches and the gradients are averaged over
      ranks, as in training.

    Memory (P = trainable parameters, in ``state_dtype`` on ``state_device``): stream mode holds
    3 P (gradient buffer and the two running sums) plus P int32 for the sketch hash and
    ``L * sketch_dim`` floats per probe; exact mode holds ``exact_batches * P`` during the epoch-end
    computation. ``state_device="cpu"`` moves this off the accelerator at the price of a
    device-to-host copy (and synchronisation) at each probe.

    Args:
        mode: ``"stream"`` or ``"exact"``.
        max_probes: probes per epoch (stream mode), >= 2.
        probe_every: probe every n-th optimizer step instead of spreading ``max_probes`` evenly.
        sketch_dim: sketch buckets per layer for the stream-mode minimum (0: do not estimate it).
        exact_batches: number of fixed probe batches (exact mode), >= 2.
        probe_batches: the probe batches to use in exact mode instead of the first train batches.
        loss_fn: exact mode: ``loss_fn(pl_module, batch) -> loss``.
        log_layers: also log per-layer values.
        state_device: device of the O(P) state (default: the module's).
        state_dtype: ``"float32"`` (default), ``"bfloat16"``, ``"float16"`` or ``"float64"``.
        name: distinguishes two instances in checkpoints.

    Example:
        >>> import lightning as L
        >>> from critical.callbacks import GradientConfusion
        >>> trainer = L.Trainer(callbacks=[GradientConfusion(max_probes=16)], logger=False)
    """

    metric_names = ("gradient_confusion/mean", "gradient_confusion/min")

    def __init__(
        self,
        mode: str = "stream",
        max_probes: int = 32,
        probe_every: int | None = None,
        sketch_dim: int = 1024,
        exact_batches: int = 8,
        probe_batches: Iterable[Any] | None = None,
        loss_fn: LossFn | None = None,
        log_layers: bool = False,
        state_device: str | torch.device | None = None,
        state_dtype: str | torch.dtype = "float32",
        name: str | None = None,
    ) -> None:
        super().__init__(log_layers, name, state_device, state_dtype)
        self.mode = check_choice("mode", mode, MODES)
        self.max_probes = check_int("max_probes", max_probes, 2)
        self.probe_every = check_int("probe_every", probe_every, 1, allow_none=True)
        self.sketch_dim = check_int("sketch_dim", sketch_dim, 0)
        self.exact_batches = check_int("exact_batches", exact_batches, 2)
        if loss_fn is not None and not callable(loss_fn):
            raise ValueError(f"`loss_fn` must be callable, got {loss_fn!r}")
        self.loss_fn = loss_fn
        self.probe_batches = None if probe_batches is None else list(probe_batches)
        if self.probe_batches is not None and len(self.probe_batches) < 2:
            raise ValueError("`probe_batches` must hold at least 2 batches")
        self._schedule = ProbeSchedule(self.max_probes, self.probe_every)
        self._layout: ParamLayout | None = None
        self._acc: StreamingConfusion | None = None
        self._buffer: torch.Tensor | None = None
        self._views: list[torch.Tensor] = []
        self._step = 0

    @override
    def _state_key_fields(self) -> dict[str, Any]:
        return {"mode": self.mode}

    # ------------------------------------------------------------------ setup
    @override
    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._layout = gradient_layout(pl_module)
        self.layer_names = list(self._layout.names)
        if self.mode == "stream":
            dev = self._state_device(pl_module)
            self._buffer = self._layout.new_buffer(self.state_dtype, dev)
            self._views = self._layout.param_views(self._buffer)
            self._acc = StreamingConfusion(
                self._layout.lengths, self.sketch_dim, self.state_dtype, dev
            )
        elif self.loss_fn is None and not pl_module.automatic_optimization:
            raise ValueError(
                "GradientConfusion(mode='exact') needs `loss_fn` for modules with manual "
                "optimization: their training_step steps the optimizer itself"
            )

    @override
    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.mode == "exact" and self.probe_batches is None:
            loader = trainer.train_dataloader
            assert loader is not None  # built by Lightning before on_train_start
            batches = list(islice(iter(loader), self.exact_batches))
            if len(batches) < 2:
                raise ValueError(
                    f"GradientConfusion(mode='exact') needs at least 2 probe batches, the train "
                    f"dataloader gave {len(batches)}"
                )
            self.probe_batches = batches

    @override
    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._step = 0
        self._schedule.start_epoch(trainer)
        if self._acc is not None:
            self._acc.reset()

    # ------------------------------------------------------------------ hot path
    @override
    def on_before_optimizer_step(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, optimizer: torch.optim.Optimizer
    ) -> None:
        step, self._step = self._step, self._step + 1
        if self._acc is None or not self._schedule.is_probe(step):
            return
        assert self._layout is not None and self._buffer is not None  # set with _acc
        read_into(self._layout, self._views)
        self._acc.update(self._buffer)

    # ------------------------------------------------------------------ epoch end
    @override
    def _compute_epoch(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> EpochValues:
        if self.mode == "stream":
            assert self._acc is not None  # built in on_fit_start in stream mode
            out = self._acc.compute()
        else:
            out = self._exact(trainer, pl_module)
        if out["skipped"]:
            self.warn_once(
                "nonfinite",
                f"GradientConfusion: skipped {out['skipped']} probe(s) with a non-finite gradient "
                f"in epoch {trainer.current_epoch} (they are not part of the statistic)",
            )
        scalars = {"gradient_confusion/mean": out["mean"], "gradient_confusion/min": out["min"]}
        layers = {
            "gradient_confusion/mean": out["layer_mean"],
            "gradient_confusion/min": out["layer_min"],
        }
        return scalars, layers, {"probes": out["count"]}

    def _loss(self, pl_module: pl.LightningModule, batch: Any, idx: int) -> torch.Tensor:
        if self.loss_fn is not None:
            return self.loss_fn(pl_module, batch)
        # silence the training step's own logging: instance attributes shadow the class's methods
        quiet: Any = pl_module
        quiet.log = lambda *a, **k: None
        quiet.log_dict = lambda *a, **k: None
        try:
            out = pl_module.training_step(batch, idx)
        finally:
            del quiet.log, quiet.log_dict  # back to the class methods
        loss = out["loss"] if isinstance(out, dict) else out
        if not isinstance(loss, torch.Tensor):
            raise ValueError(
                "exact mode needs training_step to return a loss tensor (or pass loss_fn)"
            )
        return loss

    def _exact(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> dict[str, Any]:
        layout, probe_batches = self._layout, self.probe_batches
        assert layout is not None and probe_batches is not None  # on_fit_start, on_train_start
        dev = self._state_device(pl_module)
        grads = torch.zeros(len(probe_batches), layout.numel, dtype=self.state_dtype, device=dev)
        saved = {k: v.detach().clone() for k, v in pl_module.named_buffers()}
        was_training = pl_module.training
        pl_module.train()
        try:
            with torch.enable_grad():
                for i, batch in enumerate(probe_batches):
                    batch = trainer.strategy.batch_to_device(batch)
                    with trainer.precision_plugin.train_step_context():
                        loss = self._loss(pl_module, batch, i)
                    gs = torch.autograd.grad(loss.float(), layout.params, allow_unused=True)
                    views = layout.param_views(grads[i])
                    for v, g in zip(views, gs):
                        if g is None:
                            v.zero_()
                    torch._foreach_copy_(
                        [v for v, g in zip(views, gs) if g is not None],
                        [g for g in gs if g is not None],
                    )
        finally:
            with torch.no_grad():
                for k, v in pl_module.named_buffers():
                    v.copy_(saved[k])
            pl_module.train(was_training)
        if trainer.world_size > 1:
            grads = trainer.strategy.reduce(grads, reduce_op="mean")
        grads = grads.float()
        finite = torch.isfinite(grads).all(dim=1)
        kept = grads[finite]
        skipped = int((~finite).sum())
        nan = float("nan")
        if kept.shape[0] < 2:
            L = layout.num_layers
            return {
                "count": int(kept.shape[0]),
                "skipped": skipped,
                "mean": nan,
                "min": nan,
                "layer_mean": [nan] * L,
                "layer_min": [nan] * L,
            }
        r = gradient_confusion(kept, layout.lengths)
        assert r.layer_mean is not None and r.layer_min is not None  # given layer lengths
        return {
            "count": int(kept.shape[0]),
            "skipped": skipped,
            "mean": float(r.mean),
            "min": float(r.min),
            "layer_mean": r.layer_mean.tolist(),
            "layer_min": r.layer_min.tolist(),
        }
