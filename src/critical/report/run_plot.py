"""One run directory's plot, ``plot.png`` / ``plot.pdf`` (:func:`plot_run`, drawn at the end of
``critical fit``): its training-dynamics metrics, accuracy (%) and loss, and k per epoch, the
cut marked, titled with what the run was (model, data set, k, policy). Legends sit outside
the data. matplotlib is imported lazily."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

from critical.io import PathLike
from critical.report.plots import (
    _figure,
    _figure_legend,
    _integer_ticks,
    _metric_columns,
    _save,
    _short,
)
from critical.report.runs import Run, _finite, load_run
from critical.runfiles import configured_callbacks, find_accuracy_key

__all__ = ["describe_run", "plot_run", "run_figure"]


def _policy(run: Run) -> str | None:
    """The run's cut policy: its tag, else its AugmentationCutoff's settings (with the
    detector's monitor)."""
    callbacks = configured_callbacks(run.config)
    cutoff = callbacks.get("AugmentationCutoff")
    policy = run.policy or (None if cutoff is None else cutoff.get("policy"))
    if policy == "detector":
        monitor = (callbacks.get("CriticalPeriod") or {}).get("monitor")
        if monitor:
            monitor = "+".join(monitor) if isinstance(monitor, list) else str(monitor)
            return f"detector on {monitor}"
    if policy == "fixed" and cutoff is not None and cutoff.get("epoch") is not None:
        return f"fixed at epoch {cutoff['epoch']}"
    return None if policy is None else str(policy)


def _class_name(run: Run, part: str) -> str | None:
    """The class name config.json records for the module or the datamodule (a user's own)."""
    node = run.config.get(part) if isinstance(run.config, dict) else None
    cls = node.get("class") if isinstance(node, dict) else None
    return str(cls).rsplit(".", 1)[-1] if cls else None


def describe_run(run: Run) -> str:
    """What a run was, in one line: model, data set, k (and its cut), policy, epochs.

    Example:
        >>> from critical.report.runs import Run
        >>> run = Run(name="r", path=Path("r"), tags={"model": "m", "policy": "always"},
        ...           rows=[{"epoch": 0, "multiplicity": 3.0}, {"epoch": 1, "multiplicity": 3.0}])
        >>> describe_run(run)
        'm on unknown data, k = 3 throughout, policy always, 2 epochs'
    """
    ce = run.cut_event or {}
    ks = [r.get("multiplicity") for r in run.rows if _finite(r.get("multiplicity"))]
    kb = ce.get("multiplicity_before") if ce.get("multiplicity_before") is not None else None
    kb = kb if kb is not None else (ks[0] if ks else None)
    ka = ce.get("multiplicity_after")
    cut = run.cut_epoch
    model = run.model if run.model != "-" else _class_name(run, "module") or "unknown model"
    data = run.dataset if run.dataset != "-" else _class_name(run, "datamodule") or "unknown data"
    parts = [f"{model} on {data}"]
    if kb is not None:
        k = f"{kb:g}" if isinstance(kb, float) else str(kb)
        if cut is not None:
            after = ka if ka is not None else (ks[-1] if ks else "?")
            after = f"{after:g}" if isinstance(after, float) else str(after)
            parts.append(f"k = {k} → {after} from epoch {cut}")
        else:
            parts.append(f"k = {k} throughout")
    policy = _policy(run)
    if policy:
        parts.append(f"policy {policy}")
    parts.append(f"{len(run.rows)} epochs")
    return ", ".join(parts)


def run_figure(run: Run, accuracy_key: str | None = None) -> Any:
    """The figure of :func:`plot_run` for a loaded run (not saved).

    Raises:
        ValueError: the run has no metric rows, or none worth plotting.
    """
    if not run.rows:
        raise ValueError(
            f"{run.path}: no metric rows (metrics.json / metrics.csv); nothing to plot"
        )
    columns = run.columns()
    metrics = _metric_columns(columns)
    val_key = find_accuracy_key(columns, accuracy_key) or "val/acc"
    acc_keys = [k for k in (val_key, "test/acc", "train/acc") if k in columns]
    k_key = "multiplicity" if any(_finite(r.get("multiplicity")) for r in run.rows) else None
    cut = run.cut_epoch
    ce = run.cut_event or {}
    kb, ka = ce.get("multiplicity_before"), ce.get("multiplicity_after")
    cut_label = f"cut (k {kb}→{ka})" if kb is not None and ka is not None else "cut"

    def mark_cut(ax: Any) -> None:
        if cut is not None:
            ax.axvline(cut - 0.5, color="C3", linestyle="--", label=cut_label)

    panels: list[tuple[str, Callable[[Any], None]]] = []

    def draw_metric(key: str) -> Callable[[Any], None]:
        def draw(ax: Any) -> None:
            ax.plot(*run.column(key), ".-")
            mark_cut(ax)

        return draw

    lr_key = "critical/lr_mean" if "critical/lr_mean" in metrics else None
    for key in metrics:
        if lr_key is not None and key == "critical/lr":
            continue  # the epoch-start rate: the epoch's mean is drawn instead
        title = "lr (epoch mean)" if key == lr_key else _short(key)
        panels.append((title, draw_metric(key)))

    def draw_acc(ax: Any) -> None:
        for i, key in enumerate(acc_keys):
            e, v = run.column(key)
            ax.plot(e, 100 * v, ".-", color=f"C{i}", label=key)
        if acc_keys:
            ax.set_ylabel("accuracy (%)")
        mark_cut(ax)
        if "train/loss" in columns:
            ax2 = ax.twinx()
            ax2.plot(*run.column("train/loss"), color="0.5", linestyle="--", label="train/loss")
            ax2.set_ylabel("train/loss")

    if acc_keys or "train/loss" in columns:
        panels.append(("accuracy (%) and loss" if acc_keys else "loss", draw_acc))
    if k_key is not None:

        def draw_k(ax: Any) -> None:
            ax.step(*run.column(k_key), "o-", where="mid")
            mark_cut(ax)
            _integer_ticks(ax.yaxis)

        panels.append(("multiplicity k", draw_k))
    n = len(panels)
    if n == 0:
        raise ValueError(
            f"{run.path}: the metric rows hold no training-dynamics metric, accuracy, loss or "
            "multiplicity; nothing to plot"
        )
    ncols = 2 if n > 1 else 1
    fig, axes = _figure(math.ceil(n / ncols), ncols, width=5.6, height=3.2)
    for ax, (title, draw) in zip(axes, panels):
        draw(ax)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("epoch")
        _integer_ticks(ax.xaxis)
        ax.grid(alpha=0.3)
    for ax in axes[n:]:
        ax.set_visible(False)
    _figure_legend(fig, fig.axes)
    name = run.name if run.label == run.name else f"{run.name} ({run.label})"
    status = f" — {run.status}" if run.status != "complete" else ""
    fig.suptitle(f"{name}{status}\n{describe_run(run)}", fontsize=11)
    return fig


def plot_run(run_dir: PathLike, accuracy_key: str | None = None) -> list[Path]:
    """Draw one run: one panel per training-dynamics metric, accuracy in % (``accuracy_key``,
    else the first common validation-accuracy name logged, ``test/acc`` and ``train/acc`` when
    logged; ``train/loss`` on a second axis), and k per
    epoch, the cut marked in every panel by a vertical line at the epoch boundary before the
    first epoch at the reduced k; one legend below the panels; titled with the run's name, model,
    data set, k and policy (:func:`describe_run`). Saved as ``run_dir/plot.png`` and
    ``run_dir/plot.pdf``; returns their paths.

    Raises:
        FileNotFoundError: ``run_dir`` is not a directory.
        ValueError: the run has no metric rows.

    Example::

        >>> from critical.report import plot_run
        >>> plot_run("runs/my-run")  # doctest: +SKIP
        [PosixPath('runs/my-run/plot.png'), PosixPath('runs/my-run/plot.pdf')]
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"run directory {run_dir} does not exist")
    return _save(run_figure(load_run(run_dir), accuracy_key), run_dir / "plot")
