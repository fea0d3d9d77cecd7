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

Sharded models (FSDP, FSDP2; see :mod:`critical.metrics.sharding`): pass the module training
runs as ``root``. The layout then keeps the whole model's layers (names, ``lengths``) and, in
``parts``, what this rank holds of each parameter: its flat buffers hold only those elements
(``local_lengths`` per layer, some possibly 0), and :meth:`ParamLayout.sum_` adds partial sums
over the ranks. Without sharding, ``parts`` is ``None`` and local means whole.

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
from typing import cast, get_args

import torch
from torch import nn

from critical.choices import Include
from critical.metrics.sharding import Part, ShardGroup, ShardView, clean_name, find_parts

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
INCLUDE_CHOICES = get_args(Include)


@dataclass
class ParamLayout:
    """Parameters in a fixed order, grouped into contiguous named layers.

    Attributes:
        names: layer names, in order.
        params: the parameters, in flat order (the params of layer 0 first); sharded: the tensor
            identifying each (see :class:`~critical.metrics.sharding.Part`).
        lengths: number of elements of each layer (whole model).
        param_numels: number of elements of each parameter (whole model).
        parts: sharded models: what this rank holds of each parameter; ``None`` otherwise.
        group: sharded models: the ranks partial sums run over (``None``: nothing to sum).
    """

    names: list[str]
    params: list[nn.Parameter]
    lengths: list[int]
    param_numels: list[int] = field(default_factory=list)
    parts: list[Part] | None = None
    group: ShardGroup | None = None

    def __post_init__(self) -> None:
        if not self.params:
            raise ValueError(
                "no trainable parameters to monitor: every parameter is frozen "
                "(requires_grad=False) or the model has none"
            )
        if not self.param_numels:
            self.param_numels = [p.numel() for p in self.params]
        it = iter(self.local_param_numels)
        #: elements of each layer held by this rank (``lengths`` without sharding)
        self.local_lengths: list[int] = []
        for layer in self.layer_of_param_counts():
            self.local_lengths.append(sum(next(it) for _ in range(layer)))

    @property
    def numel(self) -> int:
        """Total number of elements (P)."""
        return sum(self.lengths)

    @property
    def num_layers(self) -> int:
        return len(self.names)

    @property
    def sharded(self) -> bool:
        """Whether the parameters are split across ranks (partial sums must be summed)."""
        return self.group is not None

    @property
    def local_param_numels(self) -> list[int]:
        """Elements of each parameter held by this rank."""
        return self.param_numels if self.parts is None else [p.count for p in self.parts]

    @property
    def local_numel(self) -> int:
        """Elements held by this rank (P without sharding)."""
        return sum(self.local_lengths)

    def new_buffer(
        self, dtype: torch.dtype = torch.float32, device: torch.device | str | None = None
    ) -> torch.Tensor:
        """A zero flat buffer of the elements this rank holds (P without sharding)."""
        return torch.zeros(self.local_numel, dtype=dtype, device=device)

    def data(self) -> list[torch.Tensor]:
        """The parameters' current values as this rank holds them (the tensors themselves, not
        detached copies: read them under ``torch.no_grad()``)."""
        if self.parts is None:
            return list(self.params)
        return [p.data() for p in self.parts]

    def grads(self) -> list[torch.Tensor | None]:
        """The parameters' current gradients as this rank holds them (``None`` where missing)."""
        if self.parts is None:
            return [p.grad for p in self.params]
        return [p.grad() for p in self.parts]

    def param_views(self, buffer: torch.Tensor) -> list[torch.Tensor]:
        """Views of ``buffer`` shaped like each parameter (for ``torch._foreach_copy_``).

        A parameter stored densely in another memory order (``channels_last``) gets a view with
        its strides, so that one fused copy moves its gradient; the elements of a parameter then
        lie in the buffer in memory order, which no metric (norms, cosines, sums per layer)
        depends on. Sharded: one view per parameter of the elements held here, shaped as the
        rank's local tensor (1-D for FSDP1's flat shards)."""
        chunks = torch.split(buffer, self.local_param_numels)
        if self.parts is not None:
            return [c if p.shape is None else c.view(p.shape) for c, p in zip(chunks, self.parts)]
        return [
            c.as_strided(p.shape, p.stride()) if _dense(p) else c.view(p.shape)
            for c, p in zip(chunks, self.params)
        ]

    def layer_views(self, buffer: torch.Tensor) -> list[torch.Tensor]:
        """The layer segments of a flat ``buffer`` (of the elements held here)."""
        return list(torch.split(buffer, self.local_lengths))

    def sum_(self, t: torch.Tensor) -> torch.Tensor:
        """``t`` (partial sums over this rank's elements) summed over the ranks, in place; ``t``
        itself without sharding."""
        return t if self.group is None else self.group.sum_(t)

    def positions(self, device: torch.device | str | None = None) -> torch.Tensor:
        """Index in the whole flat vector of each element held here (int64)."""
        if self.parts is None:
            return torch.arange(self.numel, device=device)
        offsets, at = [], 0
        for part in self.parts:
            offsets.append(at + part.start)
            at += part.numel
        counts = torch.tensor(self.local_param_numels, device=device)
        local_at = torch.cumsum(counts, 0) - counts
        base = torch.tensor(offsets, device=device) - local_at
        n = self.local_numel
        return torch.repeat_interleave(base, counts, output_size=n) + torch.arange(n, device=device)

    def shard_view(self) -> ShardView | None:
        """What accumulators need to work on this rank's elements; ``None`` without sharding."""
        group = self.group
        if group is None:
            return None
        return ShardView(list(self.lengths), self.positions, group.sum_, group.rank == 0)

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
        return [layer for layer, n in enumerate(self.layer_of_param_counts()) for _ in range(n)]

    def layer_of_param_counts(self) -> list[int]:
        """How many parameters each layer has."""
        out: list[int] = []
        it = iter(self.param_numels)
        for length in self.lengths:
            n = 0
            while length > 0:
                length -= next(it)
                n += 1
            out.append(n)
        return out

    def subset(self, keep: set[int]) -> ParamLayout:
        """The layout of the parameters whose ``id`` (of the tensor in :attr:`params`) is in
        ``keep``, layers left empty dropped (e.g. those of one optimizer)."""
        picks = [i for i, p in enumerate(self.params) if id(p) in keep]
        if len(picks) == len(self.params):
            return self
        names, lengths = [], []
        at = 0
        picked = set(picks)
        for name, n_params in zip(self.names, self.layer_of_param_counts()):
            idx = [i for i in range(at, at + n_params) if i in picked]
            at += n_params
            if idx:
                names.append(name)
                lengths.append(sum(self.param_numels[i] for i in idx))
        return ParamLayout(
            names,
            [self.params[i] for i in picks],
            lengths,
            [self.param_numels[i] for i in picks],
            parts=None if self.parts is None else [self.parts[i] for i in picks],
            group=self.group,
        )

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
        names.append(clean_name(name) or "<root>")
        params.extend(ps)
        lengths.append(sum(p.numel() for p in ps))
    return ParamLayout(names, params, lengths)


