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
``aug_gap``, ``critical_period``, ``cutoff``, ``energy``, ``robustness``, ``run`` (the run directory). The
model's ``num_classes``, ``in_chans``, ``img_size`` (the series length for time series), ``mean``
and ``std`` follow the data.

``critical sweep`` and ``critical report`` are in :mod:`critical.sweep` and
:mod:`critical.report`.
"""

from __future__ import annotations

import logging
import sys
import textwrap
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


#: options with a fixed set of values: shown by ``critical fit --help`` (without importing
#: Lightning) and added to the full LightningCLI help (``--help-all``); tests/test_cli.py checks
#: them against the constants of the modules that validate them
CHOICES: dict[str, tuple[str, ...]] = {
    "model.optimizer": ("sgd", "adamw"),
    "model.schedule": ("cosine", "multistep", "constant", "onecycle"),
    "model.schedule_interval": ("epoch", "step"),
    "data.dataset": ("cifar10", "cifar100", "folder", "digits", "synthetic"),
    "data.layout": ("epoch", "batch"),
    "data.padding_mode": ("zeros", "reflect"),
    "data.policy": ("none", "trivialaugment", "randaugment"),
    "gradient_confusion.mode": ("stream", "exact"),
    "layer_rotation.aggregate": ("mean", "median", "max"),
    "critical_period.mode": ("scaled", "absolute", "relative"),
    "critical_period.combine": ("any", "all"),
    "cutoff.policy": ("detector", "fixed", "never"),
    "energy.tracking_mode": ("machine", "process"),
    "robustness.when": ("fit_end", "test_end", "both", "never"),
    "robustness.source": ("auto", "test", "val"),
}

#: the metric names ``--critical_period.monitor`` knows (any other logged metric works too)
MONITOR_METRICS = (
    "layer_rotation",
    "gradient_norm",
    "gradient_predictability",
    "gradient_confusion/mean",
    "gradient_confusion/min",
    "gradient_confusion/max",
    "aug_gap",
    "aug_gap/aug_loss",
    "aug_gap/clean_loss",
    "aug_gap/aug_acc",
    "aug_gap/clean_acc",
)

#: help text for options whose constructor documents them only as a type and a default
OPTION_HELP: dict[str, str] = {
    "data.crop_padding": "random-crop padding in pixels (0: no crop)",
    "data.flip": "random horizontal flip",
    "data.cutout": "side of the cutout square in pixels (0: no cutout)",
    "data.policy": "extra augmentation per image (--data.num_ops, --data.magnitude)",
    "data.padding_mode": "padding of the random crop",
    "critical_period.monitor": "metric(s) watched (one, or a list); any other logged metric "
    "works too. Known: " + ", ".join(MONITOR_METRICS),
    "cutoff.policy": "detector: cut when the critical period ends; fixed: after --cutoff.epoch "
    "epochs (or --cutoff.fraction of max_epochs); never: keep k (a baseline)",
    "cutoff.epoch": "policy=fixed: the first epoch trained at the target k (0: from the start)",
    "cutoff.fraction": "policy=fixed: cut after this fraction of max_epochs, in [0, 1] "
    "(instead of --cutoff.epoch)",
    "cutoff.target": "k after the cut (>= 1)",
    "cutoff.disable_augmentation": "also turn augmentation off at the cut",
}

#: ``critical fit --help``: (section, [(option, metavar, default, what)]); choices come from
#: CHOICES, defaults of the detector from critical.detector.DEFAULTS
_MAIN_OPTIONS: tuple[tuple[str, tuple[tuple[str, str, str, str], ...]], ...] = (
    (
        "",
        (
            ("config", "FILE", "", "a YAML config (experiments/*.yaml); later flags override it"),
            ("print_config", "", "", "print every option with its resolved value, and exit"),
            ("seed_everything", "INT", "", "the seed (the data split has its own, --data.seed)"),
            ("trainer.max_epochs", "INT", "", "epochs (the training budget)"),
        ),
    ),
    (
        "model",
        (
            (
                "model.model",
                "NAME",
                "resnet18_cifar",
                "cifar_resnet20/32/44/56, resnet18_cifar, vit_cifar_tiny/small, "
                "small_cnn, or any timm name",
            ),
            ("model.optimizer", "", "sgd", ""),
            ("model.lr", "FLOAT", "0.1", "peak learning rate"),
            ("model.schedule", "", "cosine", "per epoch (onecycle: per step)"),
        ),
    ),
    (
        "data",
        (
            ("data.dataset", "", "cifar10", ""),
            ("data.root", "PATH", "", "CIFAR root, or the ImageFolder directory"),
            ("data.multiplicity", "INT", "1", "k: augmented copies of each image per epoch"),
            ("data.layout", "", "epoch", "k copies per epoch, or k views in each batch"),
            ("data.crop_padding", "INT", "4", "random-crop padding in pixels (0: no crop)"),
            ("data.flip", "BOOL", "true", OPTION_HELP["data.flip"]),
            ("data.cutout", "INT", "0", "cutout square side in pixels (0: none)"),
            ("data.policy", "", "none", "extra augmentation per image"),
        ),
    ),
    (
        "critical period (the detector)",
        (
            ("critical_period.monitor", "NAME", "@monitor", ""),
            ("critical_period.mode", "", "@mode", "how a change is measured"),
            ("critical_period.threshold", "FLOAT", "@threshold", "largest change counted stable"),
            ("critical_period.patience", "INT", "@patience", "stable epochs in a row"),
            ("critical_period.min_epochs", "INT", "@min_epochs", "epochs before it may fire"),
            ("critical_period.combine", "", "@combine", "with several metrics"),
        ),
    ),
    (
        "the cut",
        (
            ("cutoff.policy", "", "detector", "when k is cut (never: a baseline)"),
            ("cutoff.epoch", "INT", "", "fixed: first epoch at the target k"),
            ("cutoff.fraction", "FLOAT", "", "fixed: or this fraction of max_epochs"),
            ("cutoff.target", "INT", "1", "k after the cut"),
            ("cutoff.disable_augmentation", "BOOL", "false", "augmentation off after the cut"),
        ),
    ),
    (
        "where the run goes",
        (
            ("run.root", "PATH", "runs", "parent directory of the run directories"),
            ("run.name", "NAME", "", "the run's directory name (default: time + random)"),
            ("run.tags", "JSON", "", "free-form labels saved in config.json"),
        ),
    ),
)

_VERBS = {
    "fit": "train with the critical-period callbacks",
    "validate": "evaluate on the validation split",
    "test": "evaluate on the test split",
}


def command_help(cmd: str = "fit") -> str:
    """``critical fit|validate|test --help``: the main options with their values, fast (no
    Lightning import) and short; ``--help-all`` prints LightningCLI's full help."""
    from critical.detector import DEFAULTS

    lines = [
        f"critical {cmd}: {_VERBS.get(cmd, cmd)} (a LightningCLI).",
        f"usage: critical {cmd} [--config FILE] [--KEY VALUE | --KEY=VALUE ...] [--debug]",
    ]
    for section, options in _MAIN_OPTIONS:
        lines.append("")
        if section:
            lines.append(f"{section}:")
        for key, metavar, default, what in options:
            if default.startswith("@"):
                default = str(DEFAULTS[default[1:]])
            if key in CHOICES:
                metavar = "{" + "|".join(CHOICES[key]) + "}"
                what = what or "one of these"
            left = f"  --{key} {metavar}".rstrip()
            if key == "critical_period.monitor":
                what = "metric(s) watched: " + ", ".join(MONITOR_METRICS) + ", any logged metric"
            right = " ".join(x for x in (what, f"(default: {default})" if default else "") if x)
            if len(left) > 36:
                lines.append(left)
                left = ""
            lines += textwrap.wrap(
                right, 100, initial_indent=f"{left:<38}", subsequent_indent=" " * 38
            ) or [left]
    lines += [
        "",
        "other keys (each callback's options): gradient_confusion, gradient_norm,",
        "gradient_predictability, layer_rotation, aug_gap, energy, robustness; trainer.*: any",
        "Trainer option.",
        f"All options, with types and defaults: critical {cmd} --help-all (about 1,100 lines).",
        "--debug: a traceback instead of the one-line message on an error.",
    ]
    return "\n".join(lines)


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


