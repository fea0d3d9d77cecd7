"""Run directories as read from disk: :class:`Run`, :func:`load_run`, :func:`load_runs`.

Which files a run directory holds, how its status (one of :data:`STATUSES`) is decided and how
its tags, policy and cut epoch are read are defined in the :mod:`critical.report` docstring;
the tag-reading half of :class:`Run` and :class:`Setting` are in :mod:`critical.report.tags`
(re-exported here, with the number helpers ``_num``, ``_int``, ``_finite``). No matplotlib, no
Lightning.
"""

from __future__ import annotations

import json
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from critical.io import PathLike
from critical.report.tags import (
    _POLICY_RANK,
    CUT_POLICIES,
    POLICIES,
    RunTags,
    Setting,
    _finite,
    _int,
    _num,
)
from critical.runfiles import (
    CONFIG,
    CUT_EVENT,
    ENERGY,
    EVALUATIONS,
    EXCEPTION,
    ROBUSTNESS,
    evaluated_value,
    read_json,
    read_rows,
    run_status,
)

__all__ = ["POLICIES", "STATUSES", "Run", "Setting", "load_run", "load_runs"]
# shared with the rest of the package (defined in critical.report.tags)
_SHARED = (_POLICY_RANK, CUT_POLICIES, _finite, _int, _num)

STATUSES = ("complete", "incomplete", "failed", "missing")


@dataclass
class Run(RunTags):
    """One run directory (or a sweep entry without one), as read from disk.

    Attributes:
        name: the directory's path relative to the reports' root (POSIX separators).
        path: the directory.
        tags: ``config.json["tags"]`` (completed by the ``sweep.json`` entry's tags).
        config: ``config.json`` (``{}`` when absent).
        rows: per-epoch metric rows (``metrics.json``, else ``metrics.csv``), numbers as floats
            (``None`` for empty cells), sorted by ``epoch``.
        cut_event, energy, robustness: the JSON files' contents, ``None`` when absent.
        evaluations: ``evaluations.json`` (``trainer.validate`` / ``trainer.test`` after the
            fit), ``[]`` when absent.
        status: one of :data:`STATUSES`.
        problems: what makes the run non-complete (and anything unreadable), human-readable.
    """

    name: str
    path: Path
    tags: dict[str, Any] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    rows: list[dict[str, Any]] = field(default_factory=list)
    cut_event: dict[str, Any] | None = None
    energy: dict[str, Any] | None = None
    robustness: dict[str, Any] | None = None
    evaluations: list[dict[str, Any]] = field(default_factory=list)
    status: str = "complete"
    problems: list[str] = field(default_factory=list)
    #: the setting of a run without a config.json (a missing sweep run), from its sweep's runs
    setting_hint: Setting | None = None

    # ------------------------------------------------------------------ values
    def column(self, key: str) -> tuple[np.ndarray, np.ndarray]:
        """``(epochs, values)`` of the rows where ``key`` has a number."""
        pts = [(r["epoch"], r.get(key)) for r in self.rows if _finite(r.get(key))]
        if not pts:
            return np.zeros(0), np.zeros(0)
        e, v = zip(*pts)
        return np.asarray(e, dtype=float), np.asarray(v, dtype=float)

    def columns(self) -> list[str]:
        seen: dict[str, None] = {}
        for r in self.rows:
            for k in r:
                seen.setdefault(k, None)
        return list(seen)

    def final(self, key: str) -> float | None:
        """The last number of column ``key`` (by epoch), else the value of ``key`` in the last
        evaluation after the fit that logged it (``evaluations.json``: ``trainer.validate`` /
        ``trainer.test``, e.g. ``test_acc``), else None."""
        for r in reversed(self.rows):
            v = r.get(key)
            if _finite(v):
                return float(v)
        found = evaluated_value(self.evaluations, key)
        return None if found is None else found[0]

    def accuracy(self, key: str) -> float | None:
        """The run's value of accuracy ``key``: :meth:`final` (a metrics column, else an
        evaluation after the fit), else ``robustness.json[key]`` (``clean_acc``, ``fgsm_acc``,
        ...)."""
        v = self.final(key)
        return v if v is not None else self.robust_accuracies().get(key)

    def evaluated_keys(self) -> list[str]:
        """The metric names of the evaluations after the fit (``evaluations.json``)."""
        seen: dict[str, None] = {}
        for entry in self.evaluations:
            metrics = entry.get("metrics") if isinstance(entry, dict) else None
            seen.update(dict.fromkeys(metrics if isinstance(metrics, dict) else ()))
        return list(seen)

    def total(self, quantity: str) -> float | None:
        """``energy.json["total"][quantity]`` (``duration_s``, ``energy_kwh``, ``co2_kg``,
        ``cost``); wall time falls back to the sum of the ``energy/duration_s`` column."""
        tot = (self.energy or {}).get("total")
        v = _num(tot.get(quantity)) if isinstance(tot, dict) else None
        if v is None and quantity == "duration_s":
            _, d = self.column("energy/duration_s")
            v = float(d.sum()) if d.size else None
        return v

    def robust_accuracies(self) -> dict[str, float]:
        """Every ``*_acc`` number at the top level of ``robustness.json``."""
        rob = self.robustness if isinstance(self.robustness, dict) else {}
        return {k: float(v) for k, v in rob.items() if k.endswith("_acc") and _finite(v)}


def _exception_summary(path: Path) -> str:
    try:
        lines = [ln.strip() for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()]
    except OSError as err:
        return f"crashed (exception.txt unreadable: {err})"
    if not lines:
        return "crashed (exception.txt is empty)"
    msg = lines[1] if len(lines) > 1 else lines[0]
    where = re.search(r"epoch=\d+", lines[0]) if len(lines) > 1 else None
    msg = msg if len(msg) <= 200 else msg[:197] + "..."
    return f"crashed: {msg}" + (f" ({where.group(0)})" if where else "")


