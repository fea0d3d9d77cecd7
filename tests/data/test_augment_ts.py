"""critical.data.augment_ts: batched time-series augmentation on (B, C, T) tensors."""

from __future__ import annotations

import pytest
import torch

from critical.data.augment_ts import (
    SeriesAugment,
    jitter,
    magnitude_warp,
    scaling,
    smooth_curves,
    time_warp,
    window_slice,
)

OPS = {
    "jitter": lambda x, g: jitter(x, 0.03, g),
    "scaling": lambda x, g: scaling(x, 0.1, g),
    "magnitude_warp": lambda x, g: magnitude_warp(x, 0.2, 4, g),
    "time_warp": lambda x, g: time_warp(x, 0.2, 4, g),
    "window_slice": lambda x, g: window_slice(x, 0.9, g),
}


def _series(b: int = 6, c: int = 3, t: int = 50, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, c, t, generator=g).cumsum(-1)  # random walks: smooth-ish signals


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("name", sorted(OPS))
def test_ops_keep_shape_do_not_modify_input_and_are_seeded(name):
    op = OPS[name]
    x = _series()
    before = x.clone()
    y1, y2 = op(x, _gen(1)), op(x, _gen(1))
    assert y1.shape == x.shape and y1.dtype == x.dtype
    assert torch.equal(x, before)
    assert torch.equal(y1, y2)  # same generator seed, same output
    assert not torch.equal(y1, op(x, _gen(2)))
    assert not torch.allclose(y1, x)


@pytest.mark.parametrize("name", sorted(OPS))
def test_copies_of_one_series_are_augmented_independently(name):
    # multiplicity k puts k copies of one series in a batch (batch layout): each gets its own draws
    x = _series(b=1).repeat(4, 1, 1)
    y = OPS[name](x, _gen(0))
    for i in range(1, 4):
        assert not torch.allclose(y[0], y[i])


def test_zero_strengths_are_the_identity():
    x = _series()
    assert torch.equal(jitter(x, 0.0), x)
    assert torch.allclose(scaling(x, 0.0), x)
    assert torch.allclose(magnitude_warp(x, 0.0), x, atol=1e-5)
    assert torch.allclose(time_warp(x, 0.0), x, atol=1e-4)
    assert torch.allclose(window_slice(x, 1.0), x, atol=1e-5)


def test_scaling_is_one_factor_per_channel_and_series():
    x = torch.rand(4, 3, 20) + 1.0
    ratio = scaling(x, 0.2, _gen()) / x
    assert torch.allclose(ratio, ratio[..., :1].expand_as(ratio), atol=1e-6)
    assert ratio[..., 0].unique().numel() == 12


def test_magnitude_warp_curves_are_smooth_and_centred_on_one():
    c = smooth_curves(200, 100, sigma=0.2, knots=4, generator=_gen())
    assert abs(float(c.mean()) - 1.0) < 0.05
    # smooth: neighbouring steps differ far less than the knots' spread
    assert float(c.diff(dim=-1).abs().max()) < 0.1
    assert float(c.std()) > 0.1


def test_time_warp_is_a_monotone_resampling_with_fixed_ends():
    t = torch.arange(40.0).view(1, 1, 40).repeat(8, 2, 1)
    y = time_warp(t, sigma=0.4, generator=_gen())
    assert torch.allclose(y[..., 0], t[..., 0]) and torch.allclose(y[..., -1], t[..., -1])
    assert bool((y.diff(dim=-1) >= -1e-5).all())
    assert torch.equal(y[:, 0], y[:, 1])  # the channels of a series share the warp
    assert not torch.allclose(y, t)


def test_window_slice_reads_a_window_of_the_original():
    t = torch.arange(100.0).view(1, 1, 100).repeat(16, 1, 1)
    y = window_slice(t, ratio=0.8, generator=_gen())
    span = y[..., -1] - y[..., 0]
    assert torch.allclose(span, torch.full_like(span, 0.8 * 99), atol=1e-3)
    assert bool((y >= 0).all()) and bool((y <= 99).all())
    assert y[:, 0, 0].unique().numel() > 1  # random starts


def test_series_augment_composition_probability_and_validation():
    x = _series(b=64)
    assert torch.equal(SeriesAugment(p=0.0)(x, _gen()), x)
    assert SeriesAugment(p=0.0).is_identity
    y = SeriesAugment(jitter=0.1, scaling=0.0, magnitude_warp=0.0, p=0.5)(x, _gen())
    changed = (y != x).flatten(1).any(1)
    assert 10 < int(changed.sum()) < 54  # about half the series
    full = SeriesAugment(time_warp=0.2, window_slice=0.1, p=1.0)(x, _gen())
    assert bool((full != x).flatten(1).any(1).all())
    with pytest.raises(ValueError, match="jitter must be >= 0"):
        SeriesAugment(jitter=-1.0)
    with pytest.raises(ValueError, match="p must be a probability"):
        SeriesAugment(p=1.5)
    with pytest.raises(ValueError, match=r"\(B, C, T\)"):
        SeriesAugment()(torch.zeros(2, 3, 4, 5))
    with pytest.raises(ValueError, match="floating-point"):
        jitter(torch.zeros(2, 3, 4, dtype=torch.int64))
    with pytest.raises(ValueError, match="knots"):
        time_warp(x, knots=0)
    with pytest.raises(ValueError, match="ratio"):
        window_slice(x, ratio=0.0)
