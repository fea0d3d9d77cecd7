"""Which parameters form a "layer", and how to flatten them into one buffer.

A :class:`ParamLayout` is an ordered list of parameters grouped into named layers, so that the
metric functions can work on one flat vector (the whole model) and on contiguous segments of it
(the layers) with single tensor ops instead of Python loops over parameters.

Two groupings are offered:

* :func:`gradient_layout`: every trainable parameter, grouped by the module that owns it
  (``conv1`` holds ``conv1.weight`` and ``conv1.bias``). Used for gradient confusion and
  predictability, whose whole-model value is over the full gradient.
* :func:`weight_layout`: for layer rotation (Carbonnelle & De Vleeschouwer, 2019), by default
  only the weight tensors of convolutions, linear layers, attention projections and embeddings;
  normalization gains and biases are excluded (``include="all"`` takes every trainable parameter,
  one layer each).

Frozen parameters (``requires_grad=False``) are always ignored.

Example:
    >>> from torch import nn
    >>> net = nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3), nn.Linear(3, 2))
    >>> gradient_layout(net).names
    ['0', '1', '2']
    >>> weight_layout(net).names, weight_layout(net).lengths
    (['0.weight', '2.weight'], [12, 6])
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

__all__ = [
    "INCLUDE_CHOICES",
    "WEIGHT_MODULES",
    "ParamLayout",
    "gradient_layout",
    "norm_matrix",
    "weight_layout",
]

#: module types whose ``weight`` counts as a layer for rotation (subclasses included)
WEIGHT_MODULES: tuple[type[nn.Module], ...] = (
    nn.Conv1d,
    nn.Conv2d,
    nn.Conv3d,
    nn.ConvTranspose1d,
    nn.ConvTranspose2d,
    nn.ConvTranspose3d,
    nn.Linear,
    nn.Bilinear,
    nn.Embedding,
)
#: attention modules keep their projections as raw parameters
_ATTENTION_WEIGHTS = ("in_proj_weight", "q_proj_weight", "k_proj_weight", "v_proj_weight")
INCLUDE_CHOICES = ("weights", "all")


@dataclass
class ParamLayout:
    """Parameters in a fixed order, grouped into contiguous named layers.

    Attributes:
        names: layer names, in order.
        params: the parameters, in flat order (the params of layer 0 first).
        lengths: number of elements of each layer.
        param_numels: number of elements of each parameter.
    """

    names: list[str]
    params: list[nn.Parameter]
    lengths: list[int]
    param_numels: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.params:
            raise ValueError(
                "no trainable parameters to monitor: every parameter is frozen "
                "(requires_grad=False) or the model has none"
            )
        if not self.param_numels:
            self.param_numels = [p.numel() for p in self.params]

    @property
    def numel(self) -> int:
        """Total number of elements (P)."""
        return sum(self.lengths)

    @property
    def num_layers(self) -> int:
        return len(self.names)

    def new_buffer(
        self, dtype: torch.dtype = torch.float32, device: torch.device | str | None = None
    ) -> torch.Tensor:
        """A zero flat buffer of P elements."""
        return torch.zeros(self.numel, dtype=dtype, device=device)

    def param_views(self, buffer: torch.Tensor) -> list[torch.Tensor]:
        """Views of ``buffer`` shaped like each parameter (for ``torch._foreach_copy_``).

        A parameter stored densely in another memory order (``channels_last``) gets a view with
        its strides, so that one fused copy moves its gradient; the elements of a parameter then
        lie in the buffer in memory order, which no metric (norms, cosines, sums per layer)
        depends on."""
        chunks = torch.split(buffer, self.param_numels)
        return [
            c.as_strided(p.shape, p.stride()) if _dense(p) else c.view(p.shape)
            for c, p in zip(chunks, self.params)
        ]

    def layer_views(self, buffer: torch.Tensor) -> list[torch.Tensor]:
        """The layer segments of a flat ``buffer``."""
        return list(torch.split(buffer, self.lengths))

    def norm_matrix(
        self, per: str = "param", device: torch.device | str | None = None
    ) -> torch.Tensor:
        """``(L + 1, K)`` 0/1 matrix mapping K squared norms (one per parameter with
        ``per="param"``, one per layer with ``per="layer"``) to the squared norm of the whole
        vector (row 0) and of each layer (rows 1..L); see :func:`norm_matrix`."""
        if per not in ("param", "layer"):
            raise ValueError(f"`per` must be 'param' or 'layer', got {per!r}")
        index = self.layer_of_param() if per == "param" else list(range(self.num_layers))
        return norm_matrix(index, self.num_layers, device=device)

    def layer_of_param(self) -> list[int]:
        """The index of the layer each parameter belongs to, in flat order."""
        out: list[int] = []
        it = iter(self.param_numels)
        for layer, length in enumerate(self.lengths):
            while length > 0:
                length -= next(it)
                out.append(layer)
        return out

    def signature(self) -> list[tuple[str, int]]:
        """(name, length) per layer: identifies a layout across checkpoints."""
        return list(zip(self.names, self.lengths))


def norm_matrix(
    layer_of: Sequence[int],
    num_layers: int,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """``(num_layers + 1, K)`` 0/1 matrix: row 0 sums all K entries, row ``1 + l`` those with
    ``layer_of[k] == l``. Times a vector of K squared norms, it gives the squared norm of the whole
    and of each layer in one product.

    Example:
        >>> norm_matrix([0, 0, 1], 2).tolist()
        [[1.0, 1.0, 1.0], [1.0, 1.0, 0.0], [0.0, 0.0, 1.0]]
    """
    m = torch.zeros(num_layers + 1, len(layer_of), dtype=dtype)
    m[0] = 1.0
    m[torch.tensor(list(layer_of), dtype=torch.long) + 1, torch.arange(len(layer_of))] = 1.0
    return m.to(device)


def _dense(t: torch.Tensor) -> bool:
    """Whether ``t`` covers its ``numel`` elements without gaps or overlaps (any dim order)."""
    expected = 1
    for size, stride in sorted(zip(t.shape, t.stride()), key=lambda d: d[1]):
        if size != 1 and stride != expected:
            return False
        expected *= size
    return True


def _layout(groups: Iterable[tuple[str, Sequence[nn.Parameter]]]) -> ParamLayout:
    names, params, lengths = [], [], []
    seen: set[int] = set()
    for name, ps in groups:
        ps = [p for p in ps if p.requires_grad and id(p) not in seen]
        if not ps:
            continue
        seen.update(id(p) for p in ps)
        names.append(name or "<root>")
        params.extend(ps)
        lengths.append(sum(p.numel() for p in ps))
    return ParamLayout(names, params, lengths)


def gradient_layout(module: nn.Module) -> ParamLayout:
    """All trainable parameters, one layer per owning module (shared parameters counted once)."""
    return _layout((name, list(m.parameters(recurse=False))) for name, m in module.named_modules())


def weight_layout(module: nn.Module, include: str = "weights") -> ParamLayout:
    """Parameters whose rotation is tracked, one layer per tensor.

    Args:
        module: the model.
        include: ``"weights"`` (default): ``weight`` of conv / linear / bilinear / embedding
            modules and the projection weights of ``nn.MultiheadAttention`` (timm's attention
            uses ``nn.Linear`` projections, so it is covered); ``"all"``: every trainable
            parameter (norm gains and biases too).
    """
    if include not in INCLUDE_CHOICES:
        raise ValueError(f"`include` must be one of {list(INCLUDE_CHOICES)}, got {include!r}")
    if include == "all":
        return _layout((name, [p]) for name, p in module.named_parameters())
    groups: list[tuple[str, list[nn.Parameter]]] = []
    for name, m in module.named_modules():
        prefix = f"{name}." if name else ""
        if isinstance(m, WEIGHT_MODULES) and isinstance(
            w := getattr(m, "weight", None), nn.Parameter
        ):
            groups.append((f"{prefix}weight", [w]))
        elif isinstance(m, nn.MultiheadAttention):
            for attr in _ATTENTION_WEIGHTS:
                p = getattr(m, attr, None)
                if isinstance(p, nn.Parameter):
                    groups.append((f"{prefix}{attr}", [p]))
    return _layout(groups)
