"""Plots (PNG + PDF each) from a :class:`~critical.report.stats.Summary`: :func:`plot_curves`
(one file per setting; :func:`plot_pareto` and :func:`plot_accuracy_vs_cut` are in
:mod:`critical.report.comparison_plots`), never mixing settings. The helpers shared with
:mod:`critical.report.run_plot` (one run directory) and ``comparison_plots`` are here too.

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
from typing import Any

import numpy as np

from critical.io import PathLike, atomic_write_bytes
from critical.report.runs import Run, Setting
from critical.report.stats import Group, Summary, per_seed
from critical.runfiles import configured_callbacks

__all__ = ["NoDataError", "plot_curves", "watched_signals"]

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
        fig.set_layout_engine("none")  # laid out by the first save: the second reuses it
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


#: the guard's learning signal (``learning_signal``) -> the column it reads
_LEARNING_COLUMNS = {
    "aug_loss": ("critical/aug_gap/aug_loss",),
    "train_loss": ("critical/train_loss", "train/loss"),
}


def watched_signals(groups: list[Group], runs: Sequence[Run]) -> list[str]:
    """The columns the detectors of ``groups`` read, in ``runs``: the metrics of their events
    (a replayed detector's too), else their configured ``monitor`` (the default: the
    validation loss), and the guard's learning signal (the augmented-view loss
    ``critical/aug_gap/aug_loss`` by default, ``critical/train_loss`` for ``train_loss``)."""
    from critical.detector import DEFAULTS, VAL_LOSS_KEYS

    columns = {c for r in runs for c in r.columns()}
    names: dict[str, None] = {}
    for g in groups:
        if g.policy != "detector":
            continue
        for r in g.complete:
            for ev in ((r.cut_event or {}).get("event"), (r.tags.get("replay") or {}).get("event")):
                if isinstance(ev, dict) and isinstance(ev.get("metrics"), list):
                    names.update(dict.fromkeys(str(m) for m in ev["metrics"]))
            det = r.tags.get("detector")
            cp = (
                det
                if isinstance(det, dict)
                else configured_callbacks(r.config).get("CriticalPeriod")
            )
            if cp is None:
                continue
            if not names:
                mon = cp.get("monitor") or DEFAULTS["monitor"]
                names.update(dict.fromkeys([mon] if isinstance(mon, str) else map(str, mon)))
            if cp.get("guard_learning", DEFAULTS["guard_learning"]):
                signal = cp.get("learning_signal") or DEFAULTS["learning_signal"]
                names.update(dict.fromkeys(_LEARNING_COLUMNS.get(str(signal), ())[:1]))
    out: list[str] = []
    for m in names:
        bare = m.removeprefix("critical/")
        cands = VAL_LOSS_KEYS if bare in VAL_LOSS_KEYS else (m, f"critical/{bare}", bare)
        cands = (*cands, *_LEARNING_COLUMNS.get(bare, ()))
        found = next((c for c in cands if c in columns), None)
        if found is not None and found not in out:
            out.append(found)
    return out


def _gapped(e: np.ndarray, *ys: np.ndarray) -> tuple[np.ndarray, ...]:
    """Insert NaN between epochs more than one apart: no line across epochs never logged
    (validated)."""
    if e.size < 2:
        return (e, *ys)
    cut = np.nonzero(np.diff(e) > 1)[0] + 1
    if not cut.size:
        return (e, *ys)
    return tuple(np.insert(a.astype(float), cut, np.nan) for a in (e, *ys))


def _curve_keys(summary: Summary, groups: list[Group], runs: Sequence[Run]) -> list[str]:
    """The panels: the detectors' watched signals, the per-epoch accuracy, the learning rate
    (``critical/lr``, never ``lr_mean`` beside it); without a detector, the training-dynamics
    metrics and the accuracy."""
    from critical.runfiles import find_accuracy_key

    columns = {c for r in runs for c in r.columns()}
    watched = watched_signals(groups, runs)
    acc = summary.accuracy_key if summary.accuracy_key in columns else None
    acc = acc or find_accuracy_key(columns)
    if watched:
        keys = [*watched, *([acc] if acc and acc not in watched else [])]
        keys += [c for c in ("critical/lr", "critical/lr_mean") if c in columns][:1]
        return keys
    cols: dict[str, None] = {}
    for r in runs:
        cols.update(dict.fromkeys(_metric_columns(r.columns())))
    if "critical/lr" in cols:
        cols.pop("critical/lr_mean", None)
    return [*cols, *([acc] if acc else [])]


def _mark_cuts(ax: Any, cuts: list[tuple[float, str, str, str]], label_text: bool) -> None:
    """Vertical lines at the epoch boundary before each cut (``cut - 0.5``), labelled."""
    seen: set[str] = set()
    for at, label, color, style in cuts:
        ax.axvline(at - 0.5, color=color, linestyle=style, alpha=0.7,
                   label=None if label in seen else label)  # fmt: skip
        seen.add(label)
        if label_text:  # fixed cuts labelled at the top, staged below, detector cuts lower:
            # never on each other
            height = {"fixed cuts": 1.0, "staged cuts": 0.8}.get(label)
            ax.annotate(
                f"{label.split()[0]}@{at:g}"
                if height is not None
                else label.removeprefix("cut: ").split(" (")[0] + f"@{at:g}",
                (at - 0.5, 0.55 if height is None else height),
                xycoords=("data", "axes fraction"),
                rotation=90,
                fontsize=6,
                ha="right",
                va="top",
                color=color,
            )


def plot_curves(
    summary: Summary, out_dir: PathLike, messages: list[str] | None = None
) -> list[Path]:
    """Per setting, ``curves_<model>.{png,pdf}`` (``curves_<model>_<data>_E<budget>`` when a
    model has several settings): the signals the detectors watched (:func:`watched_signals`:
    the validation loss and the augmented-view loss for the default), the per-epoch accuracy
    (%) and the learning rate -- without a detector, the training-dynamics metrics -- against
    epoch, mean ± std over the complete seeds of the always-k group (else of the setting's
    first group with rows), no line across epochs not logged; the cuts as labelled vertical
    lines at the epoch boundary (``cut_epoch - 0.5``): the plotted runs' own, each detector's
    (one colour per detector group, per seed) and the fixed cuts (light, dotted).

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
        keys = [k for k in _curve_keys(summary, groups, runs) if _mean_curve(runs, k)[0].size]
        detectors = [g for g in groups if g.policy == "detector" and g is not group]
        if not keys:
            if messages is not None:
                messages.append(f"curves: {setting.label}: no curve to draw; skipped")
            continue
        n = len(keys)
        ncols = 2 if n > 1 else 1
        fig, axes = _figure(math.ceil(n / ncols), ncols, width=5.0, height=3.2)
        cuts: list[tuple[float, str, str, str]] = []
        for at in sorted({g.cut_at for g in groups if g.policy == "fixed" and g.cut_at}):
            cuts.append((at, "fixed cuts", "0.6", ":"))
        for at in sorted({g.cut_at for g in groups if g.policy == "staged" and g.cut_at}):
            cuts.append((at, "staged cuts", "C9", ":"))
        for cut in sorted({r.cut_epoch for r in runs if r.cut_epoch is not None}):
            cuts.append((cut, f"cut: {group.label}", "C0", "--"))
        for i, g in enumerate(detectors):
            seeds = per_seed(g.cut_epochs)
            for cut in sorted({c for c in g.cut_epochs if c is not None}):
                cuts.append((cut, f"cut: {g.label} (per seed: {seeds})", f"C{i + 1}", "--"))
        for j, (ax, key) in enumerate(zip(axes, keys)):
            e, m, s = _mean_curve(runs, key)
            e, m, s = _gapped(e, m * _scale(key), s * _scale(key))
            ax.plot(e, m, color="C0", marker=".", label=f"{group.label} (n={len(runs)})")
            if len(runs) > 1:
                ax.fill_between(e, m - s, m + s, color="C0", alpha=0.2, linewidth=0)
            if _is_accuracy(key):
                for g, c in zip(detectors, (f"C{i + 1}" for i in range(len(detectors)))):
                    de, dm, _ = _mean_curve(g.complete, key)
                    if de.size > 1:
                        de, dm = _gapped(de, dm * _scale(key))
                        ax.plot(de, dm, color=c, linewidth=1, label=g.label)
                ax.set_ylabel("%")
            _mark_cuts(ax, cuts, label_text=j == 0)
            title = _short(key) + (" (%)" if _is_accuracy(key) else "")
            ax.set_title(title, fontsize=10)
            ax.set_xlabel("epoch")
            _integer_ticks(ax.xaxis)
            ax.grid(alpha=0.3)
        for ax in axes[n:]:
            ax.set_visible(False)
        _figure_legend(fig, axes[:n])
        what = (
            "signals the detector watched" if watched_signals(groups, runs) else "training dynamics"
        )
        fig.suptitle(f"{_title(setting)}: {what} ({group.label}, mean ± std over seeds)")
        paths += _save(fig, out_dir / f"curves_{names[setting]}")
    if not paths:
        raise NoDataError("curves: no run has metric rows; no metric-curve plot")
    return paths
