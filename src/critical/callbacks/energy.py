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
The *cut* is found from the first callback in ``trainer.callbacks`` with a ``cut_epoch``
attribute (:class:`~critical.callbacks.AugmentationCutoff`), or, without one, from the first epoch
whose multiplicity k (read at epoch start) differs from the first epoch's. Epochs before the cut
form phase ``"before"``, the others phase ``"after"``; the saving is the cost the ``after`` epochs
would have had at the old k minus their measured cost, estimated from the measured cost per
sample before the cut. The arithmetic, and its assumptions, are in :mod:`critical.accounting`.

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

import os
import re
import time
import warnings
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback
from typing_extensions import override

from critical.accounting import (
    ENERGY_FIELDS,
    QUANTITIES,
    cut_boundary,
    phase,
    phase_summary,
    totals,
)
from critical.callbacks._codecarbon import CodecarbonSession, known_countries
from critical.data.protocol import get_multiplicity
from critical.runfiles import find_callback, find_cutoff
from critical.validation import check_bool, check_choice, check_number, check_str

__all__ = ["DEFAULT_COUNTRY", "EnergyTracker"]

#: Default grid location. The United States host most of the world's ML compute (clouds and
#: labs), and their grid's carbon intensity (~0.37 kg CO2/kWh in codecarbon's tables) is close to
#: the world average, so the default neither flatters nor exaggerates a saving the way a very
#: clean (France, ~0.06) or very dirty grid would. Set your own location for real reports.
DEFAULT_COUNTRY = "USA"
#: Default price: roughly the average US retail price of electricity, all sectors (EIA, 2023-24).
DEFAULT_PRICE_PER_KWH = 0.13
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")
TRACKING_MODES = ("machine", "process")
_PREFIX = "energy/"


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
        check_str("region", region, allow_none=True)
        check_number("price_per_kwh", price_per_kwh, minimum=0)
        check_number("measure_power_secs", measure_power_secs, minimum=0, exclusive=True)
        check_number("max_task_secs", max_task_secs, minimum=0, exclusive=True)
        check_str("currency", currency)
        check_choice("log_level", log_level, LOG_LEVELS)
        check_choice("tracking_mode", tracking_mode, TRACKING_MODES)
        if codecarbon_kwargs is not None and not isinstance(codecarbon_kwargs, dict):
            raise ValueError(
                f"`codecarbon_kwargs` must be a dict or None, got {codecarbon_kwargs!r}"
            )
        if output_dir is not None and not isinstance(output_dir, (str, os.PathLike)):
            raise ValueError(
                f"`output_dir` must be None, 'run_dir' or a directory, got {output_dir!r}"
            )
        check_bool("log_metrics", log_metrics)
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
        self._session: CodecarbonSession | None = None
        self._owner = False  # this process runs a tracker (local rank 0)
        self._warned = False
        self._epoch: dict[str, Any] | None = None
        self._resume_partial: dict[str, Any] | None = None
        self._fit_t0: float | None = None

    # ------------------------------------------------------------------ identity
    @property
    @override
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

    @property
    def measuring(self) -> bool:
        """Whether a codecarbon tracker is running in this process (stopped at fit end)."""
        return self._session is not None and self._session.running

    # ------------------------------------------------------------------ codecarbon
    def _fail(self, reason: str) -> None:
        """Energy is not measured from now on; warn once."""
        if self.missing is None:
            self.missing = reason
        if self._session is not None:
            self._session.shutdown()
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
            run = find_callback(trainer, lambda cb: callable(getattr(cb, "ensure_directory", None)))
            if run is not None and run.path is not None:
                return Path(run.path)
            warnings.warn(
                "EnergyTracker: output_dir='run_dir' but the trainer has no RunDirectory; "
                "codecarbon writes no file",
                UserWarning,
                stacklevel=2,
            )
            return None
        path = Path(self.output_dir)
        path.mkdir(parents=True, exist_ok=True)
        return path

    def _start_tracker(self, trainer: pl.Trainer) -> None:
        settings: dict[str, Any] = {
            "country_iso_code": self.country_iso_code,
            "measure_power_secs": self.measure_power_secs,
            "tracking_mode": self.tracking_mode,
            "project_name": "critical",
            "allow_multiple_runs": True,
        }
        if self.region is not None:
            settings["region"] = self.region
        self._session = CodecarbonSession(
            settings,
            self.log_level,
            self._resolve_output_dir(trainer),
            self.codecarbon_kwargs,
            on_fail=self._fail,
        )
        if self._session.start():
            self.hardware = self._session.hardware

    def _start_task(self, name: str) -> None:
        if self._session is not None:
            self._session.start_task(name)

    def _stop_task(self) -> dict[str, float] | None:
        return None if self._session is None else self._session.stop_task()

    def _shutdown_tracker(self) -> None:
        if self._session is not None:
            self._session.shutdown()

    def _task_running(self) -> bool:
        return self._session is not None and self._session.task_t0 is not None

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
        cutoff = self._cut if self._cut.get("source") == "cutoff" else None
        return cut_boundary(self.history, cutoff)

    # ------------------------------------------------------------------ hooks
    @override
    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._fit_t0 = time.perf_counter()
        self._owner = trainer.local_rank == 0
        if (
            self._owner
            and (self._session is None or not self._session.running)
            and self.missing is None
        ):
            self._start_tracker(trainer)

    @override
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
            for k in ENERGY_FIELDS:
                if partial.get(k) is not None:
                    self._epoch[k] = float(partial[k])
                elif k == "energy_kwh":
                    self._epoch["energy_ok"] = False
        self._start_task(f"epoch_{epoch}")

    @override
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
        t0 = None if self._session is None else self._session.task_t0
        if t0 is not None and time.perf_counter() - t0 > self.max_task_secs:
            self._rotate()

    @override
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
        for k in ENERGY_FIELDS:
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
            vec += [float(local[k] or 0.0) for k in ENERGY_FIELDS]
            t = torch.tensor(vec, dtype=torch.float64, device=pl_module.device)
            sums: list[float] = trainer.strategy.reduce(t, reduce_op="sum").tolist()
            entry["samples"] = round(sums[0])
            for i, k in enumerate(ENERGY_FIELDS):
                entry[k] = None if sums[1] > 0 else sums[2 + i]
        entry["cost"] = (
            None if entry["energy_kwh"] is None else entry["energy_kwh"] * self.price_per_kwh
        )
        self.history = [h for h in self.history if h["epoch"] != entry["epoch"]]
        self.history.append(entry)
        self.history.sort(key=lambda h: h["epoch"])
        entry["phase"] = phase(entry["epoch"], self._boundary()["cut_epoch"])
        if log:
            self._log_entry(trainer, pl_module, entry)

    def _log_entry(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, entry: dict[str, Any]
    ) -> None:
        total = totals(self.history)
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

    @override
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
        out: dict[str, float | None] = {}
        for q in QUANTITIES:
            for name in ("before", "after"):
                out[f"{_PREFIX}{name}_{q}"] = s["phases"][name][q]
            out[f"{_PREFIX}saving_{q}"] = (s["saving"] or {}).get(q)
            out[f"{_PREFIX}saving_fraction_{q}"] = (s["saving_fraction"] or {}).get(q)
        return {k: float(v) for k, v in out.items() if v is not None}

    @override
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

    @override
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
        accounts = phase_summary(self.history, boundary)
        energy = [h.get("energy_kwh") for h in self.history]
        return {
            "country_iso_code": self.country_iso_code,
            "region": self.region,
            "price_per_kwh": self.price_per_kwh,
            "currency": self.currency,
            "energy_measured": bool(energy) and all(v is not None for v in energy),
            "missing": self.missing,
            "hardware": self.hardware,
            "fit_duration_s": self.fit_duration_s,
            "cut": boundary,
            **accounts,
            "interrupted_epoch": self.interrupted_epoch,
        }

    # ------------------------------------------------------------------ checkpoint state
    @override
    def state_dict(self) -> dict[str, Any]:
        partial = None
        if self._epoch is not None:
            if self._task_running():
                self._rotate()  # read the energy so far (a task split, no side effect on results)
            ep = self._epoch
            energy_ok = self._owner and ep["energy_ok"] and self.missing is None
            partial = {
                "epoch": ep["epoch"],
                "multiplicity": ep["multiplicity"],
                "duration_s": ep["duration_before_s"] + time.perf_counter() - ep["t0"],
                "samples": ep["samples"],
                **{k: (ep.get(k, 0.0) if energy_ok else None) for k in ENERGY_FIELDS},
            }
        return {
            "history": [dict(h) for h in self.history],
            "cut": dict(self._cut),
            "missing": self.missing,
            "fit_duration_s": self.fit_duration_s,
            "partial_epoch": partial,
        }

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.history = [dict(h) for h in state_dict.get("history", [])]
        self._cut = dict(state_dict.get("cut", {}))
        self.fit_duration_s = state_dict.get("fit_duration_s")
        partial = state_dict.get("partial_epoch")
        self._resume_partial = dict(partial) if partial else None
