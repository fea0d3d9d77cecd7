"""A codecarbon session for :class:`~critical.callbacks.EnergyTracker`: one
``OfflineEmissionsTracker`` driven through codecarbon's task API, that never raises.

Every epoch is a task (``start_task`` / ``stop_task``, which returns an ``EmissionsData`` delta);
reading private attributes of a running tracker would race with codecarbon's background thread.
The caller splits long epochs into consecutive tasks (``EnergyTracker(max_task_secs=...)``, a
clock read per batch, ~1 ms per split), so energy counters are read often enough that a RAPL
counter never wraps twice between two readings (codecarbon corrects one wrap).
Codecarbon's constructor swallows its own exceptions (logging them) and returns a half-built
tracker: those logged exceptions are captured and reported as a failure. Any failure calls
``on_fail(reason)`` once and shuts the tracker down; the caller decides what to tell the user.

Start-up: the first tracker of a process pays two one-off costs, cached by codecarbon for the
process: its static tables (``DataSource``: pandas and a few CSV / JSON files, 0.2-0.8 s) and,
where it estimates the CPU's power from a TDP (no RAPL counters), the CPU model from
``py-cpuinfo``, which runs a Python subprocess that sleeps 1 s to clock the CPU (about 1.2 s of
waiting). :func:`prefetch` starts both in background threads when the ``EnergyTracker`` is
built, so they overlap the set-up before the fit (the Trainer, the data, the model); the country
check reads the energy-mix JSON file itself (no pandas); :meth:`CodecarbonSession.start` waits
for the threads and codecarbon then finds both in its caches: the same calls, the same results,
earlier.
"""

from __future__ import annotations

import inspect
import json
import logging
import math
import os
import re
import sys
import threading
import time
import traceback
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from critical.callbacks._measurement import describe_measurement
from critical.validation import check_keys

__all__ = [
    "CodecarbonSession",
    "accepted_kwargs",
    "check_country",
    "check_kwargs",
    "known_countries",
    "output_directory",
    "prefetch",
    "tracker_settings",
]

_COUNTRIES: frozenset[str] | None = None
_PREFETCH: list[threading.Thread] | None = None
_PREFETCH_LOCK = threading.Lock()
#: longest wait for the background start-up work before codecarbon does it itself
PREFETCH_TIMEOUT_S = 30.0
_ENERGY_MIX = "data/private_infra/global_energy_mix.json"  # what DataSource loads, by name


def _quietly(fn: Callable[[], Any]) -> None:
    try:
        fn()
    except Exception:  # noqa: BLE001 - codecarbon does it again itself, and reports a failure
        pass


def _uses_cpu_model() -> bool:
    """Whether codecarbon will surely read the CPU model for a TDP: Linux without RAPL counters
    (no ``/sys/class/powercap``) and no Raspberry Pi PMIC tool. Elsewhere it may not need it."""
    return (
        sys.platform.startswith("linux")
        and not os.path.exists("/sys/class/powercap")
        and not os.path.exists("/usr/bin/vcgencmd")
    )


def prefetch() -> None:
    """Start codecarbon's one-off start-up work in daemon threads, once per process: its static
    tables (``DataSource().get_global_energy_mix_data()``) and, where :func:`_uses_cpu_model`,
    the CPU model (``codecarbon.core.util.detect_cpu_model``). Nothing on a process other than a
    node's local rank 0 (``LOCAL_RANK``), which runs no tracker, or when codecarbon cannot be
    imported. Never raises."""
    global _PREFETCH
    if os.environ.get("LOCAL_RANK", "0") != "0":
        return
    with _PREFETCH_LOCK:
        if _PREFETCH is not None:
            return
        _PREFETCH = []
        try:
            from codecarbon.core.util import detect_cpu_model
            from codecarbon.input import DataSource
        except Exception:  # noqa: BLE001 - codecarbon missing or broken: reported at fit start
            return
        jobs: list[Callable[[], Any]] = [lambda: DataSource().get_global_energy_mix_data()]
        if _uses_cpu_model():
            jobs.append(detect_cpu_model)
        for job in jobs:
            thread = threading.Thread(target=_quietly, args=(job,), daemon=True)
            try:
                thread.start()
            except RuntimeError:  # no thread can be started: codecarbon does it in the tracker
                return
            _PREFETCH.append(thread)


def _wait_for_prefetch() -> None:
    deadline = time.monotonic() + PREFETCH_TIMEOUT_S
    for thread in _PREFETCH or []:
        thread.join(max(0.0, deadline - time.monotonic()))


def check_country(code: Any) -> str:
    """A 3-letter ISO code in codecarbon's offline energy-mix table (when it can be read)."""
    if not isinstance(code, str) or not re.fullmatch(r"[A-Z]{3}", code):
        raise ValueError(
            "`country_iso_code` must be a 3-letter upper-case ISO 3166 code such as 'USA', "
            f"'FRA', 'DEU', 'GBR', 'CHN', got {code!r}"
        )
    countries = known_countries()
    if countries is not None and code not in countries:
        raise ValueError(
            f"`country_iso_code` {code!r} is not in codecarbon's offline energy-mix table "
            f"(which would silently use a world average); valid codes: "
            f"{', '.join(sorted(countries))}"
        )
    return code


