"""Robustness of a trained image classifier: adversarial attacks and common corruptions.

Pure functions on tensors (no Lightning): the Lightning side is
:class:`critical.callbacks.robustness.RobustnessEvaluator`.

Conventions
-----------
Images are float tensors ``(N, C, H, W)`` in ``[0, 1]``; input normalization is a layer of the
model. Attacks and corruptions therefore work in pixel space and clamp to ``[0, 1]``. ``model``
is any callable ``nn.Module`` that maps such a batch to class logits.

Every evaluation runs the model in eval mode (each submodule's own ``training`` flag is restored
afterwards), never touches the ``.grad`` of the model's parameters (input gradients come from
:func:`torch.autograd.grad` w.r.t. the input only), works inside ``torch.inference_mode`` /
``torch.no_grad`` contexts (it re-enables autograd locally), and draws its randomness from its
own seeded :class:`torch.Generator` on the CPU, so results do not depend on the global RNG and
are the same on every device for a given seed, batch size and image order.

Adversarial attacks (L-infinity, untargeted, cross-entropy loss)
----------------------------------------------------------------
* :func:`fgsm` (Goodfellow et al., 2015): ``x + eps * sign(grad)``.
* :func:`pgd` (Madry et al., 2018): optional uniform random start in the eps-ball, then ``steps``
  signed-gradient steps of size ``step_size``, each projected onto the eps-ball and ``[0, 1]``;
  the final iterate is evaluated. Defaults: ``eps=8/255``, 10 steps of ``2/255``, random start.

Common corruptions (Hendrycks & Dietterich, ICLR 2019)
-----------------------------------------------------
:data:`CORRUPTIONS` re-implements, in batched torch, a subset of the CIFAR-10-C corruptions with
the *CIFAR-10-C* severity parameters of ``make_cifar_c.py`` (hendrycks/robustness), under the
names CIFAR-10-C uses:

===================  ==========================================================================
name                 severity parameters (1..5) and method
===================  ==========================================================================
gaussian_noise       std 0.04, 0.06, 0.08, 0.09, 0.10; ``x + N(0, std)``
shot_noise           rate 500, 250, 100, 75, 50; ``Poisson(x * rate) / rate``
impulse_noise        amount 0.01, 0.02, 0.03, 0.05, 0.07; salt & pepper per element (50/50)
defocus_blur         disk (radius, alias sigma) (0.3, 0.4), (0.4, 0.5), (0.5, 0.6), (1, 0.2),
                     (1.5, 0.1); anti-aliased disk kernel, reflect-101 border (as cv2)
zoom_blur            zoom factors ``np.arange(1, z, 0.01)`` for z = 1.06, 1.11, 1.16, 1.21, 1.26;
                     mean of the image and its bilinear centre zooms (as ``scipy.ndimage.zoom``)
brightness           +0.05, +0.1, +0.15, +0.2, +0.3 on V of HSV
contrast             factor 0.75, 0.5, 0.4, 0.3, 0.15 around the per-image channel means
pixelate             scale 0.95, 0.9, 0.85, 0.75, 0.65; PIL ``BOX`` down- and up-sampling
jpeg_compression     quality 80, 65, 58, 50, 40 (PIL, as the reference)
speckle_noise*       std 0.06, 0.1, 0.12, 0.16, 0.2; ``x + x * N(0, std)``
gaussian_blur*       sigma 0.4, 0.6, 0.7, 0.8, 1.0; truncate 4, nearest border (as skimage)
saturate*            (scale, shift) (0.3, 0), (0.1, 0), (1.5, 0), (2, 0.1), (2.5, 0.2) on S of HSV
===================  ==========================================================================

``*``: one of CIFAR-10-C's four "extra" corruptions; the other nine are among the 15 of the
benchmark. Left out: glass_blur (a sequential pixel-swap loop), motion_blur and snow (ImageMagick
motion blur), frost (needs the frost photographs), fog (plasma fractal), spatter and
elastic_transform (OpenCV-specific pipelines). The mean over :data:`DEFAULT_CORRUPTIONS` (the
nine benchmark ones) is therefore *not* the CIFAR-10-C mean corruption accuracy; results are
labelled ``"synthetic"``. Differences to the reference: the reference quantizes every image to
uint8 (and PIL rounds between its two resampling passes); ours stay float (only JPEG goes through
uint8), and the random draws differ (torch, not numpy), so per-image values differ while the
distributions match.

For the official data, :func:`load_cifar10c` / :func:`cifar10c_accuracy` read the CIFAR-10-C
``<name>.npy`` files (``(50000, 32, 32, 3)`` uint8: 5 severities x 10,000 test images, severity 1
first) and ``labels.npy``.

Example:
    >>> import torch
    >>> from critical.robustness import corrupt, evaluate_robustness
    >>> x = torch.rand(8, 3, 32, 32)
    >>> corrupt(x, "gaussian_noise", severity=3, seed=0).shape
    torch.Size([8, 3, 32, 32])
    >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 32 * 32, 10))
    >>> y = torch.randint(0, 10, (8,))
    >>> r = evaluate_robustness(model, x, y, corruptions=["contrast"], severities=[1])
    >>> sorted(k for k in r if k.endswith("_acc"))
    ['clean_acc', 'corruption_acc', 'fgsm_acc', 'pgd_acc']
"""

