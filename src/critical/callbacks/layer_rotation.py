"""Layer rotation (Carbonnelle & De Vleeschouwer, 2019): how far each layer's weights have turned
away from their initialization."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import lightning.pytorch as pl
import torch
from typing_extensions import override

from critical.callbacks._base import EpochValues, MetricCallback, read_params_into
from critical.metrics.functional import layer_rotation
from critical.metrics.layers import INCLUDE_CHOICES, ParamLayout, weight_layout
from critical.validation import check_choice

AGGREGATES = ("mean", "median", "max")


class LayerRotation(MetricCallback):
    """Logs, every epoch, the cosine distance ``1 - cos(theta_0, theta_e)`` of each layer's
    weights to their values at the start of training, and an aggregate over layers.

    Logged (prefix ``critical/``): ``layer_rotation`` (the ``aggregate`` over layers, default the
    mean) and, with ``log_layers=True``, ``layer_rotation/<layer>``.

    Layers (see :func:`~critical.metrics.weight_layout`): by default the weight tensors of conv,
    linear, embedding and attention projection modules; ``include="all"`` adds normalization
    gains and biases. ``theta_0`` is taken when training starts and saved in checkpoints, so a
    resumed run keeps measuring against the true initialization.

    Cost: one pass over the weights at each epoch end; no per-step work. Memory: P elements of
    ``state_dtype`` on ``state_device`` for ``theta_0`` (plus a P buffer at epoch end).

    Args:
        include: ``"weights"`` or ``"all"``.
        aggregate: ``"mean"``, ``"median"`` or ``"max"`` over layers.
        log_layers: also log per-layer values.
        state_device: device of ``theta_0`` (default: the module's; ``"cpu"`` for large models).
        state_dtype: ``"float32"`` (default), ``"bfloat16"``, ``"float16"`` or ``"float64"``.
        name: distinguishes two instances in checkpoints.

    Example:
        >>> import lightning as L
        >>> from critical.callbacks import LayerRotation
        >>> trainer = L.Trainer(callbacks=[LayerRotation(log_layers=True)], logger=False)
    """

    metric_names = ("layer_rotation",)

    def __init__(
        self,
        include: str = "weights",
        aggregate: str = "mean",
        log_layers: bool = False,
        state_device: str | torch.device | None = None,
        state_dtype: str | torch.dtype = "float32",
        name: str | None = None,
    ) -> None:
        super().__init__(log_layers, name, state_device, state_dtype)
        self.include = check_choice("include", include, INCLUDE_CHOICES)
        self.aggregate = check_choice("aggregate", aggregate, AGGREGATES)
        self._layout: ParamLayout | None = None
        self.theta0: torch.Tensor | None = None
        self._theta0_signature: list[tuple[str, int]] | None = None

    @override
    def _state_key_fields(self) -> dict[str, Any]:
        return {"include": self.include}

    @override
    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._layout = weight_layout(pl_module, self.include)
        self.layer_names = list(self._layout.names)
        if self.theta0 is not None:
            self._check_signature()

    @override
    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        dev = self._state_device(pl_module)
        layout = self._layout
        assert layout is not None  # built in on_fit_start
        if self.theta0 is None:  # a fresh run; a resumed one restored theta_0 from the checkpoint
            self.theta0 = layout.new_buffer(self.state_dtype, dev)
            read_params_into(layout, layout.param_views(self.theta0))
            self._theta0_signature = layout.signature()
        else:
            self._check_signature()
            self.theta0 = self.theta0.to(device=dev, dtype=self.state_dtype)

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

    @override
    @torch.no_grad()
    def _compute_epoch(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> EpochValues:
        layout, theta0 = self._layout, self.theta0
        assert layout is not None and theta0 is not None  # on_fit_start, on_train_start
        theta = layout.new_buffer(torch.float32, theta0.device)
        read_params_into(layout, layout.param_views(theta))
        per_layer = layer_rotation(theta0.float(), theta, layout.lengths)
        aggregates: dict[str, Callable[[], torch.Tensor]] = {
            "mean": per_layer.mean,
            "median": per_layer.median,
            "max": per_layer.max,
        }
        agg = aggregates[self.aggregate]
        return (
            {"layer_rotation": float(agg())},
            {"layer_rotation": per_layer.tolist()},
            {},
        )

    @override
    def _extra_state(self) -> dict[str, Any]:
        return {
            "theta0": None if self.theta0 is None else self.theta0.detach().cpu(),
            "theta0_signature": self._theta0_signature,
        }

    @override
    def _load_extra_state(self, state: dict[str, Any]) -> None:
        t = state.get("theta0")
        self.theta0 = None if t is None else t.clone()
        sig = state.get("theta0_signature")
        self._theta0_signature = None if sig is None else [tuple(x) for x in sig]
