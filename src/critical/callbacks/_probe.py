"""What the gradient callbacks (confusion, predictability, norm) share: which optimizer steps they
probe, one gradient read per step for all of them, which steps had a backward pass, and the
epoch's streaming state in checkpoints.

The hot path: at an unprobed step a callback does one Python counter check. At a probed step the
callbacks of a trainer share one :class:`~critical.metrics.GradientReader` (squared norms from one
fused ``_foreach_norm``, the flat gradient from one fused ``_foreach_copy_``), so each probe costs
a small, fixed number of kernels whatever the number of layers, and nothing synchronises with the
host between epoch start and epoch end.

Strategies: one device, DDP (gradients are all-reduced: every rank reads the same), FSDP
(``FSDPStrategy``, ``use_orig_params`` True or False) and FSDP2 (``ModelParallelStrategy`` with
``fully_shard``): each rank reads the gradient elements it holds and the partial sums are added
over the ranks (see :mod:`critical.metrics.sharding`): at most one collective per probed step
(gradient confusion's squared norms), one per callback at epoch end, none at unprobed steps.
DeepSpeed is refused at fit start (its ZeRO optimizer keeps gradients in its own buffers).
"""

from __future__ import annotations

import math
from typing import Any
from weakref import WeakKeyDictionary

import lightning.pytorch as pl
import torch
from typing_extensions import override

from critical.callbacks._base import MetricCallback, deepspeed_stage
from critical.metrics.layers import ParamLayout, gradient_layout
from critical.metrics.reader import GradientReader
from critical.metrics.sharding import ShardView
from critical.validation import check_int, check_number

SUPPORTED = (
    "one device, DDP, FSDPStrategy (use_orig_params True or False) and ModelParallelStrategy "
    "with FSDP2's fully_shard"
)


def check_gradient_strategy(trainer: pl.Trainer, who: str) -> None:
    """Refuse, before any step, strategies whose gradients the callbacks cannot read."""
    stage = deepspeed_stage(trainer.strategy)
    if stage is not None:
        raise ValueError(
            f"{who} does not support DeepSpeed (ZeRO stage {stage}): its ZeRO optimizer keeps the "
            "gradients in its own partitioned buffers, not in the parameters' .grad when Lightning "
            f"calls on_before_optimizer_step. Supported: {SUPPORTED}. (LayerRotation, which "
            "reads the weights, supports DeepSpeed ZeRO stages 1 and 2.)"
        )


def optimizer_layout(
    layout: ParamLayout, trainer: pl.Trainer, index: int, who: str
) -> tuple[ParamLayout, torch.optim.Optimizer | None]:
    """The part of ``layout`` that optimizer ``index`` steps, and that optimizer (``None``
    when the trainer has none)."""
    optimizers = list(trainer.optimizers)
    if not optimizers:
        return layout, None
    if index >= len(optimizers):
        raise ValueError(
            f"{who}(optimizer_index={index}): the module has {len(optimizers)} optimizer(s)"
        )
    opt = optimizers[index]
    keep = {id(p) for group in opt.param_groups for p in group["params"]}
    try:
        sub = layout.subset(keep)
    except ValueError:
        raise ValueError(
            f"{who}: optimizer {index} ({type(opt).__name__}) steps none of the module's "
            "trainable parameters; choose another with `optimizer_index`"
        ) from None
    return sub, opt


#: one list of gradient readers per trainer, shared by its gradient callbacks
_READERS: WeakKeyDictionary[pl.Trainer, list[GradientReader]] = WeakKeyDictionary()


def shared_reader(
    trainer: pl.Trainer, layout: ParamLayout, dtype: torch.dtype, device: torch.device
) -> GradientReader:
    """The gradient reader of ``trainer`` for ``layout`` in ``dtype`` on ``device`` (made on the
    first request; readers of another module's parameters are dropped)."""
    readers = [
        r
        for r in _READERS.get(trainer, [])
        if all(a is b for a, b in zip(r.layout.params, layout.params))
    ]
    for r in readers:
        if r.matches(layout, dtype, device):
            return r
    reader = GradientReader(layout, dtype, device)
    _READERS[trainer] = [*readers, reader]
    return reader