def load_run(path: PathLike, *, name: str | None = None) -> Run:
    """Read one run directory; ``name`` defaults to the directory's name.

    Never raises for a broken run: what is missing or unreadable goes to ``Run.problems`` and
    sets ``Run.status`` (see the :mod:`critical.report` docstring).
    """
    path = Path(path)
    run = Run(name=name or path.name, path=path)
    if not path.is_dir():
        run.status = "missing"
        run.problems.append("no run directory")
        return run
    problems = run.problems
    config = read_json(path / CONFIG, problems, required=True)
    if config is not None and not isinstance(config, dict):
        problems.append(f"{CONFIG}: a {type(config).__name__}, not a JSON object")
    run.config = config if isinstance(config, dict) else {}
    for key, kind in (("tags", dict), ("callbacks", list), ("module", dict), ("datamodule", dict)):
        value = run.config.get(key)
        if value is not None and not isinstance(value, kind):
            problems.append(
                f"{CONFIG}: {key!r} is a {type(value).__name__}, not a {kind.__name__}; ignored"
            )
            run.config = {k: v for k, v in run.config.items() if k != key}
    tags = run.config.get("tags")
    run.tags = dict(tags) if isinstance(tags, dict) else {}
    run.rows = read_rows(path, problems)
    ce = read_json(path / CUT_EVENT, problems)
    run.cut_event = ce if isinstance(ce, dict) else None
    energy = read_json(path / ENERGY, problems)
    run.energy = energy if isinstance(energy, dict) else None
    rob = read_json(path / ROBUSTNESS, problems)
    run.robustness = rob if isinstance(rob, dict) else None
    evaluations = read_json(path / EVALUATIONS, problems)
    if isinstance(evaluations, list):
        run.evaluations = [e for e in evaluations if isinstance(e, dict)]
    status = run_status(path, config=run.config, rows=run.rows)
    problems.extend(p for p in status.problems if p not in problems)
    # an unreadable file is a problem even when the run finished
    run.status = "incomplete" if status.complete and problems else status.status
    if status.status == "failed":
        problems.insert(0, _exception_summary(path / EXCEPTION))
    return run


def load_runs(root: PathLike) -> list[Run]:
    """Every run below ``root``: each directory holding a ``config.json`` (at any depth, hidden
    directories skipped), plus every entry of every ``sweep.json`` below ``root`` (names relative
    to the ``sweep.json``'s directory) that has no such directory (status ``"missing"``, or
    ``"incomplete"``/``"failed"`` when the directory exists without a ``config.json``). A sweep
    entry's tags fill in the tags its run's ``config.json`` lacks. Sorted by name.

    Raises:
        FileNotFoundError: ``root`` is not a directory.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"runs directory {root} does not exist or is not a directory")

    def visible(p: Path) -> bool:
        return not any(part.startswith(".") for part in p.relative_to(root).parts)

    def rel(p: Path) -> str:
        r = p.relative_to(root).as_posix()
        return r if r != "." else p.resolve().name

    runs: dict[Path, Run] = {}
    for cfg in sorted(root.rglob("config.json")):
        if visible(cfg) and cfg.is_file():
            d = cfg.parent
            try:
                runs[d.resolve()] = load_run(d, name=rel(d))
            except Exception as err:  # noqa: BLE001 - one unreadable run must not stop the report
                run = Run(name=rel(d), path=d, status="incomplete")
                run.problems.append(f"unreadable: {type(err).__name__}: {err}")
                runs[d.resolve()] = run
    for sj in sorted(root.rglob("sweep.json")):
        if not visible(sj):
            continue
        try:
            with open(sj, encoding="utf-8") as f:
                sweep = json.load(f)
            entries = sweep["runs"]
            if not isinstance(entries, list):
                raise TypeError("'runs' is not a list")
        except (OSError, ValueError, KeyError, TypeError) as err:
            warnings.warn(
                f"{sj}: not a readable sweep file ({err}); its runs are not checked", stacklevel=2
            )
            continue
        for entry in entries:
            if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
                warnings.warn(f"{sj}: skipped a malformed entry {entry!r}", stacklevel=2)
                continue
            d = sj.parent / entry["name"]
            tags = entry.get("tags")
            etags: dict[str, Any] = tags if isinstance(tags, dict) else {}
            if etags.get("sweep") is None and isinstance(sweep.get("name"), str):
                etags = {**etags, "sweep": sweep["name"]}
            key = d.resolve()
            if key not in runs:
                run = load_run(d, name=(sj.parent.relative_to(root) / entry["name"]).as_posix())
                if run.status == "missing":
                    run.problems = [f"no run directory (listed in {sj.relative_to(root)})"]
                runs[key] = run
            run = runs[key]
            run.tags = {**etags, **run.tags}
    _hint_settings(list(runs.values()))
    return sorted(runs.values(), key=lambda r: r.name)


def _hint_settings(runs: list[Run]) -> None:
    """Give each run without a ``config.json`` the setting of the runs of its sweep with the
    same model (and budget tag, when it has one), if they all share one."""
    known: dict[tuple[Any, str], set[Setting]] = {}
    for r in runs:
        if r.config:
            known.setdefault((r.tags.get("sweep"), r.model), set()).add(r.setting)
    for r in runs:
        if r.config:
            continue
        budget = _int(r.tags.get("budget"))
        found = {
            s
            for s in known.get((r.tags.get("sweep"), r.model), set())
            if budget is None or s.budget == budget
        }
        if len(found) == 1:
            r.setting_hint = found.pop()
