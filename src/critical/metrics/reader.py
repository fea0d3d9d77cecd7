"""Reading the gradients once per optimizer step, for every metric that asks.

A :class:`GradientReader` turns the ``.grad`` of the parameters of a
:class:`~critical.metrics.ParamLayout` into what the streaming accumulators take:

* :meth:`~GradientReader.sq_norms`: the squared norm of the whole gradient and of each layer, an
  ``(L + 1,)`` vector (whole first), from one fused ``_foreach_norm`` over the parameters'
  gradients and one matrix-vector product, and a 0-d flag "all finite";
* :meth:`~GradientReader.flat`: the gradient as one flat vector of P elements (one fused
  ``_foreach_copy_`` into a preallocated buffer), non-finite entries zeroed.

Each is computed at most once per ``token`` (the caller's name for the current step), so several
metrics probing the same step share one read. The number of kernels does not depend on the
number of layers, and nothing synchronises with the host.

Sharded models (a layout with ``parts``): the flat buffer holds this rank's elements only;
:meth:`~GradientReader.partial_sq_norms` gives the squared norms of those elements (no
communication: accumulators sum them over the ranks at epoch end) and
:meth:`~GradientReader.sq_norms` the whole model's (one ``all_reduce`` of ``L + 1`` floats per
token, the only collective of a probed step).

Example:
    >>> import torch
    >>> from torch import nn
    >>> from critical.metrics import gradient_layout
    >>> net = nn.Linear(3, 1)
    >>> net(torch.ones(2, 3)).sum().backward()
    >>> reader = GradientReader(gradient_layout(net))
    >>> sq, finite = reader.sq_norms(token=0)
    >>> sq.tolist(), bool(finite)  # |grad|^2 = 3 * 2^2 + 2^2, one layer
    ([16.0, 16.0], True)
    >>> reader.flat(token=0).tolist()
    [2.0, 2.0, 2.0, 2.0]
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import cast

import torch

from critical.metrics.layers import ParamLayout

__all__ = ["GradientReader", "dense_grads", "sq_norms"]

_UNSET = object()


def sq_norms(tensors: Sequence[torch.Tensor], matrix: torch.Tensor) -> torch.Tensor:
    """``matrix @ [|t|^2 for t in tensors]``: with a matrix from
    :meth:`~critical.metrics.ParamLayout.norm_matrix`, the squared norm of the whole vector and
    of each layer, ``(L + 1,)`` in the matrix's dtype (a fused ``_foreach_norm``, a stack, a
    square, a matrix-vector product)."""
    norms = torch.stack(torch._foreach_norm(list(tensors)))
    if norms.dtype != matrix.dtype:
        norms = norms.to(matrix.dtype)
    return torch.mv(matrix, norms * norms)


def dense_grads(layout: ParamLayout) -> list[torch.Tensor]:
    """The current gradients of ``layout``'s parameters, one dense tensor each (sharded: the
    elements this rank holds, 1-D); a missing gradient reads as zeros."""
    grads = layout.grads()
    if any(g is None or g.is_sparse for g in grads):
        if layout.parts is None:
            grads = [
                torch.zeros_like(p) if g is None else g.to_dense() if g.is_sparse else g
                for p, g in zip(layout.params, grads)
            ]
        else:
            grads = [
                torch.zeros_like(part.data()) if g is None else g
                for part, g in zip(layout.parts, grads)
            ]
    return cast(list[torch.Tensor], grads)  # no None left (replaced above)


class GradientReader:
    """Reads the gradients of ``layout`` for the metrics, at most once per step token.

    Args:
        layout: the parameters (see :func:`~critical.metrics.gradient_layout`).
        dtype: dtype of the flat gradient buffer.
        device: device of the flat buffer and of the squared norms (default: the parameters').

    A missing gradient reads as zero; sparse gradients are densified.
    """

    def __init__(
        self,
        layout: ParamLayout,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str | None = None,
    ) -> None:
        self.layout = layout
        self.dtype = dtype
        grad_device = layout.params[0].device
        self.device = torch.device(device) if device is not None else grad_device
        self._matrix = layout.norm_matrix("param", grad_device)
        self._buffer: torch.Tensor | None = None
        self._views: list[torch.Tensor] = []
        self._sq_token: object = _UNSET
        self._sq = torch.zeros(0)
        self._finite = torch.zeros(0, dtype=torch.bool)
        self._partial_token: object = _UNSET
        self._partial = torch.zeros(0)
        self._flat_token: object = _UNSET

    def matches(self, layout: ParamLayout, dtype: torch.dtype, device: torch.device) -> bool:
        """Whether this reader serves ``layout`` (the same parameter objects) in ``dtype`` on
        ``device``."""
        return (
            self.dtype == dtype
            and self.device == device
            and len(self.layout.params) == len(layout.params)
            and all(a is b for a, b in zip(self.layout.params, layout.params))
        )

    def grads(self) -> list[torch.Tensor]:
        """The current gradients, one dense tensor per parameter (sharded: per parameter, the
        elements this rank holds), not kept: a gradient that training frees is not held here."""
        return dense_grads(self.layout)

    @torch.no_grad()
    def partial_sq_norms(self, token: Hashable) -> torch.Tensor:
        """Squared norms ``(L + 1,)`` float32 (whole gradient first) of the elements this rank
        holds: the whole model's without sharding, else partial sums that add up over the ranks.
        Fresh tensors at every new token; no communication."""
        if token != self._partial_token:
            sq = sq_norms(self.grads(), self._matrix)
            if sq.device != self.device:
                sq = sq.to(self.device)
            self._partial, self._partial_token = sq, token
        return self._partial

    @torch.no_grad()
    def sq_norms(self, token: Hashable) -> tuple[torch.Tensor, torch.Tensor]:
        """``(sq, finite)``: squared norms ``(L + 1,)`` float32 of the whole gradient, whole
        first, and a 0-d bool, True when they are all finite. Fresh tensors at every new token.
        Sharded: the partial sums summed over the ranks (one collective)."""
        if token != self._sq_token:
            sq = self.partial_sq_norms(token)
            if self.layout.sharded:
                sq = self.layout.sum_(sq.clone())
            self._sq, self._finite = sq, torch.isfinite(sq[0])
            self._sq_token = token
        return self._sq, self._finite

    @torch.no_grad()
    def flat(self, token: Hashable) -> torch.Tensor:
        """The gradient as a flat ``(P,)`` vector in ``dtype`` on ``device`` (sharded: the
        elements this rank holds), non-finite entries set to 0 (:meth:`sq_norms` tells whether
        there were any). The buffer is reused: it holds the latest token's gradient and must not
        be modified."""
        if token != self._flat_token:
            buffer = self.allocate()
            torch._foreach_copy_(self._views, self.grads())
            buffer.nan_to_num_(0.0, 0.0, 0.0)
            self._flat_token = token
        assert self._buffer is not None  # allocated above
        return self._buffer

    def allocate(self) -> torch.Tensor:
        """The flat buffer, allocated on first use (call it at set-up, off the training steps)."""
        if self._buffer is None:
            self._buffer = self.layout.new_buffer(self.dtype, self.device)
            self._views = self.layout.param_views(self._buffer)
        return self._buffer
