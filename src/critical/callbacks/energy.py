r"""Energy tracker: wall time, training samples, energy, CO2 and money per epoch and per phase.

What it measures
----------------
Per training epoch (from ``on_train_epoch_start`` to ``on_train_epoch_end``, which includes the
validation run Lightning does at the end of the epoch):

* ``duration_s``: wall time (after a ``torch.cuda.synchronize`` at epoch end on CUDA, so queued
  kernels are counted in their own epoch);
* ``samples``: training samples, the batch size of every training batch (read from the batch's
  tensor shapes in ``on_train_batch_end``: no host synchronisation), summed over ranks;
* ``energy_kwh``, ``co2_kg`` from `codecarbon <https://mlco2.github.io/codecarbon/>`_'s
  :class:`~codecarbon.OfflineEmissionsTracker` (never the online tracker, which probes the
  network): CPU (RAPL where readable, else a TDP x load model), RAM, and NVIDIA GPUs through
  NVML's energy counters where a GPU exists; CO2 from the country's grid carbon intensity in
  codecarbon's offline tables;
* ``cost = energy_kwh * price_per_kwh`` (in ``currency``).

How the per-epoch energy is taken from codecarbon (3.x, also 2.8+)
-------------------------------------------------------------------
Through codecarbon's public task API: every epoch is a task (``start_task`` at epoch start,
``stop_task`` at epoch end, which returns an ``EmissionsData`` delta with ``energy_consumed``
and ``emissions``). The alternative, differences of a running tracker's cumulative
``_total_energy``, reads private attributes and races with codecarbon's background thread. Long
epochs are split into consecutive tasks of at most ``max_task_secs`` seconds (checked with a
clock read per batch; a split costs ~1 ms), so energy counters are read often enough that a RAPL
counter never wraps twice between two readings (codecarbon corrects one wrap). A short probe task
at fit start initialises codecarbon's hardware detection outside epoch 0 and checks that the
tracker works. Time between epochs (hooks of other callbacks after ours) is not attributed.

If codecarbon is missing, cannot be constructed, or fails (its methods can raise or return
``None``), training goes on, wall time and samples are still logged, energy/CO2/cost are
``None`` (not logged), and ONE warning says what is missing and why.

Phases and the counterfactual saving
------------------------------------
The *cut* is found, in this order, from the first callback in ``trainer.callbacks`` with a
``cut_epoch`` attribute (:class:`~critical.callbacks.AugmentationCutoff`: the first epoch trained
after the cut, ``None`` while not cut, with ``multiplicity_before``/``multiplicity_after``), or,
without such a callback, from the first epoch whose multiplicity k
(:func:`critical.data.protocol.get_multiplicity`, read at epoch start) differs from the first
epoch's. Epochs before the cut form phase ``"before"``, the others phase ``"after"``.

The saving is the cost the ``after`` epochs would have had at the old k minus their measured
cost. The counterfactual is estimated as::

    per_sample_before[q] = sum_before(q) / sum_before(samples)      q in time, energy, CO2, money
    cf_samples(e)       = min(samples(e) * k_before / k(e), mean samples per "before" epoch)
    counterfactual[q]   = per_sample_before[q] * sum over "after" epochs of cf_samples(e)
    saving[q]           = counterfactual[q] - sum_after(q)

Assumptions: the cost of a training sample is stationary (the same model, hardware, batch size
and throughput before and after the cut; the per-sample cost of the ``before`` epochs, warm-up of
epoch 0 included, stands for the whole run); an epoch at the old k has as many samples as the
average ``before`` epoch (the cap keeps an integer ``limit_train_batches``, which bounds an epoch
whatever k, from inventing a saving, while a partial last epoch is scaled down); the cost of
validation and other per-epoch overhead is folded into the per-sample cost (exact when every
counterfactual epoch is a full epoch: it then costs the average ``before`` epoch). Without
multiplicities, ``cf_samples(e)`` is the mean ``before`` epoch's samples.

Distributed training
--------------------
Codecarbon (in its default ``tracking_mode="machine"``) measures a whole node, so only the local
rank 0 process of each node runs a tracker; the others measure time and samples only. At every
epoch end the per-process values (samples; energy and CO2 from the trackers, zero elsewhere) are
summed over all processes with one small all-reduce, so ``samples``, ``energy_kwh`` and ``co2_kg``
are cluster totals and identical on every rank; ``duration_s`` is each process's own wall time.
If a node's tracker failed, energy is ``None`` everywhere for that epoch. A checkpoint taken in
the middle of an epoch (e.g. by ``ModelCheckpoint`` at validation end) stores the epoch's partial
values of its own process, which a resumed run completes.

Logged each epoch (``on_step=False, on_epoch=True``): ``energy/duration_s``, ``energy/samples``,
``energy/energy_kwh``, ``energy/co2_kg``, ``energy/cost`` and the running totals
``energy/total_duration_s``, ``energy/total_energy_kwh``, ``energy/total_co2_kg``,
``energy/total_cost``. At fit end, straight to the trainer's loggers (Lightning forbids
``self.log`` there): the per-phase totals and savings of :meth:`EnergyTracker.summary_metrics`.

Example::

    >>> import lightning as L
    >>> from critical.callbacks.energy import EnergyTracker
    >>> tracker = EnergyTracker(country_iso_code="USA", price_per_kwh=0.13, currency="USD")
    >>> trainer = L.Trainer(max_epochs=2, callbacks=[tracker])  # doctest: +SKIP
    >>> trainer.fit(model, datamodule)  # doctest: +SKIP
    >>> tracker.summary()["total"]["energy_kwh"]  # doctest: +SKIP
    0.0123
"""

