r"""Run directory: every run writes its own directory of artefacts, atomically, as it goes.

Layout of ``root/name`` (``name`` defaults to ``YYYYmmdd-HHMMSS-<6 hex>``)::

    config.json      module and datamodule hparams, trainer settings, callbacks, versions, command
    metrics.csv      one row per completed epoch: epoch, multiplicity, every scalar of
    metrics.json     trainer.callback_metrics (same rows as JSON)
    cut_event.json   the critical-period event and the augmentation cut, or {"fired": false}
    energy.json      EnergyTracker.summary() + history      (if the trainer has an EnergyTracker)
    robustness.json  RobustnessEvaluator.results            (if it has a RobustnessEvaluator)
    exception.txt    the exception, if the run crashed
    events.out.tfevents.*, hparams.yaml   TensorBoard (see ``tensorboard``)

An existing directory is never written into: a given ``name`` that exists raises
``FileExistsError``; an automatic name picks a fresh one. Every file is written through a
temporary file and ``os.replace`` (:mod:`critical.io`) and rewritten as epochs complete, so a
run that crashes (``on_exception``) leaves everything measured up to its last completed epoch.

Epoch rows: other callbacks log epoch ``e``'s values in their own ``on_train_epoch_end``, which
may run after this one's, so the row of epoch ``e`` is recorded at the start of epoch ``e + 1``
(and at ``on_train_end`` / ``on_exception`` for the last completed epoch), when
``trainer.callback_metrics`` holds everything logged for epoch ``e`` (validation included). An
epoch interrupted by an exception gets no row. In epochs without validation (e.g.
``check_val_every_n_epoch > 1``) the row leaves out the metrics validation produces, rather than
repeat the last validation's values. A checkpoint holds the rows of the epochs completed before
it; one taken at validation end (``ModelCheckpoint``'s default when ``check_val_every_n_epoch >
1``) comes before that epoch's metrics are logged, so a run resumed from it lacks that epoch's
row (a warning says so): use ``ModelCheckpoint(save_on_train_epoch_end=True)``. The row's
``multiplicity`` is k of that epoch's training data (:func:`critical.data.protocol.get_multiplicity`
at its start).

TensorBoard: with ``tensorboard=True`` (default) and no ``TensorBoardLogger`` on the trainer, one
is added in ``setup`` that writes into the run directory itself (``save_dir=path, name="",
version=""``), so hparams and everything logged land next to the JSON files (and checkpoints of a
``ModelCheckpoint`` without ``dirpath`` go to ``path/checkpoints``). With your own
``TensorBoardLogger`` (or ``tensorboard=False``) nothing is added; its ``log_dir`` is recorded in
``config.json``.

Distributed training: global rank 0 picks the name (broadcast to every rank in ``setup``) and
writes every file; the path is the same on every rank.

Example::

    >>> import lightning as L
    >>> from critical.callbacks.run_directory import RunDirectory
    >>> run = RunDirectory(root="runs")                     # doctest: +SKIP
    >>> trainer = L.Trainer(max_epochs=3, callbacks=[run])  # doctest: +SKIP
    >>> trainer.fit(model, datamodule)                      # doctest: +SKIP
    >>> sorted(p.name for p in run.path.glob("*.json"))     # doctest: +SKIP
    ['config.json', 'cut_event.json', 'metrics.json']
"""

from __future__ import annotations

import inspect
import math
import os
import platform
import re
import sys
import time
import uuid
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn
from typing_extensions import override

from critical.callbacks.energy import EnergyTracker
from critical.callbacks.robustness import RobustnessEvaluator
from critical.data.protocol import get_multiplicity
from critical.io import atomic_write_csv, atomic_write_json, atomic_write_text, to_jsonable
from critical.runfiles import (
    CONFIG,
    CUT_EVENT,
    ENERGY,
    EXCEPTION,
    METRICS_CSV,
    METRICS_JSON,
    ROBUSTNESS,
    cut_from_multiplicities,
    find_critical_period,
    find_cutoff,
)

__all__ = ["RunDirectory", "auto_run_name"]

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._=+-]*$")


def auto_run_name() -> str:
    """``YYYYmmdd-HHMMSS-`` plus 6 random hex digits (local time)."""
    return f"{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"


