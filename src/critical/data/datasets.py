"""Image datasets as ``uint8`` tensors: CIFAR-10/100, ImageFolder directories, digits, synthetic.

Every loader returns an :class:`ImageData`: ``images`` is a ``uint8`` tensor ``(N, C, H, W)``,
``labels`` an ``int64`` tensor ``(N,)`` and ``classes`` the list of class names (label ``i`` is
``classes[i]``). Keeping the decoded pixels as one ``uint8`` tensor is what lets the
fast path (:mod:`critical.data.augment`) augment whole batches on the training device.

Sources:

* :func:`load_cifar` (``"cifar10"`` / ``"cifar100"``) through torchvision, with ``root`` and
  ``download``. Offline with missing files it raises :class:`DatasetNotFoundError` saying which
  folder to create and which archive URL to extract there (or to use an ImageFolder directory).
* :func:`load_image_folder`: any ``root/<class>/<image>`` directory (torchvision's
  ``ImageFolder`` layout; JPEG, PNG, WebP, GIF), decoded once with
  :func:`torchvision.io.decode_image` (in threads) and cached as a tensor file outside the repo
  (default ``$CRITICAL_CACHE_DIR`` or ``$XDG_CACHE_HOME/critical`` or ``~/.cache/critical``).
  The cache key hashes the class list and the relative paths, labels, sizes and modification
  times of all image files (plus the decode options), so adding, removing or touching a file
  invalidates it; writes are atomic (temporary file + :func:`os.replace`). A class folder
  without images is an error (it would shift the labels); hidden folders are skipped.
* :func:`load_digits`: scikit-learn's embedded 8 x 8 handwritten digits (1,797 grayscale
  images, 10 classes), available offline. Pixels 0..16 are scaled to 0..255 and, by default,
  upsampled to 16 x 16 (bilinear) so that a CIFAR-style network with padding-crop augmentation
  still has spatial extent to work with; ``image_size=8`` keeps the originals. It is the
  dataset of the 3-minute CPU quick start. It has no official test split.
* :func:`make_synthetic`: generated class-dependent patterns plus noise, for tests.

:func:`stratified_split` carves a seeded, stratified validation split out of a training set.
:func:`load_dataset` dispatches by name and returns ``(train, test)`` where ``test`` is the
official test split, or ``None`` when the dataset has none (folder, digits).

Example:
    >>> from critical.data.datasets import make_synthetic, stratified_split
    >>> data = make_synthetic(n=40, num_classes=4, image_size=8)
    >>> data.images.dtype, tuple(data.images.shape), data.classes
    (torch.uint8, (40, 3, 8, 8), ['class0', 'class1', 'class2', 'class3'])
    >>> train_idx, val_idx = stratified_split(data.labels, val_size=0.25, seed=0)
    >>> len(train_idx), len(val_idx), data.subset(val_idx).labels.bincount().tolist()
    (30, 10, [3, 3, 2, 2])

Layout: this module holds the registry (:data:`DATASETS`, :data:`DATASET_INFO`), the dispatch
(:func:`load_dataset`) and the ImageFolder loader with its cache; the pieces it builds on are
:mod:`critical.data.image_data` (:class:`ImageData`, :class:`DatasetNotFoundError`),
:mod:`critical.data.cifar` (:func:`load_cifar`), :mod:`critical.data.decode` (image decoding
for the ImageFolder loader), :mod:`critical.data.offline` (:func:`load_digits`,
:func:`make_synthetic`) and :mod:`critical.data.splits` (:func:`stratified_split`). All public
names are importable from here.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import get_args

import torch
from lightning.pytorch.utilities import rank_zero_info

from critical.choices import Dataset as DatasetName
from critical.data.cifar import load_cifar
from critical.data.decode import _decode_files
from critical.data.image_data import DatasetNotFoundError, ImageData
from critical.data.offline import load_digits, make_synthetic
from critical.data.splits import stratified_split
from critical.validation import check_choice, check_int

__all__ = [
    "DATASETS",
    "DATASET_INFO",
    "DatasetNotFoundError",
    "ImageData",
    "default_cache_dir",
    "load_cifar",
    "load_dataset",
    "load_digits",
    "load_held_out",
    "load_image_folder",
    "make_synthetic",
    "stratified_split",
]

DATASETS: tuple[str, ...] = get_args(DatasetName)
IMG_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".gif")
_CACHE_VERSION = 2  # 2: the key covers the class list

# Static facts known before loading (``None``: depends on the data or on options).
DATASET_INFO: dict[str, dict[str, object]] = {
    "cifar10": {"num_classes": 10, "in_chans": 3, "image_size": 32, "has_test": True},
    "cifar100": {"num_classes": 100, "in_chans": 3, "image_size": 32, "has_test": True},
    "folder": {"num_classes": None, "in_chans": 3, "image_size": None, "has_test": False},
    "digits": {"num_classes": 10, "in_chans": 1, "image_size": 16, "has_test": False},
    "synthetic": {"num_classes": 4, "in_chans": 3, "image_size": 16, "has_test": True},
}


# --------------------------------------------------------------------------------------------
# ImageFolder with a decoded-tensor cache
# --------------------------------------------------------------------------------------------
def default_cache_dir() -> Path:
    """``$CRITICAL_CACHE_DIR``, else ``$XDG_CACHE_HOME/critical``, else ``~/.cache/critical``.

    Example:
        >>> default_cache_dir().name in ("critical", os.environ.get("CRITICAL_CACHE_DIR", "")[-8:])
        True
    """
    env = os.environ.get("CRITICAL_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "critical"


def _scan_folder(root: Path) -> tuple[list[str], list[tuple[str, int]], list[os.stat_result]]:
    """Classes (sorted sub-folders, hidden ones such as ``.ipynb_checkpoints`` skipped),
    (relative path, label) pairs and stats, as ImageFolder. A class folder without images is an
    error: it would be a class no image has, shifting the labels of the classes after it."""
    classes = sorted(e.name for e in os.scandir(root) if e.is_dir() and not e.name.startswith("."))
    if not classes:
        raise DatasetNotFoundError(
            f"no class folders under {root!s}: expected the ImageFolder layout "
            f"root/<class>/<image>.jpg (extensions {', '.join(IMG_EXTENSIONS)})"
        )
    files: list[tuple[str, int]] = []
    stats: list[os.stat_result] = []
    empty: list[str] = []
    for label, cls in enumerate(classes):
        count = len(files)
        for dirpath, _dirnames, filenames in sorted(os.walk(root / cls, followlinks=True)):
            for fname in sorted(filenames):
                if fname.lower().endswith(IMG_EXTENSIONS):
                    full = os.path.join(dirpath, fname)
                    files.append((os.path.relpath(full, root), label))
                    stats.append(os.stat(full))
        if len(files) == count:
            empty.append(cls)
    if not files:
        raise DatasetNotFoundError(
            f"no image files under {root!s} (extensions {', '.join(IMG_EXTENSIONS)})"
        )
    if empty:
        raise DatasetNotFoundError(
            f"class folder(s) {empty} under {root!s} hold no image files (extensions "
            f"{', '.join(IMG_EXTENSIONS)}): each would be a class without images and shift the "
            "labels of the classes after it. Remove or fill them (hidden folders are skipped)."
        )
    return classes, files, stats


def _folder_key(
    classes: list[str], files: list[tuple[str, int]], stats: list[os.stat_result], opts: str
) -> str:
    """The cache key: the class list, every file's relative path, label, size and mtime, and
    the decode options."""
    h = hashlib.sha256(f"v{_CACHE_VERSION}|{opts}\n".encode())
    h.update(("classes|" + "|".join(classes) + "\n").encode())
    for (rel, label), st in zip(files, stats):
        h.update(f"{rel}|{label}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def load_image_folder(
    root: str | os.PathLike,
    cache_dir: str | os.PathLike | None = None,
    image_size: int | None = None,
    grayscale: bool = False,
    num_workers: int | None = None,
    use_cache: bool = True,
    classes: Sequence[str] | None = None,
) -> ImageData:
    """An ImageFolder-style directory (``root/<class>/<image>``) decoded once to ``uint8``.

    Args:
        root: the directory; class names are its sorted sub-folder names.
        cache_dir: where to keep the decoded tensor file (default :func:`default_cache_dir`).
        image_size: resize every image to ``image_size x image_size`` (antialiased); required
            when the images do not all have the same size.
        grayscale: decode to 1 channel instead of RGB.
        num_workers: decoding threads (default: the number of CPUs, at most 8).
        use_cache: read and write the cache (``False`` always decodes).
        classes: label the images by their class's position in this list (the training
            folder's classes, for a held-out validation or test folder, which may lack some of
            them); a sub-folder that is not in the list raises ``ValueError``.

    The cache file is ``<cache_dir>/folder-<name>-<root hash>-<content hash>.pt``; the content
    hash covers relative paths, labels, sizes, mtimes and decode options, so any change to the
    folder invalidates it. Stale cache files of the same folder are removed on write.

    Example:
        >>> import tempfile
        >>> from PIL import Image
        >>> root = Path(tempfile.mkdtemp())
        >>> for c in ("cat", "dog"):
        ...     (root / c).mkdir()
        ...     Image.new("RGB", (4, 4)).save(root / c / "0.png")
        >>> data = load_image_folder(root, cache_dir=tempfile.mkdtemp())
        >>> tuple(data.images.shape), data.classes
        ((2, 3, 4, 4), ['cat', 'dog'])
    """
    root_path = Path(root).expanduser().resolve()
    if not root_path.is_dir():
        raise DatasetNotFoundError(
            f"image folder {root_path!s} does not exist: expected the ImageFolder layout "
            f"root/<class>/<image>.jpg"
        )
    check_int("image_size", image_size, 1, allow_none=True)
    found, files, stats = _scan_folder(root_path)
    opts = f"gray={bool(grayscale)}|size={image_size}"
    key = _folder_key(found, files, stats, opts)
    cache = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    root_tag = hashlib.sha256(str(root_path).encode()).hexdigest()[:8]
    stem = f"folder-{_safe(root_path.name)}-{root_tag}-"
    cache_file = cache / f"{stem}{key[:20]}.pt"

    if use_cache and cache_file.is_file():
        try:
            blob = torch.load(cache_file, map_location="cpu", weights_only=True)
            if blob.get("key") == key and list(blob["classes"]) == found:
                cached = ImageData(blob["images"], blob["labels"], list(blob["classes"]))
                return _relabel(cached, classes, root_path)
        except Exception:  # noqa: BLE001 - unreadable cache: decode again
            pass

    workers = num_workers if num_workers is not None else min(8, os.cpu_count() or 1)
    imgs = _decode_files([str(root_path / rel) for rel, _ in files], grayscale, image_size, workers)
    shapes = {tuple(im.shape) for im in imgs}
    if len(shapes) > 1:
        raise ValueError(
            f"images under {root_path!s} have different shapes {sorted(shapes)[:4]}...; "
            f"pass image_size=<int> to resize them to a common square size"
        )
    images = torch.stack(imgs)
    labels = torch.tensor([label for _, label in files], dtype=torch.int64)
    data = ImageData(images, labels, found)

    if use_cache:
        cache.mkdir(parents=True, exist_ok=True)
        blob = {
            "key": key,
            "images": images,
            "labels": labels,
            "classes": found,
            "root": str(root_path),
        }
        fd, tmp = tempfile.mkstemp(dir=cache, prefix=".tmp-", suffix=".pt")
        try:
            with os.fdopen(fd, "wb") as f:
                torch.save(blob, f)
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(tmp, 0o666 & ~umask)
            os.replace(tmp, cache_file)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
        for old in cache.glob(f"{stem}*.pt"):
            if old != cache_file:
                try:
                    old.unlink()
                except OSError:
                    pass
        mb = cache_file.stat().st_size / 2**20
        rank_zero_info(
            f"critical: decoded {len(files)} images of {root_path} once and cached them in "
            f"{cache_file} ({mb:.0f} MiB; later runs read it). Delete it (or {cache}) to free "
            "the space; $CRITICAL_CACHE_DIR or cache_dir= puts it elsewhere."
        )
    return _relabel(data, classes, root_path)


def _relabel(data: ImageData, classes: Sequence[str] | None, root: Path) -> ImageData:
    """``data`` labelled by the positions of its class names in ``classes`` (if given)."""
    if classes is None or list(classes) == data.classes:
        return data
    unknown = [c for c in data.classes if c not in classes]
    if unknown:
        raise ValueError(
            f"class folder(s) {unknown} of {str(root)!r} are not classes of the training data "
            f"{list(classes)}"
        )
    mapping = torch.tensor([list(classes).index(c) for c in data.classes], dtype=torch.int64)
    return ImageData(data.images, mapping[data.labels], list(classes))


def _safe(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in name)[:40] or "root"


# --------------------------------------------------------------------------------------------
# dispatch
# --------------------------------------------------------------------------------------------
def load_dataset(
    name: str,
    root: str | os.PathLike | None = None,
    download: bool = False,
    cache_dir: str | os.PathLike | None = None,
    image_size: int | None = None,
    seed: int = 0,
) -> tuple[ImageData, ImageData | None]:
    """Load dataset ``name`` (one of :data:`DATASETS`) as ``(train, test)``.

    ``test`` is the official test split (CIFAR) or ``None`` (folder, digits). ``root`` is the
    CIFAR root (default ``<cache dir>/datasets``) or the image folder (required for
    ``"folder"``). ``image_size``: folder resize, digits size (default 16), synthetic size
    (default 16). Synthetic data has a generated test set of 256 images.

    Example:
        >>> train, test = load_dataset("synthetic", image_size=8)
        >>> len(train), len(test), train.image_size
        (512, 256, 8)
    """
    check_choice("dataset", name, DATASETS)
    if name in ("cifar10", "cifar100"):
        r = root if root is not None else default_cache_dir() / "datasets"
        return (
            load_cifar(name, r, train=True, download=download),
            load_cifar(name, r, train=False, download=download),
        )
    if name == "folder":
        if root is None:
            raise ValueError("dataset='folder' needs root=<path of an ImageFolder directory>")
        return load_image_folder(root, cache_dir=cache_dir, image_size=image_size), None
    if name == "digits":
        return load_digits(image_size if image_size is not None else 16), None
    size = image_size if image_size is not None else 16
    return (
        make_synthetic(512, 4, size, 3, seed=seed),
        make_synthetic(256, 4, size, 3, seed=seed, sample_seed=1),
    )


def load_held_out(
    name: str, folder: str, train: ImageData, cache_dir: str | None, image_size: int | None
) -> ImageData:
    """The ImageFolder ``folder`` (a ``val_root`` / ``test_root``: ``name``) labelled by the
    training classes, with the training images' shape (else a ``ValueError``)."""
    data = load_image_folder(
        os.path.expanduser(folder),
        cache_dir=cache_dir,
        image_size=image_size,
        classes=train.classes,
    )
    if data.images.shape[1:] != train.images.shape[1:]:
        raise ValueError(
            f"{name} images have shape {tuple(data.images.shape[1:])}, the training images "
            f"{tuple(train.images.shape[1:])}: pass image_size=<int> to resize both"
        )
    return data
