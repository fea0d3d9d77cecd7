r"""Tables and plots for a paper, from run directories: ``critical report RUNS_DIR``.

Reads every run directory below ``RUNS_DIR`` (any directory holding a ``config.json``, written by
:class:`~critical.callbacks.RunDirectory`; runs may be nested at any depth) and every
``sweep.json`` (the runs a sweep expects), groups the runs by ``(model, label)`` from
``config.json["tags"]``, and writes into ``--out`` (default ``RUNS_DIR/report``):

* ``summary.md``  -- Markdown: one row per group, mean ± std over seeds, the detector-vs-fixed-cut
  comparison, and the list of every run that is not complete, with what it lacks;
* ``summary.csv`` -- the same numbers, machine-readable, in base units (accuracies as fractions,
  seconds, kWh, kg), one column per statistic for the mean and one for the std;
* ``regret.csv``  -- the detector-vs-fixed-cut comparison (one row per detector group);
* ``runs.csv``    -- one row per run (every status), with its values and problems;
* ``summary.tex`` -- a booktabs LaTeX ``tabular`` of the summary (and one of the comparison);
* plots (PNG + PDF each): ``curves_<model>`` (training-dynamics metrics and validation accuracy
  against epoch, with the cut epochs marked), ``pareto`` (accuracy vs energy) and
  ``accuracy_vs_cut`` (accuracy against the cut epoch). A plot whose data are absent is skipped
  with a message.

No Lightning import: numpy, matplotlib (object-oriented API, Agg canvas, no display), csv, json.

Run status
----------
``complete``; ``failed`` (``exception.txt`` exists); ``incomplete`` (no metric rows, fewer epoch
rows than ``config.json["trainer"]["max_epochs"]``, no ``energy.json``, no ``robustness.json``,
or an unreadable / missing ``config.json``); ``missing`` (listed in a ``sweep.json``, no
directory). Only complete runs enter the statistics; every other run is listed in the report
with its problems, and counted in its group's ``n`` as ``complete/all``.

Groups and tags
---------------
``config.json["tags"]`` (the ``sweep.json`` entry's tags fill in keys the config lacks): ``model``,
``label``, ``seed``, ``policy`` (``"always"``, ``"k1"``, ``"fixed"``, ``"detector"``), ``k``,
``cut_at``. A run without tags is its own group: model ``"-"``, label = its name. Without a
``policy`` tag, it is read from the label (``always...``, ``k1``, ``fixed@N``, ``detector...``).

Per-run values (:func:`run_values`)
-----------------------------------
``acc``: the last non-empty value of ``accuracy_key`` (default ``val/acc``) in the metric rows
(the last epoch's); ``test_acc``: likewise for ``test/acc`` when logged; every ``*_acc`` number
at the top level of ``robustness.json`` (``clean_acc``, ``fgsm_acc``, ``pgd_acc``,
``corruption_acc``); ``time_s``, ``energy_kwh``, ``co2_kg``, ``cost``: ``energy.json["total"]``
(sums over the recorded training epochs, validation included; an oracle branch's restored
history includes its parent's epochs); wall time falls back to the sum of the
``energy/duration_s`` column; ``cut_epoch``: ``cut_event.json["cut_epoch"]`` (the first epoch
trained at the reduced k), else ``energy.json["cut"]["cut_epoch"]``, else the first epoch whose
``multiplicity`` differs from epoch 0's; none for a run that never cut.

Statistics (:func:`summarize`)
------------------------------
Mean and *sample* standard deviation (``ddof=1``; none for a single seed) over the complete runs
of a group, per value; ``cut_epoch`` over the runs that cut (``n_cut`` of them).

Saving against the always-k baseline of the same model (its group with policy ``"always"`` and
at least one complete run; with several, the one with the same ``k`` tag, else the one of largest
``k``), per run, then mean ± std::

    time_saving_pct   = 100 * (1 - time_s / base_time_s)
    energy_saving_pct = 100 * (1 - energy_kwh / base_energy_kwh)
    co2_saving_pct    = 100 * (1 - co2_kg / base_co2_kg)
    acc_delta_pts     = 100 * (acc - base_acc)          (accuracy points; negative = worse)

where ``base_*`` is the baseline's complete run with the same seed (the mean of them if there are
several), else, per quantity, the baseline's mean over its complete runs. The baseline's own
row is therefore 0 ± 0.

Detector vs fixed cuts, per model (:class:`Summary` ``.oracles`` and ``.regret``). With ``A(g)``
the mean accuracy of group ``g``, the fixed cuts ``F`` = groups with policy ``"fixed"`` and a
finite ``A``, each at cut epoch ``c(g)`` (tag ``cut_at``, else the label's ``fixed@N``, else its
mean measured cut epoch), and ``a`` the always-k baseline (with several always-k groups, the
one of largest ``k``):

* ``best fixed`` = argmax over ``F`` of ``A`` (ties: the earlier cut);
  ``accuracy_regret_pts(d) = 100 * (A(best fixed) - A(d))`` for each detector group ``d``
  (positive: the detector lost accuracy that some fixed cut kept);
* ``oracle cut`` = the fixed cut of smallest ``c`` with ``100 * (A(g) - A(a)) >= -tolerance``
  (within ``tolerance`` points of always-k or better; ``k1`` is not a fixed cut); none if no
  fixed cut qualifies or there is no baseline;
* against the oracle: ``cut_delta_epochs = mean cut(d) - c(oracle)`` (positive: the detector cut
  later than needed), ``energy_vs_oracle_pct = 100 * (E(d) / E(oracle) - 1)`` with ``E`` the
  groups' mean energy (positive: the detector spent more), the same for time
  (``time_vs_oracle_pct``), and ``acc_vs_oracle_pts = 100 * (A(d) - A(oracle))``.

Example:
    >>> import tempfile
    >>> from critical.report import load_runs, summarize, to_markdown
    >>> runs = load_runs(tempfile.mkdtemp())  # an empty directory: no runs
    >>> runs
    []
    >>> print(to_markdown(summarize(runs)).splitlines()[0])
    # Summary
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import re
import sys
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from critical.io import PathLike, atomic_write_bytes, atomic_write_csv, atomic_write_text

__all__ = [
    "STATUSES",
    "Group",
    "NoDataError",
    "ReportFiles",
    "Run",
    "Stat",
    "Summary",
    "latex_escape",
    "load_run",
    "load_runs",
    "main",
    "pareto_front",
    "plot_accuracy_vs_cut",
    "plot_curves",
    "plot_pareto",
    "plot_run",
    "run_values",
    "summarize",
    "to_latex",
    "to_markdown",
    "write_csv",
    "write_report",
]

STATUSES = ("complete", "incomplete", "failed", "missing")
POLICIES = ("always", "k1", "fixed", "detector")
_POLICY_RANK = {p: i for i, p in enumerate(POLICIES)}
#: ``critical/`` columns that are control signals, not training-dynamics metrics
_CONTROL_COLUMNS = (
    "critical/critical_period_over",
    "critical/critical_period_epoch",
    "critical/multiplicity",
)
_ENERGY_QUANTITIES = ("time_s", "energy_kwh", "co2_kg", "cost")
_SAVINGS = (
    ("time_saving_pct", "time_s"),
    ("energy_saving_pct", "energy_kwh"),
    ("co2_saving_pct", "co2_kg"),
)
_EPS = 1e-9


class NoDataError(ValueError):
    """Raised by a plot function when the data it needs are absent (the plot is skipped)."""


# ----------------------------------------------------------------------------------------------
# small helpers
# ----------------------------------------------------------------------------------------------


def _num(v: Any) -> float | None:
    """A finite float from a number or a numeric string, else None."""
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


def _int(v: Any) -> int | None:
    f = _num(v)
    return None if f is None or f != int(f) else int(f)


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _slug(s: str) -> str:
    """A file-name-safe form of a model name (``"runs"`` for untagged runs)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", s).strip("_-") or "runs"