from __future__ import annotations

import inspect
import logging
import math
import os
import re
import time
import traceback
import warnings
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback

from critical.data.protocol import get_multiplicity

__all__ = ["DEFAULT_COUNTRY", "EnergyTracker", "find_critical_period", "find_cutoff"]

#: Default grid location. The United States host most of the world's ML compute (clouds and
#: labs), and their grid's carbon intensity (~0.37 kg CO2/kWh in codecarbon's tables) is close to
#: the world average, so the default neither flatters nor exaggerates a saving the way a very
#: clean (France, ~0.06) or very dirty grid would. Set your own location for real reports.
DEFAULT_COUNTRY = "USA"
#: Default price: roughly the average US retail price of electricity, all sectors (EIA, 2023-24).
DEFAULT_PRICE_PER_KWH = 0.13
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")
TRACKING_MODES = ("machine", "process")
QUANTITIES = ("duration_s", "energy_kwh", "co2_kg", "cost")
_ENERGY_FIELDS = ("energy_kwh", "co2_kg", "cpu_energy_kwh", "gpu_energy_kwh", "ram_energy_kwh")
_PREFIX = "energy/"


_COUNTRIES: frozenset[str] | None = None


def known_countries() -> frozenset[str] | None:
    """The ISO codes of codecarbon's offline energy-mix table, or None if it cannot be read."""
    global _COUNTRIES
    if _COUNTRIES is None:
        try:
            from codecarbon.input import DataSource

            _COUNTRIES = frozenset(DataSource().get_global_energy_mix_data())
        except Exception:  # noqa: BLE001 - codecarbon missing or broken: reported at fit start
            return None
    return _COUNTRIES


def find_cutoff(trainer: pl.Trainer) -> Any | None:
    """The first callback of ``trainer`` with a ``cut_epoch`` attribute (the augmentation cut)."""
    for cb in getattr(trainer, "callbacks", []) or []:
        if hasattr(cb, "cut_epoch"):
            return cb
    return None


