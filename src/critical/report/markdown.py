"""The Markdown report (:func:`to_markdown`): per setting, the summary table, the cost table,
the cut policies against matched k = 1 and the detector against the fixed cuts; then the runs
that are not complete and the notes. No matplotlib."""

from __future__ import annotations

from critical.report._format import (
    _cell,
    _columns,
    _cost_columns,
    _opt,
    _run_line,
    check_cell,
    has_costs,
)
from critical.report.costs import energy_detail
from critical.report.runs import Setting
from critical.report.stats import Group, Summary

__all__ = ["to_markdown"]


def _row(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def _main_table(summary: Summary, groups: list[Group]) -> list[str]:
    cols = _columns(summary)
    lines = [
        _row(["Model", "Policy", "n", *(c.header for c in cols)]),
        "|" + "|".join([":--", ":--", "--:"] + ["--:"] * len(cols)) + "|",
    ]
    for g in groups:
        cells = [g.model, g.label, f"{len(g.complete)}/{len(g.runs)}"]
        cells += [_cell(g.stats.get(c.key), c, " ± ", "–") for c in cols]
        lines.append(_row(cells))
    return lines


def _cost_table(summary: Summary, groups: list[Group]) -> list[str]:
    cols = _cost_columns(summary)
    base = next((g.baseline for g in groups if g.baseline), None)
    lines = [
        f"Compute and cost (savings against {base or 'always-k'}; FLOPs: training, counted; "
        "theoretical: from the epochs at each k; time and energy: measured):",
        "",
        _row(["Policy", "n", *(c.header for c in cols), "Measured vs compute", "Energy"]),
        "|" + "|".join([":--", "--:"] + ["--:"] * len(cols) + [":--", ":--"]) + "|",
    ]
    for g in groups:
        cells = [g.label, f"{len(g.complete)}/{len(g.runs)}"]
        cells += [_cell(g.stats.get(c.key), c, " ± ", "–") for c in cols]
        cells += [check_cell(g), g.energy_method or "–"]
        lines.append(_row(cells))
    details = sorted({d for g in groups for r in g.complete if (d := energy_detail(r)) is not None})
    if details:
        lines += ["", "Energy measured by: " + " | ".join(details)]
    return lines


def _matched_table(groups: list[Group]) -> list[str]:
    rows = [g.matched for g in groups if g.matched is not None]
    if not rows:
        return []
    lines = [
        "Cut policies against matched k = 1 (k = 1 for as many optimizer steps as the cut run, "
        "same seed and cut epoch, its schedule spread over them; beats it: the difference is "
        "positive beyond 2 standard errors over seeds):",
        "",
        _row(
            [
                "Policy",
                "n matched",
                "Cut epoch (per seed)",
                "Acc (%)",
                "Matched k=1 acc (%)",
                "Acc − matched (pts)",
                "Acc − always-k (pts)",
                "Beats matched k=1?",
            ]
        ),
        "|:--|--:|--:|--:|--:|--:|--:|:--|",
    ]
    for m in rows:
        diff = _opt(m["acc_vs_matched_pts"], "+.2f")
        if m["acc_vs_matched_std"] is not None:
            diff += f" ± {m['acc_vs_matched_std']:.2f}"
        cells = [
            m["label"],
            f"{m['n_matched']}/{m['n']}",
            m["cut_epochs"] or "–",
            _opt(None if m["acc"] is None else 100 * m["acc"], ".2f"),
            _opt(None if m["matched_acc"] is None else 100 * m["matched_acc"], ".2f"),
            diff,
            _opt(m["acc_delta_pts"], "+.2f"),
            m["verdict"],
        ]
        lines.append(_row(cells))
    return lines


def _regret_section(summary: Summary, setting: Setting) -> list[str]:
    o = summary.oracles.get(setting)
    rows = [r for r in summary.regret if (r["dataset"], r["model"], r["budget"]) == _key(setting)]
    if o is None and not rows:
        return []
    tol = summary.tolerance
    lines = [f"Detector vs fixed cuts (tolerance {tol:g} pts):", ""]
    if o is not None:
        if o["oracle"] is not None:
            saving = o.get("oracle_saving_pct")
            line = (
                f"- oracle cut **{o['oracle']}** (epoch {o['oracle_cut']:g}, "
                f"{100 * o['oracle_acc']:.2f}%): the earliest fixed cut within {tol:g} pts of "
                f"{o['baseline']} ({100 * o['baseline_acc']:.2f}%)"
                + ("" if saving is None else f"; the oracle saving: {saving:.1f}% of the FLOPs")
            )
        else:
            line = f"- no oracle cut ({o['oracle_reason']})"
        if o["best_fixed"] is not None:
            line += f"; best fixed cut {o['best_fixed']} ({100 * o['best_fixed_acc']:.2f}%)"
        lines.append(line)
    if rows:
        lines += [
            "",
            _row(
                [
                    "Model",
                    "Detector",
                    "n cut",
                    "Cut epoch (per seed)",
                    "Acc (%)",
                    "Regret vs best fixed (pts)",
                    "Regret vs always-k (pts)",
                    "FLOPs saved (%)",
                    "Share of oracle saving (%)",
                    "Oracle",
                    "Cut − oracle (epochs, per seed)",
                    "Acc − oracle (pts)",
                    "Time vs oracle (%)",
                    "Energy vs oracle (%)",
                ]
            ),
            "|:--|:--|--:|--:|--:|--:|--:|--:|--:|:--|--:|--:|--:|--:|",
        ]
        for r in rows:
            cells = [
                r["model"],
                r["label"],
                f"{r['n_cut']}/{r['n']}",
                r["cut_epochs"] or "–",
                _opt(None if r["acc"] is None else 100 * r["acc"], ".2f"),
                _opt(r["accuracy_regret_pts"], "+.2f"),
                _opt(r["accuracy_regret_vs_always_pts"], "+.2f"),
                _opt(r["flops_saving_pct"], ".1f"),
                _opt(r["oracle_share_pct"], ".0f"),
                r["oracle"] or "–",
                r["cut_deltas"] or "–",
                _opt(r["acc_vs_oracle_pts"], "+.2f"),
                _opt(r["time_vs_oracle_pct"], "+.1f"),
                _opt(r["energy_vs_oracle_pct"], "+.1f"),
            ]
            lines.append(_row(cells))
    return lines


def _key(setting: Setting) -> tuple:
    return (setting.dataset, setting.model, setting.budget)


def to_markdown(summary: Summary) -> str:
    """The Markdown report: per setting (data set, model, budget) the summary table (mean ± std
    over complete seeds), the cost table, the cut policies against matched k = 1 and the
    detector-vs-fixed-cut comparison; then the runs that are not complete and the notes."""
    lines = ["# Summary", ""]
    if not summary.groups:
        lines += ["No runs.", ""]
    else:
        lines += [
            f"Mean ± sample std over complete seeds; `n` = complete/all runs of the group; "
            f"accuracy = last `{summary.accuracy_key}`; savings and ΔAcc against the always-k "
            "group of the same setting (same seed where it exists); ΔAcc vs matched k=1 against "
            "the k = 1 run with as many optimizer steps (same seed and cut epoch). Runs are "
            "compared only within a setting (data set, model, budget).",
            "",
        ]
    for setting in summary.settings:
        groups = summary.in_setting(setting)
        lines += [f"## {setting.label}", "", *_main_table(summary, groups), ""]
        if has_costs(summary, groups):
            lines += [*_cost_table(summary, groups), ""]
        matched = _matched_table(groups)
        if matched:
            lines += [*matched, ""]
        regret = _regret_section(summary, setting)
        if regret:
            lines += [*regret, ""]
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
