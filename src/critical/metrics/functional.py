"""Pure tensor functions for the three training-dynamics metrics.

Every function takes flat vectors (a whole-model gradient or parameter vector of P elements, or a
stack of N of them as an ``(N, P)`` matrix) and, optionally, ``lengths``: the sizes of the
contiguous layer segments that make up the P elements (see :class:`~critical.metrics.ParamLayout`).
With ``lengths`` the per-layer values are returned as well.

Conventions:

* the cosine of a zero vector with anything is 0 (no division by zero, no NaN);
* reductions run in the input dtype; pass float64 for a reference.

Example:
    >>> import torch
    >>> g = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    >>> r = gradient_confusion(g)
    >>> round(r.mean.item(), 4), r.min.item()
    (-0.3333, -1.0)
    >>> layer_rotation(torch.tensor([1.0, 0.0]), torch.tensor([0.0, 2.0])).item()
    1.0
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch

__all__ = [
    "ConfusionResult",
    "CosineResult",
    "cosine",
    "gradient_confusion",
    "gradient_predictability",
    "gram_confusion",
    "layer_rotation",
    "mean_pairwise_cosine_from_sum",
    "pairwise_cosine",
    "segment_cosine",
    "segment_sum",
]


def _lengths(lengths: Sequence[int] | torch.Tensor, device: torch.device) -> torch.Tensor:
    if isinstance(lengths, torch.Tensor):
        return lengths.to(device=device, dtype=torch.long)
    return torch.tensor(list(lengths), dtype=torch.long, device=device)


def _safe_div(num: torch.Tensor, den: torch.Tensor) -> torch.Tensor:
    """num / den where den > 0, else 0."""
    pos = den > 0
    return torch.where(
        pos, num / torch.where(pos, den, torch.ones_like(den)), torch.zeros_like(num)
    )


def cosine(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Cosine similarity of two vectors (flattened); 0 if either is zero."""
    a, b = a.reshape(-1), b.reshape(-1)
    if a.shape != b.shape:
        raise ValueError(f"vectors differ in size: {a.numel()} vs {b.numel()}")
    return _safe_div(torch.dot(a, b), a.norm() * b.norm()).clamp(-1.0, 1.0)


def segment_sum(x: torch.Tensor, lengths: Sequence[int] | torch.Tensor) -> torch.Tensor:
    """Sums of contiguous segments of the last dimension of ``x``.

    ``x`` has shape ``(..., P)`` and ``sum(lengths) == P``; the result has shape ``(..., L)``.
    """
    lens = _lengths(lengths, x.device)
    if int(lens.sum()) != x.shape[-1]:
        raise ValueError(f"segment lengths sum to {int(lens.sum())}, vectors have {x.shape[-1]}")
    if x.dim() == 1:
        return torch.segment_reduce(x, "sum", lengths=lens)
    flat = x.reshape(-1, x.shape[-1])
    out = torch.segment_reduce(flat, "sum", lengths=lens.expand(flat.shape[0], -1), axis=1)
    return out.reshape(*x.shape[:-1], lens.numel())


class CosineResult(NamedTuple):
    """A whole-model value and, if layer lengths were given, one value per layer."""

    value: torch.Tensor
    layers: torch.Tensor | None


def segment_cosine(
    a: torch.Tensor, b: torch.Tensor, lengths: Sequence[int] | torch.Tensor
) -> torch.Tensor:
    """Per-segment cosine of two flat vectors; 0 for segments where either side is zero."""
    dots = segment_sum(a * b, lengths)
    na = segment_sum(a * a, lengths).sqrt()
    nb = segment_sum(b * b, lengths).sqrt()
    return _safe_div(dots, na * nb).clamp(-1.0, 1.0)


def pairwise_cosine(vectors: torch.Tensor) -> torch.Tensor:
    """``(N, P) -> (N, N)`` matrix of cosines between rows (zero rows give 0)."""
    if vectors.dim() != 2:
        raise ValueError(f"expected an (N, P) matrix, got shape {tuple(vectors.shape)}")
    norms = vectors.norm(dim=1)
    unit = vectors * _safe_div(torch.ones_like(norms), norms)[:, None]
    return (unit @ unit.T).clamp(-1.0, 1.0)


class ConfusionResult(NamedTuple):
    """Gradient confusion of a set of gradients.

    Attributes:
        mean: mean cosine over all pairs i != j (whole model).
        min: most negative pairwise cosine (whole model).
        layer_mean: per-layer mean pairwise cosine, shape ``(L,)`` (None without lengths).
        layer_min: per-layer most negative pairwise cosine (None without lengths).
        max: largest pairwise cosine (whole model): the statistic Fukase et al. (2025) watch.
        layer_max: per-layer largest pairwise cosine (None without lengths).
    """

    mean: torch.Tensor
    min: torch.Tensor
    layer_mean: torch.Tensor | None
    layer_min: torch.Tensor | None
    max: torch.Tensor
    layer_max: torch.Tensor | None


