"""StreamingConfusion: gradient confusion over an epoch's probed gradients, with O(P) state.

The exact mean pairwise cosine from running sums of unit gradients, and a signed-hash sketch per
probe for the estimated minimum and maximum. The shared conventions (``update`` per probe,
``compute`` per epoch, sharded models through a
:class:`~critical.metrics.sharding.ShardView`) are those of :mod:`critical.metrics.streaming`.

Example:
    >>> import torch
    >>> acc = StreamingConfusion(lengths=[2, 1])
    >>> for g in ([1.0, 0.0, 1.0], [0.0, 1.0, 1.0], [float("nan"), 0.0, 0.0]):
    ...     acc.update(torch.tensor(g))
    >>> r = acc.compute()
    >>> r["count"], r["skipped"], round(r["mean"], 4), [round(v, 4) for v in r["layer_mean"]]
    (2, 1, 0.5, [0.0, 1.0])
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from critical.metrics.functional import mean_pairwise_cosine_from_sum
from critical.metrics.layers import norm_matrix
from critical.metrics.reader import sq_norms
from critical.metrics.sharding import ShardView, to_full, to_local
from critical.metrics.streaming import (
    _check_lengths,
    _inv_sqrt,
    _nan_list,
    _restored,
    _stack_summed,
    _summed,
)

__all__ = ["StreamingConfusion"]

#: the prime of the sketch's bucket hash ``((a i + b) mod p) mod 2d`` (2-universal)
_PRIME = 2**31 - 1


def _stacked(
    sq: list[torch.Tensor], valid: list[torch.Tensor], width: int, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-probe squared norms ``(N, width)`` float64 and flags ``(N,)``, empty when N = 0."""
    if not sq:
        empty = torch.zeros(0, width, dtype=torch.float64, device=device)
        return empty, torch.zeros(0, dtype=torch.bool, device=device)
    return torch.stack(sq).to(device, torch.float64), torch.stack(valid).to(device)


