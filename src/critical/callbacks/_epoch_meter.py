"""One process's measurement of the running epoch for :class:`~critical.callbacks.EnergyTracker`:
wall time, training samples, training FLOPs and codecarbon energy, across codecarbon task splits,
FLOP counts (left out of the epoch's time and energy) and checkpoint resumes; and the codecarbon
session's life (start, failure, shutdown), with one warning per kind of problem. No Lightning.

Example:
    >>> import torch
    >>> meter = EpochMeter(max_task_secs=60.0)
    >>> meter.begin(epoch=0, multiplicity=3)
    >>> batch = (torch.rand(4, 8), torch.zeros(4))
    >>> meter.batch_start(torch.nn.Linear(8, 2), batch)
    >>> meter.batch_end(batch)
    >>> values = meter.end(energy=False)
    >>> values["samples"], values["flops"], values["energy_kwh"]
    (4, 256.0, None)
"""

from __future__ import annotations

import os
import time
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from critical.accounting import ENERGY_FIELDS
from critical.callbacks._codecarbon import CodecarbonSession, output_directory
from critical.callbacks._flops import FlopCounter
from critical.callbacks._measurement import estimated_message

__all__ = ["EpochMeter", "batch_size", "reduce_values"]

_SUMMED = (*ENERGY_FIELDS, "flops")


def batch_size(batch: Any) -> int | None:
    """Length of the first tensor found in ``batch`` (host metadata only, no sync)."""
    if isinstance(batch, torch.Tensor):
        return int(batch.shape[0]) if batch.ndim > 0 else None
    if isinstance(batch, dict):
        batch = list(batch.values())
    if isinstance(batch, (list, tuple)):
        for item in batch:
            n = batch_size(item)
            if n is not None:
                return n
    return None


