"""Plots (PNG + PDF each) from a :class:`~critical.report.stats.Summary`: :func:`plot_curves`,
:func:`plot_pareto`, :func:`plot_accuracy_vs_cut`, one panel (or file) per setting, never
mixing settings; and :func:`pareto_front`. The helpers shared with
:mod:`critical.report.run_plot` (one run directory) are here too.

matplotlib is imported lazily, here and in :mod:`~critical.report.run_plot` only
(object-oriented API, no pyplot, no display). A plot whose data are absent raises
:class:`NoDataError`. Accuracies are drawn in %.
"""

from __future__ import annotations

import io
import math
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, cast

import numpy as np

from critical.io import PathLike, atomic_write_bytes
from critical.report._format import _unit
from critical.report.runs import _POLICY_RANK, POLICIES, Run, Setting, _finite
from critical.report.stats import Group, Summary

__all__ = [
    "NoDataError",
    "pareto_front",
    "plot_accuracy_vs_cut",
    "plot_curves",
    "plot_pareto",
]

#: ``critical/`` columns that are control signals, not training-dynamics metrics
_CONTROL_COLUMNS = (
    "critical/critical_period_over",
    "critical/critical_period_epoch",
    "critical/multiplicity",
    "critical/diverged",
    "critical/lr_rose",
    "critical/lr_jump",
    "critical/pace",
)
#: the detector's per-epoch verdicts (plotted as marks, not as curves)
_CONTROL_PREFIXES = ("critical/guard/", "critical/change/")


class NoDataError(ValueError):
    """Raised by a plot function when the data it needs are absent (the plot is skipped)."""


def _slug(s: str) -> str:
    """A file-name-safe form of a model name (``"runs"`` for untagged runs)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", s).strip("_-") or "runs"


def _figure(nrows: int = 1, ncols: int = 1, width: float = 6.4, height: float = 4.0):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width * ncols, height * nrows), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False)
    return fig, [ax for row in axes for ax in row]


def _integer_ticks(axis: Any) -> None:
    from matplotlib.ticker import MaxNLocator

    axis.set_major_locator(MaxNLocator(integer=True))


def _save(fig: Any, base: Path) -> list[Path]:
    """``base.png`` and ``base.pdf``, each written atomically."""
    base.parent.mkdir(parents=True, exist_ok=True)
    paths = []
    for ext in ("png", "pdf"):
        buf = io.BytesIO()
        kw = {"dpi": 150} if ext == "png" else {"metadata": {"CreationDate": None}}
        fig.savefig(buf, format=ext, **kw)
        path = base.with_name(base.name + "." + ext)
        atomic_write_bytes(path, buf.getvalue(), fsync=False)
        paths.append(path)
    return paths


def _figure_legend(fig: Any, axes: list[Any]) -> None:
    """One legend for the whole figure, below the panels (outside every panel's data, tick
    labels and axis labels), each label once."""
    entries: dict[str, Any] = {}
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            entries.setdefault(label, handle)
    if entries:
        fig.legend(
            list(entries.values()),
            list(entries),
            loc="outside lower center",
            ncol=min(len(entries), 5),
            fontsize=8,
        )


def _metric_columns(columns: Iterable[str]) -> list[str]:
    """Whole-model training-dynamics columns: ``critical/...`` minus control signals and
    per-layer columns (a column ``X/<layer>`` whose ``X`` is itself a candidate, or one of the
    known metrics)."""
    known = (
        "critical/gradient_confusion/mean",
        "critical/gradient_confusion/min",
        "critical/gradient_predictability",
        "critical/layer_rotation",
    )
    cand = [
        c
        for c in columns
        if c.startswith("critical/")
        and c not in _CONTROL_COLUMNS
        and not c.startswith(_CONTROL_PREFIXES)
    ]
    roots = set(cand) | set(known)
    out = [c for c in cand if not any(c.startswith(r + "/") for r in roots if r != c)]
    return sorted(out, key=lambda c: (known.index(c) if c in known else len(known), c))


def _mean_curve(runs: Sequence[Run], key: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Epochs, mean and std (0 for one run) over ``runs`` of column ``key``, epoch-aligned."""
    by_epoch: dict[float, list[float]] = {}
    for r in runs:
        e, v = r.column(key)
        for ei, vi in zip(e, v):
            by_epoch.setdefault(float(ei), []).append(float(vi))
    es = np.asarray(sorted(by_epoch), dtype=float)
    mean = np.asarray([np.mean(by_epoch[e]) for e in es], dtype=float)
    std = np.asarray(
        [np.std(by_epoch[e], ddof=1) if len(by_epoch[e]) > 1 else 0.0 for e in es], dtype=float
    )
    return es, mean, std


