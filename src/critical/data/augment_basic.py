"""Batched crop, flip and cutout, and the helpers every augmentation shares.

:func:`random_crop`, :func:`random_flip` and :func:`cutout` work on any dtype and do not modify
their input; :func:`to_float` converts to ``float32`` in [0, 1]. The private helpers validate
image batches and draw per-image random numbers on a generator's device (see
:mod:`critical.data.augment`).
"""

from __future__ import annotations

from typing import Any, get_args

import torch
import torch.nn.functional as F
from torch import Tensor

from critical.choices import PaddingMode as PaddingMode

__all__ = ["PADDING_MODES", "cutout", "random_crop", "random_flip", "to_float"]

PADDING_MODES: tuple[str, ...] = get_args(PaddingMode)


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------
def _check_images(x: Tensor) -> None:
    if not isinstance(x, Tensor) or x.ndim != 4:
        raise ValueError(f"expected an image batch of shape (N, C, H, W), got {_shape(x)}")
    if not (x.dtype == torch.uint8 or x.is_floating_point()):
        raise ValueError(f"expected uint8 or floating-point images, got dtype {x.dtype}")


def _shape(x: Any) -> str:
    return str(tuple(x.shape)) if isinstance(x, Tensor) else type(x).__name__


def _rand(n: int, generator: torch.Generator | None, device: torch.device) -> Tensor:
    """``n`` uniform draws in [0, 1) from ``generator`` (on its own device), moved to ``device``."""
    gdev = generator.device if generator is not None else device
    return torch.rand(n, generator=generator, device=gdev).to(device, non_blocking=True)


def _randint(high: int, n: int, generator: torch.Generator | None, device: torch.device) -> Tensor:
    gdev = generator.device if generator is not None else device
    out = torch.randint(0, high, (n,), generator=generator, device=gdev)
    return out.to(device, non_blocking=True)


def to_float(x: Tensor) -> Tensor:
    """Images as ``float32`` in [0, 1]: ``uint8`` is divided by 255, floats are cast.

    Example:
        >>> to_float(torch.tensor([[[[0, 255]]]], dtype=torch.uint8))
        tensor([[[[0., 1.]]]])
    """
    if x.dtype == torch.uint8:
        return x.to(torch.float32).div_(255.0)  # exactly as ToTensor
    return x.to(torch.float32)


def _owned_float(x: Tensor) -> Tensor:
    """``to_float(x)``, copied if that returned ``x`` itself (so it can be modified in place)."""
    y = to_float(x)
    return y.clone() if y.data_ptr() == x.data_ptr() else y


# --------------------------------------------------------------------------------------------
# crop / flip / cutout (any dtype; the input is not modified)
# --------------------------------------------------------------------------------------------
def random_crop(
    x: Tensor,
    padding: int = 4,
    generator: torch.Generator | None = None,
    padding_mode: str = "zeros",
) -> Tensor:
    """Pad each image by ``padding`` pixels and crop a random window of the original size.

    Offsets are drawn per image; the crop is one batched ``gather`` (CPU and GPU). With
    ``padding=0`` it is the identity. ``padding_mode`` is ``"zeros"`` (torchvision's
    ``RandomCrop(padding=p)``) or ``"reflect"``.

    Example:
        >>> x = torch.arange(16, dtype=torch.uint8).view(1, 1, 4, 4)
        >>> bool(torch.equal(random_crop(x, padding=0), x))
        True
        >>> random_crop(x, padding=1).shape
        torch.Size([1, 1, 4, 4])
    """
    _check_images(x)
    if padding_mode not in PADDING_MODES:
        raise ValueError(f"padding_mode must be one of {PADDING_MODES}, got {padding_mode!r}")
    if not isinstance(padding, int) or padding < 0:
        raise ValueError(f"padding must be an int >= 0, got {padding!r}")
    if padding == 0 or x.shape[0] == 0:
        return x.clone()
    n, c, h, w = x.shape
    p = padding
    if padding_mode == "zeros":
        xp = F.pad(x, (p, p, p, p))
    else:
        if p >= min(h, w):
            raise ValueError(f"reflect padding {p} must be smaller than the image size {h}x{w}")
        xp = F.pad(x.float() if x.dtype == torch.uint8 else x, (p, p, p, p), mode="reflect")
        xp = xp.to(x.dtype)
    wp = w + 2 * p
    dy = _randint(2 * p + 1, n, generator, x.device)
    dx = _randint(2 * p + 1, n, generator, x.device)
    window = (torch.arange(h, device=x.device) * wp)[:, None] + torch.arange(w, device=x.device)
    index = (dy * wp + dx)[:, None] + window.reshape(1, -1)  # (n, h*w) flat positions
    out = xp.reshape(n, c, -1).gather(2, index.unsqueeze(1).expand(n, c, h * w))
    return out.view(n, c, h, w)


def random_flip(x: Tensor, p: float = 0.5, generator: torch.Generator | None = None) -> Tensor:
    """Mirror each image left-right with probability ``p`` (drawn per image).

    Example:
        >>> x = torch.arange(6.0).view(1, 1, 2, 3)
        >>> random_flip(x, p=1.0)
        tensor([[[[2., 1., 0.],
                  [5., 4., 3.]]]])
    """
    _check_images(x)
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"p must be in [0, 1], got {p!r}")
    flip = _rand(x.shape[0], generator, x.device) < p
    return torch.where(flip.view(-1, 1, 1, 1), x.flip(-1), x)


def cutout(x: Tensor, size: int = 8, generator: torch.Generator | None = None) -> Tensor:
    """Zero a ``size x size`` square at a uniformly random centre per image (clipped at borders).

    Example:
        >>> x = torch.ones(2, 3, 8, 8)
        >>> y = cutout(x, size=4, generator=torch.Generator().manual_seed(0))
        >>> bool((y == 0).any()), bool(((y == 0).sum((1, 2, 3)) <= 3 * 16).all())
        (True, True)
    """
    _check_images(x)
    if not isinstance(size, int) or size < 0:
        raise ValueError(f"size must be an int >= 0, got {size!r}")
    if size == 0 or x.shape[0] == 0:
        return x.clone()
    n, _, h, w = x.shape
    cy = _randint(h, n, generator, x.device)
    cx = _randint(w, n, generator, x.device)
    y0 = (cy - size // 2).view(n, 1, 1)
    x0 = (cx - size // 2).view(n, 1, 1)
    rows = torch.arange(h, device=x.device).view(1, h, 1)
    cols = torch.arange(w, device=x.device).view(1, 1, w)
    inside = (rows >= y0) & (rows < y0 + size) & (cols >= x0) & (cols < x0 + size)
    return x.masked_fill(inside.unsqueeze(1), 0)
