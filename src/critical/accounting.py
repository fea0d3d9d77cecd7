r"""Cost accounting: per-phase totals, the counterfactual saving of a cut, the theoretical saving
and a check of the measured saving against the compute saving, from per-epoch records. Pure
Python (no Lightning, no codecarbon, no torch), so it is testable on its own.

An epoch record is a mapping with ``epoch``, ``multiplicity`` (k, or ``None``), ``duration_s``,
``samples``, ``flops`` (training FLOPs of the epoch, ``None`` where not counted) and the energy
fields ``energy_kwh``, ``co2_kg``, ``cpu_energy_kwh``, ``gpu_energy_kwh``, ``ram_energy_kwh``
and ``cost`` (``None`` where not measured).

Phases and the counterfactual saving
------------------------------------
Epochs before the cut form phase ``"before"``, the others phase ``"after"``. The saving is the
cost the ``after`` epochs would have had at the old k minus their measured cost::

    c_e[q]              = q(e) / samples(e)       per-sample cost of a "before" epoch e
    per_sample_before[q] = median of c_e[q] over the "before" epochs, the run's first epoch left
                          out when another "before" epoch exists (it pays the warm-up)
    cf_samples(e)       = min(samples(e) * k_before / k(e), mean samples per "before" epoch)
    counterfactual[q]   = per_sample_before[q] * sum over "after" epochs of cf_samples(e)
    saving[q]           = counterfactual[q] - sum_after(q)
    saving_fraction[q]  = saving[q] / (sum_before(q) + counterfactual[q])

for q in time, energy, CO2, money and FLOPs. The median makes the estimate robust to a few
epochs slowed by other jobs; a machine loaded through the whole pre-cut phase still inflates it,
which is what :func:`saving_check` catches. Assumptions: the cost of a training sample is
stationary (same model, hardware, batch size and throughput before and after the cut); an epoch
at the old k has as many samples as the average ``before`` epoch (the cap keeps an integer
``limit_train_batches``, which bounds an epoch whatever k, from inventing a saving, while a
partial last epoch is scaled down); validation and other per-epoch overhead is folded into the
per-sample cost (so it is counted once per counterfactual epoch, as it would have been paid).
FLOPs count training only (forward + backward of the training samples), not validation.

The theoretical saving
----------------------
:func:`theoretical_saving`: the FLOPs saving of a cut at epoch e of E epochs from k_b to k_a
when every epoch is complete, ``1 - (k_b e + k_a (E - e)) / (k_b E)``: the most a cut can save.

The saving check
----------------
:func:`saving_check` (in :mod:`critical.saving_check`, re-exported here) compares the measured
saving fractions with the compute saving fraction, within the noise of the pre-cut epochs.

Example:
    >>> history = [
    ...     {"epoch": 0, "multiplicity": 3, "samples": 300, "duration_s": 3.0},
    ...     {"epoch": 1, "multiplicity": 1, "samples": 100, "duration_s": 1.0},
    ... ]
    >>> s = phase_summary(history, cut_boundary(history))
    >>> s["saving"]["duration_s"], round(s["saving_fraction"]["duration_s"], 3)
    (2.0, 0.333)
    >>> round(theoretical_saving(3, 1, cut_epoch=5, max_epochs=30), 4)
    0.5556
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from typing import Any

from critical.runfiles import cut_from_multiplicities
from critical.saving_check import CHECKED, saving_check

__all__ = [
    "CHECKED",
    "ENERGY_FIELDS",
    "QUANTITIES",
    "cut_boundary",
    "phase",
    "phase_summary",
    "saving_check",
    "summary_scalars",
    "theoretical_saving",
    "totals",
]

#: the quantities a saving is computed for (``flops``: training FLOPs, counted, not measured)
QUANTITIES = ("duration_s", "energy_kwh", "co2_kg", "cost", "flops")
#: the fields measured by codecarbon (``None`` when not measured)
ENERGY_FIELDS = ("energy_kwh", "co2_kg", "cpu_energy_kwh", "gpu_energy_kwh", "ram_energy_kwh")

Record = Mapping[str, Any]


def _sum(entries: Sequence[Record], key: str) -> float | None:
    """The sum of ``key`` over ``entries``; ``None`` if any entry lacks a value."""
    values = [e.get(key) for e in entries]
    present = [v for v in values if v is not None]
    if len(present) < len(values):
        return None
    return float(sum(present))


def totals(entries: Sequence[Record]) -> dict[str, Any]:
    """``epochs``, ``samples``, and the sum of time, every energy field, cost and FLOPs."""
    out: dict[str, Any] = {
        "epochs": len(entries),
        "samples": int(sum(e["samples"] for e in entries)),
    }
    for q in ("duration_s", *ENERGY_FIELDS, "cost", "flops"):
        out[q] = _sum(entries, q)
    return out


def cut_boundary(
    history: Sequence[Record], cutoff: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """Where the run was cut: ``cut_epoch`` (``None``: no cut), ``source`` and k before/after.

    ``cutoff`` is what the augmentation-cut callback reported (``cut_epoch``,
    ``multiplicity_before``, ``multiplicity_after``); without it the cut is the first epoch
    whose multiplicity differs from the first epoch's.
    """
    if cutoff is not None:
        cut = cutoff.get("cut_epoch")
        return {
            "cut_epoch": None if cut is None else int(cut),
            "source": "cutoff",
            "multiplicity_before": cutoff.get("multiplicity_before"),
            "multiplicity_after": cutoff.get("multiplicity_after") if cut is not None else None,
        }
    pairs = [(h["epoch"], h.get("multiplicity")) for h in history]
    known = [k for _, k in pairs if k is not None]
    if not known:
        return {
            "cut_epoch": None,
            "source": None,
            "multiplicity_before": None,
            "multiplicity_after": None,
        }
    found = cut_from_multiplicities(pairs)
    if found is None:
        found = {"cut_epoch": None, "multiplicity_before": known[0], "multiplicity_after": None}
    return {
        "cut_epoch": found["cut_epoch"],
        "source": "multiplicity",
        "multiplicity_before": found["multiplicity_before"],
        "multiplicity_after": found["multiplicity_after"],
    }


def phase(epoch: int, cut_epoch: int | None) -> str:
    """``"after"`` for epochs at or after the cut, else ``"before"``."""
    return "after" if cut_epoch is not None and epoch >= cut_epoch else "before"


def theoretical_saving(
    k_before: float | None,
    k_after: float | None,
    cut_epoch: int | None,
    max_epochs: int | None,
    plan: Sequence[Sequence[float]] | None = None,
) -> float | None:
    """The compute saving of a cut from ``k_before`` to ``k_after`` at ``cut_epoch`` of
    ``max_epochs`` complete epochs: ``1 - (k_b e + k_a (E - e)) / (k_b E)``. No cut (``cut_epoch``
    ``None``) or a cut at or after ``E`` saves 0; ``None`` when k or E is unknown. A staged cut
    gives its ``plan`` (``[[first epoch, k], ...]`` from the cut on, as
    :attr:`AugmentationCutoff.plan <critical.callbacks.AugmentationCutoff>`): each k counts
    from its first epoch to the next one's.

    Example:
        >>> theoretical_saving(3, 1, None, 10), theoretical_saving(3, 1, 10, 10)
        (0.0, 0.0)
        >>> round(theoretical_saving(3, 1, 9, 10), 4)
        0.0667
        >>> round(theoretical_saving(3, 1, 2, 6, plan=[[2, 2], [4, 1]]), 4)  # 3 -> 2 -> 1
        0.3333
    """
    if not k_before or k_before <= 0 or max_epochs is None or max_epochs <= 0:
        return None
    if cut_epoch is None:
        return 0.0
    if k_after is None:
        return None
    e = min(max(int(cut_epoch), 0), max_epochs)
    if not plan:
        plan = [[e, k_after]]
    firsts = [min(max(int(first), e), max_epochs) for first, _ in plan]
    trained = k_before * e + sum(
        float(k) * (end - first)
        for (_, k), first, end in zip(plan, firsts, [*firsts[1:], max_epochs])
    )
    return 1.0 - trained / (k_before * max_epochs)


def _estimate_epochs(before: Sequence[Record]) -> list[Record]:
    """The ``before`` epochs the per-sample cost is estimated from: those with samples, the
    run's first epoch (warm-up) left out when another one exists."""
    used = [h for h in before if h["samples"] > 0]
    if len(used) > 1:
        first = min(h["epoch"] for h in used)
        used = [h for h in used if h["epoch"] != first]
    return used


