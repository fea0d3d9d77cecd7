"""Synthetic common corruptions with the CIFAR-10-C severity parameters, in batched torch.

:data:`CORRUPTIONS` maps each implemented CIFAR-10-C name to its kernel, :func:`corrupt` applies
one (validated, clamped) and :func:`corruption_accuracy` evaluates a model on all of them. The
parameters and differences to the reference are listed in :mod:`critical.robustness`.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from functools import cache
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from critical.robustness._common import (
    CIFAR10C_CORRUPTIONS,
    SEVERITIES,
    _check_images,
    _check_severities,
    _check_severity,
    _chunks,
    _generator,
    _model_device_dtype,
    _resolve_corruptions,
    _seed_for,
    _summarize,
    eval_mode,
)

# ----------------------------------------------------------------------------------------------
# synthetic corruptions (CIFAR-10-C parameters)
# ----------------------------------------------------------------------------------------------

_Corruption = Callable[[Tensor, int, torch.Generator], Tensor]


def _noise(shape: torch.Size, g: torch.Generator, like: Tensor, kind: str = "normal") -> Tensor:
    t = torch.randn(shape, generator=g) if kind == "normal" else torch.rand(shape, generator=g)
    return t.to(device=like.device, dtype=like.dtype)


def _gaussian_noise(x: Tensor, severity: int, g: torch.Generator) -> Tensor:
    c = (0.04, 0.06, 0.08, 0.09, 0.10)[severity - 1]
    return x + c * _noise(x.shape, g, x)


def _shot_noise(x: Tensor, severity: int, g: torch.Generator) -> Tensor:
    c = (500, 250, 100, 75, 50)[severity - 1]
    rate = x.detach().float().cpu().clamp(0, 1) * c
    return (torch.poisson(rate, generator=g) / c).to(device=x.device, dtype=x.dtype)


def _impulse_noise(x: Tensor, severity: int, g: torch.Generator) -> Tensor:
    c = (0.01, 0.02, 0.03, 0.05, 0.07)[severity - 1]
    flipped = _noise(x.shape, g, x, "uniform") < c
    salted = _noise(x.shape, g, x, "uniform") < 0.5
    out = x.masked_fill(flipped & salted, 1.0)
    return out.masked_fill(flipped & ~salted, 0.0)


def _speckle_noise(x: Tensor, severity: int, g: torch.Generator) -> Tensor:
    c = (0.06, 0.1, 0.12, 0.16, 0.2)[severity - 1]
    return x + x * c * _noise(x.shape, g, x)


def _conv_per_channel(x: Tensor, kernel: Tensor, mode: str) -> Tensor:
    """Correlate every channel of ``x`` with the 2-D ``kernel`` (odd sizes), padding ``mode``."""
    n, c, h, w = x.shape
    kh, kw = kernel.shape
    xp = F.pad(x.reshape(n * c, 1, h, w), (kw // 2, kw // 2, kh // 2, kh // 2), mode=mode)
    out = F.conv2d(xp, kernel.to(device=x.device, dtype=x.dtype)[None, None])
    return out.reshape(n, c, h, w)


@cache
def _gaussian_kernel_1d(sigma: float, truncate: float = 4.0) -> Tensor:
    # scipy.ndimage.gaussian_filter1d: radius = int(truncate * sigma + 0.5)
    radius = int(truncate * sigma + 0.5)
    t = torch.arange(-radius, radius + 1, dtype=torch.float64)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    return k / k.sum()


def _gaussian_blur(x: Tensor, severity: int, g: torch.Generator) -> Tensor:
    sigma = (0.4, 0.6, 0.7, 0.8, 1.0)[severity - 1]
    k = _gaussian_kernel_1d(sigma)
    x = _conv_per_channel(x, k[None, :], mode="replicate")  # skimage/scipy mode="nearest"
    return _conv_per_channel(x, k[:, None], mode="replicate")


@cache
def _disk_kernel(radius: float, alias_blur: float) -> Tensor:
    """``make_cifar_c.disk``: aliased disk on a 17x17 grid, cv2.GaussianBlur 3x3, cropped."""
    r = torch.arange(-8, 9, dtype=torch.float64)
    yy, xx = torch.meshgrid(r, r, indexing="ij")
    disk = ((xx**2 + yy**2) <= radius**2).to(torch.float64)
    disk /= disk.sum()
    g1 = torch.exp(-(torch.arange(-1.0, 2.0, dtype=torch.float64) ** 2) / (2 * alias_blur**2))
    g1 /= g1.sum()
    # the disk (radius <= 8) is zero near the grid's border, so the border mode does not matter
    k = F.conv2d(disk[None, None], torch.outer(g1, g1)[None, None], padding=1)[0, 0]
    half = int((k.abs() > 0).nonzero().sub(8).abs().max())
    return k[8 - half : 9 + half, 8 - half : 9 + half].contiguous()


def _defocus_blur(x: Tensor, severity: int, g: torch.Generator) -> Tensor:
    radius, alias_blur = ((0.3, 0.4), (0.4, 0.5), (0.5, 0.6), (1, 0.2), (1.5, 0.1))[severity - 1]
    return _conv_per_channel(x, _disk_kernel(radius, alias_blur), mode="reflect")  # cv2 default


def _zoom_blur(x: Tensor, severity: int, g: torch.Generator) -> Tensor:
    end = (1.06, 1.11, 1.16, 1.21, 1.26)[severity - 1]
    factors = np.arange(1, end, 0.01)
    h, w = x.shape[-2:]
    out = torch.zeros_like(x)
    for z in factors:
        # make_cifar_c.clipped_zoom on square crops; scipy.ndimage.zoom(order=1) maps corners
        # to corners, i.e. bilinear interpolation with align_corners=True.
        ch, cw = int(np.ceil(h / z)), int(np.ceil(w / z))
        top, left = (h - ch) // 2, (w - cw) // 2
        crop = x[..., top : top + ch, left : left + cw]
        size = (round(ch * z), round(cw * z))
        zoomed = F.interpolate(crop, size=size, mode="bilinear", align_corners=True)
        tt, tl = (size[0] - h) // 2, (size[1] - w) // 2
        out = out + zoomed[..., tt : tt + h, tl : tl + w]
    return (x + out) / (len(factors) + 1)


def _contrast(x: Tensor, severity: int, g: torch.Generator) -> Tensor:
    c = (0.75, 0.5, 0.4, 0.3, 0.15)[severity - 1]
    means = x.mean(dim=(-2, -1), keepdim=True)
    return (x - means) * c + means


def _brightness(x: Tensor, severity: int, g: torch.Generator) -> Tensor:
    # V of HSV += c (clipped). With hue and saturation fixed every channel is proportional to V,
    # so the HSV round trip reduces to a rescaling; black pixels (V = 0, S := 0) become grey V'.
    c = (0.05, 0.1, 0.15, 0.2, 0.3)[severity - 1]
    v = x.amax(dim=1, keepdim=True)
    v_new = (v + c).clamp(0, 1)
    return torch.where(v > 0, x * (v_new / v.clamp(min=1e-12)), v_new.expand_as(x))


def _saturate(x: Tensor, severity: int, g: torch.Generator) -> Tensor:
    # S of HSV -> clip(S * a + b, 0, 1), H and V fixed. For a fixed hue each channel is
    # V * (1 - S * k(H)), hence x' = V - (S'/S) (V - x). Grey pixels (S = 0) have hue 0 (red) in
    # skimage/colorsys, so they become (V, V(1 - S'), V(1 - S')).
    if x.shape[1] != 3:
        raise ValueError(f"saturate needs RGB images (3 channels), got {x.shape[1]}")
    a, b = ((0.3, 0.0), (0.1, 0.0), (1.5, 0.0), (2.0, 0.1), (2.5, 0.2))[severity - 1]
    v = x.amax(dim=1, keepdim=True)
    mn = x.amin(dim=1, keepdim=True)
    s = torch.where(v > 0, (v - mn) / v.clamp(min=1e-12), torch.zeros_like(v))
    s_new = (s * a + b).clamp(0, 1)
    coloured = v - (s_new / s.clamp(min=1e-12)) * (v - x)
    grey = torch.cat([v, v * (1 - s_new), v * (1 - s_new)], dim=1)
    return torch.where(s > 0, coloured, grey)


def _jpeg_compression(x: Tensor, severity: int, g: torch.Generator) -> Tensor:
    # PIL, as the reference (and torchvision.io's JPEG codec is deprecated since 0.29); per image
    from PIL import Image

    quality = (80, 65, 58, 50, 40)[severity - 1]
    if x.shape[1] not in (1, 3):
        raise ValueError(f"jpeg_compression needs 1 or 3 channels, got {x.shape[1]}")
    u8 = (x.detach().float().clamp(0, 1) * 255).round().to(torch.uint8).cpu()
    arrays = u8.permute(0, 2, 3, 1).numpy()
    out = np.empty_like(arrays)
    for i, a in enumerate(arrays):
        buf = io.BytesIO()
        Image.fromarray(a[..., 0] if a.shape[-1] == 1 else a).save(buf, "JPEG", quality=quality)
        buf.seek(0)
        out[i] = np.asarray(Image.open(buf)).reshape(a.shape)
    y = torch.from_numpy(out).permute(0, 3, 1, 2).float() / 255
    return y.to(device=x.device, dtype=x.dtype)


@cache
def _box_resize_matrix(n_in: int, n_out: int) -> Tensor:
    """PIL's ``Image.BOX`` resampling along one axis as an ``(n_out, n_in)`` matrix."""
    scale = n_in / n_out
    filterscale = max(scale, 1.0)
    support = 0.5 * filterscale
    m = torch.zeros(n_out, n_in, dtype=torch.float64)
    for xx in range(n_out):
        center = (xx + 0.5) * scale
        xmin = max(int(center - support + 0.5), 0)
        xmax = min(int(center + support + 0.5), n_in)
        for x in range(xmin, xmax):
            t = (x - center + 0.5) / filterscale
            if -0.5 < t <= 0.5:
                m[xx, x] = 1.0
        total = m[xx].sum()
        if total > 0:
            m[xx] /= total
    return m