def _read_json(path: Path, problems: list[str], required: bool) -> Any:
    if not path.is_file():
        if required:
            problems.append(f"no {path.name}")
        return None
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError) as err:
        problems.append(f"{path.name} unreadable ({type(err).__name__}: {err})")
        return None


# ----------------------------------------------------------------------------------------------
# runs
# ----------------------------------------------------------------------------------------------


@dataclass
class Run:
    """One run directory (or a sweep entry without one), as read from disk.

    Attributes:
        name: the directory's path relative to the reports' root (POSIX separators).
        path: the directory.
        tags: ``config.json["tags"]`` (completed by the ``sweep.json`` entry's tags).
        config: ``config.json`` (``{}`` when absent).
        rows: per-epoch metric rows (``metrics.json``, else ``metrics.csv``), numbers as floats
            (``None`` for empty cells), sorted by ``epoch``.
        cut_event, energy, robustness: the JSON files' contents, ``None`` when absent.
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
    status: str = "complete"
    problems: list[str] = field(default_factory=list)

    # ------------------------------------------------------------------ tags
    @property
    def model(self) -> str:
        m = self.tags.get("model")
        return str(m) if m not in (None, "") else "-"

    @property
    def policy(self) -> str | None:
        """The ``policy`` tag, else read from a ``label`` tag; ``None`` for an untagged run."""
        p = self.tags.get("policy")
        if p not in (None, ""):
            return str(p)
        label = self.tags.get("label")
        if not isinstance(label, str):
            return None
        if label.startswith("always"):
            return "always"
        if label == "k1":
            return "k1"
        if label.startswith("fixed"):
            return "fixed"
        if label.startswith("detector"):
            return "detector"
        return None

    @property
    def label(self) -> str:
        """The ``label`` tag; else one made from the policy tags; else the run's name."""
        label = self.tags.get("label")
        if label not in (None, ""):
            return str(label)
        p = self.tags.get("policy")
        if p == "always" and self.tags.get("k") is not None:
            return f"always-k{self.tags['k']}"
        if p == "fixed" and self.tags.get("cut_at") is not None:
            return f"fixed@{self.tags['cut_at']}"
        if p in POLICIES:
            return str(p)
        return self.name

    @property
    def seed(self) -> int | None:
        return _int(self.tags.get("seed"))

    @property
    def k(self) -> int | None:
        return _int(self.tags.get("k"))

    @property
    def cut_at(self) -> int | None:
        """The ``cut_at`` tag, else the ``N`` of a ``fixed@N`` label."""
        c = _int(self.tags.get("cut_at"))
        if c is None and self.policy == "fixed":
            m = re.match(r"fixed@(\d+)$", self.label)
            c = int(m.group(1)) if m else None
        return c

    @property
    def max_epochs(self) -> int | None:
        trainer = self.config.get("trainer") if isinstance(self.config, dict) else None
        m = _int((trainer or {}).get("max_epochs")) if isinstance(trainer, dict) else None
        return m if m is not None and m > 0 else None

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
        """The last number of column ``key`` (by epoch), or None."""
        for r in reversed(self.rows):
            v = r.get(key)
            if _finite(v):
                return float(v)
        return None

    @property
    def cut_epoch(self) -> int | None:
        """First epoch trained at the reduced k (see the module docstring), None if no cut."""
        ce = self.cut_event or {}
        if ce.get("fired") is not False and _int(ce.get("cut_epoch")) is not None:
            return _int(ce.get("cut_epoch"))
        cut = (self.energy or {}).get("cut")
        if isinstance(cut, dict) and _int(cut.get("cut_epoch")) is not None:
            return _int(cut.get("cut_epoch"))
        ks = [(r["epoch"], r.get("multiplicity")) for r in self.rows]
        ks = [(e, k) for e, k in ks if _finite(k)]
        for e, k in ks[1:]:
            if k != ks[0][1]:
                return int(e)
        return None

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


