"""Batched augmentation: correctness on hand-made tensors, per-sample independence, validation."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torchvision.transforms.v2 import functional as TF

from critical.data import augment as A
from critical.data.augment import (
    BatchAugment,
    cutout,
    rand_augment,
    random_crop,
    random_flip,
    to_float,
    trivial_augment,
)


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _distinct(x: torch.Tensor) -> int:
    return torch.unique(x.flatten(1), dim=0).shape[0]


# ------------------------------------------------------------------ crop
def test_crop_padding_zero_is_identity():
    x = torch.randint(0, 256, (5, 3, 6, 7), dtype=torch.uint8)
    assert torch.equal(random_crop(x, padding=0, generator=_gen()), x)


@pytest.mark.parametrize("mode", ["zeros", "reflect"])
def test_crop_is_a_window_of_the_padded_image(mode):
    p = 2
    x = torch.arange(2 * 3 * 5 * 6, dtype=torch.float32).view(2, 3, 5, 6)
    out = random_crop(x, padding=p, generator=_gen(1), padding_mode=mode)
    padded = F.pad(x, (p, p, p, p), mode="constant" if mode == "zeros" else "reflect")
    for i in range(x.shape[0]):
        windows = [
            padded[i, :, dy : dy + 5, dx : dx + 6]
            for dy in range(2 * p + 1)
            for dx in range(2 * p + 1)
        ]
        assert any(torch.equal(out[i], w) for w in windows)


def test_crop_offsets_are_per_sample_and_cover_range():
    x = torch.zeros(400, 1, 9, 9, dtype=torch.uint8)
    x[:, :, 4, 4] = 255  # a single bright pixel: its new position reveals the offset
    out = random_crop(x, padding=3, generator=_gen(2))
    pos = out.flatten(1).argmax(1)
    assert torch.all(out.flatten(1).max(1).values == 255)  # offset <= padding keeps the pixel
    rows, cols = pos // 9, pos % 9
    assert set(rows.tolist()) == set(range(1, 8)) and set(cols.tolist()) == set(range(1, 8))


def test_crop_uint8_input_not_modified_and_dtype_kept():
    x = torch.randint(0, 256, (4, 3, 8, 8), dtype=torch.uint8)
    before = x.clone()
    out = random_crop(x, 4, _gen())
    assert out.dtype == torch.uint8 and torch.equal(x, before)


# ------------------------------------------------------------------ flip
def test_flip_is_exact_mirror():
    x = torch.arange(24, dtype=torch.uint8).view(2, 1, 3, 4)
    assert torch.equal(random_flip(x, p=1.0), x[..., torch.arange(3, -1, -1)])
    assert torch.equal(random_flip(x, p=0.0), x)


def test_flip_is_per_sample():
    x = torch.arange(12, dtype=torch.float32).view(1, 1, 3, 4).repeat(200, 1, 1, 1)
    out = random_flip(x, p=0.5, generator=_gen(3))
    flipped = (out == x.flip(-1)).flatten(1).all(1)
    same = (out == x).flatten(1).all(1)
    assert torch.all(flipped ^ same)
    assert 60 < int(flipped.sum()) < 140


# ------------------------------------------------------------------ cutout
def test_cutout_zeroes_one_clipped_square_per_image():
    x = torch.ones(300, 2, 10, 10)
    out = cutout(x, size=4, generator=_gen(4))
    zero = out[:, 0] == 0
    assert torch.equal(out[:, 0] == 0, out[:, 1] == 0)  # same square on every channel
    counts = zero.flatten(1).sum(1)
    assert counts.max() == 16 and counts.min() >= 4  # clipped at a corner: at least 2x2
    for i in range(20):
        r, c = zero[i].nonzero(as_tuple=True)
        assert zero[i, r.min() : r.max() + 1, c.min() : c.max() + 1].all()  # a rectangle
    assert _distinct(zero.float()) > 30  # different positions per image
    assert torch.equal(cutout(x, 0), x)


# ------------------------------------------------------------------ policies
def test_affine_translation_and_identity():
    x = torch.rand(3, 3, 8, 8)
    op = torch.tensor([A._OP_ID["translate_x"], A._OP_ID["translate_y"], A._OP_ID["rotate"]])
    mag = torch.tensor([2 / 8, -1 / 8, 0.0])
    out = A._affine(x, op, mag, "nearest")
    assert torch.allclose(out[0, :, :, 2:], x[0, :, :, :-2]) and (out[0, :, :, :2] == 0).all()
    assert torch.allclose(out[1, :, :-1], x[1, :, 1:]) and (out[1, :, -1] == 0).all()
    assert torch.allclose(out[2], x[2])  # rotate by 0 degrees


def test_affine_rotate_90_is_exact():
    x = torch.rand(1, 1, 6, 6)
    out = A._affine(x, torch.tensor([A._OP_ID["rotate"]]), torch.tensor([90.0]), "nearest")
    assert torch.allclose(out[0, 0], torch.rot90(x[0, 0], 1)) or torch.allclose(
        out[0, 0], torch.rot90(x[0, 0], -1)
    )


@pytest.mark.parametrize(
    "name, reference",
    [
        ("brightness", lambda x, f: TF.adjust_brightness(x, 1 + f)),
        ("color", lambda x, f: TF.adjust_saturation(x, 1 + f)),
        ("contrast", lambda x, f: TF.adjust_contrast(x, 1 + f)),
        ("sharpness", lambda x, f: TF.adjust_sharpness(x, 1 + f)),
        ("solarize", lambda x, f: TF.solarize(x, f)),
        ("posterize", lambda x, f: TF.posterize(x, int(f)).float() / 255),
        ("autocontrast", lambda x, f: TF.autocontrast(x)),
        ("equalize", lambda x, f: TF.equalize(x)),
    ],
)
def test_color_ops_match_torchvision_per_sample(name, reference):
    u8 = torch.randint(0, 256, (4, 3, 8, 8), dtype=torch.uint8)
    x = to_float(u8)
    mags = {
        "posterize": torch.tensor([8.0, 6.0, 4.0, 2.0]),
        "solarize": torch.tensor([1.0, 0.7, 0.4, 0.1]),
    }.get(name, torch.tensor([-0.9, -0.3, 0.2, 0.9]))
    out = A._color_op(name, x, mags)
    for i in range(4):
        src = u8[i] if name == "posterize" else x[i]
        ref = reference(src, float(mags[i]))
        assert torch.allclose(out[i], ref, atol=1.5 / 255), (name, i)


def _copies(n: int = 64) -> torch.Tensor:
    base = torch.randint(0, 256, (1, 3, 16, 16), dtype=torch.uint8)
    return base.repeat(n, 1, 1, 1)


@pytest.mark.parametrize("policy", [trivial_augment, rand_augment])
def test_policies_are_per_sample_reproducible_and_in_range(policy):
    x = _copies()
    out = policy(x, generator=_gen(5))
    assert out.dtype == torch.float32 and out.shape == x.shape
    assert out.min() >= 0 and out.max() <= 1
    assert _distinct(out) > 20  # identical inputs, independent op / magnitude choices
    assert torch.equal(out, policy(x, generator=_gen(5)))
    assert not torch.equal(out, policy(x, generator=_gen(6)))


def test_randaugment_zero_ops_is_identity():
    x = torch.randint(0, 256, (4, 3, 8, 8), dtype=torch.uint8)
    assert torch.equal(rand_augment(x, num_ops=0), to_float(x))


def test_policies_handle_grayscale_and_empty():
    x = torch.randint(0, 256, (32, 1, 8, 8), dtype=torch.uint8)
    assert trivial_augment(x, _gen()).shape == (32, 1, 8, 8)
    assert rand_augment(x[:0]).shape == (0, 1, 8, 8)


# ------------------------------------------------------------------ BatchAugment
def test_batch_augment_copies_differ_and_is_reproducible():
    aug = BatchAugment(crop_padding=4, flip=True, cutout=4, policy="trivialaugment")
    x = _copies(32)
    before = x.clone()
    out = aug(x, generator=_gen(7))
    assert torch.equal(x, before)
    assert out.dtype == torch.float32 and 0 <= out.min() and out.max() <= 1
    assert _distinct(out) == 32
    assert torch.equal(out, aug(x, generator=_gen(7)))


def test_batch_augment_identity_config():
    aug = BatchAugment(crop_padding=0, flip=False, cutout=0, policy="none")
    x = torch.randint(0, 256, (3, 3, 4, 4), dtype=torch.uint8)
    assert aug.is_identity and torch.equal(aug(x), x.float() / 255)


@pytest.mark.parametrize(
    "kwargs, words",
    [
        ({"policy": "autoaugment"}, ["'none'", "'trivialaugment'", "'randaugment'"]),
        ({"padding_mode": "edge"}, ["'zeros'", "'reflect'"]),
        ({"interpolation": "bicubic"}, ["'nearest'", "'bilinear'"]),
        ({"crop_padding": -1}, ["crop_padding"]),
        ({"cutout": 2.5}, ["cutout"]),
        ({"flip": 1}, ["flip"]),
        ({"magnitude": 31}, ["magnitude", "[0, 30]"]),
    ],
)
def test_batch_augment_rejects_invalid_config(kwargs, words):
    with pytest.raises(ValueError) as err:
        BatchAugment(**kwargs)
    for w in words:
        assert w in str(err.value)


def test_batch_augment_config_round_trip_and_bad_input():
    aug = BatchAugment(crop_padding=2, cutout=3, policy="randaugment", num_ops=1, magnitude=5)
    assert BatchAugment(**aug.config()).config() == aug.config()
    with pytest.raises(ValueError, match="N, C, H, W"):
        aug(torch.zeros(3, 8, 8, dtype=torch.uint8))