def _box_resize(x: Tensor, size: tuple[int, int]) -> Tensor:
    mh = _box_resize_matrix(x.shape[-2], size[0]).to(device=x.device, dtype=x.dtype)
    mw = _box_resize_matrix(x.shape[-1], size[1]).to(device=x.device, dtype=x.dtype)
    return mh @ x @ mw.T


def _pixelate(x: Tensor, severity: int, g: torch.Generator) -> Tensor:
    c = (0.95, 0.9, 0.85, 0.75, 0.65)[severity - 1]
    h, w = x.shape[-2:]
    small = _box_resize(x, (max(int(h * c), 1), max(int(w * c), 1)))
    return _box_resize(small, (h, w))


#: Implemented corruptions, by their CIFAR-10-C name. Each maps ``(x, severity, generator)``
#: to a corrupted batch (use :func:`corrupt`, which validates and clamps).
CORRUPTIONS: dict[str, _Corruption] = {
    "gaussian_noise": _gaussian_noise,
    "shot_noise": _shot_noise,
    "impulse_noise": _impulse_noise,
    "defocus_blur": _defocus_blur,
    "zoom_blur": _zoom_blur,
    "brightness": _brightness,
    "contrast": _contrast,
    "pixelate": _pixelate,
    "jpeg_compression": _jpeg_compression,
    "speckle_noise": _speckle_noise,
    "gaussian_blur": _gaussian_blur,
    "saturate": _saturate,
}

