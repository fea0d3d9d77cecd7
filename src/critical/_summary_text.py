"""The run summary as text: :func:`format_summary` (what :class:`~critical.callbacks.RunDirectory`
prints at fit end) and :func:`epoch_table`, for the summaries :mod:`critical.summary` builds.
Re-exported from :mod:`critical.summary`."""

from __future__ import annotations

import math
import textwrap
from collections.abc import Mapping, Sequence
from typing import Any

from critical._registry import summary_columns
from critical.runfiles import find_accuracy_key

__all__ = ["epoch_columns", "epoch_table", "format_summary"]

#: the per-epoch table of the printed summary, around the metric callbacks' own columns (their
#: ``summary_columns``, from :mod:`critical._registry`): (title, metric key, format)
FIRST_COLUMNS = (("k", "multiplicity", "{:.0f}"),)
LAST_COLUMNS = (
    ("train loss", "train/loss", "{:.3f}"),  # else critical/train_loss (epoch_table)
    ("val acc", "val/acc", "{:.2%}"),  # else the run's accuracy key (epoch_table)
    ("time s", "energy/duration_s", "{:.1f}"),
)


def epoch_columns() -> list[tuple[str, str, str]]:
    """The columns of the printed per-epoch table: k, each registered metric callback's, then
    the loss, the accuracy and the time."""
    return [*FIRST_COLUMNS, *summary_columns(), *LAST_COLUMNS]


def _finite(v: Any) -> float | None:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def _fmt(v: Any, unit: str = "", scale: float = 1.0, digits: int = 3) -> str:
    v = _finite(v)
    return "n/a" if v is None else f"{v * scale:.{digits}g}{unit}"


def _pct(v: Any, digits: int = 1) -> str:
    v = _finite(v)
    return "n/a" if v is None else f"{v:.{digits}%}"


def epoch_table(
    rows: Sequence[Mapping[str, Any]],
    cut_epoch: int | None = None,
    accuracy_key: str | None = None,
) -> list[str]:
    """The per-epoch metric curves as text lines (the cut marked with ``<- k cut``); the
    accuracy column reads ``accuracy_key`` (default: the first common name logged), the loss
    column ``train/loss``, else the ``critical/train_loss`` the detector logs."""
    present = {k for r in rows for k in r}
    fallback = {
        "val/acc": find_accuracy_key(present, accuracy_key),
        "train/loss": "train/loss" if "train/loss" in present else "critical/train_loss",
    }
    cols = [(title, fallback.get(key) or key, fmt) for title, key, fmt in epoch_columns()]
    cols = [(title, key, fmt) for title, key, fmt in cols if key in present]
    widths = [max(len(title), 8) for title, _, _ in cols]
    out = ["epoch " + " ".join(t.rjust(w) for (t, _, _), w in zip(cols, widths))]
    for r in rows:
        cells = []
        for (_, key, fmt), w in zip(cols, widths):
            v = _finite(r.get(key))
            cells.append(("-" if v is None else fmt.format(v)).rjust(w))
        mark = "  <- k cut" if cut_epoch is not None and r.get("epoch") == cut_epoch else ""
        out.append(f"{r.get('epoch', ''):>5} " + " ".join(cells) + mark)
    return out


def _energy_lines(s: Mapping[str, Any]) -> list[str]:
    total = s.get("total")
    if total is None:
        return []
    lines = []
    energy = f"energy {_fmt(total.get('energy_kwh'), ' Wh', 1000)}"
    if s.get("energy_method"):
        energy += f" ({s['energy_method']})"
    lines.append(
        f"time {_fmt(total.get('duration_s'), ' s')}, {energy}, "
        f"CO2 {_fmt(total.get('co2_kg'), ' g', 1000)} ({s.get('country_iso_code')} grid), "
        f"training FLOPs {_fmt(total.get('flops'), '', 1, 3)}"
    )
    if s.get("energy_available") and not s.get("energy_measured"):
        lines.append(
            "energy is not measured by hardware counters: "
            + (s.get("energy_method_detail") or "see energy.json 'measurement'")
        )
    if s.get("energy_missing"):
        lines.append(f"energy not measured: {s['energy_missing']}")
    return lines


