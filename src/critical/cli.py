"""The ``critical`` command.

``critical fit|validate|test`` is a :class:`~lightning.pytorch.cli.LightningCLI` over
:class:`~critical.task.ImageClassifier` and a datamodule — :class:`~critical.data.ImageDataModule`
by default, any other with ``data: {class_path: ..., init_args: {...}}`` (such as
:class:`~critical.data.TimeSeriesDataModule`) — with the library's callbacks already wired in,
each under its own key, so every Trainer, model, data and callback option is settable from YAML
or flags::

    critical fit --config experiments/quickstart.yaml
    critical fit --config experiments/cifar10_resnet18.yaml --cutoff.policy fixed --cutoff.epoch 30
    critical fit --print_config          # every option with its default

Callback keys: ``gradient_confusion``, ``gradient_norm``, ``gradient_predictability``, ``layer_rotation``,
``critical_period``, ``cutoff``, ``energy``, ``robustness``, ``run`` (the run directory). The
model's ``num_classes``, ``in_chans``, ``img_size`` (the series length for time series), ``mean``
and ``std`` follow the data.

``critical sweep`` and ``critical report`` are in :mod:`critical.sweep` and
:mod:`critical.report`.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Sequence
from typing import Any

from critical import __version__

USAGE = f"""critical {__version__}: detect the end of the critical period and cut augmentation.

usage: critical <command> [options]

commands:
  fit        train (LightningCLI): critical fit --config experiments/quickstart.yaml
  validate   evaluate on the validation split (same options as fit)
  test       evaluate on the test split (same options as fit)
  sweep      run, or emit commands for, a grid of policies x models x seeds
  report     tables (Markdown, CSV, LaTeX) and plots from run directories
  version    print the version