#: The implemented corruptions that belong to the 15 of the CIFAR-10-C benchmark.
DEFAULT_CORRUPTIONS = tuple(c for c in CIFAR10C_CORRUPTIONS if c in CORRUPTIONS)


def corrupt(
    x: Tensor,
    name: str,
    severity: int = 3,
    seed: int | None = 0,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Apply the CIFAR-10-C corruption ``name`` at ``severity`` (1..5) to a batch ``x``.

    Returns a tensor of the same shape, dtype and device, clamped to ``[0, 1]``. Randomness comes
    from ``generator`` if given, else from a fresh CPU generator seeded by ``seed`` (the same
    seed gives the same output), else (``seed=None``) from the global RNG.
    """
    _check_images(x)
    if name not in CORRUPTIONS:
        raise ValueError(f"unknown corruption {name!r}; implemented: {sorted(CORRUPTIONS)}")
    _check_severity(severity)
    if generator is None:
        generator = _generator(seed) if seed is not None else torch.default_generator
    with torch.no_grad():
        out = CORRUPTIONS[name](x.float(), severity, generator)
        return out.clamp_(0, 1).to(x.dtype)


def corruption_accuracy(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    corruptions: str | Sequence[str] | None = "default",
    severities: Sequence[int] = SEVERITIES,
    batch_size: int = 256,
    seed: int = 0,
) -> dict[str, Any]:
    """Accuracy on synthetic CIFAR-10-C-style corruptions of ``x``.

    ``corruptions``: ``"default"`` (:data:`DEFAULT_CORRUPTIONS`), ``"all"`` (every implemented
    one), or names. Each (corruption, severity) pair draws from its own generator seeded by
    ``seed`` and the pair, so results are deterministic for a seed, batch size and image order.

    Returns ``{"source": "synthetic", "mean_acc": ..., "seed": ..., "severities": [...],
    "num_images": n, "per_corruption": {name: {"mean": ..., "by_severity": {"1": ...}}}}``;
    ``mean_acc`` is the mean over corruptions of the mean over severities.
    """
    _check_images(x)
    names = _resolve_corruptions(corruptions, list(CORRUPTIONS))
    sev = _check_severities(severities)
    device, dtype = _model_device_dtype(model)
    per: dict[str, dict[int, float]] = {}
    with eval_mode(model), torch.no_grad():
        for name in names:
            counts = []
            for s in sev:
                gen = _generator(_seed_for(seed, name, s))
                correct = torch.zeros((), dtype=torch.long, device=device)
                for sl in _chunks(len(x), batch_size):
                    xb = corrupt(x[sl].to(device), name, s, generator=gen)
                    yb = y[sl].to(device=device, dtype=torch.long)
                    correct += (model(xb.to(dtype)).argmax(dim=-1) == yb).sum()
                counts.append(correct)
            per[name] = {s: c.item() / len(x) for s, c in zip(sev, counts)}
    return _summarize(per, "synthetic", seed=seed, severities=sev, num_images=len(x))
