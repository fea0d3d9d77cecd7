"""The Markdown report (:func:`to_markdown`): per setting, the tables of
:func:`critical.report.layout.setting_tables` (accuracy, cost, savings, matched k = 1, regret,
oracle), each after its caption; then the runs that are not complete and the notes. No
matplotlib."""

from __future__ import annotations

from critical.report._format import _run_line
from critical.report.layout import Table, setting_tables
from critical.report.stats import Summary

__all__ = ["table_lines", "to_markdown"]


def _row(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def table_lines(table: Table) -> list[str]:
    """A table as Markdown: its caption, the table, its notes (as a list)."""
    lines: list[str] = []
    if table.rows:
        rule = "|" + "|".join(":--" if a == "l" else "--:" for a in table.align) + "|"
        lines += [table.caption, "", _row(table.header), rule, *map(_row, table.rows)]
    if table.notes:
        lines += ([""] if lines else []) + [f"- {n}" for n in table.notes]
    return lines


def to_markdown(summary: Summary) -> str:
    """The Markdown report: per setting (data set, model, budget) its tables (mean ± std over
    complete seeds); then the runs that are not complete and the notes."""
    lines = ["# Summary", ""]
    if not summary.groups:
        lines += ["No runs.", ""]
    else:
        src = summary.source
        lines += [
            f"Accuracy: {src.describe()}, in every table, plot and CSV (`acc_*`; "
            f"`accuracy_split` = {src.split}). Mean ± sample std over complete seeds; `n` = "
            "complete/all runs of the group; savings and ΔAcc against the always-k group of "
            "the same setting (same seed where it exists); ΔAcc vs matched k=1 against the "
            "k = 1 run with as many optimizer steps (same seed and cut epoch). Runs are "
            "compared only within a setting (data set, model, budget).",
            "",
        ]
        if src.warning():
            lines += [f"**Warning:** {src.warning()}.", ""]
    for setting in summary.settings:
        lines += [f"## {setting.label}", ""]
        for table in setting_tables(summary, setting):
            lines += [*table_lines(table), ""]
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