def _short(key: str) -> str:
    return key.removeprefix("critical/")


def _is_accuracy(key: str) -> bool:
    return key.endswith(("/acc", "_acc")) or key == "acc"


def _scale(key: str) -> float:
    """100 for accuracies (drawn in %), else 1."""
    return 100.0 if _is_accuracy(key) else 1.0


def _runs_for_curves(groups: list[Group]) -> tuple[Group | None, list[Run]]:
    cands = [g for g in groups if g.policy == "always"] + [
        g for g in groups if g.policy != "always"
    ]
    for g in cands:  # a group with complete runs first: a crashed run is no one's curve
        if any(r.rows for r in g.complete):
            return g, g.complete
    for g in cands:
        runs = [r for r in g.runs if r.rows]
        if runs:
            return g, runs
    return None, []


def _file_names(settings: list[Setting]) -> dict[Setting, str]:
    """``<model>`` when a model has one setting, else ``<model>_<data set>_E<budget>``."""
    count: dict[str, int] = {}
    for s in settings:
        count[s.model] = count.get(s.model, 0) + 1
    out = {}
    for s in settings:
        name = s.model if count[s.model] == 1 else f"{s.model}_{s.dataset}_E{s.budget}"
        out[s] = _slug(name)
    return out


def _title(setting: Setting) -> str:
    return setting.label if setting.model != "-" or setting.dataset != "-" else "runs"


def plot_curves(
    summary: Summary, out_dir: PathLike, messages: list[str] | None = None
) -> list[Path]:
    """Per setting, ``curves_<model>.{png,pdf}`` (``curves_<model>_<data>_E<budget>`` when a
    model has several settings): each training-dynamics metric and the validation accuracy (%)
    against epoch, mean ± std over the complete seeds of the always-k group (else of the
    setting's first group with rows), with the cut epochs as vertical lines at the epoch
    boundary (``cut_epoch - 0.5``): those of the plotted runs themselves (when they cut), of
    every complete detector run (one colour per detector group), and the fixed cuts (light,
    dotted).

    Raises:
        NoDataError: no setting has metric rows.
    """
    out_dir = Path(out_dir)
    paths: list[Path] = []
    names = _file_names(summary.settings)
    for setting in summary.settings:
        groups = summary.in_setting(setting)
        group, runs = _runs_for_curves(groups)
        if group is None:
            if messages is not None:
                messages.append(f"curves: {setting.label}: no metric rows; skipped")
            continue
        cols: dict[str, None] = {}
        for r in runs:
            cols.update(dict.fromkeys(_metric_columns(r.columns())))
        keys = [*cols, summary.accuracy_key]
        n = len(keys)
        ncols = 2 if n > 1 else 1
        fig, axes = _figure(math.ceil(n / ncols), ncols, width=5.0, height=3.2)
        detectors = [g for g in groups if g.policy == "detector" and g is not group]
        fixed_cuts = sorted(
            {g.cut_at for g in groups if g.policy == "fixed" and g.cut_at is not None}
        )
        own_cuts = sorted({r.cut_epoch for r in runs if r.cut_epoch is not None})
        colors = [f"C{i + 1}" for i in range(len(detectors))]
        for ax, key in zip(axes, keys):
            e, m, s = _mean_curve(runs, key)
            m, s = m * _scale(key), s * _scale(key)
            if e.size:
                ax.plot(e, m, color="C0", marker=".", label=f"{group.label} (n={len(runs)})")
                if len(runs) > 1:
                    ax.fill_between(e, m - s, m + s, color="C0", alpha=0.2, linewidth=0)
            if key == summary.accuracy_key:
                for g, c in zip(detectors, colors):
                    de, dm, _ = _mean_curve(g.complete, key)
                    if de.size:
                        ax.plot(de, dm * _scale(key), color=c, linewidth=1, label=g.label)
                if _is_accuracy(key):
                    ax.set_ylabel("%")
            for i, at in enumerate(fixed_cuts):
                label = "fixed cuts" if i == 0 else None
                ax.axvline(at - 0.5, color="0.6", linestyle=":", alpha=0.6, label=label)
            for j, cut in enumerate(own_cuts):
                label = f"cut: {group.label}" if j == 0 else None
                ax.axvline(cut - 0.5, color="C0", linestyle="--", alpha=0.8, label=label)
            for g, c in zip(detectors, colors):
                cuts = [r.cut_epoch for r in g.complete if r.cut_epoch is not None]
                for j, cut in enumerate(cuts):
                    label = f"cut: {g.label}" if j == 0 else None
                    ax.axvline(cut - 0.5, color=c, linestyle="--", alpha=0.8, label=label)
            title = _short(key) + (" (%)" if _is_accuracy(key) else "")
            ax.set_title(title, fontsize=10)
            ax.set_xlabel("epoch")
            _integer_ticks(ax.xaxis)
            ax.grid(alpha=0.3)
        for ax in axes[n:]:
            ax.set_visible(False)
        _figure_legend(fig, axes[:n])
        fig.suptitle(f"{_title(setting)}: training dynamics ({group.label}, mean ± std over seeds)")
        paths += _save(fig, out_dir / f"curves_{names[setting]}")
    if not paths:
        raise NoDataError("curves: no run has metric rows; no metric-curve plot")
    return paths


