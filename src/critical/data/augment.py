"""Batched tensor augmentation: the fast path (no per-image PIL work, CPU and GPU).

Images are kept as a ``uint8`` tensor of shape ``(N, C, H, W)`` (on the training device) and a
whole batch is augmented at once with tensor operations, in the spirit of airbench
(KellerJordan/cifar10-airbench):

* :func:`random_crop` — pad by ``padding`` pixels and take a random ``H x W`` window per image
  (one batched ``gather``, no Python loop over images);
* :func:`random_flip` — horizontal flip with probability ``p`` per image;
* :func:`cutout` — zero a ``size x size`` square at a random centre per image (DeVries & Taylor,
  2017; the square may be clipped by the border);
* :func:`trivial_augment` — TrivialAugment-Wide (Müller & Hutter, 2021): one op and one
  magnitude drawn independently per image;
* :func:`rand_augment` — RandAugment (Cubuk et al., 2020): ``num_ops`` ops drawn independently
  per image at a fixed magnitude;
* :class:`BatchAugment` — the composition crop -> flip -> policy -> cutout, configured by plain
  arguments and validated.

Policies follow torchvision's ``TrivialAugmentWide`` / ``RandAugment`` (same 14 ops, the same
magnitude bins, a random sign for signed ops, nearest interpolation and zero fill for geometric
ops). Images are grouped by op: geometric ops (shear, translate, rotate) of the whole group go
through one per-sample ``affine_grid`` / ``grid_sample``; colour ops use per-sample factors by
broadcasting; equalize and autocontrast use torchvision's batched kernels. One deliberate
difference: translation magnitudes are a fraction of the image size (TrivialAugment-Wide: up to
1.0 x the side, which is torchvision's 32 pixels on 32 x 32 images; RandAugment: up to
150/331 x the side, as in torchvision), so the policies behave the same on 16 x 16 images.

Randomness: every function takes an optional :class:`torch.Generator` (on any device: random
numbers are drawn on the generator's device and moved to the data's device). Every image of a
batch gets its own draws, so the k copies of one image (which sit at different positions of a
batch or of an epoch) are augmented independently.

Output: ``float32`` images in ``[0, 1]``. There is **no** mean/std normalization here:
normalization is a layer of the model, so that adversarial attacks work in ``[0, 1]`` pixel
space.

Example:
    >>> import torch
    >>> from critical.data.augment import BatchAugment
    >>> x = torch.randint(0, 256, (8, 3, 32, 32), dtype=torch.uint8)
    >>> aug = BatchAugment(crop_padding=4, flip=True, cutout=8, policy="trivialaugment")
    >>> y = aug(x, generator=torch.Generator().manual_seed(0))
    >>> y.shape, y.dtype, bool(y.min() >= 0), bool(y.max() <= 1)
    (torch.Size([8, 3, 32, 32]), torch.float32, True, True)
"""

from __future__ import annotations

import functools
import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision.transforms.v2 import functional as TF

__all__ = [
    "INTERPOLATIONS",
    "PADDING_MODES",
    "POLICIES",
    "BatchAugment",
    "cutout",
    "rand_augment",
    "random_crop",
    "random_flip",
    "to_float",
    "trivial_augment",
]

POLICIES = ("none", "trivialaugment", "randaugment")
PADDING_MODES = ("zeros", "reflect")
INTERPOLATIONS = ("nearest", "bilinear")

# The 14 ops of TrivialAugment-Wide / RandAugment, in torchvision's order.
OPS = (
    "identity",
    "shear_x",
    "shear_y",
    "translate_x",
    "translate_y",
    "rotate",
    "brightness",
    "color",
    "contrast",
    "sharpness",
    "posterize",
    "solarize",
    "autocontrast",
    "equalize",
)
_GEOMETRIC = ("shear_x", "shear_y", "translate_x", "translate_y", "rotate")
_SIGNED = (
    *_GEOMETRIC,
    "brightness",
    "color",
    "contrast",
    "sharpness",
)
_OP_ID = {name: i for i, name in enumerate(OPS)}


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


