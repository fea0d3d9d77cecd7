"""Gradient confusion (Sankararaman et al., ICML 2020): do mini-batch gradients agree?"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from itertools import islice
from typing import Any, get_args

import lightning.pytorch as pl
import torch
from typing_extensions import override

from critical.callbacks._base import EpochValues
from critical.callbacks._extra_passes import isolated, rng_restored
from critical.callbacks._probe import GradientCallback
from critical.choices import ConfusionMode
from critical.metrics.functional import gradient_confusion, gram_confusion
from critical.metrics.reader import dense_grads
from critical.metrics.streaming_confusion import StreamingConfusion
from critical.validation import check_choice, check_int

MODES = get_args(ConfusionMode)
LossFn = Callable[[pl.LightningModule, Any], torch.Tensor]


class GradientConfusion(GradientCallback):
    """Logs, every epoch, the mean, most negative and largest pairwise cosine between mini-batch
    gradients.

    Logged (prefix ``critical/``): ``gradient_confusion/mean``, ``gradient_confusion/min`` and
    ``gradient_confusion/max`` (the statistic of Fukase et al.'s rule) for the whole model, and with ``log_layers=True`` the same per layer (``.../<layer>``; a layer is
    a module with its own trainable parameters).

    Modes:

    * ``"stream"`` (default, no extra computation): reads the gradients training already computed,
      in ``on_before_optimizer_step`` (after accumulation and AMP unscaling), at up to
      ``max_probes`` optimizer steps spread over the epoch, at most ``max_share`` of them (but at
      least 4): step ``k * stride`` is the k-th probe, 32 of CIFAR-10's 391 steps at batch 128,
      one in 8 steps of a shorter epoch. A step whose ``training_step`` returned None has no
      gradient and passes the probe on to the next step. One read of the gradients per probed step is shared with the other gradient
      callbacks; an unprobed step costs a counter check. The mean pairwise cosine is exact over
      the probed steps, from a running sum of unit gradients. The minimum and maximum are estimated from a
      signed-hash sketch of each probe (exact for layers of at most ``sketch_dim`` elements; see
      :class:`~critical.metrics.StreamingConfusion`). Gradients of different steps are taken at
      different weights; early in training, when weights move fast, this mixes drift into the
      statistic.
    * ``"exact"``: at each epoch end, evaluates the gradients of ``exact_batches`` fixed probe
      batches (the first batches of the train dataloader at fit start, or ``probe_batches``) at
      the frozen current weights and reports their exact mean and minimum pairwise cosine. Cost:
      ``exact_batches`` extra forward + backward passes per epoch (Fukase et al. pay a full pass
      over the training set) and ``exact_batches * P`` floats during the computation. The loss is
      ``loss_fn(pl_module, batch)``, by default the module's ``training_step`` with its logging
      silenced. The extra passes leave training as it was: buffers (batch-norm running
      statistics) are restored, torchmetrics ``Metric`` submodules are swapped for copies while
      they run (the module's own accuracy is untouched), the random number generators (torch,
      CUDA, NumPy, Python) are restored, and the model's ``.grad`` is not touched. Under DDP each
      rank uses its own probe batches and the gradients are averaged over ranks, as in training.

    **Which gradient.** The gradient of the parameters the first optimizer steps, at its steps
    (``optimizer_index`` picks another): with one optimizer, the whole model's; with several
    (manual optimization, a GAN), the other optimizers' steps and parameters are left out, so a
    stale ``.grad`` of another loss never enters the statistic. The same holds for
    :class:`~critical.callbacks.GradientPredictability` and
    :class:`~critical.callbacks.GradientNorm`.

    **Sharded models** (``FSDPStrategy`` with ``use_orig_params`` True or False,
    ``ModelParallelStrategy`` with FSDP2's ``fully_shard``): each rank reads the gradient
    elements it holds; a probe's squared norms are summed over the ranks (one ``all_reduce`` of
    ``L + 1`` floats, the step's only collective) and the epoch-end statistic and the sketch are
    summed in one more, so the mean, min and max equal those of one process training on the same
    global batches (the sketch hashes each element by its index in the whole layer). Exact mode
    runs its probe batches through the wrapped model (forward and ``backward``, which the
    sharding needs): it leaves ``.grad`` holding nothing (``None``) afterwards, which training
    does not notice (it zeroes gradients before the next backward). Per-rank memory is
    P / world size. DeepSpeed raises at fit start.

    Memory (P = trainable parameters, in ``state_dtype`` on ``state_device``): stream mode holds
    the two running sums (2 P), P int32 for the element-to-layer map and P int32 for the sketch
    hash, and per probe ``L + 1`` squared norms and ``L * sketch_dim`` sketch floats; the gradient
    buffer (P) is shared with the other gradient callbacks. Exact mode holds
    ``exact_batches * P`` during the epoch-end computation. ``state_device="cpu"`` moves this off the accelerator at the price of a
    device-to-host copy (and synchronisation) at each probe.

    Args:
        mode: ``"stream"`` or ``"exact"``.
        max_probes: probes per epoch (stream mode), >= 2.
        probe_every: probe every n-th optimizer step instead of spreading ``max_probes`` evenly.
        max_share: stream mode: at most this share of an epoch's steps is probed (but at least 4
            probes): 32 probes need epochs of 256 steps or more.
        sketch_dim: sketch buckets per layer for the stream-mode minimum (0: do not estimate it).
        exact_batches: number of fixed probe batches (exact mode), >= 2.
        probe_batches: the probe batches to use in exact mode instead of the first train batches.
        loss_fn: exact mode: ``loss_fn(pl_module, batch) -> loss``.
        log_layers: also log per-layer values.
        state_device: device of the O(P) state (default: the module's).
        state_dtype: ``"float32"`` (default), ``"bfloat16"``, ``"float16"`` or ``"float64"``.
        name: names this instance: its keys become ``critical/gradient_confusion@<name>/mean``
            (and ``.../min``, ``.../max``); needed for a second instance, e.g. one in each mode.
        optimizer_index: which optimizer's parameters and steps are followed (default the first).

    Example:
        >>> import lightning as L
        >>> from critical.callbacks import GradientConfusion
        >>> stream, exact = GradientConfusion(max_probes=16), GradientConfusion("exact", name="exact")
        >>> exact.metric_names[0]
        'gradient_confusion@exact/mean'
        >>> trainer = L.Trainer(callbacks=[stream, exact], logger=False)
    """

    metric_names = ("gradient_confusion/mean", "gradient_confusion/min", "gradient_confusion/max")
    summary_columns = (("confusion", "gradient_confusion/mean", "{:+.3f}"),)

    def __init__(
        self,
        mode: ConfusionMode = "stream",
        max_probes: int = 32,
        probe_every: int | None = None,
        max_share: float = 0.125,
        sketch_dim: int = 1024,
        exact_batches: int = 8,
        probe_batches: Iterable[Any] | None = None,
        loss_fn: LossFn | None = None,
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
            min_probes=2,
            optimizer_index=optimizer_index,
        )
        self.mode = check_choice("mode", mode, MODES)
        self.sketch_dim = check_int("sketch_dim", sketch_dim, 0)
        self.exact_batches = check_int("exact_batches", exact_batches, 2)
        if loss_fn is not None and not callable(loss_fn):
            raise ValueError(f"`loss_fn` must be callable, got {loss_fn!r}")
        self.loss_fn = loss_fn
        self.probe_batches = None if probe_batches is None else list(probe_batches)
        if self.probe_batches is not None and len(self.probe_batches) < 2:
            raise ValueError("`probe_batches` must hold at least 2 batches")
        self._acc: StreamingConfusion | None = None

    @override
    def _state_key_fields(self) -> dict[str, Any]:
        return {"mode": self.mode}

    # ------------------------------------------------------------------ setup
    @override
    def _streaming(self) -> bool:
        return self.mode == "stream"

    @override
    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        super().on_fit_start(trainer, pl_module)
        if self.mode == "exact" and self.loss_fn is None and not pl_module.automatic_optimization:
            raise ValueError(
                "GradientConfusion(mode='exact') needs `loss_fn` for modules with manual "
                "optimization: their training_step steps the optimizer itself"
            )

    @override
    def _build(self, pl_module: pl.LightningModule, device: torch.device) -> None:
        assert self._layout is not None  # set before _build
        self._acc = StreamingConfusion(
            self._layout.local_lengths, self.sketch_dim, self.state_dtype, device, shard=self._shard
        )
        assert self._reader is not None  # set before _build
        self._reader.allocate()

    @override
    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.mode == "exact" and self.probe_batches is None:
            loader = trainer.train_dataloader
            assert loader is not None  # built by Lightning before on_train_start
            with rng_restored(pl_module.device):  # drawing them leaves the data order as it was
                batches = list(islice(iter(loader), self.exact_batches))
            if len(batches) < 2:
                raise ValueError(
                    f"GradientConfusion(mode='exact') needs at least 2 probe batches, the train "
                    f"dataloader gave {len(batches)}"
                )
            self.probe_batches = batches

    # ------------------------------------------------------------------ hot path
    @override
    def _on_step(self, trainer: pl.Trainer, fresh: bool) -> None:
        if not self._schedule.advance(fresh):
            return
        reader, acc = self._reader, self._acc
        assert reader is not None and acc is not None  # built in on_fit_start (stream mode)
        token = trainer.global_step
        sq, valid = reader.sq_norms(token)
        acc.update(reader.flat(token), sq, valid)

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
        scalars = {
            "gradient_confusion/mean": out["mean"],
            "gradient_confusion/min": out["min"],
            "gradient_confusion/max": out["max"],
        }
        layers = {
            "gradient_confusion/mean": out["layer_mean"],
            "gradient_confusion/min": out["layer_min"],
            "gradient_confusion/max": out["layer_max"],
        }
        return scalars, layers, self._info(out["count"])

    def _loss(
        self,
        pl_module: pl.LightningModule,
        batch: Any,
        idx: int,
        strategy: Any = None,
    ) -> torch.Tensor:
        """The loss of a probe batch; with ``strategy``, through its wrapped model (whose
        forward hooks a sharded model needs) when that is not the module itself."""
        quiet: Any = pl_module
        method = "training_step"
        wrapper = None if strategy is None else strategy.model
        if self.loss_fn is not None:
            if wrapper is None or wrapper is pl_module:
                return self.loss_fn(pl_module, batch)
            fn = self.loss_fn
            quiet._critical_probe_loss = lambda b, i: fn(pl_module, b)
            method = "_critical_probe_loss"
        # silence the training step's own logging: instance attributes shadow the class's methods
        quiet.log = lambda *a, **k: None
        quiet.log_dict = lambda *a, **k: None
        try:
            if wrapper is not None and wrapper is not pl_module:
                out = strategy._forward_redirection(wrapper, pl_module, method, batch, idx)
            else:
                out = getattr(pl_module, method)(batch, idx)
        finally:
            del quiet.log, quiet.log_dict  # back to the class methods
            if method != "training_step":
                del quiet._critical_probe_loss
        loss = out["loss"] if isinstance(out, dict) else out
        if not isinstance(loss, torch.Tensor):
            raise ValueError(
                "exact mode needs training_step to return a loss tensor (or pass loss_fn)"
            )
        return loss

    def _exact(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> dict[str, Any]:
        layout, probe_batches = self._layout, self.probe_batches
        assert layout is not None and probe_batches is not None  # on_fit_start, on_train_start
        if layout.parts is not None:
            return self._exact_sharded(trainer, pl_module)
        dev = self._state_device(pl_module)
        grads = torch.zeros(len(probe_batches), layout.numel, dtype=self.state_dtype, device=dev)
        with isolated(pl_module), torch.enable_grad():
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
                "max": nan,
                "layer_mean": [nan] * L,
                "layer_min": [nan] * L,
                "layer_max": [nan] * L,
            }
        r = gradient_confusion(kept, layout.lengths)
        assert r.layer_mean is not None and r.layer_min is not None  # given layer lengths
        assert r.layer_max is not None
        return {
            "count": int(kept.shape[0]),
            "skipped": skipped,
            "mean": float(r.mean),
            "min": float(r.min),
            "max": float(r.max),
            "layer_mean": r.layer_mean.tolist(),
            "layer_min": r.layer_min.tolist(),
            "layer_max": r.layer_max.tolist(),
        }

    def _exact_sharded(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> dict[str, Any]:
        """Exact mode under FSDP / FSDP2: forward through the wrapped model and ``backward`` (the
        sharding's hooks gather the weights and reduce-scatter the gradient), each rank keeping
        its elements of each probe's gradient; the per-layer Gram matrices are summed over the
        ranks in one collective."""
        layout, probe_batches = self._layout, self.probe_batches
        assert layout is not None and probe_batches is not None  # on_fit_start, on_train_start
        strategy = trainer.strategy
        model = strategy.model
        assert model is not None  # set up by the strategy before fit starts
        dev = self._state_device(pl_module)
        grads = layout.new_buffer(self.state_dtype, dev).expand(len(probe_batches), -1).clone()
        with isolated(pl_module), torch.enable_grad():
            for i, batch in enumerate(probe_batches):
                model.zero_grad(set_to_none=True)
                batch = strategy.batch_to_device(batch)
                with trainer.precision_plugin.train_step_context():
                    loss = self._loss(pl_module, batch, i, strategy)
                loss.float().backward()
                torch._foreach_copy_(layout.param_views(grads[i]), dense_grads(layout))
            model.zero_grad(set_to_none=True)
        g = grads.float()
        blocks = torch.split(g, layout.local_lengths, dim=1)
        gram = torch.stack([g @ g.T, *(b @ b.T for b in blocks)]).to(torch.float64)
        gram = layout.sum_(gram)
        finite = torch.isfinite(gram.flatten(1)).all(0).view(gram.shape[1:]).all(1)
        n = len(probe_batches)
        kept = int(finite.sum())
        nan = float("nan")
        L = layout.num_layers
        out: dict[str, Any] = {"count": kept, "skipped": n - kept}
        if kept < 2:
            out.update(mean=nan, min=nan, max=nan, layer_mean=[nan] * L)
            out.update(layer_min=[nan] * L, layer_max=[nan] * L)
            return out
        r = gram_confusion(gram[:, finite][:, :, finite])
        assert r.layer_mean is not None and r.layer_min is not None and r.layer_max is not None
        values = torch.cat([torch.stack([r.mean, r.min, r.max]), r.layer_mean, r.layer_min])
        flat = torch.cat([values, r.layer_max]).tolist()  # one transfer to the host
        out.update(mean=flat[0], min=flat[1], max=flat[2])
        out.update(layer_mean=flat[3 : 3 + L], layer_min=flat[3 + L : 3 + 2 * L])
        out["layer_max"] = flat[3 + 2 * L :]
        return out
