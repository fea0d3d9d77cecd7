"""The un-augmented view of a user's dataset, inferred from its torchvision transform."""

from __future__ import annotations

import random

import numpy as np
import torch
from PIL import Image
from torchvision import transforms as T
from torchvision.transforms import v2

from critical.data.clean_view import clean_transform, transform_owner
from critical.data.probe import DatasetProbe, spread_indices


class Pictures(torch.utils.data.Dataset):
    """A map-style dataset of PIL images with a `transform`, as torchvision's hold one."""

    def __init__(self, transform, n: int = 8, size: int = 20) -> None:
        rng = np.random.default_rng(0)
        self.images = [
            Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)) for _ in range(n)
        ]
        self.transform = transform

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        return self.transform(self.images[i]), i % 2


def names(tf):
    return [type(t).__name__ for t in tf.transforms]


def test_random_steps_are_dropped_and_random_crops_centred_in_both_apis():
    tf = v2.Compose(
        [
            v2.RandomResizedCrop(16),
            v2.TrivialAugmentWide(),
            v2.Compose([v2.ColorJitter(0.4), v2.RandomGrayscale()]),
            v2.ToImage(),
            v2.ToDtype(torch.float32, scale=True),
        ]
    )
    clean, changed = clean_transform(tf)
    assert names(clean) == ["Resize", "CenterCrop", "ToImage", "ToDtype"]  # inner one emptied
    assert len(changed) == 4
    assert clean_transform(T.RandomHorizontalFlip()) == (None, [])  # not a Compose
    assert clean_transform(lambda x: x) == (None, [])
    assert clean_transform(T.Compose([T.RandomHorizontalFlip()])) == (
        None,
        ["RandomHorizontalFlip dropped"],
    )


def test_a_probe_reads_the_clean_view_and_puts_the_transform_back():
    tf = T.Compose([T.RandomCrop(16), T.RandomHorizontalFlip(), T.ToTensor()])
    data = torch.utils.data.Subset(Pictures(tf), range(8))
    assert transform_owner(data) is data.dataset
    probe = DatasetProbe(data, clean=True)
    clean, views, _ = probe.probe_views(4, views=2, seed=0)
    assert clean is not None and clean.shape == views[0].shape == (4, 3, 16, 16)
    assert data.dataset.transform is tf  # the user's transform, as it was
    again, _, _ = probe.probe_views(4, views=1, seed=5)
    assert torch.equal(clean, again)  # the same view whatever the seed
    first = spread_indices(8, 4, seed=0)[0]  # the probe's first sample
    centre = T.Compose([T.CenterCrop(16), T.ToTensor()])(data.dataset.images[first])
    assert torch.equal(clean[0], centre)
    assert "RandomCrop -> CenterCrop" in probe.clean_how
    assert DatasetProbe(data).probe_views(4, views=1, seed=0)[0] is None  # not asked for


def test_a_step_it_does_not_know_that_is_random_means_no_clean_view():
    jitter = T.Lambda(lambda img: img.rotate(random.uniform(-30, 30)))
    probe = DatasetProbe(Pictures(T.Compose([jitter, T.ToTensor()])), clean=True)
    assert probe.probe_views(4, views=1, seed=0)[0] is None
    assert "still random" in probe.clean_how
    # an always-applied resize inside RandomApply is dropped with it: another shape, not kept
    shrink = T.RandomApply([T.Resize(8)], p=1.0)
    probe = DatasetProbe(Pictures(T.Compose([shrink, T.ToTensor()])), clean=True)
    assert probe.probe_views(2, views=1, seed=0)[0] is None and "shape" in probe.clean_how
    padded = T.Compose([T.RandomResizedCrop(12), T.Pad(2), T.ToTensor()])
    probe = DatasetProbe(Pictures(padded), clean=True)
    assert probe.probe_views(2, views=1, seed=0)[0].shape == (2, 3, 16, 16)
