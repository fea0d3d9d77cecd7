"""One run directory's plot, ``plot.png`` / ``plot.pdf`` (:func:`plot_run`, drawn at the end of
``critical fit``): its training-dynamics metrics, the signals the detector watched (the
validation loss by default), accuracy (%) and loss, and k per epoch, the cut marked and, where
the detector did not make the cut, the epoch after which it would have
(:func:`detector_verdict`), titled with what the run was (model, data set, k, policy). Legends
sit outside the data. matplotlib is imported lazily."""

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
from critical.runfiles import as_int, configured_callbacks, find_accuracy_key

__all__ = ["describe_run", "detector_verdict", "plot_run", "run_figure", "watched_columns"]

#: CriticalPeriod settings that are not the detector's (not passed to a replay)
_NOT_RULE = ("loss", "strict", "verbose", "name")


def _detector_settings(run: Run) -> dict[str, Any] | None:
    """The run's CriticalPeriod settings from ``config.json`` (``None`` without one)."""
    cp = configured_callbacks(run.config).get("CriticalPeriod")
    return None if cp is None else {k: v for k, v in cp.items() if k not in _NOT_RULE}


def watched_columns(run: Run) -> list[str]:
    """The logged columns the run's detector watched (its ``monitor``, by default the
    validation loss under any of :data:`critical.detector.VAL_LOSS_KEYS`); ``[]`` without a
    CriticalPeriod or when none of them was logged.

    Example:
        >>> run = Run(name="r", path=Path("r"), rows=[{"epoch": 0, "val_loss": 1.0}],
        ...           config={"callbacks": [{"class": "CriticalPeriod", "init_args": {}}]})
        >>> watched_columns(run)
        ['val_loss']
    """
    from critical.detector import DEFAULTS, VAL_LOSS_KEYS

    settings = _detector_settings(run)
    if settings is None:
        return []
    monitor = settings.get("monitor") or DEFAULTS["monitor"]
    names = [monitor] if isinstance(monitor, str) else [str(m) for m in monitor]
    columns = set(run.columns())
    out: list[str] = []
    for m in names:
        m = m.removeprefix("critical/")
        candidates = VAL_LOSS_KEYS if m in VAL_LOSS_KEYS else (f"critical/{m}", m)
        found = next((c for c in candidates if c in columns), None)
        if found is not None and found not in out:
            out.append(found)
    return out


def detector_verdict(run: Run) -> int | None:
    """The epoch after which the run's detector called the critical period over: its live
    event (``cut_event.json["event"]``), else the detector replayed on the run's rows with its
    recorded settings (:func:`critical.detector.replay`); ``None`` without a CriticalPeriod, or
    when it would not have fired.

    Example:
        >>> run = Run(name="r", path=Path("r"), cut_event={"fired": False, "event": {"epoch": 4}})
        >>> detector_verdict(run)
        4
    """
    event = (run.cut_event or {}).get("event")
    if isinstance(event, dict) and as_int(event.get("epoch")) is not None:
        return as_int(event.get("epoch"))
    settings = _detector_settings(run)
    if settings is None or not run.rows:
        return None
    from critical.detector import replay

    try:
        det = replay(run.rows, **settings)
    except Exception:  # noqa: BLE001 - settings of another version: no verdict, still a plot
        return None
    return None if det.event is None else int(det.event.epoch)


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
    if policy in ("fixed", "staged") and cutoff is not None and cutoff.get("epoch") is not None:
        return f"{policy} at epoch {cutoff['epoch']}"
    return None if policy is None else str(policy)


