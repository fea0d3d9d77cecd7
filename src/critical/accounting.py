r"""Energy accounting: per-phase totals and the counterfactual saving of a cut, from per-epoch
records. Pure Python (no Lightning, no codecarbon, no torch), so it is testable on its own.

An epoch record is a mapping with ``epoch``, ``multiplicity`` (k, or ``None``), ``duration_s``,
``samples`` and the energy fields ``energy_kwh``, ``co2_kg``, ``cpu_energy_kwh``,
``gpu_energy_kwh``, ``ram_energy_kwh`` and ``cost`` (``None`` where not measured).

Phases and the counterfactual saving
------------------------------------
Epochs before the cut form phase ``"before"``, the others phase ``"after"``. The saving is the
cost the ``after`` epochs would have had at the old k minus their measured cost::

    per_sample_before[q] = sum_before(q) / sum_before(samples)      q in time, energy, CO2, money
    cf_samples(e)       = min(samples(e) * k_before / k(e), mean samples per "before" epoch)
    counterfactual[q]   = per_sample_before[q] * sum over "after" epochs of cf_samples(e)
    saving[q]           = counterfactual[q] - sum_after(q)

Assumptions: the cost of a training sample is stationary (the same model, hardware, batch size
and throughput before and after the cut); an epoch at the old k has as many samples as the
average ``before`` epoch (the cap keeps an integer ``limit_train_batches``, which bounds an epoch
whatever k, from inventing a saving, while a partial last epoch is scaled down); the cost of
validation and other per-epoch overhead is folded into the per-sample cost. Without
multiplicities, ``cf_samples(e)`` is the mean ``before`` epoch's samples.

Example:
    >>> history = [
    ...     {"epoch": 0, "multiplicity": 3, "samples": 300, "duration_s": 3.0},
    ...     {"epoch": 1, "multiplicity": 1, "samples": 100, "duration_s": 1.0},
    ... ]
    >>> s = phase_summary(history, cut_boundary(history))
    >>> s["saving"]["duration_s"], round(s["saving_fraction"]["duration_s"], 3)
    (2.0, 0.333)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from critical.runfiles import cut_from_multiplicities

__all__ = [
    "ENERGY_FIELDS",
    "QUANTITIES",
    "cut_boundary",
    "phase",
    "phase_summary",
    "totals",
]

#: the quantities a saving is computed for
QUANTITIES = ("duration_s", "energy_kwh", "co2_kg", "cost")
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
    """``epochs``, ``samples``, and the sum of time, every energy field and cost."""
    out: dict[str, Any] = {
        "epochs": len(entries),
        "samples": int(sum(e["samples"] for e in entries)),
    }
    for q in ("duration_s", *ENERGY_FIELDS, "cost"):
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


def phase_summary(history: Sequence[Record], boundary: Mapping[str, Any]) -> dict[str, Any]:
    """Totals, per-phase totals and the counterfactual saving (see the module docstring).

    Keys: ``total``, ``phases`` (``before``, ``after``), ``per_sample_before``,
    ``counterfactual_after`` (``samples`` and the quantities), ``saving``, ``saving_fraction``
    (saving over the whole run's counterfactual cost). What cannot be computed is ``None``.
    """
    cut = boundary.get("cut_epoch")
    before = [h for h in history if phase(h["epoch"], cut) == "before"]
    after = [h for h in history if phase(h["epoch"], cut) == "after"]
    tot_before, tot_after = totals(before), totals(after)
    out: dict[str, Any] = {
        "total": totals(history),
        "phases": {"before": tot_before, "after": tot_after},
        "per_sample_before": None,
        "counterfactual_after": None,
        "saving": None,
        "saving_fraction": None,
    }
    if not before or tot_before["samples"] <= 0:
        return out
    per_sample = {
        q: (None if tot_before[q] is None else tot_before[q] / tot_before["samples"])
        for q in QUANTITIES
    }
    out["per_sample_before"] = per_sample
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
    for q in QUANTITIES:
        ps = per_sample[q]
        if ps is None or tot_after[q] is None:
            counterfactual[q] = saving[q] = fraction[q] = None
            continue
        counterfactual[q] = ps * cf_samples
        saving[q] = counterfactual[q] - tot_after[q]
        baseline = tot_before[q] + counterfactual[q]
        fraction[q] = saving[q] / baseline if baseline > 0 else None
    out["counterfactual_after"] = counterfactual
    out["saving"] = saving
    out["saving_fraction"] = fraction
    return out
