"""The ``critical`` command.

``critical fit|validate|test`` is a :class:`~lightning.pytorch.cli.LightningCLI` over
:class:`~critical.task.ImageClassifier` and :class:`~critical.data.ImageDataModule` with the
library's callbacks already wired in, each under its own key, so every Trainer, model, data and
callback option is settable from YAML or flags::

    critical fit --config experiments/quickstart.yaml
    critical fit --config experiments/cifar10_resnet18.yaml --cutoff.policy fixed --cutoff.epoch 30
    critical fit --print_config          # every option with its default

Callback keys: ``gradient_confusion``, ``gradient_norm``, ``gradient_predictability``, ``layer_rotation``,
``critical_period``, ``cutoff``, ``energy``, ``robustness``, ``run`` (the run directory). The
model's ``num_classes``, ``in_chans``, ``img_size``, ``mean`` and ``std`` follow the data.

``critical sweep`` and ``critical report`` are in :mod:`critical.sweep` and
:mod:`critical.report`.
"""

from __future__ import annotations

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
            for src, dst in (
                ("data.num_classes", "model.num_classes"),
                ("data.in_chans", "model.in_chans"),
                ("data.image_size", "model.img_size"),
                ("data.mean", "model.mean"),
                ("data.std", "model.std"),
            ):
                parser.link_arguments(src, dst, apply_on="instantiate")

        def after_fit(self) -> None:
            print_run_summary(self.trainer)

    return CriticalCLI, RunConfigCallback


def print_run_summary(trainer: Any) -> None:
    """Print the run summary (rank 0) unless the trainer's RunDirectory already printed it at fit
    end (it does, and writes ``summary.json``: see :mod:`critical.summary`)."""
    if trainer.global_rank != 0:
        return
    from critical.runfiles import find_callback
    from critical.summary import build_summary, format_summary

    run = find_callback(trainer, lambda cb: callable(getattr(cb, "ensure_directory", None)))
    if run is None:
        print(format_summary(build_summary(trainer)), flush=True)


def run_lightning(argv: Sequence[str] | None) -> None:
    """Run LightningCLI; ``argv=None`` reads ``sys.argv`` (the console entry point)."""
    from critical.data import ImageDataModule
    from critical.task import ImageClassifier

    cli_cls, save_config = _cli_classes()
    cli_cls(
        ImageClassifier,
        ImageDataModule,
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