def _versions() -> dict[str, Any]:
    out: dict[str, Any] = {"python": platform.python_version()}
    for mod in ("torch", "lightning", "critical", "torchvision", "codecarbon", "numpy"):
        try:
            out[mod] = __import__(mod).__version__
        except Exception:  # noqa: BLE001 - optional
            out[mod] = None
    out["cuda"] = torch.version.cuda
    return out


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
        if callable(value) and not isinstance(value, type):
            value = getattr(value, "__qualname__", repr(value))
        args[name] = to_jsonable(value)
    return {"class": f"{cls.__module__}.{cls.__qualname__}", "init_args": args}


def _scalar(v: Any) -> float | None:
    """A finite Python float from a 0-d/1-element tensor or a number, else None."""
    if isinstance(v, torch.Tensor):
        if v.numel() != 1:
            return None
        v = v.detach().float().item()
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    v = float(v)
    return v if math.isfinite(v) else None


class RunDirectory(Callback):
    r"""Write a run's configuration, per-epoch metrics, cut event, energy and robustness results
    into a fresh directory ``root/name``.

    Args:
        root: parent directory (created if missing).
        name: the run's directory name (letters, digits, ``._=+-``); ``None``: an automatic
            ``timestamp-suffix`` name. A given name that exists is an error.
        tensorboard: add a ``TensorBoardLogger`` writing into the run directory when the trainer
            has none.
        tags: free-form labels saved as ``config.json["tags"]`` (the sweeps record model, seed
            and policy there; ``critical report`` groups runs by them).

    Attributes:
        path: the run directory (``Path``); known from construction for a given name, and for
            an automatic name decided (and broadcast from rank 0) in ``setup``.
        rows: the per-epoch metric rows written so far.
    """

    def __init__(
        self,
        root: str | os.PathLike = "runs",
        name: str | None = None,
        tensorboard: bool = True,
        tags: dict[str, Any] | None = None,
    ) -> None:
        if not isinstance(root, (str, os.PathLike)) or not os.fspath(root):
            raise ValueError(f"`root` must be a directory path, got {root!r}")
        if name is not None and (not isinstance(name, str) or not _NAME_RE.match(name)):
            raise ValueError(
                "`name` must be None (automatic) or a directory name of letters, digits and "
                f"'._=+-' not starting with a dot, got {name!r}"
            )
        if not isinstance(tensorboard, bool):
            raise ValueError(f"`tensorboard` must be a bool, got {tensorboard!r}")
        if tags is not None and not isinstance(tags, Mapping):
            raise ValueError(f"`tags` must be a mapping, got {tags!r}")
        self.tags = dict(tags or {})
        self.root = Path(root)
        self.name = name
        self.tensorboard = tensorboard
        self.auto_name = name is None
        if name is not None and (self.root / name).exists():
            raise FileExistsError(
                f"run directory {self.root / name} already exists; runs never overwrite each "
                "other: choose another `name` or leave it None for an automatic one"
            )
        self.path: Path | None = None if name is None else self.root / name
        self.rows: list[dict[str, Any]] = []
        self._created = False
        self._pending: dict[str, Any] | None = None  # the current epoch: epoch, multiplicity, done
        self._is_writer = True
        self._added_logger: TensorBoardLogger | None = None
        self.resumed_from: str | None = None
        self._trainer: pl.Trainer | None = None
        self._config_written = False
        self._val_keys: set[str] = set()  # metrics that validation produces
        self._warned_early_checkpoint = False
        self._before_val: dict[str, float | None] = {}  # callback_metrics as validation starts

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(root={os.fspath(self.root)!r}, name={self.name!r}, "
            f"tensorboard={self.tensorboard})"
        )

    # ------------------------------------------------------------------ directory
    def _make_dir(self, trainer: pl.Trainer) -> bool:
        """Create the directory (rank 0) once; True when it was created by this call."""
        if self._created:
            return False
        strategy = trainer.strategy
        if self.auto_name:
            name: str | None = None
            if trainer.global_rank == 0:
                name = self.path.name if self.path is not None else auto_run_name()
                while (self.root / name).exists():
                    name = auto_run_name()
            self.name = strategy.broadcast(name, src=0)
            assert self.name is not None  # rank 0 always names it
            self.path = self.root / self.name
        path = self.path
        assert path is not None  # given in __init__, or named just above
        # rank 0 decides, so every rank raises (or not) together
        exists = strategy.broadcast(path.exists() if trainer.global_rank == 0 else None, src=0)
        if exists:
            raise FileExistsError(
                f"run directory {self.path} already exists; runs never overwrite each other: "
                "choose another `name` or leave it None for an automatic one"
            )
        if self._is_writer:
            self.root.mkdir(parents=True, exist_ok=True)
            path.mkdir(exist_ok=False)
            rank_zero_info(f"RunDirectory: writing this run to {self.path}")
        self._created = True
        return True

    def ensure_directory(self, trainer: pl.Trainer) -> Path:
        """Create the run directory now if it does not exist yet (on every rank, collectively:
        rank 0 names it) and return its path. For callbacks that write into it during setup."""
        self._is_writer = trainer.global_rank == 0
        self._make_dir(trainer)
        assert self.path is not None
        return self.path

    def _add_tensorboard(self, trainer: pl.Trainer) -> None:
        if not self.tensorboard or any(isinstance(lg, TensorBoardLogger) for lg in trainer.loggers):
            return
        if self._added_logger is None:
            self._added_logger = TensorBoardLogger(
                save_dir=str(self.path), name="", version="", default_hp_metric=False
            )
        if self._added_logger not in trainer.loggers:
            trainer.loggers = [*trainer.loggers, self._added_logger]

    # ------------------------------------------------------------------ hooks
    @override
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self._trainer = trainer
        self._is_writer = trainer.global_rank == 0
        self._make_dir(trainer)
        self._add_tensorboard(trainer)
        if self._is_writer and not self._config_written:
            self._config_written = True
            self._write_config(trainer, pl_module, stage)
            self._write_cut_event(trainer)

    @override
    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._flush_pending(trainer)
        self._pending = {
            "epoch": trainer.current_epoch,
            "multiplicity": get_multiplicity(trainer),
            "done": False,
            "validated": False,
        }

    @override
    def on_validation_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.sanity_checking:
            self._before_val = {k: _scalar(v) for k, v in trainer.callback_metrics.items()}

    @override
    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        for k, v in trainer.callback_metrics.items():
            if k not in self._before_val or self._before_val[k] != _scalar(v):
                self._val_keys.add(k)
        if self._pending is not None:
            self._pending["validated"] = True

    @override
    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._pending is not None:
            self._pending["done"] = True

    @override
    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._flush_pending(trainer)
        self._write_results(trainer)

    @override
    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # after every callback's on_train_end (e.g. the robustness evaluation)
        self._write_results(trainer)

    @override
    def on_test_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._write_results(trainer)

    @override
    def on_exception(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException
    ) -> None:
        if not self._created or not self._is_writer or self.path is None or not self.path.is_dir():
            return
        try:
            self._flush_pending(trainer)
            self._write_results(trainer)
            atomic_write_text(
                self.path / EXCEPTION,
                f"{datetime.now(timezone.utc).isoformat()} epoch={trainer.current_epoch} "
                f"global_step={trainer.global_step}\n{type(exception).__name__}: {exception}\n",
            )
        except Exception:  # noqa: BLE001 - never mask the original exception
            pass

    # ------------------------------------------------------------------ writers
    def _pending_row(self, trainer: pl.Trainer) -> dict[str, Any] | None:
        """The row of the epoch whose hooks have all run (``None`` if there is none)."""
        pending = self._pending
        if pending is None or not pending["done"]:
            return None
        row: dict[str, Any] = {"epoch": pending["epoch"], "multiplicity": pending["multiplicity"]}
        for k, v in trainer.callback_metrics.items():
            # trainer.callback_metrics keeps the last validation's values in epochs without one
            if k in row or (not pending.get("validated") and k in self._val_keys):
                continue
            value = _scalar(v)
            if value is not None:
                row[k] = value
        return row

    def _flush_pending(self, trainer: pl.Trainer) -> None:
        row = self._pending_row(trainer)
        self._pending = None
        if row is None:
            return
        self.rows = [r for r in self.rows if r["epoch"] != row["epoch"]] + [row]
        self.rows.sort(key=lambda r: r["epoch"])
        if self._is_writer and self._created:
            self._write_metrics()
            self._write_cut_event(trainer)
            self._write_energy(trainer)

    def _write_metrics(self) -> None:
        assert self.path is not None
        keys: dict[str, None] = {"epoch": None, "multiplicity": None}
        for r in self.rows:
            for k in sorted(r):
                keys.setdefault(k, None)
        atomic_write_csv(self.path / METRICS_CSV, self.rows, fieldnames=list(keys))
        atomic_write_json(self.path / METRICS_JSON, self.rows)

    def _write_results(self, trainer: pl.Trainer) -> None:
        if not (self._is_writer and self._created and self.path is not None):
            return
        self._write_cut_event(trainer)
        self._write_energy(trainer)
        for cb in trainer.callbacks:  # type: ignore[attr-defined]  # undeclared: Lightning sets it on the Trainer
            if isinstance(cb, RobustnessEvaluator) and cb.results is not None:
                data = (
                    cb.results
                    if len(cb.all_results) <= 1
                    else {**cb.results, "all": cb.all_results}
                )
                atomic_write_json(self.path / ROBUSTNESS, data)
                break

    def _write_energy(self, trainer: pl.Trainer) -> None:
        assert self.path is not None  # callers write only once the directory exists
        for cb in trainer.callbacks:  # type: ignore[attr-defined]  # undeclared: Lightning sets it on the Trainer
            if isinstance(cb, EnergyTracker):
                atomic_write_json(self.path / ENERGY, {**cb.summary(), "history": cb.history})
                return

    def cut_event(self, trainer: pl.Trainer) -> dict[str, Any]:
        """The content of ``cut_event.json``: the detector's event and the cut, or not fired."""
        out: dict[str, Any] = {"fired": False}
        cp = find_critical_period(trainer)
        event = getattr(cp, "event", None) if cp is not None else None
        if event is not None:
            out["fired"] = True
            out["event"] = to_jsonable(event.to_dict() if hasattr(event, "to_dict") else event)
        diverged = getattr(cp, "diverged", None) if cp is not None else None
        if diverged is not None:
            out["diverged"] = to_jsonable(diverged)
        cutoff = find_cutoff(trainer)
        if cutoff is not None and getattr(cutoff, "cut_epoch", None) is not None:
            out["fired"] = True
            out["cut_epoch"] = cutoff.cut_epoch
            out["multiplicity_before"] = getattr(cutoff, "multiplicity_before", None)
            out["multiplicity_after"] = getattr(cutoff, "multiplicity_after", None)
            out["source"] = "cutoff"
        elif cutoff is None:
            # no cutoff callback: a change of k between epochs is the cut
            found = cut_from_multiplicities((r["epoch"], r.get("multiplicity")) for r in self.rows)
            if found is not None:
                out.update(fired=True, **found, source="multiplicity")
        return out

    def _write_cut_event(self, trainer: pl.Trainer) -> None:
        assert self.path is not None  # callers write only once the directory exists
        atomic_write_json(self.path / CUT_EVENT, self.cut_event(trainer))

    def _write_config(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        assert self.path is not None  # called once the directory exists
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
            "name": self.name,
            "path": str(self.path),
            "created": datetime.now(timezone.utc).isoformat(),
            "stage": stage,
            "tags": to_jsonable(self.tags),
            "resumed_from": self.resumed_from,
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
        self._config = config
        atomic_write_json(self.path / CONFIG, config)

    # ------------------------------------------------------------------ checkpoint state
    @property
    @override
    def state_key(self) -> str:
        return self._generate_state_key(root=os.fspath(self.root))

    @override
    def state_dict(self) -> dict[str, Any]:
        # a checkpoint taken at the end of an epoch (ModelCheckpoint runs after every other
        # callback) holds that epoch's row too, so a run resumed from it misses no epoch
        rows = [dict(r) for r in self.rows]
        row = self._pending_row(self._trainer) if self._trainer is not None else None
        if row is not None:
            rows = [r for r in rows if r["epoch"] != row["epoch"]] + [row]
        pending = self._pending
        early = pending is not None and pending["validated"] and not pending["done"]
        if early and not self._warned_early_checkpoint:
            assert pending is not None  # implied by `early`
            self._warned_early_checkpoint = True
            rank_zero_warn(
                f"RunDirectory: a checkpoint was taken at validation end of epoch "
                f"{pending['epoch']}, before the epoch's on_train_epoch_end hooks logged its "
                "metrics; a run resumed from it at the next epoch has no metrics row for "
                f"epoch {pending['epoch']}. ModelCheckpoint saves there by default when "
                "check_val_every_n_epoch > 1: pass ModelCheckpoint(save_on_train_epoch_end="
                "True) to checkpoint after them."
            )
        return {
            "rows": rows,
            "path": None if self.path is None else str(self.path),
        }

    @override
    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        # a resumed run writes a new directory that starts with the rows of the old one
        self.rows = [dict(r) for r in state_dict.get("rows", [])]
        self.resumed_from = state_dict.get("path")
        config = getattr(self, "_config", None)
        if config is not None and self._is_writer and self.path is not None:
            config["resumed_from"] = self.resumed_from  # restored after config.json was written
            atomic_write_json(self.path / CONFIG, config)