def pareto_front(x: Sequence[float], y: Sequence[float]) -> list[int]:
    """Indices of the points not dominated when lower ``x`` and higher ``y`` are better (a point
    is dominated by one with ``x' <= x`` and ``y' >= y``, one strictly), sorted by ``x``.

    Example:
        >>> pareto_front([1.0, 2.0, 3.0, 2.5], [0.5, 0.8, 0.9, 0.7])
        [0, 1, 2]
    """
    pts = sorted(range(len(x)), key=lambda i: (x[i], -y[i]))
    front, best = [], -math.inf
    for i in pts:
        if y[i] > best:
            front.append(i)
            best = y[i]
    return front


def plot_pareto(
    summary: Summary, out_dir: PathLike, messages: list[str] | None = None
) -> list[Path]:
    """``pareto.{png,pdf}``: mean accuracy against mean energy per group (error bars: std over
    seeds), one panel per setting (groups of different settings are never on one front),
    points labelled, the Pareto front (lower energy, higher accuracy) drawn as a step line.
    Without energy measurements the x axis is wall time.

    Raises:
        NoDataError: no group has both an accuracy and an energy (or time).
    """
    xkey = "energy_kwh"
    if not any(_finite(g.mean("acc")) and _finite(g.mean(xkey)) for g in summary.groups):
        xkey = "time_s"
        if messages is not None and summary.groups:
            messages.append("pareto: no energy measured; the x axis is wall time")
    panels = []
    for setting in summary.settings:
        gs = [
            g
            for g in summary.in_setting(setting)
            if _finite(g.mean("acc")) and _finite(g.mean(xkey))
        ]
        if gs:
            panels.append((setting, gs))
    if not panels:
        raise NoDataError("pareto: no group has both an accuracy and an energy/time; skipped")
    fig, axes = _figure(1, len(panels), width=6.0, height=4.5)
    for ax, (setting, gs) in zip(axes, panels):
        top = max(abs(g.mean(xkey)) for g in gs)
        unit, scale = _unit(xkey, top, summary.currency)
        xs = [g.mean(xkey) * scale for g in gs]
        ys = [100 * g.mean("acc") for g in gs]
        xerr = [_zero(g.stats[xkey].std) * scale for g in gs]
        yerr = [100 * _zero(g.stats["acc"].std) for g in gs]
        for i, g in enumerate(gs):
            ax.errorbar(
                xs[i],
                ys[i],
                xerr=xerr[i],
                yerr=yerr[i],
                fmt="o",
                capsize=3,
                color=f"C{_POLICY_RANK.get(g.policy or '', len(POLICIES))}",
            )
            ax.annotate(
                g.label, (xs[i], ys[i]), textcoords="offset points", xytext=(4, 4), fontsize=7
            )
        front = pareto_front(xs, ys)
        fx = [xs[i] for i in front]
        fy = [ys[i] for i in front]
        ax.step(fx, fy, where="post", color="k", alpha=0.5, linewidth=1, label="Pareto front")
        ax.set_xlabel(f"{'energy' if xkey == 'energy_kwh' else 'wall time'} ({unit})")
        ax.set_ylabel(f"accuracy (%) [{summary.accuracy_key}]")
        ax.set_title(_title(setting), fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    return _save(fig, Path(out_dir) / "pareto")


def _zero(v: float) -> float:
    return v if _finite(v) else 0.0


def plot_accuracy_vs_cut(
    summary: Summary, out_dir: PathLike, messages: list[str] | None = None
) -> list[Path]:
    """``accuracy_vs_cut.{png,pdf}``, one panel per setting with fixed cuts or detector groups:
    the fixed cuts' mean accuracy against their cut epoch as a line with a ± std band, the
    matched k = 1 runs against the cut epoch they match (dashed), always-k and k1 as horizontal
    lines (the tolerance below always-k dotted), detector groups as points at their mean cut
    epoch (error bars: std of cut epoch and accuracy), the oracle cut starred.

    Raises:
        NoDataError: no setting has fixed cuts or detector groups with an accuracy.
    """
    panels = []
    for setting in summary.settings:
        gs = [g for g in summary.in_setting(setting) if _finite(g.mean("acc"))]
        fixed = _by_cut(gs, "fixed")
        matched = _by_cut(gs, "matched")
        det = [g for g in gs if g.policy == "detector" and _finite(g.mean("cut_epoch"))]
        if messages is not None:
            for g in gs:
                if g.policy == "detector" and g not in det:
                    messages.append(
                        f"accuracy_vs_cut: {setting.label} / {g.label} never cut; not drawn"
                    )
        if fixed or det:
            panels.append((setting, gs, fixed, matched, det))
        elif messages is not None and gs:
            messages.append(
                f"accuracy_vs_cut: {setting.label}: no fixed cuts or detector cuts; skipped"
            )
    if not panels:
        raise NoDataError("accuracy_vs_cut: no fixed cuts or detector cuts; skipped")
    fig, axes = _figure(1, len(panels), width=6.0, height=4.5)
    for ax, (setting, gs, fixed, matched, det) in zip(axes, panels):
        for line, color, style, label in (
            (fixed, "C3", "o-", "fixed cut"),
            (matched, "C2", "s--", "matched k=1"),
        ):
            if line:
                x = np.asarray([g.cut_at for g in line], dtype=float)
                m = np.asarray([100 * g.mean("acc") for g in line])
                s = np.asarray([100 * _zero(g.stats["acc"].std) for g in line])
                ax.plot(x, m, style, color=color, label=label)
                ax.fill_between(x, m - s, m + s, color=color, alpha=0.15, linewidth=0)
        for g in gs:
            if g.policy not in ("always", "k1"):
                continue
            level = 100 * g.mean("acc")
            spread = 100 * _zero(g.stats["acc"].std)
            c = "C0" if g.policy == "always" else "C1"
            ax.axhline(
                level, color=c, linestyle="-" if g.policy == "always" else "--", label=g.label
            )
            if spread > 0:
                ax.axhspan(level - spread, level + spread, color=c, alpha=0.1, linewidth=0)
        o = summary.oracles.get(setting) or {}
        if o.get("baseline_acc") is not None:
            ax.axhline(
                100 * o["baseline_acc"] - summary.tolerance,
                color="C0",
                linestyle=":",
                alpha=0.6,
                label=f"{o['baseline']} − {summary.tolerance:g} pts",
            )
        if o.get("oracle") is not None:
            ax.plot(
                [o["oracle_cut"]],
                [100 * o["oracle_acc"]],
                "*",
                color="k",
                markersize=12,
                label=f"oracle cut ({o['oracle']})",
                zorder=5,
            )
        for i, g in enumerate(det):
            cx, cy = g.mean("cut_epoch"), 100 * g.mean("acc")
            ax.errorbar(
                cx,
                cy,
                xerr=_zero(g.stats["cut_epoch"].std),
                yerr=100 * _zero(g.stats["acc"].std),
                fmt="D",
                capsize=3,
                color=f"C{4 + i}",
                label=g.label,
            )
        ax.set_xlabel("cut epoch (first epoch at k = 1)")
        _integer_ticks(ax.xaxis)
        ax.set_ylabel(f"accuracy (%) [{summary.accuracy_key}]")
        ax.set_title(_title(setting), fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    return _save(fig, Path(out_dir) / "accuracy_vs_cut")


def _by_cut(groups: list[Group], policy: str) -> list[Group]:
    found = [g for g in groups if g.policy == policy and g.cut_at is not None]
    return sorted(found, key=lambda g: cast(float, g.cut_at))  # not None: filtered just above
