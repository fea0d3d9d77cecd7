"""The 1-D convolutional ResNet of Wang, Yan & Oates (2017), the standard baseline for time-series
classification (:class:`ResNet1d`).

Wang et al., "Time series classification from scratch with deep neural networks: a strong
baseline" (IJCNN 2017); it came out best of the deep models in Ismail Fawaz et al.'s 2019 review
("Deep learning for time series classification: a review"). Three residual blocks of three
convolutions each (kernel sizes 8, 5, 3; 64, 128, 128 filters; stride 1, padded to keep the
length), batch normalization after every convolution, ReLU, a shortcut per block (a 1x1
convolution + BN when the width changes, else BN alone, as in Ismail Fawaz et al.'s reference
code), global average pooling over time and a linear classifier. Input ``(B, C, T)``; any
length T.

Registered in timm as ``resnet1d`` (and ``resnet1d_small``, half the widths, for CPU-sized
runs) by :mod:`critical.models`.

Example:
    >>> import torch
    >>> net = ResNet1d(num_classes=4, in_chans=6)
    >>> net(torch.randn(2, 6, 100)).shape
    torch.Size([2, 4])
    >>> sum(p.numel() for p in net.parameters())
    506244
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from typing_extensions import override

from critical.models._head import ClassifierHead

__all__ = ["ResNet1d", "ResidualBlock1d"]


def _conv_bn(cin: int, cout: int, kernel: int) -> tuple[nn.Conv1d, nn.BatchNorm1d]:
    # "same" output length: pad kernel // 2 on both sides; for an even kernel the one extra
    # output step is cropped in forward (PyTorch's padding="same" would copy the input instead)
    conv = nn.Conv1d(cin, cout, kernel, padding=kernel // 2, bias=False)
    return conv, nn.BatchNorm1d(cout)


class ResidualBlock1d(nn.Module):
    """Three conv-BN layers (ReLU between them) plus a shortcut, then ReLU.

    Example:
        >>> block = ResidualBlock1d(3, 8)
        >>> block(torch.randn(2, 3, 20)).shape
        torch.Size([2, 8, 20])
    """

    def __init__(self, cin: int, cout: int, kernel_sizes: Sequence[int] = (8, 5, 3)) -> None:
        super().__init__()
        if len(kernel_sizes) != 3 or any(int(k) < 1 for k in kernel_sizes):
            raise ValueError(f"kernel_sizes must be three positive ints, got {kernel_sizes}")
        k1, k2, k3 = (int(k) for k in kernel_sizes)
        self.conv1, self.bn1 = _conv_bn(cin, cout, k1)
        self.conv2, self.bn2 = _conv_bn(cout, cout, k2)
        self.conv3, self.bn3 = _conv_bn(cout, cout, k3)
        self.act = nn.ReLU(inplace=True)
        self.shortcut: nn.Module
        if cin != cout:
            self.shortcut = nn.Sequential(nn.Conv1d(cin, cout, 1, bias=False), nn.BatchNorm1d(cout))
        else:
            self.shortcut = nn.BatchNorm1d(cout)

    @override
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = x.shape[-1]
        h = self.act(self.bn1(self.conv1(x)[..., :t]))
        h = self.act(self.bn2(self.conv2(h)[..., :t]))
        h = self.bn3(self.conv3(h)[..., :t])
        out: torch.Tensor = self.act(h + self.shortcut(x))
        return out


class ResNet1d(ClassifierHead):
    """Wang et al.'s ResNet for time-series classification (0.5M parameters at the default widths).

    Args:
        num_classes: classifier outputs (0 for no head).
        in_chans: channels (variables) of the series.
        widths: filters of the three residual blocks (default 64, 128, 128).
        kernel_sizes: kernel sizes of the three convolutions of each block (default 8, 5, 3).
        drop_rate: dropout before the classifier (0: none, as in the paper).

    Example:
        >>> net = ResNet1d(num_classes=3, in_chans=1, widths=(8, 16, 16))
        >>> net.forward_features(torch.randn(5, 1, 50)).shape
        torch.Size([5, 16, 50])
    """

    def __init__(
        self,
        num_classes: int = 10,
        in_chans: int = 1,
        widths: Sequence[int] = (64, 128, 128),
        kernel_sizes: Sequence[int] = (8, 5, 3),
        drop_rate: float = 0.0,
    ) -> None:
        super().__init__()
        if len(widths) == 0 or any(int(w) < 1 for w in widths):
            raise ValueError(f"widths must be a non-empty sequence of positive ints, got {widths}")
        if in_chans < 1:
            raise ValueError(f"in_chans must be >= 1, got {in_chans}")
        self.num_classes = num_classes
        self.drop_rate = float(drop_rate)
        blocks = []
        cin = in_chans
        for w in widths:
            blocks.append(ResidualBlock1d(cin, int(w), kernel_sizes))
            cin = int(w)
        self.blocks = nn.Sequential(*blocks)
        self.num_features = cin
        self.global_pool = nn.AdaptiveAvgPool1d(1)
        self.fc: nn.Module = nn.Linear(cin, num_classes) if num_classes > 0 else nn.Identity()
        for m in self.modules():
            if isinstance(m, nn.Conv1d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Features ``(B, widths[-1], T)`` before pooling."""
        if x.ndim != 3:
            raise ValueError(f"ResNet1d takes series of shape (B, C, T), got {tuple(x.shape)}")
        features: torch.Tensor = self.blocks(x)
        return features

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Global average pooling over time, dropout, classifier."""
        x = self.global_pool(x).flatten(1)
        if self.drop_rate:
            x = nn.functional.dropout(x, p=self.drop_rate, training=self.training)
        if pre_logits:
            return x
        logits: torch.Tensor = self.fc(x)
        return logits

    @override
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))
