"""Shared pieces of :mod:`critical.robustness`: constants, eval mode, checks, seeds, summaries.

Constants (severities, the CIFAR-10-C corruption names), :func:`eval_mode`, input and severity
validation, the seeded CPU generators, batch chunking, and the argument / result helpers that
synthetic corruptions (:mod:`~critical.robustness.corruptions`) and the official CIFAR-10-C files
(:mod:`~critical.robustness.cifar10c`) have in common.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

SEVERITIES = (1, 2, 3, 4, 5)

#: The 15 corruptions of the CIFAR-10-C benchmark, in the order of the paper.
CIFAR10C_CORRUPTIONS = (
    "gaussian_noise", "shot_noise", "impulse_noise",
    "defocus_blur", "glass_blur", "motion_blur", "zoom_blur",
    "snow", "frost", "fog",
    "brightness", "contrast", "elastic_transform", "pixelate", "jpeg_compression",
)  # fmt: skip
#: The four extra corruptions shipped with CIFAR-10-C (not part of the benchmark mean).
CIFAR10C_EXTRA_CORRUPTIONS = ("speckle_noise", "gaussian_blur", "spatter", "saturate")


# ----------------------------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------------------------


@contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Put ``model`` in eval mode; restore every submodule's own ``training`` flag on exit."""
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for m, training in modes:
            m.training = training


def _model_device_dtype(model: nn.Module) -> tuple[torch.device, torch.dtype]:
    for p in model.parameters():
        dtype = p.dtype if p.dtype.is_floating_point else torch.float32
        return p.device, dtype
    for b in model.buffers():
        return b.device, torch.float32
    return torch.device("cpu"), torch.float32


def _check_images(x: Tensor, name: str = "x") -> None:
    if not isinstance(x, Tensor) or x.ndim != 4:
        raise ValueError(
            f"`{name}` must be a (N, C, H, W) tensor, got {type(x).__name__} "
            f"of shape {tuple(getattr(x, 'shape', ()))}"
        )
    if not x.is_floating_point():
        raise ValueError(f"`{name}` must be a float tensor in [0, 1], got dtype {x.dtype}")


def _generator(seed: int) -> torch.Generator:
    return torch.Generator(device="cpu").manual_seed(int(seed) % (2**63 - 1))


def _seed_for(seed: int, *parts: Any) -> int:
    """A stable (process-independent) seed derived from ``seed`` and names/numbers."""
    h = zlib.crc32(repr((int(seed), *parts)).encode())
    return (int(seed) * 1_000_003 + h) % (2**63 - 1)


def _chunks(n: int, batch_size: int) -> Iterator[slice]:
    for i in range(0, n, batch_size):
        yield slice(i, min(i + batch_size, n))


def _check_severity(severity: int) -> int:
    if isinstance(severity, bool) or not isinstance(severity, int) or severity not in SEVERITIES:
        raise ValueError(f"`severity` must be one of {list(SEVERITIES)}, got {severity!r}")
    return severity


# ----------------------------------------------------------------------------------------------
# corruption arguments and results (synthetic and CIFAR-10-C)
# ----------------------------------------------------------------------------------------------


def _resolve_corruptions(
    corruptions: str | Sequence[str] | None, available: Sequence[str]
) -> list[str]:
    if corruptions is None:
        return []
    if corruptions == "default":
        return [c for c in available if c in CIFAR10C_CORRUPTIONS]
    if corruptions == "all":
        return list(available)
    if isinstance(corruptions, str):
        corruptions = [corruptions]
    names = list(corruptions)
    unknown = [c for c in names if c not in available]
    if unknown:
        raise ValueError(f"unknown corruption(s) {unknown}; available: {sorted(available)}")
    return names


def _check_severities(severities: Sequence[int]) -> list[int]:
    sev = [_check_severity(s) for s in severities]
    if not sev:
        raise ValueError("`severities` must name at least one of 1..5")
    return sev


def _summarize(per: dict[str, dict[int, float]], source: str, **extra: Any) -> dict[str, Any]:
    per_corruption: dict[str, dict[str, Any]] = {
        name: {
            "mean": float(np.mean(list(accs.values()))),
            "by_severity": {str(s): a for s, a in accs.items()},
        }
        for name, accs in per.items()
    }
    means = [v["mean"] for v in per_corruption.values()]
    return {
        "source": source,
        "mean_acc": float(np.mean(means)) if means else None,
        **extra,
        "per_corruption": per_corruption,
    }