def _robust_per_sample(used: Sequence[Record], q: str) -> tuple[float | None, float | None]:
    """Median per-sample cost of ``q`` over ``used`` and its relative spread (1.4826 x MAD /
    median; ``None`` with fewer than 2 epochs). ``(None, None)`` if an epoch lacks ``q``."""
    if not used or any(h.get(q) is None for h in used):
        return None, None
    costs = [float(h[q]) / h["samples"] for h in used]
    median = statistics.median(costs)
    if len(costs) < 2 or median <= 0:
        return median, None
    mad = statistics.median(abs(c - median) for c in costs)
    return median, 1.4826 * mad / median


def phase_summary(history: Sequence[Record], boundary: Mapping[str, Any]) -> dict[str, Any]:
    """Totals, per-phase totals, the counterfactual saving and its check (module docstring).

    Keys: ``total``, ``phases`` (``before``, ``after``), ``per_sample_before`` (robust
    per-sample cost per quantity), ``per_sample_spread`` (its relative spread),
    ``per_sample_epochs`` (the epochs it was estimated from), ``counterfactual_after``
    (``samples`` and the quantities), ``saving``, ``saving_fraction`` (saving over the whole
    run's counterfactual cost, with ``samples``: the samples-based fraction) and
    ``saving_check`` (:func:`saving_check`). What cannot be computed is ``None``.
    """
    cut = boundary.get("cut_epoch")
    before = [h for h in history if phase(h["epoch"], cut) == "before"]
    after = [h for h in history if phase(h["epoch"], cut) == "after"]
    tot_before, tot_after = totals(before), totals(after)
    out: dict[str, Any] = {
        "total": totals(history),
        "phases": {"before": tot_before, "after": tot_after},
        "per_sample_before": None,
        "per_sample_spread": None,
        "per_sample_epochs": None,
        "counterfactual_after": None,
        "saving": None,
        "saving_fraction": None,
        "saving_check": None,
    }
    used = _estimate_epochs(before)
    if not used:
        return out
    per_sample: dict[str, Any] = {}
    spread: dict[str, Any] = {}
    for q in QUANTITIES:
        per_sample[q], spread[q] = _robust_per_sample(used, q)
    out["per_sample_before"] = per_sample
    out["per_sample_spread"] = spread
    out["per_sample_epochs"] = [int(h["epoch"]) for h in used]
    if not after:
        return out
    mean_before = tot_before["samples"] / len(before)
    k_before = boundary.get("multiplicity_before")
    cf_samples = 0.0
    for h in after:
        k = h.get("multiplicity")
        if k_before and k:
            cf_samples += min(h["samples"] * k_before / k, mean_before)
        else:
            cf_samples += mean_before
    counterfactual: dict[str, Any] = {"samples": cf_samples}
    saving: dict[str, Any] = {}
    fraction: dict[str, Any] = {}
    samples_base = tot_before["samples"] + cf_samples
    fraction["samples"] = (
        (cf_samples - tot_after["samples"]) / samples_base if samples_base > 0 else None
    )
    for q in QUANTITIES:
        ps = per_sample[q]
        if ps is None or tot_after[q] is None or tot_before[q] is None:
            counterfactual[q] = saving[q] = fraction[q] = None
            continue
        counterfactual[q] = ps * cf_samples
        saving[q] = counterfactual[q] - tot_after[q]
        baseline = tot_before[q] + counterfactual[q]
        fraction[q] = saving[q] / baseline if baseline > 0 else None
    out["counterfactual_after"] = counterfactual
    out["saving"] = saving
    out["saving_fraction"] = fraction
    out["saving_check"] = saving_check(out)
    return out


