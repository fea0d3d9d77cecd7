r"""Energy tracker: wall time, samples, FLOPs, energy, CO2 and money per epoch and per phase.

What it measures
----------------
Per training epoch (from ``on_train_epoch_start`` to ``on_train_epoch_end``, which includes the
validation run Lightning does at the end of the epoch):

* ``duration_s``: wall time (after a ``torch.cuda.synchronize`` at epoch end on CUDA);
* ``samples``: training samples, the batch size of every training batch (read from the batch's
  tensor shapes: no host synchronisation), summed over ranks;
* ``flops``: training FLOPs, samples x per-sample training FLOPs (forward + backward), counted
  once per model and input shape on the first training batch by :mod:`critical.callbacks._flops`
  without touching the module's state, outside the epoch's time and energy; validation is not
  counted. A batch or module that cannot be counted: one warning, FLOPs ``None``;
* ``energy_kwh``, ``co2_kg`` (and per component ``cpu_/gpu_/ram_energy_kwh``) from
  `codecarbon <https://mlco2.github.io/codecarbon/>`_'s offline tracker (never the online one,
  which probes the network), one task per epoch (:mod:`critical.callbacks._codecarbon`); CO2 from
  the country's grid carbon intensity in codecarbon's offline tables;
* ``cost = energy_kwh * price_per_kwh`` (in ``currency``).

If codecarbon is missing, cannot be constructed, or fails, training goes on, wall time, samples
and FLOPs are still logged, energy/CO2/cost are ``None`` (not logged), and ONE warning says what
is missing and why; an ``output_dir`` that cannot be created only loses codecarbon's
``emissions.csv`` (one warning; ``not_written`` in the summary). Codecarbon measures some
components and estimates others (without readable RAPL counters, as in most VMs and containers,
the CPU's power comes from a load model over a TDP that may be a guess of 4 W per thread; RAM
power always comes from a model): the summary records per component (CPU, GPU, RAM) the
``method``, whether it was ``measured`` by hardware counters or sensors and a ``detail``
(:mod:`critical.callbacks._measurement`), and ``energy_method``; one warning at fit start says
when energy is estimated (codecarbon's own warnings are below its log level).

Phases and the counterfactual saving
------------------------------------
The *cut* is found from the first callback in ``trainer.callbacks`` with a ``cut_epoch``
attribute (:class:`~critical.callbacks.AugmentationCutoff`), or, without one, from the first epoch
whose multiplicity k (read at epoch start) differs from the first epoch's. Epochs before the cut
form phase ``"before"``, the others phase ``"after"``; the saving is the cost the ``after`` epochs
would have had at the old k minus their measured cost, estimated from the median per-epoch cost
per sample before the cut (the first epoch, which pays the warm-up, left out).
``saving_check`` compares the measured saving fractions with the FLOPs-based one and flags a
disagreement beyond the noise; ``theoretical_saving`` is the most the cut could save. The
arithmetic, its assumptions and the rule of the check are in :mod:`critical.accounting`.

Distributed training: only the local rank 0 process of each node runs a tracker (codecarbon
measures the whole node); samples, FLOPs and energy are summed over processes at epoch end
(:func:`critical.callbacks._epoch_meter.reduce_values`), ``duration_s`` is each process's own.
A checkpoint taken mid-epoch stores the epoch's partial values, which a resumed run completes.

Logged each epoch (``on_step=False, on_epoch=True``): ``energy/duration_s``, ``energy/samples``,
``energy/flops``, ``energy/energy_kwh``, ``energy/co2_kg``, ``energy/cost`` and the running
totals ``energy/total_duration_s``, ``energy/total_flops``, ``energy/total_energy_kwh``,
``energy/total_co2_kg``, ``energy/total_cost``. At fit end, straight to the trainer's loggers
(Lightning forbids ``self.log`` there): :meth:`EnergyTracker.summary_metrics`.

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
import time
from typing import Any, get_args

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback
from typing_extensions import override

from critical._find import find_run_directory
from critical.callbacks import _energy_records as records
from critical.callbacks._codecarbon import check_country, check_kwargs, prefetch, tracker_settings
from critical.callbacks._epoch_meter import EpochMeter, reduce_values
from critical.callbacks._resume import restore_or_warn
from critical.choices import TrackingMode
from critical.data.protocol import get_multiplicity
from critical.validation import (
    check_bool,
    check_choice,
    check_number,
    check_path,
    check_str,
)

__all__ = ["DEFAULT_COUNTRY", "EnergyTracker"]

#: Default grid location. The United States host most of the world's ML compute (clouds and
#: labs), and their grid's carbon intensity (~0.37 kg CO2/kWh in codecarbon's tables) is close to
#: the world average, so the default neither flatters nor exaggerates a saving the way a very
#: clean (France, ~0.06) or very dirty grid would. Set your own location for real reports.
DEFAULT_COUNTRY = "USA"
#: Default price: roughly the average US retail price of electricity, all sectors (EIA, 2023-24).
DEFAULT_PRICE_PER_KWH = 0.13
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")
TRACKING_MODES: tuple[str, ...] = get_args(TrackingMode)


class EnergyTracker(Callback):
    r"""Log time, training samples, FLOPs, energy, CO2 and cost per epoch, per phase and in total.

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
            ``gpu_ids``, ``pue``, ``force_cpu_power``); they override ours. A key codecarbon
            does not accept raises here, naming the closest valid one.
        log_metrics: log the per-epoch values through ``pl_module.log`` (Lightning reserves the
            attribute name ``log`` on callbacks).
        name: distinguishes the checkpoint state of several instances.

    Attributes:
        history: one dict per completed epoch: ``epoch``, ``phase``, ``multiplicity``,
            ``duration_s``, ``samples``, ``flops``, ``energy_kwh``, ``co2_kg``, ``cost``,
            ``cpu_energy_kwh``, ``gpu_energy_kwh``, ``ram_energy_kwh`` (``None`` when not
            measured or counted).
        missing, measurement: why energy is not measured (``None`` while it is); how codecarbon
            obtains each component's power (``cpu``, ``gpu``, ``ram``: ``method``,
            ``measured``, ``detail``), once the tracker started.
        model: ``params``, ``trainable_params``, ``flops_per_sample`` (``train``, ``forward``),
            ``input_shape``, ``flops_method``, once the first batch was counted.
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
        tracking_mode: TrackingMode = "machine",
        codecarbon_kwargs: dict[str, Any] | None = None,
        log_metrics: bool = True,
        name: str | None = None,
    ) -> None:
        check_country(country_iso_code)
        check_str("region", region, allow_none=True)
        check_number("price_per_kwh", price_per_kwh, minimum=0)
        check_number("measure_power_secs", measure_power_secs, minimum=0, exclusive=True)
        check_number("max_task_secs", max_task_secs, minimum=0, exclusive=True)
        check_str("currency", currency)
        check_choice("log_level", log_level, LOG_LEVELS)
        check_choice("tracking_mode", tracking_mode, TRACKING_MODES)
        cc_kwargs = check_kwargs(codecarbon_kwargs)
        check_path("output_dir", output_dir, allow_none=True)
        check_bool("log_metrics", log_metrics)
        check_str("name", name, allow_none=True)
        self.country_iso_code = country_iso_code
        self.region = region
        self.price_per_kwh = float(price_per_kwh)
        self.currency = currency
        self.measure_power_secs = float(measure_power_secs)
        self.max_task_secs = float(max_task_secs)
        self.output_dir = output_dir
        self.log_level = log_level
        self.tracking_mode = tracking_mode
        self.codecarbon_kwargs = cc_kwargs
        self.log_metrics = log_metrics
        self.name = name

        self.history: list[dict[str, Any]] = []
        self.fit_duration_s: float | None = None
        self.max_epochs: int | None = None
        self.interrupted_epoch: dict[str, Any] | None = None
        self._meter = EpochMeter(self.max_task_secs)
        self._cut: dict[str, Any] = {}
        self._owner = False  # this process runs a tracker (local rank 0)
        self._resume_partial: dict[str, Any] | None = None
        self._fit_t0: float | None = None
        prefetch()  # codecarbon's one-off start-up (tables, CPU model) in the background

    # ------------------------------------------------------------------ identity
    @property
    @override
    def state_key(self) -> str:
        return self._generate_state_key(name=self.name)

    def __repr__(self) -> str:
        keys = "country_iso_code region price_per_kwh currency measure_power_secs max_task_secs"
        keys += " tracking_mode name"
        return (
            f"{type(self).__name__}({', '.join(f'{k}={getattr(self, k)!r}' for k in keys.split())})"
        )

    @property
    def measuring(self) -> bool:
        """Whether a codecarbon tracker is running in this process (stopped at fit end)."""
        return self._meter.measuring

    @property
    def model(self) -> dict[str, Any] | None:
        """The model's size and per-sample FLOPs (see the class docstring), or ``None``."""
        return self._meter.flops.info

    @property
    def missing(self) -> str | None:
        """``None`` while energy is measured, else why it is not."""
        return self._meter.missing

    @property
    def measurement(self) -> dict[str, dict[str, Any]] | None:
        """How codecarbon obtains each component's power (see the class docstring)."""
        return self._meter.measurement

    def _start_tracker(self, trainer: pl.Trainer) -> None:
        run = find_run_directory(trainer)
        settings = tracker_settings(
            self.country_iso_code, self.region, self.measure_power_secs, self.tracking_mode
        )
        self._meter.start_tracker(
            settings,
            self.log_level,
            self.codecarbon_kwargs,
            self.output_dir,
            None if run is None else run.path,
        )

    # ------------------------------------------------------------------ hooks
    @override
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage == "fit":  # a new fit starts clean; a resumed one gets its state restored next
            self.history = []
            self.fit_duration_s = None
            self.interrupted_epoch = None
            self._cut = {}
            self._resume_partial = None
            self._meter = EpochMeter(self.max_task_secs)

    @override
    def on_load_checkpoint(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        restore_or_warn(
            self,
            checkpoint,
            trainer,
            "the time, energy and CO2 of the epochs before the resume are not in this run's totals",
            adopt_other=True,  # the same run, measured under another name
        )

    @override
    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._fit_t0 = time.perf_counter()
        get_multiplicity(trainer)  # an invalid k of the datamodule fails now, not in epoch 0
        self._owner = trainer.local_rank == 0
        max_epochs = trainer.max_epochs
        self.max_epochs = max_epochs if max_epochs is not None and max_epochs > 0 else None
        if self._owner and not self.measuring and self.missing is None:
            self._start_tracker(trainer)

    @property
    def _energy_here(self) -> bool:
        """Whether this process's epoch values include energy (a working tracker runs here)."""
        return self._owner and self.missing is None

    @override
    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        epoch = trainer.current_epoch
        partial, self._resume_partial = self._resume_partial, None
        if partial is not None and partial["epoch"] < epoch:
            self._append_entry(trainer, pl_module, partial, log=False)
            partial = None
        self._meter.begin(epoch, get_multiplicity(trainer), partial)

    @override
    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        self._meter.batch_start(pl_module, batch)

    @override
    def on_train_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        self._meter.batch_end(batch)

    @override
    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._meter.current is None:
            return
        if pl_module.device.type == "cuda":
            torch.cuda.synchronize(pl_module.device)
        local = self._meter.end(self._energy_here)
        self._cut = records.read_cut(trainer)
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
            entry.update(reduce_values(trainer.strategy, pl_module.device, local, self._owner))
        self.history = records.add_entry(self.history, entry, self.price_per_kwh, self._cut)
        if log:
            metrics = records.epoch_metrics(self.history, entry)
            pl_module.log_dict(
                metrics,
                on_step=False,
                on_epoch=True,
                sync_dist=trainer.world_size > 1,
                batch_size=1,
            )

    @override
    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._cut = records.read_cut(trainer)
        if self._fit_t0 is not None:
            self.fit_duration_s = time.perf_counter() - self._fit_t0
        self._meter.shutdown()
        if self.log_metrics and trainer.loggers:
            # Lightning forbids self.log in on_train_end: straight to the loggers
            metrics = self.summary_metrics()
            for logger in trainer.loggers:
                logger.log_metrics(metrics, step=trainer.global_step)

    def summary_metrics(self) -> dict[str, float]:
        """The scalars of :meth:`summary` logged at fit end (:func:`critical.accounting.
        summary_scalars` with the prefix ``energy/``)."""
        return records.summary_metrics(self.summary())

    @override
    def on_exception(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException
    ) -> None:
        if self._meter.current is not None:
            values = self._meter.end(self._energy_here)
            self.interrupted_epoch = {**values, "exception": repr(exception)}
        if self._fit_t0 is not None:
            self.fit_duration_s = time.perf_counter() - self._fit_t0
        self._cut = records.read_cut(trainer)
        self._meter.shutdown()

    @override
    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self._meter.shutdown()

    # ------------------------------------------------------------------ results
    def summary(self) -> dict[str, Any]:
        """Totals, per-phase totals, the counterfactual saving and how energy was obtained
        (JSON-serialisable).

        Keys: ``country_iso_code``, ``region``, ``price_per_kwh``, ``currency``,
        ``energy_available`` (every epoch has an energy figure), ``energy_measured``,
        ``energy_method``, ``energy_method_detail`` and ``measurement`` (how energy was obtained:
        :func:`~critical.callbacks._measurement.summarize_measurement`), ``missing``,
        ``not_written``, ``hardware``, ``model`` (see the class docstring), ``fit_duration_s``,
        ``max_epochs``, ``cut`` (``cut_epoch``, ``source``, ``multiplicity_before``,
        ``multiplicity_after``), ``theoretical_saving``, the keys of
        :func:`critical.accounting.phase_summary` (``total``, ``phases``, ``per_sample_before``,
        ``per_sample_spread``, ``per_sample_epochs``, ``counterfactual_after``, ``saving``,
        ``saving_fraction``, ``saving_check``) and ``interrupted_epoch``. What cannot be computed
        is ``None``.
        """
        return records.summarize(self)

    # ------------------------------------------------------------------ checkpoint state
    @override
    def state_dict(self) -> dict[str, Any]:
        return records.checkpoint_state(self)

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        records.restore_state(self, state_dict)