def _describe_choices(parser: Any) -> None:
    """Put the valid values and the missing descriptions (CHOICES, OPTION_HELP) into the help
    of the LightningCLI parser's options (shown by ``--help-all``)."""
    actions = getattr(parser, "_option_string_actions", {})
    for key in {**CHOICES, **OPTION_HELP}:
        action = actions.get(f"--{key}")
        if action is None:
            continue
        text = OPTION_HELP.get(key) or (action.help or "").strip()
        if key in CHOICES:
            text = f"{text.rstrip('.')}. One of: {', '.join(CHOICES[key])}".lstrip(". ")
            action.metavar = "{" + ",".join(CHOICES[key]) + "}"
        action.help = text.replace("%", "%%")


def _cli_classes():
    from lightning.pytorch.cli import LightningArgumentParser, LightningCLI, SaveConfigCallback

    from critical.callbacks import (
        AugmentationCutoff,
        AugmentationGap,
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
                _describe_choices(self)
            return super().format_help(formatter)

    class CriticalCLI(LightningCLI):
        """LightningCLI with the critical callbacks under their own keys."""

        def add_arguments_to_parser(self, parser) -> None:
            for cls, key in (
                (GradientConfusion, "gradient_confusion"),
                (GradientNorm, "gradient_norm"),
                (GradientPredictability, "gradient_predictability"),
                (LayerRotation, "layer_rotation"),
                (AugmentationGap, "aug_gap"),
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
            _describe_choices(parser)

        def after_fit(self) -> None:
            print_run_summary(self.trainer)

    return CriticalCLI, RunConfigCallback, ShortErrorParser


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
