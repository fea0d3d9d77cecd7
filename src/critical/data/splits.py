"""Seeded, stratified train / validation splits (:func:`stratified_split`)."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

__all__ = ["check_size", "keeps_all", "noisy_labels", "stratified_split"]


# --------------------------------------------------------------------------------------------
# stratified split
# --------------------------------------------------------------------------------------------
def stratified_split(
    labels: Tensor,
    val_size: int | float,
    seed: int = 0,
) -> tuple[Tensor, Tensor]:
    """Seeded, stratified split of ``range(len(labels))`` into sorted (train, val) indices.

    ``val_size`` is a count (int) or a fraction in [0, 1) (float). Each class contributes
    its share of ``val_size`` (largest-remainder rounding, so the total is exact); the choice
    within a class is a seeded permutation, so the split depends only on ``(labels, val_size,
    seed)``.

    Example:
        >>> y = torch.tensor([0] * 8 + [1] * 4)
        >>> tr, va = stratified_split(y, val_size=3, seed=0)
        >>> len(tr), y[va].bincount().tolist()
        (9, [2, 1])
    """
    labels = torch.as_tensor(labels).cpu().to(torch.int64)
    n = labels.numel()
    if isinstance(val_size, bool) or not isinstance(val_size, (int, float)):
        msg = f"val_size must be an int count or a float fraction, got {val_size!r}"
        raise ValueError(msg)
    if isinstance(val_size, float):
        if not 0.0 <= val_size < 1.0:
            raise ValueError(f"a float val_size must be a fraction in [0, 1), got {val_size!r}")
        n_val = round(val_size * n)
    else:
        if not 0 <= val_size < max(n, 1):
            raise ValueError(f"an int val_size must be in [0, {n - 1}], got {val_size!r}")
        n_val = val_size
    if n_val == 0:
        return torch.arange(n), torch.zeros(0, dtype=torch.int64)
    classes, counts = torch.unique(labels, return_counts=True)
    exact = counts.double() * n_val / n
    quota = exact.floor().long()
    remainder = n_val - int(quota.sum())
    if remainder > 0:
        order = torch.argsort(-(exact - quota.double()), stable=True)
        quota[order[:remainder]] += 1
    g = torch.Generator().manual_seed(int(seed))
    val_parts = []
    for c, q in zip(classes.tolist(), quota.tolist()):
        members = (labels == c).nonzero().squeeze(1)
        perm = torch.randperm(members.numel(), generator=g)
        val_parts.append(members[perm[:q]])
    val_idx = torch.cat(val_parts).sort().values
    mask = torch.ones(n, dtype=torch.bool)
    mask[val_idx] = False
    return mask.nonzero().squeeze(1), val_idx


def noisy_labels(
    labels: torch.Tensor, fraction: float, num_classes: int, seed: int
) -> torch.Tensor:
    """``labels`` with ``round(fraction * N)`` of them, chosen with ``seed``, replaced by another
    class drawn uniformly (never the true one): symmetric label noise on a training split.

    Example:
        >>> import torch
        >>> y = torch.arange(10) % 2
        >>> noisy = noisy_labels(y, 0.2, 2, seed=0)
        >>> int((noisy != y).sum()), noisy_labels(y, 0.0, 2, seed=0).equal(y)
        (2, True)
    """
    n = len(labels)
    flip = round(float(fraction) * n)
    if flip == 0 or num_classes < 2:
        return labels.clone()
    g = torch.Generator().manual_seed(int(seed))
    idx = torch.randperm(n, generator=g)[:flip].to(labels.device)
    shift = torch.randint(1, num_classes, (flip,), generator=g).to(labels.device)
    out = labels.clone()
    out[idx] = (labels[idx] + shift) % num_classes
    return out


def check_size(name: str, v: Any, allow_none: bool) -> None:
    """val_size: int >= 0 or float in [0, 1); train_size: None, int >= 1 or float in (0, 1]."""
    if v is None and allow_none:
        return
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        msg = f"{name} must be an int count or a float fraction, got {v!r}"
        raise ValueError(msg)
    if allow_none:  # train_size
        if isinstance(v, float) and not 0.0 < v <= 1.0:
            raise ValueError(f"a float {name} must be a fraction in (0, 1], got {v!r}")
        if isinstance(v, int) and v < 1:
            raise ValueError(f"an int {name} must be >= 1, got {v!r}")
    else:  # val_size
        if isinstance(v, float) and not 0.0 <= v < 1.0:
            raise ValueError(f"a float {name} must be a fraction in [0, 1), got {v!r}")
        if isinstance(v, int) and v < 0:
            raise ValueError(f"an int {name} must be >= 0, got {v!r}")


def keeps_all(size: int | float, n: int) -> bool:
    """Whether a ``train_size`` of ``size`` keeps all ``n`` images."""
    return (isinstance(size, float) and size >= 1.0) or (isinstance(size, int) and size >= n)