def _affine(x: Tensor, op: Tensor, mag: Tensor, mode: str) -> Tensor:
    """Per-sample shear / translate / rotate of ``x`` (float) through one ``grid_sample``.

    ``op`` holds op ids (all geometric), ``mag`` signed magnitudes. Matrices map output to input
    positions in pixel coordinates centred on the image, as torchvision's ``affine``: shears are
    about the top-left corner (torchvision's ``center=[0, 0]``), rotations about the centre.
    """
    n, _, h, w = x.shape
    dev = x.device
    one, zero = torch.ones(n, device=dev), torch.zeros(n, device=dev)
    a, b, tx = one.clone(), zero.clone(), zero.clone()
    c, d, ty = zero.clone(), one.clone(), zero.clone()
    is_sx, is_sy = op == _OP_ID["shear_x"], op == _OP_ID["shear_y"]
    is_tx, is_ty = op == _OP_ID["translate_x"], op == _OP_ID["translate_y"]
    is_rot = op == _OP_ID["rotate"]
    # shear about the top-left corner (-w/2, -h/2): x_in = x + m (y + h/2)
    b = torch.where(is_sx, mag, b)
    tx = torch.where(is_sx, mag * (h / 2.0), tx)
    c = torch.where(is_sy, mag, c)
    ty = torch.where(is_sy, mag * (w / 2.0), ty)
    # translate by a fraction of the size: x_in = x - t
    tx = torch.where(is_tx, -mag * w, tx)
    ty = torch.where(is_ty, -mag * h, ty)
    # rotate about the centre by mag degrees (counter-clockwise on screen)
    rad = mag * (math.pi / 180.0)
    cos, sin = torch.cos(rad), torch.sin(rad)
    a = torch.where(is_rot, cos, a)
    b = torch.where(is_rot, -sin, b)
    c = torch.where(is_rot, sin, c)
    d = torch.where(is_rot, cos, d)
    # pixel coordinates -> normalized coordinates: theta = S^-1 A S with S = diag(w/2, h/2)
    theta = torch.stack(
        [
            torch.stack([a, b * (h / w), tx * (2.0 / w)], dim=1),
            torch.stack([c * (w / h), d, ty * (2.0 / h)], dim=1),
        ],
        dim=1,
    ).to(x.dtype)
    # the sampling grid as one small GEMM (F.affine_grid is ~10x slower on CPU)
    xs = (torch.arange(w, device=dev, dtype=x.dtype) * 2 + 1) / w - 1
    ys = (torch.arange(h, device=dev, dtype=x.dtype) * 2 + 1) / h - 1
    base = torch.stack([xs.repeat(h), ys.repeat_interleave(w), torch.ones_like(xs).repeat(h)], 1)
    grid = torch.einsum("pk,njk->npj", base, theta).reshape(n, h, w, 2)
    return F.grid_sample(x, grid, mode=mode, padding_mode="zeros", align_corners=False)


def _gray(x: Tensor) -> Tensor:
    if x.shape[1] == 3:
        return 0.2989 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3]
    return x.mean(dim=1, keepdim=True)


def _blend(img: Tensor, degenerate: Tensor, factor: Tensor) -> Tensor:
    return (degenerate + factor * (img - degenerate)).clamp_(0.0, 1.0)


def _sharpness(x: Tensor, factor: Tensor) -> Tensor:
    """PIL's sharpness: blend with the 3x3 ``[[1,1,1],[1,5,1],[1,1,1]] / 13`` blur, borders kept."""
    h, w = x.shape[-2:]
    if h <= 2 or w <= 2:
        return x
    # 3x3 box sum by shifted adds (faster than a depthwise conv2d on CPU), plus 4x the centre
    rows = x[..., :-2, :] + x[..., 1:-1, :] + x[..., 2:, :]
    box = rows[..., :-2] + rows[..., 1:-1] + rows[..., 2:]
    centre = x[..., 1:-1, 1:-1]
    blurred = box.add_(centre, alpha=4.0).div_(13.0)
    out = x.clone()
    out[..., 1:-1, 1:-1] = _blend(centre, blurred, factor)
    return out


