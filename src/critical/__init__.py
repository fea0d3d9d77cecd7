"""critical: detect the end of the critical period of training and cut augmentation multiplicity.

Lightning callbacks that watch data-agnostic training dynamics (gradient confusion, gradient
predictability, gradient norm, layer rotation), decide when they have settled and nothing makes
a cut unsafe, and then drop the data augmentation multiplicity k to 1, logging what that saves
in time, energy and CO2.
"""

__version__ = "0.3.0"
