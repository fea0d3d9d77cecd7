"""Gradient predictability (after Chen, Yuille & Zhou, ICLR 2023): does the next step's gradient
point where this one did?"""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl
import torch
from typing_extensions import override

from critical.callbacks._base import EpochValues
from critical.callbacks._probe import GradientCallback
from critical.metrics.reader import sq_norms
from critical.metrics.sharding import to_full, to_local
from critical.metrics.streaming import StreamingCosine


class GradientPredictability(GradientCallback):
    """Logs, every epoch, the mean cosine between the gradient of a step and of the next step.

    Logged (prefix ``critical/``): ``gradient_predictability`` (whole model) and, with
    ``log_layers=True``, ``gradient_predictability/<layer>``.

    Gradients are read in ``on_before_optimizer_step`` (after accumulation and AMP unscaling) at
    up to ``max_probes`` pairs of consecutive optimizer steps ``(s, s')`` spread over the epoch,
    ``s'`` being the next step with a backward pass (a step whose ``training_step`` returned None
    changes nothing and is passed over); nothing extra is computed. The read at ``s`` is shared
    with the other gradient callbacks probing it. A pair with a non-finite gradient is skipped
    (one warning).

    Memory: P elements of ``state_dtype`` on ``state_device`` (the opening step's gradient, also
    used as scratch when the pair closes) besides the shared flat gradient, and ``3 (L + 1)``
    floats per pair.

    Under FSDP / FSDP2 each rank keeps its elements of the opening gradient (P / world size) and
    the partial squared norms of each pair, added over the ranks at epoch end (one collective,
    none per step): the values equal a one-process run's on the same global batches. With
    several optimizers, the gradient of ``optimizer_index``'s parameters at its consecutive steps
    (see :class:`~critical.callbacks.GradientConfusion`).

    Args:
        max_probes: pairs of consecutive steps per epoch, >= 1.
        probe_every: start a pair every n-th optimizer step instead of spreading them evenly.
        max_share: at most this share of an epoch's steps opens a pair (but at least 4 pairs).
        log_layers: also log per-layer values.
        state_device: device of the O(P) state (default: the module's).
        state_dtype: ``"float32"`` (default), ``"bfloat16"``, ``"float16"`` or ``"float64"``.
        name: names this instance: its keys become ``critical/gradient_predictability@<name>``
            (needed for a second instance; also its checkpoint key).
        optimizer_index: which optimizer's parameters and steps are followed (default the first).

    Example:
        >>> import lightning as L
        >>> from critical.callbacks import GradientPredictability
        >>> trainer = L.Trainer(callbacks=[GradientPredictability()], logger=False)
    """

    metric_names = ("gradient_predictability",)
    summary_columns = (("predict.", "gradient_predictability", "{:+.3f}"),)

    def __init__(
        self,
        max_probes: int = 32,
        probe_every: int | None = None,
        max_share: float = 0.125,
        log_layers: bool = False,
        state_device: str | torch.device | None = None,
        state_dtype: str | torch.dtype = "float32",
        name: str | None = None,
        optimizer_index: int = 0,
    ) -> None:
        super().__init__(
            max_probes,
            probe_every,
            max_share,
            log_layers,
            name,
            state_device,
            state_dtype,
            optimizer_index=optimizer_index,
        )
        self._acc: StreamingCosine | None = None
        self._prev = torch.zeros(0)  # the gradient of the step that opened the pending pair
        self._prev_views: list[torch.Tensor] = []
        self._prev_sq: torch.Tensor | None = None  # its squared norms; None: no pair open
        self._matrix = torch.zeros(0)

    @override
    def _build(self, pl_module: pl.LightningModule, device: torch.device) -> None:
        layout = self._layout
        assert layout is not None  # set before _build
        self._acc = StreamingCosine(layout.local_lengths, device, self._shard)
        self._prev = layout.new_buffer(self.state_dtype, device)
        self._prev_views = layout.layer_views(self._prev)
        self._matrix = layout.norm_matrix("layer", device)
        self._prev_sq = None
        assert self._reader is not None  # set before _build
        self._reader.allocate()

    @override
    def _reset(self) -> None:
        super()._reset()
        self._prev_sq = None  # pairs do not cross epochs

    @override
    def _on_step(self, trainer: pl.Trainer, fresh: bool) -> None:
        opens = self._schedule.advance(fresh)
        closes = fresh and self._prev_sq is not None
        if not (opens or closes):
            return
        reader, acc = self._reader, self._acc
        assert reader is not None and acc is not None  # built in on_fit_start
        token = trainer.global_step
        sq = reader.partial_sq_norms(token)  # partial sums when sharded: added at epoch end
        flat = reader.flat(token)
        if closes:
            assert self._prev_sq is not None
            self._prev.add_(flat)  # a + b: its squared norms give the dot products
            acc.update_sq(self._prev_sq, sq, sq_norms(self._prev_views, self._matrix))
        if opens:
            self._prev.copy_(flat)
        self._prev_sq = sq if opens else None

    @override
    def _stream_state(self) -> dict[str, Any]:
        # sharded: the whole model's (collectives on every rank), as one process saves it
        assert self._acc is not None
        shard, prev_sq = self._shard, self._prev_sq
        if shard is not None and prev_sq is not None:
            prev_sq = shard.sum_(prev_sq.clone())
        state: dict[str, Any] = {"acc": self._acc.state_dict(), "prev_sq": prev_sq}
        if prev_sq is not None:
            state["prev"] = self._prev if shard is None else to_full(shard, self._prev)
        return state

    @override
    def _load_stream_state(self, state: dict[str, Any]) -> None:
        assert self._acc is not None
        self._acc.load_state_dict(state["acc"])
        prev_sq, shard, dev = state.get("prev_sq"), self._shard, self._prev.device
        self._prev_sq = None if prev_sq is None else prev_sq.to(dev)
        if self._prev_sq is not None:
            prev = state["prev"]
            self._prev.copy_(prev if shard is None else to_local(shard, prev, dev))
            if shard is not None and not shard.root:  # the partial sums add up to the whole
                self._prev_sq = torch.zeros_like(self._prev_sq)

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
            self._info(out["count"]),
        )
