"""Column formatting shared by the Markdown, LaTeX and CSV writers: headers, units, decimals,
``mean ± std`` cells, the cost columns, and :func:`latex_escape`. No matplotlib."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from critical.report.accuracy import split_of
from critical.report.runs import Run, _finite
from critical.report.stats import COST_KEYS, Group, Stat, Summary
from critical.runfiles import TEST_ACCURACY_KEYS

__all__ = ["latex_escape"]

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
    return int(min(4, max(0, significant - 1 - math.floor(math.log10(max_abs)))))


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
    if key == "cost":  # never 7 decimals: thousandths or millionths of the currency
        cur = currency or "cost"
        if m >= 0.1 or m <= 0:
            return cur, 1.0
        return (f"m{cur}", 1e3) if m >= 1e-4 else (f"µ{cur}", 1e6)
    if key == "flops":
        for unit, scale in (("EFLOP", 1e-18), ("PFLOP", 1e-15), ("TFLOP", 1e-12)):
            if m * scale >= 1:
                return unit, scale
        return "GFLOP", 1e-9
    if key == "params":
        return "M", 1e-6
    return "", 1.0


def _top(groups: list[Group], key: str) -> float:
    means = [abs(g.stats[key].mean) for g in groups if key in g.stats]
    means = [m for m in means if _finite(m)]
    return max(means) if means else math.nan


def _acc_split(summary: Summary, key: str) -> str | None:
    """The split of accuracy value ``key`` (``acc``: the report's), from the runs that have it."""
    if key == "acc":
        return summary.source.split
    raw = {"test_acc": None}.get(key, key)
    for r in summary.runs:
        if r.status != "complete":
            continue
        if raw is None:  # test_acc: the first test key the run has
            return "test" if any(r.final(k) is not None for k in TEST_ACCURACY_KEYS) else None
        if r.accuracy(raw) is not None:
            return split_of(r, raw)[0]
    return None


def _column(
    key: str, groups: list[Group], currency: str | None, summary: Summary | None = None
) -> _Column:
    top = _top(groups, key)
    if key.endswith("_acc") or key == "acc":
        if key == "acc" and summary is not None:
            return _Column(key, f"{summary.source.header} (%)", 100.0, 2)
        name = _ACC_NAMES.get(key, key[: -len("_acc")].replace("_", " ").capitalize())
        split = _acc_split(summary, key) if summary is not None else None
        if split and split != "unknown" and key != "test_acc":
            name += f", {split}"
        return _Column(key, f"{name} (%)", 100.0, 2)
    if key in _ENERGY_QUANTITIES or key in ("flops", "params"):
        unit, scale = _unit(key, top, currency)
        name = {
            "time_s": "Time",
            "energy_kwh": "Energy",
            "co2_kg": "CO2",
            "cost": "Cost",
            "flops": "FLOPs",
            "params": "Params",
        }[key]
        return _Column(key, f"{name} ({unit})", scale, _decimals(top * scale))
    if key == "cut_epoch":
        return _Column(key, "Cut epoch", 1.0, 1)
    if key == "theoretical_saving_pct":
        return _Column(key, "Theoretical saving (%)", 1.0, 1, signed=True)
    if key.endswith("_saving_pct"):
        names = {"time": "Time", "energy": "Energy", "co2": "CO2", "flops": "FLOPs"}
        return _Column(key, f"{names[key.split('_')[0]]} saved (%)", 1.0, 1, signed=True)
    if key == "acc_delta_pts":
        return _Column(key, "ΔAcc vs always-k (pts)", 1.0, 2, signed=True)
    if key == "acc_vs_matched_pts":
        return _Column(key, "ΔAcc vs matched k=1 (pts)", 1.0, 2, signed=True)
    return _Column(key, key, 1.0, _decimals(top))


def _columns(summary: Summary, keys: list[str] | None = None) -> list[_Column]:
    """The main table's columns: every value key but the cost ones (:data:`COST_KEYS`)."""
    if keys is None:
        keys = [k for k in summary.keys if k not in COST_KEYS]
    return [_column(k, summary.groups, summary.currency, summary) for k in keys]


#: the cost table: value columns (when present), then the check and the energy method
COST_COLUMNS = (
    "params",
    "flops",
    "flops_saving_pct",
    "theoretical_saving_pct",
    "time_saving_pct",
    "energy_saving_pct",
)


def _cost_columns(summary: Summary) -> list[_Column]:
    return _columns(summary, [k for k in COST_COLUMNS if k in summary.keys])


def has_costs(summary: Summary, groups: list[Group]) -> bool:
    """Whether the cost table of ``groups`` has anything to show."""
    keys = [k for k in COST_COLUMNS if k in summary.keys]
    return any(g.stats.get(k) is not None and g.stats[k].n for g in groups for k in keys) or any(
        g.energy_method is not None for g in groups
    )


def check_cell(g: Group) -> str:
    """The measured-vs-compute cell: ``ok``, what disagrees, or ``–``."""
    c = g.check
    if c is None:
        return "–"
    parts = [c["flag"]] if c["flag"] else []
    if c.get("runs_disagree"):
        parts.append(f"{c['runs_disagree']} run(s) flag it")
    checked = [q for q in ("time", "energy") if q in c]
    if not parts:
        return f"ok ({'+'.join(checked)} vs {c['basis']})" if checked else "–"
    return "; ".join(parts)


def _fmt_num(v: float, decimals: int, signed: bool = False) -> str:
    s = f"{v:+.{decimals}f}" if signed else f"{v:.{decimals}f}"
    return s.lstrip("+-") if float(s) == 0 else s


def _cell(stat: Stat | None, col: _Column, pm: str, empty: str) -> str:
    if stat is None or not _finite(stat.mean):
        return empty
    s = _fmt_num(stat.mean * col.scale, col.decimals, col.signed)
    if _finite(stat.std) and not (col.key == "params" and stat.std == 0):
        s += f"{pm}{_fmt_num(stat.std * col.scale, col.decimals)}"
    return s


def _opt(v: Any, fmt: str, empty: str = "–") -> str:
    return format(v, fmt) if _finite(v) else empty


def _run_line(r: Run) -> str:
    who = f"{r.model}/{r.label}" + (f", seed {r.seed}" if r.seed is not None else "")
    return f"`{r.name}` ({who}): **{r.status}** — " + ("; ".join(r.problems) or "?")


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
