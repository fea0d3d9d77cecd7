"""Parameters split across processes (FSDP, FSDP2): which elements a rank holds, and how partial
sums over them become whole-model values.

Under sharded data parallelism each rank holds a part of every parameter (FSDP's flat-parameter
shards, FSDP2's ``Shard(0)`` DTensors). The metrics only need sums over elements (squared norms,
dot products, sketch buckets), so each rank computes them on the elements it holds and one
``all_reduce`` over the ranks that split the parameters gives the value of the whole model, the
same as in one process. What this module offers:

* :func:`find_parts`: for each module, its parameters as :class:`Part` s (what this rank holds of
  each and how to read its current values and gradient), and the :class:`ShardGroup` to sum over;
  ``None`` for a model that is not sharded (one process, DDP: every rank holds everything);
* :class:`ShardGroup`: the ranks a sum runs over, with a count of the collectives issued;
* :class:`ShardView`: what a streaming accumulator needs to know about a rank's flat vector
  (where its elements sit in the whole one, how to sum, whether it holds replicated state), and
  :func:`to_full` / :func:`to_local` to move per-element state between a rank's part and the
  whole vector (for checkpoints, which are then the same as a one-process run's); defined in
  :mod:`critical.metrics.shard_view`, importable from here.

Supported: ``torch.distributed.fsdp.FullyShardedDataParallel`` (FSDP1, ``use_orig_params`` True
or False, sharding strategies ``FULL_SHARD``, ``SHARD_GRAD_OP``, ``HYBRID_SHARD`` and
``NO_SHARD``), and ``fully_shard`` (FSDP2) whose DTensor parameters are sharded on dimension 0
over one mesh dimension (replicated over the others, as HSDP does). Anything else that splits a
parameter (tensor parallelism, ``Shard(d)`` with ``d > 0``, several sharded mesh dimensions, a
mix of FSDP1 and FSDP2, DeepSpeed) raises ``ValueError``. A parameter that is not sharded in an
otherwise sharded model (a module FSDP ignores) counts once: on rank 0 of the group.

Example (no process group: a plain model has no parts):
    >>> from torch import nn
    >>> find_parts(nn.Linear(2, 2)) is None
    True
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from critical.metrics.shard_view import ShardView, to_full, to_local

__all__ = [
    "Part",
    "ShardGroup",
    "ShardView",
    "clean_name",
    "find_parts",
    "to_full",
    "to_local",
]

#: path components that wrappers insert in module names (FSDP1, activation checkpointing,
#: ``torch.compile``): dropped, so layer names are those of the unwrapped model
WRAPPER_NAMES = ("_fsdp_wrapped_module", "_checkpoint_wrapped_module", "_orig_mod")


def clean_name(name: str) -> str:
    """``name`` without the wrappers' path components.

    Example:
        >>> clean_name("net.0._fsdp_wrapped_module.weight")
        'net.0.weight'
    """
    return ".".join(p for p in name.split(".") if p not in WRAPPER_NAMES)


class ShardGroup:
    """The ranks over which the parameters are split: :meth:`sum_` adds a tensor over them in
    place (one ``all_reduce``) and counts it in :attr:`collectives`.

    Args:
        group: the process group (``None``: the default group).
        device: where the collective runs (``cuda`` for NCCL, ``cpu`` for gloo); tensors
            elsewhere are moved there and back.
        kind: what splits the parameters, for messages (``"FSDP"``, ``"FSDP2"``).
    """

    def __init__(self, group: Any, device: torch.device, kind: str) -> None:
        import torch.distributed as dist

        self.group = group
        self.device = device
        self.kind = kind
        self.rank = dist.get_rank(group)
        self.size = dist.get_world_size(group)
        self.collectives = 0

    def sum_(self, t: torch.Tensor) -> torch.Tensor:
        """``t`` summed over the group, in place (returned)."""
        import torch.distributed as dist

        self.collectives += 1
        if t.device == self.device and t.dtype in (torch.float32, torch.float64):
            dist.all_reduce(t, group=self.group)
            return t
        wide = torch.float64 if t.dtype == torch.float64 else torch.float32
        tmp = t.to(self.device, wide)
        dist.all_reduce(tmp, group=self.group)
        return t.copy_(tmp)

    def same(self, other: ShardGroup) -> bool:
        import torch.distributed as dist

        if self.group is other.group:
            return True
        ranks = dist.get_process_group_ranks
        return bool(ranks(self.group) == ranks(other.group))


@dataclass(frozen=True)
class Part:
    """One parameter as this rank holds it.

    Attributes:
        owner: the tensor that identifies it (the parameter; FSDP1 with ``use_orig_params=False``:
            the flat parameter holding it), as optimizers list it.
        numel: elements of the whole parameter.
        start: flat index (row-major) of the first element held here.
        count: elements held here (possibly 0); they are ``start .. start + count - 1``.
        data: the held elements now, a tensor of ``count`` elements shaped ``shape``.
        grad: their gradient now (shaped ``shape``), or ``None``.
        requires_grad: whether the parameter is trained.
        shape: the shape of ``data()`` and ``grad()`` (default: 1-D).
    """

    owner: torch.Tensor
    numel: int
    start: int
    count: int
    data: Callable[[], torch.Tensor]
    grad: Callable[[], torch.Tensor | None]
    requires_grad: bool = True
    shape: tuple[int, ...] | None = None


# ---------------------------------------------------------------------------- discovery
def _dtensor_cls() -> type | None:
    try:
        from torch.distributed.tensor import DTensor
    except ImportError:  # pragma: no cover - torch without distributed
        return None
    return DTensor


def _fsdp1_handles(root: nn.Module) -> list[Any]:
    try:
        from torch.distributed.fsdp import FullyShardedDataParallel
    except ImportError:  # pragma: no cover - torch without distributed
        return []
    return [
        m._handle
        for m in root.modules()
        if isinstance(m, FullyShardedDataParallel) and getattr(m, "_handle", None) is not None
    ]


def _flat_param_cls() -> type | None:
    try:
        from torch.distributed.fsdp._flat_param import FlatParameter
    except ImportError:  # pragma: no cover
        return None
    return FlatParameter


def _fsdp1_parts(handles: list[Any]) -> tuple[dict[int, list[tuple[str, Part]]], set[int], Any]:
    """Parts of the parameters FSDP1 manages, by id of their owning module; the ids of every
    tensor FSDP1 registers for them; the process group (None unless sharded)."""
    by_module: dict[int, list[tuple[str, Part]]] = {}
    managed: set[int] = set()
    group = None
    for h in handles:
        fp = h.flat_param
        managed.add(id(fp))
        orig = getattr(fp, "_params", None)  # use_orig_params=True: the original parameters
        sharded = h.uses_sharded_strategy and h.world_size > 1
        if sharded:
            if group is not None and group is not h.process_group:
                raise ValueError(
                    "FSDP modules that shard over different process groups are not supported: "
                    "wrap the model with one sharding strategy and process group"
                )
            group = h.process_group
        offset = 0
        for i, info in enumerate(fp._param_infos):
            numel = int(fp._numels[i])
            if sharded:
                s = fp._shard_param_infos[i]
                start, count, at = (
                    (int(s.intra_param_start_idx), int(s.numel_in_shard), int(s.offset_in_shard))
                    if s.in_shard
                    else (0, 0, 0)
                )
            else:
                start, count, at = 0, numel, offset
            offset += numel
            param = orig[i] if orig is not None else None
            if param is not None:
                managed.add(id(param))
            part = Part(
                owner=param if param is not None else fp,
                numel=numel,
                start=start,
                count=count,
                data=_flat_data(fp, at, count),
                grad=_flat_grad(fp, at, count),
                requires_grad=bool((param if param is not None else fp).requires_grad),
            )
            by_module.setdefault(id(info.module), []).append((info.param_name, part))
    return by_module, managed, group


def _flat_data(fp: Any, at: int, count: int) -> Callable[[], torch.Tensor]:
    # the sharded storage: the flat parameter's data while sharded, ``_local_shard`` always
    # (a root module left unsharded after a forward without gradient still has it)
    def data() -> torch.Tensor:
        shard = getattr(fp, "_local_shard", None)
        src = shard if shard is not None else fp
        return src.detach()[at : at + count]

    return data


def _flat_grad(fp: Any, at: int, count: int) -> Callable[[], torch.Tensor | None]:
    def grad() -> torch.Tensor | None:
        g = fp.grad
        return None if g is None else g[at : at + count]

    return grad


def _dtensor_part(p: torch.Tensor) -> tuple[Part, Any, int]:
    """The part of a DTensor parameter this rank holds, its mesh and sharded mesh dimension."""
    from torch.distributed.tensor import Replicate, Shard
    from torch.distributed.tensor._utils import compute_local_shape_and_global_offset

    placements = tuple(p.placements)  # type: ignore[attr-defined]  # a DTensor
    mesh = p.device_mesh  # type: ignore[attr-defined]
    shard_dims = [i for i, pl in enumerate(placements) if isinstance(pl, Shard)]
    bad = [
        pl
        for pl in placements
        if not isinstance(pl, Replicate) and not (isinstance(pl, Shard) and pl.dim == 0)
    ]
    if bad or len(shard_dims) > 1:
        raise ValueError(
            f"parameters sharded as {placements} over a {mesh.ndim}-D device mesh are not "
            "supported by the metric callbacks: they support FSDP2 (`fully_shard`) parameters "
            "sharded on dimension 0 (its default) over one mesh dimension, replicated over any "
            "other (no tensor parallelism, no `shard_placement_fn` choosing another dimension)"
        )
    numel = p.numel()
    shape, offset = compute_local_shape_and_global_offset(p.shape, mesh, placements)
    count = 1
    for n in shape:
        count *= int(n)
    row = numel // p.shape[0] if p.dim() and p.shape[0] else 0
    start = int(offset[0]) * row if p.dim() and count else 0
    local: torch.Tensor = p._local_tensor  # type: ignore[attr-defined]  # a DTensor's shard
    if tuple(local.shape) != tuple(shape) or not local.is_contiguous():
        raise ValueError(
            f"an FSDP2 parameter's local shard has shape {tuple(local.shape)} and strides "
            f"{local.stride()}, expected a contiguous {tuple(shape)}: not supported"
        )

    # the local tensors themselves (no `to_local()`, no reshape: no operator at a probe)
    def data() -> torch.Tensor:
        return p._local_tensor  # type: ignore[attr-defined]

    def grad() -> torch.Tensor | None:
        g = p.grad
        return getattr(g, "_local_tensor", g)

    part = Part(p, numel, start, count, data, grad, p.requires_grad, tuple(shape))
    return part, mesh, shard_dims[0] if shard_dims else -1


def _replicated_part(p: torch.Tensor, root: bool) -> Part:
    """A parameter every rank holds whole: counted on the group's rank 0 only."""
    numel = p.numel()
    count = numel if root else 0

    def local(t: torch.Tensor) -> torch.Tensor:
        return t.to_local() if hasattr(t, "to_local") else t  # a replicated DTensor

    def data() -> torch.Tensor:
        return local(p).detach().reshape(-1)[:count]

    def grad() -> torch.Tensor | None:
        g = p.grad
        return None if g is None else local(g).reshape(-1)[:count]

    return Part(p, numel, 0, count, data, grad, p.requires_grad)