def _offdiag_stats(cos: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Mean, min and max of the off-diagonal entries of ``(..., N, N)`` cosine matrices."""
    n = cos.shape[-1]
    mask = ~torch.eye(n, dtype=torch.bool, device=cos.device)
    off = cos[..., mask]
    return off.mean(dim=-1), off.min(dim=-1).values, off.max(dim=-1).values


def gradient_confusion(
    grads: torch.Tensor, lengths: Sequence[int] | torch.Tensor | None = None
) -> ConfusionResult:
    """Mean, most negative and largest pairwise cosine of N >= 2 gradients (Sankararaman et
    al., 2020).

    Args:
        grads: ``(N, P)`` gradients of N different mini-batches.
        lengths: optional layer segment lengths (sum P) for per-layer values.
    """
    if grads.dim() != 2 or grads.shape[0] < 2:
        raise ValueError(f"need an (N, P) matrix with N >= 2, got shape {tuple(grads.shape)}")
    mean, mn, mx = _offdiag_stats(pairwise_cosine(grads))
    if lengths is None:
        return ConfusionResult(mean, mn, None, None, mx, None)
    # per-layer Gram matrices dots[l, i, j] = <g_i[l], g_j[l]>: one small matmul per layer
    # (memory O(N P), unlike an (N, N, P) product tensor)
    lens = [int(n) for n in (lengths.tolist() if isinstance(lengths, torch.Tensor) else lengths)]
    if sum(lens) != grads.shape[1]:
        raise ValueError(f"segment lengths sum to {sum(lens)}, vectors have {grads.shape[1]}")
    dots = torch.stack([s @ s.T for s in torch.split(grads, lens, dim=1)])  # (L, N, N)
    norms = torch.diagonal(dots, dim1=1, dim2=2).clamp_min(0).sqrt()  # (L, N)
    cos = _safe_div(dots, norms[:, :, None] * norms[:, None, :]).clamp(-1.0, 1.0)
    lmean, lmin, lmax = _offdiag_stats(cos)
    return ConfusionResult(mean, mn, lmean, lmin, mx, lmax)


def gram_confusion(gram: torch.Tensor) -> ConfusionResult:
    """Gradient confusion from Gram matrices: ``gram`` is ``(L + 1, N, N)``, ``gram[0][i, j] =
    <g_i, g_j>`` over the whole model and ``gram[1 + l]`` over layer ``l``. Gram matrices add up
    over disjoint sets of elements, so the partial Gram matrices of a sharded model's ranks,
    summed, give the whole model's confusion.

    Example:
        >>> g = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
        >>> r = gram_confusion(torch.stack([g @ g.T, g[:, :1] @ g[:, :1].T]))
        >>> round(r.mean.item(), 4), r.layer_min.tolist()
        (-0.3333, [-1.0])
    """
    if gram.dim() != 3 or gram.shape[0] < 1 or gram.shape[1] != gram.shape[2] or gram.shape[1] < 2:
        raise ValueError(f"need (L + 1, N, N) Gram matrices with N >= 2, got {tuple(gram.shape)}")
    norms = torch.diagonal(gram, dim1=1, dim2=2).clamp_min(0).sqrt()  # (L + 1, N)
    cos = _safe_div(gram, norms[:, :, None] * norms[:, None, :]).clamp(-1.0, 1.0)
    mean, mn, mx = _offdiag_stats(cos)
    if gram.shape[0] == 1:
        return ConfusionResult(mean[0], mn[0], None, None, mx[0], None)
    return ConfusionResult(mean[0], mn[0], mean[1:], mn[1:], mx[0], mx[1:])


def mean_pairwise_cosine_from_sum(
    sum_sq_norm: torch.Tensor, n_nonzero: torch.Tensor, n: torch.Tensor
) -> torch.Tensor:
    """Mean over i != j of ``u_i . u_j`` from the running sum of unit vectors.

    With ``S = sum_i u_i`` over ``n`` vectors of which ``n_nonzero`` are non-zero (zero vectors
    contribute ``u = 0`` and count as pairs of cosine 0):
    ``mean = (|S|^2 - n_nonzero) / (n (n - 1))``. Returns NaN where ``n < 2``.
    """
    n = n.to(sum_sq_norm.dtype)
    pairs = n * (n - 1)
    out = (sum_sq_norm - n_nonzero.to(sum_sq_norm.dtype)) / pairs.clamp_min(1)
    return torch.where(pairs > 0, out.clamp(-1.0, 1.0), torch.full_like(out, float("nan")))


def gradient_predictability(
    previous: torch.Tensor,
    current: torch.Tensor,
    lengths: Sequence[int] | torch.Tensor | None = None,
) -> CosineResult:
    """Cosine between one step's gradient and the next step's, whole model and per layer."""
    value = cosine(previous, current)
    layers = (
        None
        if lengths is None
        else segment_cosine(previous.reshape(-1), current.reshape(-1), lengths)
    )
    return CosineResult(value, layers)


def layer_rotation(
    theta0: torch.Tensor, theta: torch.Tensor, lengths: Sequence[int] | torch.Tensor | None = None
) -> torch.Tensor:
    """Cosine distance ``1 - cos(theta_0, theta)`` (Carbonnelle & De Vleeschouwer, 2019).

    Without ``lengths``: one value for the whole vector. With ``lengths``: one value per layer,
    shape ``(L,)``. Values lie in [0, 2]; 0 means the layer has not rotated.
    """
    if lengths is None:
        return 1.0 - cosine(theta0, theta)
    return 1.0 - segment_cosine(theta0.reshape(-1), theta.reshape(-1), lengths)
