"""Table writers: :func:`write_csv` here; :func:`to_markdown` (:mod:`critical.report.markdown`)
and :func:`to_latex`, :func:`latex_escape` (:mod:`critical.report.latex`) re-exported, with the
column formatting they share in :mod:`critical.report._format`.

Formats a :class:`~critical.report.stats.Summary`; no matplotlib.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from critical.io import PathLike, atomic_write_csv
from critical.report import costs
from critical.report._format import check_cell
from critical.report.latex import latex_escape, to_latex
from critical.report.markdown import to_markdown
from critical.report.stats import Stat, Summary

__all__ = ["latex_escape", "to_latex", "to_markdown", "write_csv"]


def write_csv(summary: Summary, out_dir: PathLike) -> list[Path]:
    """Write ``summary.csv`` (one row per group: ``<key>_mean``, ``<key>_std``, ``<key>_n`` per
    value, base units), ``regret.csv``, ``matched.csv`` (the cut policies against matched
    k = 1) and ``runs.csv`` (one row per run, every status) into ``out_dir``; returns their
    paths. Every row names the accuracy its ``acc*`` columns hold: ``accuracy_key`` and
    ``accuracy_split`` (``test``, ``validation``, ...)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    fields = ["model", "label", "policy", "k", "cut_at", "baseline", "n_complete", "n_runs"]
    fields += ["seeds", "n_cut", "dataset", "budget", "energy_method", "saving_check"]
    fields += ["beats_matched", "accuracy_key", "accuracy_split"]
    src = summary.source
    split = {"accuracy_key": src.key, "accuracy_split": src.split}
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
            "dataset": g.dataset,
            "budget": g.budget,
            "energy_method": g.energy_method,
            "saving_check": None if g.check is None else check_cell(g),
            "beats_matched": None if g.matched is None else g.matched["verdict"],
            **split,
        }
        for key in summary.keys:
            s = g.stats.get(key, Stat(math.nan, math.nan, 0))
            row.update({f"{key}_mean": s.mean, f"{key}_std": s.std, f"{key}_n": s.n})
        rows.append(row)
    names = ("summary.csv", "regret.csv", "matched.csv", "runs.csv")
    paths = [out_dir / n for n in names]
    atomic_write_csv(paths[0], rows, fieldnames=fields)
    regret = [{**r, **split} for r in summary.regret]
    regret_fields = list(regret[0]) if regret else ["model", "label", *split]
    atomic_write_csv(paths[1], regret, fieldnames=regret_fields)
    matched = [{**m, **split} for m in summary.matched]
    matched_fields = list(matched[0]) if matched else ["model", "label", *split]
    atomic_write_csv(paths[2], matched, fieldnames=matched_fields)
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
                "dataset": r.dataset,
                "budget": r.budget,
                "alias_of": r.alias_of,
                "energy_method": costs.energy_method(r),
                **split,
                **{k: values.get(r.name, {}).get(k) for k in summary.keys},
            }
        )
    fields_runs = ["name", "model", "label", "policy", "seed", "status", "problems", "epochs"]
    fields_runs += ["dataset", "budget", "alias_of", "energy_method", *split]
    atomic_write_csv(paths[3], run_rows, fieldnames=fields_runs + summary.keys)
    return paths
