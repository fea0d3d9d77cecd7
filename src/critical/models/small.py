"""A very small CNN (:class:`SmallCNN`) for the CPU quick start on scikit-learn digits.

Registered in timm as ``small_cnn`` by :mod:`critical.models`.
"""

from __future__ import annotations

import torch
from torch import nn

from critical.models._head import ClassifierHead

# ---------------------------------------------------------------------------------------------
# A very small CNN for the CPU quick start
# ---------------------------------------------------------------------------------------------


class SmallCNN(ClassifierHead):
    """A few conv-BN-ReLU layers and global average pooling: seconds per epoch on a CPU.

    The first layer keeps the resolution, each later one halves it (8x8 -> 8, 4, 2 with the
    default three widths), so it fits 8x8 scikit-learn digits as well as 16x16 or 32x32 images.

    Args:
        num_classes: classifier outputs (0 for no head).
        in_chans: input channels (1 for digits).
        widths: channels of each conv layer.
        drop_rate: dropout before the classifier.

    Example:
        >>> import torch
        >>> net = SmallCNN(num_classes=10, in_chans=1)
        >>> net(torch.rand(4, 1, 8, 8)).shape
        torch.Size([4, 10])
    """

    def __init__(
        self,
        num_classes: int = 10,
        in_chans: int = 3,
        widths: tuple[int, ...] | list[int] = (32, 64, 128),
        drop_rate: float = 0.0,
    ) -> None:
        super().__init__()
        if len(widths) == 0 or any(int(w) < 1 for w in widths):
            raise ValueError(f"widths must be a non-empty sequence of positive ints, got {widths}")
        self.num_classes = num_classes
        self.drop_rate = drop_rate
        layers: list[tuple[str, nn.Module]] = []
        chs = in_chans
        for i, w in enumerate(widths):
            stride = 1 if i == 0 else 2
            layers.append(
                (f"conv{i + 1}", nn.Conv2d(chs, int(w), 3, stride, padding=1, bias=False))
            )
            layers.append((f"bn{i + 1}", nn.BatchNorm2d(int(w))))
            layers.append((f"act{i + 1}", nn.ReLU(inplace=True)))
            chs = int(w)
        from collections import OrderedDict

        self.features = nn.Sequential(OrderedDict(layers))
        self.num_features = chs
        self.global_pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(chs, num_classes) if num_classes > 0 else nn.Identity()
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.global_pool(x).flatten(1)
        if self.drop_rate:
            x = nn.functional.dropout(x, p=self.drop_rate, training=self.training)
        return x if pre_logits else self.fc(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))