def accepted_kwargs() -> frozenset[str] | None:
    """The keyword arguments ``OfflineEmissionsTracker`` accepts (its own and those of
    ``BaseEmissionsTracker``), or ``None`` if codecarbon cannot be imported."""
    try:
        from codecarbon import OfflineEmissionsTracker
        from codecarbon.emissions_tracker import BaseEmissionsTracker
    except Exception:  # noqa: BLE001 - codecarbon missing or broken: reported at fit start
        return None
    names: set[str] = set()
    for cls in (OfflineEmissionsTracker, BaseEmissionsTracker):
        for name, p in inspect.signature(cls.__init__).parameters.items():
            if name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
                names.add(name)
    return frozenset(names)


def check_kwargs(codecarbon_kwargs: dict[str, Any] | None) -> dict[str, Any]:
    """``EnergyTracker(codecarbon_kwargs=...)`` checked against :func:`accepted_kwargs` (any key
    if codecarbon cannot be imported); a key codecarbon does not accept raises."""
    valid = accepted_kwargs()
    return check_keys(
        "codecarbon_kwargs",
        codecarbon_kwargs,
        valid if valid is not None else codecarbon_kwargs or {},
    )


def tracker_settings(
    country_iso_code: str, region: str | None, measure_power_secs: float, tracking_mode: str
) -> dict[str, Any]:
    """The ``OfflineEmissionsTracker`` arguments an ``EnergyTracker`` sets itself."""
    settings: dict[str, Any] = dict(
        country_iso_code=country_iso_code,
        measure_power_secs=measure_power_secs,
        tracking_mode=tracking_mode,
        project_name="critical",
        allow_multiple_runs=True,
    )
    if region is not None:
        settings["region"] = region
    return settings


def known_countries() -> frozenset[str] | None:
    """The ISO codes of codecarbon's offline energy-mix table, or None if it cannot be read."""
    global _COUNTRIES
    if _COUNTRIES is None:
        try:  # the file DataSource reads, without loading codecarbon's other tables (pandas)
            from importlib.resources import files

            with files("codecarbon").joinpath(_ENERGY_MIX).open(encoding="utf-8") as f:
                _COUNTRIES = frozenset(json.load(f))
        except Exception:  # noqa: BLE001 - not where this codecarbon keeps it: ask DataSource
            try:
                from codecarbon.input import DataSource

                _COUNTRIES = frozenset(DataSource().get_global_energy_mix_data())
            except Exception:  # noqa: BLE001 - codecarbon missing or broken: fit start says so
                return None
    return _COUNTRIES


def output_directory(
    output_dir: str | os.PathLike, run_path: Path | None
) -> tuple[Path | None, str | None]:
    """Where codecarbon writes ``emissions.csv``: ``output_dir`` (created), or the run directory
    for ``"run_dir"``; ``(None, why)`` when that is impossible (never raises)."""
    if os.fspath(output_dir) == "run_dir":
        if run_path is None:
            return None, "output_dir='run_dir' but the trainer has no RunDirectory"
        return Path(run_path), None
    path = Path(output_dir)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        return None, (
            f"output_dir {os.fspath(path)!r} cannot be created ({e!r}); energy is still measured "
            "and training goes on"
        )
    return path, None


class _CaptureSwallowed(logging.Filter):
    """Logger filter: keeps the exceptions codecarbon logs (with ``exc_info``) and lets through
    only the records at or above the user's log level."""

    def __init__(self, level: str) -> None:
        super().__init__()
        self.level = logging.getLevelName(level.upper())
        self.errors: list[BaseException] = []

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and record.exc_info[1] is not None:
            self.errors.append(record.exc_info[1])
        return record.levelno >= self.level


def _describe(e: BaseException) -> str:
    """``repr(e)`` and where it was raised (codecarbon's bare asserts say little by themselves)."""
    frames = traceback.extract_tb(e.__traceback__)
    if not frames:
        return repr(e)
    f = frames[-1]
    return f"{e!r} at {os.path.basename(f.filename)}:{f.lineno}: {f.line}"