from __future__ import annotations

import io
import math
import os
import zlib
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "ATTACKS",
    "CIFAR10C_CORRUPTIONS",
    "CIFAR10C_EXTRA_CORRUPTIONS",
    "CORRUPTIONS",
    "DEFAULT_CORRUPTIONS",
    "SEVERITIES",
    "accuracy",
    "adversarial_accuracy",
    "cifar10c_accuracy",
    "corrupt",
    "corruption_accuracy",
    "eval_mode",
    "evaluate_robustness",
    "fgsm",
    "load_cifar10c",
    "pgd",
]

ATTACKS = ("fgsm", "pgd")
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
# adversarial attacks
# ----------------------------------------------------------------------------------------------


def _input_grad(model: nn.Module, x: Tensor, y: Tensor, dtype: torch.dtype) -> Tensor:
    x = x.detach().requires_grad_(True)
    logits = model(x.to(dtype))
    loss = F.cross_entropy(logits.float(), y, reduction="sum")
    (grad,) = torch.autograd.grad(loss, x)
    return grad


def _check_attack_args(eps: float, steps: int = 1, step_size: float = 0.0) -> None:
    if not (isinstance(eps, (int, float)) and math.isfinite(eps) and eps >= 0):
        raise ValueError(f"`eps` must be a finite number >= 0, got {eps!r}")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"`steps` must be an integer >= 1, got {steps!r}")
    if not (isinstance(step_size, (int, float)) and math.isfinite(step_size) and step_size >= 0):
        raise ValueError(f"`step_size` must be a finite number >= 0, got {step_size!r}")


def fgsm(model: nn.Module, x: Tensor, y: Tensor, eps: float = 8 / 255) -> Tensor:
    """Fast gradient sign method, L-infinity: ``clamp(x + eps * sign(grad_x loss), 0, 1)``.

    ``model`` is used as it is (call it inside :func:`eval_mode` for BatchNorm/Dropout models);
    parameter gradients are left untouched. Returns a detached tensor like ``x``.
    """
    _check_images(x)
    _check_attack_args(eps)
    _, dtype = _model_device_dtype(model)
    with torch.inference_mode(False), torch.enable_grad():
        x = x.clone()
        grad = _input_grad(model, x, y.clone(), dtype)
        return (x + eps * grad.sign()).clamp_(0, 1).detach()


