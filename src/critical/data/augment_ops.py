"""Kernels of the 14 TrivialAugment-Wide / RandAugment ops, applied per sample to a float batch.

:func:`_apply_ops` groups a batch by op: the geometric ops (shear, translate, rotate) of the
whole group go through one :func:`_affine` ``grid_sample``, the colour ops through
:func:`_color_op` with per-sample magnitudes. The random choice of ops and magnitudes lives in
:mod:`critical.data.augment_policies`.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision.transforms.v2 import functional as TF

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
