"""Pure tensor functions and accumulators for the training-dynamics metrics (no Lightning).

* gradient confusion (Sankararaman et al., ICML 2020): pairwise cosines of mini-batch gradients;
* gradient predictability (after Chen, Yuille & Zhou, ICLR 2023): cosine of consecutive steps'
  gradients;
* layer rotation (Carbonnelle & De Vleeschouwer, 2019): ``1 - cos(theta_0, theta_e)`` per layer;
* gradient norm: root-mean-square mini-batch gradient norm, a proxy for the trace of the Fisher
  information (Achille et al., ICLR 2019) and Accordion's regime signal (Agarwal et al., 2021).

Sharded models (FSDP, FSDP2): :mod:`critical.metrics.sharding` finds what each rank holds of
every parameter; layouts, the reader and the accumulators then work on those elements and sum
their partial results over the ranks (see each module's docstring).
"""

from critical.metrics.functional import (
    ConfusionResult,
    CosineResult,
    cosine,
    gradient_confusion,
    gradient_predictability,
    gram_confusion,
    layer_rotation,
    mean_pairwise_cosine_from_sum,
    pairwise_cosine,
    segment_cosine,
    segment_sum,
)
from critical.metrics.layers import (
    INCLUDE_CHOICES,
    WEIGHT_MODULES,
    ParamLayout,
    gradient_layout,
    norm_matrix,
    weight_layout,
)
from critical.metrics.reader import GradientReader, dense_grads, sq_norms
from critical.metrics.sharding import Part, ShardGroup, ShardView, find_parts
from critical.metrics.streaming import StreamingCosine, StreamingNorm
from critical.metrics.streaming_confusion import StreamingConfusion

__all__ = [
    "INCLUDE_CHOICES",
    "WEIGHT_MODULES",
    "ConfusionResult",
    "CosineResult",
    "GradientReader",
    "ParamLayout",
    "Part",
    "ShardGroup",
    "ShardView",
    "StreamingConfusion",
    "StreamingCosine",
    "StreamingNorm",
    "cosine",
    "dense_grads",
    "find_parts",
    "gradient_confusion",
    "gradient_layout",
    "gradient_predictability",
    "gram_confusion",
    "layer_rotation",
    "mean_pairwise_cosine_from_sum",
    "norm_matrix",
    "pairwise_cosine",
    "segment_cosine",
    "segment_sum",
    "sq_norms",
    "weight_layout",
]
