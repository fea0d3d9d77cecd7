"""What the metric callbacks share: argument checks, per-epoch finalisation, logging and history,
checkpoint state, per-fit reset, instance names in the logged keys and the strategies they
support (the gradient-reading part is in :mod:`critical.callbacks._probe`)."""

from __future__ import annotations

import math
from typing import Any, ClassVar, TypeAlias

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities import rank_zero_warn
from typing_extensions import override

from critical._registry import register
from critical.callbacks._resume import restore_or_warn
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


def keyed(metric: str, name: str | None) -> str:
    """The key a metric is logged under for a callback instance called ``name``: the name after
    the metric's first component, ``gradient_confusion/mean`` -> ``gradient_confusion@exact/mean``
    (unchanged without a name).

    Example:
        >>> keyed("gradient_confusion/mean", "exact"), keyed("layer_rotation", "all")
        ('gradient_confusion@exact/mean', 'layer_rotation@all')
    """
    if not name:
        return metric
    head, sep, tail = metric.partition("/")
    return f"{head}@{name}{sep}{tail}"


def deepspeed_stage(strategy: Any) -> int | None:
    """The ZeRO stage of a DeepSpeed strategy (0 when the config has none), ``None`` for any
    other strategy. Detected by class name and attributes (Lightning's ``DeepSpeedStrategy``
    keeps its configuration in ``config``): deepspeed need not be installed.

    Example (a stand-in with the name and config of Lightning's strategy):
        >>> from lightning.pytorch.strategies import DDPStrategy
        >>> DeepSpeedStrategy = type("DeepSpeedStrategy", (), {})
        >>> ds = DeepSpeedStrategy()
        >>> ds.config = {"zero_optimization": {"stage": 2}}
        >>> deepspeed_stage(ds), deepspeed_stage(DDPStrategy())
        (2, None)
    """
    if not any("deepspeed" in c.__name__.lower() for c in type(strategy).__mro__):
        return None
    if getattr(strategy, "zero_stage_3", False):
        return 3
    config = getattr(strategy, "config", None)
    zero = config.get("zero_optimization") if isinstance(config, dict) else None
    stage = zero.get("stage") if isinstance(zero, dict) else None
    return int(stage) if isinstance(stage, int) else 0


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

    **Names.** An instance given a ``name`` logs (and returns from :meth:`finalize_epoch`, and
    keeps in :attr:`history`) its metrics under keys that carry it after the metric's first
    component: ``GradientConfusion(mode="exact", name="exact")`` logs
    ``critical/gradient_confusion@exact/mean`` (and ``CriticalPeriod(monitor=
    "gradient_confusion@exact/mean")`` watches it); the instance's :attr:`metric_names` are these
    keys. Two metric callbacks that would log the same key (two unnamed ``GradientConfusion``, say)
    raise ``ValueError`` at fit start instead of being averaged into one value by Lightning.

    **One fit, one history.** Each ``fit`` starts clean (history, layer names, theta_0, probe
    state are reset in ``setup``), so callback objects reused for a second ``Trainer(...).fit``
    measure the new model only; a fit resumed from a checkpoint gets its state back from the
    checkpoint (Lightning restores callback state after ``setup``).

    **One declaration.** A library subclass that declares :attr:`metric_names` is recorded in
    :mod:`critical._registry` when its class is created, with :attr:`cli_key` and
    :attr:`summary_columns`: the detector's known names, the CLI's keys and monitor choices and the
    summary's columns are read from there, so a new metric touches its own files only.
    """

    #: the scalars it logs (under ``critical/``)
    metric_names: tuple[str, ...] = ()
    #: its key in the ``critical`` CLI (``--<key>.<option>``); ``None``: its first name's head
    cli_key: ClassVar[str | None] = None
    #: its columns in the run summary's printed per-epoch table: (title, metric name, format)
    summary_columns: ClassVar[tuple[tuple[str, str, str], ...]] = ()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "metric_names" in cls.__dict__ and cls.__module__.startswith("critical."):
            register(cls)

    def __init__(
        self,
        log_layers: bool = False,
        name: str | None = None,
        state_device: str | torch.device | None = None,
        state_dtype: str | torch.dtype = "float32",
    ) -> None:
        self.log_layers = check_bool("log_layers", log_layers)
        if name is not None and (not isinstance(name, str) or not name or "/" in name):
            raise ValueError(f"`name` must be a non-empty string without '/', got {name!r}")
        self.name = name
        if name:  # the instance's keys carry its name (the class attribute stays the plain names)
            self.metric_names = tuple(keyed(m, name) for m in type(self).metric_names)
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

    def _reset_fit(self) -> None:
        """Forget everything of a previous fit (called in ``setup`` for each ``fit``; a resumed
        fit's state comes back from the checkpoint afterwards). Subclasses extend it."""
        self.history = []
        self.layer_names = []
        self._finalized_epoch = None
        self._last_values = {}
        self._warned = set()

    # ----------------------------------------------------------------- lifecycle
    @override
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage != "fit":
            return
        self._reset_fit()
        self._check_keys(trainer)

    #: what a resume without this callback's state means for it (one line, for the warning)
    _missing_state_effect = "its per-epoch history restarts at the resume point"

    @override
    def on_load_checkpoint(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        restore_or_warn(
            self,
            checkpoint,
            trainer,
            self._missing_state_effect,
            warn=lambda message: self.warn_once("missing_state", message),
        )

    def _check_keys(self, trainer: pl.Trainer) -> None:
        """Two metric callbacks logging the same key would be averaged by Lightning: refuse."""
        mine = set(self.metric_names)
        for other in trainer.callbacks:  # type: ignore[attr-defined]  # set by Lightning at runtime
            if other is self or not isinstance(other, MetricCallback):
                continue
            clash = sorted(mine & set(other.metric_names))
            if clash:
                kind = type(self).__name__
                example = f"{kind}(..., name='b')"
                raise ValueError(
                    f"two metric callbacks ({kind} and {type(other).__name__}) would both log "
                    f"{', '.join(PREFIX + k for k in clash)}, and Lightning would average their "
                    f"values into one: give one of them a `name`, e.g. {example} logs "
                    f"{PREFIX}{keyed(clash[0], 'b')}"
                )

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
        finite = {
            keyed(k, self.name): float(v)
            for k, v in scalars.items()
            if v is not None and math.isfinite(v)
        }
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
            entry["layers"] = {keyed(k, self.name): list(v) for k, v in layers.items()}
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
