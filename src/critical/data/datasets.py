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
  The cache key hashes the relative paths, sizes and modification times of all image files
  (plus the decode options), so adding, removing or touching a file invalidates it; writes are
  atomic (temporary file + :func:`os.replace`).
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
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor

__all__ = [
    "DATASETS",
    "DATASET_INFO",
    "DatasetNotFoundError",
    "ImageData",
    "default_cache_dir",
    "load_cifar",
    "load_dataset",
    "load_digits",
    "load_image_folder",
    "make_synthetic",
    "stratified_split",
]

DATASETS = ("cifar10", "cifar100", "folder", "digits", "synthetic")
IMG_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".gif")
_CACHE_VERSION = 1

# Static facts known before loading (``None``: depends on the data or on options).
DATASET_INFO: dict[str, dict[str, object]] = {
    "cifar10": {"num_classes": 10, "in_chans": 3, "image_size": 32, "has_test": True},
    "cifar100": {"num_classes": 100, "in_chans": 3, "image_size": 32, "has_test": True},
    "folder": {"num_classes": None, "in_chans": 3, "image_size": None, "has_test": False},
    "digits": {"num_classes": 10, "in_chans": 1, "image_size": 16, "has_test": False},
    "synthetic": {"num_classes": 4, "in_chans": 3, "image_size": 16, "has_test": True},
}

_CIFAR = {
    "cifar10": (
        "CIFAR-10",
        "cifar-10-batches-py",
        "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
    ),
    "cifar100": (
        "CIFAR-100",
        "cifar-100-python",
        "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
    ),
}


class DatasetNotFoundError(FileNotFoundError):
    """A dataset's files are missing and could not be downloaded; the message says what to do."""


@dataclass
class ImageData:
    """Images as a ``uint8`` tensor ``(N, C, H, W)``, ``int64`` labels ``(N,)``, class names.

    Example:
        >>> d = ImageData(torch.zeros(4, 1, 2, 2, dtype=torch.uint8), torch.tensor([0, 1, 0, 1]),
        ...               ["a", "b"])
        >>> len(d), d.num_classes, d.in_chans, d.image_size
        (4, 2, 1, 2)
        >>> len(d.subset(torch.tensor([0, 2])))
        2
    """

    images: Tensor
    labels: Tensor
    classes: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not isinstance(self.images, Tensor) or self.images.ndim != 4:
            raise ValueError(f"images must be a (N, C, H, W) tensor, got {_describe(self.images)}")
        if self.images.dtype != torch.uint8:
            raise ValueError(f"images must be uint8, got {self.images.dtype}")
        self.labels = torch.as_tensor(self.labels).to(torch.int64)
        if self.labels.shape != (self.images.shape[0],):
            raise ValueError(
                f"labels must have shape ({self.images.shape[0]},), got {tuple(self.labels.shape)}"
            )
        if not self.classes:
            n = int(self.labels.max()) + 1 if len(self.labels) else 0
            self.classes = [str(i) for i in range(n)]
        self.classes = list(self.classes)

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def num_classes(self) -> int:
        """Number of classes (``len(classes)``)."""
        return len(self.classes)

    @property
    def in_chans(self) -> int:
        """Number of channels C."""
        return int(self.images.shape[1])

    @property
    def image_size(self) -> int:
        """Image height H (images are square in every bundled dataset)."""
        return int(self.images.shape[2])

    def subset(self, indices: Tensor) -> ImageData:
        """The images at ``indices`` (a new ``ImageData`` sharing class names)."""
        idx = torch.as_tensor(indices, dtype=torch.long, device=self.images.device)
        return ImageData(self.images[idx], self.labels[idx.to(self.labels.device)], self.classes)

    def to(self, device: torch.device | str) -> ImageData:
        """A copy on ``device`` (no copy if already there)."""
        return ImageData(self.images.to(device), self.labels.to(device), self.classes)

    def channel_stats(self, chunk: int = 4096) -> tuple[list[float], list[float]]:
        """Per-channel mean and std of the pixels on the [0, 1] scale (for normalization layers).

        Example:
            >>> d = ImageData(torch.tensor([0, 255], dtype=torch.uint8).view(2, 1, 1, 1),
            ...               torch.tensor([0, 1]))
            >>> d.channel_stats()
            ([0.5], [0.5])
        """
        c = self.in_chans
        s = torch.zeros(c, dtype=torch.float64)
        s2 = torch.zeros(c, dtype=torch.float64)
        count = 0
        for i in range(0, len(self), chunk):
            x = self.images[i : i + chunk].to(torch.float64).div_(255.0)
            s += x.sum(dim=(0, 2, 3)).cpu()
            s2 += x.square().sum(dim=(0, 2, 3)).cpu()
            count += x.shape[0] * x.shape[2] * x.shape[3]
        if count == 0:
            return [0.0] * c, [1.0] * c
        mean = s / count
        std = (s2 / count - mean.square()).clamp_min(0).sqrt()
        return [round(float(v), 4) for v in mean], [round(float(v), 4) for v in std]


