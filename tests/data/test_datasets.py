"""Datasets: offline CIFAR error, ImageFolder cache (hit / invalidation), digits, splits."""

from __future__ import annotations

import os
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from critical.data import datasets as D
from critical.data.datasets import (
    DatasetNotFoundError,
    ImageData,
    load_cifar,
    load_dataset,
    load_digits,
    load_image_folder,
    make_synthetic,
    stratified_split,
)


# ------------------------------------------------------------------ CIFAR offline
@pytest.mark.parametrize(
    "name, url",
    [
        ("cifar10", "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"),
        ("cifar100", "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz"),
    ],
)
def test_cifar_missing_offline_raises_clear_error(tmp_path, name, url):
    with pytest.raises(DatasetNotFoundError) as err:
        load_cifar(name, root=tmp_path, download=False)
    msg = str(err.value)
    assert isinstance(err.value, FileNotFoundError)
    assert url in msg and str(tmp_path) in msg and "download=True" in msg
    assert ("cifar-10-batches-py" if name == "cifar10" else "cifar-100-python") in msg


def test_cifar_bad_name():
    with pytest.raises(ValueError, match="cifar10"):
        load_cifar("cifar12")


# ------------------------------------------------------------------ ImageFolder + cache
def _write_folder(root, n_per_class=3, size=8):
    g = torch.Generator().manual_seed(0)
    pixels = {}
    for cls in ["bird", "ant"]:  # sorted order: ant=0, bird=1
        (root / cls).mkdir(parents=True)
        for i in range(n_per_class):
            arr = torch.randint(0, 256, (size, size, 3), generator=g, dtype=torch.uint8)
            ext = "png" if i % 2 == 0 else "jpg"
            path = root / cls / f"{i:02d}.{ext}"
            Image.fromarray(arr.numpy()).save(path, quality=95)
            pixels[str(path.relative_to(root))] = arr.permute(2, 0, 1)
    (root / "ant" / "notes.txt").write_text("ignored: not an image")
    return pixels


def test_image_folder_decodes_in_imagefolder_order(tmp_path):
    pixels = _write_folder(tmp_path / "data")
    data = load_image_folder(tmp_path / "data", cache_dir=tmp_path / "cache")
    assert data.classes == ["ant", "bird"]
    assert data.images.dtype == torch.uint8 and data.images.shape == (6, 3, 8, 8)
    assert data.labels.tolist() == [0, 0, 0, 1, 1, 1]
    assert torch.equal(data.images[0], pixels[os.path.join("ant", "00.png")])  # PNG: exact
    with Image.open(tmp_path / "data" / "ant" / "01.jpg") as im:  # JPEG: as PIL decodes it
        ref = torch.from_numpy(np.asarray(im.convert("RGB")).copy()).permute(2, 0, 1)
    assert (data.images[1].float() - ref.float()).abs().mean() < 3


def test_image_folder_cache_hit_and_invalidation(tmp_path, monkeypatch, caplog):
    root, cache = tmp_path / "data", tmp_path / "cache"
    _write_folder(root)
    with caplog.at_level("INFO"):
        first = load_image_folder(root, cache_dir=cache)
    files = list(cache.glob("folder-data-*.pt"))
    assert len(files) == 1 and not list(cache.glob(".tmp-*"))
    said = [r.getMessage() for r in caplog.records if "cached them in" in r.getMessage()]
    assert len(said) == 1 and str(files[0]) in said[0] and "Delete it" in said[0]
    caplog.clear()

    real_decode = D._decode_files
    calls = []

    def counting_decode(*args, **kwargs):
        calls.append(1)
        return real_decode(*args, **kwargs)

    monkeypatch.setattr(D, "_decode_files", counting_decode)
    with caplog.at_level("INFO"):
        second = load_image_folder(root, cache_dir=cache)  # cache hit: no decoding, no message
    assert calls == [] and torch.equal(first.images, second.images)
    assert not any("cached them in" in r.getMessage() for r in caplog.records)

    # change one file (new content, new size and mtime): the cache must be rebuilt
    target = root / "bird" / "00.png"
    Image.fromarray(torch.full((8, 8, 3), 7, dtype=torch.uint8).numpy()).save(target)
    st = os.stat(target)
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    third = load_image_folder(root, cache_dir=cache)
    assert calls == [1]
    assert (third.images[3] == 7).all() and not torch.equal(third.images, first.images)
    assert len(list(cache.glob("folder-data-*.pt"))) == 1  # the stale file was removed

    # adding a file invalidates too
    Image.fromarray(torch.zeros(8, 8, 3, dtype=torch.uint8).numpy()).save(root / "ant" / "99.png")
    fourth = load_image_folder(root, cache_dir=cache)
    assert calls == [1, 1] and len(fourth) == 7


def test_image_folder_sizes_and_errors(tmp_path):
    root = tmp_path / "mixed"
    (root / "a").mkdir(parents=True)
    Image.new("RGB", (8, 8)).save(root / "a" / "0.png")
    Image.new("L", (6, 10)).save(root / "a" / "1.png")
    with pytest.raises(ValueError, match="image_size"):
        load_image_folder(root, use_cache=False)
    data = load_image_folder(root, image_size=4, use_cache=False)
    assert data.images.shape == (2, 3, 4, 4)  # grayscale PNG decoded as RGB
    gray = load_image_folder(root, image_size=4, grayscale=True, use_cache=False)
    assert gray.images.shape == (2, 1, 4, 4)
    with pytest.raises(DatasetNotFoundError, match="does not exist"):
        load_image_folder(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetNotFoundError, match="ImageFolder layout"):
        load_image_folder(tmp_path / "empty")