def pgd(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    eps: float = 8 / 255,
    steps: int = 10,
    step_size: float = 2 / 255,
    random_start: bool = True,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Projected gradient descent (Madry et al.), L-infinity, untargeted; returns the last iterate.

    With ``random_start`` the attack starts from ``x + U(-eps, eps)`` (drawn on the CPU from
    ``generator``, or the global RNG if ``None``). Every step is projected onto the eps-ball
    around ``x`` and onto ``[0, 1]``. With ``eps=0`` the result is ``x`` exactly.
    """
    _check_images(x)
    _check_attack_args(eps, steps, step_size)
    _, dtype = _model_device_dtype(model)
    with torch.inference_mode(False), torch.enable_grad():
        x = x.clone()
        y = y.clone()
        lo, hi = (x - eps).clamp(min=0), (x + eps).clamp(max=1)
        x_adv = x.clone()
        if random_start and eps > 0:
            noise = torch.rand(x.shape, generator=generator, dtype=torch.float32)
            x_adv = x_adv + ((2 * noise - 1) * eps).to(device=x.device, dtype=x.dtype)
            x_adv = torch.minimum(torch.maximum(x_adv, lo), hi)
        for _ in range(steps):
            grad = _input_grad(model, x_adv, y, dtype)
            x_adv = x_adv.detach() + step_size * grad.sign()
            x_adv = torch.minimum(torch.maximum(x_adv, lo), hi)
        return x_adv.detach()


def accuracy(model: nn.Module, x: Tensor, y: Tensor, batch_size: int = 256) -> float:
    """Top-1 accuracy of ``model`` (in eval mode) on images ``x`` (any device) and labels ``y``."""
    _check_images(x)
    return adversarial_accuracy(model, x, y, attack=None, batch_size=batch_size)


def adversarial_accuracy(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    attack: str | None = "pgd",
    eps: float = 8 / 255,
    steps: int = 10,
    step_size: float = 2 / 255,
    random_start: bool = True,
    batch_size: int = 256,
    seed: int = 0,
) -> float:
    """Accuracy of ``model`` under ``attack`` (``"fgsm"``, ``"pgd"``, or ``None`` for clean).

    Batches of ``x`` are moved to the model's device one at a time; the model runs in eval mode
    and its training flags are restored afterwards. Correct predictions are accumulated on the
    device and read once at the end.
    """
    _check_images(x)
    if attack is not None and attack not in ATTACKS:
        raise ValueError(f"`attack` must be one of {[*ATTACKS, None]}, got {attack!r}")
    if len(x) != len(y):
        raise ValueError(f"`x` and `y` differ in length: {len(x)} vs {len(y)}")
    if len(x) == 0:
        raise ValueError("no images to evaluate")
    device, dtype = _model_device_dtype(model)
    gen = _generator(_seed_for(seed, "pgd")) if attack == "pgd" else None
    with eval_mode(model), torch.inference_mode(False):
        correct = torch.zeros((), dtype=torch.long, device=device)
        for s in _chunks(len(x), batch_size):
            xb = x[s].to(device)
            yb = y[s].to(device=device, dtype=torch.long)
            if attack == "fgsm":
                xb = fgsm(model, xb, yb, eps=eps)
            elif attack == "pgd":
                xb = pgd(model, xb, yb, eps, steps, step_size, random_start, generator=gen)
            with torch.no_grad():
                correct += (model(xb.to(dtype)).argmax(dim=-1) == yb).sum()
    return correct.item() / len(x)


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
    per_corruption = {
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


# ----------------------------------------------------------------------------------------------
# official CIFAR-10-C files
# ----------------------------------------------------------------------------------------------


def _cifar10c_names(root: Path) -> list[str]:
    found = sorted(p.stem for p in root.glob("*.npy") if p.stem != "labels")
    order = list(CIFAR10C_CORRUPTIONS) + list(CIFAR10C_EXTRA_CORRUPTIONS)
    return sorted(found, key=lambda n: (order.index(n) if n in order else len(order), n))


def load_cifar10c(
    root: str | os.PathLike,
    name: str,
    severity: int,
    num_images: int | None = None,
) -> tuple[Tensor, Tensor]:
    """Images and labels of one CIFAR-10-C corruption at one severity.

    Reads ``<root>/<name>.npy`` (``(5 * n, H, W, C)`` uint8, severity 1 first; ``n = 10000`` for
    the official files) and ``<root>/labels.npy`` through memory maps, so only the requested
    block (its first ``num_images`` images) is read. Returns float images ``(N, C, H, W)`` in
    ``[0, 1]`` and int64 labels.
    """
    root = Path(root)
    _check_severity(severity)
    path = root / f"{name}.npy"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found; corruptions in {root}: {_cifar10c_names(root)}")
    labels_path = root / "labels.npy"
    if not labels_path.is_file():
        raise FileNotFoundError(f"{labels_path} not found (CIFAR-10-C ships labels.npy)")
    data = np.load(path, mmap_mode="r")
    labels = np.load(labels_path, mmap_mode="r")
    if data.ndim != 4 or data.dtype != np.uint8 or data.shape[0] % 5 != 0:
        raise ValueError(
            f"{path} must hold uint8 images (5 * n, H, W, C), got {data.dtype} {data.shape}"
        )
    if labels.shape[0] != data.shape[0]:
        raise ValueError(f"{labels_path} has {labels.shape[0]} labels for {data.shape[0]} images")
    per = data.shape[0] // 5
    n = per if num_images is None else min(int(num_images), per)
    start = (severity - 1) * per
    x = torch.from_numpy(np.array(data[start : start + n])).permute(0, 3, 1, 2)  # a copy
    y = torch.from_numpy(np.asarray(labels[start : start + n]).astype(np.int64))
    return x.float().div_(255), y


def cifar10c_accuracy(
    model: nn.Module,
    root: str | os.PathLike,
    corruptions: str | Sequence[str] | None = "default",
    severities: Sequence[int] = SEVERITIES,
    num_images: int | None = None,
    batch_size: int = 256,
) -> dict[str, Any]:
    """Accuracy on the official CIFAR-10-C files in ``root`` (see :func:`load_cifar10c`).

    ``corruptions``: ``"default"`` (those of the 15 benchmark corruptions found in ``root``),
    ``"all"`` (every ``<name>.npy`` found), or names. ``num_images`` caps the images per
    (corruption, severity), taking the first ones. Same return format as
    :func:`corruption_accuracy`, with ``"source": "cifar10c"``.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"CIFAR-10-C directory {root} does not exist")
    names = _resolve_corruptions(corruptions, _cifar10c_names(root))
    if not names:
        raise FileNotFoundError(f"no CIFAR-10-C corruption files (<name>.npy) found in {root}")
    sev = _check_severities(severities)
    device, dtype = _model_device_dtype(model)
    per: dict[str, dict[int, float]] = {}
    n_used = 0
    with eval_mode(model), torch.no_grad():
        for name in names:
            counts = []
            for s in sev:
                x, y = load_cifar10c(root, name, s, num_images)
                n_used = len(x)
                correct = torch.zeros((), dtype=torch.long, device=device)
                for sl in _chunks(len(x), batch_size):
                    xb = x[sl].to(device=device, dtype=dtype)
                    correct += (model(xb).argmax(dim=-1) == y[sl].to(device)).sum()
                counts.append((correct, len(x)))
            per[name] = {s: c.item() / max(n, 1) for s, (c, n) in zip(sev, counts)}
    return _summarize(per, "cifar10c", root=str(root), severities=sev, num_images=n_used)


