"""``critical report RUNS_DIR``: :func:`write_report` (every table and plot into one
directory) and :func:`main` (argument parsing, messages, exit status).
"""

from __future__ import annotations

import argparse
import math
import sys
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from critical.io import PathLike, atomic_write_text
from critical.report.analysis import summarize
from critical.report.comparison_plots import PARETO_X, plot_accuracy_vs_cut, plot_pareto
from critical.report.plots import NoDataError, plot_curves
from critical.report.runs import STATUSES, load_runs
from critical.report.stats import Summary
from critical.report.tables import to_latex, to_markdown, write_csv

__all__ = ["ReportFiles", "main", "write_report"]


@dataclass
class ReportFiles:
    """What :func:`write_report` wrote (``files``) and the plots it skipped, and why."""

    files: list[Path]
    messages: list[str]


def write_report(
    summary: Summary, out_dir: PathLike, *, plots: bool = True, pareto_x: str = "energy"
) -> ReportFiles:
    """Write ``summary.md``, ``summary.csv``, ``regret.csv``, ``matched.csv``, ``runs.csv``,
    ``summary.tex`` and (with ``plots``) the three plots into ``out_dir`` (created). A plot whose data are absent is
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
                if fn is plot_pareto:
                    files += plot_pareto(summary, out_dir, messages, x=pareto_x)
                else:
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
        raise argparse.ArgumentTypeError(f"must be >= 0 (points), got {s}")
    return v


def main(argv: Sequence[str] | None = None) -> int:
    """``critical report RUNS_DIR [--out DIR] [--tolerance 0.5] [--saving-tolerance 5]
    [--accuracy-key KEY] [--pareto-x energy|time|flops] [--no-plots]``.

    Prints the Markdown summary and where the files went. Returns 0 (also when some runs are
    incomplete, failed or missing: they are listed), 2 when ``RUNS_DIR`` is not a directory or
    holds no run directory at all.
    """
    from critical.cli_errors import ArgumentParser

    parser = ArgumentParser(
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
        "--saving-tolerance",
        type=_tolerance,
        default=5.0,
        help="percentage points a measured time or energy saving may differ from the FLOPs-based "
        "one (beyond 2 standard errors over seeds) before it is flagged (default 5)",
    )
    parser.add_argument(
        "--accuracy-key",
        default=None,
        help="the accuracy compared: a metrics column, a metric of evaluations.json "
        "(trainer.test / trainer.validate after the fit, e.g. test_acc) or a *_acc of "
        "robustness.json (e.g. clean_acc) (default: the test split's when every run recorded "
        "one -- test/acc, test_acc, ..., robustness.json's clean_acc on the test split --, else "
        "the first of val/acc, val_acc, ... that the runs logged, with a warning when a "
        "detector read that split)",
    )
    parser.add_argument(
        "--pareto-x",
        choices=list(PARETO_X),
        default="energy",
        help="the Pareto plot's x axis: energy (default; wall time when none was recorded), "
        "wall time, or training FLOPs (counted: the same on any machine)",
    )
    parser.add_argument("--no-plots", action="store_true", help="write the tables only")
    args = parser.parse_args(None if argv is None else list(argv))
    root = Path(args.runs_dir)
    if not root.is_dir():
        print(f"critical report: error: {root} is not a directory", file=sys.stderr)
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
    summary = summarize(
        runs,
        tolerance=args.tolerance,
        accuracy_key=args.accuracy_key,
        saving_tolerance=args.saving_tolerance,
    )
    out = Path(args.out) if args.out is not None else root / "report"
    report = write_report(summary, out, plots=not args.no_plots, pareto_x=args.pareto_x)
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
