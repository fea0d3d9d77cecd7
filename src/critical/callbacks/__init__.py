"""Lightning callbacks, one per file."""

from critical.callbacks.augmentation_cutoff import AugmentationCutoff
from critical.callbacks.critical_period import CriticalPeriod
from critical.callbacks.gradient_confusion import GradientConfusion
from critical.callbacks.gradient_predictability import GradientPredictability
from critical.callbacks.layer_rotation import LayerRotation

__all__ = [
    "AugmentationCutoff",
    "CriticalPeriod",
    "GradientConfusion",
    "GradientPredictability",
    "LayerRotation",
]
