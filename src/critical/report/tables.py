"""Table writers: Markdown (:func:`to_markdown`), LaTeX (:func:`to_latex`,
:func:`latex_escape`) and CSV (:func:`write_csv`), with the column formatting they share
(headers, units, decimals, ``mean ± std`` cells).

Formats a :class:`~critical.report.stats.Summary`; no matplotlib.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from critical.io import PathLike, atomic_write_csv
from critical.report.runs import Run, _finite
from critical.report.stats import Stat, Summary

__all__ = ["latex_escape", "to_latex", "to_markdown", "write_csv"]

_ENERGY_QUANTITIES = ("time_s", "energy_kwh", "co2_kg", "cost")


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
