"""Batched time-series augmentation: pure tensor functions on ``(B, C, T)`` batches, any device.

The five transforms most used for time-series classification, as surveyed by Iwana & Uchida
(2021, "An empirical survey of data augmentation for time series classification with neural
networks", PLOS ONE) and introduced for wearable-sensor data by Um et al. (2017, "Data
augmentation of wearable sensor data for Parkinson's disease monitoring using convolutional
neural networks"), with their default strengths (for z-normalised series):

* :func:`jitter` — add Gaussian noise, ``sigma=0.03`` (Um et al.);
* :func:`scaling` — multiply each channel of each series by a factor drawn from
  ``N(1, sigma^2)``, ``sigma=0.1`` (Um et al.);
* :func:`magnitude_warp` — multiply each channel by a smooth random curve through ``knots + 2``
  evenly spaced values drawn from ``N(1, sigma^2)``, ``sigma=0.2``, ``knots=4`` (Um et al.);
* :func:`time_warp` — resample each series along a smooth random monotone time warp: the
  cumulative sum of a smooth random speed curve as for the magnitude warp, ``sigma=0.2``,
  ``knots=4``, one warp per series shared by its channels (so sensor channels stay in sync);
* :func:`window_slice` — crop a random window of ``ratio * T`` steps and stretch it back to
  ``T`` steps by linear interpolation, ``ratio=0.9`` (Le Guennec et al. 2016);
* :class:`SeriesAugment` — the composition window slice -> time warp -> magnitude warp ->
  scaling -> jitter, each applied to each series with probability ``p``.

Implementation notes: every series of a batch gets its own random draws (so the k copies of one
series under multiplicity k are augmented independently), all in a handful of batched tensor
ops (no Python loop over series). The smooth curves use PyTorch's bicubic interpolation (Keys'
cubic convolution, ``align_corners=True``) through the knots instead of the cubic spline of the
papers' NumPy code: both are smooth cubic interpolants of the same random knots. Resampling
(time warp, window slice) is linear interpolation between neighbouring steps. Random numbers are
drawn on the ``generator``'s device and moved to the data's device, as in
:mod:`critical.data.augment`. Inputs are never modified.

Example:
    >>> import torch
    >>> from critical.data.augment_ts import SeriesAugment, jitter
    >>> x = torch.randn(8, 6, 100)
    >>> g = torch.Generator().manual_seed(0)
    >>> tuple(jitter(x, sigma=0.03, generator=g).shape)
    (8, 6, 100)
    >>> aug = SeriesAugment(jitter=0.03, scaling=0.1, time_warp=0.2, window_slice=0.1)
    >>> y = aug(x, generator=g)
    >>> y.shape == x.shape, y.dtype
    (True, torch.float32)
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "SeriesAugment",
    "jitter",
    "magnitude_warp",
    "scaling",
    "smooth_curves",
    "time_warp",
    "window_slice",
]


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------
def _check_series(x: object) -> Tensor:
    if not isinstance(x, Tensor) or x.ndim != 3:
        shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise ValueError(f"expected a batch of series of shape (B, C, T), got {shape}")
    if not x.is_floating_point():
        raise ValueError(f"expected floating-point series, got dtype {x.dtype}")
    return x


def _check_sigma(name: str, sigma: float) -> float:
    if isinstance(sigma, bool) or not isinstance(sigma, (int, float)) or not math.isfinite(sigma):
        raise ValueError(f"{name} must be a finite number >= 0, got {sigma!r}")
    if sigma < 0:
        raise ValueError(f"{name} must be >= 0, got {sigma!r}")
    return float(sigma)


def _check_knots(knots: int) -> int:
    if isinstance(knots, bool) or not isinstance(knots, int) or knots < 1:
        raise ValueError(f"knots must be an int >= 1, got {knots!r}")
    return knots


def _randn(shape: tuple[int, ...], generator: torch.Generator | None, like: Tensor) -> Tensor:
    """Standard normal draws on the generator's device, moved to ``like``'s device and dtype."""
    gdev = generator.device if generator is not None else like.device
    out = torch.randn(shape, generator=generator, device=gdev)
    return out.to(like.device, like.dtype, non_blocking=True)


def _rand(shape: tuple[int, ...], generator: torch.Generator | None, like: Tensor) -> Tensor:
    """Uniform [0, 1) draws on the generator's device, moved to ``like``'s device and dtype."""
    gdev = generator.device if generator is not None else like.device
    out = torch.rand(shape, generator=generator, device=gdev)
    return out.to(like.device, like.dtype, non_blocking=True)


def smooth_curves(
    n: int,
    length: int,
    sigma: float,
    knots: int = 4,
    generator: torch.Generator | None = None,
    like: Tensor | None = None,
) -> Tensor:
    """``n`` smooth random curves of ``length`` steps around 1, shape ``(n, length)``.

    Each curve interpolates ``knots + 2`` evenly spaced values drawn from ``N(1, sigma^2)``
    (the first and last at the ends) with bicubic (Keys) interpolation.

    Example:
        >>> c = smooth_curves(3, 50, sigma=0.0)
        >>> tuple(c.shape), bool(torch.allclose(c, torch.ones(3, 50)))
        ((3, 50), True)
    """
    like = like if like is not None else torch.empty(0)
    values = 1.0 + sigma * _randn((n, 1, 1, knots + 2), generator, like)
    curves = F.interpolate(values, size=(1, length), mode="bicubic", align_corners=True)
    return curves.view(n, length)


def _resample(x: Tensor, positions: Tensor) -> Tensor:
    """``x`` (B, C, T) read at fractional time ``positions`` (B, T') in [0, T - 1], linearly."""
    t = x.shape[-1]
    pos = positions.clamp(0, t - 1)
    lo = pos.floor().long().clamp(max=t - 1)
    hi = (lo + 1).clamp(max=t - 1)
    w = (pos - lo.to(pos.dtype)).unsqueeze(1)
    c = x.shape[1]
    idx_lo = lo.unsqueeze(1).expand(-1, c, -1)
    idx_hi = hi.unsqueeze(1).expand(-1, c, -1)
    return torch.lerp(x.gather(-1, idx_lo), x.gather(-1, idx_hi), w)


# --------------------------------------------------------------------------------------------
# the transforms
# --------------------------------------------------------------------------------------------
def jitter(x: Tensor, sigma: float = 0.03, generator: torch.Generator | None = None) -> Tensor:
    """Add ``N(0, sigma^2)`` noise to every value.

    Example:
        >>> x = torch.zeros(2, 1, 4)
        >>> bool(torch.equal(jitter(x, sigma=0.0), x))
        True
    """
    _check_series(x)
    sigma = _check_sigma("sigma", sigma)
    return x + sigma * _randn(tuple(x.shape), generator, x)


def scaling(x: Tensor, sigma: float = 0.1, generator: torch.Generator | None = None) -> Tensor:
    """Multiply each channel of each series by its own factor drawn from ``N(1, sigma^2)``.

    Example:
        >>> x = torch.ones(2, 3, 5)
        >>> y = scaling(x, sigma=0.1, generator=torch.Generator().manual_seed(0))
        >>> bool((y.std(dim=-1) == 0).all())  # one factor per channel: constant over time
        True
    """
    _check_series(x)
    sigma = _check_sigma("sigma", sigma)
    b, c, _ = x.shape
    return x * (1.0 + sigma * _randn((b, c, 1), generator, x))


def magnitude_warp(
    x: Tensor, sigma: float = 0.2, knots: int = 4, generator: torch.Generator | None = None
) -> Tensor:
    """Multiply each channel of each series by its own smooth random curve (:func:`smooth_curves`).

    Example:
        >>> x = torch.ones(2, 3, 40)
        >>> y = magnitude_warp(x, generator=torch.Generator().manual_seed(0))
        >>> tuple(y.shape), bool((y != 1).any())
        ((2, 3, 40), True)
    """
    _check_series(x)
    sigma = _check_sigma("sigma", sigma)
    _check_knots(knots)
    b, c, t = x.shape
    return x * smooth_curves(b * c, t, sigma, knots, generator, x).view(b, c, t)


def time_warp(
    x: Tensor, sigma: float = 0.2, knots: int = 4, generator: torch.Generator | None = None
) -> Tensor:
    """Resample each series along a smooth random monotone warp of time (ends kept in place).

    The warp is the normalised cumulative sum of a smooth random speed curve
    (:func:`smooth_curves`, clamped to at least 0.01 so that time never runs backwards); all
    channels of a series share it. ``sigma=0`` is the identity.

    Example:
        >>> x = torch.arange(10.0).view(1, 1, 10)
        >>> bool(torch.allclose(time_warp(x, sigma=0.0), x))
        True
        >>> y = time_warp(x, sigma=0.3, generator=torch.Generator().manual_seed(1))
        >>> float(y[0, 0, 0]), float(y[0, 0, -1]), bool((y.diff() >= 0).all())
        (0.0, 9.0, True)
    """
    _check_series(x)
    sigma = _check_sigma("sigma", sigma)
    _check_knots(knots)
    b, _, t = x.shape
    if t < 2:
        return x.clone()
    speed = smooth_curves(b, t - 1, sigma, knots, generator, x).clamp_min(0.01)
    cum = torch.cat([speed.new_zeros(b, 1), speed.cumsum(-1)], dim=-1)
    positions = cum / cum[:, -1:] * (t - 1)
    return _resample(x, positions)


def window_slice(x: Tensor, ratio: float = 0.9, generator: torch.Generator | None = None) -> Tensor:
    """Crop a random window of ``ratio`` of each series and stretch it back to ``T`` steps.

    The window spans ``ratio * (T - 1)`` time units (about ``ratio * T`` steps) at a uniformly
    random start; ``ratio=1`` is the identity.

    Example:
        >>> x = torch.arange(10.0).view(1, 1, 10)
        >>> y = window_slice(x, ratio=0.5, generator=torch.Generator().manual_seed(0))
        >>> round(float(y[0, 0, -1] - y[0, 0, 0]), 3)  # half of the 9 time units
        4.5
    """
    _check_series(x)
    if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not 0 < ratio <= 1:
        raise ValueError(f"ratio must be a number in (0, 1], got {ratio!r}")
    b, _, t = x.shape
    width = ratio * (t - 1)
    start = _rand((b, 1), generator, x) * (t - 1 - width)
    steps = torch.linspace(0.0, 1.0, t, device=x.device, dtype=x.dtype).view(1, t)
    return _resample(x, start + steps * width)


# --------------------------------------------------------------------------------------------
# composition
# --------------------------------------------------------------------------------------------
class SeriesAugment:
    """Window slice -> time warp -> magnitude warp -> scaling -> jitter, each with probability ``p``.

    Args:
        jitter: noise std (0: off).
        scaling: std of the per-channel factor (0: off).
        magnitude_warp: std of the magnitude-warp knots (0: off).
        time_warp: std of the time-warp speed knots (0: off).
        window_slice: the fraction of the series cut away by the window slice, ``1 - ratio``
            (0: off; 0.1 keeps windows of 90% of the steps, as Le Guennec et al.).
        knots: interior knots of the warp curves.
        p: probability that each enabled transform is applied to each series (drawn per
            series and per transform).

    Calling it on a floating ``(B, C, T)`` batch returns a new ``float32`` batch.

    Example:
        >>> SeriesAugment(jitter=0.0, scaling=0.0, magnitude_warp=0.0).is_identity
        True
        >>> SeriesAugment(window_slice=1.0)
        Traceback (most recent call last):
        ...
        ValueError: window_slice must be a fraction in [0, 1), got 1.0
    """

    def __init__(
        self,
        jitter: float = 0.03,
        scaling: float = 0.1,
        magnitude_warp: float = 0.2,
        time_warp: float = 0.0,
        window_slice: float = 0.0,
        knots: int = 4,
        p: float = 0.5,
    ) -> None:
        self.jitter = _check_sigma("jitter", jitter)
        self.scaling = _check_sigma("scaling", scaling)
        self.magnitude_warp = _check_sigma("magnitude_warp", magnitude_warp)
        self.time_warp = _check_sigma("time_warp", time_warp)
        ws = window_slice
        if isinstance(ws, bool) or not isinstance(ws, (int, float)) or not 0 <= ws < 1:
            raise ValueError(f"window_slice must be a fraction in [0, 1), got {ws!r}")
        self.window_slice = float(ws)
        self.knots = _check_knots(knots)
        if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0 <= p <= 1:
            raise ValueError(f"p must be a probability in [0, 1], got {p!r}")
        self.p = float(p)

    @property
    def is_identity(self) -> bool:
        """True when no transform is enabled (or ``p == 0``)."""
        strengths = (
            self.jitter,
            self.scaling,
            self.magnitude_warp,
            self.time_warp,
            self.window_slice,
        )
        return self.p == 0 or not any(strengths)

    def __repr__(self) -> str:
        return (
            f"SeriesAugment(jitter={self.jitter}, scaling={self.scaling}, "
            f"magnitude_warp={self.magnitude_warp}, time_warp={self.time_warp}, "
            f"window_slice={self.window_slice}, knots={self.knots}, p={self.p})"
        )

    def _maybe(self, x: Tensor, y: Tensor, generator: torch.Generator | None) -> Tensor:
        """``y`` for each series with probability ``p``, else ``x``."""
        if self.p >= 1:
            return y
        keep = _rand((x.shape[0], 1, 1), generator, x) < self.p
        return torch.where(keep, y, x)

    def __call__(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        x = _check_series(x).to(torch.float32)
        if self.window_slice:
            x = self._maybe(x, window_slice(x, 1.0 - self.window_slice, generator), generator)
        if self.time_warp:
            x = self._maybe(x, time_warp(x, self.time_warp, self.knots, generator), generator)
        if self.magnitude_warp:
            y = magnitude_warp(x, self.magnitude_warp, self.knots, generator)
            x = self._maybe(x, y, generator)
        if self.scaling:
            x = self._maybe(x, scaling(x, self.scaling, generator), generator)
        if self.jitter:
            x = self._maybe(x, jitter(x, self.jitter, generator), generator)
        return x
