"""Streaming accumulators: metric state declared once, ``update`` per probe, ``compute`` per epoch.

Modelled on torchmetrics (``update`` / ``compute`` / ``reset``), but holding O(P) tensors and
taking flat vectors laid out by a :class:`~critical.metrics.ParamLayout`. ``update`` never
synchronises with the host: validity checks (non-finite gradients) are folded into the
arithmetic and counted on the device; ``compute`` is where values reach Python.

Example:
    >>> import torch
    >>> acc = StreamingConfusion(lengths=[2, 1])
    >>> for g in ([1.0, 0.0, 1.0], [0.0, 1.0, 1.0], [float("nan"), 0.0, 0.0]):
    ...     acc.update(torch.tensor(g))
    >>> r = acc.compute()
    >>> r["count"], r["skipped"], round(r["mean"], 4), r["layer_mean"]
    (2, 1, 0.5, [0.0, 1.0])
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from critical.metrics.functional import mean_pairwise_cosine_from_sum, segment_sum

__all__ = ["StreamingConfusion", "StreamingCosine", "StreamingNorm"]


def _where_pos_inv(x: torch.Tensor, ok: torch.Tensor) -> torch.Tensor:
    """1 / x where ``ok & x > 0`` (finite), else 0 - without NaN leaking through."""
    use = ok & (x > 0) & torch.isfinite(x)
    return torch.where(use, 1.0 / torch.where(use, x, torch.ones_like(x)), torch.zeros_like(x))


def _nan_list(n: int) -> list[float]:
    return [float("nan")] * n


class StreamingConfusion:
    """Gradient confusion over the probed gradients of an epoch, with O(P) state.

    Keeps the running sums of per-layer unit gradients and of whole-model unit gradients, which
    give the exact mean pairwise cosine (``mean_{i != j} u_i . u_j = (|S|^2 - N) / (N (N - 1))``).
    The most negative pairwise cosine needs all pairs; it is *estimated* from a signed-hash
    sketch of each probe (``sketch_dim`` buckets per layer: exact for layers of at most
    ``sketch_dim`` elements, otherwise each pairwise cosine has a standard error of about
    ``sqrt((1 + cos^2) / sketch_dim)``, so the minimum is biased low). ``sketch_dim=0`` turns the
    estimate off.

    Memory: ``2 P`` elements of ``dtype`` for the sums, ``P`` int32 for the sketch hash, and
    ``L * sketch_dim`` floats per probe.

    Non-finite gradients are skipped (counted in ``skipped``); zero-norm gradients (or layers)
    count as probes whose cosine with every other is 0.

    Args:
        lengths: layer segment lengths of the flat gradients.
        sketch_dim: sketch buckets per layer for the min estimate (0 disables it).
        dtype: dtype of the running sums.
        device: device of the state (must match the vectors passed to ``update``).
        seed: seed of the sketch hash.
    """

    def __init__(
        self,
        lengths: Sequence[int],
        sketch_dim: int = 1024,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str | None = None,
        seed: int = 0,
    ) -> None:
        self.lengths = [int(n) for n in lengths]
        if not self.lengths or min(self.lengths) < 1:
            raise ValueError(f"`lengths` must be positive segment sizes, got {lengths!r}")
        if isinstance(sketch_dim, bool) or not isinstance(sketch_dim, int) or sketch_dim < 0:
            raise ValueError(f"`sketch_dim` must be an integer >= 0, got {sketch_dim!r}")
        self.sketch_dim = sketch_dim
        self.dtype = dtype
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        self.numel = sum(self.lengths)
        L = len(self.lengths)
        self._lengths_t = torch.tensor(self.lengths, dtype=torch.long, device=self.device)
        self.sum_layer = torch.zeros(self.numel, dtype=dtype, device=self.device)
        self.sum_model = torch.zeros(self.numel, dtype=dtype, device=self.device)
        self.n = torch.zeros((), dtype=torch.long, device=self.device)
        self.skipped = torch.zeros((), dtype=torch.long, device=self.device)
        self.nz_model = torch.zeros((), dtype=torch.long, device=self.device)
        self.nz_layer = torch.zeros(L, dtype=torch.long, device=self.device)
        self._sketches: list[torch.Tensor] = []  # (L, d) per probe, layer-unit vectors
        self._weights: list[torch.Tensor] = []  # (L,) per probe: |g_l| / |g|
        self._valid: list[torch.Tensor] = []
        self._hash = self._make_hash(seed) if sketch_dim else None

    def _make_hash(self, seed: int) -> torch.Tensor:
        """Bucket of every element: layer l uses buckets [l*2d, (l+1)*2d); the upper half of a
        layer's buckets holds the elements whose sign is flipped."""
        d = self.sketch_dim
        g = torch.Generator().manual_seed(seed)
        parts = []
        for layer, n in enumerate(self.lengths):
            base = layer * 2 * d
            if n <= d:  # injective: the sketch of this layer is exact
                parts.append(torch.arange(n, dtype=torch.int32) + base)
            else:
                parts.append(torch.randint(0, 2 * d, (n,), generator=g, dtype=torch.int32) + base)
        return torch.cat(parts).to(self.device)

    def reset(self) -> None:
        self.sum_layer.zero_()
        self.sum_model.zero_()
        for t in (self.n, self.skipped, self.nz_model, self.nz_layer):
            t.zero_()
        self._sketches.clear()
        self._weights.clear()
        self._valid.clear()

    @torch.no_grad()
    def update(self, flat: torch.Tensor) -> None:
        """Add one gradient. ``flat`` (P,) is used as scratch space and overwritten."""
        if flat.shape != (self.numel,):
            raise ValueError(
                f"expected a flat vector of {self.numel} elements, got {tuple(flat.shape)}"
            )
        views = list(torch.split(flat, self.lengths))
        layer_norm = torch.stack(torch._foreach_norm(views)).to(torch.float32)
        total = layer_norm.norm()
        valid = torch.isfinite(total)
        flat.nan_to_num_(0.0, 0.0, 0.0)
        inv_total = _where_pos_inv(total, valid)
        inv_layer = _where_pos_inv(layer_norm, valid)
        self.sum_model.addcmul_(flat, inv_total.to(flat.dtype))
        torch._foreach_mul_(views, list(inv_layer.to(flat.dtype).unbind()))  # layer-unit vectors
        self.sum_layer.add_(flat)
        self.n.add_(valid.long())
        self.skipped.add_((~valid).long())
        self.nz_model.add_((inv_total > 0).long())
        self.nz_layer.add_((inv_layer > 0).long())
        if self._hash is not None:
            d = self.sketch_dim
            buckets = torch.zeros(
                len(self.lengths) * 2 * d, dtype=torch.float32, device=flat.device
            )
            buckets.index_add_(0, self._hash, flat.to(torch.float32))
            b = buckets.view(len(self.lengths), 2, d)
            self._sketches.append(b[:, 0] - b[:, 1])
            self._weights.append(layer_norm.nan_to_num(0.0, 0.0, 0.0) * inv_total)
            self._valid.append(valid)

    def compute(self) -> dict[str, Any]:
        """Epoch values as Python numbers (this is where the host synchronises)."""
        L = len(self.lengths)
        n = int(self.n)
        out: dict[str, Any] = {"count": n, "skipped": int(self.skipped)}
        if n < 2:
            out.update(
                mean=float("nan"), min=float("nan"), layer_mean=_nan_list(L), layer_min=_nan_list(L)
            )
            return out
        sm = self.sum_model.to(torch.float64)
        sl = self.sum_layer.to(torch.float64)
        mean = mean_pairwise_cosine_from_sum(sm.dot(sm), self.nz_model, self.n)
        layer_sq = segment_sum(sl * sl, self._lengths_t)
        layer_mean = mean_pairwise_cosine_from_sum(layer_sq, self.nz_layer, self.n.expand(L))
        out["mean"] = float(mean)
        out["layer_mean"] = [float(v) for v in layer_mean]
        out["min"], out["layer_min"] = float("nan"), _nan_list(L)
        if self._sketches:
            keep = torch.stack(self._valid)
            sk = torch.stack(self._sketches)[keep].to(torch.float64)  # (N, L, d)
            w = torch.stack(self._weights)[keep].to(torch.float64)  # (N, L)
            gram = torch.einsum("ild,jld->lij", sk, sk)  # (L, N, N) layer-unit dot estimates
            whole = torch.einsum("il,jl,lij->ij", w, w, gram)
            off = ~torch.eye(sk.shape[0], dtype=torch.bool, device=sk.device)
            out["min"] = float(whole[off].clamp(-1, 1).min())
            out["layer_min"] = [float(v) for v in gram[:, off].clamp(-1, 1).min(dim=1).values]
        return out

    def state_dict(self) -> dict[str, Any]:
        return {
            "sum_layer": self.sum_layer,
            "sum_model": self.sum_model,
            "counts": torch.stack([self.n, self.skipped, self.nz_model]),
            "nz_layer": self.nz_layer,
            "sketches": list(self._sketches),
            "weights": list(self._weights),
            "valid": list(self._valid),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.sum_layer.copy_(state["sum_layer"])
        self.sum_model.copy_(state["sum_model"])
        n, skipped, nz = state["counts"].to(self.device)
        self.n.fill_(n)
        self.skipped.fill_(skipped)
        self.nz_model.fill_(nz)
        self.nz_layer.copy_(state["nz_layer"])
        self._sketches = [t.to(self.device) for t in state["sketches"]]
        self._weights = [t.to(self.device) for t in state["weights"]]
        self._valid = [t.to(self.device) for t in state["valid"]]


class StreamingCosine:
    """Mean cosine over pairs of vectors (whole and per layer), e.g. consecutive gradients.

    Pairs containing a non-finite value are skipped and counted; zero vectors give cosine 0.

    Example:
        >>> import torch
        >>> acc = StreamingCosine(lengths=[1, 1])
        >>> acc.update(torch.tensor([1.0, 1.0]), torch.tensor([1.0, -1.0]))
        >>> acc.compute()["mean"], acc.compute()["layer_mean"]
        (0.0, [1.0, -1.0])
    """

    def __init__(self, lengths: Sequence[int], device: torch.device | str | None = None) -> None:
        self.lengths = [int(n) for n in lengths]
        if not self.lengths or min(self.lengths) < 1:
            raise ValueError(f"`lengths` must be positive segment sizes, got {lengths!r}")
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        self._lengths_t = torch.tensor(self.lengths, dtype=torch.long, device=self.device)
        L = len(self.lengths)
        self.sum = torch.zeros((), dtype=torch.float64, device=self.device)
        self.sum_layer = torch.zeros(L, dtype=torch.float64, device=self.device)
        self.n = torch.zeros((), dtype=torch.long, device=self.device)
        self.skipped = torch.zeros((), dtype=torch.long, device=self.device)

    def reset(self) -> None:
        for t in (self.sum, self.sum_layer, self.n, self.skipped):
            t.zero_()

    def layer_norms(self, v: torch.Tensor) -> torch.Tensor:
        """Per-layer norms of a flat vector, shape ``(L,)`` (float64)."""
        return torch.stack(torch._foreach_norm(list(torch.split(v, self.lengths)))).double()

    @torch.no_grad()
    def update(
        self,
        a: torch.Tensor,
        b: torch.Tensor,
        norms_a: torch.Tensor | None = None,
        norms_b: torch.Tensor | None = None,
    ) -> None:
        """Add the cosine of ``a`` and ``b``. Per-layer norms already known (e.g. from
        :meth:`layer_norms` when the vector was read) can be passed to save a pass over P."""
        la = self.layer_norms(a) if norms_a is None else norms_a.double()
        lb = self.layer_norms(b) if norms_b is None else norms_b.double()
        dots = segment_sum(a * b, self._lengths_t).double()
        valid = torch.isfinite(la.sum() + lb.sum() + dots.sum())
        dots, la, lb = (t.nan_to_num(0.0, 0.0, 0.0) for t in (dots, la, lb))
        layer_cos = (dots * _where_pos_inv(la * lb, valid)).clamp(-1, 1)
        whole = (dots.sum() * _where_pos_inv(la.norm() * lb.norm(), valid)).clamp(-1, 1)
        self.sum.add_(whole)
        self.sum_layer.add_(layer_cos)
        self.n.add_(valid.long())
        self.skipped.add_((~valid).long())

    def compute(self) -> dict[str, Any]:
        n = int(self.n)
        if n == 0:
            return {
                "count": 0,
                "skipped": int(self.skipped),
                "mean": float("nan"),
                "layer_mean": _nan_list(len(self.lengths)),
            }
        return {
            "count": n,
            "skipped": int(self.skipped),
            "mean": float(self.sum) / n,
            "layer_mean": [float(v) / n for v in self.sum_layer],
        }

    def state_dict(self) -> dict[str, Any]:
        return {
            "sum": self.sum,
            "sum_layer": self.sum_layer,
            "counts": torch.stack([self.n, self.skipped]),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.sum.copy_(state["sum"])
        self.sum_layer.copy_(state["sum_layer"])
        n, skipped = state["counts"].to(self.device)
        self.n.fill_(n)
        self.skipped.fill_(skipped)


class StreamingNorm:
    """Root-mean-square norm of probed gradients, whole model and per layer, from per-parameter
    norms (no copy of the gradients: ``update`` takes the norms ``torch._foreach_norm`` gives).

    The mean squared mini-batch gradient norm is a proxy for the trace of the (empirical) Fisher
    information (Achille et al., ICLR 2019) scaled by the batch size; its epoch-to-epoch relative
    change is Accordion's regime signal (Agarwal et al., MLSys 2021). Probes with a non-finite
    norm are skipped and counted.

    Args:
        layer_of_param: for each parameter, the index of its layer (``L`` layers).
        device: device of the state (must match the norms passed to ``update``).

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
        self, layer_of_param: Sequence[int], device: torch.device | str | None = None
    ) -> None:
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        idx = [int(i) for i in layer_of_param]
        if not idx or min(idx) < 0:
            raise ValueError(f"`layer_of_param` must be non-negative layer indices, got {idx!r}")
        self.num_layers = max(idx) + 1
        self._index = torch.tensor(idx, dtype=torch.long, device=self.device)
        self.sum_sq = torch.zeros(self.num_layers, dtype=torch.float64, device=self.device)
        self.n = torch.zeros((), dtype=torch.long, device=self.device)
        self.skipped = torch.zeros((), dtype=torch.long, device=self.device)

    def reset(self) -> None:
        for t in (self.sum_sq, self.n, self.skipped):
            t.zero_()

    @torch.no_grad()
    def update(self, param_norms: torch.Tensor) -> None:
        """Add one probe: ``param_norms`` holds the norm of every parameter's gradient."""
        sq = param_norms.to(torch.float64).square()
        layer_sq = torch.zeros_like(self.sum_sq).index_add_(0, self._index, sq)
        valid = torch.isfinite(layer_sq.sum())
        self.sum_sq.add_(torch.where(valid, layer_sq, torch.zeros_like(layer_sq)))
        self.n.add_(valid.long())
        self.skipped.add_((~valid).long())

    def compute(self) -> dict[str, Any]:
        n = int(self.n)
        out: dict[str, Any] = {"count": n, "skipped": int(self.skipped)}
        if n == 0:
            out.update(norm=float("nan"), layer_norm=_nan_list(self.num_layers))
            return out
        mean_sq = self.sum_sq / n
        out["norm"] = float(mean_sq.sum().sqrt())
        out["layer_norm"] = [float(v) for v in mean_sq.sqrt()]
        return out

    def state_dict(self) -> dict[str, Any]:
        return {"sum_sq": self.sum_sq, "counts": torch.stack([self.n, self.skipped])}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.sum_sq.copy_(state["sum_sq"])
        n, skipped = state["counts"].to(self.device)
        self.n.fill_(n)
        self.skipped.fill_(skipped)