Run `critical <command> --help` for the options of a command.
"""

LIGHTNING_COMMANDS = ("fit", "validate", "test")
DEFAULT_DATAMODULE = "critical.data.ImageDataModule"


def input_size(data: Any) -> int:
    """The model's ``img_size`` from the datamodule: its ``series_length`` (time series) or its
    ``image_size`` (images)."""
    length = getattr(data, "series_length", None)
    return int(length if length is not None else data.image_size)


def _cli_classes():
    from lightning.pytorch.cli import LightningCLI, SaveConfigCallback

    from critical.callbacks import (
        AugmentationCutoff,
        CriticalPeriod,
        EnergyTracker,
        GradientConfusion,
        GradientNorm,
        GradientPredictability,
        LayerRotation,
        RobustnessEvaluator,
        RunDirectory,
    )
    from critical.io import atomic_write_text

    class RunConfigCallback(SaveConfigCallback):
        """Saves the full resolved config as ``config.yaml`` in the run directory (falls back to
        Lightning's log_dir when the trainer has no RunDirectory)."""

        def setup(self, trainer, pl_module, stage: str) -> None:
            if self.already_saved:
                return
            run = next((cb for cb in trainer.callbacks if isinstance(cb, RunDirectory)), None)
            if run is None:
                return super().setup(trainer, pl_module, stage)
            path = run.ensure_directory(trainer)  # collective: every rank calls it
            if trainer.is_global_zero:
                text = self.parser.dump(self.config, skip_none=False)
                atomic_write_text(path / self.config_filename, text)
            self.already_saved = True

    class CriticalCLI(LightningCLI):
        """LightningCLI with the critical callbacks under their own keys."""

        def add_arguments_to_parser(self, parser) -> None:
            for cls, key in (
                (GradientConfusion, "gradient_confusion"),
                (GradientNorm, "gradient_norm"),
                (GradientPredictability, "gradient_predictability"),
                (LayerRotation, "layer_rotation"),
                (CriticalPeriod, "critical_period"),
                (AugmentationCutoff, "cutoff"),
                (EnergyTracker, "energy"),
                (RobustnessEvaluator, "robustness"),
                (RunDirectory, "run"),
            ):
                parser.add_lightning_class_args(cls, key)
            # `data:` without a class_path configures the ImageDataModule, as before
            parser.set_defaults({"data": {"class_path": DEFAULT_DATAMODULE}})
            for src, dst in (
                ("data.num_classes", "model.num_classes"),
                ("data.in_chans", "model.in_chans"),
                ("data.mean", "model.mean"),
                ("data.std", "model.std"),
            ):
                parser.link_arguments(src, dst, apply_on="instantiate")
            parser.link_arguments(
                "data", "model.img_size", compute_fn=input_size, apply_on="instantiate"
            )

        def after_fit(self) -> None:
            print_run_summary(self.trainer)

    return CriticalCLI, RunConfigCallback


def _fmt(v: Any, unit: str = "", scale: float = 1.0, digits: int = 3) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "n/a"
    return f"{v * scale:.{digits}g}{unit}"


EPOCH_COLUMNS = (
    ("k", "multiplicity", "{:.0f}"),
    ("confusion", "critical/gradient_confusion/mean", "{:+.3f}"),
    ("predict.", "critical/gradient_predictability", "{:+.3f}"),
    ("rotation", "critical/layer_rotation", "{:.4f}"),
    ("train loss", "train/loss", "{:.3f}"),
    ("val acc", "val/acc", "{:.2%}"),
    ("time s", "energy/duration_s", "{:.1f}"),
)


def epoch_table(rows: Sequence[dict[str, Any]], cut_epoch: int | None = None) -> list[str]:
    """The per-epoch metric curves as text lines (the cut marked with ``<- k cut``)."""
    cols = [(title, key, fmt) for title, key, fmt in EPOCH_COLUMNS if any(key in r for r in rows)]
    widths = [max(len(title), 8) for title, _, _ in cols]
    out = ["epoch " + " ".join(t.rjust(w) for (t, _, _), w in zip(cols, widths))]
    for r in rows:
        cells = []
        for (_, key, fmt), w in zip(cols, widths):
            v = r.get(key)
            cells.append(("-" if v is None else fmt.format(v)).rjust(w))
        mark = "  <- k cut" if cut_epoch is not None and r.get("epoch") == cut_epoch else ""
        out.append(f"{r.get('epoch', ''):>5} " + " ".join(cells) + mark)
    return out


def _split_names(trainer: Any) -> dict[str, str]:
    """The datamodule's description of its splits (``split_names``), or ``{}``."""
    try:
        names = getattr(trainer.datamodule, "split_names", None)
    except Exception:  # noqa: BLE001 - a summary line must not fail a finished run
        return {}
    return dict(names) if isinstance(names, dict) else {}


def print_run_summary(trainer: Any) -> None:
    """Print what a run measured and where its files are; draw its plot (rank 0 only)."""
    if trainer.global_rank != 0:
        return
    from critical.callbacks import (
        AugmentationCutoff,
        CriticalPeriod,
        EnergyTracker,
        RobustnessEvaluator,
        RunDirectory,
    )

    def find(cls):
        return next((cb for cb in trainer.callbacks if isinstance(cb, cls)), None)

    run, cp, cut = find(RunDirectory), find(CriticalPeriod), find(AugmentationCutoff)
    energy, rob = find(EnergyTracker), find(RobustnessEvaluator)
    m = trainer.callback_metrics
    lines = ["", "=" * 72, "critical: run summary", "-" * 72]
    if run is not None and run.rows:
        lines += epoch_table(run.rows, cut_epoch=None if cut is None else cut.cut_epoch)
        lines.append("-" * 72)
    splits = _split_names(trainer)
    acc = m.get("val/acc")
    on_val = f", on {splits['val']}" if acc is not None and "val" in splits else ""
    lines.append(
        f"validation accuracy (last epoch{on_val}): "
        f"{_fmt(None if acc is None else float(acc), '%', 100, 4)}"
    )
    if cp is not None:
        ev = cp.event
        lines.append(
            "critical period: "
            + (
                "not over within the run"
                if ev is None
                else f"over at the end of epoch {ev.epoch} ({ev.reason})"
            )
        )
    if cut is not None:
        lines.append(
            f"multiplicity: k={cut.multiplicity_before}"
            + (
                ""
                if cut.cut_epoch is None
                else f" -> {cut.multiplicity_after} from epoch {cut.cut_epoch}"
            )
        )
    if rob is not None and rob.results:
        r = rob.results
        parts = [
            f"{k.replace('_acc', '')} {_fmt(r.get(k), '%', 100, 4)}"
            for k in ("clean_acc", "fgsm_acc", "pgd_acc", "corruption_acc")
            if k in r
        ]
        kind = r.get("data")
        on = f" (on {splits.get(kind, kind)})" if kind else ""
        lines.append(f"robustness{on}: " + ", ".join(parts))
    if energy is not None:
        s = energy.summary()
        t = s["total"]
        lines.append(
            f"time {_fmt(t.get('duration_s'), ' s')}, energy {_fmt(t.get('energy_kwh'), ' Wh', 1000)}, "
            f"CO2 {_fmt(t.get('co2_kg'), ' g', 1000)} ({s['country_iso_code']} grid)"
        )
        frac = s.get("saving_fraction") or {}
        if frac:
            lines.append(
                "saving vs keeping k (estimated from the measured pre-cut cost per sample): "
                f"time {_fmt(frac.get('duration_s'), '%', 100)}, energy {_fmt(frac.get('energy_kwh'), '%', 100)}, "
                f"CO2 {_fmt(frac.get('co2_kg'), '%', 100)}"
            )
        if s.get("missing"):
            lines.append(f"energy not measured: {s['missing']}")
    if run is not None and run.path is not None:
        lines.append(f"run directory: {run.path}")
        try:
            from critical.report import plot_run

            plots = plot_run(run.path)
            if plots:
                lines.append(f"plot: {plots[0]}")
        except Exception as err:  # noqa: BLE001 - a plot must not fail a finished run
            lines.append(f"plot not drawn: {err}")
    lines.append("=" * 72)
    print("\n".join(lines), flush=True)


def run_lightning(argv: Sequence[str] | None) -> None:
    """Run LightningCLI; ``argv=None`` reads ``sys.argv`` (the console entry point)."""
    import lightning as L

    from critical.task import ImageClassifier

    cli_cls, save_config = _cli_classes()
    cli_cls(
        ImageClassifier,
        L.LightningDataModule,
        subclass_mode_data=True,
        args=None if argv is None else list(argv),
        save_config_callback=save_config,
        # no default logger: RunDirectory adds a TensorBoardLogger writing into the run directory
        trainer_defaults={"logger": False},
        parser_kwargs={"prog": "critical"},
    )


def main(argv: Sequence[str] | None = None) -> int:
    from_sys = argv is None
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(USAGE)
        return 0
    cmd, rest = argv[0], argv[1:]
    if cmd in ("version", "--version", "-V"):
        print(f"critical {__version__}")
        return 0
    if cmd in LIGHTNING_COMMANDS:
        run_lightning(None if from_sys else argv)
        return 0
    if cmd == "sweep":
        from critical.sweep import main as sweep_main

        return sweep_main(rest)
    if cmd == "report":
        from critical.report import main as report_main

        return report_main(rest)
    print(f"critical: unknown command {cmd!r}\n\n{USAGE}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