def find_critical_period(trainer: pl.Trainer) -> Any | None:
    """The first callback of ``trainer`` with an ``event`` attribute that is ``None`` or has
    ``to_dict()`` (the :class:`~critical.callbacks.CriticalPeriod` detector)."""
    for cb in getattr(trainer, "callbacks", []) or []:
        event = getattr(cb, "event", False)
        if event is None or callable(getattr(event, "to_dict", None)):
            return cb
    return None


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


def _batch_size(batch: Any) -> int | None:
    """Length of the first tensor found in ``batch`` (host metadata only, no sync)."""
    if isinstance(batch, torch.Tensor):
        return int(batch.shape[0]) if batch.ndim > 0 else None
    if isinstance(batch, dict):
        batch = list(batch.values())
    if isinstance(batch, (list, tuple)):
        for item in batch:
            n = _batch_size(item)
            if n is not None:
                return n
    return None


def _sum(entries: list[dict[str, Any]], key: str) -> float | None:
    values = [e.get(key) for e in entries]
    if any(v is None for v in values):
        return None
    return float(sum(values))


def _totals(entries: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {
        "epochs": len(entries),
        "samples": int(sum(e["samples"] for e in entries)),
    }
    for q in ("duration_s", *_ENERGY_FIELDS, "cost"):
        out[q] = _sum(entries, q)
    return out


class EnergyTracker(Callback):
    r"""Log time, training samples, energy, CO2 and cost per epoch, per phase and in total.

    See the module docstring for what is measured, how, and the counterfactual estimate.

    Args:
        country_iso_code: 3-letter ISO code of the grid location for codecarbon's offline carbon
            intensity (default ``"USA"``, see :data:`DEFAULT_COUNTRY`).
        region: optional region (US state / Canadian province, e.g. ``"california"``).
        price_per_kwh: electricity price per kWh, in ``currency`` (>= 0).
        currency: label of the price's currency, reported in :meth:`summary`.
        measure_power_secs: codecarbon's power sampling interval in seconds (> 0).
        max_task_secs: longest interval between two codecarbon readings within an epoch (> 0);
            longer epochs are split into several codecarbon tasks.
        output_dir: ``None`` (default): codecarbon writes no files. A directory: codecarbon's
            ``emissions.csv`` goes there. ``"run_dir"``: into the
            :class:`~critical.callbacks.run_directory.RunDirectory` of the trainer.
        log_level: codecarbon's log level, one of ``"debug", "info", "warning", "error",
            "critical"``.
        tracking_mode: codecarbon's ``"machine"`` (whole node, the default) or ``"process"``.
        codecarbon_kwargs: extra keyword arguments for ``OfflineEmissionsTracker`` (e.g.
            ``gpu_ids``, ``pue``, ``force_cpu_power``); they override ours.
        log_metrics: log the per-epoch values through ``pl_module.log`` (Lightning reserves the
            attribute name ``log`` on callbacks).
        name: distinguishes the checkpoint state of several instances.

    Attributes:
        history: one dict per completed epoch: ``epoch``, ``phase``, ``multiplicity``,
            ``duration_s``, ``samples``, ``energy_kwh``, ``co2_kg``, ``cost``,
            ``cpu_energy_kwh``, ``gpu_energy_kwh``, ``ram_energy_kwh`` (energy fields ``None``
            when not measured).
        missing: ``None`` while energy is measured, else why it is not.
    """

    def __init__(
        self,
        country_iso_code: str = DEFAULT_COUNTRY,
        region: str | None = None,
        price_per_kwh: float = DEFAULT_PRICE_PER_KWH,
        currency: str = "USD",
        measure_power_secs: float = 1.0,
        max_task_secs: float = 60.0,
        output_dir: str | os.PathLike | None = None,
        log_level: str = "error",
        tracking_mode: str = "machine",
        codecarbon_kwargs: dict[str, Any] | None = None,
        log_metrics: bool = True,
        name: str | None = None,
    ) -> None:
        if not isinstance(country_iso_code, str) or not re.fullmatch(r"[A-Z]{3}", country_iso_code):
            raise ValueError(
                "`country_iso_code` must be a 3-letter upper-case ISO 3166 code such as 'USA', "
                f"'FRA', 'DEU', 'GBR', 'CHN', got {country_iso_code!r}"
            )
        countries = known_countries()
        if countries is not None and country_iso_code not in countries:
            raise ValueError(
                f"`country_iso_code` {country_iso_code!r} is not in codecarbon's offline "
                f"energy-mix table (which would silently use a world average); valid codes: "
                f"{', '.join(sorted(countries))}"
            )
        if region is not None and not isinstance(region, str):
            raise ValueError(f"`region` must be a string or None, got {region!r}")
        for arg, value, strict in (
            ("price_per_kwh", price_per_kwh, False),
            ("measure_power_secs", measure_power_secs, True),
            ("max_task_secs", max_task_secs, True),
        ):
            if (
                isinstance(value, bool)
                or not isinstance(value, (int, float))
                or not math.isfinite(value)
                or value < 0
                or (strict and value == 0)
            ):
                raise ValueError(
                    f"`{arg}` must be a finite number {'>' if strict else '>='} 0, got {value!r}"
                )
        if not isinstance(currency, str) or not currency:
            raise ValueError(f"`currency` must be a non-empty string, got {currency!r}")
        if log_level not in LOG_LEVELS:
            raise ValueError(f"`log_level` must be one of {list(LOG_LEVELS)}, got {log_level!r}")
        if tracking_mode not in TRACKING_MODES:
            raise ValueError(
                f"`tracking_mode` must be one of {list(TRACKING_MODES)}, got {tracking_mode!r}"
            )
        if codecarbon_kwargs is not None and not isinstance(codecarbon_kwargs, dict):
            raise ValueError(
                f"`codecarbon_kwargs` must be a dict or None, got {codecarbon_kwargs!r}"
            )
        if output_dir is not None and not isinstance(output_dir, (str, os.PathLike)):
            raise ValueError(
                f"`output_dir` must be None, 'run_dir' or a directory, got {output_dir!r}"
            )
        self.country_iso_code = country_iso_code
        self.region = region
        self.price_per_kwh = float(price_per_kwh)
        self.currency = currency
        self.measure_power_secs = float(measure_power_secs)
        self.max_task_secs = float(max_task_secs)
        self.output_dir = output_dir
        self.log_level = log_level
        self.tracking_mode = tracking_mode
        self.codecarbon_kwargs = dict(codecarbon_kwargs or {})
        self.log_metrics = log_metrics
        self.name = name

        self.history: list[dict[str, Any]] = []
        self.missing: str | None = None
        self.fit_duration_s: float | None = None
        self.hardware: dict[str, Any] | None = None
        self.interrupted_epoch: dict[str, Any] | None = None
        self._cut: dict[str, Any] = {}
        self._tracker: Any | None = None
        self._owner = False  # this process runs a tracker (local rank 0)
        self._warned = False
        self._task_t0: float | None = None
        self._epoch: dict[str, Any] | None = None
        self._resume_partial: dict[str, Any] | None = None
        self._fit_t0: float | None = None

    # ------------------------------------------------------------------ identity
    @property
    def state_key(self) -> str:
        return self._generate_state_key(name=self.name)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(country_iso_code={self.country_iso_code!r}, "
            f"region={self.region!r}, price_per_kwh={self.price_per_kwh}, "
            f"currency={self.currency!r}, measure_power_secs={self.measure_power_secs}, "
            f"max_task_secs={self.max_task_secs}, tracking_mode={self.tracking_mode!r}, "
            f"name={self.name!r})"
        )

    # ------------------------------------------------------------------ codecarbon plumbing
    def _fail(self, reason: str) -> None:
        """Energy is not measured from now on; warn once."""
        if self.missing is None:
            self.missing = reason
        self._shutdown_tracker()
        if not self._warned:
            self._warned = True
            warnings.warn(
                f"EnergyTracker: energy, CO2 and cost are not measured ({reason}); training goes "
                "on and wall time and samples are still logged.",
                UserWarning,
                stacklevel=2,
            )

    def _resolve_output_dir(self, trainer: pl.Trainer) -> Path | None:
        if self.output_dir is None:
            return None
        if os.fspath(self.output_dir) == "run_dir":
            from critical.callbacks.run_directory import RunDirectory

            for cb in trainer.callbacks:
                if isinstance(cb, RunDirectory) and cb.path is not None:
                    return Path(cb.path)
            self._warn_note(
                "output_dir='run_dir' but the trainer has no RunDirectory; "
                "codecarbon writes no file"
            )
            return None
        path = Path(self.output_dir)
        path.mkdir(parents=True, exist_ok=True)
        return path

    def _warn_note(self, message: str) -> None:
        warnings.warn(f"EnergyTracker: {message}", UserWarning, stacklevel=2)

    def _start_tracker(self, trainer: pl.Trainer) -> None:
        try:
            from codecarbon import OfflineEmissionsTracker
            from codecarbon.emissions_tracker import BaseEmissionsTracker
        except Exception as e:  # noqa: BLE001 - ImportError or a broken install
            self._fail(f"codecarbon cannot be imported: {type(e).__name__}: {e}")
            return
        accepted = set(inspect.signature(BaseEmissionsTracker.__init__).parameters)
        accepted |= {"country_iso_code", "region"}
        kwargs: dict[str, Any] = {
            "country_iso_code": self.country_iso_code,
            "measure_power_secs": self.measure_power_secs,
            "log_level": self.log_level,
            "tracking_mode": self.tracking_mode,
            "project_name": "critical",
            "allow_multiple_runs": True,
        }
        if self.region is not None:
            kwargs["region"] = self.region
        out = self._resolve_output_dir(trainer)
        if "output_methods" in accepted:
            from codecarbon.output_methods.base_output import OutputMethod

            kwargs["output_methods"] = [OutputMethod.CSV] if out is not None else []
        else:
            kwargs["save_to_file"] = out is not None
        if out is not None:
            kwargs["output_dir"] = str(out)
        kwargs = {k: v for k, v in kwargs.items() if k in accepted}
        kwargs.update(self.codecarbon_kwargs)
        # codecarbon's constructor swallows its own exceptions (logging them at WARNING level)
        # and returns a half-built tracker: capture them, without printing below `log_level`
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
            return
        finally:
            cc_logger.removeFilter(capture)
            cc_logger.setLevel(self.log_level.upper())
        if capture.errors:
            self._tracker = tracker
            self._fail(
                f"codecarbon's OfflineEmissionsTracker could not be constructed: "
                f"{_describe(capture.errors[0])}"
            )
            return
        self._tracker = tracker
        # probe: initialises hardware detection outside epoch 0 and checks the tracker works
        if self._start_task("probe") and self._stop_task() is not None:
            try:
                self.hardware = dict(tracker.get_detected_hardware())
            except Exception:  # noqa: BLE001 - informative only
                self.hardware = None

    def _start_task(self, name: str) -> bool:
        if self._tracker is None:
            return False
        try:
            self._tracker.start_task(name)
        except Exception as e:  # noqa: BLE001
            self._fail(f"codecarbon start_task failed: {e!r}")
            return False
        self._task_t0 = time.perf_counter()
        return True

    def _stop_task(self) -> dict[str, float] | None:
        """Stop the running task; its energy/CO2 or None (and the tracker disabled) on failure."""
        if self._tracker is None or self._task_t0 is None:
            return None
        self._task_t0 = None
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

    def _shutdown_tracker(self) -> None:
        tracker, self._tracker = self._tracker, None
        self._task_t0 = None
        if tracker is None:
            return
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                tracker.stop()
        except Exception:  # noqa: BLE001 - nothing more to measure
            pass

    def _accumulate(self, values: dict[str, float] | None) -> None:
        if self._epoch is None:
            return
        if values is None:
            self._epoch["energy_ok"] = False
            return
        for k, v in values.items():
            self._epoch[k] = self._epoch.get(k, 0.0) + v

    def _rotate(self) -> None:
        self._accumulate(self._stop_task())
        self._start_task(f"epoch_{self._epoch['epoch'] if self._epoch else 'x'}")

    # ------------------------------------------------------------------ phases
    def _update_cut(self, trainer: pl.Trainer) -> None:
        cutoff = find_cutoff(trainer)
        if cutoff is None:
            self._cut = {"source": None}
            return
        self._cut = {
            "source": "cutoff",
            "cut_epoch": getattr(cutoff, "cut_epoch", None),
            "multiplicity_before": getattr(cutoff, "multiplicity_before", None),
            "multiplicity_after": getattr(cutoff, "multiplicity_after", None),
        }

    def _boundary(self) -> dict[str, Any]:
        """``cut_epoch`` (None: no cut), where it came from, and k before/after."""
        if self._cut.get("source") == "cutoff":
            cut = self._cut.get("cut_epoch")
            return {
                "cut_epoch": None if cut is None else int(cut),
                "source": "cutoff",
                "multiplicity_before": self._cut.get("multiplicity_before"),
                "multiplicity_after": self._cut.get("multiplicity_after")
                if cut is not None
                else None,
            }
        ks = [(h["epoch"], h.get("multiplicity")) for h in self.history]
        ks = [(e, k) for e, k in ks if k is not None]
        if ks:
            k0 = ks[0][1]
            for e, k in ks:
                if k != k0:
                    return {
                        "cut_epoch": e,
                        "source": "multiplicity",
                        "multiplicity_before": k0,
                        "multiplicity_after": k,
                    }
            return {
                "cut_epoch": None,
                "source": "multiplicity",
                "multiplicity_before": k0,
                "multiplicity_after": None,
            }
        return {
            "cut_epoch": None,
            "source": None,
            "multiplicity_before": None,
            "multiplicity_after": None,
        }

    @staticmethod
    def _phase(epoch: int, cut_epoch: int | None) -> str:
        return "after" if cut_epoch is not None and epoch >= cut_epoch else "before"

    # ------------------------------------------------------------------ hooks
    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._fit_t0 = time.perf_counter()
        self._owner = trainer.local_rank == 0
        if self._owner and self._tracker is None and self.missing is None:
            self._start_tracker(trainer)

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        epoch = trainer.current_epoch
        partial, self._resume_partial = self._resume_partial, None
        if partial is not None and partial["epoch"] < epoch:
            self._append_entry(trainer, pl_module, partial, log=False)
            partial = None
        self._epoch = {
            "epoch": epoch,
            "t0": time.perf_counter(),
            "duration_before_s": 0.0,
            "samples": 0,
            "multiplicity": get_multiplicity(trainer),
            "energy_ok": True,
        }
        if partial is not None and partial["epoch"] == epoch:
            self._epoch["duration_before_s"] = float(partial.get("duration_s", 0.0))
            self._epoch["samples"] = int(partial.get("samples", 0))
            for k in _ENERGY_FIELDS:
                if partial.get(k) is not None:
                    self._epoch[k] = float(partial[k])
                elif k == "energy_kwh":
                    self._epoch["energy_ok"] = False
        self._start_task(f"epoch_{epoch}")

    def on_train_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        if self._epoch is None:
            return
        n = _batch_size(batch)
        if n is not None:
            self._epoch["samples"] += n
        if self._task_t0 is not None and time.perf_counter() - self._task_t0 > self.max_task_secs:
            self._rotate()

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._epoch is None:
            return
        if pl_module.device.type == "cuda":
            torch.cuda.synchronize(pl_module.device)
        self._accumulate(self._stop_task())
        ep, self._epoch = self._epoch, None
        local = {
            "epoch": ep["epoch"],
            "multiplicity": ep["multiplicity"],
            "duration_s": ep["duration_before_s"] + time.perf_counter() - ep["t0"],
            "samples": ep["samples"],
        }
        energy_ok = self._owner and ep["energy_ok"] and self.missing is None
        for k in _ENERGY_FIELDS:
            local[k] = ep.get(k, 0.0) if energy_ok else None
        self._update_cut(trainer)
        self._append_entry(trainer, pl_module, local, log=self.log_metrics, reduce=True)

    def _append_entry(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        local: dict[str, Any],
        log: bool,
        reduce: bool = False,
    ) -> None:
        entry = dict(local)
        if reduce and trainer.world_size > 1:
            # one all-reduce: samples and energy summed over processes; energy only from trackers
            failed = 1.0 if (self._owner and local["energy_kwh"] is None) else 0.0
            vec = [float(local["samples"]), failed]
            vec += [float(local[k] or 0.0) for k in _ENERGY_FIELDS]
            t = torch.tensor(vec, dtype=torch.float64, device=pl_module.device)
            t = trainer.strategy.reduce(t, reduce_op="sum").tolist()
            entry["samples"] = round(t[0])
            for i, k in enumerate(_ENERGY_FIELDS):
                entry[k] = None if t[1] > 0 else t[2 + i]
        entry["cost"] = (
            None if entry["energy_kwh"] is None else entry["energy_kwh"] * self.price_per_kwh
        )
        self.history = [h for h in self.history if h["epoch"] != entry["epoch"]]
        self.history.append(entry)
        self.history.sort(key=lambda h: h["epoch"])
        entry["phase"] = self._phase(entry["epoch"], self._boundary()["cut_epoch"])
        if log:
            self._log_entry(trainer, pl_module, entry)

    def _log_entry(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, entry: dict[str, Any]
    ) -> None:
        total = _totals(self.history)
        metrics = {
            "duration_s": entry["duration_s"],
            "samples": float(entry["samples"]),
            "energy_kwh": entry["energy_kwh"],
            "co2_kg": entry["co2_kg"],
            "cost": entry["cost"],
            "total_duration_s": total["duration_s"],
            "total_energy_kwh": total["energy_kwh"],
            "total_co2_kg": total["co2_kg"],
            "total_cost": total["cost"],
        }
        metrics = {_PREFIX + k: float(v) for k, v in metrics.items() if v is not None}
        pl_module.log_dict(
            metrics, on_step=False, on_epoch=True, sync_dist=trainer.world_size > 1, batch_size=1
        )

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._update_cut(trainer)
        if self._fit_t0 is not None:
            self.fit_duration_s = time.perf_counter() - self._fit_t0
        self._shutdown_tracker()
        if self.log_metrics and trainer.loggers:
            # Lightning forbids self.log in on_train_end: straight to the loggers
            metrics = self.summary_metrics()
            for logger in trainer.loggers:
                logger.log_metrics(metrics, step=trainer.global_step)

    def summary_metrics(self) -> dict[str, float]:
        """The scalars of :meth:`summary` logged at fit end: ``energy/{before,after}_<q>``,
        ``energy/saving_<q>`` and ``energy/saving_fraction_<q>`` for q in ``duration_s``,
        ``energy_kwh``, ``co2_kg``, ``cost`` (those that exist)."""
        s = self.summary()
        out: dict[str, float] = {}
        for q in QUANTITIES:
            for phase in ("before", "after"):
                out[f"{_PREFIX}{phase}_{q}"] = s["phases"][phase][q]
            out[f"{_PREFIX}saving_{q}"] = (s["saving"] or {}).get(q)
            out[f"{_PREFIX}saving_fraction_{q}"] = (s["saving_fraction"] or {}).get(q)
        return {k: float(v) for k, v in out.items() if v is not None}

    def on_exception(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException
    ) -> None:
        if self._epoch is not None:
            ep, self._epoch = self._epoch, None
            self._accumulate(self._stop_task())
            self.interrupted_epoch = {
                "epoch": ep["epoch"],
                "multiplicity": ep["multiplicity"],
                "duration_s": ep["duration_before_s"] + time.perf_counter() - ep["t0"],
                "samples": ep["samples"],
                "energy_kwh": ep.get("energy_kwh") if ep["energy_ok"] and self._owner else None,
                "co2_kg": ep.get("co2_kg") if ep["energy_ok"] and self._owner else None,
                "exception": repr(exception),
            }
        if self._fit_t0 is not None:
            self.fit_duration_s = time.perf_counter() - self._fit_t0
        self._update_cut(trainer)
        self._shutdown_tracker()

    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self._shutdown_tracker()

    # ------------------------------------------------------------------ results
    def summary(self) -> dict[str, Any]:
        """Totals, per-phase totals and the counterfactual saving (JSON-serialisable).

        Keys: ``country_iso_code``, ``region``, ``price_per_kwh``, ``currency``,
        ``energy_measured``, ``missing``, ``hardware``, ``fit_duration_s``, ``cut`` (``cut_epoch``,
        ``source``, ``multiplicity_before``, ``multiplicity_after``), ``total`` and
        ``phases.before`` / ``phases.after`` (``epochs``, ``samples``, ``duration_s``,
        ``energy_kwh``, ``co2_kg``, ``cost``, ``cpu_energy_kwh``, ``gpu_energy_kwh``,
        ``ram_energy_kwh``), ``per_sample_before``, ``counterfactual_after`` (the ``after``
        epochs at the old k: ``samples`` and the four quantities), ``saving`` (the four
        quantities) and ``saving_fraction`` (saving over the whole run's counterfactual cost),
        ``interrupted_epoch``. Quantities that cannot be computed are ``None``.
        """
        boundary = self._boundary()
        cut = boundary["cut_epoch"]
        history = [dict(h, phase=self._phase(h["epoch"], cut)) for h in self.history]
        before = [h for h in history if h["phase"] == "before"]
        after = [h for h in history if h["phase"] == "after"]
        tot_before, tot_after = _totals(before), _totals(after)
        out: dict[str, Any] = {
            "country_iso_code": self.country_iso_code,
            "region": self.region,
            "price_per_kwh": self.price_per_kwh,
            "currency": self.currency,
            "energy_measured": bool(history) and _sum(history, "energy_kwh") is not None,
            "missing": self.missing,
            "hardware": self.hardware,
            "fit_duration_s": self.fit_duration_s,
            "cut": boundary,
            "total": _totals(history),
            "phases": {"before": tot_before, "after": tot_after},
            "per_sample_before": None,
            "counterfactual_after": None,
            "saving": None,
            "saving_fraction": None,
            "interrupted_epoch": self.interrupted_epoch,
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
        k_before = boundary["multiplicity_before"]
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

    # ------------------------------------------------------------------ checkpoint state
    def state_dict(self) -> dict[str, Any]:
        partial = None
        if self._epoch is not None:
            if self._task_t0 is not None:
                self._rotate()  # read the energy so far (a task split, no side effect on results)
            ep = self._epoch
            energy_ok = self._owner and ep["energy_ok"] and self.missing is None
            partial = {
                "epoch": ep["epoch"],
                "multiplicity": ep["multiplicity"],
                "duration_s": ep["duration_before_s"] + time.perf_counter() - ep["t0"],
                "samples": ep["samples"],
                **{k: (ep.get(k, 0.0) if energy_ok else None) for k in _ENERGY_FIELDS},
            }
        return {
            "history": [dict(h) for h in self.history],
            "cut": dict(self._cut),
            "missing": self.missing,
            "fit_duration_s": self.fit_duration_s,
            "partial_epoch": partial,
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.history = [dict(h) for h in state_dict.get("history", [])]
        self._cut = dict(state_dict.get("cut", {}))
        self.fit_duration_s = state_dict.get("fit_duration_s")
        partial = state_dict.get("partial_epoch")
        self._resume_partial = dict(partial) if partial else None
