"""Datasets available offline: scikit-learn's handwritten digits and generated synthetic images.

:func:`load_digits` is the dataset of the CPU quick start; :func:`make_synthetic` generates
learnable class patterns plus noise, for tests.
"""

from __future__ import annotations

import torch

from critical.data.image_data import ImageData

__all__ = ["load_digits", "make_synthetic"]


# --------------------------------------------------------------------------------------------
# digits and synthetic
# --------------------------------------------------------------------------------------------
def load_digits(image_size: int = 16) -> ImageData:
    """scikit-learn's 1,797 handwritten digits (offline), as 1-channel ``uint8`` images.

    Pixels 0..16 are scaled to 0..255; ``image_size`` (default 16) upsamples bilinearly from
    the original 8 x 8 (``image_size=8`` keeps them).

    Example:
        >>> d = load_digits()
        >>> len(d), tuple(d.images.shape[1:]), d.num_classes
        (1797, (1, 16, 16), 10)
    """
    if not isinstance(image_size, int) or image_size < 1:
        raise ValueError(f"image_size must be an int >= 1, got {image_size!r}")
    from sklearn.datasets import load_digits as _sk_load_digits

    bunch = _sk_load_digits()
    x = torch.as_tensor(bunch.images, dtype=torch.float32).unsqueeze(1) * (255.0 / 16.0)
    if image_size != 8:
        x = torch.nn.functional.interpolate(
            x, size=(image_size, image_size), mode="bilinear", align_corners=False
        )
    images = x.round().clamp(0, 255).to(torch.uint8)
    labels = torch.as_tensor(bunch.target, dtype=torch.int64)
    return ImageData(images, labels, [str(int(c)) for c in bunch.target_names])


def make_synthetic(
    n: int = 512,
    num_classes: int = 4,
    image_size: int = 16,
    channels: int = 3,
    seed: int = 0,
    noise: float = 0.15,
    sample_seed: int = 0,
) -> ImageData:
    """Generated learnable images: a smooth class template plus per-image noise, ``uint8``.

    The class templates depend on ``seed`` only; the noise on ``(seed, sample_seed)``, so a
    test set of the same task is ``make_synthetic(..., seed=seed, sample_seed=1)``.

    Example:
        >>> d = make_synthetic(n=8, num_classes=2, image_size=4, channels=1)
        >>> tuple(d.images.shape), d.labels.tolist()
        ((8, 1, 4, 4), [0, 1, 0, 1, 0, 1, 0, 1])
    """
    for name, v, lo in (
        ("n", n, 0),
        ("num_classes", num_classes, 1),
        ("image_size", image_size, 1),
        ("channels", channels, 1),
    ):
        if not isinstance(v, int) or v < lo:
            raise ValueError(f"{name} must be an int >= {lo}, got {v!r}")
    g = torch.Generator().manual_seed(seed)
    low = max(2, image_size // 4)
    templates = torch.rand(num_classes, channels, low, low, generator=g)
    templates = torch.nn.functional.interpolate(
        templates, size=(image_size, image_size), mode="bilinear", align_corners=False
    )
    labels = torch.arange(n) % num_classes
    g.manual_seed(int(seed) * 1_000_003 + int(sample_seed) + 1)
    x = templates[labels] + noise * torch.randn(n, channels, image_size, image_size, generator=g)
    images = (x.clamp(0, 1) * 255).round().to(torch.uint8)
    return ImageData(images, labels, [f"class{i}" for i in range(num_classes)])
