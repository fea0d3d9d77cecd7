"""Layer rotation (Carbonnelle & De Vleeschouwer, 2019): how far each layer's weights have turned
away from their initialization."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, get_args

import lightning.pytorch as pl
import torch
from typing_extensions import override

from critical.callbacks._base import EpochValues, MetricCallback, deepspeed_stage
from critical.choices import Aggregate, Include
from critical.metrics.layers import INCLUDE_CHOICES, ParamLayout, weight_layout
from critical.metrics.sharding import ShardView, to_full, to_local
from critical.validation import check_choice

AGGREGATES = get_args(Aggregate)


class LayerRotation(MetricCallback):
    """Logs, every epoch, the cosine distance ``1 - cos(theta_0, theta_e)`` of each layer's
    weights to their values at the start of training, and an aggregate over layers.

    Logged (prefix ``critical/``): ``layer_rotation`` (the ``aggregate`` over layers, default the
    mean) and, with ``log_layers=True``, ``layer_rotation/<layer>``.

    Layers (see :func:`~critical.metrics.weight_layout`): by default the weight tensors of conv,
    linear, embedding and attention projection modules; ``include="all"`` adds normalization
    gains and biases. ``theta_0`` is taken when training starts and saved in checkpoints, so a
    resumed run keeps measuring against the true initialization.

    Cost: one pass over the weights at each epoch end, fused over the layers (one copy of the
    weights into a flat buffer, one product, one segment reduction; the norms of ``theta_0`` are
    taken once, at training start); no per-step work. Memory: P elements of ``state_dtype`` on
    ``state_device`` for ``theta_0`` (plus a P float32 buffer at epoch end).

    Under FSDP / FSDP2 each rank keeps its elements of ``theta_0`` (P / world size) and the
    per-layer dot products and norms are summed over the ranks (one collective per epoch): the
    values equal a one-process run's. Checkpoints hold the whole ``theta_0`` (assembled on every
    rank when the checkpoint is taken), the same as a one-process run's. DeepSpeed: ZeRO stages 1
    and 2 (every rank holds the whole weights) work as DDP does; stage 3 raises at fit start.

    Args:
        include: ``"weights"`` or ``"all"``.
        aggregate: ``"mean"``, ``"median"`` or ``"max"`` over layers.
        log_layers: also log per-layer values.
        state_device: device of ``theta_0`` (default: the module's; ``"cpu"`` for large models).
        state_dtype: ``"float32"`` (default), ``"bfloat16"``, ``"float16"`` or ``"float64"``.
        name: names this instance: its keys become ``critical/layer_rotation@<name>`` (needed for
            a second instance, e.g. one with ``include="all"``; also its checkpoint key).

    Example:
        >>> import lightning as L
        >>> from critical.callbacks import LayerRotation
        >>> trainer = L.Trainer(callbacks=[LayerRotation(log_layers=True)], logger=False)
    """

    metric_names = ("layer_rotation",)
    summary_columns = (("rotation", "layer_rotation", "{:.4f}"),)
    _missing_state_effect = (
        "its history restarts and theta_0 is taken at the resume point, so rotation is measured "
        "from there, not from the initial weights"
    )

    def __init__(
        self,
        include: Include = "weights",
        aggregate: Aggregate = "mean",
        log_layers: bool = False,
        state_device: str | torch.device | None = None,
        state_dtype: str | torch.dtype = "float32",
        name: str | None = None,
    ) -> None:
        super().__init__(log_layers, name, state_device, state_dtype)
        self.include = check_choice("include", include, INCLUDE_CHOICES)
        self.aggregate = check_choice("aggregate", aggregate, AGGREGATES)
        self._layout: ParamLayout | None = None
        self._shard: ShardView | None = None
        #: the weights at the start of training (sharded: this rank's elements of them)
        self.theta0: torch.Tensor | None = None
        self._theta0_full = False  # theta0 holds the whole model's (restored from a checkpoint)
        self._theta0_signature: list[tuple[str, int]] | None = None
        self._sq0: torch.Tensor | None = None  # per-layer |theta_0|^2 (whole model), float64
        self._lengths: torch.Tensor | None = None  # this rank's layer lengths, on the device

    @override
    def _state_key_fields(self) -> dict[str, Any]:
        return {"include": self.include}

    @override
    def _reset_fit(self) -> None:
        super()._reset_fit()
        self._layout = self._shard = self.theta0 = self._sq0 = self._lengths = None
        self._theta0_signature, self._theta0_full = None, False

    @override
    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if deepspeed_stage(trainer.strategy) == 3:
            raise ValueError(
                "LayerRotation does not support DeepSpeed ZeRO stage 3 (each rank holds a "
                "partition of the weights in DeepSpeed's own buffers). Supported: one device, "
                "DDP, FSDPStrategy (use_orig_params True or False), ModelParallelStrategy with "
                "FSDP2's fully_shard, DeepSpeed ZeRO stages 1 and 2"
            )
        self._layout = weight_layout(pl_module, self.include, root=trainer.strategy.model)
        self._shard = self._layout.shard_view()
        self.layer_names = list(self._layout.names)
        if self.theta0 is not None:
            self._check_signature()

    @override
    @torch.no_grad()
    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        dev = self._state_device(pl_module)
        layout = self._layout
        assert layout is not None  # built in on_fit_start
        if self.theta0 is None:  # a fresh run; a resumed one restored theta_0 from the checkpoint
            self.theta0 = layout.new_buffer(self.state_dtype, dev)
            torch._foreach_copy_(layout.param_views(self.theta0), layout.data())
            self._theta0_signature = layout.signature()
        else:
            self._check_signature()
            theta0 = self.theta0
            if self._shard is not None and self._theta0_full:
                theta0 = to_local(self._shard, theta0, dev)
            self.theta0 = theta0.to(device=dev, dtype=self.state_dtype)
        self._theta0_full = False
        self._lengths = torch.tensor(layout.local_lengths, device=dev)
        t0 = self.theta0.float()
        self._sq0 = layout.sum_(self._segment_sums(t0 * t0).to(torch.float64))

    def _check_signature(self) -> None:
        assert self._layout is not None  # built in on_fit_start
        if (
            self._theta0_signature is not None
            and self._theta0_signature != self._layout.signature()
        ):
            raise ValueError(
                "LayerRotation: the checkpointed theta_0 was taken from a model with different "
                "layers; resume with the same model and `include`"
            )

    def _segment_sums(self, x: torch.Tensor) -> torch.Tensor:
        """Per-layer sums of the last dimension of ``x`` (this rank's elements)."""
        lens = self._lengths
        assert lens is not None  # set in on_train_start
        if x.dim() == 1:
            return torch.segment_reduce(x, "sum", lengths=lens)
        return torch.segment_reduce(x, "sum", lengths=lens.expand(x.shape[0], -1), axis=1)

    @override
    @torch.no_grad()
    def _compute_epoch(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> EpochValues:
        layout, theta0, sq0 = self._layout, self.theta0, self._sq0
        assert layout is not None and theta0 is not None and sq0 is not None  # on_train_start
        theta = layout.new_buffer(torch.float32, theta0.device)
        torch._foreach_copy_(layout.param_views(theta), layout.data())
        # (<theta_0, theta>, |theta|^2) per layer in one product and one segment reduction
        sums = self._segment_sums(torch.stack((theta0.float(), theta)) * theta)
        dot, sq = layout.sum_(sums.to(torch.float64)).unbind(0)
        den = (sq * sq0).sqrt()
        cos = torch.where(den > 0, dot / den.clamp_min(1e-300), 0.0).clamp(-1.0, 1.0)
        per_layer = 1.0 - cos
        aggregates: dict[str, Callable[[], torch.Tensor]] = {
            "mean": per_layer.mean,
            "median": per_layer.median,
            "max": per_layer.max,
        }
        agg = aggregates[self.aggregate]()
        values = torch.cat([agg.view(1), per_layer]).tolist()  # one transfer to the host
        return {"layer_rotation": values[0]}, {"layer_rotation": values[1:]}, {}

    @override
    def _extra_state(self) -> dict[str, Any]:
        theta0 = self.theta0
        if theta0 is not None and self._shard is not None and not self._theta0_full:
            theta0 = to_full(self._shard, theta0).to(self.state_dtype)  # collective, every rank
        return {
            "theta0": None if theta0 is None else theta0.detach().cpu(),
            "theta0_signature": self._theta0_signature,
        }

    @override
    def _load_extra_state(self, state: dict[str, Any]) -> None:
        t = state.get("theta0")
        self.theta0 = None if t is None else t.clone()
        self._theta0_full = t is not None  # the whole model's: localised at train start
        sig = state.get("theta0_signature")
        self._theta0_signature = None if sig is None else [tuple(x) for x in sig]
