"""The content of a run directory's ``config.json`` (see :class:`~critical.callbacks.RunDirectory`):
the module and datamodule with their hyperparameters, the seed, the trainer's settings, each
callback's settings as ``{"class", "init_args"}``, the loggers, library versions and the command
line."""

from __future__ import annotations

import inspect
import os
import platform
import sys
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any

import lightning.pytorch as pl
import torch

from critical.data.protocol import get_multiplicity
from critical.io import to_jsonable

__all__ = ["build_config", "callback_settings", "global_seed"]


def _versions() -> dict[str, Any]:
    out: dict[str, Any] = {"python": platform.python_version()}
    for mod in ("torch", "lightning", "critical", "torchvision", "codecarbon", "numpy"):
        try:
            out[mod] = __import__(mod).__version__
        except Exception:  # noqa: BLE001 - optional
            out[mod] = None
    out["cuda"] = torch.version.cuda
    return out


def global_seed() -> int | None:
    """The seed of the last ``seed_everything`` call in this process (Lightning keeps it in the
    ``PL_GLOBAL_SEED`` environment variable), ``None`` when none was set.

    Example:
        >>> import lightning as L
        >>> _ = L.seed_everything(7, verbose=False)  # doctest: +SKIP
        >>> global_seed()  # doctest: +SKIP
        7
    """
    try:
        return int(os.environ["PL_GLOBAL_SEED"])
    except (KeyError, ValueError):
        return None


def _hparams(obj: Any) -> dict[str, Any] | None:
    hp = getattr(obj, "hparams", None)
    if hp is None:
        return None
    try:
        return to_jsonable(dict(hp))
    except Exception:  # noqa: BLE001
        return {"repr": repr(hp)}


def callback_settings(cb: Any) -> dict[str, Any]:
    """A callback's class and the constructor arguments it keeps as attributes of the same name
    (``{"class": "pkg.mod.Name", "init_args": {...}}``), for ``config.json``; a callback with a
    ``settings()`` method reports its own."""
    cls = type(cb)
    own = getattr(cb, "settings", None)
    if callable(own):
        return {"class": f"{cls.__module__}.{cls.__qualname__}", "init_args": to_jsonable(own())}
    args: dict[str, Any] = {}
    params: Mapping[str, inspect.Parameter]
    try:
        params = inspect.signature(cls.__init__).parameters
    except (TypeError, ValueError):
        params = {}
    for name, p in params.items():
        if name == "self" or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        try:
            value = getattr(cb, name)
        except Exception:  # noqa: BLE001 - a property that cannot be read here
            continue
        args[name] = _setting(value)
    return {"class": f"{cls.__module__}.{cls.__qualname__}", "init_args": args}


def _setting(value: Any) -> Any:
    """A constructor argument as JSON: plain values as they are, a function by its qualified
    name, any other object (a DataLoader, another callback) by its class, never by a repr that
    holds a memory address."""
    if callable(value) and not isinstance(value, type) and hasattr(value, "__qualname__"):
        return f"{getattr(value, '__module__', '')}.{value.__qualname__}".lstrip(".")
    out = to_jsonable(value)
    plain = (type(None), bool, int, float, str, list, tuple, dict, set, frozenset)
    if not isinstance(value, plain) and isinstance(out, str) and out == repr(value):
        cls = type(value)
        return {"class": f"{cls.__module__}.{cls.__qualname__}"}
    return out


def build_config(
    run: Any, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str
) -> dict[str, Any]:
    """The content of ``config.json`` for the run directory ``run`` (its name, path, tags and
    ``resumed_from``): the module and datamodule with their hyperparameters, the trainer's
    settings, every callback's settings (:func:`callback_settings`), the seed
    (:func:`global_seed`), the loggers, versions and the command."""
    dm = trainer.datamodule  # type: ignore[attr-defined]  # undeclared: Lightning sets it on the Trainer
    strategy = trainer.strategy
    trainer_cfg = {
        "max_epochs": trainer.max_epochs,
        "min_epochs": trainer.min_epochs,
        "max_steps": trainer.max_steps,
        "precision": trainer.precision,
        "accelerator": type(trainer.accelerator).__name__,
        "strategy": type(strategy).__name__,
        "devices": trainer.num_devices,
        "device_ids": list(trainer.device_ids),
        "num_nodes": trainer.num_nodes,
        "world_size": trainer.world_size,
        "accumulate_grad_batches": trainer.accumulate_grad_batches,
        "gradient_clip_val": trainer.gradient_clip_val,
        "gradient_clip_algorithm": trainer.gradient_clip_algorithm,
        "limit_train_batches": trainer.limit_train_batches,
        "limit_val_batches": trainer.limit_val_batches,
        "check_val_every_n_epoch": trainer.check_val_every_n_epoch,
        "val_check_interval": trainer.val_check_interval,
        "reload_dataloaders_every_n_epochs": trainer.reload_dataloaders_every_n_epochs,  # type: ignore[attr-defined]  # undeclared: Lightning sets it on the Trainer
        "log_every_n_steps": trainer.log_every_n_steps,  # type: ignore[attr-defined]  # undeclared: Lightning sets it on the Trainer
        "default_root_dir": trainer.default_root_dir,
    }
    loggers = []
    for lg in trainer.loggers:
        entry: dict[str, Any] = {"class": type(lg).__name__}
        try:
            entry["log_dir"] = lg.log_dir
        except Exception:  # noqa: BLE001
            entry["log_dir"] = getattr(lg, "save_dir", None)
        loggers.append(entry)
    config = {
        "name": run.name,
        "path": str(run.path),
        "created": datetime.now(timezone.utc).isoformat(),
        "stage": stage,
        "tags": to_jsonable(run.tags),
        "seed": global_seed(),
        "resumed_from": run.resumed_from,
        "command": list(sys.argv),
        "host": platform.node(),
        "module": {
            "class": f"{type(pl_module).__module__}.{type(pl_module).__qualname__}",
            "hparams": _hparams(pl_module),
        },
        "datamodule": None
        if dm is None
        else {
            "class": f"{type(dm).__module__}.{type(dm).__qualname__}",
            "hparams": _hparams(dm),
            "multiplicity": get_multiplicity(trainer),
        },
        "trainer": trainer_cfg,
        "callbacks": [callback_settings(cb) for cb in trainer.callbacks],  # type: ignore[attr-defined]  # undeclared: Lightning sets it on the Trainer
        "loggers": loggers,
        "versions": _versions(),
    }
    return config