def _steps_after(run: Run, cut: int) -> str | None:
    """The multiplicities the rows show from epoch ``cut`` on, in order (``"2 → 1"`` for a
    staged cut); ``None`` without any."""
    after: dict[float, None] = {}
    for r in run.rows:
        e, k = as_int(r.get("epoch")), r.get("multiplicity")
        if e is not None and e >= cut and _finite(k):
            after[float(k)] = None
    return " → ".join(f"{k:g}" for k in after) or None


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
    model = run.model if run.model != "-" else "unknown model"
    data = run.dataset if run.dataset != "-" else "unknown data"
    parts = [f"{model} on {data}"]
    if kb is not None:
        k = f"{kb:g}" if isinstance(kb, float) else str(kb)
        if cut is not None:
            after = _steps_after(run, cut) or (f"{ka:g}" if ka is not None else "?")
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
    steps = _steps_after(run, cut) if cut is not None else None
    ka = steps.replace(" ", "") if steps else ka  # a staged cut: every step
    cut_label = f"cut (k {kb}→{ka})" if kb is not None and ka is not None else "cut"
    cutoff = configured_callbacks(run.config).get("AugmentationCutoff") or {}
    # where the detector did not decide (a fixed cut, k kept, no cut callback and no cut): where
    # it would have cut; a detector-policy run that did not cut is left as its detector decided
    policy = cutoff.get("policy")
    verdict = None
    if policy in ("fixed", "never") or (policy is None and cut is None):
        verdict = detector_verdict(run)
    if verdict is not None and cut is not None and verdict + 1 == cut:
        verdict = None  # the cut is where the detector would have cut

    def mark_cut(ax: Any) -> None:
        if cut is not None:
            ax.axvline(cut - 0.5, color="C3", linestyle="--", label=cut_label)
        if verdict is not None:
            ax.axvline(
                verdict + 0.5,
                color="C2",
                linestyle=":",
                label=f"detector would have cut (after epoch {verdict})",
            )

    panels: list[tuple[str, Callable[[Any], None]]] = []

    def draw_metric(key: str) -> Callable[[Any], None]:
        def draw(ax: Any) -> None:
            ax.plot(*run.column(key), ".-")
            mark_cut(ax)

        return draw

    lr_key = "critical/lr_mean" if "critical/lr_mean" in metrics else None
    watched = watched_columns(run)
    for key in metrics:
        if lr_key is not None and key == "critical/lr":
            continue  # the epoch-start rate: the epoch's mean is drawn instead
        title = "lr (epoch mean)" if key == lr_key else _short(key)
        panels.append((title + (" (watched)" if key in watched else ""), draw_metric(key)))
    for key in watched:
        if key not in metrics:  # the validation loss, or another metric the module logs
            panels.append((f"{key} (watched by the detector)", draw_metric(key)))
    from critical.detector import VAL_LOSS_KEYS

    losses = [k for k in ("train/loss",) if k in columns]
    losses += [k for k in VAL_LOSS_KEYS if k in columns and k not in watched][:1]

    def draw_acc(ax: Any) -> None:
        for i, key in enumerate(acc_keys):
            e, v = run.column(key)
            ax.plot(e, 100 * v, ".-", color=f"C{i}", label=key)
        if acc_keys:
            ax.set_ylabel("accuracy (%)")
        mark_cut(ax)
        if losses:
            ax2 = ax.twinx()
            for key, style in zip(losses, ("--", "-.")):
                ax2.plot(*run.column(key), color="0.5", linestyle=style, label=key)
            ax2.set_ylabel("loss")

    if acc_keys or losses:
        panels.append(("accuracy (%) and loss" if acc_keys else "loss", draw_acc))
    if k_key is not None:

        def draw_k(ax: Any) -> None:
            epochs, ks = run.column(k_key)
            ax.step(epochs, ks, "o-", where="mid")
            mark_cut(ax)
            lo, hi = math.floor(ks.min()), math.ceil(ks.max())
            ax.set_ylim(lo - 0.5, hi + 0.5)  # a constant k: one tick, not 2.84 to 3.16
            if hi - lo <= 10:
                ax.set_yticks(range(lo, hi + 1))
            else:
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
    """Draw one run: one panel per training-dynamics metric and per signal the detector watched
    (:func:`watched_columns`, e.g. ``val_loss``), accuracy in % (``accuracy_key``, else the
    first common validation-accuracy name logged, ``test/acc`` and ``train/acc`` when logged;
    ``train/loss`` and an unwatched validation loss on a second axis), and k per epoch (integer
    ticks), the cut marked in every panel by a vertical line at the epoch boundary before the
    first epoch at the reduced k and, where the detector did not decide the cut (a fixed cut, k
    kept), a dotted line after the epoch where it would have (:func:`detector_verdict`); one
    legend below the panels; titled with the run's name, model,
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