def test_default_cache_dir_env(monkeypatch, tmp_path):
    monkeypatch.setenv("CRITICAL_CACHE_DIR", str(tmp_path / "c"))
    assert D.default_cache_dir() == tmp_path / "c"
    monkeypatch.delenv("CRITICAL_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert D.default_cache_dir() == tmp_path / "xdg" / "critical"


# ------------------------------------------------------------------ digits, synthetic
def test_digits_load_offline():
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no download attempt, no warnings
        d = load_digits()
    assert len(d) == 1797 and d.images.shape == (1797, 1, 16, 16)
    assert d.images.dtype == torch.uint8 and d.labels.dtype == torch.int64
    assert d.classes == [str(i) for i in range(10)] and d.images.max() > 200
    assert load_digits(image_size=8).images.shape == (1797, 1, 8, 8)


def test_synthetic_and_dispatch():
    train, test = load_dataset("synthetic", image_size=8)
    assert train.images.shape == (512, 3, 8, 8) and test.images.shape == (256, 3, 8, 8)
    # same task: class means of train and test agree
    for c in range(4):
        m_tr = train.images[train.labels == c].float().mean(0)
        m_te = test.images[test.labels == c].float().mean(0)
        assert (m_tr - m_te).abs().mean() < 10
    with pytest.raises(ValueError, match="'cifar10', 'cifar100', 'folder', 'digits', 'synthetic'"):
        load_dataset("imagenet")
    with pytest.raises(ValueError, match="root"):
        load_dataset("folder")
    assert load_dataset("digits")[1] is None


def test_image_data_validation_and_stats():
    with pytest.raises(ValueError, match="uint8"):
        ImageData(torch.zeros(2, 1, 2, 2), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="labels"):
        ImageData(torch.zeros(2, 1, 2, 2, dtype=torch.uint8), torch.tensor([0]))
    d = make_synthetic(n=64, image_size=4)
    mean, std = d.channel_stats(chunk=10)
    ref = d.images.float().div(255)
    assert torch.allclose(torch.tensor(mean), ref.mean((0, 2, 3)), atol=1e-3)
    assert torch.allclose(torch.tensor(std), ref.std((0, 2, 3), unbiased=False), atol=1e-3)


# ------------------------------------------------------------------ splits
def test_stratified_split_is_stratified_seeded_and_disjoint():
    labels = torch.cat([torch.full((n,), c) for c, n in enumerate([500, 300, 200])])
    labels = labels[torch.randperm(1000, generator=torch.Generator().manual_seed(0))]
    tr, va = stratified_split(labels, val_size=0.1, seed=3)
    assert len(va) == 100 and len(tr) == 900
    assert labels[va].bincount().tolist() == [50, 30, 20]
    assert torch.equal(torch.cat([tr, va]).sort().values, torch.arange(1000))
    tr2, va2 = stratified_split(labels, val_size=0.1, seed=3)
    assert torch.equal(va, va2) and torch.equal(tr, tr2)
    _, va3 = stratified_split(labels, val_size=0.1, seed=4)
    assert not torch.equal(va, va3)
    _, va4 = stratified_split(labels, val_size=7, seed=0)  # remainders distributed exactly
    assert len(va4) == 7 and all(
        abs(labels[va4].eq(c).sum() - 7 * p) < 1 for c, p in enumerate([0.5, 0.3, 0.2])
    )
    assert len(stratified_split(labels, 0)[1]) == 0


@pytest.mark.parametrize("bad", [1.0, -0.1, 1000, -1, "0.1", True])
def test_stratified_split_rejects_bad_sizes(bad):
    with pytest.raises(ValueError, match="val_size"):
        stratified_split(torch.arange(1000) % 3, val_size=bad)


def test_an_empty_class_folder_is_rejected_not_a_phantom_class(tmp_path):
    root = tmp_path / "data"
    _write_folder(root)  # ant, bird
    (root / "cat").mkdir()  # empty: would be label 2 of nothing
    (root / "aardvark").mkdir()  # empty and sorted first: would shift every label by one
    with pytest.raises(DatasetNotFoundError, match=r"\['aardvark', 'cat'\].*no image files"):
        load_image_folder(root, cache_dir=tmp_path / "cache")
    (root / "aardvark").rmdir()
    (root / "cat").rmdir()
    (root / ".ipynb_checkpoints").mkdir()  # hidden folders are not classes
    data = load_image_folder(root, cache_dir=tmp_path / "cache")
    assert data.classes == ["ant", "bird"] and data.labels.tolist() == [0, 0, 0, 1, 1, 1]


def test_the_cache_key_covers_the_class_list():
    files = [("a/0.png", 0), ("b/0.png", 1)]
    stats = [os.stat(__file__)] * 2
    key = D._folder_key(["a", "b"], files, stats, "opts")
    assert key == D._folder_key(["a", "b"], files, stats, "opts")
    assert key != D._folder_key(["a", "b", "c"], files, stats, "opts")
