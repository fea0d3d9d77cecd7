"""The fixed choices of the constructors' options, as ``Literal`` types: the constructors annotate
their arguments with them (so LightningCLI validates and lists the values, as it does for
Lightning's own callbacks) and check values against ``typing.get_args``; the ``critical`` CLI's
short help derives its choice lists from them. Imports nothing, so ``critical fit --help`` needs
neither torch nor Lightning. The detector's choices (``MODES``, ``COMBINES``,
``LEARNING_SIGNALS``) stay in :mod:`critical.detector`, which is plain Python too.

Example:
    >>> from typing import get_args
    >>> get_args(ConfusionMode)
    ('stream', 'exact')
"""

from __future__ import annotations

from typing import Literal

__all__ = [
    "Aggregate",
    "AugmentPolicy",
    "ConfusionMode",
    "CutoffPolicy",
    "Dataset",
    "Include",
    "Interval",
    "Layout",
    "Optimizer",
    "PaddingMode",
    "RobustnessSource",
    "RobustnessWhen",
    "Schedule",
    "TrackingMode",
]

# ---- the model (critical.task, critical.schedules)
Optimizer = Literal["sgd", "adamw"]
Schedule = Literal["cosine", "multistep", "constant", "onecycle"]
Interval = Literal["epoch", "step"]

# ---- the metric callbacks
ConfusionMode = Literal["stream", "exact"]  # GradientConfusion(mode=...)
Aggregate = Literal["mean", "median", "max"]  # LayerRotation(aggregate=...)
Include = Literal["weights", "all"]  # LayerRotation(include=...), critical.metrics.layers

# ---- the other callbacks
RobustnessWhen = Literal["fit_end", "test_end", "both", "never"]
RobustnessSource = Literal["auto", "test", "val"]
#: AugmentationCutoff(policy=...)
CutoffPolicy = Literal["detector", "fixed", "never"]
#: EnergyTracker(tracking_mode=...)
TrackingMode = Literal["machine", "process"]

# ---- the data (ImageDataModule; critical.data's DATASETS, LAYOUTS, PADDING_MODES, POLICIES are
# derived from these)
Dataset = Literal["cifar10", "cifar100", "folder", "digits", "synthetic"]
Layout = Literal["epoch", "batch"]
PaddingMode = Literal["zeros", "reflect"]
AugmentPolicy = Literal["none", "trivialaugment", "randaugment"]
