"""Lightning callbacks, one per file."""

from critical.callbacks.augmentation_cutoff import AugmentationCutoff
from critical.callbacks.augmentation_gap import AugmentationGap
from critical.callbacks.critical_period import CriticalPeriod
from critical.callbacks.energy import EnergyTracker
from critical.callbacks.gradient_confusion import GradientConfusion
from critical.callbacks.gradient_norm import GradientNorm
from critical.callbacks.gradient_predictability import GradientPredictability
from critical.callbacks.layer_rotation import LayerRotation
from critical.callbacks.robustness import RobustnessEvaluator
from critical.callbacks.run_directory import RunDirectory
from critical.callbacks.stop_after_epoch import StopAfterEpoch

__all__ = [
    "AugmentationCutoff",
    "AugmentationGap",
    "CriticalPeriod",
    "EnergyTracker",
    "GradientConfusion",
    "GradientNorm",
    "GradientPredictability",
    "LayerRotation",
    "RobustnessEvaluator",
    "RunDirectory",
    "StopAfterEpoch",
]