# ----------------------------------------------------------------------------------------------
# everything at once
# ----------------------------------------------------------------------------------------------


def evaluate_robustness(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    *,
    attacks: Sequence[str] = ATTACKS,
    eps: float = 8 / 255,
    pgd_steps: int = 10,
    pgd_step_size: float = 2 / 255,
    random_start: bool = True,
    corruptions: str | Sequence[str] | None = "default",
    severities: Sequence[int] = SEVERITIES,
    cifar10c_dir: str | os.PathLike | None = None,
    cifar10c_num_images: int | None = None,
    batch_size: int = 256,
    seed: int = 0,
) -> dict[str, Any]:
    """Clean, adversarial and corruption accuracy of ``model`` on ``x``, ``y``.

    Returns a JSON-serialisable dict::

        {"num_images": n, "clean_acc": a, "fgsm_acc": a, "pgd_acc": a,
         "attack": {"norm": "Linf", "eps": ..., "pgd_steps": ..., "pgd_step_size": ...,
                    "random_start": ..., "seed": ...},
         "corruption_acc": a, "corruption": {... see corruption_accuracy ...}}

    Attack keys appear for the requested ``attacks``; corruption keys unless
    ``corruptions=None``. With ``cifar10c_dir`` the corruption accuracy comes from the official
    files (``cifar10c_num_images`` per corruption and severity, default all) instead of
    synthetic corruptions of ``x``.
    """
    attacks = [attacks] if isinstance(attacks, str) else list(attacks)
    bad = [a for a in attacks if a not in ATTACKS]
    if bad:
        raise ValueError(f"unknown attack(s) {bad}; valid: {list(ATTACKS)}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"`batch_size` must be an integer >= 1, got {batch_size!r}")
    result: dict[str, Any] = {"num_images": len(x)}
    result["clean_acc"] = accuracy(model, x, y, batch_size)
    for a in attacks:
        result[f"{a}_acc"] = adversarial_accuracy(
            model, x, y, a, eps, pgd_steps, pgd_step_size, random_start, batch_size, seed
        )
    if attacks:
        result["attack"] = {
            "norm": "Linf",
            "eps": eps,
            "pgd_steps": pgd_steps,
            "pgd_step_size": pgd_step_size,
            "random_start": random_start,
            "seed": seed,
        }
    if corruptions is not None:
        if cifar10c_dir is not None:
            c = cifar10c_accuracy(
                model, cifar10c_dir, corruptions, severities, cifar10c_num_images, batch_size
            )
        else:
            c = corruption_accuracy(model, x, y, corruptions, severities, batch_size, seed)
        result["corruption_acc"] = c["mean_acc"]
        result["corruption"] = c
    return result