def format_summary(s: Mapping[str, Any], rows: Sequence[Mapping[str, Any]] = ()) -> str:
    """The summary as the text printed at fit end (per-epoch table from ``rows``)."""
    cut = s.get("cut") or {}
    lines = ["", "=" * 72, "critical: run summary", "-" * 72]
    key = s.get("accuracy_key")
    if rows:
        lines += epoch_table(rows, cut_epoch=cut.get("cut_epoch"), accuracy_key=key)
        lines.append("-" * 72)
    splits = s.get("splits") or {}
    on_val = f", on {splits['val']}" if "val" in splits else ""
    logged = "" if key in (None, "val/acc") else f", logged as `{key}`"
    acc = _pct(s.get("val_acc"), 2) if key else "n/a (no validation accuracy logged)"
    source = s.get("accuracy_from")
    if source == "test":
        on_test = f", on {splits['test']}" if "test" in splits else ""
        lines.append(f"test accuracy (after the fit{on_test}{logged}): {acc}")
    else:
        when = f"trainer.{source} after the fit" if source else "last epoch"
        lines.append(f"validation accuracy ({when}{on_val}{logged}): {acc}")
    if s.get("test_acc") is not None and s.get("test_accuracy_key") != key:
        lines.append(f"test accuracy (`{s['test_accuracy_key']}`): {_pct(s['test_acc'], 2)}")
    lines += _period_lines(s.get("critical_period"), cut)
    diverged = s.get("diverged")
    if diverged:
        lines.append(f"the run diverged in epoch {diverged.get('epoch')} ({diverged.get('cause')})")
    if cut.get("multiplicity_before") is not None:
        to = cut.get("multiplicity_after")
        change = "" if cut.get("cut_epoch") is None else f" -> {to} from epoch {cut['cut_epoch']}"
        policy = str(cut.get("policy"))
        how = {"fixed": " (a fixed cut)", "detector": " (the detector's cut)"}.get(policy, "")
        if change and cut.get("plan"):  # a staged cut: every step
            change = "".join(f" -> {k} from epoch {first}" for first, k in cut["plan"])
            staged = {"fixed": " (a staged fixed cut)", "detector": " (the detector's staged cut)"}
            how = staged.get(policy, " (staged)")
        lines.append(f"multiplicity: k={cut['multiplicity_before']}{change}{how if change else ''}")
    rob = dict(s.get("robustness") or {})
    kind = rob.pop("data", None)
    if rob:
        parts = [f"{k.replace('_acc', '')} {_pct(v, 2)}" for k, v in rob.items()]
        on = f" (on {splits.get(kind, kind)})" if kind else ""
        lines.append(f"robustness{on}: " + ", ".join(parts))
    lines += _energy_lines(s)
    lines.append(("saving: " if s.get("saved") else "") + str(s.get("saving_note")))
    frac = s.get("saving_fraction")
    if s.get("saved") and frac:
        lines.append(
            "saving vs keeping k (measured, from the median pre-cut cost per sample): "
            f"time {_pct(frac.get('duration_s'))}, energy {_pct(frac.get('energy_kwh'))}, "
            f"CO2 {_pct(frac.get('co2_kg'))}; FLOPs {_pct(frac.get('flops'))}"
        )
        check = s.get("saving_check")
        if check is not None:
            flag = "" if check.get("agrees") is not False else "WARNING: "
            lines.append(f"{flag}check: {check.get('message')}")
    for name, why in (s.get("not_written") or {}).items():
        lines.append(f"not written: {name} ({why})")
    if s.get("run_dir"):
        lines.append(f"run directory: {s['run_dir']}")
    if s.get("plot"):
        lines.append(f"plot: {s['plot']}")
    lines.append("=" * 72)
    return "\n".join(_wrap(line) for line in lines)


def _period_lines(cp: Mapping[str, Any] | None, cut: Mapping[str, Any]) -> list[str]:
    """The detector's verdict; when it did not make the cut (a fixed cut, or k kept), said so:
    what it would have decided is not when the run's critical period ended."""
    if cp is None:
        return []
    policy = cut.get("policy")
    if cp.get("decided_cut", policy in (None, "detector")):
        over = f"over at the end of epoch {cp['epoch']} ({cp['reason']})" if cp["over"] else None
        lines = [f"critical period: {over or 'not over within the run'}"]
    else:
        made = (
            f"the cut was fixed at epoch {cut.get('cut_epoch')}"
            if policy == "fixed" and cut.get("cut_epoch") is not None
            else "the cut was fixed"
            if policy == "fixed"
            else "k was kept"
        )
        verdict = (
            f"would have called it over at the end of epoch {cp['epoch']} ({cp['reason']})"
            if cp["over"]
            else "did not call it over within the run"
        )
        lines = [f"critical period: {made}; the detector only watched and {verdict}"]
    if not cp["over"] and cp.get("explanation"):
        lines.append(f"why: {cp['explanation']}")
    return lines


def _wrap(line: str, width: int = 100) -> str:
    """A long line wrapped at ``width``, continuation lines indented."""
    if len(line) <= width:
        return line
    return textwrap.fill(line, width=width, subsequent_indent="    ", break_on_hyphens=False)
