"""A run directory's files: their names, reading them, whether a run is complete, and its cut.

One module owns what a run directory holds, so the writer
(:class:`~critical.callbacks.RunDirectory`), the energy accounting, ``critical sweep`` and
``critical report`` agree on it. No Lightning and no torch: the finders below look callbacks up
by what they expose (duck typing), so any module may import this one without an import circle.

Layout of a run directory (see :class:`~critical.callbacks.RunDirectory`)::

    config.json      module / datamodule hparams, trainer settings, callbacks, tags, versions
    metrics.csv      one row per completed epoch
    metrics.json     the same rows as JSON
    cut_event.json   the critical-period event and the augmentation cut, or {"fired": false}
    energy.json      EnergyTracker.summary() + history        (with an EnergyTracker)
    robustness.json  RobustnessEvaluator.results              (with a RobustnessEvaluator)
    summary.json     the run summary (critical.summary), written when fit ends normally
    evaluations.json trainer.validate / trainer.test runs after the fit, with their metrics
    exception.txt    the exception, if the run crashed

The cut epoch of a run is the first epoch trained at the reduced k; it is read, in this order,
from ``cut_event.json``, from ``energy.json``'s ``cut``, and from the first change of the
``multiplicity`` column (:func:`cut_epoch`).

Example:
    >>> rows = [{"epoch": 0, "multiplicity": 3}, {"epoch": 1, "multiplicity": 3},
    ...         {"epoch": 2, "multiplicity": 1}]
    >>> cut_from_multiplicities((r["epoch"], r["multiplicity"]) for r in rows)
    {'cut_epoch': 2, 'multiplicity_before': 3, 'multiplicity_after': 1}
    >>> cut_epoch(cut_event={"fired": False}, energy=None, rows=rows)
    2
"""

from __future__ import annotations

import csv
import json
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "ACCURACY_KEYS",
    "CONFIG",
    "CUT_EVENT",
    "ENERGY",
    "EVALUATIONS",
    "EXCEPTION",
    "METRICS_CSV",
    "METRICS_JSON",
    "ROBUSTNESS",
    "SUMMARY",
    "TEST_ACCURACY_KEYS",
    "RunStatus",
    "as_int",
    "configured_callbacks",
    "cut_epoch",
    "cut_from_multiplicities",
    "evaluated_value",
    "find_accuracy_key",
    "num",
    "read_json",
    "read_rows",
    "run_status",
]

#: validation-accuracy names in common use, in the order :func:`find_accuracy_key` tries them
ACCURACY_KEYS = (
    "val/acc",
    "val_acc",
    "val/accuracy",
    "val_accuracy",
    "valid/acc",
    "valid_acc",
    "validation/acc",
    "validation_accuracy",
    "val/acc1",
    "val_acc1",
    "val/top1",
    "val_top1",
)

#: test-accuracy names in common use (``trainer.test`` after the fit), in the order tried
TEST_ACCURACY_KEYS = ("test/acc", "test_acc", "test/accuracy", "test_accuracy")

CONFIG = "config.json"
METRICS_CSV = "metrics.csv"
METRICS_JSON = "metrics.json"
CUT_EVENT = "cut_event.json"
ENERGY = "energy.json"
ROBUSTNESS = "robustness.json"
EXCEPTION = "exception.txt"
SUMMARY = "summary.json"
EVALUATIONS = "evaluations.json"

PathLike = str | os.PathLike


# ----------------------------------------------------------------------------------------------
# values
# ----------------------------------------------------------------------------------------------


def num(v: Any) -> float | None:
    """A finite float from a number or a numeric string, else ``None``.

    Example:
        >>> num("0.5"), num(""), num(float("nan")), num(True)
        (0.5, None, None, None)
    """
    if v is None or isinstance(v, bool):
        return None
    if isinstance(v, str):
        v = v.strip()
        if not v:
            return None
        try:
            v = float(v)
        except ValueError:
            return None
    if not isinstance(v, (int, float)):
        return None
    v = float(v)
    return v if math.isfinite(v) else None


def as_int(v: Any) -> int | None:
    """An int from an integral number or numeric string, else ``None``."""
    f = num(v)
    return None if f is None or f != int(f) else int(f)


# ----------------------------------------------------------------------------------------------
# reading
# ----------------------------------------------------------------------------------------------


