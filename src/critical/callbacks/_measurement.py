"""How codecarbon obtains each component's power, read from its hardware objects, for
:class:`~critical.callbacks.EnergyTracker`.

Codecarbon 3.x decides at set-up (and only logs, below its default log level) how it gets
each component's power; :func:`describe_measurement` reads it back from the tracker's hardware
objects (private attributes, read defensively: never raises) after the probe task: CPU by RAPL
(Linux ``/sys/class/powercap``), the Windows Energy Meter Interface, Intel Power Gadget or
powermetrics (energy counters: measured), or, without any, codecarbon's CPU-load model
``TDP x (0.1 + 0.9 load^3)`` with a TDP from its table, the user (``force_cpu_power``) or a
default of 4 W per thread (estimated); NVIDIA / AMD GPUs by the NVML / AMD SMI energy counter
(measured; power readings averaged over time where a GPU has no counter); RAM by codecarbon's
model (a few W per estimated DIMM, from the total memory: estimated) unless
``force_ram_power`` is given (a constant: estimated too).
"""

from __future__ import annotations

from typing import Any

__all__ = ["describe_measurement", "estimated_message", "summarize_measurement"]

_TDP_IN_TABLE: dict[str, bool] = {}


def estimated_message(measurement: dict[str, dict[str, Any]] | None) -> str | None:
    """One warning naming the components whose power is estimated, ``None`` if none is."""
    estimated = {k: v for k, v in (measurement or {}).items() if v["method"] and not v["measured"]}
    if not estimated:
        return None
    return (
        "energy is estimated, not measured, for "
        + "; ".join(f"{k.upper()}: {v['detail']}" for k, v in estimated.items())
        + ". The figures compare runs on this machine; they are not measurements (see "
        "'measurement' and 'energy_method' in energy.json / the run summary)."
    )


_CPU_COUNTERS = {
    "intel_rapl": "RAPL energy counters (/sys/class/powercap)",
    "windows_emi": "Windows Energy Meter Interface (RAPL)",
    "intel_power_gadget": "Intel Power Gadget",
}


def _component(method: str | None, measured: bool, detail: str) -> dict[str, Any]:
    return {"method": method, "measured": measured, "detail": detail}


def _tdp_source(tracker: Any, model: str, tdp: Any) -> str:
    if getattr(tracker, "_force_cpu_power", None) is not None:
        return "given by force_cpu_power"
    if model not in _TDP_IN_TABLE:
        try:
            from codecarbon.core import cpu
            from codecarbon.core.hardware_cache import get_cached_tdp

            _TDP_IN_TABLE[model] = bool(get_cached_tdp(cpu)._get_cpu_power_from_registry(model))
        except Exception:  # noqa: BLE001 - informative only
            return "source unknown"
    if _TDP_IN_TABLE[model]:
        return f"codecarbon's TDP table for {model!r}"
    return f"codecarbon's default of 4 W per thread: {model!r} is not in its TDP table"


def _describe_cpu(tracker: Any, hw: Any) -> dict[str, Any]:
    name = type(hw).__name__
    if name == "AppleSiliconChip":
        return _component("powermetrics", True, "Apple powermetrics")
    if name == "Raspberry":
        return _component("raspberry_pmic", True, "Raspberry Pi PMIC readings")
    mode = getattr(hw, "_mode", None)
    if mode in _CPU_COUNTERS:
        return _component(mode, True, _CPU_COUNTERS[mode])
    model = str(getattr(hw, "_model", "") or "unknown CPU")
    tdp = getattr(hw, "_tdp", None)
    source = _tdp_source(tracker, model, tdp)
    if mode == "cpu_load":
        scope = (
            "whole-machine CPU load (other jobs included)"
            if getattr(hw, "_tracking_mode", "machine") == "machine"
            else "this process's CPU time"
        )
        return _component(
            "cpu_load",
            False,
            f"codecarbon's CPU-load model TDP x (0.1 + 0.9 load^3) on the {scope}, TDP {tdp} W "
            f"({source})",
        )
    if mode == "constant":
        return _component("constant", False, f"constant 50% of a TDP of {tdp} W ({source})")
    return _component(str(mode), False, f"unrecognised codecarbon CPU mode {mode!r}")


def _describe_gpu(tracker: Any, hw: Any) -> dict[str, Any]:
    name = type(hw).__name__
    if name == "AppleSiliconChip":
        return _component("powermetrics", True, "Apple powermetrics")
    devices = list(getattr(getattr(hw, "devices", None), "devices", None) or [])
    kind = "nvml" if any("Nvidia" in type(d).__name__ for d in devices) else "amdsmi"
    label = "NVML" if kind == "nvml" else "AMD SMI"
    model = (getattr(tracker, "_conf", {}) or {}).get("gpu_model") or f"{len(devices)} GPU(s)"
    if devices and all(getattr(d, "_has_counter", False) for d in devices):
        return _component(f"{kind}_energy_counter", True, f"{label} energy counter of {model}")
    return _component(
        f"{kind}_power",
        True,
        f"{label} power readings averaged over time for {model} (no energy counter on some GPU)",
    )