class StreamingConfusion:
    """Gradient confusion over the probed gradients of an epoch, with O(P) state.

    Keeps the running sums of per-layer unit gradients and of whole-model unit gradients, which
    give the exact mean pairwise cosine (``mean_{i != j} u_i . u_j = (|S|^2 - N) / (N (N - 1))``).
    The most negative pairwise cosine needs all pairs; it is *estimated* from a signed-hash
    sketch of each probe (``sketch_dim`` buckets per layer: exact for layers of at most
    ``sketch_dim`` elements, otherwise each pairwise cosine has a standard error of about
    ``sqrt((1 + cos^2) / sketch_dim)``, so the minimum is biased low). ``sketch_dim=0`` turns the
    estimate off.

    Memory: ``2 P`` elements of ``dtype`` for the sums, ``P`` int32 for the element-to-layer map
    and ``P`` int32 for the sketch hash; per probe ``L + 1`` squared norms and
    ``L * sketch_dim`` sketch floats.

    Non-finite gradients are skipped (counted in ``skipped``); zero-norm gradients (or layers)
    count as probes whose cosine with every other is 0.

    Sharded (``shard``): ``update`` takes this rank's elements of the gradient with the whole
    model's squared norms (a reader's :meth:`~critical.metrics.GradientReader.sq_norms`); the
    running sums hold this rank's elements, the sketch of each probe is this rank's partial
    bucket sums (the bucket of an element depends on its index in the whole layer, so partial
    sketches add up to the one-process sketch), and ``compute`` sums ``|S|^2`` and the sketches
    over the ranks in one collective: the values equal a one-process run's.

    Args:
        lengths: layer segment lengths of the flat gradients (sharded: this rank's).
        sketch_dim: sketch buckets per layer for the min estimate (0 disables it).
        dtype: dtype of the running sums.
        device: device of the state (must match the vectors passed to ``update``).
        seed: seed of the sketch hash.
        shard: sharded models: how this rank's elements relate to the whole vector.
    """

    def __init__(
        self,
        lengths: Sequence[int],
        sketch_dim: int = 1024,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str | None = None,
        seed: int = 0,
        shard: ShardView | None = None,
    ) -> None:
        self.lengths = _check_lengths(lengths, shard)
        if isinstance(sketch_dim, bool) or not isinstance(sketch_dim, int) or sketch_dim < 0:
            raise ValueError(f"`sketch_dim` must be an integer >= 0, got {sketch_dim!r}")
        self.sketch_dim = sketch_dim
        self.dtype = dtype
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        self.shard = shard
        self.sizes = list(shard.sizes) if shard is not None else list(self.lengths)
        self.numel = sum(self.lengths)
        L = len(self.lengths)
        self._lengths_t = torch.tensor(self.lengths, dtype=torch.long, device=self.device)
        self._layer_matrix = norm_matrix(range(L), L, device=self.device)
        layers = torch.arange(L, dtype=torch.int32, device=self.device)
        self._element_layer = torch.repeat_interleave(
            layers, self._lengths_t, output_size=self.numel
        )
        self.sum_layer = torch.zeros(self.numel, dtype=dtype, device=self.device)
        self.sum_model = torch.zeros(self.numel, dtype=dtype, device=self.device)
        self._sq: list[torch.Tensor] = []  # (L + 1,) per probe: squared norms, whole first
        self._valid: list[torch.Tensor] = []  # 0-d bool per probe
        self._sketches: list[torch.Tensor] = []  # (L, d) per probe, of the raw gradient
        self._hash = self._make_hash(seed) if sketch_dim else None

    def _make_hash(self, seed: int) -> torch.Tensor:
        """Bucket of every element: layer l uses buckets [l*2d, (l+1)*2d); the upper half of a
        layer's buckets holds the elements whose sign is flipped. A layer of at most d elements
        maps element i to bucket i (exact); a larger one hashes i, its index in the whole layer,
        with ``((a_l i + b_l) mod p) mod 2d`` (a 2-universal family, ``p = 2^31 - 1``, ``a_l``,
        ``b_l`` drawn from ``seed``), so each rank of a sharded model hashes its elements as one
        process would."""
        d, dev = self.sketch_dim, self.device
        L = len(self.lengths)
        g = torch.Generator().manual_seed(seed)
        a = torch.randint(1, _PRIME, (L,), generator=g, dtype=torch.int64).to(dev)
        b = torch.randint(0, _PRIME, (L,), generator=g, dtype=torch.int64).to(dev)
        layer = self._element_layer.long()
        starts = torch.tensor(self.sizes, dtype=torch.int64, device=dev).cumsum(0)
        if self.shard is None:
            index = torch.arange(self.numel, dtype=torch.int64, device=dev)
        else:
            index = self.shard.positions(dev)
        index = index - (starts - torch.tensor(self.sizes, device=dev))[layer]  # within the layer
        small = torch.tensor([n <= d for n in self.sizes], device=dev)[layer]
        hashed = (a[layer] * index + b[layer]) % _PRIME % (2 * d)
        bucket = torch.where(small, index, hashed) + layer * (2 * d)
        return bucket.to(torch.int32)

    @property
    def probes(self) -> int:
        """Probes added since the last reset (valid or not)."""
        return len(self._sq)

    def reset(self) -> None:
        self.sum_layer.zero_()
        self.sum_model.zero_()
        self._sq.clear()
        self._valid.clear()
        self._sketches.clear()

    @torch.no_grad()
    def update(
        self,
        flat: torch.Tensor,
        sq: torch.Tensor | None = None,
        valid: torch.Tensor | None = None,
    ) -> None:
        """Add one gradient ``flat`` (P,); it is not modified.

        ``sq`` (the ``(L + 1,)`` squared norms, whole first) and ``valid`` (0-d bool) may come
        from a :class:`~critical.metrics.GradientReader`; ``flat`` must then have its non-finite
        entries zeroed, as the reader's is. Without them they are computed here."""
        if flat.shape != (self.numel,):
            raise ValueError(
                f"expected a flat vector of {self.numel} elements, got {tuple(flat.shape)}"
            )
        if sq is None or valid is None:
            sq = sq_norms(torch.split(flat, self.lengths), self._layer_matrix)
            if self.shard is not None:
                sq = self.shard.sum_(sq)
            valid = torch.isfinite(sq[0])
            flat = flat.nan_to_num(0.0, 0.0, 0.0)
        inv = _inv_sqrt(sq).mul_(valid)  # 0 for zero norms and invalid probes
        if inv.dtype != flat.dtype:
            inv = inv.to(flat.dtype)
        self.sum_model.addcmul_(flat, inv[:1])
        self.sum_layer.addcmul_(flat, inv[1:].index_select(0, self._element_layer))
        self._sq.append(sq)
        self._valid.append(valid)
        if self._hash is not None:
            d = self.sketch_dim
            buckets = torch.zeros(
                len(self.lengths) * 2 * d, dtype=torch.float32, device=flat.device
            )
            buckets.index_add_(0, self._hash, flat if flat.dtype == torch.float32 else flat.float())
            b = buckets.view(len(self.lengths), 2, d)
            self._sketches.append(b[:, 0] - b[:, 1])

    def compute(self) -> dict[str, Any]:
        """Epoch values as Python numbers (this is where the host synchronises; sharded: one
        collective, on every rank)."""
        L = len(self.lengths)
        sq, valid = _stacked(self._sq, self._valid, L + 1, self.device)
        n = int(valid.sum())
        out: dict[str, Any] = {"count": n, "skipped": len(self._sq) - n}
        if n < 2:
            nan = float("nan")
            out.update(mean=nan, min=nan, max=nan, layer_mean=_nan_list(L))
            out.update(layer_min=_nan_list(L), layer_max=_nan_list(L))
            return out
        nonzero = ((sq > 0) & valid[:, None]).sum(0)  # (L + 1,): whole, then per layer
        count = torch.tensor(float(n), dtype=torch.float64, device=self.device)
        # |S|^2 of the whole model and of each layer: one fused norm over the layers' segments
        norms = torch._foreach_norm(
            [self.sum_model, *torch.split(self.sum_layer, self.lengths)], dtype=torch.float64
        )
        sums = torch.stack(norms).square()
        sketches = torch.stack(self._sketches) if self._sketches else None
        sums, *rest = _summed(
            self.shard, [sums] + ([sketches.double()] if sketches is not None else [])
        )
        if rest:
            sketches = rest[0]
        # whole model and layers in one call: (L + 1,) means, whole first
        values = [mean_pairwise_cosine_from_sum(sums, nonzero, count.expand(L + 1))]
        if sketches is not None:
            kept = sq[valid]  # (N, L + 1)
            inv = kept.rsqrt().nan_to_num(0.0, 0.0, 0.0)
            sk = sketches[valid].to(torch.float64) * inv[:, 1:, None]
            w = kept[:, 1:].sqrt() * inv[:, :1]  # (N, L): |g_l| / |g|
            gram = torch.einsum("ild,jld->lij", sk, sk)  # (L, N, N) layer-unit dot estimates
            whole = torch.einsum("il,jl,lij->ij", w, w, gram)
            off = ~torch.eye(sk.shape[0], dtype=torch.bool, device=sk.device)
            w_off, l_off = whole[off].clamp(-1, 1), gram[:, off].clamp(-1, 1)
            values += [w_off.min().view(1), l_off.amin(1), w_off.max().view(1), l_off.amax(1)]
        flat = torch.cat(values).tolist()  # one transfer to the host
        out["mean"], out["layer_mean"] = flat[0], flat[1 : L + 1]
        out["min"], out["layer_min"] = float("nan"), _nan_list(L)
        out["max"], out["layer_max"] = float("nan"), _nan_list(L)
        if self._sketches:
            out["min"], out["layer_min"] = flat[L + 1], flat[L + 2 : 2 * L + 2]
            out["max"], out["layer_max"] = flat[2 * L + 2], flat[2 * L + 3 :]
        return out

    def state_dict(self) -> dict[str, Any]:
        """The state (sharded: the whole model's, assembled by collectives on every rank)."""
        shard = self.shard
        return {
            "sum_layer": self.sum_layer if shard is None else to_full(shard, self.sum_layer),
            "sum_model": self.sum_model if shard is None else to_full(shard, self.sum_model),
            "sq": list(self._sq),
            "valid": list(self._valid),
            "sketches": _stack_summed(shard, self._sketches),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a state (a sharded rank takes its part of the whole model's)."""
        shard = self.shard
        for name in ("sum_layer", "sum_model"):
            t = state[name]
            getattr(self, name).copy_(t if shard is None else to_local(shard, t, self.device))
        self._sq = [t.to(self.device) for t in state["sq"]]
        self._valid = [t.to(self.device) for t in state["valid"]]
        self._sketches = _restored(shard, state["sketches"], self.device)
