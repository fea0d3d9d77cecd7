r"""Run directory: every run writes its own directory of artefacts, atomically, as it goes.

Layout of ``root/name`` (``name`` defaults to ``YYYYmmdd-HHMMSS-<6 hex>``)::

    config.json      module and datamodule (classes, hparams), trainer settings, callbacks, the
                     seed (seed_everything's), versions, command
    metrics.csv      one row per completed epoch: epoch, multiplicity, every scalar logged in
    metrics.json     that epoch (same rows as JSON)
    cut_event.json   the critical-period event, the guards at the firing (or what held the
                     detector back) and the augmentation cut, or {"fired": false}
    energy.json      EnergyTracker.summary() + history      (if the trainer has an EnergyTracker)
    robustness.json  RobustnessEvaluator.results            (if it has a RobustnessEvaluator)
    summary.json     the run summary (critical.summary), when fit ends normally
    evaluations.json trainer.validate / trainer.test after the fit, with their metrics
    plot.png, .pdf   the run's curves (critical.report.plot_run), when fit ends normally
    exception.txt    the exception, if the run crashed
    events.out.tfevents.*, hparams.yaml   TensorBoard (see ``tensorboard``)

An existing directory is never written into: a given ``name`` that exists raises
``FileExistsError``; an automatic name picks a fresh one. Every file is written through a
temporary file and ``os.replace`` (:mod:`critical.io`) and rewritten as epochs complete, so a
run that crashes (``on_exception``) leaves everything measured up to its last completed epoch.
A file that cannot be written mid-run (disk full, directory removed) never stops training: one
warning per file, and the summary says what was not written.

Epoch rows: other callbacks log epoch ``e``'s values in their own ``on_train_epoch_end``, which
may run after this one's, so the row of epoch ``e`` is recorded at the start of epoch ``e + 1``
(and at ``on_train_end`` / ``on_exception`` for the last completed epoch), when
``trainer.callback_metrics`` holds everything logged for epoch ``e`` (validation included). A
row holds only the metrics logged in its epoch (:mod:`critical.callbacks._epoch_rows`): a
metric without a value in an epoch (no validation that epoch, gradient metrics after a
divergence, energy after a codecarbon failure) is empty there, never the previous epoch's value.
An epoch interrupted by an exception gets no row. A checkpoint holds the rows of the epochs
completed before it; one taken at validation end (``ModelCheckpoint``'s default when
``check_val_every_n_epoch > 1``) comes before that epoch's metrics are logged, so a run resumed
from it lacks that epoch's row (a warning says so): use
``ModelCheckpoint(save_on_train_epoch_end=True)``. The row's ``multiplicity`` is k of that
epoch's training data (:func:`critical.data.protocol.get_multiplicity` at its start).

At fit end (global rank 0, after every callback's ``on_train_end``, e.g. the robustness
evaluation) the run's summary (:mod:`critical.summary`: the cut, what it saved or why nothing,
accuracy, energy and how it was measured) is printed and written as ``summary.json``, and
``plot.png`` is drawn; neither can fail the run.

TensorBoard: with ``tensorboard=True`` (default) and no ``TensorBoardLogger`` on the trainer, one
is added in ``setup`` that writes into the run directory itself (``save_dir=path, name="",
version=""``), so hparams and everything logged land next to the JSON files (and checkpoints of a
``ModelCheckpoint`` without ``dirpath`` go to ``path/checkpoints``). With your own
``TensorBoardLogger`` (or ``tensorboard=False``) nothing is added; its ``log_dir`` is recorded in
``config.json``. Lightning logs epoch metrics at the global step, which depends on k, so each
row is also written into every TensorBoard logger at step = epoch (``by_epoch/<metric>``) and at
step = training samples seen (``by_samples/<metric>``, with an EnergyTracker): runs with
different k line up.

Distributed training: global rank 0 picks the name (broadcast to every rank in ``setup``) and
writes every file; the path is the same on every rank.

Example::

    >>> import lightning as L
    >>> from critical.callbacks.run_directory import RunDirectory
    >>> run = RunDirectory(root="runs")                     # doctest: +SKIP
    >>> trainer = L.Trainer(max_epochs=3, callbacks=[run])  # doctest: +SKIP
    >>> trainer.fit(model, datamodule)                      # doctest: +SKIP
    >>> sorted(p.name for p in run.path.glob("*.json"))     # doctest: +SKIP
    ['config.json', 'cut_event.json', 'metrics.json', 'summary.json']
"""

from __future__ import annotations