def _describe(x: object) -> str:
    return f"shape {tuple(x.shape)}" if isinstance(x, Tensor) else type(x).__name__


# --------------------------------------------------------------------------------------------
# CIFAR
# --------------------------------------------------------------------------------------------
def _cifar_error(name: str, root: str | os.PathLike, cause: str) -> DatasetNotFoundError:
    title, folder, url = _CIFAR[name]
    target = Path(root).expanduser() / folder
    return DatasetNotFoundError(
        f"{title} not found under {Path(root).expanduser()!s} ({cause}). Either download "
        f"{url} and extract it into {Path(root).expanduser()!s} so that {target!s}/ exists, "
        f"or pass download=True on a machine with internet access, or point dataset='folder' "
        f"at an ImageFolder-style directory (root/<class>/<image>.jpg)."
    )


def load_cifar(
    name: str = "cifar10",
    root: str | os.PathLike = "~/.cache/critical/datasets",
    train: bool = True,
    download: bool = False,
) -> ImageData:
    """CIFAR-10 or CIFAR-100 (train or official test split) through torchvision.

    Raises :class:`DatasetNotFoundError` (a ``FileNotFoundError``) when the files are missing and
    ``download`` is false or fails; the message names the folder and the archive URL.

    Example:
        >>> import tempfile
        >>> try:
        ...     load_cifar("cifar10", root=tempfile.mkdtemp(), download=False)
        ... except DatasetNotFoundError as err:
        ...     print("cifar-10-python.tar.gz" in str(err))
        True
    """
    if name not in _CIFAR:
        raise ValueError(f"name must be one of {tuple(_CIFAR)}, got {name!r}")
    from torchvision import datasets as tvd

    cls = tvd.CIFAR10 if name == "cifar10" else tvd.CIFAR100
    root = os.path.expanduser(os.fspath(root))
    try:
        ds = cls(root=root, train=train, download=download)
    except RuntimeError as err:  # torchvision: "Dataset not found or corrupted..."
        cause = "files missing or corrupted" + ("" if download else ", download=False")
        raise _cifar_error(name, root, cause) from err
    except OSError as err:  # URLError and friends: no internet
        raise _cifar_error(name, root, f"download failed: {err}") from err
    images = torch.from_numpy(ds.data).permute(0, 3, 1, 2).contiguous()
    labels = torch.as_tensor(ds.targets, dtype=torch.int64)
    return ImageData(images, labels, list(ds.classes))


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
    """Classes (sorted sub-folders), (relative path, label) pairs and stats, as ImageFolder."""
    classes = sorted(e.name for e in os.scandir(root) if e.is_dir())
    if not classes:
        raise DatasetNotFoundError(
            f"no class folders under {root!s}: expected the ImageFolder layout "
            f"root/<class>/<image>.jpg (extensions {', '.join(IMG_EXTENSIONS)})"
        )
    files: list[tuple[str, int]] = []
    stats: list[os.stat_result] = []
    for label, cls in enumerate(classes):
        for dirpath, _dirnames, filenames in sorted(os.walk(root / cls, followlinks=True)):
            for fname in sorted(filenames):
                if fname.lower().endswith(IMG_EXTENSIONS):
                    full = os.path.join(dirpath, fname)
                    files.append((os.path.relpath(full, root), label))
                    stats.append(os.stat(full))
    if not files:
        raise DatasetNotFoundError(
            f"no image files under {root!s} (extensions {', '.join(IMG_EXTENSIONS)})"
        )
    return classes, files, stats