class ProbeSchedule:
    """Which optimizer steps of an epoch are probed: a few, evenly spread.

    ``every=None`` spreads the probes over the epoch's S optimizer steps (known at epoch start
    from ``trainer.num_training_batches`` and gradient accumulation): ``n = min(max_probes,
    max(MIN_PROBES, ceil(max_share * S)))`` probes, step ``k * stride`` being the k-th,
    ``stride = S // n``. So a short epoch is not probed at every step (at most ``max_share`` of
    them, but at least ``MIN_PROBES`` probes), and a long one gets ``max_probes``: CIFAR-10 at
    batch 128 (391 steps) gets 32 probes, one every 12 steps. An integer ``every`` probes every
    ``every``-th step (at most ``max_probes``). Steps are counted per epoch from 0; a step
    without a backward pass (``training_step`` returned None) is counted but not probed, and the
    probe moves to the next step that has one.
    """

    #: probes per epoch below which ``max_share`` does not go (2 give one confusion pair)
    MIN_PROBES = 4

    def __init__(self, max_probes: int, every: int | None, max_share: float = 1.0) -> None:
        self.max_probes = max_probes
        self.every = every
        self.max_share = max_share
        self.stride = 1
        self.step = 0
        self.probes = 0

    def start_epoch(self, trainer: pl.Trainer) -> None:
        self.step = self.probes = 0
        if self.every is not None:
            self.stride = self.every
            return
        batches = trainer.num_training_batches
        if not math.isfinite(batches):
            self.stride = 1
            return
        steps = math.ceil(batches / max(1, trainer.accumulate_grad_batches))
        self.stride = self.stride_for(steps)

    def stride_for(self, steps: int) -> int:
        """The stride that spreads this schedule's probes over ``steps`` optimizer steps."""
        wanted = max(self.MIN_PROBES, math.ceil(self.max_share * steps))
        return max(1, steps // min(self.max_probes, wanted))

    def advance(self, fresh: bool) -> bool:
        """Count one optimizer step (``fresh``: it has a new gradient); True if it is probed."""
        step = self.step
        self.step += 1
        if not fresh or self.probes >= self.max_probes or step < self.probes * self.stride:
            return False
        self.probes += 1
        return True

    def state_dict(self) -> dict[str, int]:
        return {"stride": self.stride, "step": self.step, "probes": self.probes}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.stride, self.step, self.probes = state["stride"], state["step"], state["probes"]


class GradientCallback(MetricCallback):
    """Base of the callbacks that read, at a few optimizer steps per epoch, the gradients that
    training computed (in ``on_before_optimizer_step``: after accumulation and AMP unscaling).

    Subclasses build their accumulator ``_acc`` (a streaming accumulator of
    :mod:`critical.metrics.streaming`) in :meth:`_build` and take a step in :meth:`_on_step`;
    :meth:`_reset`, :meth:`_stream_state` and :meth:`_load_stream_state` reset, save and restore
    ``_acc`` (override them for state beyond it). :meth:`_streaming` False (e.g. confusion's exact mode) turns the
    per-step reading off.

    A step is *fresh* when a backward pass ran since the previous optimizer step (Lightning's
    ``on_after_backward``); a step whose ``training_step`` returned None has none and is never
    probed. With manual optimization and no ``manual_backward`` seen, every step counts as fresh.

    **Which gradient.** The gradient of the parameters that one optimizer steps, at that
    optimizer's steps: ``optimizer_index`` (default 0, the first optimizer
    ``configure_optimizers`` returns). With one optimizer over the whole model this is the whole
    model's gradient; with several (manual optimization, a GAN's generator and discriminator),
    the other optimizers' steps are not counted and their parameters, whose ``.grad`` may hold a
    stale gradient of another loss, are not read.

    Checkpoints taken during an epoch (``every_n_train_steps``, validation inside the epoch or
    at its end before ``on_train_epoch_end``) hold the epoch's streaming state and probe
    schedule, so a resumed run completes the same epoch's statistic; resumed mid-epoch without
    that state, the epoch's history entry is marked ``partial``.
    """

    def __init__(
        self,
        max_probes: int,
        probe_every: int | None,
        max_share: float,
        log_layers: bool = False,
        name: str | None = None,
        state_device: str | torch.device | None = None,
        state_dtype: str | torch.dtype = "float32",
        min_probes: int = 1,
        optimizer_index: int = 0,
    ) -> None:
        super().__init__(log_layers, name, state_device, state_dtype)
        self.optimizer_index = check_int("optimizer_index", optimizer_index, 0)
        self.max_probes = check_int("max_probes", max_probes, min_probes)
        self.probe_every = check_int("probe_every", probe_every, 1, allow_none=True)
        self.max_share = check_number("max_share", max_share, minimum=0, maximum=1, exclusive=True)
        self._schedule = ProbeSchedule(self.max_probes, self.probe_every, self.max_share)
        self._layout: ParamLayout | None = None
        self._reader: GradientReader | None = None
        self._fresh = False
        self._backward_seen = False
        self._manual = False
        self._epoch: int | None = None  # the epoch the streaming state belongs to
        self._partial = False
        self._joining = False  # fit started: the first hook may be mid-epoch (resumed)
        self._restored: dict[str, Any] | None = None
        self._acc: Any = None  # the epoch's streaming accumulator, built by _build
        self._optimizer: torch.optim.Optimizer | None = None  # whose steps are probed
        self._shard: ShardView | None = None  # sharded models: this rank's part

    # ----------------------------------------------------------------- subclass API
    def _streaming(self) -> bool:
        return True

    def _build(self, pl_module: pl.LightningModule, device: torch.device) -> None:
        raise NotImplementedError

    def _reset(self) -> None:
        assert self._acc is not None  # built in on_fit_start
        self._acc.reset()

    def _on_step(self, trainer: pl.Trainer, fresh: bool) -> None:
        raise NotImplementedError

    def _stream_state(self) -> dict[str, Any]:
        assert self._acc is not None
        return self._acc.state_dict()

    def _load_stream_state(self, state: dict[str, Any]) -> None:
        assert self._acc is not None
        self._acc.load_state_dict(state)

    def _info(self, probes: int) -> dict[str, Any]:
        """The history entry's bookkeeping: probe count, and ``partial`` when it applies."""
        return {"probes": probes, **({"partial": True} if self._partial else {})}

    # ----------------------------------------------------------------- lifecycle
    @override
    def _reset_fit(self) -> None:
        super()._reset_fit()
        self._layout = self._reader = self._acc = self._optimizer = self._shard = None
        self._epoch, self._partial, self._joining, self._restored = None, False, False, None
        self._fresh = self._backward_seen = False
        self._schedule = ProbeSchedule(self.max_probes, self.probe_every, self.max_share)

    @override
    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        who = type(self).__name__
        check_gradient_strategy(trainer, who)
        layout = gradient_layout(pl_module, root=trainer.strategy.model)
        self._layout, self._optimizer = optimizer_layout(layout, trainer, self.optimizer_index, who)
        self._shard = self._layout.shard_view()
        self.layer_names = list(self._layout.names)
        self._manual = not pl_module.automatic_optimization
        self._backward_seen = self._fresh = False
        self._reader = None
        if not self._streaming():
            return
        dev = self._state_device(pl_module)
        self._reader = shared_reader(trainer, self._layout, self.state_dtype, dev)
        self._build(pl_module, dev)
        self._joining = True
        self._apply_restored()

    def _apply_restored(self) -> None:
        """Take back the epoch in progress when the checkpoint was taken (restored before
        ``on_fit_start`` by most strategies, after it by FSDP and ModelParallelStrategy)."""
        restored, self._restored = self._restored, None
        if restored is not None:
            self._epoch, self._partial = restored["epoch"], restored["partial"]
            self._schedule.load_state_dict(restored["schedule"])
            self._load_stream_state(restored["state"])

    @override
    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._joining = False
        self._begin_epoch(trainer, partial=False)

    @override
    def finalize_epoch(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule
    ) -> dict[str, float]:
        if self._joining:  # resumed from a checkpoint taken after the epoch's last step
            self._join(trainer)
        return super().finalize_epoch(trainer, pl_module)

    def _join(self, trainer: pl.Trainer) -> None:
        self._joining = False
        if self._epoch != trainer.current_epoch:  # no state of this epoch: from here on
            self._begin_epoch(trainer, partial=True)

    def _begin_epoch(self, trainer: pl.Trainer, partial: bool) -> None:
        self._epoch, self._partial, self._fresh = trainer.current_epoch, partial, False
        self._schedule.start_epoch(trainer)
        if self._reader is not None:
            self._reset()

    # ----------------------------------------------------------------- hot path
    @override
    def on_after_backward(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._fresh = self._backward_seen = True

    @override
    def on_before_optimizer_step(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, optimizer: torch.optim.Optimizer
    ) -> None:
        if self._optimizer is not None and optimizer is not self._optimizer:
            return  # another optimizer's step: not the gradient this callback follows
        fresh = self._fresh or (self._manual and not self._backward_seen)
        self._fresh = False
        if self._joining:  # resumed mid-epoch: Lightning calls no on_train_epoch_start
            self._join(trainer)
        if self._reader is not None:
            self._on_step(trainer, fresh)

    # ----------------------------------------------------------------- checkpoint
    @override
    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        if self._reader is not None and self._epoch is not None:
            if self._epoch != self._finalized_epoch:  # an epoch in progress
                state["stream"] = {
                    "epoch": self._epoch,
                    "partial": self._partial,
                    "schedule": self._schedule.state_dict(),
                    "state": _to_cpu(self._stream_state()),
                }
        return state

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        super().load_state_dict(state_dict)
        self._restored = state_dict.get("stream")
        if self._acc is not None:  # restored after on_fit_start built the accumulator
            self._apply_restored()


def _to_cpu(obj: Any) -> Any:
    """A copy of ``obj`` (nested dicts, lists, tuples of tensors) with every tensor on the CPU."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().to("cpu", copy=True)
    if isinstance(obj, dict):
        return {k: _to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_to_cpu(v) for v in obj)
    return obj
