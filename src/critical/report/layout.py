"""The report's tables as cells (:class:`Table`, :func:`setting_tables`): one list of tables per
setting that the Markdown and the LaTeX writers both render, so they show the same numbers
(the LaTeX writer only escapes the text and typesets ``±``, ``−`` and ``Δ``). Each table has at
most 10 columns (a page's width) and a caption that names the accuracy's split and, where
energy appears, how it was obtained (``estimated`` unless every component was measured by
hardware counters). No matplotlib.

Tables per setting: ``accuracy`` (the compared accuracy, a test or clean accuracy besides it,
ΔAcc against always-k and matched k = 1, the cut epoch of each seed), ``robustness``
(accuracies under attack or corruption), ``cost`` (time, energy, CO2, cost, parameters, FLOPs), ``savings``
(against always-k, and the measured-vs-compute check), ``matched`` (each cut policy against
matched k = 1, with the spread over seeds), ``regret`` (the detector against the fixed cuts and
always-k) and ``oracle`` (the detector against the oracle cut: its saving and share).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from critical.report._format import (
    _acc_split,
    _cell,
    _Column,
    _column,
    _opt,
    check_cell,
)
from critical.report.costs import energy_detail
from critical.report.runs import Setting
from critical.report.stats import COST_KEYS, Group, Summary, per_seed

__all__ = ["EMPTY", "Table", "display_groups", "energy_caption", "setting_tables"]

#: an empty cell
EMPTY = "–"
PM = " ± "

_COST_KEYS = ("time_s", "energy_kwh", "co2_kg", "cost", "params", "flops")
_SAVING_KEYS = (
    "flops_saving_pct",
    "theoretical_saving_pct",
    "time_saving_pct",
    "energy_saving_pct",
    "co2_saving_pct",
)
_NOT_ACC = (*_COST_KEYS, *_SAVING_KEYS, *COST_KEYS, "cut_epoch")


@dataclass
class Table:
    """One table: ``name`` (its kind), ``caption`` (plain text), ``header``, ``align`` (one of
    ``l``/``r`` per column), ``rows`` of cell strings and ``notes`` (lines shown after it)."""

    name: str
    caption: str
    header: list[str]
    align: str
    rows: list[list[str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def display_groups(summary: Summary, setting: Setting) -> list[Group]:
    """The setting's groups as the tables show them: one row per policy. Matched k = 1 groups
    of a cut epoch no fixed cut has (a detector's) are replaced by the detector's pooled
    matched group (:attr:`Summary.pooled`), placed after the detectors."""
    groups = summary.in_setting(setting)
    fixed = {g.cut_at for g in groups if g.policy == "fixed" and g.cut_at is not None}
    pooled = [p for p in summary.pooled if p.setting == setting]
    out = [
        g
        for g in groups
        if not (pooled and g.policy == "matched" and g.cut_at is not None and g.cut_at not in fixed)
    ]
    return out + pooled


def energy_caption(groups: list[Group]) -> str | None:
    """How the energy of ``groups`` was obtained, for a caption: ``"estimated"``, ``"measured
    (hardware counters)"``, ``"partly estimated"``, ..."""
    methods = sorted({g.energy_method for g in groups if g.energy_method})
    if not methods:
        return None
    text = ", ".join(methods)
    return "measured (hardware counters)" if text == "measured" else text


def _n(g: Group) -> str:
    return f"{len(g.complete)}/{len(g.runs)}"


def _stat_cells(g: Group, cols: list[_Column]) -> list[str]:
    return [_cell(g.stats.get(c.key), c, PM, EMPTY) for c in cols]


def _present(summary: Summary, groups: list[Group], keys: tuple[str, ...] | list[str]) -> list[str]:
    return [
        k
        for k in keys
        if k in summary.keys and any(g.stats.get(k) and g.stats[k].n for g in groups)
    ]


def _robust_keys(summary: Summary, groups: list[Group]) -> list[str]:
    """Accuracies under attack or corruption (``fgsm_acc``, ...): a table of their own."""
    keys = [k for k in summary.keys if k.endswith("_acc") and k not in ("test_acc", "clean_acc")]
    return _present(summary, groups, keys)


def _robust_table(summary: Summary, setting: Setting, groups: list[Group]) -> Table | None:
    keys = _robust_keys(summary, groups)
    if not keys:
        return None
    cols = [_column(k, summary.groups, summary.currency, summary) for k in keys]
    header = ["Policy", "n", *(c.header for c in cols)]
    rows = [[g.label, _n(g), *_stat_cells(g, cols)] for g in groups]
    splits = sorted({sp for k in keys if (sp := _acc_split(summary, k))})
    where = f"on the {'/'.join(splits)} split" if splits else "on an unrecorded split"
    caption = (
        f"{setting.label}: robustness (robustness.json), accuracy under attack or corruption "
        f"{where}, mean ± sample std over seeds."
    )
    return Table("robustness", caption, header, "lr" + "r" * len(cols), rows)


def _accuracy_table(summary: Summary, setting: Setting, groups: list[Group]) -> Table:
    src = summary.source
    robust = set(_robust_keys(summary, groups))
    keys = [
        k
        for k in summary.keys
        if k not in _NOT_ACC and k not in robust and (k.endswith("acc") or "_pts" in k)
    ]
    keys = _present(summary, groups, keys)
    if "acc" not in keys:
        keys.insert(0, "acc")
    cols = [_column(k, summary.groups, summary.currency, summary) for k in keys]
    cuts = any(g.n_cut for g in groups)
    header = ["Policy", "n", *(c.header for c in cols)] + (["Cut epoch (per seed)"] if cuts else [])
    rows = []
    for g in groups:
        row = [g.label, _n(g), *_stat_cells(g, cols)]
        if cuts:
            row.append(per_seed(g.cut_epochs) or EMPTY if g.n_cut else EMPTY)
        rows.append(row)
    base = next((g.baseline for g in groups if g.baseline), None)
    caption = (
        f"{setting.label}. Accuracy: {src.describe()}; mean ± sample std over complete seeds; "
        f"n = complete/all runs; ΔAcc against {base or 'always-k'} of the same seed, and "
        "against matched k = 1 (as many optimizer steps, same seed and cut epoch)."
    )
    if src.warning():
        caption += f" Warning: {src.warning()}."
    return Table("accuracy", caption, header, "lr" + "r" * (len(header) - 2), rows)


def _cost_tables(summary: Summary, setting: Setting, groups: list[Group]) -> list[Table]:
    out = []
    energy = energy_caption(groups)
    methods = {g.energy_method for g in groups if g.energy_method}
    keys = _present(summary, groups, _COST_KEYS)
    if keys:
        cols = [_column(k, summary.groups, summary.currency, summary) for k in keys]
        for c in cols:
            if c.key == "energy_kwh" and len(methods) == 1 and "estimated" in next(iter(methods)):
                c.header = c.header.replace("Energy", f"Energy, {next(iter(methods))}")
        header = ["Policy", "n", *(c.header for c in cols)]
        mixed = len(methods) > 1
        if mixed:
            header.append("Energy method")
        rows = []
        for g in groups:
            row = [g.label, _n(g), *_stat_cells(g, cols)]
            rows.append([*row, g.energy_method or EMPTY] if mixed else row)
        caption = (
            f"{setting.label}: cost per fit, mean ± sample std over seeds. Time: wall time of "
            f"the fit, measured; energy: {energy or 'not recorded'}; FLOPs: training, counted."
        )
        details = sorted(
            {
                re.sub(r", \d+% of the energy", "", d)
                for g in groups
                for r in g.complete
                if (d := energy_detail(r)) is not None
            }
        )
        notes = ["How the energy was obtained: " + " | ".join(details)] if details else []
        out.append(Table("cost", caption, header, "lr" + "r" * (len(header) - 2), rows, notes))
    keys = _present(summary, groups, _SAVING_KEYS)
    if keys:
        cols = [_column(k, summary.groups, summary.currency, summary) for k in keys]
        header = ["Policy", "n", *(c.header for c in cols), "Measured vs compute"]
        rows = [[g.label, _n(g), *_stat_cells(g, cols), check_cell(g)] for g in groups]
        base = next((g.baseline for g in groups if g.baseline), None)
        caption = (
            f"{setting.label}: savings against {base or 'always-k'} (same seed), %. FLOPs: "
            "counted; theoretical: from the epochs at each k; time: measured; energy: "
            f"{energy or 'not recorded'}. Measured vs compute: whether the time and energy "
            f"savings agree with the FLOPs-based one within {summary.saving_tolerance:g} points "
            "or 2 standard errors."
        )
        out.append(Table("savings", caption, header, "lr" + "r" * len(cols) + "l", rows))
    return out


def _matched_table(summary: Summary, setting: Setting, groups: list[Group]) -> Table | None:
    rows = [g.matched for g in groups if g.matched is not None]
    if not rows:
        return None
    acc = summary.source.header
    header = [
        "Policy",
        "n matched",
        "Cut epoch (per seed)",
        f"{acc} (%)",
        "Matched k=1 (%)",
        "Acc − matched (pts)",
        "Acc − always-k (pts)",
        "Beats matched k=1?",
    ]
    out = []
    for m in rows:
        diff = _opt(m["acc_vs_matched_pts"], "+.2f", EMPTY)
        if m["acc_vs_matched_std"] is not None:
            diff += f"{PM}{m['acc_vs_matched_std']:.2f}"
        out.append(
            [
                m["label"],
                f"{m['n_matched']}/{m['n']}",
                m["cut_epochs"] or EMPTY,
                _opt(None if m["acc"] is None else 100 * m["acc"], ".2f", EMPTY),
                _opt(None if m["matched_acc"] is None else 100 * m["matched_acc"], ".2f", EMPTY),
                diff,
                _opt(m["acc_delta_pts"], "+.2f", EMPTY),
                m["verdict"],
            ]
        )
    caption = (
        f"{setting.label}: cut policies against matched k = 1 (k = 1 for as many optimizer steps "
        "as the cut run, same seed and cut epoch, its schedule spread over them), accuracy on "
        f"{summary.source.split_name}; mean ± sample std over seeds of the per-seed difference; "
        "beats it: the difference is positive beyond 2 standard errors."
    )
    return Table("matched", caption, header, "lrrrrrrl", out)


def _tolerance_line(summary: Summary) -> str:
    src, tol = summary.source, summary.tolerance
    if src.size is None:
        return f"the {src.split} split's size is not recorded"
    per = 100.0 / src.size
    images = tol / per
    return (
        f"{src.split} split: {src.size} images, one image = {per:.2f} pts, so the tolerance "
        f"{tol:g} pts = {images:.1f} image(s)"
        + (": the oracle needs no accuracy lost at all" if images < 1 else "")
    )


def _regret_tables(summary: Summary, setting: Setting) -> list[Table]:
    o = summary.oracles.get(setting)
    key = (setting.dataset, setting.model, setting.budget)
    rows = [r for r in summary.regret if (r["dataset"], r["model"], r["budget"]) == key]
    if o is None and not rows:
        return []
    tol = summary.tolerance
    notes = []
    if o is not None:
        if o["oracle"] is not None:
            saving = o.get("oracle_saving_pct")
            line = (
                f"oracle cut **{o['oracle']}** (epoch {o['oracle_cut']:g}, "
                f"{100 * o['oracle_acc']:.2f}%): the earliest fixed cut within {tol:g} pts of "
                f"{o['baseline']} ({100 * o['baseline_acc']:.2f}%)"
                + ("" if saving is None else f"; the oracle saving: {saving:.1f}% of the FLOPs")
            )
        else:
            line = f"no oracle cut ({o['oracle_reason']})"
        if o["best_fixed"] is not None:
            line += f"; best fixed cut {o['best_fixed']} ({100 * o['best_fixed_acc']:.2f}%)"
        notes = [line, _tolerance_line(summary)]
    if not rows:
        return [Table("regret", "", [], "", [], notes)]
    acc = summary.source.header
    split = summary.source.split_name
    regret = Table(
        "regret",
        f"{setting.label}: each detector against the best fixed cut and always-k, accuracy on "
        f"{split} (regret: accuracy points lost; positive: worse).",
        [
            "Detector",
            "n cut",
            "Cut epoch (per seed)",
            f"{acc} (%)",
            "Regret vs best fixed (pts)",
            "Regret vs always-k (pts)",
            "Acc − matched (pts)",
            "Beats matched k=1?",
        ],
        "lrrrrrrl",
        notes=notes,
    )
    oracle = Table(
        "oracle",
        f"{setting.label}: each detector against the oracle cut (the earliest fixed cut within "
        f"{tol:g} pts of always-k on {split}; {_tolerance_line(summary)}): FLOPs saved, the "
        "oracle's saving and the share of it the detector captured.",
        [
            "Detector",
            "Oracle",
            "Cut − oracle (epochs, per seed)",
            "Acc − oracle (pts)",
            "FLOPs saved (%)",
            "Oracle saving (%)",
            "Share of oracle saving (%)",
            "Time vs oracle (%)",
            "Energy vs oracle (%)",
        ],
        "llrrrrrrr",
    )
    for r in rows:
        regret.rows.append(
            [
                r["label"],
                f"{r['n_cut']}/{r['n']}",
                r["cut_epochs"] or EMPTY,
                _opt(None if r["acc"] is None else 100 * r["acc"], ".2f", EMPTY),
                _opt(r["accuracy_regret_pts"], "+.2f", EMPTY),
                _opt(r["accuracy_regret_vs_always_pts"], "+.2f", EMPTY),
                _opt(r["acc_vs_matched_pts"], "+.2f", EMPTY),
                r["beats_matched"] or EMPTY,
            ]
        )
        oracle.rows.append(
            [
                r["label"],
                r["oracle"] or EMPTY,
                r["cut_deltas"] or EMPTY,
                _opt(r["acc_vs_oracle_pts"], "+.2f", EMPTY),
                _opt(r["flops_saving_pct"], ".1f", EMPTY),
                _opt(r["oracle_saving_pct"], ".1f", EMPTY),
                _opt(r["oracle_share_pct"], ".0f", EMPTY),
                _opt(r["time_vs_oracle_pct"], "+.1f", EMPTY),
                _opt(r["energy_vs_oracle_pct"], "+.1f", EMPTY),
            ]
        )
    # without an oracle cut the table would only repeat the savings table's FLOPs column
    return [regret, oracle] if any(r["oracle"] for r in rows) else [regret]


def setting_tables(summary: Summary, setting: Setting) -> list[Table]:
    """The tables of one setting, in order (see the module docstring); tables without rows are
    left out (a ``regret`` table without rows may carry the oracle's notes)."""
    groups = display_groups(summary, setting)
    tables = [_accuracy_table(summary, setting, groups)]
    robust = _robust_table(summary, setting, groups)
    tables += ([robust] if robust is not None else []) + _cost_tables(summary, setting, groups)
    matched = _matched_table(summary, setting, summary.in_setting(setting))
    if matched is not None:
        tables.append(matched)
    return tables + _regret_tables(summary, setting)