def read_json(path: PathLike, problems: list[str] | None = None, required: bool = False) -> Any:
    """The content of a JSON file, or ``None`` when it is absent or unreadable.

    With a ``problems`` list, what went wrong is appended to it (an absent file only when
    ``required``); without one, an unreadable file raises.
    """
    path = Path(path)
    if not path.is_file():
        if required and problems is not None:
            problems.append(f"no {path.name}")
        return None
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError) as err:
        if problems is None:
            raise
        problems.append(f"{path.name} unreadable ({type(err).__name__}: {err})")
        return None


def read_rows(run_dir: PathLike, problems: list[str] | None = None) -> list[dict[str, Any]]:
    """The per-epoch rows of a run (``metrics.json``, else ``metrics.csv``), one per epoch,
    sorted by epoch; numbers as floats (``None`` for empty cells), ``epoch`` as int."""
    run_dir = Path(run_dir)
    problems = [] if problems is None else problems
    raw: Any = None
    if (run_dir / METRICS_JSON).is_file():
        raw = read_json(run_dir / METRICS_JSON, problems)
    if not isinstance(raw, list) and (run_dir / METRICS_CSV).is_file():
        try:
            with open(run_dir / METRICS_CSV, encoding="utf-8", newline="") as f:
                raw = list(csv.DictReader(f))
        except (OSError, csv.Error) as err:
            problems.append(f"{METRICS_CSV} unreadable ({err})")
    if not isinstance(raw, list):
        return []
    by_epoch: dict[int, dict[str, Any]] = {}
    for r in raw:
        if not isinstance(r, dict):
            continue
        epoch = as_int(r.get("epoch"))
        if epoch is None:
            continue
        row = {str(k): num(v) for k, v in r.items()}
        row["epoch"] = epoch
        by_epoch[epoch] = row
    return [by_epoch[e] for e in sorted(by_epoch)]


def evaluated_value(evaluations: Any, key: str) -> tuple[float, str] | None:
    """``(value, stage)`` of metric ``key`` in the last evaluation after the fit that logged it
    (``evaluations.json``: ``[{"stage": "validate" | "test", "epoch", "metrics": {...}}]``, as
    :class:`~critical.callbacks.RunDirectory` writes it), else ``None``.

    Example:
        >>> evaluated_value([{"stage": "test", "epoch": 9, "metrics": {"test_acc": 0.81}}],
        ...                 "test_acc")
        (0.81, 'test')
        >>> evaluated_value([], "test_acc") is None
        True
    """
    if not isinstance(evaluations, list):
        return None
    for entry in reversed(evaluations):
        metrics = entry.get("metrics") if isinstance(entry, Mapping) else None
        v = num(metrics.get(key)) if isinstance(metrics, Mapping) else None
        if v is not None:
            return v, str(entry.get("stage") or "evaluation")
    return None


# ----------------------------------------------------------------------------------------------
# the cut
# ----------------------------------------------------------------------------------------------


def cut_from_multiplicities(pairs: Iterable[tuple[int, Any]]) -> dict[str, Any] | None:
    """The first change of k in ``(epoch, k)`` pairs (``k`` ``None`` skipped): ``cut_epoch``,
    ``multiplicity_before``, ``multiplicity_after``; ``None`` when k never changes (or is
    never known)."""
    known = [(int(e), k) for e, k in pairs if k is not None]
    for e, k in known[1:]:
        if k != known[0][1]:
            return {"cut_epoch": e, "multiplicity_before": known[0][1], "multiplicity_after": k}
    return None


def cut_epoch(
    cut_event: Mapping[str, Any] | None,
    energy: Mapping[str, Any] | None,
    rows: Sequence[Mapping[str, Any]],
) -> int | None:
    """First epoch trained at the reduced k, from a run's files; ``None`` if k was never cut."""
    ce = cut_event or {}
    if ce.get("fired") is not False and as_int(ce.get("cut_epoch")) is not None:
        return as_int(ce.get("cut_epoch"))
    cut = (energy or {}).get("cut")
    if isinstance(cut, Mapping) and as_int(cut.get("cut_epoch")) is not None:
        return as_int(cut.get("cut_epoch"))
    found = cut_from_multiplicities(
        (r["epoch"], num(r.get("multiplicity"))) for r in rows if "epoch" in r
    )
    return None if found is None else int(found["cut_epoch"])


# ----------------------------------------------------------------------------------------------
# completeness
# ----------------------------------------------------------------------------------------------


