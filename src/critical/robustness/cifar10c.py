"""The official CIFAR-10-C files: loading one (corruption, severity) block, and accuracy on them.

CIFAR-10-C ships ``<name>.npy`` (``(50000, 32, 32, 3)`` uint8: 5 severities x 10,000 test
images, severity 1 first) per corruption and ``labels.npy``; they are read through memory maps.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from critical.robustness._common import (
    CIFAR10C_CORRUPTIONS,
    CIFAR10C_EXTRA_CORRUPTIONS,
    SEVERITIES,
    _check_severities,
    _check_severity,
    _chunks,
    _model_device_dtype,
    _resolve_corruptions,
    _summarize,
    eval_mode,
)

# ----------------------------------------------------------------------------------------------
# official CIFAR-10-C files
# ----------------------------------------------------------------------------------------------


def _cifar10c_names(root: Path) -> list[str]:
    found = sorted(p.stem for p in root.glob("*.npy") if p.stem != "labels")
    order = list(CIFAR10C_CORRUPTIONS) + list(CIFAR10C_EXTRA_CORRUPTIONS)
    return sorted(found, key=lambda n: (order.index(n) if n in order else len(order), n))


def load_cifar10c(
    root: str | os.PathLike,
    name: str,
    severity: int,
    num_images: int | None = None,
) -> tuple[Tensor, Tensor]:
    """Images and labels of one CIFAR-10-C corruption at one severity.

    Reads ``<root>/<name>.npy`` (``(5 * n, H, W, C)`` uint8, severity 1 first; ``n = 10000`` for
    the official files) and ``<root>/labels.npy`` through memory maps, so only the requested
    block (its first ``num_images`` images) is read. Returns float images ``(N, C, H, W)`` in
    ``[0, 1]`` and int64 labels.
    """
    root = Path(root)
    _check_severity(severity)
    path = root / f"{name}.npy"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found; corruptions in {root}: {_cifar10c_names(root)}")
    labels_path = root / "labels.npy"
    if not labels_path.is_file():
        raise FileNotFoundError(f"{labels_path} not found (CIFAR-10-C ships labels.npy)")
    data = np.load(path, mmap_mode="r")
    labels = np.load(labels_path, mmap_mode="r")
    if data.ndim != 4 or data.dtype != np.uint8 or data.shape[0] % 5 != 0:
        raise ValueError(
            f"{path} must hold uint8 images (5 * n, H, W, C), got {data.dtype} {data.shape}"
        )
    if labels.shape[0] != data.shape[0]:
        raise ValueError(f"{labels_path} has {labels.shape[0]} labels for {data.shape[0]} images")
    per = data.shape[0] // 5
    n = per if num_images is None else min(int(num_images), per)
    start = (severity - 1) * per
    x = torch.from_numpy(np.array(data[start : start + n])).permute(0, 3, 1, 2)  # a copy
    y = torch.from_numpy(np.asarray(labels[start : start + n]).astype(np.int64))
    return x.float().div_(255), y


def cifar10c_accuracy(
    model: nn.Module,
    root: str | os.PathLike,
    corruptions: str | Sequence[str] | None = "default",
    severities: Sequence[int] = SEVERITIES,
    num_images: int | None = None,
    batch_size: int = 256,
) -> dict[str, Any]:
    """Accuracy on the official CIFAR-10-C files in ``root`` (see :func:`load_cifar10c`).

    ``corruptions``: ``"default"`` (those of the 15 benchmark corruptions found in ``root``),
    ``"all"`` (every ``<name>.npy`` found), or names. ``num_images`` caps the images per
    (corruption, severity), taking the first ones. Same return format as
    :func:`corruption_accuracy`, with ``"source": "cifar10c"``.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"CIFAR-10-C directory {root} does not exist")
    names = _resolve_corruptions(corruptions, _cifar10c_names(root))
    if not names:
        raise FileNotFoundError(f"no CIFAR-10-C corruption files (<name>.npy) found in {root}")
    sev = _check_severities(severities)
    device, dtype = _model_device_dtype(model)
    per: dict[str, dict[int, float]] = {}
    n_used = 0
    with eval_mode(model), torch.no_grad():
        for name in names:
            counts = []
            for s in sev:
                x, y = load_cifar10c(root, name, s, num_images)
                n_used = len(x)
                correct = torch.zeros((), dtype=torch.long, device=device)
                for sl in _chunks(len(x), batch_size):
                    xb = x[sl].to(device=device, dtype=dtype)
                    correct += (model(xb).argmax(dim=-1) == y[sl].to(device)).sum()
                counts.append((correct, len(x)))
            per[name] = {s: c.item() / max(n, 1) for s, (c, n) in zip(sev, counts)}
    return _summarize(per, "cifar10c", root=str(root), severities=sev, num_images=n_used)