def _read_rows(path: Path, problems: list[str]) -> list[dict[str, Any]]:
    raw: Any = None
    if (path / "metrics.json").is_file():
        raw = _read_json(path / "metrics.json", problems, required=False)
    if not isinstance(raw, list) and (path / "metrics.csv").is_file():
        try:
            with open(path / "metrics.csv", encoding="utf-8", newline="") as f:
                raw = list(csv.DictReader(f))
        except (OSError, csv.Error) as err:
            problems.append(f"metrics.csv unreadable ({err})")
    if not isinstance(raw, list):
        return []
    by_epoch: dict[int, dict[str, Any]] = {}
    for r in raw:
        if not isinstance(r, dict):
            continue
        epoch = _int(r.get("epoch"))
        if epoch is None:
            continue
        row = {str(k): _num(v) for k, v in r.items()}
        row["epoch"] = epoch
        by_epoch[epoch] = row
    return [by_epoch[e] for e in sorted(by_epoch)]


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
    sets ``Run.status`` (see the module docstring).
    """
    path = Path(path)
    run = Run(name=name or path.name, path=path)
    if not path.is_dir():
        run.status = "missing"
        run.problems.append("no run directory")
        return run
    problems = run.problems
    config = _read_json(path / "config.json", problems, required=True)
    run.config = config if isinstance(config, dict) else {}
    tags = run.config.get("tags")
    run.tags = dict(tags) if isinstance(tags, dict) else {}
    run.rows = _read_rows(path, problems)
    ce = _read_json(path / "cut_event.json", problems, required=False)
    run.cut_event = ce if isinstance(ce, dict) else None
    energy = _read_json(path / "energy.json", problems, required=True)
    run.energy = energy if isinstance(energy, dict) else None
    rob = _read_json(path / "robustness.json", problems, required=True)
    run.robustness = rob if isinstance(rob, dict) else None
    if not run.rows:
        problems.append("no metric rows")
    elif run.max_epochs is not None and len(run.rows) < run.max_epochs:
        problems.append(f"{len(run.rows)}/{run.max_epochs} epochs")
    if (path / "exception.txt").exists():
        run.status = "failed"
        problems.insert(0, _exception_summary(path / "exception.txt"))
    else:
        run.status = "incomplete" if problems else "complete"
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
            runs[d.resolve()] = load_run(d, name=rel(d))
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
            etags = entry.get("tags") if isinstance(entry.get("tags"), dict) else {}
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
    return sorted(runs.values(), key=lambda r: r.name)


# ----------------------------------------------------------------------------------------------
# statistics
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Stat:
    """Mean and sample standard deviation (``ddof=1``) of the finite values; ``n`` of them.

    ``mean`` is NaN when ``n == 0``, ``std`` NaN when ``n < 2``.

    Example:
        >>> s = Stat.of([0.90, 0.92, None])
        >>> round(s.mean, 4), round(s.std, 4), s.n
        (0.91, 0.0141, 2)
    """

    mean: float
    std: float
    n: int

    @classmethod
    def of(cls, values: Iterable[Any]) -> Stat:
        v = np.asarray([float(x) for x in values if _finite(x)], dtype=float)
        if v.size == 0:
            return cls(math.nan, math.nan, 0)
        return cls(float(v.mean()), float(v.std(ddof=1)) if v.size > 1 else math.nan, int(v.size))


@dataclass
class Group:
    """The runs of one ``(model, label)`` and their statistics.

    Attributes:
        values: ``{run name: run_values(...) + savings}`` of the complete runs.
        stats: ``{value key: Stat}`` over the complete runs.
        baseline: the label of the always-k group its savings are computed against, or None.
    """

    model: str
    label: str
    policy: str | None
    runs: list[Run]
    values: dict[str, dict[str, float | None]] = field(default_factory=dict)
    stats: dict[str, Stat] = field(default_factory=dict)
    baseline: str | None = None

    @property
    def complete(self) -> list[Run]:
        return [r for r in self.runs if r.status == "complete"]

    @property
    def k(self) -> int | None:
        ks = {r.k for r in self.runs if r.k is not None}
        return ks.pop() if len(ks) == 1 else None

    @property
    def cut_at(self) -> float | None:
        """For a fixed cut: its cut epoch (tag, label, else mean measured cut epoch)."""
        if self.policy != "fixed":
            return None
        cs = {r.cut_at for r in self.runs if r.cut_at is not None}
        if len(cs) == 1:
            return float(cs.pop())
        s = self.stats.get("cut_epoch")
        return s.mean if s is not None and s.n else None

    @property
    def n_cut(self) -> int:
        return sum(1 for v in self.values.values() if _finite(v.get("cut_epoch")))

    def mean(self, key: str) -> float:
        s = self.stats.get(key)
        return s.mean if s is not None else math.nan

    def _sort_key(self) -> tuple:
        cut = self.cut_at
        return (
            _POLICY_RANK.get(self.policy or "", len(POLICIES)),
            -(self.k or 0),
            cut if cut is not None else math.inf,
            self.label,
        )


@dataclass
class Summary:
    """What :func:`summarize` returns.

    Attributes:
        groups: one per ``(model, label)``, ordered by model, then always, k1, fixed (by cut),
            detector, others.
        runs: every run given (any status).
        keys: the value keys with at least one finite value, in table order.
        oracles: per model: the baseline, the best fixed cut and the oracle cut (see the module
            docstring), as a dict.
        regret: one dict per detector group (see the module docstring).
        tolerance: in accuracy points; accuracy_key: the metric column read as accuracy.
        notes: remarks (duplicate seeds, missing baselines, ...).
    """

    groups: list[Group]
    runs: list[Run]
    keys: list[str]
    oracles: dict[str, dict[str, Any]]
    regret: list[dict[str, Any]]
    tolerance: float
    accuracy_key: str
    notes: list[str] = field(default_factory=list)

    @property
    def not_complete(self) -> list[Run]:
        return [r for r in self.runs if r.status != "complete"]

    @property
    def models(self) -> list[str]:
        return list(dict.fromkeys(g.model for g in self.groups))

    def group(self, model: str, label: str) -> Group:
        for g in self.groups:
            if g.model == model and g.label == label:
                return g
        raise KeyError(f"no group ({model!r}, {label!r})")

    @property
    def currency(self) -> str | None:
        for r in self.runs:
            c = (r.energy or {}).get("currency")
            if isinstance(c, str) and c:
                return c
        return None


def run_values(run: Run, accuracy_key: str = "val/acc") -> dict[str, float | None]:
    """The per-run numbers (see the module docstring), in base units.

    Keys: ``acc``, ``test_acc`` (when ``accuracy_key`` is not ``test/acc``), the ``*_acc`` of
    ``robustness.json``, ``time_s``, ``energy_kwh``, ``co2_kg``, ``cost``, ``cut_epoch``.
    """
    out: dict[str, float | None] = {"acc": run.final(accuracy_key)}
    if accuracy_key != "test/acc":
        out["test_acc"] = run.final("test/acc")
    out.update(run.robust_accuracies())
    out["time_s"] = run.total("duration_s")
    out["energy_kwh"] = run.total("energy_kwh")
    out["co2_kg"] = run.total("co2_kg")
    out["cost"] = run.total("cost")
    cut = run.cut_epoch
    out["cut_epoch"] = None if cut is None else float(cut)
    return out


_KEY_ORDER = (
    "acc",
    "test_acc",
    "clean_acc",
    "fgsm_acc",
    "pgd_acc",
    "corruption_acc",
    # other *_acc keys go here, sorted
    "time_s",
    "energy_kwh",
    "co2_kg",
    "cost",
    "cut_epoch",
    "time_saving_pct",
    "energy_saving_pct",
    "co2_saving_pct",
    "acc_delta_pts",
)


def _ordered_keys(present: set[str]) -> list[str]:
    head = [k for k in _KEY_ORDER[:6] if k in present]
    extra = sorted(k for k in present if k.endswith("_acc") and k not in _KEY_ORDER)
    tail = [k for k in _KEY_ORDER[6:] if k in present]
    rest = sorted(present - set(head) - set(extra) - set(tail))
    return head + extra + tail + rest


def _pick_baseline(group: Group, always: list[Group]) -> Group | None:
    if not always:
        return None
    same_k = [a for a in always if group.k is not None and a.k == group.k]
    return (same_k or always)[0]


def summarize(
    runs: Sequence[Run], *, tolerance: float = 0.5, accuracy_key: str = "val/acc"
) -> Summary:
    """Group ``runs`` by ``(model, label)`` and compute the statistics, savings, regret and
    oracle cut defined in the module docstring. Only complete runs enter the numbers.

    Args:
        runs: from :func:`load_runs` (any status).
        tolerance: accuracy points (>= 0) within which a fixed cut matches always-k.
        accuracy_key: the metric column read as the final accuracy.

    Example:
        >>> summarize([], tolerance=0.5).groups
        []
    """
    if not _finite(tolerance) or tolerance < 0:
        raise ValueError(f"`tolerance` must be a number >= 0 (accuracy points), got {tolerance!r}")
    if not isinstance(accuracy_key, str) or not accuracy_key:
        raise ValueError(f"`accuracy_key` must be a metric column name, got {accuracy_key!r}")
    notes: list[str] = []
    by_key: dict[tuple[str, str], list[Run]] = {}
    for r in runs:
        by_key.setdefault((r.model, r.label), []).append(r)
    groups: list[Group] = []
    for (model, label), rs in by_key.items():
        policies = {r.policy for r in rs}
        policy = next(iter(policies)) if len(policies) == 1 else None
        if len(policies) > 1:
            notes.append(f"{model}/{label}: runs with different policies; policy left unset")
        g = Group(model=model, label=label, policy=policy, runs=sorted(rs, key=_run_sort_key))
        g.values = {r.name: run_values(r, accuracy_key) for r in g.complete}
        seeds = [r.seed for r in g.complete if r.seed is not None]
        dup = sorted({s for s in seeds if seeds.count(s) > 1})
        if dup:
            notes.append(f"{model}/{label}: several complete runs with seed(s) {dup}")
        if g.complete and all(v["acc"] is None for v in g.values.values()):
            notes.append(f"{model}/{label}: no '{accuracy_key}' column in its complete runs")
        groups.append(g)
    order = {m: i for i, m in enumerate(sorted({g.model for g in groups}))}
    groups.sort(key=lambda g: (order[g.model], g._sort_key()))
    for g in groups:
        _compute_stats(g)

    # savings against the always-k baseline of the same model
    for model in order:
        mgroups = [g for g in groups if g.model == model]
        always = [g for g in mgroups if g.policy == "always" and g.complete]
        if not always and any(g.complete for g in mgroups) and len(mgroups) > 1:
            notes.append(f"{model}: no complete always-k group; no savings computed")
        for g in mgroups:
            base = _pick_baseline(g, always)
            if base is None:
                continue
            g.baseline = base.label
            per_seed: dict[int, list[dict[str, float | None]]] = {}
            for r in base.complete:
                if r.seed is not None:
                    per_seed.setdefault(r.seed, []).append(base.values[r.name])
            for r in g.complete:
                vals = g.values[r.name]
                for out_key, q in (*_SAVINGS, ("acc_delta_pts", "acc")):
                    ref = None
                    if r.seed in per_seed:
                        ref = Stat.of(v.get(q) for v in per_seed[r.seed]).mean
                    if not _finite(ref):
                        ref = base.mean(q)
                    v = vals.get(q)
                    if not (_finite(v) and _finite(ref)):
                        vals[out_key] = None
                    elif q == "acc":
                        vals[out_key] = 100.0 * (v - ref)
                    else:
                        vals[out_key] = 100.0 * (1.0 - v / ref) if ref > 0 else None
            _compute_stats(g)

    present: set[str] = set()
    for g in groups:
        present.update(k for k, s in g.stats.items() if s.n > 0)
    oracles, regret = _regret(groups, tolerance)
    return Summary(
        groups=groups,
        runs=sorted(runs, key=lambda r: r.name),
        keys=_ordered_keys(present),
        oracles=oracles,
        regret=regret,
        tolerance=float(tolerance),
        accuracy_key=accuracy_key,
        notes=notes,
    )


def _run_sort_key(r: Run) -> tuple:
    return (r.seed if r.seed is not None else math.inf, r.name)


def _compute_stats(g: Group) -> None:
    keys: dict[str, None] = {}
    for v in g.values.values():
        keys.update(dict.fromkeys(v))
    g.stats = {k: Stat.of(v.get(k) for v in g.values.values()) for k in keys}


def _regret(
    groups: list[Group], tolerance: float
) -> tuple[dict[str, dict[str, Any]], list[dict[str, Any]]]:
    oracles: dict[str, dict[str, Any]] = {}
    regret: list[dict[str, Any]] = []
    for model in dict.fromkeys(g.model for g in groups):
        mgroups = [g for g in groups if g.model == model]
        fixed = [
            g
            for g in mgroups
            if g.policy == "fixed" and _finite(g.mean("acc")) and g.cut_at is not None
        ]
        detectors = [g for g in mgroups if g.policy == "detector" and g.complete]
        if not fixed and not detectors:
            continue
        base = next((g for g in mgroups if g.policy == "always" and _finite(g.mean("acc"))), None)
        info: dict[str, Any] = {
            "model": model,
            "tolerance_pts": tolerance,
            "baseline": None if base is None else base.label,
            "baseline_acc": None if base is None else base.mean("acc"),
            "best_fixed": None,
            "best_fixed_cut": None,
            "best_fixed_acc": None,
            "oracle": None,
            "oracle_cut": None,
            "oracle_acc": None,
            "oracle_time_s": None,
            "oracle_energy_kwh": None,
            "oracle_reason": None,
        }
        fixed.sort(key=lambda g: (g.cut_at, g.label))
        best = None
        for g in fixed:  # by cut: strict > keeps the earlier cut on ties
            if best is None or g.mean("acc") > best.mean("acc"):
                best = g
        oracle = None
        if best is not None:
            info.update(best_fixed=best.label, best_fixed_cut=best.cut_at)
            info["best_fixed_acc"] = best.mean("acc")
        if base is None:
            info["oracle_reason"] = "no always-k baseline"
        elif not fixed:
            info["oracle_reason"] = "no fixed cuts"
        else:
            ok = [g for g in fixed if 100 * (g.mean("acc") - base.mean("acc")) >= -tolerance - _EPS]
            if ok:
                oracle = ok[0]
                info.update(oracle=oracle.label, oracle_cut=oracle.cut_at)
                info["oracle_acc"] = oracle.mean("acc")
                info["oracle_time_s"] = _nan_none(oracle.mean("time_s"))
                info["oracle_energy_kwh"] = _nan_none(oracle.mean("energy_kwh"))
            else:
                info["oracle_reason"] = f"no fixed cut within {tolerance:g} pts of {base.label}"
        oracles[model] = info
        for d in detectors:
            acc, cut = d.mean("acc"), d.mean("cut_epoch")
            row: dict[str, Any] = {
                "model": model,
                "label": d.label,
                "n": len(d.complete),
                "n_cut": d.n_cut,
                "acc": _nan_none(acc),
                "cut_epoch": _nan_none(cut),
                "time_s": _nan_none(d.mean("time_s")),
                "energy_kwh": _nan_none(d.mean("energy_kwh")),
                "best_fixed": info["best_fixed"],
                "best_fixed_acc": info["best_fixed_acc"],
                "accuracy_regret_pts": None,
                "oracle": info["oracle"],
                "oracle_cut": info["oracle_cut"],
                "cut_delta_epochs": None,
                "acc_vs_oracle_pts": None,
                "time_vs_oracle_pct": None,
                "energy_vs_oracle_pct": None,
            }
            if best is not None and _finite(acc):
                row["accuracy_regret_pts"] = 100.0 * (best.mean("acc") - acc)
            if oracle is not None:
                if _finite(cut):
                    row["cut_delta_epochs"] = cut - oracle.cut_at
                if _finite(acc):
                    row["acc_vs_oracle_pts"] = 100.0 * (acc - oracle.mean("acc"))
                for q, out_key in (
                    ("time_s", "time_vs_oracle_pct"),
                    ("energy_kwh", "energy_vs_oracle_pct"),
                ):
                    mine, theirs = d.mean(q), oracle.mean(q)
                    if _finite(mine) and _finite(theirs) and theirs > 0:
                        row[out_key] = 100.0 * (mine / theirs - 1.0)
            regret.append(row)
    return oracles, regret


def _nan_none(v: float) -> float | None:
    return float(v) if _finite(v) else None


# ----------------------------------------------------------------------------------------------
# formatting
# ----------------------------------------------------------------------------------------------


@dataclass
class _Column:
    key: str
    header: str  # plain text; "CO2" and "Δ" get LaTeX forms
    scale: float
    decimals: int
    signed: bool = False


_ACC_NAMES = {
    "acc": "Acc",
    "test_acc": "Test acc",
    "clean_acc": "Clean",
    "fgsm_acc": "FGSM",
    "pgd_acc": "PGD",
    "corruption_acc": "Corruption",
}


def _decimals(max_abs: float, significant: int = 3) -> int:
    if not _finite(max_abs) or max_abs <= 0:
        return 2
    return int(min(8, max(0, significant - 1 - math.floor(math.log10(max_abs)))))


def _unit(key: str, max_abs: float, currency: str | None) -> tuple[str, float]:
    """(unit, scale from base units) for a quantity column, chosen from its largest value."""
    m = max_abs if _finite(max_abs) else 0.0
    if key == "time_s":
        if m >= 7200:
            return "h", 1 / 3600
        return ("min", 1 / 60) if m >= 120 else ("s", 1.0)
    if key == "energy_kwh":
        if m >= 1:
            return "kWh", 1.0
        return ("Wh", 1e3) if m >= 1e-3 else ("mWh", 1e6)
    if key == "co2_kg":
        if m >= 1:
            return "kg", 1.0
        return ("g", 1e3) if m >= 1e-3 else ("mg", 1e6)
    if key == "cost":
        return currency or "cost", 1.0
    return "", 1.0


def _columns(summary: Summary) -> list[_Column]:
    cols: list[_Column] = []
    for key in summary.keys:
        means = [abs(g.stats[key].mean) for g in summary.groups if key in g.stats]
        means = [m for m in means if _finite(m)]
        top = max(means) if means else math.nan
        if key.endswith("_acc") or key == "acc":
            name = _ACC_NAMES.get(key, key[: -len("_acc")].replace("_", " ").capitalize())
            cols.append(_Column(key, f"{name} (%)", 100.0, 2))
        elif key in _ENERGY_QUANTITIES:
            unit, scale = _unit(key, top, summary.currency)
            name = {"time_s": "Time", "energy_kwh": "Energy", "co2_kg": "CO2", "cost": "Cost"}[key]
            cols.append(_Column(key, f"{name} ({unit})", scale, _decimals(top * scale)))
        elif key == "cut_epoch":
            cols.append(_Column(key, "Cut epoch", 1.0, 1))
        elif key.endswith("_saving_pct"):
            name = {"time": "Time", "energy": "Energy", "co2": "CO2"}[key.split("_")[0]]
            cols.append(_Column(key, f"{name} saved (%)", 1.0, 1, signed=True))
        elif key == "acc_delta_pts":
            cols.append(_Column(key, "ΔAcc (pts)", 1.0, 2, signed=True))
        else:
            cols.append(_Column(key, key, 1.0, _decimals(top)))
    return cols


def _fmt_num(v: float, decimals: int, signed: bool = False) -> str:
    s = f"{v:+.{decimals}f}" if signed else f"{v:.{decimals}f}"
    return s.lstrip("+-") if float(s) == 0 else s


def _cell(stat: Stat | None, col: _Column, pm: str, empty: str) -> str:
    if stat is None or not _finite(stat.mean):
        return empty
    s = _fmt_num(stat.mean * col.scale, col.decimals, col.signed)
    if _finite(stat.std):
        s += f"{pm}{_fmt_num(stat.std * col.scale, col.decimals)}"
    return s


def _opt(v: Any, fmt: str, empty: str = "–") -> str:
    return format(v, fmt) if _finite(v) else empty


def _run_line(r: Run) -> str:
    who = f"{r.model}/{r.label}" + (f", seed {r.seed}" if r.seed is not None else "")
    return f"`{r.name}` ({who}): **{r.status}** — " + ("; ".join(r.problems) or "?")


def to_markdown(summary: Summary) -> str:
    """The Markdown report: the summary table (mean ± std over complete seeds), the
    detector-vs-fixed-cut comparison, the runs that are not complete, notes and definitions."""
    lines = ["# Summary", ""]
    cols = _columns(summary)
    if summary.groups:
        lines.append(
            f"Mean ± sample std over complete seeds; `n` = complete/all runs of the group; "
            f"accuracy = last `{summary.accuracy_key}`; savings and ΔAcc against the always-k "
            "group of the same model (same seed where it exists)."
        )
        lines.append("")
        header = ["Model", "Policy", "n", *(c.header for c in cols)]
        lines.append("| " + " | ".join(header) + " |")
        lines.append("|" + "|".join([":--", ":--", "--:"] + ["--:"] * len(cols)) + "|")
        for g in summary.groups:
            cells = [g.model, g.label, f"{len(g.complete)}/{len(g.runs)}"]
            cells += [_cell(g.stats.get(c.key), c, " ± ", "–") for c in cols]
            lines.append("| " + " | ".join(cells) + " |")
    else:
        lines.append("No runs.")
    lines.append("")
    if summary.regret or summary.oracles:
        tol = summary.tolerance
        lines += [f"## Detector vs fixed cuts (tolerance {tol:g} pts)", ""]
        for model, o in summary.oracles.items():
            if o["oracle"] is not None:
                lines.append(
                    f"- {model}: oracle cut **{o['oracle']}** (epoch {o['oracle_cut']:g}, "
                    f"{100 * o['oracle_acc']:.2f}%): the earliest fixed cut within {tol:g} pts of "
                    f"{o['baseline']} ({100 * o['baseline_acc']:.2f}%)"
                )
            else:
                lines.append(f"- {model}: no oracle cut ({o['oracle_reason']})")
            if o["best_fixed"] is not None:
                lines[-1] += (
                    f"; best fixed cut {o['best_fixed']} ({100 * o['best_fixed_acc']:.2f}%)"
                )
        if summary.regret:
            lines += [
                "",
                (
                    "| Model | Detector | n cut | Cut epoch | Acc (%) | Regret vs best fixed (pts) "
                    "| Oracle | Cut − oracle (epochs) | Acc − oracle (pts) | Time vs oracle (%) "
                    "| Energy vs oracle (%) |"
                ),
                "|:--|:--|--:|--:|--:|--:|:--|--:|--:|--:|--:|",
            ]
            for r in summary.regret:
                cells = [
                    r["model"],
                    r["label"],
                    f"{r['n_cut']}/{r['n']}",
                    _opt(r["cut_epoch"], ".1f"),
                    _opt(None if r["acc"] is None else 100 * r["acc"], ".2f"),
                    _opt(r["accuracy_regret_pts"], "+.2f"),
                    r["oracle"] or "–",
                    _opt(r["cut_delta_epochs"], "+.1f"),
                    _opt(r["acc_vs_oracle_pts"], "+.2f"),
                    _opt(r["time_vs_oracle_pct"], "+.1f"),
                    _opt(r["energy_vs_oracle_pct"], "+.1f"),
                ]
                lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    bad = summary.not_complete
    lines += [f"## Runs not complete ({len(bad)})", ""]
    if bad:
        lines += [f"- {_run_line(r)}" for r in bad]
    else:
        lines.append("All runs are complete.")
    lines.append("")
    if summary.notes:
        lines += ["## Notes", ""] + [f"- {n}" for n in summary.notes] + [""]
    return "\n".join(lines)


_LATEX_SPECIAL = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
}


def latex_escape(text: str) -> str:
    r"""Escape LaTeX's special characters.

    Example:
        >>> print(latex_escape("detector:layer_rotation@0.01 & 5% {x}"))
        detector:layer\_rotation@0.01 \& 5\% \{x\}
    """
    return "".join(_LATEX_SPECIAL.get(ch, ch) for ch in str(text))


def _tex_header(text: str) -> str:
    return latex_escape(text).replace("CO2", r"CO$_2$").replace("Δ", r"$\Delta$")


def to_latex(summary: Summary) -> str:
    """A booktabs ``tabular`` of the summary (needs ``\\usepackage{booktabs}``), one block of
    rows per model, and a second one of the detector-vs-fixed-cut comparison when there is one.
    Every text cell is escaped (:func:`latex_escape`)."""
    cols = _columns(summary)
    out = [
        "% Generated by `critical report`: mean $\\pm$ sample std over complete seeds.",
        "% Requires \\usepackage{booktabs}.",
        "\\begin{tabular}{ll" + "r" * (1 + len(cols)) + "}",
        "\\toprule",
        " & ".join(["Model", "Policy", "$n$", *(_tex_header(c.header) for c in cols)]) + " \\\\",
        "\\midrule",
    ]
    prev = None
    for g in summary.groups:
        if prev is not None and g.model != prev:
            out.append("\\midrule")
        prev = g.model
        cells = [latex_escape(g.model), latex_escape(g.label), f"{len(g.complete)}/{len(g.runs)}"]
        cells += [_cell(g.stats.get(c.key), c, " $\\pm$ ", "--") for c in cols]
        out.append(" & ".join(cells) + " \\\\")
    out += ["\\bottomrule", "\\end{tabular}", ""]
    if summary.regret:
        out += [
            f"% Detector vs fixed cuts (tolerance {summary.tolerance:g} accuracy points).",
            "\\begin{tabular}{llrrrrlrrr}",
            "\\toprule",
            (
                "Model & Detector & Cut epoch & Acc (\\%) & Regret (pts) & Oracle & "
                "Cut $-$ oracle & Acc $-$ oracle (pts) & Time vs oracle (\\%) & "
                "Energy vs oracle (\\%) \\\\"
            ),
            "\\midrule",
        ]
        for r in summary.regret:
            cells = [
                latex_escape(r["model"]),
                latex_escape(r["label"]),
                _opt(r["cut_epoch"], ".1f", "--"),
                _opt(None if r["acc"] is None else 100 * r["acc"], ".2f", "--"),
                _opt(r["accuracy_regret_pts"], "+.2f", "--"),
                latex_escape(r["oracle"]) if r["oracle"] else "--",
                _opt(r["cut_delta_epochs"], "+.1f", "--"),
                _opt(r["acc_vs_oracle_pts"], "+.2f", "--"),
                _opt(r["time_vs_oracle_pct"], "+.1f", "--"),
                _opt(r["energy_vs_oracle_pct"], "+.1f", "--"),
            ]
            out.append(" & ".join(cells) + " \\\\")
        out += ["\\bottomrule", "\\end{tabular}", ""]
    return "\n".join(out)


def write_csv(summary: Summary, out_dir: PathLike) -> list[Path]:
    """Write ``summary.csv`` (one row per group: ``<key>_mean``, ``<key>_std``, ``<key>_n`` per
    value, base units), ``regret.csv`` and ``runs.csv`` (one row per run, every status) into
    ``out_dir``; returns their paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    fields = ["model", "label", "policy", "k", "cut_at", "baseline", "n_complete", "n_runs"]
    fields += ["seeds", "n_cut"]
    for key in summary.keys:
        fields += [f"{key}_mean", f"{key}_std", f"{key}_n"]
    rows = []
    for g in summary.groups:
        row: dict[str, Any] = {
            "model": g.model,
            "label": g.label,
            "policy": g.policy,
            "k": g.k,
            "cut_at": g.cut_at,
            "baseline": g.baseline,
            "n_complete": len(g.complete),
            "n_runs": len(g.runs),
            "seeds": " ".join(str(r.seed) for r in g.complete if r.seed is not None),
            "n_cut": g.n_cut,
        }
        for key in summary.keys:
            s = g.stats.get(key, Stat(math.nan, math.nan, 0))
            row.update({f"{key}_mean": s.mean, f"{key}_std": s.std, f"{key}_n": s.n})
        rows.append(row)
    paths = [out_dir / "summary.csv", out_dir / "regret.csv", out_dir / "runs.csv"]
    atomic_write_csv(paths[0], rows, fieldnames=fields)
    regret_fields = list(summary.regret[0]) if summary.regret else ["model", "label"]
    atomic_write_csv(paths[1], summary.regret, fieldnames=regret_fields)
    values = {name: v for g in summary.groups for name, v in g.values.items()}
    run_rows = []
    for r in summary.runs:
        run_rows.append(
            {
                "name": r.name,
                "model": r.model,
                "label": r.label,
                "policy": r.policy,
                "seed": r.seed,
                "status": r.status,
                "problems": "; ".join(r.problems),
                "epochs": len(r.rows),
                **{k: values.get(r.name, {}).get(k) for k in summary.keys},
            }
        )
    fields_runs = ["name", "model", "label", "policy", "seed", "status", "problems", "epochs"]
    atomic_write_csv(paths[2], run_rows, fieldnames=fields_runs + summary.keys)
    return paths