def _folder_key(files: list[tuple[str, int]], stats: list[os.stat_result], opts: str) -> str:
    h = hashlib.sha256(f"v{_CACHE_VERSION}|{opts}\n".encode())
    for (rel, label), st in zip(files, stats):
        h.update(f"{rel}|{label}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def _decode_files(
    paths: list[str], grayscale: bool, image_size: int | None, num_workers: int
) -> list[Tensor]:
    with warnings.catch_warnings():
        # torchvision >= 0.29 deprecates its image codecs in favour of torchcodec; they still work
        warnings.filterwarnings("ignore", ".*decoding and encoding capabilities.*")
        try:
            from torchvision.io import ImageReadMode, decode_image, decode_jpeg, read_file
        except ImportError:  # pragma: no cover - future torchvision without image codecs
            return _decode_files_pil(paths, grayscale, image_size)
        return _decode_files_tv(
            paths,
            grayscale,
            image_size,
            num_workers,
            ImageReadMode,
            decode_image,
            decode_jpeg,
            read_file,
        )


def _resize(img: Tensor, image_size: int | None) -> Tensor:
    if image_size is not None and tuple(img.shape[-2:]) != (image_size, image_size):
        from torchvision.transforms.v2.functional import resize

        img = resize(img, [image_size, image_size], antialias=True)
    return img


def _decode_files_pil(paths: list[str], grayscale: bool, image_size: int | None) -> list[Tensor]:
    import numpy as np
    from PIL import Image

    out = []
    for p in paths:
        with Image.open(p) as im:
            arr = np.asarray(im.convert("L" if grayscale else "RGB"))
        t = torch.from_numpy(arr.copy())
        t = t.unsqueeze(0) if t.ndim == 2 else t.permute(2, 0, 1)
        out.append(_resize(t.contiguous(), image_size))
    return out