def _sharded_layout(
    groups: Iterable[tuple[str, Sequence[Part]]], group: ShardGroup | None
) -> ParamLayout:
    names, parts, lengths = [], [], []
    for name, ps in groups:
        ps = [p for p in ps if p.requires_grad]
        if not ps:
            continue
        names.append(name or "<root>")
        parts.extend(ps)
        lengths.append(sum(p.numel for p in ps))
    # the owners are parameters, or FSDP1's flat parameters (nn.Parameter subclasses) holding them
    owners = cast(list[nn.Parameter], [p.owner for p in parts])
    return ParamLayout(names, owners, lengths, [p.numel for p in parts], parts=parts, group=group)


def gradient_layout(module: nn.Module, root: nn.Module | None = None) -> ParamLayout:
    """All trainable parameters, one layer per owning module (shared parameters counted once).

    ``root``: the module training runs, when it wraps ``module`` (FSDP; see the module doc)."""
    found = find_parts(module, root)
    if found is not None:
        modules, group = found
        return _sharded_layout(((name, [p for _, p in ps]) for name, _, ps in modules), group)
    return _layout((name, list(m.parameters(recurse=False))) for name, m in module.named_modules())


def weight_layout(
    module: nn.Module, include: str = "weights", root: nn.Module | None = None
) -> ParamLayout:
    """Parameters whose rotation is tracked, one layer per tensor.

    Args:
        module: the model.
        include: ``"weights"`` (default): ``weight`` of conv / linear / bilinear / embedding
            modules and the projection weights of ``nn.MultiheadAttention`` (timm's attention
            uses ``nn.Linear`` projections, so it is covered); ``"all"``: every trainable
            parameter (norm gains and biases too).
        root: the module training runs, when it wraps ``module`` (FSDP; see the module doc).
    """
    if include not in INCLUDE_CHOICES:
        raise ValueError(f"`include` must be one of {list(INCLUDE_CHOICES)}, got {include!r}")
    found = find_parts(module, root)
    if found is not None:
        modules, group = found
        picked: list[tuple[str, list[Part]]] = []
        for name, m, ps in modules:
            prefix = f"{name}." if name else ""
            wanted = (
                [n for n, _ in ps]
                if include == "all"
                else ["weight"]
                if isinstance(m, WEIGHT_MODULES)
                else list(_ATTENTION_WEIGHTS)
                if isinstance(m, nn.MultiheadAttention)
                else []
            )
            byname = dict(ps)
            picked.extend((f"{prefix}{n}", [byname[n]]) for n in wanted if n in byname)
        return _sharded_layout(picked, group)
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
