"""What the metric callbacks share: argument checks, per-epoch finalisation, logging and history,
and checkpoint state (the gradient-reading part is in :mod:`critical.callbacks._probe`)."""

from __future__ import annotations

import math
from typing import Any, TypeAlias

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
def read_params_into(layout: ParamLayout, views: list[torch.Tensor]) -> None:
    torch._foreach_copy_(views, [p.detach() for p in layout.params])


#: hooks Lightning calls for every callback at every batch; it skips an attribute that is not
#: callable (``trainer.call._call_callback_hooks``), so a callback that leaves one of these as the
#: base class's no-op sets it to None and saves the per-step dispatch (a profiler context, a
#: formatted name, a call): on a GPU, where a step takes milliseconds, that is measurable
PER_BATCH_HOOKS = (
    *(
        f"on_{stage}_batch_{when}"
        for stage in ("train", "validation", "test", "predict")
        for when in ("start", "end")
    ),
    "on_before_zero_grad",
    "on_before_backward",
    "on_after_backward",
    "on_before_optimizer_step",
)


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
        self._state_key: str | None = None
        for hook in PER_BATCH_HOOKS:
            if getattr(type(self), hook) is getattr(Callback, hook):  # not overridden
                setattr(self, hook, None)

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
        # Lightning formats it at every hook call of every step: computed once
        if self._state_key is None:
            self._state_key = self._generate_state_key(name=self.name, **self._state_key_fields())
        return self._state_key

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
        if info.get("partial"):
            self.warn_once(
                "partial",
                f"{type(self).__name__}: epoch {epoch} was resumed from a mid-epoch checkpoint "
                "that did not hold its gradient statistics; its values cover only the steps "
                "after the resume (history entry marked 'partial')",
            )
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