def configured_callbacks(config: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Class name -> settings of the callbacks recorded in ``config.json``.

    Understands both forms RunDirectory has written: a settings mapping per callback
    (``{"class": "pkg.mod.Name", "init_args": {...}}``) and, in older runs, the callback's repr
    (``"Name(a=1, ...)"``, whose settings are not parsed: ``{}``, except ``when`` of a
    RobustnessEvaluator).
    """
    out: dict[str, dict[str, Any]] = {}
    callbacks = config.get("callbacks") if isinstance(config, Mapping) else None
    if not isinstance(callbacks, (list, tuple)):
        return out  # absent or malformed (load_run reports a malformed one)
    for cb in callbacks:
        if isinstance(cb, Mapping):
            name = str(cb.get("class", "")).rsplit(".", 1)[-1]
            args = cb.get("init_args")
            out.setdefault(name, dict(args) if isinstance(args, Mapping) else {})
        elif isinstance(cb, str):
            name = cb.split("(", 1)[0].strip().rsplit(".", 1)[-1]
            settings: dict[str, Any] = {}
            for when in ("fit_end", "test_end", "both", "never"):
                if f"when={when!r}" in cb:
                    settings["when"] = when
            out.setdefault(name, settings)
    return out


@dataclass
class RunStatus:
    """Whether a run directory holds a finished run, and if not, why.

    Attributes:
        status: ``"complete"``, ``"incomplete"`` (files or epochs missing), ``"failed"``
            (``exception.txt`` exists) or ``"missing"`` (no directory).
        problems: human-readable reasons (empty for a complete run).
    """

    status: str
    problems: list[str] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return self.status == "complete"


def expected_files(config: Mapping[str, Any]) -> list[str]:
    """The result files a finished run with this ``config.json`` has: ``energy.json`` with an
    EnergyTracker, ``robustness.json`` with a RobustnessEvaluator evaluating at fit end."""
    callbacks = configured_callbacks(config)
    files = []
    if "EnergyTracker" in callbacks:
        files.append(ENERGY)
    rob = callbacks.get("RobustnessEvaluator")
    if rob is not None and rob.get("when", "fit_end") in ("fit_end", "both"):
        files.append(ROBUSTNESS)
    return files


def run_status(
    run_dir: PathLike,
    *,
    config: Mapping[str, Any] | None = None,
    rows: Sequence[Mapping[str, Any]] | None = None,
) -> RunStatus:
    """Is ``run_dir`` a finished run? Complete means: no ``exception.txt``, a ``config.json``,
    metric rows, the result files of the callbacks the run was configured with
    (:func:`expected_files`) — whatever those callbacks were — and either a ``summary.json``
    (written when ``fit`` ends normally, also when it stopped early, e.g. by ``EarlyStopping``)
    or, for runs written before it existed, a row for every epoch up to the trainer's
    ``max_epochs``. ``config`` and ``rows`` may be passed when already read."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        return RunStatus("missing", ["no run directory"])
    problems: list[str] = []
    if config is None:
        raw = read_json(run_dir / CONFIG, problems, required=True)
        config = raw if isinstance(raw, Mapping) else {}
    elif not (run_dir / CONFIG).is_file():
        problems.append(f"no {CONFIG}")
    if rows is None:
        rows = read_rows(run_dir, problems)
    for name in expected_files(config):
        if not (run_dir / name).is_file():
            problems.append(f"no {name}")
    trainer = config.get("trainer")
    max_epochs = as_int(trainer.get("max_epochs")) if isinstance(trainer, Mapping) else None
    finished = (run_dir / SUMMARY).is_file()
    if not rows:
        problems.append("no metric rows")
    elif not finished and max_epochs is not None and max_epochs > 0 and len(rows) < max_epochs:
        problems.append(f"{len(rows)}/{max_epochs} epochs")
    if (run_dir / EXCEPTION).exists():
        return RunStatus("failed", problems)
    return RunStatus("incomplete" if problems else "complete", problems)


# ----------------------------------------------------------------------------------------------
# finders: the callbacks that decide and record the cut, found by what they expose
# ----------------------------------------------------------------------------------------------


def find_accuracy_key(columns: Iterable[str], preferred: str | None = None) -> str | None:
    """The metric read as a run's accuracy: ``preferred`` when given (whether logged or not),
    else the first of :data:`ACCURACY_KEYS` among ``columns``, else ``None``.

    Example:
        >>> find_accuracy_key(["epoch", "train/loss", "val_acc"])
        'val_acc'
        >>> find_accuracy_key(["epoch"], preferred="my/acc")
        'my/acc'
    """
    if preferred:
        return preferred
    present = set(columns)
    return next((k for k in ACCURACY_KEYS if k in present), None)
