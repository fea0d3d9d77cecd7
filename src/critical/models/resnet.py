"""He et al. 2016 CIFAR ResNets: :class:`CifarBasicBlock` and :class:`CifarResNet` (depth 6n + 2).

Registered in timm as ``cifar_resnet20`` / ``32`` / ``44`` / ``56`` by :mod:`critical.models`.
"""

from __future__ import annotations

import torch
from torch import nn

from critical.models._head import ClassifierHead

# ---------------------------------------------------------------------------------------------
# He et al. 2016 CIFAR ResNets
# ---------------------------------------------------------------------------------------------


class CifarBasicBlock(nn.Module):
    """Two 3x3 conv-BN layers with a residual connection (He et al. 2016, CIFAR variant).

    Args:
        in_chs: input channels.
        out_chs: output channels.
        stride: stride of the first convolution (2 at the start of stages 2 and 3).
        shortcut: ``"projection"`` (1x1 conv + BN when the shape changes, option B) or
            ``"pad"`` (strided identity + zero channel padding, option A, parameter-free).

    Example:
        >>> import torch
        >>> block = CifarBasicBlock(16, 32, stride=2)
        >>> block(torch.rand(1, 16, 8, 8)).shape
        torch.Size([1, 32, 4, 4])
    """

    def __init__(self, in_chs: int, out_chs: int, stride: int = 1, shortcut: str = "projection"):
        super().__init__()
        if shortcut not in ("projection", "pad"):
            raise ValueError(f"shortcut must be one of ['projection', 'pad'], got {shortcut!r}")
        self.conv1 = nn.Conv2d(in_chs, out_chs, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_chs)
        self.act1 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(out_chs, out_chs, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_chs)
        self.act2 = nn.ReLU(inplace=True)
        self.stride = stride
        self.pad_chs = 0
        self.downsample: nn.Module | None = None
        if stride != 1 or in_chs != out_chs:
            if shortcut == "projection":
                self.downsample = nn.Sequential(
                    nn.Conv2d(in_chs, out_chs, 1, stride=stride, bias=False),
                    nn.BatchNorm2d(out_chs),
                )
            else:
                if out_chs < in_chs:
                    raise ValueError("shortcut='pad' needs out_chs >= in_chs")
                self.pad_chs = out_chs - in_chs

    def zero_init_last(self) -> None:
        """Zero the last BN gain so the block starts as the identity (timm's convention)."""
        nn.init.zeros_(self.bn2.weight)

    def _shortcut(self, x: torch.Tensor) -> torch.Tensor:
        if self.downsample is not None:
            return self.downsample(x)
        if self.stride != 1:
            x = x[:, :, :: self.stride, :: self.stride]
        if self.pad_chs:
            x = nn.functional.pad(
                x, (0, 0, 0, 0, self.pad_chs // 2, self.pad_chs - self.pad_chs // 2)
            )
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.act1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.act2(out + self._shortcut(x))


class CifarResNet(ClassifierHead):
    """He et al. 2016 ResNet for 32x32 images: depth ``6n + 2``, three stages of ``n`` blocks.

    Stem: 3x3 conv (``width`` channels) + BN + ReLU; stages of ``width``, ``2 width``, ``4 width``
    channels (16/32/64 by default), the last two starting with stride 2; global average pooling
    and a linear classifier. Depth 20/32/44/56/110 have 0.27M/0.47M/0.66M/0.86M/1.7M parameters.

    Args:
        depth: total number of weighted layers, ``6n + 2`` (20, 32, 44, 56, 110, ...).
        num_classes: classifier outputs (0 for a model without head, returning features).
        in_chans: input channels.
        width: channels of the first stage.
        shortcut: ``"projection"`` (option B, default) or ``"pad"`` (option A).
        drop_rate: dropout before the classifier.
        zero_init_last: zero the last BN gain of every block at initialization.

    Example:
        >>> import torch
        >>> net = CifarResNet(depth=20, num_classes=10)
        >>> net(torch.rand(2, 3, 32, 32)).shape
        torch.Size([2, 10])
        >>> net.forward_features(torch.rand(2, 3, 32, 32)).shape
        torch.Size([2, 64, 8, 8])
    """

    # the stages, added with add_module in __init__
    layer1: nn.Sequential
    layer2: nn.Sequential
    layer3: nn.Sequential

    def __init__(
        self,
        depth: int = 20,
        num_classes: int = 10,
        in_chans: int = 3,
        width: int = 16,
        shortcut: str = "projection",
        drop_rate: float = 0.0,
        zero_init_last: bool = False,
    ) -> None:
        super().__init__()
        if depth < 8 or (depth - 2) % 6 != 0:
            raise ValueError(f"depth must be 6n + 2 with n >= 1 (20, 32, 44, 56, 110), got {depth}")
        if shortcut not in ("projection", "pad"):
            raise ValueError(f"shortcut must be one of ['projection', 'pad'], got {shortcut!r}")
        n = (depth - 2) // 6
        self.depth = depth
        self.num_classes = num_classes
        self.drop_rate = drop_rate
        self.conv1 = nn.Conv2d(in_chans, width, 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.act1 = nn.ReLU(inplace=True)
        chs = [width, 2 * width, 4 * width]
        in_chs = width
        for i, out_chs in enumerate(chs):
            blocks = []
            for j in range(n):
                stride = 2 if (i > 0 and j == 0) else 1
                blocks.append(CifarBasicBlock(in_chs, out_chs, stride, shortcut))
                in_chs = out_chs
            self.add_module(f"layer{i + 1}", nn.Sequential(*blocks))
        self.num_features = in_chs
        self.global_pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(in_chs, num_classes) if num_classes > 0 else nn.Identity()
        self.feature_info = [
            {"num_chs": width, "reduction": 1, "module": "act1"},
            {"num_chs": chs[0], "reduction": 1, "module": "layer1"},
            {"num_chs": chs[1], "reduction": 2, "module": "layer2"},
            {"num_chs": chs[2], "reduction": 4, "module": "layer3"},
        ]
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        if zero_init_last:
            for m in self.modules():
                if isinstance(m, CifarBasicBlock):
                    m.zero_init_last()

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act1(self.bn1(self.conv1(x)))
        return self.layer3(self.layer2(self.layer1(x)))

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.global_pool(x).flatten(1)
        if self.drop_rate:
            x = nn.functional.dropout(x, p=self.drop_rate, training=self.training)
        return x if pre_logits else self.fc(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))
