"""ImageFolder data with the user's own held-out folders: `test_root` and `val_root`."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

from critical.data import ImageDataModule
from critical.data.datasets import load_image_folder
from critical.task import ImageClassifier
from tests.helpers import tiny_trainer


def _folder(root, classes, n=4, size=8, seed=0, shift=0):
    """Class-dependent images (class i is bright in channel i % 3), so a model can learn them."""
    g = torch.Generator().manual_seed(seed)
    for cls in classes:
        (root / cls).mkdir(parents=True)
        c = ["ant", "bee", "cat"].index(cls)
        for i in range(n):
            arr = torch.randint(0, 60, (size + shift, size + shift, 3), generator=g)
            arr[..., c % 3] += 180
            Image.fromarray(arr.to(torch.uint8).numpy()).save(root / cls / f"{i}.png")
    return root


def test_test_root_and_val_root_are_the_held_out_splits(tmp_path):
    train = _folder(tmp_path / "train", ["ant", "bee", "cat"], n=6)
    val = _folder(tmp_path / "val", ["ant", "bee", "cat"], n=2, seed=1)
    test = _folder(tmp_path / "test", ["bee", "cat"], n=3, seed=2)  # a subset of the classes
    cache = str(tmp_path / "cache")
    dm = ImageDataModule(
        "folder",
        root=str(train),
        val_root=str(val),
        test_root=str(test),
        cache_dir=cache,
        batch_size=8,
        crop_padding=0,
        flip=False,
    )
    dm.prepare_data()
    dm.setup("fit")
    assert len(dm.train_data) == 18  # all of root trains: val comes from val_root
    assert len(dm.val_data) == 6 and len(dm.test_data) == 6
    assert dm.has_test_split
    # labels follow the training classes by name: bee=1, cat=2 even though test lacks ant
    assert sorted(dm.test_data.labels.unique().tolist()) == [1, 2]
    assert dm.test_data.classes == ["ant", "bee", "cat"]
    names = dm.split_names
    assert f"held-out folder {test}" in names["test"] and f"held-out folder {val}" in names["val"]
    assert sum(len(b[1]) for b in dm.test_dataloader()) == 6

    model = ImageClassifier("small_cnn", num_classes=3, in_chans=3, img_size=8, lr=0.05)
    trainer = tiny_trainer(tmp_path, max_epochs=2)
    trainer.fit(model, dm)
    out = trainer.test(model, dm, verbose=False)[0]
    assert 0.0 <= out["test/acc"] <= 1.0


def test_without_test_root_the_folder_tests_on_its_validation_split(tmp_path):
    train = _folder(tmp_path / "train", ["ant", "bee"], n=5)
    dm = ImageDataModule("folder", root=str(train), val_size=4, cache_dir=str(tmp_path / "c"))
    assert not dm.has_test_split
    dm.setup("fit")
    assert dm.test_data is None and len(dm.val_data) == 4
    assert dm.split_names["test"].startswith("the validation split")


def test_held_out_folder_errors(tmp_path):
    train = _folder(tmp_path / "train", ["ant", "bee"], n=2)
    cache = str(tmp_path / "cache")
    with pytest.raises(ValueError, match="test_root is an option of dataset='folder'"):
        ImageDataModule("digits", test_root=str(train))
    with pytest.raises(ValueError, match=r"val_root .* is not a directory"):
        ImageDataModule("folder", root=str(train), val_root=str(tmp_path / "missing"))
    other = _folder(tmp_path / "other", ["ant", "cat"], n=1)
    dm = ImageDataModule("folder", root=str(train), test_root=str(other), cache_dir=cache)
    with pytest.raises(ValueError, match=r"class folder\(s\) \['cat'\] .* not classes"):
        dm.setup("fit")
    bigger = _folder(tmp_path / "bigger", ["ant"], n=1, shift=4)
    dm = ImageDataModule("folder", root=str(train), test_root=str(bigger), cache_dir=cache)
    with pytest.raises(ValueError, match=r"test_root images have shape .* image_size"):
        dm.setup("fit")
    dm = ImageDataModule(
        "folder", root=str(train), test_root=str(bigger), cache_dir=cache, image_size=8
    )
    dm.setup("fit")
    assert tuple(dm.test_data.images.shape) == (1, 3, 8, 8)


def test_load_image_folder_relabels_by_the_given_classes(tmp_path):
    root = _folder(tmp_path / "f", ["bee", "cat"], n=1)
    data = load_image_folder(root, cache_dir=tmp_path / "c")
    assert data.labels.tolist() == [0, 1] and data.classes == ["bee", "cat"]
    again = load_image_folder(root, cache_dir=tmp_path / "c", classes=["ant", "bee", "cat"])
    assert again.labels.tolist() == [1, 2] and again.num_classes == 3