# ----------------------------------------------------------------------------------------------
# plots
# ----------------------------------------------------------------------------------------------


def _figure(nrows: int = 1, ncols: int = 1, width: float = 6.4, height: float = 4.0):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width * ncols, height * nrows), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False)
    return fig, [ax for row in axes for ax in row]


def _integer_ticks(axis: Any) -> None:
    from matplotlib.ticker import MaxNLocator

    axis.set_major_locator(MaxNLocator(integer=True))


def _save(fig: Any, base: Path) -> list[Path]:
    """``base.png`` and ``base.pdf``, each written atomically."""
    base.parent.mkdir(parents=True, exist_ok=True)
    paths = []
    for ext in ("png", "pdf"):
        buf = io.BytesIO()
        kw = {"dpi": 150} if ext == "png" else {"metadata": {"CreationDate": None}}
        fig.savefig(buf, format=ext, **kw)
        path = base.with_name(base.name + "." + ext)
        atomic_write_bytes(path, buf.getvalue(), fsync=False)
        paths.append(path)
    return paths


def _metric_columns(columns: Iterable[str]) -> list[str]:
    """Whole-model training-dynamics columns: ``critical/...`` minus control signals and
    per-layer columns (a column ``X/<layer>`` whose ``X`` is itself a candidate, or one of the
    known metrics)."""
    known = (
        "critical/gradient_confusion/mean",
        "critical/gradient_confusion/min",
        "critical/gradient_predictability",
        "critical/layer_rotation",
    )
    cand = [c for c in columns if c.startswith("critical/") and c not in _CONTROL_COLUMNS]
    roots = set(cand) | set(known)
    out = [c for c in cand if not any(c.startswith(r + "/") for r in roots if r != c)]
    return sorted(out, key=lambda c: (known.index(c) if c in known else len(known), c))


