"""The ``critical fit|validate|test`` help: the short help of the main options
(:func:`command_help`, imported and printed without torch or Lightning), the options' fixed
choices (:data:`CHOICES`) and the help text added to LightningCLI's full help
(:func:`describe_choices`, for ``--help-all``)."""

from __future__ import annotations

import textwrap
from typing import Any, get_args

from critical import choices, detector
from critical._registry import declared_metric_names, declared_metrics

__all__ = [
    "CHOICES",
    "METRIC_KEYS",
    "MONITOR_METRICS",
    "OPTION_HELP",
    "command_help",
    "describe_choices",
]

#: options with a fixed set of values, from the ``Literal`` types the constructors are annotated
#: with (:mod:`critical.choices`) and the detector's constants (plain Python): shown by ``critical
#: fit --help`` (without importing Lightning) and added to the full LightningCLI help
#: (``--help-all``)
CHOICES: dict[str, tuple[str, ...]] = {
    "model.optimizer": get_args(choices.Optimizer),
    "model.schedule": get_args(choices.Schedule),
    "model.schedule_interval": get_args(choices.Interval),
    "data.dataset": get_args(choices.Dataset),
    "data.layout": get_args(choices.Layout),
    "data.padding_mode": get_args(choices.PaddingMode),
    "data.policy": get_args(choices.AugmentPolicy),
    "gradient_confusion.mode": get_args(choices.ConfusionMode),
    "layer_rotation.aggregate": get_args(choices.Aggregate),
    "layer_rotation.include": get_args(choices.Include),
    "critical_period.mode": tuple(detector.MODES),
    "critical_period.combine": tuple(detector.COMBINES),
    "critical_period.learning_signal": tuple(detector.LEARNING_SIGNALS),
    "cutoff.policy": get_args(choices.CutoffPolicy),
    "energy.tracking_mode": get_args(choices.TrackingMode),
    "robustness.when": get_args(choices.RobustnessWhen),
    "robustness.source": get_args(choices.RobustnessSource),
}

#: the metric callbacks' keys and the names ``--critical_period.monitor`` knows (any other logged
#: metric works too), as each callback declares them (:mod:`critical._registry`)
METRIC_KEYS = tuple(key for key, _ in declared_metrics())
MONITOR_METRICS = declared_metric_names()

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
        *textwrap.wrap(
            "other keys (each callback's options): "
            + ", ".join((*METRIC_KEYS, "energy", "robustness"))
            + "; trainer.*: any Trainer option.",
            100,
        ),
        f"All options, with types and defaults: critical {cmd} --help-all (about 1,100 lines).",
        "--debug: a traceback instead of the one-line message on an error.",
    ]
    return "\n".join(lines)


def describe_choices(parser: Any) -> None:
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
