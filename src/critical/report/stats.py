"""Statistics over runs: :class:`Stat`, :class:`Group`, :class:`Summary`, :func:`run_values`
and :func:`compute_stats` (the grouping itself is :func:`critical.report.summarize`, in
:mod:`critical.report.analysis`).

The per-run values, the groups and the statistics are defined in the :mod:`critical.report`
docstring. Reads :class:`~critical.report.runs.Run` only; writes nothing.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from critical.report import costs
from critical.report.accuracy import AccuracySource
from critical.report.runs import _POLICY_RANK, POLICIES, Run, Setting, _finite
from critical.runfiles import TEST_ACCURACY_KEYS

__all__ = [
    "COST_KEYS",
    "Group",
    "Stat",
    "Summary",
    "compute_stats",
    "per_seed",
    "run_values",
]

#: value keys shown in the cost table, not in the main one (summary.csv has every key)
COST_KEYS = (
    "params",
    "flops",
    "flops_saving_pct",
    "theoretical_saving_pct",
    "time_vs_compute_pts",
    "energy_vs_compute_pts",
)


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
    """The runs of one setting (data set, model, budget) and label, and their statistics.

    Attributes:
        values: ``{run name: run_values(...) + savings and comparisons}`` of the complete runs.
        stats: ``{value key: Stat}`` over the complete runs.
        baseline: the label of the always-k group its savings are computed against, or None.
        matched: for a cut policy, its comparison with matched k = 1 (a row of
            :attr:`Summary.matched`), else None.
        check: measured against compute saving (see the :mod:`critical.report` docstring), or
            None when there is nothing to check.
    """

    setting: Setting
    label: str
    policy: str | None
    runs: list[Run]
    values: dict[str, dict[str, float | None]] = field(default_factory=dict)
    stats: dict[str, Stat] = field(default_factory=dict)
    baseline: str | None = None
    matched: dict[str, Any] | None = None
    check: dict[str, Any] | None = None

    @property
    def model(self) -> str:
        return self.setting.model

    @property
    def dataset(self) -> str:
        return self.setting.dataset

    @property
    def budget(self) -> int | None:
        return self.setting.budget

    @property
    def complete(self) -> list[Run]:
        return [r for r in self.runs if r.status == "complete"]

    @property
    def k(self) -> int | None:
        ks = {r.k for r in self.runs if r.k is not None}
        return ks.pop() if len(ks) == 1 else None

    @property
    def cut_at(self) -> float | None:
        """For a fixed or staged cut: its cut epoch (tag, label, else mean measured cut epoch);
        for a matched k = 1 group: the cut epoch it matches."""
        if self.policy not in ("fixed", "staged", "matched"):
            return None
        cs = {r.cut_at for r in self.runs if r.cut_at is not None}
        if len(cs) == 1:
            return float(cs.pop())
        s = self.stats.get("cut_epoch")
        return s.mean if s is not None and s.n and self.policy != "matched" else None

    @property
    def cut_epochs(self) -> list[int | None]:
        """The cut epoch of each complete run, in seed order (``None``: the run never cut);
        cut epochs of different seeds are shown apart, never averaged (:func:`per_seed`)."""
        out: list[int | None] = []
        for r in sorted(self.complete, key=_run_sort_key):
            c = self.values.get(r.name, {}).get("cut_epoch")
            out.append(int(c) if _finite(c) else None)
        return out

    @property
    def n_cut(self) -> int:
        return sum(1 for v in self.values.values() if _finite(v.get("cut_epoch")))

    @property
    def energy_method(self) -> str | None:
        """How the energy of its complete runs was obtained (:func:`costs.energy_method`):
        the one method, ``"mixed: ..."`` when they differ, None without energy."""
        methods = sorted({m for r in self.complete if (m := costs.energy_method(r)) is not None})
        if not methods:
            return None
        return methods[0] if len(methods) == 1 else "mixed: " + ", ".join(methods)

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
        groups: one per setting and label, ordered by setting (data set, model, budget), then
            always, k1, matched (by cut), fixed (by cut), detector, others.
        runs: every run given (any status).
        keys: the value keys with at least one finite value, in table order.
        oracles: per setting: the baseline, the best fixed cut and the oracle cut (see the
            :mod:`critical.report` docstring), as a dict.
        regret: one dict per detector group (see the :mod:`critical.report` docstring).
        matched: one dict per cut-policy group with matched k = 1 runs in its setting.
        tolerance: in accuracy points; accuracy_key: the metric column read as accuracy;
        saving_tolerance: in percentage points, for the measured-vs-compute check.
        notes: remarks (duplicate seeds, missing baselines, disagreeing savings, ...).
    """

    groups: list[Group]
    runs: list[Run]
    keys: list[str]
    oracles: dict[Setting, dict[str, Any]]
    regret: list[dict[str, Any]]
    tolerance: float
    accuracy_key: str
    notes: list[str] = field(default_factory=list)
    matched: list[dict[str, Any]] = field(default_factory=list)
    saving_tolerance: float = 5.0
    #: the accuracy compared and its split (:func:`critical.report.accuracy.resolve_accuracy`)
    accuracy: AccuracySource | None = None
    #: matched k = 1 pooled per detector: one group per detector, its seeds' matched runs
    pooled: list[Group] = field(default_factory=list)

    @property
    def source(self) -> AccuracySource:
        """:attr:`accuracy`, else the key on an unknown split (a hand-made Summary)."""
        return self.accuracy or AccuracySource(self.accuracy_key, "unknown")

    @property
    def not_complete(self) -> list[Run]:
        return [r for r in self.runs if r.status != "complete"]

    @property
    def models(self) -> list[str]:
        return list(dict.fromkeys(g.model for g in self.groups))

    @property
    def settings(self) -> list[Setting]:
        return list(dict.fromkeys(g.setting for g in self.groups))

    def in_setting(self, setting: Setting) -> list[Group]:
        return [g for g in self.groups if g.setting == setting]

    def group(
        self, model: str, label: str, *, dataset: str | None = None, budget: int | None = None
    ) -> Group:
        """The group of ``model`` and ``label`` (and ``dataset`` / ``budget`` when given).

        Raises:
            KeyError: no such group, or several (name the data set or budget).
        """
        found = [
            g
            for g in self.groups
            if g.model == model
            and g.label == label
            and (dataset is None or g.dataset == dataset)
            and (budget is None or g.budget == budget)
        ]
        if len(found) != 1:
            what = "no group" if not found else f"{len(found)} groups (give dataset/budget)"
            raise KeyError(f"{what} ({model!r}, {label!r})")
        return found[0]

    @property
    def currency(self) -> str | None:
        for r in self.runs:
            c = (r.energy or {}).get("currency")
            if isinstance(c, str) and c:
                return c
        return None