def _mean_curve(runs: Sequence[Run], key: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Epochs, mean and std (0 for one run) over ``runs`` of column ``key``, epoch-aligned."""
    by_epoch: dict[float, list[float]] = {}
    for r in runs:
        e, v = r.column(key)
        for ei, vi in zip(e, v):
            by_epoch.setdefault(float(ei), []).append(float(vi))
    es = np.asarray(sorted(by_epoch), dtype=float)
    mean = np.asarray([np.mean(by_epoch[e]) for e in es], dtype=float)
    std = np.asarray(
        [np.std(by_epoch[e], ddof=1) if len(by_epoch[e]) > 1 else 0.0 for e in es], dtype=float
    )
    return es, mean, std


def _short(key: str) -> str:
    return key.removeprefix("critical/")


def _runs_for_curves(summary: Summary, model: str) -> tuple[Group | None, list[Run]]:
    mgroups = [g for g in summary.groups if g.model == model]
    cands = [g for g in mgroups if g.policy == "always"] + [
        g for g in mgroups if g.policy != "always"
    ]
    for g in cands:
        runs = g.complete or [r for r in g.runs if r.rows]
        if any(r.rows for r in runs):
            return g, runs
    return None, []


def plot_curves(
    summary: Summary, out_dir: PathLike, messages: list[str] | None = None
) -> list[Path]:
    """Per model, ``curves_<model>.{png,pdf}``: each training-dynamics metric and the
    validation accuracy against epoch, mean ± std over the complete seeds of the always-k group
    (else of the model's first group with rows), with every complete detector run's cut epoch as
    a vertical line at the epoch boundary (``cut_epoch - 0.5``), one colour per detector group,
    and the fixed cuts as light dotted lines.

    Raises:
        NoDataError: no model has metric rows.
    """
    out_dir = Path(out_dir)
    paths: list[Path] = []
    for model in summary.models:
        group, runs = _runs_for_curves(summary, model)
        if group is None:
            if messages is not None:
                messages.append(f"curves: {model}: no metric rows; skipped")
            continue
        cols: dict[str, None] = {}
        for r in runs:
            cols.update(dict.fromkeys(_metric_columns(r.columns())))
        keys = [*cols, summary.accuracy_key]
        n = len(keys)
        ncols = 2 if n > 1 else 1
        nrows = math.ceil(n / ncols)
        fig, axes = _figure(nrows, ncols, width=5.0, height=3.2)
        mgroups = [g for g in summary.groups if g.model == model]
        detectors = [g for g in mgroups if g.policy == "detector"]
        fixed_cuts = sorted(
            {g.cut_at for g in mgroups if g.policy == "fixed" and g.cut_at is not None}
        )
        colors = [f"C{i + 1}" for i in range(len(detectors))]
        for ax, key in zip(axes, keys):
            e, m, s = _mean_curve(runs, key)
            if e.size:
                ax.plot(e, m, color="C0", marker=".", label=f"{group.label} (n={len(runs)})")
                if len(runs) > 1:
                    ax.fill_between(e, m - s, m + s, color="C0", alpha=0.2, linewidth=0)
            if key == summary.accuracy_key:
                for g, c in zip(detectors, colors):
                    de, dm, _ = _mean_curve(g.complete, key)
                    if de.size:
                        ax.plot(de, dm, color=c, linewidth=1, label=g.label)
            for i, c in enumerate(fixed_cuts):
                ax.axvline(
                    c - 0.5,
                    color="0.6",
                    linestyle=":",
                    alpha=0.6,
                    label="fixed cuts" if i == 0 else None,
                )
            for g, c in zip(detectors, colors):
                cuts = [r.cut_epoch for r in g.complete if r.cut_epoch is not None]
                for j, cut in enumerate(cuts):
                    ax.axvline(
                        cut - 0.5,
                        color=c,
                        linestyle="--",
                        alpha=0.8,
                        label=f"cut: {g.label}" if j == 0 else None,
                    )
            ax.set_title(_short(key), fontsize=10)
            ax.set_xlabel("epoch")
            _integer_ticks(ax.xaxis)
            ax.grid(alpha=0.3)
        for ax in axes[n:]:
            ax.set_visible(False)
        for ax in {id(axes[0]): axes[0], id(axes[n - 1]): axes[n - 1]}.values():
            if ax.get_legend_handles_labels()[0]:
                ax.legend(fontsize=7)
        fig.suptitle(f"{model}: training dynamics ({group.label}, mean ± std over seeds)")
        paths += _save(fig, out_dir / f"curves_{_slug(model)}")
    if not paths:
        raise NoDataError("curves: no run has metric rows; no metric-curve plot")
    return paths


def pareto_front(x: Sequence[float], y: Sequence[float]) -> list[int]:
    """Indices of the points not dominated when lower ``x`` and higher ``y`` are better (a point
    is dominated by one with ``x' <= x`` and ``y' >= y``, one strictly), sorted by ``x``.

    Example:
        >>> pareto_front([1.0, 2.0, 3.0, 2.5], [0.5, 0.8, 0.9, 0.7])
        [0, 1, 2]
    """
    pts = sorted(range(len(x)), key=lambda i: (x[i], -y[i]))
    front, best = [], -math.inf
    for i in pts:
        if y[i] > best:
            front.append(i)
            best = y[i]
    return front


def plot_pareto(
    summary: Summary, out_dir: PathLike, messages: list[str] | None = None
) -> list[Path]:
    """``pareto.{png,pdf}``: mean accuracy against mean energy per group (error bars: std over
    seeds), one panel per model, points labelled, the Pareto front (lower energy, higher
    accuracy) drawn as a step line. Without energy measurements the x axis is wall time.

    Raises:
        NoDataError: no group has both an accuracy and an energy (or time).
    """
    xkey = "energy_kwh"
    if not any(_finite(g.mean("acc")) and _finite(g.mean(xkey)) for g in summary.groups):
        xkey = "time_s"
        if messages is not None and summary.groups:
            messages.append("pareto: no energy measured; the x axis is wall time")
    panels = []
    for model in summary.models:
        gs = [g for g in summary.groups if g.model == model]
        gs = [g for g in gs if _finite(g.mean("acc")) and _finite(g.mean(xkey))]
        if gs:
            panels.append((model, gs))
    if not panels:
        raise NoDataError("pareto: no group has both an accuracy and an energy/time; skipped")
    fig, axes = _figure(1, len(panels), width=6.0, height=4.5)
    for ax, (model, gs) in zip(axes, panels):
        top = max(abs(g.mean(xkey)) for g in gs)
        unit, scale = _unit(xkey, top, summary.currency)
        xs = [g.mean(xkey) * scale for g in gs]
        ys = [100 * g.mean("acc") for g in gs]
        xerr = [_zero(g.stats[xkey].std) * scale for g in gs]
        yerr = [100 * _zero(g.stats["acc"].std) for g in gs]
        for i, g in enumerate(gs):
            ax.errorbar(
                xs[i],
                ys[i],
                xerr=xerr[i],
                yerr=yerr[i],
                fmt="o",
                capsize=3,
                color=f"C{_POLICY_RANK.get(g.policy or '', len(POLICIES))}",
            )
            ax.annotate(
                g.label, (xs[i], ys[i]), textcoords="offset points", xytext=(4, 4), fontsize=7
            )
        front = pareto_front(xs, ys)
        fx = [xs[i] for i in front]
        fy = [ys[i] for i in front]
        ax.step(fx, fy, where="post", color="k", alpha=0.5, linewidth=1, label="Pareto front")
        ax.set_xlabel(f"{'energy' if xkey == 'energy_kwh' else 'wall time'} ({unit})")
        ax.set_ylabel(f"accuracy (%) [{summary.accuracy_key}]")
        ax.set_title(model if model != "-" else "runs")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    return _save(fig, Path(out_dir) / "pareto")


def _zero(v: float) -> float:
    return v if _finite(v) else 0.0


def plot_accuracy_vs_cut(
    summary: Summary, out_dir: PathLike, messages: list[str] | None = None
) -> list[Path]:
    """``accuracy_vs_cut.{png,pdf}``, one panel per model with fixed cuts or detector groups:
    the fixed cuts' mean accuracy against their cut epoch as a line with a ± std band,
    always-k and k1 as horizontal lines (the tolerance below always-k dotted), detector groups as
    points at their mean cut epoch (error bars: std of cut epoch and accuracy), the oracle cut
    starred.

    Raises:
        NoDataError: no model has fixed cuts or detector groups with an accuracy.
    """
    panels = []
    for model in summary.models:
        gs = [g for g in summary.groups if g.model == model and _finite(g.mean("acc"))]
        fixed = sorted(
            (g for g in gs if g.policy == "fixed" and g.cut_at is not None), key=lambda g: g.cut_at
        )
        det = [g for g in gs if g.policy == "detector" and _finite(g.mean("cut_epoch"))]
        if messages is not None:
            for g in gs:
                if g.policy == "detector" and g not in det:
                    messages.append(f"accuracy_vs_cut: {model}/{g.label} never cut; not drawn")
        if fixed or det:
            panels.append((model, gs, fixed, det))
        elif messages is not None and gs:
            messages.append(f"accuracy_vs_cut: {model}: no fixed cuts or detector cuts; skipped")
    if not panels:
        raise NoDataError("accuracy_vs_cut: no fixed cuts or detector cuts; skipped")
    fig, axes = _figure(1, len(panels), width=6.0, height=4.5)
    for ax, (model, gs, fixed, det) in zip(axes, panels):
        if fixed:
            x = np.asarray([g.cut_at for g in fixed], dtype=float)
            m = np.asarray([100 * g.mean("acc") for g in fixed])
            s = np.asarray([100 * _zero(g.stats["acc"].std) for g in fixed])
            ax.plot(x, m, "o-", color="C2", label="fixed cut")
            ax.fill_between(x, m - s, m + s, color="C2", alpha=0.2, linewidth=0)
        for g in gs:
            if g.policy not in ("always", "k1"):
                continue
            m = 100 * g.mean("acc")
            s = 100 * _zero(g.stats["acc"].std)
            c = "C0" if g.policy == "always" else "C1"
            ax.axhline(m, color=c, linestyle="-" if g.policy == "always" else "--", label=g.label)
            if s > 0:
                ax.axhspan(m - s, m + s, color=c, alpha=0.1, linewidth=0)
        o = summary.oracles.get(model) or {}
        if o.get("baseline_acc") is not None:
            ax.axhline(
                100 * o["baseline_acc"] - summary.tolerance,
                color="C0",
                linestyle=":",
                alpha=0.6,
                label=f"{o['baseline']} − {summary.tolerance:g} pts",
            )
        if o.get("oracle") is not None:
            ax.plot(
                [o["oracle_cut"]],
                [100 * o["oracle_acc"]],
                "*",
                color="k",
                markersize=12,
                label=f"oracle cut ({o['oracle']})",
                zorder=5,
            )
        for i, g in enumerate(det):
            cx, cy = g.mean("cut_epoch"), 100 * g.mean("acc")
            ax.errorbar(
                cx,
                cy,
                xerr=_zero(g.stats["cut_epoch"].std),
                yerr=100 * _zero(g.stats["acc"].std),
                fmt="D",
                capsize=3,
                color=f"C{3 + i}",
                label=g.label,
            )
        ax.set_xlabel("cut epoch (first epoch at k = 1)")
        _integer_ticks(ax.xaxis)
        ax.set_ylabel(f"accuracy (%) [{summary.accuracy_key}]")
        ax.set_title(model if model != "-" else "runs")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    return _save(fig, Path(out_dir) / "accuracy_vs_cut")


def plot_run(run_dir: PathLike) -> list[Path]:
    """Draw one run: one panel per training-dynamics metric, accuracy (``val/acc``, ``test/acc``
    and ``train/acc`` when logged; ``train/loss`` on a second axis), and k per epoch, the cut
    marked by a vertical line at the epoch boundary before the first epoch at the reduced k.
    Saved as ``run_dir/plot.png`` and ``run_dir/plot.pdf``; returns their paths.

    Raises:
        FileNotFoundError: ``run_dir`` is not a directory.
        ValueError: the run has no metric rows.

    Example::

        >>> from critical.report import plot_run
        >>> plot_run("runs/my-run")  # doctest: +SKIP
        [PosixPath('runs/my-run/plot.png'), PosixPath('runs/my-run/plot.pdf')]
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"run directory {run_dir} does not exist")
    run = load_run(run_dir)
    if not run.rows:
        raise ValueError(f"{run_dir}: no metric rows (metrics.json / metrics.csv); nothing to plot")
    columns = run.columns()
    metrics = _metric_columns(columns)
    acc_keys = [k for k in ("val/acc", "test/acc", "train/acc") if k in columns]
    k_key = "multiplicity" if any(_finite(r.get("multiplicity")) for r in run.rows) else None
    panels: list[tuple[str, Callable[[Any], None]]] = []
    for key in metrics:
        panels.append((_short(key), lambda ax, key=key: ax.plot(*run.column(key), ".-")))

    def draw_acc(ax: Any) -> None:
        for i, key in enumerate(acc_keys):
            e, v = run.column(key)
            ax.plot(e, 100 * v, ".-", color=f"C{i}", label=key)
        ax.set_ylabel("accuracy (%)")
        if "train/loss" in columns:
            ax2 = ax.twinx()
            ax2.plot(*run.column("train/loss"), color="0.5", linestyle="--", label="train/loss")
            ax2.set_ylabel("train/loss")
            ax2.legend(fontsize=7, loc="center right")
        if acc_keys:
            ax.legend(fontsize=7, loc="lower right")

    if acc_keys or "train/loss" in columns:
        panels.append(("accuracy", draw_acc))
    if k_key is not None:

        def draw_k(ax: Any) -> None:
            ax.step(*run.column(k_key), "o-", where="mid")
            _integer_ticks(ax.yaxis)

        panels.append(("multiplicity k", draw_k))
    n = len(panels)
    if n == 0:
        raise ValueError(
            f"{run_dir}: the metric rows hold no training-dynamics metric, accuracy, loss or "
            "multiplicity; nothing to plot"
        )
    ncols = 2 if n > 1 else 1
    fig, axes = _figure(math.ceil(n / ncols), ncols, width=5.0, height=3.2)
    cut = run.cut_epoch
    ce = run.cut_event or {}
    kb, ka = ce.get("multiplicity_before"), ce.get("multiplicity_after")
    cut_label = f"cut (k {kb}→{ka})" if kb is not None and ka is not None else "cut"
    for ax, (title, draw) in zip(axes, panels):
        draw(ax)
        if cut is not None:
            ax.axvline(cut - 0.5, color="C3", linestyle="--", label=cut_label)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("epoch")
        _integer_ticks(ax.xaxis)
        ax.grid(alpha=0.3)
    for ax in axes[n:]:
        ax.set_visible(False)
    if cut is not None:
        axes[0].legend(fontsize=7)
    title = run.name if run.label == run.name else f"{run.name} ({run.label})"
    fig.suptitle(f"{title} — {run.status}" if run.status != "complete" else title)
    return _save(fig, run_dir / "plot")


# ----------------------------------------------------------------------------------------------
# the report
# ----------------------------------------------------------------------------------------------


@dataclass
class ReportFiles:
    """What :func:`write_report` wrote (``files``) and the plots it skipped, and why."""

    files: list[Path]
    messages: list[str]


def write_report(summary: Summary, out_dir: PathLike, *, plots: bool = True) -> ReportFiles:
    """Write ``summary.md``, ``summary.csv``, ``regret.csv``, ``runs.csv``, ``summary.tex`` and
    (with ``plots``) the three plots into ``out_dir`` (created). A plot whose data are absent is
    skipped and its reason added to ``messages``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    files: list[Path] = []
    messages: list[str] = []
    atomic_write_text(out_dir / "summary.md", to_markdown(summary), fsync=False)
    files.append(out_dir / "summary.md")
    files += write_csv(summary, out_dir)
    atomic_write_text(out_dir / "summary.tex", to_latex(summary), fsync=False)
    files.append(out_dir / "summary.tex")
    if plots:
        for fn in (plot_curves, plot_pareto, plot_accuracy_vs_cut):
            try:
                files += fn(summary, out_dir, messages)
            except NoDataError as err:
                messages.append(str(err))
    return ReportFiles(files=files, messages=messages)


def _tolerance(s: str) -> float:
    try:
        v = float(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {s!r}") from None
    if not math.isfinite(v) or v < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0 (accuracy points), got {s}")
    return v


def main(argv: Sequence[str] | None = None) -> int:
    """``critical report RUNS_DIR [--out DIR] [--tolerance 0.5] [--accuracy-key val/acc]``.

    Prints the Markdown summary and where the files went. Returns 0 (also when some runs are
    incomplete, failed or missing: they are listed), 2 when ``RUNS_DIR`` is not a directory or
    holds no run directory at all.
    """
    parser = argparse.ArgumentParser(
        prog="critical report",
        description="Tables (Markdown, CSV, LaTeX) and plots from the run directories below "
        "RUNS_DIR (directories with a config.json; sweep.json lists the runs a sweep expects).",
    )
    parser.add_argument("runs_dir", metavar="RUNS_DIR", help="directory holding run directories")
    parser.add_argument("--out", default=None, help="output directory (default RUNS_DIR/report)")
    parser.add_argument(
        "--tolerance",
        type=_tolerance,
        default=0.5,
        help="accuracy points within which a fixed cut matches always-k (oracle cut; default 0.5)",
    )
    parser.add_argument(
        "--accuracy-key", default="val/acc", help="metric column read as the final accuracy"
    )
    parser.add_argument("--no-plots", action="store_true", help="write the tables only")
    args = parser.parse_args(None if argv is None else list(argv))
    root = Path(args.runs_dir)
    if not root.is_dir():
        print(f"critical report: {root} is not a directory", file=sys.stderr)
        return 2
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        runs = load_runs(root)
    for w in caught:
        print(f"warning: {w.message}", file=sys.stderr)
    if not any(r.status != "missing" for r in runs):
        extra = f" (sweep.json lists {len(runs)} runs, none of them exists)" if runs else ""
        print(
            f"critical report: no run directories (directories with a config.json) below "
            f"{root}{extra}",
            file=sys.stderr,
        )
        return 2
    summary = summarize(runs, tolerance=args.tolerance, accuracy_key=args.accuracy_key)
    out = Path(args.out) if args.out is not None else root / "report"
    report = write_report(summary, out, plots=not args.no_plots)
    print(to_markdown(summary))
    for m in report.messages:
        print(f"note: {m}")
    counts = {s: sum(r.status == s for r in runs) for s in STATUSES}
    print(", ".join(f"{n} {s}" for s, n in counts.items() if n) + f" run(s); files in {out}:")
    for f in report.files:
        print(f"  {f}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