class EpochMeter:
    """The running epoch's time, samples, FLOPs and energy in this process.

    Args:
        max_task_secs: longest codecarbon task; longer epochs are split (checked per batch).

    Attributes:
        session: the codecarbon session (``None``: energy not measured in this process).
        flops: the per-sample FLOP counter.
        current: the running epoch's raw values, ``None`` between epochs.
        missing: ``None`` while energy is measured, else why it is not.
        hardware, measurement: what codecarbon detected and how it obtains each component's
            power (:func:`~critical.callbacks._measurement.describe_measurement`).
        not_written: file name -> why codecarbon could not write it.
    """

    def __init__(self, max_task_secs: float) -> None:
        self.max_task_secs = max_task_secs
        self.session: CodecarbonSession | None = None
        self.flops = FlopCounter()
        self.current: dict[str, Any] | None = None
        self.missing: str | None = None
        self.hardware: dict[str, Any] | None = None
        self.measurement: dict[str, dict[str, Any]] | None = None
        self.not_written: dict[str, str] = {}
        self._warned: set[str] = set()

    def warn_once(self, key: str, message: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            warnings.warn(f"EnergyTracker: {message}", UserWarning, stacklevel=4)

    # ------------------------------------------------------------------ the codecarbon session
    @property
    def measuring(self) -> bool:
        """Whether a codecarbon tracker is running in this process."""
        return self.session is not None and self.session.running

    def start_tracker(
        self,
        settings: dict[str, Any],
        log_level: str,
        extra: dict[str, Any],
        output_dir: str | os.PathLike | None,
        run_path: Path | None,
    ) -> None:
        """Build and probe the tracker (arguments of :class:`CodecarbonSession`; ``output_dir``
        as given to ``EnergyTracker``); warn once if it fails or estimates."""
        out = None
        if output_dir is not None:
            out, problem = output_directory(output_dir, run_path)
            if problem is not None:
                self.not_written["emissions.csv"] = problem
                self.warn_once("output", f"codecarbon writes no emissions.csv: {problem}")
        self.session = CodecarbonSession(settings, log_level, out, extra, on_fail=self._fail)
        if self.session.start():
            self.hardware, self.measurement = self.session.hardware, self.session.measurement
            message = estimated_message(self.measurement)
            if message is not None:
                self.warn_once("estimated", message)

    def _fail(self, reason: str) -> None:
        """Energy is not measured from now on; warn once."""
        if self.missing is None:
            self.missing = reason
        self.shutdown()
        self.warn_once(
            "missing",
            f"energy, CO2 and cost are not measured ({reason}); training goes on and wall "
            "time, samples and FLOPs are still logged.",
        )

    def shutdown(self) -> None:
        if self.session is not None:
            self.session.shutdown()

    # ------------------------------------------------------------------ codecarbon tasks
    @property
    def task_running(self) -> bool:
        return self.session is not None and self.session.task_t0 is not None

    def _start_task(self) -> None:
        if self.session is not None and self.current is not None:
            self.session.start_task(f"epoch_{self.current['epoch']}")

    def _stop_task(self) -> None:
        """Stop the running task and add its energy to the epoch (a failed one voids it)."""
        if self.current is None or self.session is None or self.session.task_t0 is None:
            return
        values = self.session.stop_task()
        if values is None:
            self.current["energy_ok"] = False
            return
        for k, v in values.items():
            self.current[k] = self.current.get(k, 0.0) + v

    def rotate(self) -> None:
        """Read the energy so far and start a new task (a split: no effect on the results)."""
        if self.task_running:
            self._stop_task()
            self._start_task()

    # ------------------------------------------------------------------ the epoch
    def begin(
        self, epoch: int, multiplicity: int | None, partial: dict[str, Any] | None = None
    ) -> None:
        """Start measuring ``epoch``, continuing ``partial`` (its values from a checkpoint)."""
        self.current = {
            "epoch": epoch,
            "t0": time.perf_counter(),
            "duration_before_s": 0.0,
            "excluded_s": 0.0,
            "samples": 0,
            "flops": 0.0,
            "multiplicity": multiplicity,
            "energy_ok": True,
        }
        if partial is not None and partial["epoch"] == epoch:
            self.current["duration_before_s"] = float(partial.get("duration_s", 0.0))
            self.current["samples"] = int(partial.get("samples", 0))
            self.current["flops"] = partial.get("flops")
            for k in ENERGY_FIELDS:
                if partial.get(k) is not None:
                    self.current[k] = float(partial[k])
                elif k == "energy_kwh":
                    self.current["energy_ok"] = False
        self._start_task()

    def batch_start(self, module: nn.Module, batch: Any) -> None:
        """Count the FLOPs of a new input shape, outside the epoch's time and energy."""
        if self.current is None or self.flops.known(batch):
            return
        t0 = time.perf_counter()
        running = self.task_running
        if running:
            self._stop_task()
        self.flops.count(module, batch)
        if running:
            self._start_task()
        self.current["excluded_s"] += time.perf_counter() - t0
        if self.flops.failure is not None:
            self.warn_once(
                "flops",
                f"FLOPs are not counted ({self.flops.failure}); training goes on, FLOPs are None "
                "and the saving check compares with the samples instead.",
            )

    def batch_end(self, batch: Any) -> None:
        """Add the batch's samples and FLOPs; split a long codecarbon task."""
        if self.current is None:
            return
        n = batch_size(batch)
        if n is not None:
            self.current["samples"] += n
            flops = self.flops.batch_flops(batch, n)
            if flops is not None and self.current["flops"] is not None:
                self.current["flops"] += flops
        t0 = None if self.session is None else self.session.task_t0
        if t0 is not None and time.perf_counter() - t0 > self.max_task_secs:
            self.rotate()

    def values(self, energy: bool) -> dict[str, Any]:
        """The running epoch's values so far: ``epoch``, ``multiplicity``, ``duration_s``,
        ``samples``, ``flops`` and the energy fields (``None`` unless ``energy`` and every task
        of the epoch succeeded)."""
        ep = self.current
        assert ep is not None  # called while an epoch runs
        energy_ok = energy and ep["energy_ok"]
        out = {
            "epoch": ep["epoch"],
            "multiplicity": ep["multiplicity"],
            "duration_s": ep["duration_before_s"]
            + time.perf_counter()
            - ep["t0"]
            - ep["excluded_s"],
            "samples": ep["samples"],
            "flops": ep["flops"] if self.flops.failure is None else None,
        }
        for k in ENERGY_FIELDS:
            out[k] = ep.get(k, 0.0) if energy_ok else None
        return out

    def end(self, energy: bool) -> dict[str, Any]:
        """Stop the epoch's task and return its values (see :meth:`values`)."""
        self._stop_task()
        out = self.values(energy)
        self.current = None
        return out


def reduce_values(
    strategy: Any, device: torch.device, local: dict[str, Any], owner: bool
) -> dict[str, Any]:
    """One all-reduce of an epoch's values over processes: ``samples``, FLOPs and energy summed
    (energy only from the processes running a tracker, ``owner``); FLOPs or energy ``None`` when
    a process lacks them (its count or its tracker failed).

    Codecarbon (in its default ``tracking_mode="machine"``) measures a whole node, so only the
    local rank 0 process of each node runs a tracker; the others measure time, samples and FLOPs
    only. The sums are cluster totals, identical on every rank; ``duration_s`` is not reduced
    (each process's own wall time)."""
    no_energy = 1.0 if (owner and local["energy_kwh"] is None) else 0.0
    no_flops = 1.0 if local.get("flops") is None else 0.0
    vec = [float(local["samples"]), no_energy, no_flops]
    vec += [float(local.get(k) or 0.0) for k in _SUMMED]
    t = torch.tensor(vec, dtype=torch.float64, device=device)
    sums: list[float] = strategy.reduce(t, reduce_op="sum").tolist()
    out: dict[str, Any] = {"samples": round(sums[0])}
    for i, k in enumerate(_SUMMED):
        failed = sums[2] if k == "flops" else sums[1]
        out[k] = None if failed > 0 else sums[3 + i]
    return out
