"""What a run cost in compute, and how its energy was measured, read from ``energy.json``
(and the metric rows): :func:`flops`, :func:`params`, :func:`multiplicity_sum`,
:func:`energy_method`, :func:`energy_detail`, :func:`saving_check`.

Every reader degrades to ``None`` for a run that predates the field (see the
:mod:`critical.report` docstring, "Compute and cost"). Reads :class:`~critical.report.runs.Run`
only; no matplotlib.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from critical.report.runs import Run, _finite, _num

__all__ = [
    "energy_detail",
    "energy_method",
    "flops",
    "multiplicity_sum",
    "params",
    "recorded_theoretical_saving",
    "saving_check",
]


def _energy(run: Run) -> dict[str, Any]:
    return run.energy if isinstance(run.energy, dict) else {}


def flops(run: Run) -> float | None:
    """Total training FLOPs: ``energy.json["total"]["flops"]``, else the sum of the
    ``energy/flops`` column when every epoch row has it."""
    total = _energy(run).get("total")
    v = _num(total.get("flops")) if isinstance(total, Mapping) else None
    if v is not None:
        return v
    values = [r.get("energy/flops") for r in run.rows]
    nums = [float(x) for x in values if _finite(x)]
    return float(sum(nums)) if values and len(nums) == len(values) else None


def params(run: Run) -> float | None:
    """``energy.json["model"]["params"]`` (the model's parameter count)."""
    model = _energy(run).get("model")
    return _num(model.get("params")) if isinstance(model, Mapping) else None


def recorded_theoretical_saving(run: Run) -> float | None:
    """``energy.json["theoretical_saving"]`` (a fraction), as the run recorded it."""
    return _num(_energy(run).get("theoretical_saving"))


def multiplicity_sum(run: Run) -> float | None:
    """The sum over the epoch rows of k (``multiplicity``): training compute in units of one
    k = 1 epoch; ``None`` when a row lacks it."""
    ks = [r.get("multiplicity") for r in run.rows]
    nums = [float(k) for k in ks if _finite(k) and k > 0]
    return float(sum(nums)) if ks and len(nums) == len(ks) else None


def energy_method(run: Run) -> str | None:
    """How the run's energy was obtained: ``energy.json["energy_method"]`` (``"measured"``: every
    tracked component by hardware counters or sensors, ``"partly estimated"``, ``"estimated"``),
    else derived from ``energy.json["measurement"]`` by the same rule; ``"not recorded"`` for an
    older run with energy figures but no record of the method; ``None`` without energy."""
    e = _energy(run)
    if not e:
        return None
    method = e.get("energy_method")
    if isinstance(method, str) and method:
        return method
    tracked = _tracked(e)
    available = e.get("energy_available")
    if tracked and available is not False:
        measured = [c for c in tracked.values() if c.get("measured")]
        if len(measured) == len(tracked):
            return "measured"
        return "partly estimated" if measured else "estimated"
    total = e.get("total")
    has_energy = isinstance(total, Mapping) and _finite(total.get("energy_kwh"))
    return "not recorded" if has_energy else None


def _tracked(e: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    m = e.get("measurement")
    if not isinstance(m, Mapping):
        return {}
    return {
        str(name): c
        for name, c in m.items()
        if isinstance(c, Mapping) and c.get("method") not in (None, "", "none")
    }


def energy_detail(run: Run) -> str | None:
    """Per component how its energy was obtained, e.g. ``"CPU measured (intel_rapl); RAM
    estimated (ram_model)"``: ``energy.json["energy_method_detail"]``, else built from
    ``energy.json["measurement"]`` (each component's ``method``); ``None`` when not recorded."""
    e = _energy(run)
    detail = e.get("energy_method_detail")
    if isinstance(detail, str) and detail:
        return detail
    tracked = _tracked(e)
    if not tracked:
        return None
    return "; ".join(
        f"{name.upper()} {'measured' if c.get('measured') else 'estimated'} "
        f"({c.get('detail') or c.get('method')})"
        for name, c in tracked.items()
    )


def saving_check(run: Run) -> dict[str, Any] | None:
    """``energy.json["saving_check"]`` (``agrees``: the run's measured counterfactual saving
    agrees with its FLOPs-based one within the noise; ``message``), ``None`` when absent."""
    check = _energy(run).get("saving_check")
    return dict(check) if isinstance(check, Mapping) else None
