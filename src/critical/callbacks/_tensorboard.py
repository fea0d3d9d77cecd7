"""The run directory's TensorBoard logger: added in place of Lightning's default one (whose empty
events file is removed), never beside a logger of the user's; see
:class:`~critical.callbacks.RunDirectory` (``tensorboard=True``)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.loggers import TensorBoardLogger

__all__ = ["add_run_logger", "drop_empty_default_log", "is_default_logger"]


def is_default_logger(trainer: pl.Trainer, logger: Any) -> bool:
    """Whether ``logger`` is the TensorBoardLogger Lightning makes when none is passed."""
    if type(logger) is not TensorBoardLogger:
        return False
    default = os.path.join(trainer.default_root_dir, "lightning_logs")
    return os.path.abspath(logger.root_dir) == os.path.abspath(default)


def add_run_logger(
    trainer: pl.Trainer, path: Path | None, added: TensorBoardLogger | None
) -> TensorBoardLogger | None:
    """Make a TensorBoardLogger writing into ``path`` the trainer's only logger, unless the trainer
    has a logger of the user's (left as it is). ``added``: the one added before (reused); returns
    the one added (``added`` when nothing changed)."""
    own = [lg for lg in trainer.loggers if lg is not added]
    if any(not is_default_logger(trainer, lg) for lg in own):
        return added  # the user's own logger(s): left as they are
    if added is None:
        added = TensorBoardLogger(save_dir=str(path), name="", version="", default_hp_metric=False)
    trainer.loggers = [added]  # instead of Lightning's default lightning_logs/
    for lg in own:
        drop_empty_default_log(lg)
    return added


def drop_empty_default_log(logger: Any) -> None:
    """Lightning creates the default logger's events file before any callback runs; when nothing
    but that empty file is there, remove it (and ``lightning_logs/`` if empty)."""
    try:
        experiment = getattr(logger, "_experiment", None)
        if experiment is not None:
            experiment.close()
        version = Path(logger.log_dir)
        files = list(version.iterdir()) if version.is_dir() else []
        if not files or not all(
            f.name.startswith("events.out.tfevents") and f.stat().st_size < 1024 for f in files
        ):
            return
        for f in files:
            f.unlink()
        version.rmdir()
        root = Path(logger.root_dir)
        if root.is_dir() and not any(root.iterdir()):
            root.rmdir()
    except OSError:  # best effort: an empty log directory left behind is harmless
        pass
