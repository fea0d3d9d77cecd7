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

Layout: :mod:`critical.data.augment_basic` holds crop, flip, cutout, :func:`to_float` and the
shared validation and per-image random draws; :mod:`critical.data.augment_ops` the kernels of
the 14 policy ops; :mod:`critical.data.augment_policies` the two policies and their magnitude
tables; this module the composition :class:`BatchAugment` and the re-exports.
"""

from __future__ import annotations

from typing import Any, get_args

import torch
from torch import Tensor

from critical.choices import AugmentPolicy, PaddingMode
from critical.data.augment_basic import (
    PADDING_MODES,
    _check_images,
    cutout,
    random_crop,
    random_flip,
    to_float,
)

# The op kernels, re-exported for callers (and tests) that reach them through this module.
from critical.data.augment_ops import _OP_ID, OPS, _affine, _color_op  # noqa: F401
from critical.data.augment_policies import (
    INTERPOLATIONS,
    _check_interp,
    rand_augment,
    trivial_augment,
)
from critical.validation import check_bool, check_choice, check_int

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

POLICIES: tuple[str, ...] = get_args(AugmentPolicy)


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
        ValueError: `policy` must be one of ['none', 'trivialaugment', 'randaugment'], got ...
    """

    def __init__(
        self,
        crop_padding: int = 4,
        padding_mode: PaddingMode = "zeros",
        flip: bool = True,
        cutout: int = 0,
        policy: AugmentPolicy = "none",
        num_ops: int = 2,
        magnitude: int = 9,
        num_magnitude_bins: int = 31,
        interpolation: str = "nearest",
    ) -> None:
        check_int("crop_padding", crop_padding, 0)
        check_choice("padding_mode", padding_mode, PADDING_MODES)
        check_bool("flip", flip)
        check_int("cutout", cutout, 0)
        check_choice("policy", policy, POLICIES)
        check_int("num_magnitude_bins", num_magnitude_bins, 2)
        check_int("num_ops", num_ops, 0)
        check_int("magnitude", magnitude, 0)
        if magnitude >= num_magnitude_bins:
            raise ValueError(
                f"`magnitude` must be an integer in [0, {num_magnitude_bins - 1}], got {magnitude!r}"
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
