"""ShardView: what a streaming accumulator knows of its rank's part of a flat vector, and moving
per-element state between that part and the whole vector (:func:`to_full`, :func:`to_local`).

A rank of a sharded model (see :mod:`critical.metrics.sharding`, which builds these views) holds
some elements of each layer; checkpoints hold the whole vector, the same as a one-process run's.

Example (one "rank" holding elements 1 and 3 of a 4-element vector; no process group, so the
sum over the ranks is the identity):
    >>> import torch
    >>> view = ShardView([2, 2], lambda device: torch.tensor([1, 3]), lambda t: t, root=True)
    >>> to_full(view, torch.tensor([5.0, 7.0])).tolist()
    [0.0, 5.0, 0.0, 7.0]
    >>> to_local(view, torch.tensor([1.0, 2.0, 3.0, 4.0]), torch.device("cpu")).tolist()
    [2.0, 4.0]
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

__all__ = ["ShardView", "to_full", "to_local"]


@dataclass
class ShardView:
    """What an accumulator needs to know about a rank's part of a flat vector laid out by layer.

    Attributes:
        sizes: elements of each layer in the whole vector.
        positions: returns, for each element this rank holds, its index in the whole vector
            (int64, on the caller's device; computed on demand, not kept).
        sum_: adds a tensor over the ranks, in place.
        root: this rank keeps what is replicated rather than split (per-probe partial sums
            restored from a checkpoint go to the root; the others start from zero).
    """

    sizes: list[int]
    positions: Callable[[torch.device], torch.Tensor]
    sum_: Callable[[torch.Tensor], torch.Tensor]
    root: bool

    @property
    def numel(self) -> int:
        return sum(self.sizes)


def to_full(view: ShardView, local: torch.Tensor) -> torch.Tensor:
    """The whole vector (float32 or float64, on ``local``'s device) from each rank's part
    (collective: every rank of the group must call it)."""
    dtype = torch.float64 if local.dtype == torch.float64 else torch.float32
    full = torch.zeros(view.numel, dtype=dtype, device=local.device)
    full[view.positions(local.device)] = local.to(dtype)
    return view.sum_(full)


def to_local(view: ShardView, full: torch.Tensor, device: torch.device) -> torch.Tensor:
    """This rank's part of the whole vector ``full``."""
    return full.to(device)[view.positions(device)]