import os
import re
import time
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn
from typing_extensions import override

from critical.callbacks._epoch_rows import EpochRows
from critical.callbacks._resume import restore_or_warn
from critical.callbacks._run_config import build_config, callback_settings
from critical.callbacks._run_writer import RunFileWriter
from critical.callbacks._tensorboard import add_run_logger, is_default_logger
from critical.data.protocol import get_multiplicity
from critical.io import atomic_write_json
from critical.runfiles import CONFIG
from critical.validation import check_bool, check_path, check_str, check_type

__all__ = ["RunDirectory", "auto_run_name", "callback_settings"]

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._=+-]*$")


def auto_run_name() -> str:
    """``YYYYmmdd-HHMMSS-`` plus 6 random hex digits (local time)."""
    return f"{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"


class RunDirectory(RunFileWriter, Callback):
    r"""Write a run's configuration, per-epoch metrics, cut event, energy, robustness results and
    summary into a fresh directory ``root/name``.

    Args:
        root: parent directory (created if missing); ``None``: the first logger's ``log_dir``
            (e.g. ``logs/version_0``), so the run directory sits with the logger's files.
        name: the run's directory name (letters, digits, ``._=+-``); ``None``: an automatic
            ``timestamp-suffix`` name. A given name that exists is an error.
        tensorboard: write TensorBoard events into the run directory when the trainer has no
            logger of its own: with Lightning's default logger (a ``TensorBoardLogger`` writing
            to ``lightning_logs/``) the events go to the run directory instead; a logger you
            passed (``CSVLogger``, your own ``TensorBoardLogger``, ...) is left alone and none
            is added.
        tags: free-form labels saved as ``config.json["tags"]`` (the sweeps record model, seed
            and policy there; ``critical report`` groups runs by them).
        print_summary: print the run summary at fit end (it is written to ``summary.json`` in
            every case).
        plot: draw ``plot.png`` / ``plot.pdf`` at fit end.
        accuracy_key: the logged metric the summary and the plot read as the accuracy; ``None``:
            the first of the common names logged (``val/acc``, ``val_acc``, ``val_accuracy``,
            ...: :data:`critical.runfiles.ACCURACY_KEYS`), and the summary says which.

    Attributes:
        path: the run directory (``Path``); known from construction for a given name, and for
            an automatic name decided (and broadcast from rank 0) in ``setup``.
        rows: the per-epoch metric rows written so far.
        summary: the run summary (:func:`critical.summary.build_summary`), after fit end.
        not_written: file name -> why its last write failed (empty when everything was written).
    """

    def __init__(
        self,
        root: str | os.PathLike | None = "runs",
        name: str | None = None,
        tensorboard: bool = True,
        tags: dict[str, Any] | None = None,
        print_summary: bool = True,
        plot: bool = True,
        accuracy_key: str | None = None,
    ) -> None:
        check_path("root", root, allow_none=True)
        if name is not None and (not isinstance(name, str) or not _NAME_RE.match(name)):
            raise ValueError(
                "`name` must be None (automatic) or a directory name of letters, digits and "
                f"'._=+-' not starting with a dot, got {name!r}"
            )
        check_bool("tensorboard", tensorboard)
        check_type("tags", tags, Mapping, "a mapping", allow_none=True)
        check_bool("print_summary", print_summary)
        check_bool("plot", plot)
        self.accuracy_key = check_str("accuracy_key", accuracy_key, allow_none=True)
        self.tags = dict(tags or {})
        self._root_option = None if root is None else os.fspath(root)
        self.root = Path(root) if root is not None else Path(".")  # resolved in setup
        self.name = name
        self.tensorboard = tensorboard
        self.print_summary = print_summary
        self.plot = plot
        self.auto_name = name is None
        if root is not None and name is not None and (self.root / name).exists():
            raise FileExistsError(
                f"run directory {self.root / name} already exists; runs never overwrite each "
                "other: choose another `name` or leave it None for an automatic one"
            )
        self.path: Path | None = None if name is None or root is None else self.root / name
        self.summary: dict[str, Any] | None = None
        self.not_written: dict[str, str] = {}
        self._rows = EpochRows()
        self._created = False
        self._is_writer = True
        self._added_logger: TensorBoardLogger | None = None
        self.resumed_from: str | None = None
        self._trainer: pl.Trainer | None = None
        self._config: dict[str, Any] | None = None
        self._warned_early_checkpoint = False
        self._finished = False  # a fit ran to its end with this object
        self.evaluations: list[dict[str, Any]] = []  # validate / test runs after the fit

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(root={os.fspath(self.root)!r}, name={self.name!r}, "
            f"tensorboard={self.tensorboard})"
        )

    @property
    def rows(self) -> list[dict[str, Any]]:
        """The per-epoch metric rows written so far."""
        return self._rows.rows

    @rows.setter
    def rows(self, rows: list[dict[str, Any]]) -> None:
        self._rows.rows = rows

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
        if self.tensorboard:
            self._added_logger = add_run_logger(trainer, self.path, self._added_logger)

    def _resolve_root(self, trainer: pl.Trainer) -> None:
        """``root=None``: inside the first logger's ``log_dir`` (that is not ours)."""
        if self._root_option is not None:
            return
        logs = [
            str(lg.log_dir)
            for lg in trainer.loggers
            if lg is not self._added_logger
            and not is_default_logger(trainer, lg)
            and getattr(lg, "log_dir", None)
        ]
        root = Path(logs[0]) if logs else Path(trainer.default_root_dir) / "runs"
        if root != self.root:
            self.root = root
            if not self.auto_name and self.name is not None:
                self.path = self.root / self.name

    def _new_fit(self) -> None:
        """A further fit with this object (a finished run's files are never rewritten): an
        automatic name gets a fresh directory; a given one would be reused, which is an error."""
        if not self.auto_name:
            raise FileExistsError(
                f"RunDirectory(name={self.name!r}) already holds a finished run ({self.path}); "
                "a finished run's files are never rewritten: give each fit its own RunDirectory "
                "(or name), or leave name=None for automatic names"
            )
        self.path = None
        self.summary = None
        self.not_written = {}
        self._rows = EpochRows()
        self._created = False
        self._added_logger = None
        self.resumed_from = None
        self._config = None
        self._finished = False
        self.evaluations = []

    # ------------------------------------------------------------------ hooks
    @override
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage == "fit" and self._finished:
            self._new_fit()
        self._trainer = trainer
        self._is_writer = trainer.global_rank == 0
        self._resolve_root(trainer)
        self._make_dir(trainer)
        self._add_tensorboard(trainer)
        if self._is_writer and self._config is None:
            self._config = build_config(self, trainer, pl_module, stage)
            self._write(CONFIG, atomic_write_json, self._config)
            self._write_cut_event(trainer)

    @override
    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._flush_pending(trainer)
        self._rows.start(trainer, trainer.current_epoch, get_multiplicity(trainer))

    @override
    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        if trainer.state.fn == "validate":  # trainer.validate(): an evaluation of its own
            self._record_evaluation(trainer, "validate")
        else:
            self._rows.mark_validated()

    @override
    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._rows.mark_done()

    @override
    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._flush_pending(trainer)
        self._write_results(trainer)

    @override
    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # after every callback's on_train_end (e.g. the robustness evaluation)
        self._write_results(trainer)
        if trainer.global_rank == 0:
            self._finish(trainer)
        self._finished = True

    @override
    def on_test_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._write_results(trainer)
        self._record_evaluation(trainer, "test")

    @override
    def on_exception(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException
    ) -> None:
        if not self._created or not self._is_writer or self.path is None or not self.path.is_dir():
            return
        try:
            self._flush_pending(trainer)
            self._write_results(trainer)
            self._write_exception(trainer, exception)
        except Exception:  # noqa: BLE001 - never mask the original exception
            pass

    # ------------------------------------------------------------------ checkpoint state
    @property
    @override
    def state_key(self) -> str:
        return self._generate_state_key(root=self._root_option or "<logger log_dir>")

    @override
    def on_load_checkpoint(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        restore_or_warn(
            self,
            checkpoint,
            trainer,
            "this run directory's metrics start at the resume point; the rows of the epochs "
            "before it are not recovered",
            adopt_other=True,  # the same run, written under another root
        )

    @override
    def state_dict(self) -> dict[str, Any]:
        # a checkpoint taken at the end of an epoch (ModelCheckpoint runs after every other
        # callback) holds that epoch's row too, so a run resumed from it misses no epoch
        rows = [dict(r) for r in self.rows]
        row = self._rows.pending_row(self._trainer) if self._trainer is not None else None
        if row is not None:
            rows = [r for r in rows if r["epoch"] != row["epoch"]] + [row]
        pending = self._rows.pending
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
        if self._config is not None and self._is_writer and self.path is not None:
            self._config["resumed_from"] = self.resumed_from  # restored after config.json
            self._write(CONFIG, atomic_write_json, self._config)