class CodecarbonSession:
    """One offline codecarbon tracker, measured task by task.

    Args:
        settings: keyword arguments for ``OfflineEmissionsTracker`` chosen by the caller
            (``country_iso_code``, ``measure_power_secs``, ``tracking_mode``, ...); those the
            installed codecarbon does not accept are dropped.
        log_level: codecarbon's log level.
        output_dir: where codecarbon writes ``emissions.csv`` (``None``: no file).
        extra: the user's own keyword arguments, passed as given (they override ``settings``).
        on_fail: called once with a reason when the tracker cannot be built or fails.

    Attributes:
        hardware: what codecarbon detected (``get_detected_hardware()``), after :meth:`start`.
        measurement: how each component's power is obtained (:func:`describe_measurement`),
            after :meth:`start`.
        task_t0: ``time.perf_counter()`` when the running task started, ``None`` when none runs.
    """

    def __init__(
        self,
        settings: dict[str, Any],
        log_level: str,
        output_dir: Path | None,
        extra: dict[str, Any],
        on_fail: Callable[[str], None],
    ) -> None:
        self.settings = settings
        self.log_level = log_level
        self.output_dir = output_dir
        self.extra = extra
        self.on_fail = on_fail
        self.hardware: dict[str, Any] | None = None
        self.measurement: dict[str, dict[str, Any]] | None = None
        self.task_t0: float | None = None
        self._tracker: Any | None = None

    @property
    def running(self) -> bool:
        return self._tracker is not None

    def _fail(self, reason: str) -> None:
        self.shutdown()
        self.on_fail(reason)

    def start(self) -> bool:
        """Build the tracker and check it with a short probe task; False on failure."""
        try:
            from codecarbon import OfflineEmissionsTracker
            from codecarbon.emissions_tracker import BaseEmissionsTracker
        except Exception as e:  # noqa: BLE001 - ImportError or a broken install
            self._fail(f"codecarbon cannot be imported: {type(e).__name__}: {e}")
            return False
        accepted = set(inspect.signature(BaseEmissionsTracker.__init__).parameters)
        accepted |= {"country_iso_code", "region"}
        kwargs: dict[str, Any] = {**self.settings, "log_level": self.log_level}
        out = self.output_dir
        if "output_methods" in accepted:
            from codecarbon.output_methods.base_output import OutputMethod

            kwargs["output_methods"] = [OutputMethod.CSV] if out is not None else []
        else:
            kwargs["save_to_file"] = out is not None
        if out is not None:
            kwargs["output_dir"] = str(out)
        kwargs = {k: v for k, v in kwargs.items() if k in accepted}
        kwargs.update(self.extra)
        _wait_for_prefetch()  # the tables and CPU model codecarbon reads below, in its caches
        capture = _CaptureSwallowed(self.log_level)
        cc_logger = logging.getLogger("codecarbon")
        cc_logger.addFilter(capture)
        cc_logger.setLevel(logging.WARNING)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                tracker = OfflineEmissionsTracker(**kwargs)
        except Exception as e:  # noqa: BLE001
            self._fail(f"codecarbon's OfflineEmissionsTracker could not be constructed: {e!r}")
            return False
        finally:
            cc_logger.removeFilter(capture)
            cc_logger.setLevel(self.log_level.upper())
        self._tracker = tracker
        if capture.errors:
            self._fail(
                f"codecarbon's OfflineEmissionsTracker could not be constructed: "
                f"{_describe(capture.errors[0])}"
            )
            return False
        # probe: initialises hardware detection outside epoch 0 and checks the tracker works
        if not (self.start_task("probe") and self.stop_task() is not None):
            return False
        try:
            self.hardware = dict(tracker.get_detected_hardware())
        except Exception:  # noqa: BLE001 - informative only
            self.hardware = None
        self.measurement = describe_measurement(tracker)
        return True

    def start_task(self, name: str) -> bool:
        if self._tracker is None:
            return False
        try:
            self._tracker.start_task(name)
        except Exception as e:  # noqa: BLE001
            self._fail(f"codecarbon start_task failed: {e!r}")
            return False
        self.task_t0 = time.perf_counter()
        return True

    def stop_task(self) -> dict[str, float] | None:
        """Stop the running task: its energy and CO2 (kWh, kg; total and per component), or
        ``None`` when no task runs or codecarbon failed (then the session is shut down)."""
        if self._tracker is None or self.task_t0 is None:
            return None
        self.task_t0 = None
        try:
            data = self._tracker.stop_task()
        except Exception as e:  # noqa: BLE001
            self._fail(f"codecarbon stop_task failed: {e!r}")
            return None
        try:
            values = {
                "energy_kwh": float(data.energy_consumed),
                "co2_kg": float(data.emissions),
                "cpu_energy_kwh": float(data.cpu_energy),
                "gpu_energy_kwh": float(data.gpu_energy),
                "ram_energy_kwh": float(data.ram_energy),
            }
        except Exception as e:  # noqa: BLE001 - None or a malformed result
            self._fail(f"codecarbon stop_task returned no usable data ({data!r}: {e!r})")
            return None
        if not all(math.isfinite(v) and v >= 0 for v in values.values()):
            self._fail(f"codecarbon stop_task returned invalid values {values}")
            return None
        return values

    def shutdown(self) -> None:
        tracker, self._tracker = self._tracker, None
        self.task_t0 = None
        if tracker is None:
            return
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                tracker.stop()
        except Exception:  # noqa: BLE001 - nothing more to measure
            pass
