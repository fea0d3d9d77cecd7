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

Callback keys: each metric callback's own (its ``cli_key``: ``gradient_confusion``,
``layer_rotation``, ..., ``critical fit --help`` lists them), ``critical_period``, ``cutoff``,
``energy``, ``robustness``, ``run`` (the run directory). The
model's ``num_classes``, ``in_chans``, ``img_size`` (the series length for time series), ``mean``
and ``std`` follow the data.

``critical sweep`` and ``critical report`` are in :mod:`critical.sweep` and
:mod:`critical.report`.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence
from typing import Any

from critical import __version__
from critical.cli_errors import (
    USER_ERRORS,
    UsageError,
    before_training,
    closest,
    usage_error_lines,
    user_error_lines,
)
from critical.cli_help import CHOICES, MONITOR_METRICS, OPTION_HELP, command_help, describe_choices

__all__ = [
    "CHOICES",
    "MONITOR_METRICS",
    "OPTION_HELP",
    "command_help",
    "input_size",
    "main",
    "print_run_summary",
    "run_lightning",
]

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


def _option_names(parser: Any) -> list[str]:
    """Every ``--option`` of a jsonargparse/argparse parser and of its subcommand parsers."""
    names: dict[str, None] = {}
    todo, seen = [parser], set()
    while todo:
        p = todo.pop()
        if id(p) in seen:
            continue
        seen.add(id(p))
        for action in getattr(p, "_actions", []):
            names.update(dict.fromkeys(o for o in action.option_strings if o.startswith("--")))
            choices = getattr(action, "choices", None)
            if isinstance(choices, dict):
                todo += [c for c in choices.values() if hasattr(c, "_actions")]
    return list(names)


def _cli_classes():
    from lightning.pytorch.cli import LightningArgumentParser, LightningCLI, SaveConfigCallback

    from critical._registry import metric_entries
    from critical.callbacks import (
        AugmentationCutoff,
        CriticalPeriod,
        EnergyTracker,
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

    class ShortErrorParser(LightningArgumentParser):
        """Raises :class:`UsageError` instead of printing the whole usage (``--debug``: as
        jsonargparse does)."""

        def error(self, message: str, ex: Exception | None = None):
            parser = getattr(ex, "subcommand_parser", None) or self
            raise UsageError(message, _option_names(parser) + _option_names(self)) from ex

        def format_help(self, formatter: Any = None) -> str:
            # also the `--data.help CLASS` parser jsonargparse builds; CHOICES' data.* values are
            # those of the default data module
            about = self.description or ""
            if not about.startswith("Help for --data.help=") or about.endswith(DEFAULT_DATAMODULE):
                describe_choices(self)
            return super().format_help(formatter)

    class CriticalCLI(LightningCLI):
        """LightningCLI with the critical callbacks under their own keys."""

        def add_arguments_to_parser(self, parser) -> None:
            # each metric callback under its own key (its cli_key: critical._registry), then the rest
            for cls, key in (
                *((e.cls, e.key) for e in metric_entries()),
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
            describe_choices(parser)

        def after_fit(self) -> None:
            print_run_summary(self.trainer)

    return CriticalCLI, RunConfigCallback, ShortErrorParser


def print_run_summary(trainer: Any) -> None:
    """Print the run summary (rank 0) unless the trainer's RunDirectory already printed it at fit
    end (it does, and writes ``summary.json``: see :mod:`critical.summary`)."""
    if trainer.global_rank != 0:
        return
    from critical._find import find_run_directory
    from critical.summary import build_summary, format_summary

    run = find_run_directory(trainer)
    if run is None:
        print(format_summary(build_summary(trainer)), flush=True)


def _quiet_seed(record: logging.LogRecord) -> bool:
    return not str(record.msg).startswith("Seed set to")


def run_lightning(argv: Sequence[str] | None, *, debug: bool = False) -> None:
    """Run LightningCLI; ``argv=None`` reads ``sys.argv`` (the console entry point). Parse errors
    raise :class:`UsageError` (with ``debug``: jsonargparse prints the usage and exits 2)."""
    import lightning as L

    from critical.task import ImageClassifier

    seed_log = logging.getLogger("lightning.fabric.utilities.seed")
    if _quiet_seed not in seed_log.filters:  # "Seed set to N" (the seed is in config.yaml)
        seed_log.addFilter(_quiet_seed)
    cli_cls, save_config, parser_cls = _cli_classes()
    kwargs: dict[str, Any] = {} if debug else {"parser_class": parser_cls}
    cli_cls(
        ImageClassifier,
        L.LightningDataModule,
        subclass_mode_data=True,
        args=None if argv is None else list(argv),
        save_config_callback=save_config,
        # no default logger: RunDirectory adds a TensorBoardLogger writing into the run directory
        trainer_defaults={"logger": False},
        parser_kwargs={"prog": "critical"},
        **kwargs,
    )


def _help_all(cmd: str) -> int:
    """LightningCLI's full help, then the options of the default data module (``--data`` takes
    a class, so LightningCLI's help lists its options only with ``--data.help CLASS``)."""
    saved = sys.argv
    for args in ([cmd, "--help"], [cmd, "--data.help", DEFAULT_DATAMODULE]):
        if args[1] != "--help":
            print(
                f"\n--data options of {DEFAULT_DATAMODULE} (the default; for series: "
                f"critical {cmd} --data.help critical.data.TimeSeriesDataModule):\n",
                flush=True,
            )
        sys.argv = [saved[0] if saved else "critical", *args]  # LightningCLI reads sys.argv
        try:
            run_lightning(None)
        except SystemExit as exc:
            if exc.code not in (0, None):
                raise
        finally:
            sys.argv = saved
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """The ``critical`` command. Returns the exit status: 0, or 2 for a user error (printed as
    one or two lines; ``--debug`` anywhere on the command line shows the traceback instead)."""
    from_sys = argv is None
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    argv = [a for a in argv if a != "--debug"]
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(USAGE)
        return 0
    cmd, rest = argv[0], argv[1:]
    if cmd in ("version", "--version", "-V"):
        print(f"critical {__version__}")
        return 0
    if cmd in LIGHTNING_COMMANDS:
        if "-h" in rest or "--help" in rest:
            print(command_help(cmd))
            return 0
        if "--help-all" in rest:
            return _help_all(cmd)
        args = [cmd, *rest]
        if from_sys:  # LightningCLI reads sys.argv itself (and warns when given both)
            sys.argv = [sys.argv[0], *args]
        try:
            run_lightning(None if from_sys else args, debug=debug)
        except UsageError as err:
            print("\n".join(usage_error_lines(cmd, err)), file=sys.stderr)
            return 2
        except USER_ERRORS as err:
            if debug or not before_training(err):
                raise
            print("\n".join(user_error_lines(cmd, err)), file=sys.stderr)
            return 2
        return 0
    if cmd == "sweep":
        from critical.sweep import main as sweep_main

        return sweep_main(rest)
    if cmd == "report":
        from critical.report import main as report_main

        return report_main(rest)
    close = closest(cmd, [*LIGHTNING_COMMANDS, "sweep", "report", "version"])
    hint = f"; did you mean {close!r}?" if close else ""
    print(
        f"critical: error: unknown command {cmd!r}{hint}\n(`critical --help` lists the commands)",
        file=sys.stderr,
    )
    return 2


if __name__ == "__main__":
    sys.exit(main())