def _decode_files_tv(
    paths, grayscale, image_size, num_workers, ImageReadMode, decode_image, decode_jpeg, read_file
) -> list[Tensor]:
    mode = ImageReadMode.GRAY if grayscale else ImageReadMode.RGB

    def decode_one(p: str, data: Tensor) -> Tensor:
        try:
            return decode_image(data, mode=mode)
        except RuntimeError as err:
            raise ValueError(f"could not decode image {p}: {err}") from err

    def decode_chunk(chunk: list[str]) -> list[Tensor]:
        datas = [read_file(p) for p in chunk]
        jpeg = [i for i, p in enumerate(chunk) if p.lower().endswith((".jpg", ".jpeg"))]
        out: list[Tensor | None] = [None] * len(chunk)
        if jpeg:
            try:  # a list of JPEGs decodes about 2x faster than one call per image
                for i, img in zip(jpeg, decode_jpeg([datas[i] for i in jpeg], mode=mode)):
                    out[i] = img
            except RuntimeError:  # find the culprit (or a mislabelled PNG) one by one
                for i in jpeg:
                    out[i] = decode_one(chunk[i], datas[i])
        for i, p in enumerate(chunk):
            img = out[i] if out[i] is not None else decode_one(p, datas[i])
            out[i] = _resize(img, image_size)
        return out  # type: ignore[return-value]

    size = max(1, min(1024, len(paths) // max(1, 4 * num_workers) + 1))
    chunks = [paths[i : i + size] for i in range(0, len(paths), size)]
    if num_workers <= 1 or len(chunks) == 1:
        return [img for c in chunks for img in decode_chunk(c)]
    with ThreadPoolExecutor(num_workers) as pool:  # decoding releases the GIL
        return [img for part in pool.map(decode_chunk, chunks) for img in part]


def load_image_folder(
    root: str | os.PathLike,
    cache_dir: str | os.PathLike | None = None,
    image_size: int | None = None,
    grayscale: bool = False,
    num_workers: int | None = None,
    use_cache: bool = True,
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
    if image_size is not None and (not isinstance(image_size, int) or image_size < 1):
        raise ValueError(f"image_size must be None or an int >= 1, got {image_size!r}")
    classes, files, stats = _scan_folder(root_path)
    opts = f"gray={bool(grayscale)}|size={image_size}"
    key = _folder_key(files, stats, opts)
    cache = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    root_tag = hashlib.sha256(str(root_path).encode()).hexdigest()[:8]
    stem = f"folder-{_safe(root_path.name)}-{root_tag}-"
    cache_file = cache / f"{stem}{key[:20]}.pt"

    if use_cache and cache_file.is_file():
        try:
            blob = torch.load(cache_file, map_location="cpu", weights_only=True)
            if blob.get("key") == key:
                return ImageData(blob["images"], blob["labels"], list(blob["classes"]))
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
    data = ImageData(images, labels, classes)

    if use_cache:
        cache.mkdir(parents=True, exist_ok=True)
        blob = {
            "key": key,
            "images": images,
            "labels": labels,
            "classes": classes,
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
    return data


def _safe(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in name)[:40] or "root"


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


# --------------------------------------------------------------------------------------------
# splits and dispatch
# --------------------------------------------------------------------------------------------
def stratified_split(
    labels: Tensor,
    val_size: int | float,
    seed: int = 0,
) -> tuple[Tensor, Tensor]:
    """Seeded, stratified split of ``range(len(labels))`` into sorted (train, val) indices.

    ``val_size`` is a count (int) or a fraction in [0, 1) (float). Each class contributes
    its share of ``val_size`` (largest-remainder rounding, so the total is exact); the choice
    within a class is a seeded permutation, so the split depends only on ``(labels, val_size,
    seed)``.

    Example:
        >>> y = torch.tensor([0] * 8 + [1] * 4)
        >>> tr, va = stratified_split(y, val_size=3, seed=0)
        >>> len(tr), y[va].bincount().tolist()
        (9, [2, 1])
    """
    labels = torch.as_tensor(labels).cpu().to(torch.int64)
    n = labels.numel()
    if isinstance(val_size, bool) or not isinstance(val_size, (int, float)):
        msg = f"val_size must be an int count or a float fraction, got {val_size!r}"
        raise ValueError(msg)
    if isinstance(val_size, float):
        if not 0.0 <= val_size < 1.0:
            raise ValueError(f"a float val_size must be a fraction in [0, 1), got {val_size!r}")
        n_val = round(val_size * n)
    else:
        if not 0 <= val_size < max(n, 1):
            raise ValueError(f"an int val_size must be in [0, {n - 1}], got {val_size!r}")
        n_val = val_size
    if n_val == 0:
        return torch.arange(n), torch.zeros(0, dtype=torch.int64)
    classes, counts = torch.unique(labels, return_counts=True)
    exact = counts.double() * n_val / n
    quota = exact.floor().long()
    remainder = n_val - int(quota.sum())
    if remainder > 0:
        order = torch.argsort(-(exact - quota.double()), stable=True)
        quota[order[:remainder]] += 1
    g = torch.Generator().manual_seed(int(seed))
    val_parts = []
    for c, q in zip(classes.tolist(), quota.tolist()):
        members = (labels == c).nonzero().squeeze(1)
        perm = torch.randperm(members.numel(), generator=g)
        val_parts.append(members[perm[:q]])
    val_idx = torch.cat(val_parts).sort().values
    mask = torch.ones(n, dtype=torch.bool)
    mask[val_idx] = False
    return mask.nonzero().squeeze(1), val_idx


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
    if name not in DATASETS:
        raise ValueError(f"dataset must be one of {DATASETS}, got {name!r}")
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
