"""TrivialAugment-Wide and RandAugment, batched: draw ops and magnitudes per image, then apply.

Magnitude tables follow torchvision's (translation as a fraction of the image size); the ops
themselves are in :mod:`critical.data.augment_ops`.
"""

from __future__ import annotations

import functools

import torch
from torch import Tensor

from critical.data.augment_basic import _check_images, _owned_float, _rand, _randint
from critical.data.augment_ops import _OP_ID, _SIGNED, OPS, _apply_ops

__all__ = ["INTERPOLATIONS", "rand_augment", "trivial_augment"]

INTERPOLATIONS = ("nearest", "bilinear")


# --------------------------------------------------------------------------------------------
# policies
# --------------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=16)
def _magnitude_table(policy: str, num_bins: int) -> Tensor:
    """(len(OPS), num_bins) magnitudes, torchvision's tables (translate as a fraction of size)."""
    t = torch.zeros(len(OPS), num_bins)
    lin = torch.linspace(0.0, 1.0, num_bins)
    if policy == "trivialaugment":
        shear, translate, rotate, enhance, post_bits = 0.99, 1.0, 135.0, 0.99, 6
    else:  # randaugment
        shear, translate, rotate, enhance, post_bits = 0.3, 150.0 / 331.0, 30.0, 0.9, 4
    t[_OP_ID["shear_x"]] = t[_OP_ID["shear_y"]] = lin * shear
    t[_OP_ID["translate_x"]] = t[_OP_ID["translate_y"]] = lin * translate
    t[_OP_ID["rotate"]] = lin * rotate
    for name in ("brightness", "color", "contrast", "sharpness"):
        t[_OP_ID[name]] = lin * enhance
    step = (num_bins - 1) / post_bits if num_bins > 1 else 1.0
    t[_OP_ID["posterize"]] = 8 - (torch.arange(num_bins) / step).round()
    t[_OP_ID["solarize"]] = torch.linspace(1.0, 0.0, num_bins)  # threshold in [0, 1] pixel units
    return t


def _draw_magnitudes(
    table: Tensor, op: Tensor, bins: Tensor, generator: torch.Generator | None
) -> Tensor:
    mag = table.to(op.device)[op, bins]
    signed = torch.zeros(len(OPS), dtype=torch.bool, device=op.device)
    signed[[_OP_ID[s] for s in _SIGNED]] = True
    flip_sign = (_rand(op.shape[0], generator, op.device) < 0.5) & signed[op]
    return torch.where(flip_sign, -mag, mag)


def _check_interp(interpolation: str) -> None:
    if interpolation not in INTERPOLATIONS:
        raise ValueError(f"interpolation must be one of {INTERPOLATIONS}, got {interpolation!r}")


def trivial_augment(
    x: Tensor,
    generator: torch.Generator | None = None,
    num_magnitude_bins: int = 31,
    interpolation: str = "nearest",
) -> Tensor:
    """Batched TrivialAugment-Wide: one op and one magnitude bin drawn per image.

    Accepts ``uint8`` or float images in [0, 1]; returns float32 in [0, 1].

    Example:
        >>> x = torch.randint(0, 256, (16, 3, 8, 8), dtype=torch.uint8)
        >>> y = trivial_augment(x, generator=torch.Generator().manual_seed(0))
        >>> y.shape, y.dtype
        (torch.Size([16, 3, 8, 8]), torch.float32)
    """
    _check_images(x)
    _check_interp(interpolation)
    if not isinstance(num_magnitude_bins, int) or num_magnitude_bins < 2:
        raise ValueError(f"num_magnitude_bins must be an int >= 2, got {num_magnitude_bins!r}")
    x = _owned_float(x)
    n = x.shape[0]
    if n == 0:
        return x
    op = _randint(len(OPS), n, generator, x.device)
    bins = _randint(num_magnitude_bins, n, generator, x.device)
    mag = _draw_magnitudes(
        _magnitude_table("trivialaugment", num_magnitude_bins), op, bins, generator
    )
    return _apply_ops(x, op, mag, interpolation)


def rand_augment(
    x: Tensor,
    num_ops: int = 2,
    magnitude: int = 9,
    generator: torch.Generator | None = None,
    num_magnitude_bins: int = 31,
    interpolation: str = "nearest",
) -> Tensor:
    """Batched RandAugment: ``num_ops`` rounds, each drawing one op per image, fixed magnitude.

    ``magnitude`` is a bin index in ``[0, num_magnitude_bins)`` (torchvision's default 9 of 31).
    Accepts ``uint8`` or float images in [0, 1]; returns float32 in [0, 1].

    Example:
        >>> x = torch.randint(0, 256, (16, 3, 8, 8), dtype=torch.uint8)
        >>> rand_augment(x, num_ops=2, magnitude=9).shape
        torch.Size([16, 3, 8, 8])
    """
    _check_images(x)
    _check_interp(interpolation)
    if not isinstance(num_magnitude_bins, int) or num_magnitude_bins < 2:
        raise ValueError(f"num_magnitude_bins must be an int >= 2, got {num_magnitude_bins!r}")
    if not isinstance(num_ops, int) or num_ops < 0:
        raise ValueError(f"num_ops must be an int >= 0, got {num_ops!r}")
    if not isinstance(magnitude, int) or not 0 <= magnitude < num_magnitude_bins:
        raise ValueError(
            f"magnitude must be an int in [0, {num_magnitude_bins - 1}], got {magnitude!r}"
        )
    x = _owned_float(x)
    n = x.shape[0]
    if n == 0:
        return x
    table = _magnitude_table("randaugment", num_magnitude_bins)
    bins = torch.full((n,), magnitude, dtype=torch.long, device=x.device)
    for _ in range(num_ops):
        op = _randint(len(OPS), n, generator, x.device)
        x = _apply_ops(x, op, _draw_magnitudes(table, op, bins, generator), interpolation)
    return x