def _color_op(name: str, x: Tensor, mag: Tensor) -> Tensor:
    """Apply colour op ``name`` to float images ``x`` with per-sample magnitudes ``mag``."""
    m = mag.view(-1, 1, 1, 1).to(x.dtype)
    if name == "brightness":
        return (x * (1.0 + m)).clamp_(0.0, 1.0)
    if name == "color":
        return x if x.shape[1] == 1 else _blend(x, _gray(x), 1.0 + m)
    if name == "contrast":
        return _blend(x, _gray(x).mean(dim=(1, 2, 3), keepdim=True), 1.0 + m)
    if name == "sharpness":
        return _sharpness(x, 1.0 + m)
    if name == "posterize":
        # uint8 semantics (PIL / torchvision): keep the top ``bits`` bits of round(255 x)
        q = torch.pow(2.0, 8.0 - m)
        return (x * 255.0).round_().div_(q).floor_().mul_(q).div_(255.0)
    if name == "solarize":
        return torch.where(x >= m, 1.0 - x, x)
    if name == "autocontrast":
        return TF.autocontrast_image(x)
    if name == "equalize":
        return TF.equalize_image(x)
    raise AssertionError(name)  # pragma: no cover


def _apply_ops(x: Tensor, op: Tensor, mag: Tensor, mode: str) -> Tensor:
    """Apply op ``op[i]`` with signed magnitude ``mag[i]`` to image ``i`` of float batch ``x``.

    Works in place on ``x`` (callers pass a tensor they own) and returns it.
    """
    counts = torch.bincount(op, minlength=len(OPS)).tolist()  # one host sync per call
    if sum(counts[_OP_ID[name]] for name in _GEOMETRIC) > 0:
        geometric = (op >= _OP_ID["shear_x"]) & (op <= _OP_ID["rotate"])
        idx = geometric.nonzero().squeeze(1)
        sub = _affine(x.index_select(0, idx), op[idx], mag[idx], mode)
        x.index_copy_(0, idx, sub)
    for name in OPS:
        if name == "identity" or name in _GEOMETRIC or counts[_OP_ID[name]] == 0:
            continue
        idx = (op == _OP_ID[name]).nonzero().squeeze(1)
        x.index_copy_(0, idx, _color_op(name, x.index_select(0, idx), mag[idx]))
    return x


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


