"""``summarize``: runs grouped by setting and label, with the statistics of
:mod:`critical.report.stats` and the comparisons of :mod:`critical.report.baselines` (this
module imports both, so neither imports the other)."""

from __future__ import annotations

from collections.abc import Sequence

from critical.report import baselines
from critical.report.accuracy import resolve_accuracy
from critical.report.runs import Run, Setting, _finite
from critical.report.stats import (
    Group,
    Summary,
    _ordered_keys,
    _run_sort_key,
    compute_stats,
    run_values,
)

__all__ = ["summarize"]


def summarize(
    runs: Sequence[Run],
    *,
    tolerance: float = 0.5,
    accuracy_key: str | None = None,
    saving_tolerance: float = 5.0,
) -> Summary:
    """Group ``runs`` by setting and label and compute the statistics, savings, matched k = 1
    comparison, compute check, regret and oracle cut defined in the :mod:`critical.report`
    docstring. Only complete runs enter the numbers; runs of different settings are never
    compared.

    Args:
        runs: from :func:`load_runs` (any status).
        tolerance: accuracy points (>= 0) within which a fixed cut matches always-k.
        accuracy_key: the accuracy compared (a metrics column, a metric of
            ``evaluations.json`` or a ``*_acc`` of ``robustness.json``); ``None``: the test
            split's when the runs recorded one, else the validation split's
            (:func:`critical.report.accuracy.resolve_accuracy`; a note warns when a detector
            read that split).
        saving_tolerance: percentage points (>= 0) a measured saving may differ from the
            compute (FLOPs) saving before it is flagged (besides the noise over seeds).

    Example:
        >>> summarize([], tolerance=0.5).groups
        []
    """
    for name, v in (("tolerance", tolerance), ("saving_tolerance", saving_tolerance)):
        if not _finite(v) or v < 0:
            raise ValueError(f"`{name}` must be a number >= 0 (points), got {v!r}")
    notes: list[str] = []
    if accuracy_key is not None and (not isinstance(accuracy_key, str) or not accuracy_key):
        raise ValueError(f"`accuracy_key` must be a metric column name, got {accuracy_key!r}")
    source = resolve_accuracy(runs, accuracy_key)
    accuracy_key = source.key
    if source.warning():
        notes.append(str(source.warning()))
    complete = [r for r in runs if r.status == "complete"]
    evaluated = [r for r in complete if accuracy_key not in r.columns()]
    if evaluated and all(accuracy_key in r.evaluated_keys() for r in evaluated):
        stages = sorted(
            {
                str(e.get("stage"))
                for r in evaluated
                for e in r.evaluations
                if accuracy_key in (e.get("metrics") or {})
            }
        )
        notes.append(
            f"accuracy `{accuracy_key}` read from evaluations.json (trainer."
            f"{'/'.join(stages) or 'test'} after the fit) in {len(evaluated)} of "
            f"{len(complete)} complete runs"
        )
    by_key: dict[tuple[Setting, str], list[Run]] = {}
    for r in runs:
        by_key.setdefault((r.setting, r.label), []).append(r)
    groups: list[Group] = []
    for (setting, label), rs in by_key.items():
        where = f"{setting.label} / {label}"
        policies = {r.policy for r in rs}
        policy = next(iter(policies)) if len(policies) == 1 else None
        if len(policies) > 1:
            notes.append(f"{where}: runs with different policies; policy left unset")
        g = Group(setting=setting, label=label, policy=policy, runs=sorted(rs, key=_run_sort_key))
        g.values = {r.name: run_values(r, accuracy_key) for r in g.complete}
        seeds = [r.seed for r in g.complete if r.seed is not None]
        dup = sorted({s for s in seeds if seeds.count(s) > 1})
        if dup:
            notes.append(f"{where}: several complete runs with seed(s) {dup}")
        if g.complete and all(v["acc"] is None for v in g.values.values()):
            notes.append(f"{where}: no '{accuracy_key}' accuracy in its complete runs")
        groups.append(g)
    groups.sort(key=lambda g: (g.setting.sort_key(), g._sort_key()))
    for g in groups:
        compute_stats(g)
    settings = list(dict.fromkeys(g.setting for g in groups))
    if len(settings) > 1:
        notes.append(
            f"{len(settings)} settings, reported apart (runs are compared only within one data "
            "set, model and budget): " + "; ".join(s.label for s in settings)
        )
    for setting in settings:
        sgroups = [g for g in groups if g.setting == setting]
        notes += baselines.savings(setting, sgroups)
        notes += baselines.matched_k1(sgroups)
        notes += baselines.compute_check(sgroups, saving_tolerance)
    present: set[str] = set()
    for g in groups:
        present.update(k for k, s in g.stats.items() if s.n > 0)
    oracles, regret = baselines.regret(groups, tolerance)
    pooled = baselines.pooled_matched(groups)
    baselines.compute_check(pooled, saving_tolerance)  # its notes are the matched groups'
    return Summary(
        groups=groups,
        runs=sorted(runs, key=lambda r: r.name),
        keys=_ordered_keys(present),
        oracles=oracles,
        regret=regret,
        tolerance=float(tolerance),
        accuracy_key=accuracy_key,
        notes=notes,
        matched=[g.matched for g in groups if g.matched is not None],
        saving_tolerance=float(saving_tolerance),
        accuracy=source,
        pooled=pooled,
    )
