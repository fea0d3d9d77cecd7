"""The saving check: whether a run's measured saving (time, energy) agrees with its compute
(FLOPs-based) saving within the noise of the pre-cut epochs (used by
:func:`critical.accounting.phase_summary`). Pure Python.

:func:`saving_check` compares each measured saving fraction (time, energy) with the compute
saving fraction (FLOPs-based; the samples-based fraction, equal to it for a fixed input shape,
where FLOPs were not counted). The rule: the noise ``s`` of a quantity is the relative spread
of its per-epoch per-sample costs ``c_e`` over the epochs the estimate used (1.4826 x median
absolute deviation / median; unknown with a single epoch). The tolerance is how far the
measured fraction moves when the per-sample cost is off by ``2 s`` either way, and at least
``floor`` (2 points; 5 points when the noise is unknown). A fraction further than the tolerance
from the compute fraction disagrees: above it, the pre-cut epochs cost more per sample than the
compute explains (typically other jobs loading the machine before the cut) and the measured
saving is overstated; below it, costs that do not scale with the samples (validation, per-epoch
overhead, a busier machine after the cut) dominate.

Example:
    >>> from critical.accounting import cut_boundary, phase_summary
    >>> history = [{"epoch": e, "multiplicity": 3 if e < 2 else 1, "samples": 300 if e < 2
    ...             else 100, "duration_s": 3.0 if e < 2 else 1.0} for e in range(4)]
    >>> phase_summary(history, cut_boundary(history))["saving_check"]["reference"]
    'samples'
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["CHECKED", "FLOOR", "FLOOR_UNKNOWN_NOISE", "MAX_TOLERANCE", "saving_check"]

#: the measured savings :func:`saving_check` compares with the compute saving
CHECKED = ("duration_s", "energy_kwh")
#: the smallest tolerance of the check, with the noise known / unknown
FLOOR, FLOOR_UNKNOWN_NOISE = 0.02, 0.05
#: a tolerance band wider than this (in saving-fraction units) checks nothing: "cannot check"
MAX_TOLERANCE = 0.25


def _fraction_at(accounts: Mapping[str, Any], q: str, per_sample: float) -> float | None:
    """The saving fraction of ``q`` had the per-sample cost before the cut been ``per_sample``."""
    before = accounts["phases"]["before"][q]
    after = accounts["phases"]["after"][q]
    cf = per_sample * accounts["counterfactual_after"]["samples"]
    base = before + cf
    return (cf - after) / base if base > 0 else None


def saving_check(accounts: Mapping[str, Any]) -> dict[str, Any] | None:
    """Compare the measured saving fractions (time, energy) with the compute saving fraction
    (the rule is in the module docstring). ``None`` without a counterfactual (no cut, no
    epoch after it, or none before it).

    Keys: ``reference`` (``"flops"`` or ``"samples"``), ``compute_fraction``, per checked
    quantity in ``checks``: ``fraction``, ``noise`` (relative spread, ``None``: unknown),
    ``tolerance``, ``agrees``; ``agrees`` (all checked quantities; ``None`` when none could be
    checked) and a one-line ``message``.
    """
    fractions = accounts.get("saving_fraction")
    if not fractions:
        return None
    reference, compute = "flops", fractions.get("flops")
    if compute is None:
        reference, compute = "samples", fractions.get("samples")
    if compute is None:
        return None
    checks: dict[str, Any] = {}
    for q in CHECKED:
        f = fractions.get(q)
        p = (accounts.get("per_sample_before") or {}).get(q)
        if f is None or p is None:
            continue
        s = (accounts.get("per_sample_spread") or {}).get(q)
        tol = FLOOR if s is not None else FLOOR_UNKNOWN_NOISE
        if s is not None:
            for factor in (1 + 2 * s, max(1 - 2 * s, 0.0)):
                moved = _fraction_at(accounts, q, p * factor)
                if moved is not None:
                    tol = max(tol, abs(moved - f))
        checks[q] = {
            "fraction": f,
            "noise": s,
            "tolerance": tol,
            "agrees": abs(f - compute) <= tol if tol <= MAX_TOLERANCE else None,
        }
    names = {"duration_s": "time", "energy_kwh": "energy"}
    ref = f"the {'FLOPs' if reference == 'flops' else 'samples'}-based {compute:.1%}"
    noisy = [q for q, c in checks.items() if c["agrees"] is None]
    if noisy and len(noisy) == len(checks):
        bands = ", ".join(f"{names[q]} ±{checks[q]['tolerance']:.1%}" for q in noisy)
        return {
            "reference": reference,
            "compute_fraction": compute,
            "checks": checks,
            "agrees": None,
            "message": (
                f"cannot check the measured saving against {ref}: the pre-cut epochs are too "
                f"noisy ({bands}, wider than ±{MAX_TOLERANCE:.0%}; another load on the machine?)"
            ),
        }
    checks_noisy = {q: checks.pop(q) for q in noisy}
    if not checks:
        return {
            "reference": reference,
            "compute_fraction": compute,
            "checks": checks,
            "agrees": None,
            "message": f"no measured saving to check against {ref}",
        }
    high = [q for q, c in checks.items() if not c["agrees"] and c["fraction"] > compute]
    low = [q for q, c in checks.items() if not c["agrees"] and c["fraction"] < compute]

    def listing(qs: Sequence[str]) -> str:
        return ", ".join(
            f"{names[q]} {checks[q]['fraction']:.1%} ±{checks[q]['tolerance']:.1%}" for q in qs
        )

    if high:
        message = (
            f"the measured saving exceeds {ref} by more than the noise ({listing(high)}): the "
            "pre-cut epochs cost more per sample than their compute explains (other load on the "
            "machine before the cut?); the measured saving is overstated"
        )
    elif low:
        message = (
            f"the measured saving falls short of {ref} by more than the noise ({listing(low)}): "
            "costs that do not scale with the samples (validation, per-epoch overhead) or a "
            "busier machine after the cut"
        )
    else:
        message = (
            f"the measured saving agrees with {ref} within the noise ({listing(list(checks))})"
        )
    if checks_noisy:
        message += "; " + ", ".join(
            f"{names[q]} not checked (too noisy: ±{c['tolerance']:.1%})"
            for q, c in checks_noisy.items()
        )
    return {
        "reference": reference,
        "compute_fraction": compute,
        "checks": {**checks, **checks_noisy},
        "agrees": not (high or low),
        "message": message,
    }
