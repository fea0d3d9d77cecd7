"""Streaming accumulators: metric state declared once, ``update`` per probe, ``compute`` per epoch.

Modelled on torchmetrics (``update`` / ``compute`` / ``reset``), but holding O(P) tensors and
taking flat vectors laid out by a :class:`~critical.metrics.ParamLayout`. ``update`` never
synchronises with the host: validity checks (non-finite gradients) are folded into the
arithmetic; what is per probe and O(L) (squared norms, validity flags, sketches) is kept as is and
reduced in ``compute``, where values reach Python.

Two entry points per accumulator: ``update`` takes the vectors and computes what it needs (the
reference path, for direct use); the ``*_sq`` / keyword forms take squared norms already computed
by a :class:`~critical.metrics.GradientReader`, so that a training step pays a small, fixed number
of kernels whatever the number of layers.

Sharded models: with ``shard`` (a :class:`~critical.metrics.sharding.ShardView`) an accumulator
works on the elements its rank holds (``lengths`` are then this rank's per layer, possibly 0) and
on partial squared norms; ``compute`` sums the partial results over the ranks in one collective
(every rank must call it), so every rank gets the whole model's values. ``state_dict`` then holds
the whole model's state (a collective too), the same as one process's, and ``load_state_dict``
takes this rank's part of it.

This module holds what the accumulators share (argument checks, the sums over the ranks, the
checkpoint forms) and :class:`StreamingCosine` and :class:`StreamingNorm`; gradient confusion's
:class:`~critical.metrics.streaming_confusion.StreamingConfusion` is in
:mod:`critical.metrics.streaming_confusion`.

Example:
    >>> import torch
    >>> acc = StreamingCosine(lengths=[2, 1])
    >>> acc.update(torch.tensor([1.0, 0.0, 2.0]), torch.tensor([0.0, 1.0, 2.0]))
    >>> acc.update(torch.tensor([float("nan"), 0.0, 0.0]), torch.tensor([1.0, 0.0, 0.0]))
    >>> r = acc.compute()
    >>> r["count"], r["skipped"], round(r["mean"], 4), [round(v, 4) for v in r["layer_mean"]]
    (1, 1, 0.8, [0.0, 1.0])
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from critical.metrics.layers import norm_matrix
from critical.metrics.reader import sq_norms
from critical.metrics.sharding import ShardView

__all__ = ["StreamingCosine", "StreamingNorm"]


def _check_lengths(lengths: Sequence[int], shard: ShardView | None) -> list[int]:
    out = [int(n) for n in lengths]
    if shard is None:
        if not out or min(out) < 1:
            raise ValueError(f"`lengths` must be positive segment sizes, got {lengths!r}")
    elif len(out) != len(shard.sizes) or min(out, default=0) < 0 or min(shard.sizes) < 1:
        raise ValueError(
            f"`lengths` must be this rank's sizes (>= 0) of the {len(shard.sizes)} layers of the "
            f"whole vector, got {lengths!r}"
        )
    return out


def _summed(shard: ShardView | None, parts: list[torch.Tensor]) -> list[torch.Tensor]:
    """``parts`` (float64) summed over the ranks in one collective; as they are without
    sharding."""
    if shard is None or not parts:
        return parts
    flat = shard.sum_(torch.cat([t.reshape(-1) for t in parts]))
    return [c.view(t.shape) for c, t in zip(torch.split(flat, [t.numel() for t in parts]), parts)]


def _stack_summed(shard: ShardView | None, items: list[torch.Tensor]) -> list[torch.Tensor]:
    """Per-probe partial tensors as the whole model's (a checkpoint's form)."""
    if shard is None or not items:
        return list(items)
    return list(shard.sum_(torch.stack(items).to(torch.float64)).to(items[0].dtype))


def _restored(shard: ShardView | None, items: list[torch.Tensor], device: torch.device) -> list:
    """Checkpointed whole-model per-probe tensors as this rank's partial ones: all on the root,
    zeros elsewhere (they add up to the whole)."""
    items = [t.to(device) for t in items]
    if shard is None or shard.root:
        return items
    return [torch.zeros_like(t) for t in items]


def _inv_sqrt(sq: torch.Tensor) -> torch.Tensor:
    """``1 / sqrt(sq)`` where that is finite and positive, else 0 (zero, NaN or inf input)."""
    return sq.rsqrt().nan_to_num_(0.0, 0.0, 0.0)


def _nan_list(n: int) -> list[float]:
    return [float("nan")] * n


class StreamingCosine:
    """Mean cosine over pairs of vectors (whole and per layer), e.g. consecutive gradients.

    Keeps, per pair, the squared norms of ``a``, ``b`` and ``a + b`` (whole and per layer), from
    which ``compute`` takes the cosines: ``a . b = (|a + b|^2 - |a|^2 - |b|^2) / 2``. Pairs
    containing a non-finite value are skipped and counted; zero vectors give cosine 0. Sharded
    (``shard``): the squared norms are this rank's partial sums, added over the ranks in
    ``compute`` (one collective for the epoch).

    Example:
        >>> import torch
        >>> acc = StreamingCosine(lengths=[1, 1])
        >>> acc.update(torch.tensor([1.0, 1.0]), torch.tensor([1.0, -1.0]))
        >>> acc.compute()["mean"], acc.compute()["layer_mean"]
        (0.0, [1.0, -1.0])
    """

    def __init__(
        self,
        lengths: Sequence[int],
        device: torch.device | str | None = None,
        shard: ShardView | None = None,
    ) -> None:
        self.lengths = _check_lengths(lengths, shard)
        self.shard = shard
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        L = len(self.lengths)
        self._matrix = norm_matrix(range(L), L, torch.float64, self.device)
        self._pairs: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []

    @property
    def probes(self) -> int:
        """Pairs added since the last reset (valid or not)."""
        return len(self._pairs)

    def reset(self) -> None:
        self._pairs.clear()

    @torch.no_grad()
    def update(self, a: torch.Tensor, b: torch.Tensor) -> None:
        """Add the cosine of ``a`` and ``b`` (computed in float64)."""
        a, b = a.to(torch.float64), b.to(torch.float64)
        parts = [torch.split(v, self.lengths) for v in (a, b, a + b)]
        self.update_sq(*(sq_norms(p, self._matrix) for p in parts))  # partial when sharded

    def update_sq(self, sq_a: torch.Tensor, sq_b: torch.Tensor, sq_sum: torch.Tensor) -> None:
        """Add one pair from the ``(L + 1,)`` squared norms (whole first) of ``a``, ``b`` and
        ``a + b``: no pass over the vectors. The tensors are kept, not copied."""
        self._pairs.append((sq_a, sq_b, sq_sum))

    def compute(self) -> dict[str, Any]:
        L = len(self.lengths)
        n = 0
        if self._pairs:
            flat = torch.stack([t for p in self._pairs for t in p])  # one stack: (3 N, L + 1)
            pairs = flat.view(-1, 3, L + 1).to(self.device, torch.float64)
            (pairs,) = _summed(self.shard, [pairs])
            a, b, s = pairs.unbind(1)
            valid = (torch.isfinite(a) & torch.isfinite(b) & torch.isfinite(s)).all(dim=1)
            n = int(valid.sum())
        if n == 0:
            return {
                "count": 0,
                "skipped": len(self._pairs),
                "mean": float("nan"),
                "layer_mean": _nan_list(L),
            }
        a, b, s = a[valid], b[valid], s[valid]
        den = a * b
        cos = torch.where(den > 0, (s - a - b) / 2 / den.clamp_min(1e-300).sqrt(), 0.0)
        means = (cos.clamp(-1.0, 1.0).sum(dim=0) / n).tolist()
        return {
            "count": n,
            "skipped": len(self._pairs) - n,
            "mean": means[0],
            "layer_mean": means[1:],
        }

    def state_dict(self) -> dict[str, Any]:
        """The pairs (sharded: the whole model's squared norms, a collective on every rank)."""
        return {"pairs": _stack_summed(self.shard, [torch.stack(p) for p in self._pairs])}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pairs = _restored(self.shard, state.get("pairs", []), self.device)
        self._pairs = [(t[0], t[1], t[2]) for t in pairs]


class StreamingNorm:
    """Root-mean-square norm of probed gradients, whole model and per layer, from per-parameter
    norms (no copy of the gradients: ``update`` takes the norms ``torch._foreach_norm`` gives,
    ``update_sq`` the squared norms a :class:`~critical.metrics.GradientReader` gives).

    The mean squared mini-batch gradient norm is a proxy for the trace of the (empirical) Fisher
    information (Achille et al., ICLR 2019) scaled by the batch size; its epoch-to-epoch relative
    change is Accordion's regime signal (Agarwal et al., MLSys 2021). Probes with a non-finite
    norm are skipped and counted.

    Args:
        layer_of_param: for each parameter, the index of its layer (``L`` layers).
        device: device of the state (must match the norms passed to ``update``).
        shard: sharded models: the squared norms passed are this rank's partial sums, added over
            the ranks in ``compute`` (one collective for the epoch).

    Example:
        >>> import torch
        >>> acc = StreamingNorm(layer_of_param=[0, 0, 1])
        >>> acc.update(torch.tensor([3.0, 0.0, 4.0]))
        >>> acc.update(torch.tensor([float("nan"), 0.0, 0.0]))
        >>> r = acc.compute()
        >>> r["count"], r["skipped"], r["norm"], r["layer_norm"]
        (1, 1, 5.0, [3.0, 4.0])
    """

    def __init__(
        self,
        layer_of_param: Sequence[int],
        device: torch.device | str | None = None,
        shard: ShardView | None = None,
    ) -> None:
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        self.shard = shard
        idx = [int(i) for i in layer_of_param]
        if not idx or min(idx) < 0:
            raise ValueError(f"`layer_of_param` must be non-negative layer indices, got {idx!r}")
        self.num_layers = max(idx) + 1
        self._matrix = norm_matrix(idx, self.num_layers, torch.float64, self.device)
        self._sq: list[torch.Tensor] = []

    @property
    def probes(self) -> int:
        """Probes added since the last reset (valid or not)."""
        return len(self._sq)

    def reset(self) -> None:
        self._sq.clear()

    @torch.no_grad()
    def update(self, param_norms: torch.Tensor) -> None:
        """Add one probe: ``param_norms`` holds the norm of every parameter's gradient."""
        sq = param_norms.to(torch.float64).square()
        self.update_sq(torch.mv(self._matrix, sq))

    def update_sq(self, sq: torch.Tensor) -> None:
        """Add one probe from its ``(L + 1,)`` squared norms, whole gradient first (kept, not
        copied)."""
        self._sq.append(sq)

    def compute(self) -> dict[str, Any]:
        L = self.num_layers
        n = 0
        if self._sq:
            (sq,) = _summed(self.shard, [torch.stack(self._sq).to(self.device, torch.float64)])
            valid = torch.isfinite(sq).all(dim=1)
            n = int(valid.sum())
        out: dict[str, Any] = {"count": n, "skipped": len(self._sq) - n}
        if n == 0:
            out.update(norm=float("nan"), layer_norm=_nan_list(L))
            return out
        rms = (sq[valid].sum(dim=0) / n).sqrt().tolist()
        out["norm"], out["layer_norm"] = rms[0], rms[1:]
        return out

    def state_dict(self) -> dict[str, Any]:
        """The probes (sharded: the whole model's squared norms, a collective on every rank)."""
        return {"sq": _stack_summed(self.shard, self._sq)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._sq = _restored(self.shard, state.get("sq", []), self.device)