ModuleParts = list[tuple[str, nn.Module, list[tuple[str, Part]]]]


def find_parts(
    module: nn.Module, root: nn.Module | None = None
) -> tuple[ModuleParts, ShardGroup | None] | None:
    """The parameters of ``module`` as this rank holds them, module by module, or ``None`` for a
    model without FSDP (every rank holds every parameter as a plain tensor).

    Args:
        module: the model (the LightningModule).
        root: the module training runs (Lightning's ``trainer.strategy.model``: FSDP1 wraps the
            LightningModule from outside); default ``module``.

    Returns:
        ``(modules, group)``: for each module of ``module.named_modules()`` (names without
        wrapper components), its own parameters as ``(name, Part)`` in registration order; and
        the :class:`ShardGroup` the parts are summed over (``None`` when nothing is split:
        FSDP1's ``NO_SHARD``, one process).
    """
    root = module if root is None else root
    handles = _fsdp1_handles(root)
    dtensor = _dtensor_cls()
    dparams = [p for p in module.parameters() if dtensor is not None and isinstance(p, dtensor)]
    if not dparams and not handles:
        return None
    if handles and dparams:
        raise ValueError(
            "a model mixing FSDP1 (FullyShardedDataParallel) and FSDP2 (fully_shard) parameters "
            "is not supported by the metric callbacks"
        )
    by_module, managed, pg = _fsdp1_parts(handles)
    kind = "FSDP" if handles else "FSDP2"
    group: ShardGroup | None = None
    if pg is not None:
        first = next(iter(root.parameters()), torch.zeros(0))
        group = ShardGroup(pg, _collective_device(pg, first.device), kind)
    flat_cls = _flat_param_cls()
    found: list[tuple[str, nn.Module, list[tuple[str, Part | torch.Tensor]]]] = []
    seen = set(managed)  # a parameter shared by two modules counts once, with the first
    for name, m in module.named_modules():
        entries: list[tuple[str, Part | torch.Tensor]] = list(by_module.get(id(m), []))
        for pname, p in m.named_parameters(recurse=False):
            if id(p) in seen or (flat_cls is not None and isinstance(p, flat_cls)):
                continue
            seen.add(id(p))
            if dtensor is not None and isinstance(p, torch.Tensor) and isinstance(p, dtensor):
                part, mesh, dim = _dtensor_part(p)
                if dim >= 0:
                    pg_dim = mesh.get_group(dim)
                    g = ShardGroup(pg_dim, _collective_device(pg_dim, part.data().device), kind)
                    if group is None:
                        group = g
                    elif not group.same(g):
                        raise ValueError(
                            "FSDP2 parameters sharded over different device meshes are not "
                            "supported by the metric callbacks: shard every module over one mesh"
                        )
                    entries.append((pname, part))
                    continue
            entries.append((pname, p))  # held whole by every rank
        found.append((clean_name(name), m, entries))
    root_rank = group is None or group.rank == 0
    out: ModuleParts = [
        (
            name,
            m,
            [(n, e if isinstance(e, Part) else _replicated_part(e, root_rank)) for n, e in es],
        )
        for name, m, es in found
    ]
    return out, group


def _collective_device(pg: Any, device: torch.device) -> torch.device:
    import torch.distributed as dist

    return torch.device("cpu") if dist.get_backend(pg) == "gloo" else device
