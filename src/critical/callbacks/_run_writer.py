"""The files of a run directory as :class:`~critical.callbacks.RunDirectory` writes them: one
write per file that warns instead of failing, the epoch rows (and their TensorBoard copy), the cut
event, energy, robustness, the evaluations after the fit and, at fit end, the plot and the
summary (the directory itself, the hooks and the checkpoint state stay in
:mod:`critical.callbacks.run_directory`)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.utilities import rank_zero_warn

from critical._find import find_cutoff, find_detector, find_energy, find_robustness
from critical.callbacks._epoch_rows import EpochRows, write_epoch_scalars
from critical.io import atomic_write_csv, atomic_write_json, atomic_write_text, to_jsonable
from critical.runfiles import (
    CUT_EVENT,
    ENERGY,
    EVALUATIONS,
    EXCEPTION,
    METRICS_CSV,
    METRICS_JSON,
    ROBUSTNESS,
    SUMMARY,
    cut_from_multiplicities,
)
from critical.summary import add_evaluation, build_summary, format_summary

__all__ = ["RunFileWriter"]


class RunFileWriter:
    """The writing half of :class:`~critical.callbacks.RunDirectory` (a mixin: the attributes
    below are set by its ``__init__`` and hooks)."""

    path: Path | None
    rows: list[dict[str, Any]]
    summary: dict[str, Any] | None
    not_written: dict[str, str]
    evaluations: list[dict[str, Any]]
    plot: bool
    print_summary: bool
    accuracy_key: str | None
    _rows: EpochRows
    _created: bool
    _is_writer: bool

    def _record_evaluation(self, trainer: pl.Trainer, stage: str) -> None:
        """A ``trainer.validate`` / ``trainer.test`` run: its metrics go into ``summary.json``
        (``evaluations``) and ``evaluations.json``."""
        metrics = {}
        for key, value in trainer.callback_metrics.items():
            v = to_jsonable(value)
            if isinstance(v, (int, float)):
                metrics[key] = v
        entry = {"stage": stage, "epoch": trainer.current_epoch, "metrics": metrics}
        self.evaluations.append(entry)
        if not (self._is_writer and self._created):
            return
        self._write(EVALUATIONS, atomic_write_json, self.evaluations)
        if self.summary is not None:  # its accuracy, test accuracy and splits
            add_evaluation(self.summary, entry, trainer)
            self._write(SUMMARY, atomic_write_json, self.summary)

    # ------------------------------------------------------------------ fit end
    def _finish(self, trainer: pl.Trainer) -> None:
        """Draw the plot, build, write and print the summary; never fails the run."""
        plot = None
        if self.plot and self._created and self.path is not None and self.rows:
            try:
                from critical.report import plot_run

                plots = plot_run(self.path, accuracy_key=self.accuracy_key)
                plot = str(plots[0]) if plots else None
            except Exception as e:  # noqa: BLE001 - a plot must not fail a finished run
                self.not_written["plot.png"] = f"{type(e).__name__}: {e}"
        try:
            summary = build_summary(trainer, self.rows, self.path, self.accuracy_key)
        except Exception as e:  # noqa: BLE001 - the run itself is complete
            rank_zero_warn(f"RunDirectory: the run summary could not be built ({e!r})")
            return
        summary["plot"] = plot
        summary["not_written"] = {**summary.get("not_written", {}), **self.not_written}
        if not self._write(SUMMARY, atomic_write_json, summary) and SUMMARY in self.not_written:
            summary["not_written"][SUMMARY] = self.not_written[SUMMARY]
        self.summary = summary
        if self.print_summary:
            print(format_summary(summary, self.rows), flush=True)

    # ------------------------------------------------------------------ writers
    def _write(self, name: str, writer: Callable[..., None], data: Any) -> bool:
        """Write ``name`` in the run directory; a failure warns once per file, is remembered in
        :attr:`not_written` and never stops training."""
        if not (self._is_writer and self._created and self.path is not None):
            return False
        try:
            writer(self.path / name, data)
        except OSError as e:
            if name not in self.not_written:
                rank_zero_warn(
                    f"RunDirectory: could not write {self.path / name} ({e!r}); training goes on "
                    "and the run summary lists what was not written"
                )
            self.not_written[name] = f"{type(e).__name__}: {e}"
            return False
        self.not_written.pop(name, None)
        return True

    def _flush_pending(self, trainer: pl.Trainer) -> None:
        row = self._rows.flush(trainer)
        if row is None or not self._is_writer or not self._created:
            return
        self._write_metrics()
        self._write_cut_event(trainer)
        self._write_energy(trainer)
        try:
            seen = self._rows.samples_seen(row["epoch"])
            write_epoch_scalars(trainer.loggers, row, seen)
        except Exception as e:  # noqa: BLE001 - TensorBoard must not stop training
            self.not_written.setdefault("tensorboard", f"{type(e).__name__}: {e}")

    def _write_exception(self, trainer: pl.Trainer, exception: BaseException) -> None:
        assert self.path is not None  # on_exception writes only into a created directory
        atomic_write_text(
            self.path / EXCEPTION,
            f"{datetime.now(timezone.utc).isoformat()} epoch={trainer.current_epoch} "
            f"global_step={trainer.global_step}\n{type(exception).__name__}: {exception}\n",
        )

    def _write_metrics(self) -> None:
        keys: dict[str, None] = {"epoch": None, "multiplicity": None}
        for r in self.rows:
            for k in sorted(r):
                keys.setdefault(k, None)
        fields = list(keys)
        self._write(
            METRICS_CSV, lambda p, rows: atomic_write_csv(p, rows, fieldnames=fields), self.rows
        )
        self._write(METRICS_JSON, atomic_write_json, self.rows)

    def _write_results(self, trainer: pl.Trainer) -> None:
        if not (self._is_writer and self._created and self.path is not None):
            return
        self._write_cut_event(trainer)
        self._write_energy(trainer)
        rob = find_robustness(trainer)
        if rob is not None and rob.results is not None:
            data = (
                rob.results
                if len(rob.all_results) <= 1
                else {**rob.results, "all": rob.all_results}
            )
            self._write(ROBUSTNESS, atomic_write_json, data)

    def _write_energy(self, trainer: pl.Trainer) -> None:
        energy = find_energy(trainer)
        if energy is not None:
            self._write(ENERGY, atomic_write_json, {**energy.summary(), "history": energy.history})

    def _write_cut_event(self, trainer: pl.Trainer) -> None:
        self._write(CUT_EVENT, atomic_write_json, self.cut_event(trainer))

    def cut_event(self, trainer: pl.Trainer) -> dict[str, Any]:
        """The content of ``cut_event.json``: the detector's event and the cut, or not fired."""
        out: dict[str, Any] = {"fired": False}
        cp = find_detector(trainer)
        event = getattr(cp, "event", None) if cp is not None else None
        if event is not None:
            out["fired"] = True
            out["event"] = to_jsonable(event.to_dict() if hasattr(event, "to_dict") else event)
        explain = getattr(cp, "explain", None) if cp is not None else None
        if callable(explain):  # the guards' readings at the firing, or what held it back
            account = explain()
            out["explanation"] = account.get("text")
            out["guards"] = to_jsonable(account.get("at_fire") or account.get("held_back"))
        diverged = getattr(cp, "diverged", None) if cp is not None else None
        if diverged is not None:
            out["diverged"] = to_jsonable(diverged)
        cutoff = find_cutoff(trainer)
        if cutoff is not None and getattr(cutoff, "cut_epoch", None) is not None:
            out["fired"] = True
            out["cut_epoch"] = cutoff.cut_epoch
            out["multiplicity_before"] = getattr(cutoff, "multiplicity_before", None)
            out["multiplicity_after"] = getattr(cutoff, "multiplicity_after", None)
            out["source"] = "cutoff"
        elif cutoff is None:
            # no cutoff callback: a change of k between epochs is the cut
            found = cut_from_multiplicities((r["epoch"], r.get("multiplicity")) for r in self.rows)
            if found is not None:
                out.update(fired=True, **found, source="multiplicity")
        return out