# --------------------------------------------------------------------------------------------
# composition
# --------------------------------------------------------------------------------------------
class BatchAugment:
    """Composable batched augmentation: random crop -> flip -> policy -> cutout, float output.

    Args:
        crop_padding: pixels of padding for the random crop (0 disables the crop).
        padding_mode: ``"zeros"`` (torchvision ``RandomCrop(padding=...)``) or ``"reflect"``.
        flip: random horizontal flip with probability 0.5.
        cutout: side of the cutout square in pixels (0 disables cutout).
        policy: ``"none"``, ``"trivialaugment"`` (TrivialAugment-Wide) or ``"randaugment"``.
        num_ops: RandAugment ops per image.
        magnitude: RandAugment magnitude bin in ``[0, num_magnitude_bins)``.
        num_magnitude_bins: magnitude bins of the policies (torchvision's default 31).
        interpolation: ``"nearest"`` (torchvision's default for the policies) or ``"bilinear"``.

    Calling it on a ``(N, C, H, W)`` ``uint8`` (or float in [0, 1]) batch returns ``float32``
    images in [0, 1]; crop and flip run on ``uint8`` (4x less memory traffic), the policy and
    cutout on float. No normalization (that is the model's job).

    Example:
        >>> aug = BatchAugment(crop_padding=4, flip=True, policy="randaugment")
        >>> print(repr(aug)[:75])
        BatchAugment(crop_padding=4, padding_mode='zeros', flip=True, cutout=0, pol
        >>> x = torch.randint(0, 256, (4, 3, 32, 32), dtype=torch.uint8)
        >>> aug(x, generator=torch.Generator().manual_seed(0)).dtype
        torch.float32
        >>> BatchAugment(policy="autoaugment")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: policy must be one of ('none', 'trivialaugment', 'randaugment'), got ...
    """

    def __init__(
        self,
        crop_padding: int = 4,
        padding_mode: str = "zeros",
        flip: bool = True,
        cutout: int = 0,
        policy: str = "none",
        num_ops: int = 2,
        magnitude: int = 9,
        num_magnitude_bins: int = 31,
        interpolation: str = "nearest",
    ) -> None:
        if not isinstance(crop_padding, int) or isinstance(crop_padding, bool) or crop_padding < 0:
            raise ValueError(f"crop_padding must be an int >= 0, got {crop_padding!r}")
        if padding_mode not in PADDING_MODES:
            raise ValueError(f"padding_mode must be one of {PADDING_MODES}, got {padding_mode!r}")
        if not isinstance(flip, bool):
            raise ValueError(f"flip must be a bool (True or False), got {flip!r}")
        if not isinstance(cutout, int) or isinstance(cutout, bool) or cutout < 0:
            raise ValueError(f"cutout must be an int >= 0, got {cutout!r}")
        if policy not in POLICIES:
            raise ValueError(f"policy must be one of {POLICIES}, got {policy!r}")
        if not isinstance(num_magnitude_bins, int) or num_magnitude_bins < 2:
            raise ValueError(f"num_magnitude_bins must be an int >= 2, got {num_magnitude_bins!r}")
        if not isinstance(num_ops, int) or isinstance(num_ops, bool) or num_ops < 0:
            raise ValueError(f"num_ops must be an int >= 0, got {num_ops!r}")
        if not isinstance(magnitude, int) or not 0 <= magnitude < num_magnitude_bins:
            raise ValueError(
                f"magnitude must be an int in [0, {num_magnitude_bins - 1}], got {magnitude!r}"
            )
        _check_interp(interpolation)
        self.crop_padding = crop_padding
        self.padding_mode = padding_mode
        self.flip = flip
        self.cutout = cutout
        self.policy = policy
        self.num_ops = num_ops
        self.magnitude = magnitude
        self.num_magnitude_bins = num_magnitude_bins
        self.interpolation = interpolation

    def config(self) -> dict[str, Any]:
        """The constructor arguments, as a dict (round-trips through ``BatchAugment(**cfg)``)."""
        return {
            "crop_padding": self.crop_padding,
            "padding_mode": self.padding_mode,
            "flip": self.flip,
            "cutout": self.cutout,
            "policy": self.policy,
            "num_ops": self.num_ops,
            "magnitude": self.magnitude,
            "num_magnitude_bins": self.num_magnitude_bins,
            "interpolation": self.interpolation,
        }

    @property
    def is_identity(self) -> bool:
        """True when the configuration changes nothing (only converts to float)."""
        return (
            self.crop_padding == 0 and not self.flip and self.cutout == 0 and self.policy == "none"
        )

    def __call__(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        _check_images(x)
        if self.crop_padding > 0:
            x = random_crop(x, self.crop_padding, generator, self.padding_mode)
        if self.flip:
            x = random_flip(x, 0.5, generator)
        x = to_float(x)
        if self.policy == "trivialaugment":
            x = trivial_augment(x, generator, self.num_magnitude_bins, self.interpolation)
        elif self.policy == "randaugment":
            x = rand_augment(
                x,
                self.num_ops,
                self.magnitude,
                generator,
                self.num_magnitude_bins,
                self.interpolation,
            )
        if self.cutout > 0:
            x = cutout(x, self.cutout, generator)
        return x

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.config().items())
        return f"{type(self).__name__}({args})"
