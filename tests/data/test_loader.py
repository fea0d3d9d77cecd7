"""Multiplicity layouts, reshuffling, DDP sharding and the device loaders."""

from __future__ import annotations

import math

import pytest
import torch

from critical.data.augment import BatchAugment
from critical.data.loader import (
    AugmentedLoader,
    MultiplicitySampler,
    TensorLoader,
    epoch_order,
    shard_indices,
)


def _images(n: int, size: int = 8) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8, generator=g)


# ------------------------------------------------------------------ epoch layout
@pytest.mark.parametrize("k", [1, 2, 3])
def test_each_index_appears_exactly_k_times_per_epoch(k):
    n, b = 37, 8
    s = MultiplicitySampler(n, b, multiplicity=k, seed=1)
    for epoch in range(3):
        s.set_epoch(epoch)
        batches = list(s)
        assert len(batches) == len(s) == math.ceil(k * n / b)
        assert all(len(x) == b for x in batches[:-1])
        assert torch.cat(batches).bincount(minlength=n).tolist() == [k] * n


def test_copies_of_an_image_are_augmented_differently():
    n, k = 16, 3
    x = _images(n)
    aug = BatchAugment(crop_padding=2, flip=True, policy="trivialaugment")
    loader = AugmentedLoader(x, torch.arange(n), MultiplicitySampler(n, 10, k, seed=0), aug)
    views: dict[int, list[torch.Tensor]] = {}
    for xb, yb in loader:
        assert xb.dtype == torch.float32 and 0 <= xb.min() and xb.max() <= 1
        for img, label in zip(xb, yb.tolist()):
            views.setdefault(label, []).append(img)
    assert sorted(views) == list(range(n)) and all(len(v) == k for v in views.values())
    for v in views.values():
        assert all(not torch.equal(v[i], v[j]) for i in range(k) for j in range(i + 1, k))


def test_reshuffle_is_reproducible_from_seed_and_epoch():
    a = MultiplicitySampler(50, 7, multiplicity=2, seed=5)
    b = MultiplicitySampler(50, 7, multiplicity=2, seed=5)
    a.set_epoch(3)
    b.set_epoch(3)
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    a.set_epoch(3)
    b.set_epoch(4)
    assert not torch.equal(torch.cat(list(a)), torch.cat(list(b)))
    c = MultiplicitySampler(50, 7, multiplicity=2, seed=6)
    c.set_epoch(3)
    a.set_epoch(3)
    assert not torch.equal(torch.cat(list(a)), torch.cat(list(c)))
    # without set_epoch, each new pass advances the epoch (and reshuffles)
    d = MultiplicitySampler(50, 7, multiplicity=2, seed=5)
    first, second = torch.cat(list(d)), torch.cat(list(d))
    assert d.epoch == 1 and not torch.equal(first, second)
    assert torch.equal(first, epoch_order(50, 2, seed=5, epoch=0))


def test_augmented_loader_is_reproducible():
    x = _images(20)
    aug = BatchAugment(policy="randaugment", cutout=2)

    def run():
        s = MultiplicitySampler(20, 8, 2, seed=3)
        s.set_epoch(1)
        return [b[0] for b in AugmentedLoader(x, torch.arange(20), s, aug, seed=3)]

    assert all(torch.equal(p, q) for p, q in zip(run(), run()))


# ------------------------------------------------------------------ batch layout
def test_batch_layout_keeps_k_views_together():
    n, b, k = 23, 5, 3
    x = _images(n)
    s = MultiplicitySampler(n, b, multiplicity=k, layout="batch", seed=0)
    assert len(s) == math.ceil(n / b)  # independent of k
    loader = AugmentedLoader(x, torch.arange(n), s, BatchAugment(crop_padding=2))
    seen = []
    for xb, yb in loader:
        assert len(yb) in (b * k, (n % b) * k)
        groups = yb.view(-1, k)
        assert (groups == groups[:, :1]).all()  # views of one image are consecutive
        views = xb.view(-1, k, *xb.shape[1:])
        for g in views:
            assert not torch.equal(g[0], g[1]) or not torch.equal(g[1], g[2])
        seen.append(groups[:, 0])
    assert torch.cat(seen).sort().values.tolist() == list(range(n))


# ------------------------------------------------------------------ DDP sharding
@pytest.mark.parametrize("n", [10, 11, 1, 0])
@pytest.mark.parametrize("drop_last", [False, True])
def test_shard_indices_disjoint_covering_equal(n, drop_last):
    world = 2
    seq = torch.arange(100, 100 + n)
    shards = [shard_indices(seq, r, world, drop_last) for r in range(world)]
    assert len({len(s) for s in shards}) == 1  # equal lengths
    # positions taken by each rank: disjoint and together the whole (padded / cut) sequence
    per = len(shards[0])
    total = n if n % world == 0 else (n - n % world if drop_last else n + world - n % world)
    assert per * world == total
    positions = [list(range(r, total, world)) for r in range(world)]
    assert set(positions[0]).isdisjoint(positions[1])
    if n > 0 and not drop_last:
        assert set(torch.cat(shards).tolist()) == set(seq.tolist())  # every element served


def test_sharded_samplers_split_the_epoch_between_ranks():
    n, k, b, world = 21, 2, 4, 2
    samplers = [MultiplicitySampler(n, b, k, seed=7, rank=r, world_size=world) for r in range(2)]
    for s in samplers:
        s.set_epoch(5)
    shares = [torch.cat(list(s)) for s in samplers]
    assert len(samplers[0]) == len(samplers[1]) == math.ceil(k * n / world / b)
    assert len(shares[0]) == len(shares[1]) == k * n // world  # 42 positions, no padding
    assert torch.cat(shares).bincount(minlength=n).tolist() == [k] * n  # disjoint + covering
    full = epoch_order(n, k, seed=7, epoch=5)
    assert torch.equal(shares[0], full[0::2]) and torch.equal(shares[1], full[1::2])


def test_sampler_validation():
    for kwargs, word in [
        ({"multiplicity": 0}, "multiplicity"),
        ({"layout": "image"}, "'epoch', 'batch'"),
        ({"batch_size": 0}, "batch_size"),
        ({"rank": 2, "world_size": 2}, "rank"),
    ]:
        args = {"num_images": 10, "batch_size": 4} | kwargs
        with pytest.raises(ValueError, match=word):
            MultiplicitySampler(**args)


# ------------------------------------------------------------------ eval loader
def test_tensor_loader_is_ordered_and_unaugmented():
    x = _images(11)
    out = list(TensorLoader(x, torch.arange(11), batch_size=4))
    assert [len(y) for _, y in out] == [4, 4, 3]
    assert torch.equal(torch.cat([b for b, _ in out]), x.float() / 255)
    ranks = [list(TensorLoader(x, torch.arange(11), 4, rank=r, world_size=2)) for r in range(2)]
    assert len(ranks[0]) == len(ranks[1]) == 2
    labels = torch.cat([y for r in ranks for _, y in r])
    assert set(labels.tolist()) == set(range(11)) and len(labels) == 12
