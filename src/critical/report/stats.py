"""Statistics over runs: :class:`Stat`, :class:`Group`, :class:`Summary`, :func:`run_values`,
:func:`summarize`, and the detector-vs-fixed-cut comparison (``_regret``: best fixed cut, oracle
cut, regret).

The per-run values, the savings against always-k and the oracle cut are defined in the
:mod:`critical.report` docstring. Reads :class:`~critical.report.runs.Run` only; writes nothing.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from critical.report.runs import _POLICY_RANK, POLICIES, Run, _finite

__all__ = ["Group", "Stat", "Summary", "run_values", "summarize"]

_SAVINGS = (
    ("time_saving_pct", "time_s"),
    ("energy_saving_pct", "energy_kwh"),
    ("co2_saving_pct", "co2_kg"),
)
_EPS = 1e-9


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
        oracles: per model: the baseline, the best fixed cut and the oracle cut (see the
            :mod:`critical.report` docstring), as a dict.
        regret: one dict per detector group (see the :mod:`critical.report` docstring).
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
    """The per-run numbers (see the :mod:`critical.report` docstring), in base units.

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
    oracle cut defined in the :mod:`critical.report` docstring. Only complete runs enter the
    numbers.

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
                    oracle_cut = oracle.cut_at
                    assert oracle_cut is not None  # the oracle is one of `fixed`: it has a cut
                    row["cut_delta_epochs"] = cut - oracle_cut
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