def run_values(run: Run, accuracy_key: str = "val/acc") -> dict[str, float | None]:
    """The per-run numbers (see the :mod:`critical.report` docstring), in base units.

    Keys: ``acc`` (``accuracy_key``: :meth:`Run.accuracy`), ``test_acc`` (the first of
    :data:`critical.runfiles.TEST_ACCURACY_KEYS` with a value, when ``accuracy_key`` is none of
    them), the other ``*_acc`` of ``robustness.json``, ``time_s``, ``energy_kwh``, ``co2_kg``,
    ``cost``, ``cut_epoch``, ``flops`` and ``params``. Accuracies come from the metric rows,
    else from ``evaluations.json``, else from ``robustness.json``.
    """
    out: dict[str, float | None] = {"acc": run.accuracy(accuracy_key)}
    if accuracy_key not in TEST_ACCURACY_KEYS:
        found = (run.final(k) for k in TEST_ACCURACY_KEYS)
        out["test_acc"] = next((v for v in found if v is not None), None)
    out.update({k: v for k, v in run.robust_accuracies().items() if k != accuracy_key})
    out["time_s"] = run.total("duration_s")
    out["energy_kwh"] = run.total("energy_kwh")
    out["co2_kg"] = run.total("co2_kg")
    out["cost"] = run.total("cost")
    cut = run.cut_epoch
    out["cut_epoch"] = None if cut is None else float(cut)
    out["flops"] = costs.flops(run)
    out["params"] = costs.params(run)
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
    "acc_vs_matched_pts",
    *COST_KEYS,
)


def _ordered_keys(present: set[str]) -> list[str]:
    head = [k for k in _KEY_ORDER[:6] if k in present]
    extra = sorted(k for k in present if k.endswith("_acc") and k not in _KEY_ORDER)
    tail = [k for k in _KEY_ORDER[6:] if k in present]
    rest = sorted(present - set(head) - set(extra) - set(tail))
    return head + extra + tail + rest


def per_seed(values: Iterable[float | None], fmt: str = "d") -> str | None:
    """Values of the seeds of a group, one per seed and in seed order (``never`` for ``None``),
    or the one value when they agree: how the report shows cut epochs, which are never averaged
    across seeds. ``None`` when there are no values.

    Example:
        >>> per_seed([22, 8]), per_seed([4, 4]), per_seed([3, None]), per_seed([2, -1], "+d")
        ('22, 8', '4', '3, never', '+2, -1')
    """
    cells = ["never" if v is None else format(int(v), fmt) for v in values]
    if not cells:
        return None
    return cells[0] if len(set(cells)) == 1 else ", ".join(cells)


def _run_sort_key(r: Run) -> tuple:
    return (r.seed if r.seed is not None else math.inf, r.name)


def compute_stats(g: Group) -> None:
    """``g.stats`` from ``g.values`` (again, after values were added)."""
    keys: dict[str, None] = {}
    for v in g.values.values():
        keys.update(dict.fromkeys(v))
    g.stats = {k: Stat.of(v.get(k) for v in g.values.values()) for k in keys}
