"""CIFAR-10 and CIFAR-100 through torchvision, with an offline error that says what to do.

:func:`load_cifar` raises :class:`~critical.data.image_data.DatasetNotFoundError` naming the
folder to create and the archive URL to extract there when the files are missing.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from critical.data.image_data import DatasetNotFoundError, ImageData

__all__ = ["load_cifar"]

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
