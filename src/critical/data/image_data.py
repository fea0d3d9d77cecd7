"""The in-memory dataset type (:class:`ImageData`) and the missing-files error.

Every loader of :mod:`critical.data.datasets` returns an :class:`ImageData`: ``uint8`` images
``(N, C, H, W)``, ``int64`` labels ``(N,)`` and the class names.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

__all__ = ["DatasetNotFoundError", "ImageData"]


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