def _describe_ram(tracker: Any, hw: Any) -> dict[str, Any]:
    if type(hw).__name__ == "Raspberry":
        return _component("raspberry_pmic", True, "Raspberry Pi PMIC readings of the DRAM rails")
    forced = getattr(hw, "_force_ram_power", None)
    if forced is not None:
        return _component("constant", False, f"constant {forced} W given by force_ram_power")
    try:
        watts: Any = f"{float(hw.total_power().W):.3g}"
    except Exception:  # noqa: BLE001 - informative only
        watts = "?"
    size = (getattr(tracker, "_conf", {}) or {}).get("ram_total_size")
    memory = f"{size:.1f} GB" if isinstance(size, (int, float)) else "the memory"
    return _component(
        "ram_model",
        False,
        f"codecarbon's RAM model: {memory} -> {watts} W (a few W per estimated DIMM), constant",
    )


def describe_measurement(tracker: Any) -> dict[str, dict[str, Any]]:
    """How ``tracker`` obtains the power of the CPU, the GPU and the RAM: per component
    ``{"method", "measured", "detail"}``; ``measured`` is true for hardware energy counters or
    power sensors (RAPL, NVML, ...), false for codecarbon's models and constants. A component
    codecarbon does not track has ``method`` ``None``. Never raises."""
    out = {
        "cpu": _component(None, False, "no CPU tracked"),
        "gpu": _component(None, False, "no GPU tracked"),
        "ram": _component(None, False, "no RAM tracked"),
    }
    try:
        hardware = list(getattr(tracker, "_hardware", None) or [])
    except Exception:  # noqa: BLE001
        hardware = []
    if not hardware:
        unknown = _component("unknown", False, "codecarbon's hardware list could not be read")
        return {"cpu": dict(unknown), "gpu": dict(out["gpu"]), "ram": dict(unknown)}
    for hw in hardware:
        name = type(hw).__name__
        try:
            if name == "RAM" or (name == "Raspberry" and getattr(hw, "chip_part", "") == "RAM"):
                out["ram"] = _describe_ram(tracker, hw)
            elif name == "GPU" or (
                name == "AppleSiliconChip" and getattr(hw, "chip_part", "") == "GPU"
            ):
                out["gpu"] = _describe_gpu(tracker, hw)
            elif name in ("CPU", "AppleSiliconChip", "Raspberry"):
                out["cpu"] = _describe_cpu(tracker, hw)
        except Exception as e:  # noqa: BLE001 - informative only
            key = "gpu" if name == "GPU" else "ram" if name == "RAM" else "cpu"
            out[key] = _component("unknown", False, f"could not be read ({e!r})")
    return out


def summarize_measurement(
    measurement: dict[str, dict[str, Any]] | None, total: dict[str, Any], available: bool
) -> dict[str, Any]:
    """``energy_measured``, ``energy_method``, ``energy_method_detail`` and ``measurement`` (each
    component with its ``share`` of the total energy) for a summary. ``energy_method`` is
    ``"measured"`` (every tracked component by hardware counters or sensors), ``"partly
    estimated"``, ``"estimated"`` or ``None`` (no energy figures); pure, no codecarbon.

    Example:
        >>> m = {"cpu": {"method": "cpu_load", "measured": False, "detail": "model"},
        ...      "gpu": {"method": None, "measured": False, "detail": "no GPU tracked"},
        ...      "ram": {"method": "ram_model", "measured": False, "detail": "20 W"}}
        >>> s = summarize_measurement(m, {"energy_kwh": 1.0, "cpu_energy_kwh": 0.3,
        ...                               "ram_energy_kwh": 0.7, "gpu_energy_kwh": 0.0}, True)
        >>> s["energy_method"], s["energy_measured"], s["measurement"]["ram"]["share"]
        ('estimated', False, 0.7)
        >>> s["energy_method_detail"]
        'CPU estimated (model, 30% of the energy); RAM estimated (20 W, 70% of the energy)'
    """
    out: dict[str, Any] = {
        "energy_measured": False,
        "energy_method": None,
        "energy_method_detail": None,
        "measurement": None,
    }
    if measurement is None:
        return out
    energy = total.get("energy_kwh")
    components: dict[str, dict[str, Any]] = {}
    for name, comp in measurement.items():
        part = total.get(f"{name}_energy_kwh")
        share = part / energy if available and part is not None and energy else None
        components[name] = {**comp, "share": share}
    out["measurement"] = components
    tracked = {n: c for n, c in components.items() if c.get("method") is not None}
    if not available or not tracked:
        return out
    measured = [n for n, c in tracked.items() if c.get("measured")]
    out["energy_measured"] = len(measured) == len(tracked)
    out["energy_method"] = (
        "measured" if out["energy_measured"] else "partly estimated" if measured else "estimated"
    )
    parts = []
    for name, c in tracked.items():
        share = "" if c["share"] is None else f", {c['share']:.0%} of the energy"
        how = "measured" if c.get("measured") else "estimated"
        parts.append(f"{name.upper()} {how} ({c.get('detail')}{share})")
    out["energy_method_detail"] = "; ".join(parts)
    return out
