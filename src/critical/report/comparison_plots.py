"""The comparison plots (PNG + PDF each): :func:`plot_pareto` (accuracy against energy, time or
FLOPs, one panel and one front per setting) and :func:`plot_accuracy_vs_cut`; and
:func:`pareto_front`. The accuracy is the report's (its split in the axis label). matplotlib is
imported lazily (object-oriented API, no pyplot)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import cast

import numpy as np

from critical.io import PathLike
from critical.report._format import _unit
from critical.report.layout import display_groups, energy_caption
from critical.report.plots import NoDataError, _figure, _integer_ticks, _save, _title
from critical.report.runs import _finite
from critical.report.stats import Group, Summary, per_seed

__all__ = ["PARETO_X", "pareto_front", "plot_accuracy_vs_cut", "plot_pareto"]

#: the Pareto plot's x axes: name -> (value key, axis name)
PARETO_X = {"energy": ("energy_kwh", "energy"), "time": ("time_s", "wall time"),
            "flops": ("flops", "training FLOPs")}  # fmt: skip
_MARKERS = "osD^v<>pPXh*"


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


def _acc_label(summary: Summary) -> str:
    src = summary.source
    return f"{src.header.lower()} (%) [{src.key}, {src.split} split]"


def plot_pareto(
    summary: Summary, out_dir: PathLike, messages: list[str] | None = None, x: str = "energy"
) -> list[Path]:
    """``pareto.{png,pdf}``: mean accuracy against mean energy (``x="time"``: wall time,
    ``"flops"``: training FLOPs) per policy (one point per table row: matched k = 1 pooled per
    detector), error bars the std over seeds, one panel per setting (groups of different
    settings are never on one front), the Pareto front (lower x, higher accuracy) as a step
    line. Points are told apart by marker and colour in the legend (no labels printed over
    each other). Energy that was estimated says so on the axis. Without energy the x axis is
    wall time (a message says so).

    Raises:
        NoDataError: no group has both an accuracy and the x quantity.
    """
    if x not in PARETO_X:
        raise ValueError(f"`x` must be one of {list(PARETO_X)}, got {x!r}")
    xkey, xname = PARETO_X[x]
    with_acc = [g for g in summary.groups if _finite(g.mean("acc"))]
    if not with_acc:
        raise NoDataError(f"pareto: no group has an accuracy ({summary.accuracy_key}); skipped")
    if xkey == "energy_kwh" and not any(_finite(g.mean(xkey)) for g in with_acc):
        xkey, xname = PARETO_X["time"]
        if messages is not None:
            messages.append("pareto: no energy recorded; the x axis is wall time")
    panels = []
    for setting in summary.settings:
        gs = [g for g in display_groups(summary, setting)
              if _finite(g.mean("acc")) and _finite(g.mean(xkey))]  # fmt: skip
        if gs:
            panels.append((setting, gs))
    if not panels:
        raise NoDataError(f"pareto: no group has both an accuracy and {xname}; skipped")
    fig, axes = _figure(1, len(panels), width=6.0, height=4.5)
    for ax, (setting, gs) in zip(axes, panels):
        top = max(abs(g.mean(xkey)) for g in gs)
        unit, scale = _unit(xkey, top, summary.currency)
        xs = [g.mean(xkey) * scale for g in gs]
        ys = [100 * g.mean("acc") for g in gs]
        for i, g in enumerate(gs):
            ax.errorbar(
                xs[i],
                ys[i],
                xerr=_zero(g.stats[xkey].std) * scale,
                yerr=100 * _zero(g.stats["acc"].std),
                fmt=_MARKERS[i % len(_MARKERS)],
                capsize=3,
                color=f"C{i % 10}",
                label=f"{g.label} (n={len(g.complete)})",
            )
        front = pareto_front(xs, ys)
        ax.step([xs[i] for i in front], [ys[i] for i in front], where="post", color="k",
                alpha=0.5, linewidth=1, label="Pareto front")  # fmt: skip
        how = energy_caption(gs) if xkey == "energy_kwh" else None
        extra = f", {how}" if how and "estimated" in how else ""
        ax.set_xlabel(f"{xname}{extra} ({unit})")
        ax.set_ylabel(_acc_label(summary))
        ax.set_title(_title(setting), fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0)
    return _save(fig, Path(out_dir) / "pareto")


def _zero(v: float) -> float:
    return v if _finite(v) else 0.0


def plot_accuracy_vs_cut(
    summary: Summary, out_dir: PathLike, messages: list[str] | None = None
) -> list[Path]:
    """``accuracy_vs_cut.{png,pdf}``, one panel per setting with fixed cuts or detector groups:
    the fixed cuts' mean accuracy against their cut epoch as a line with a ± std band (staged
    cuts, k stepped down through their stages from the cut, as a line of their own), the
    matched k = 1 runs against the cut epoch they match (dashed), always-k and k1 as horizontal
    lines (the tolerance below always-k dotted), each detector run as a point at its own cut
    epoch and accuracy (cut epochs of different seeds are never averaged), the oracle cut
    starred.

    Raises:
        NoDataError: no setting has fixed cuts or detector groups with an accuracy.
    """
    panels = []
    for setting in summary.settings:
        gs = [g for g in summary.in_setting(setting) if _finite(g.mean("acc"))]
        fixed = _by_cut(gs, "fixed")
        staged = _by_cut(gs, "staged")
        matched = _by_cut(gs, "matched")
        det = [g for g in gs if g.policy == "detector" and _finite(g.mean("cut_epoch"))]
        if messages is not None:
            for g in gs:
                if g.policy == "detector" and g not in det:
                    messages.append(
                        f"accuracy_vs_cut: {setting.label} / {g.label} never cut; not drawn"
                    )
        if fixed or staged or det:
            panels.append((setting, gs, fixed, staged, matched, det))
        elif messages is not None and gs:
            messages.append(
                f"accuracy_vs_cut: {setting.label}: no fixed cuts or detector cuts; skipped"
            )
    if not panels:
        raise NoDataError("accuracy_vs_cut: no fixed cuts or detector cuts; skipped")
    fig, axes = _figure(1, len(panels), width=6.0, height=4.5)
    for ax, (setting, gs, fixed, staged, matched, det) in zip(axes, panels):
        for line, color, style, label in (
            (fixed, "C3", "o-", "fixed cut"),
            (staged, "C9", "^-", "staged cut"),
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
        for i, g in enumerate(det):  # one point per seed: cut epochs are never averaged
            points: list[tuple[float, float]] = []
            for v in g.values.values():
                cut_v, acc_v = v.get("cut_epoch"), v.get("acc")
                if cut_v is not None and acc_v is not None and _finite(cut_v) and _finite(acc_v):
                    points.append((float(cut_v), 100 * float(acc_v)))
            cuts = per_seed(g.cut_epochs) or "never"
            ax.plot(
                [p[0] for p in points],
                [p[1] for p in points],
                "D",
                color=f"C{4 + i}",
                alpha=0.85,
                label=f"{g.label} (per seed: cut {cuts})",
            )
        ax.set_xlabel(
            "cut epoch (first epoch at k = 1" + (", a staged cut's below k)" if staged else ")")
        )
        _integer_ticks(ax.xaxis)
        ax.set_ylabel(_acc_label(summary))
        ax.set_title(_title(setting), fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    return _save(fig, Path(out_dir) / "accuracy_vs_cut")


def _by_cut(groups: list[Group], policy: str) -> list[Group]:
    found = [g for g in groups if g.policy == policy and g.cut_at is not None]
    return sorted(found, key=lambda g: cast(float, g.cut_at))  # not None: filtered just above