def summary_scalars(summary: Mapping[str, Any], prefix: str = "") -> dict[str, float]:
    """The scalars of a summary with the keys of :func:`phase_summary` (and optionally
    ``theoretical_saving``): ``<prefix>{before,after}_<q>``, ``<prefix>saving_<q>``,
    ``<prefix>saving_fraction_<q>`` for every quantity q that exists, and
    ``<prefix>theoretical_saving``.

    Example:
        >>> history = [{"epoch": 0, "multiplicity": 2, "samples": 20, "duration_s": 2.0},
        ...            {"epoch": 1, "multiplicity": 1, "samples": 10, "duration_s": 1.0}]
        >>> summary_scalars(phase_summary(history, cut_boundary(history)))["saving_duration_s"]
        1.0
    """
    out: dict[str, Any] = {}
    for q in QUANTITIES:
        for name in ("before", "after"):
            out[f"{prefix}{name}_{q}"] = summary["phases"][name][q]
        out[f"{prefix}saving_{q}"] = (summary["saving"] or {}).get(q)
        out[f"{prefix}saving_fraction_{q}"] = (summary["saving_fraction"] or {}).get(q)
    out[f"{prefix}theoretical_saving"] = summary.get("theoretical_saving")
    return {k: float(v) for k, v in out.items() if v is not None}
