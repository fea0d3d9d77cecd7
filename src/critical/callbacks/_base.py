"""What the three metric callbacks share: argument checks, the probe schedule, gradient reading,
per-epoch finalisation, logging and history, and checkpoint state."""

from __future__ import annotations

import math
from typing import Any, TypeAlias, cast

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities import rank_zero_warn
from typing_extensions import override

from critical.metrics.layers import ParamLayout
from critical.validation import check_bool

PREFIX = "critical/"

#: what :meth:`MetricCallback._compute_epoch` returns: ``(scalars, layer_values, info)``
EpochValues: TypeAlias = tuple[dict[str, float], dict[str, list[float]], dict[str, Any]]

_DTYPES = {
    "float32": torch.float32,
    "float64": torch.float64,
    "bfloat16": torch.bfloat16,
    "float16": torch.float16,
}


def resolve_dtype(dtype: str | torch.dtype) -> torch.dtype:
    if isinstance(dtype, torch.dtype):
        if dtype not in _DTYPES.values():
            raise ValueError(f"`state_dtype` must be one of {list(_DTYPES)}, got {dtype}")
        return dtype
    if dtype not in _DTYPES:
        raise ValueError(f"`state_dtype` must be one of {list(_DTYPES)}, got {dtype!r}")
    return _DTYPES[dtype]


@torch.no_grad()
def read_into(layout: ParamLayout, views: list[torch.Tensor]) -> None:
    """Copy the current ``.grad`` of every parameter of ``layout`` into ``views`` (one fused
    foreach copy; a missing gradient reads as zero). No host synchronisation."""
    grads = [p.grad for p in layout.params]
    if any(g is None or g.is_sparse for g in grads):
        for v, g in zip(views, grads):
            if g is None:
                v.zero_()
        pairs = [
            (v, g.to_dense() if g.is_sparse else g) for v, g in zip(views, grads) if g is not None
        ]
        if pairs:
            torch._foreach_copy_([v for v, _ in pairs], [g for _, g in pairs])
        return
    torch._foreach_copy_(views, cast(list[torch.Tensor], grads))  # no None left (checked above)


@torch.no_grad()
def read_params_into(layout: ParamLayout, views: list[torch.Tensor]) -> None:
    torch._foreach_copy_(views, [p.detach() for p in layout.params])


class ProbeSchedule:
    """Which optimizer steps of an epoch are probed: at most ``max_probes``, evenly spread.

    ``every=None`` spreads the probes over the epoch's optimizer steps (known at epoch start
    from ``trainer.num_training_batches`` and gradient accumulation); an integer probes every
    ``every``-th step. Steps are counted per epoch from 0.
    """

    def __init__(self, max_probes: int, every: int | None) -> None:
        self.max_probes = max_probes
        self.every = every
        self.stride = 1

    def start_epoch(self, trainer: pl.Trainer) -> None:
        if self.every is not None:
            self.stride = self.every
            return
        batches = trainer.num_training_batches
        if not math.isfinite(batches):
            self.stride = 1
            return
        steps = math.ceil(batches / max(1, trainer.accumulate_grad_batches))
        self.stride = max(1, steps // self.max_probes)

    def is_probe(self, step: int) -> bool:
        return step % self.stride == 0 and step // self.stride < self.max_probes


class MetricCallback(Callback):
    """Base of the metric callbacks: per-epoch values, logged under ``critical/``, kept in
    :attr:`history` (one entry per epoch, finite values only) and saved with checkpoints.

    Subclasses implement :meth:`_compute_epoch` returning ``(scalars, layer_values, info)``
    (``info``: bookkeeping such as probe counts, stored in the history entry but not logged) and
    list their scalar names in :attr:`metric_names`.
    """

    metric_names: tuple[str, ...] = ()

    def __init__(
        self,
        log_layers: bool = False,
        name: str | None = None,
        state_device: str | torch.device | None = None,
        state_dtype: str | torch.dtype = "float32",
    ) -> None:
        self.log_layers = check_bool("log_layers", log_layers)
        self.name = name
        self.state_device = state_device
        self.state_dtype = resolve_dtype(state_dtype)
        self.history: list[dict[str, Any]] = []
        self.layer_names: list[str] = []
        self._finalized_epoch: int | None = None
        self._last_values: dict[str, float] = {}
        self._warned: set[str] = set()

    # ----------------------------------------------------------------- subclass API
    def _compute_epoch(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> EpochValues:
        raise NotImplementedError

    def _extra_state(self) -> dict[str, Any]:
        return {}

    def _load_extra_state(self, state: dict[str, Any]) -> None:
        pass

    # ----------------------------------------------------------------- shared behaviour
    def warn_once(self, key: str, message: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            rank_zero_warn(message)

    @property
    @override
    def state_key(self) -> str:
        return self._generate_state_key(name=self.name, **self._state_key_fields())

    def _state_key_fields(self) -> dict[str, Any]:
        return {}

    def _state_device(self, pl_module: pl.LightningModule) -> torch.device:
        """Where per-parameter state lives: ``state_device``, else the module's device."""
        return (
            torch.device(self.state_device) if self.state_device is not None else pl_module.device
        )

    def finalize_epoch(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule
    ) -> dict[str, float]:
        """The values of the epoch that just ended; computed once per epoch (idempotent), so the
        :class:`~critical.callbacks.CriticalPeriod` callback can pull them whatever the callback
        order."""
        epoch = trainer.current_epoch
        if self._finalized_epoch == epoch:
            return dict(self._last_values)
        self._finalized_epoch = epoch
        scalars, layers, info = self._compute_epoch(trainer, pl_module)
        finite = {k: float(v) for k, v in scalars.items() if v is not None and math.isfinite(v)}
        self._last_values = finite
        if not finite:
            self.warn_once(
                "empty",
                f"{type(self).__name__}: no value for epoch {epoch} (too few valid probes); "
                "the epoch is left out of the history",
            )
            return {}
        entry: dict[str, Any] = {"epoch": epoch, **finite, **info}
        if layers:
            entry["layers"] = {k: list(v) for k, v in layers.items()}
        self.history.append(entry)
        return dict(finite)

    @override
    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        values = self.finalize_epoch(trainer, pl_module)
        if not values:
            return
        metrics = {PREFIX + k: v for k, v in values.items()}
        if self.log_layers and self.history and self.history[-1]["epoch"] == trainer.current_epoch:
            for key, per_layer in self.history[-1].get("layers", {}).items():
                for lname, v in zip(self.layer_names, per_layer):
                    if math.isfinite(v):
                        metrics[f"{PREFIX}{key}/{lname}"] = v
        pl_module.log_dict(metrics, on_step=False, on_epoch=True, sync_dist=True)

    @override
    def state_dict(self) -> dict[str, Any]:
        return {
            "history": [dict(h) for h in self.history],
            "layer_names": list(self.layer_names),
            "finalized_epoch": self._finalized_epoch,
            **self._extra_state(),
        }

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.history = [dict(h) for h in state_dict.get("history", [])]
        self.layer_names = list(state_dict.get("layer_names", []))
        self._finalized_epoch = state_dict.get("finalized_epoch")
        if self.history:
            self._last_values = {
                k: v for k, v in self.history[-1].items() if k in self.metric_names
            }
        self._load_extra_state(state_dict)
