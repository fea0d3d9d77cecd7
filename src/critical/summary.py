r"""A run's summary: what was cut, what it saved, how energy was obtained, and where the files are.

:func:`build_summary` collects it from the trainer's callbacks (whichever the user chose: the
detector, the cut, the energy tracker, the robustness evaluator, the run directory; each part is
``None`` without its callback) into a JSON-serialisable dict, :func:`format_summary` (in
:mod:`critical._summary_text`) turns it into the text :class:`~critical.callbacks.RunDirectory`
prints at fit end and writes as ``summary.json`` (the ``critical`` command prints nothing of its
own).

Keys of the summary (``None`` where unknown):

* ``run_dir``, ``plot``: the run directory and its ``plot.png``;
* ``epochs`` (epochs completed), ``max_epochs``, ``val_acc`` (the last logged value of
  ``accuracy_key``: given, else the first of :data:`critical.runfiles.ACCURACY_KEYS` that was
  logged, e.g. ``val/acc`` or ``val_acc``), ``accuracy_key``;
* ``test_acc``, ``test_accuracy_key``: the accuracy a ``trainer.test`` after the fit logged
  (the first of :data:`critical.runfiles.TEST_ACCURACY_KEYS`); ``accuracy_from``: where
  ``val_acc`` came from, ``None`` (the last epoch's logged value) or the stage of the evaluation
  after the fit (``"validate"``, ``"test"``) when ``accuracy_key`` was logged only there;
  ``evaluations``: those evaluations (``evaluations.json``, :func:`add_evaluation`);
* ``splits``: what each split is, as far as it is known: the datamodule's own ``split_names``,
  else the validation data (its size, how often it was evaluated) and, after a
  ``trainer.test`` / ``trainer.validate``, the data evaluated then;
* ``critical_period``: ``{"over", "epoch", "reason", "explanation", "held_back",
  "decided_cut"}`` of the detector (``decided_cut``: whether its verdict made the cut, false
  when the cut was fixed or k kept: the detector only watched) (:func:`critical.detector.explain`: which guard or unsettled metric held it back, in
  which epochs, with the last readings); ``diverged``: ``{"epoch", "cause"}`` when the detector
  saw the run diverge;
* ``cut``: ``{"cut_epoch", "multiplicity_before", "multiplicity_after", "source", "policy"}``
  (``policy``: the cut callback's, ``"detector"``, ``"fixed"`` or ``"never"``), and ``plan``
  (``[[first epoch, k], ...]`` from the cut on) for a staged cut;
* ``saved`` (whether the cut saved anything worth the name: a theoretical saving of at least
  1%) and ``saving_note``, one plain sentence (what was saved, or why nothing was: no cut, a
  cut at the end of the last epoch, a cut too late to matter);
* ``theoretical_saving`` (the most the cut could save, :func:`critical.accounting.
  theoretical_saving`), ``flops_saving`` (the FLOPs-based saving), ``saving_fraction`` (measured
  time, energy, CO2, cost and FLOPs savings against keeping k), ``saving_check`` (measured
  against FLOPs, :func:`critical.accounting.saving_check`);
* ``total``: time, energy, CO2, cost and FLOPs of the run; ``country_iso_code``;
* ``energy_available``, ``energy_measured``, ``energy_method`` (``"measured"``, ``"partly
  estimated"``, ``"estimated"``), ``energy_method_detail``, ``energy_missing``: how energy was
  obtained (see :class:`~critical.callbacks.EnergyTracker`); ``model`` (parameters, FLOPs per
  sample);
* ``robustness``: clean, FGSM, PGD and corruption accuracy;
* ``not_written``: file name -> why it could not be written (run directory and codecarbon).

Example:
    >>> s = empty_summary()
    >>> s.update(epochs=10, max_epochs=10, cut={"cut_epoch": 10, "multiplicity_before": 3,
    ...          "multiplicity_after": 1, "source": "cutoff"})
    >>> _ = explain_saving(s)
    >>> s["saved"], s["saving_note"]  # doctest: +NORMALIZE_WHITESPACE
    (False, 'nothing saved: the cut was decided at the end of the last epoch (9), so no epoch
    ran at the reduced k')
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from critical._find import (
    find_cutoff,
    find_detector,
    find_energy,
    find_robustness,
    find_run_directory,
)
from critical._summary_text import _finite, epoch_columns, epoch_table, format_summary
from critical.accounting import theoretical_saving
from critical.io import to_jsonable
from critical.runfiles import (
    TEST_ACCURACY_KEYS,
    cut_from_multiplicities,
    find_accuracy_key,
)

__all__ = [
    "add_evaluation",
    "build_summary",
    "empty_summary",
    "epoch_columns",
    "epoch_table",
    "explain_saving",
    "format_summary",
    "known_splits",
]

#: below this theoretical saving a cut is said to have saved (almost) nothing
NEGLIGIBLE = 0.01

_KEYS = (
    "run_dir",
    "plot",
    "epochs",
    "max_epochs",
    "val_acc",
    "accuracy_key",
    "accuracy_from",
    "test_acc",
    "test_accuracy_key",
    "evaluations",
    "splits",
    "critical_period",
    "diverged",
    "cut",
    "saved",
    "saving_note",
    "theoretical_saving",
    "flops_saving",
    "saving_fraction",
    "saving_check",
    "total",
    "country_iso_code",
    "energy_available",
    "energy_measured",
    "energy_method",
    "energy_method_detail",
    "energy_missing",
    "model",
    "robustness",
    "not_written",
)


def empty_summary() -> dict[str, Any]:
    """A summary with every key and nothing known."""
    out: dict[str, Any] = dict.fromkeys(_KEYS)
    out.update(saved=False, energy_available=False, energy_measured=False, not_written={})
    return out


def build_summary(
    trainer: Any,
    rows: Sequence[Mapping[str, Any]] | None = None,
    run_dir: Any = None,
    accuracy_key: str | None = None,
) -> dict[str, Any]:
    """The summary of the run ``trainer`` just fitted, from its callbacks (module docstring).

    ``rows`` (per-epoch metric rows, default: the trainer's RunDirectory's) give the epoch count,
    the last validation accuracy and, without a cut callback, the cut; ``run_dir`` the run
    directory (default: the RunDirectory's)."""
    s = empty_summary()
    run = find_run_directory(trainer)
    if rows is None:
        rows = list(getattr(run, "rows", None) or [])
    if run_dir is None and run is not None:
        run_dir = getattr(run, "path", None)
    s["run_dir"] = None if run_dir is None else str(run_dir)
    max_epochs = getattr(trainer, "max_epochs", None)
    s["max_epochs"] = max_epochs if isinstance(max_epochs, int) and max_epochs > 0 else None
    s["epochs"] = len(rows) if rows else int(getattr(trainer, "current_epoch", 0) or 0)
    metrics = getattr(trainer, "callback_metrics", None) or {}
    columns = {k for r in rows for k in r} | set(metrics)
    key = find_accuracy_key(columns, accuracy_key or getattr(run, "accuracy_key", None))
    s["accuracy_key"] = key
    accs = [_finite(r.get(key)) for r in rows] if key else []
    accs = [a for a in accs if a is not None]
    if accs:
        s["val_acc"] = accs[-1]
    elif key:
        s["val_acc"] = _finite(metrics.get(key))

    cp = find_detector(trainer)
    if cp is not None:
        event = getattr(cp, "event", None)
        s["critical_period"] = {
            "over": event is not None,
            "epoch": getattr(event, "epoch", None),
            "reason": getattr(event, "reason", None),
        }
        explain = getattr(cp, "explain", None)
        if callable(explain):
            account = explain()
            s["critical_period"].update(
                explanation=account.get("text"), held_back=account.get("held_back")
            )
        diverged = getattr(cp, "diverged", None)
        s["diverged"] = None if diverged is None else to_jsonable(diverged)

    energy = find_energy(trainer)
    e = energy.summary() if energy is not None else None
    cutoff = find_cutoff(trainer)
    if cutoff is not None:
        s["cut"] = {
            "cut_epoch": getattr(cutoff, "cut_epoch", None),
            "multiplicity_before": getattr(cutoff, "multiplicity_before", None),
            "multiplicity_after": getattr(cutoff, "multiplicity_after", None)
            if getattr(cutoff, "cut_epoch", None) is not None
            else None,
            "source": "cutoff",
            "policy": getattr(cutoff, "policy", None),
        }
        plan = getattr(cutoff, "plan", None)
        if getattr(cutoff, "stages", ()) and plan:  # a staged cut
            s["cut"]["plan"] = [list(step) for step in plan]
    elif e is not None and e["cut"].get("source") is not None:
        s["cut"] = dict(e["cut"])
    elif rows:
        found = cut_from_multiplicities((r["epoch"], r.get("multiplicity")) for r in rows)
        k0 = next((r.get("multiplicity") for r in rows if r.get("multiplicity") is not None), None)
        if found is not None:
            s["cut"] = {**found, "source": "multiplicity"}
        elif k0 is not None:
            s["cut"] = {"cut_epoch": None, "multiplicity_before": k0, "source": "multiplicity"}

    if e is not None:
        fractions = e.get("saving_fraction") or None
        s.update(
            saving_fraction=fractions,
            flops_saving=None if fractions is None else fractions.get("flops"),
            saving_check=e.get("saving_check"),
            total={
                q: e["total"].get(q)
                for q in ("duration_s", "energy_kwh", "co2_kg", "cost", "flops")
            },
            country_iso_code=e.get("country_iso_code"),
            energy_available=bool(e.get("energy_available")),
            energy_measured=bool(e.get("energy_measured")),
            energy_method=e.get("energy_method"),
            energy_method_detail=e.get("energy_method_detail"),
            energy_missing=e.get("missing"),
            model=e.get("model"),
        )
        s["not_written"].update(e.get("not_written") or {})
    if s["critical_period"] is not None:
        policy = (s["cut"] or {}).get("policy")
        s["critical_period"]["decided_cut"] = policy in (None, "detector")
    s["splits"] = known_splits(trainer)
    rob = find_robustness(trainer)
    results = getattr(rob, "results", None)
    if results:
        s["robustness"] = {
            k: results.get(k)
            for k in ("clean_acc", "fgsm_acc", "pgd_acc", "corruption_acc")
            if k in results
        }
        if results.get("data"):
            s["robustness"]["data"] = results["data"]
    explain_saving(s)
    return to_jsonable(s)


def _size(loaders: Any) -> int | None:
    """The number of samples in a dataloader's (or a list of them) data set, if it says."""
    loaders = loaders if isinstance(loaders, (list, tuple)) else [loaders]
    try:
        sizes = [len(dl.dataset) for dl in loaders if dl is not None]
    except Exception:  # noqa: BLE001 - an iterable data set has no length
        return None
    return sum(sizes) if sizes else None


def _data(trainer: Any, split: str) -> str | None:
    """The ``split`` dataloader's data and size as a noun phrase (``None`` without one)."""
    try:
        loaders = getattr(trainer, f"{split}_dataloaders", None)
    except Exception:  # noqa: BLE001 - not set up
        loaders = None
    if loaders is None:
        return None
    n = _size(loaders)
    limit = getattr(trainer, f"limit_{split}_batches", 1.0)
    size = "" if n is None else f" ({n} samples" + (")" if limit == 1.0 else ", batches limited)")
    return f"the {split} dataloader's data{size}"


def known_splits(trainer: Any) -> dict[str, str] | None:
    """What each split of a fit is, as far as it is known: the datamodule's ``split_names``
    when it has them, else the validation data, its size and how often it was evaluated.

    Example:
        >>> class T: val_dataloaders = None
        >>> known_splits(T()) is None
        True
    """
    try:  # the datamodule's own description
        names = getattr(getattr(trainer, "datamodule", None), "split_names", None)
    except Exception:  # noqa: BLE001 - a summary must not fail a finished run
        names = None
    if isinstance(names, Mapping):
        return dict(names)
    val = _data(trainer, "val")
    if val is None:
        return None
    n = getattr(trainer, "check_val_every_n_epoch", 1) or 1
    return {"val": f"{val}, evaluated every " + ("epoch" if n == 1 else f"{n} epochs")}


def add_evaluation(s: dict[str, Any], entry: Mapping[str, Any], trainer: Any = None) -> None:
    """Add a ``trainer.validate`` / ``trainer.test`` run after the fit (``entry``: ``{"stage",
    "epoch", "metrics"}``) to a summary: ``evaluations``, the split it evaluated, the test
    accuracy and, when the summary's ``accuracy_key`` was logged only there, ``val_acc``.

    Example:
        >>> s = empty_summary()
        >>> s["accuracy_key"] = "test_acc"
        >>> add_evaluation(s, {"stage": "test", "epoch": 9, "metrics": {"test_acc": 0.8}})
        >>> s["val_acc"], s["accuracy_from"], s["test_acc"], s["test_accuracy_key"]
        (0.8, 'test', 0.8, 'test_acc')
    """
    stage = str(entry.get("stage"))
    metrics = entry.get("metrics") or {}
    s["evaluations"] = [*(s.get("evaluations") or []), dict(entry)]
    key = s.get("accuracy_key")
    if key in metrics and (s.get("val_acc") is None or s.get("accuracy_from") is not None):
        s["val_acc"], s["accuracy_from"] = _finite(metrics[key]), stage
    if stage == "test":
        found = next((k for k in TEST_ACCURACY_KEYS if _finite(metrics.get(k)) is not None), None)
        if found is not None:
            s["test_acc"], s["test_accuracy_key"] = _finite(metrics[found]), found
    split = "test" if stage == "test" else "val"
    data = _data(trainer, split) if trainer is not None else None
    splits = dict(s.get("splits") or {})
    after = f"evaluated after the fit (trainer.{stage})"
    if split not in splits:
        splits[split] = f"{data or f'the {split} data'}, {after}"
    elif "after the fit" not in splits[split]:
        splits[split] += f"; {after}"
    s["splits"] = splits


def explain_saving(s: dict[str, Any]) -> dict[str, Any]:
    """Fill ``theoretical_saving``, ``saved`` and ``saving_note`` of a summary from its ``cut``,
    ``epochs``, ``max_epochs``, ``critical_period`` and ``diverged``."""
    cut = s.get("cut") or {}
    epochs = s.get("epochs") or 0
    horizon = s.get("max_epochs") or epochs or None
    k_before, k_after = cut.get("multiplicity_before"), cut.get("multiplicity_after")
    cut_epoch = cut.get("cut_epoch")
    plan = cut.get("plan")
    s["theoretical_saving"] = theoretical_saving(k_before, k_after, cut_epoch, horizon, plan)
    s["saved"] = False
    if not cut:
        s["saving_note"] = "nothing saved: the run has no cut (no cut callback, k unknown)"
    elif cut_epoch is None:
        why = "k was never cut"
        cp, diverged = s.get("critical_period"), s.get("diverged")
        if diverged:
            why += f" (the run diverged in epoch {diverged.get('epoch')}: {diverged.get('cause')})"
        elif cp is not None and not cp.get("over"):
            why += f" (the critical period was not over within {epochs} epochs)"
        s["saving_note"] = f"nothing saved: {why}"
    elif epochs and cut_epoch >= epochs:
        s["saving_note"] = (
            f"nothing saved: the cut was decided at the end of the last epoch ({epochs - 1}), "
            "so no epoch ran at the reduced k"
        )
    elif k_before is not None and k_after is not None and k_after >= k_before:
        s["saving_note"] = f"nothing saved: k went from {k_before} to {k_after}"
    else:
        bound = s["theoretical_saving"]
        where = f"the cut at epoch {cut_epoch}" + (f" of {horizon}" if horizon else "")
        if bound is not None and bound < NEGLIGIBLE:
            s["saving_note"] = (
                f"almost nothing saved: {where} can save at most {bound:.1%} of the compute"
            )
        else:
            s["saved"] = True
            limit = "" if bound is None else f" (at most {bound:.1%} of the compute)"
            to = " -> ".join(str(k) for _, k in plan) if plan else k_after  # a staged cut
            s["saving_note"] = f"{where} from k={k_before} to k={to}{limit}"
    return s
