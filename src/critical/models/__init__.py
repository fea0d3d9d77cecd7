"""CIFAR-sized models, registered in timm's model registry.

Importing this module registers the architectures below with :func:`timm.models.register_model`,
so both ``critical.models.create_model(name)`` and ``timm.create_model(name)`` build them. Every
model takes float images in ``[0, 1]`` *without* normalization: normalization lives in
:class:`critical.task.ImageClassifier` (a registered buffer applied in ``forward``), so adversarial
attacks and augmentations can work in pixel space.

=====================  ==========  ====================================================
name                   params*     what it is
=====================  ==========  ====================================================
``resnet18_cifar``     11.17M      timm ``ResNet`` (BasicBlock, [2, 2, 2, 2]) with a CIFAR
                                   stem: 3x3 conv stride 1, no max-pool (the usual
                                   "ResNet-18 for CIFAR", e.g. kuangliu/pytorch-cifar)
``cifar_resnet20``     0.27M      He et al. 2016 CIFAR ResNet, depth 6n+2, 16/32/64 channels
``cifar_resnet32``     0.47M      (same family)
``cifar_resnet44``     0.66M      (same family)
``cifar_resnet56``     0.86M      (same family)
``vit_cifar_tiny``     2.70M      timm ``VisionTransformer``: 32x32, patch 4 (64 tokens + cls),
                                   dim 192, depth 9, 3 heads, mlp_ratio 2
``vit_cifar_small``    10.7M      same with dim 384, 6 heads (about ResNet-18's size)
``small_cnn``          0.09M      3 conv-BN-ReLU layers + global pooling, for the CPU quick start
                                   on scikit-learn digits (8x8 or 16x16, ``in_chans=1``)
``resnet1d``           0.51M**    Wang et al. 2017 1-D ResNet for time-series classification:
                                   input ``(B, C, T)``, 3 blocks of 64/128/128 filters
``resnet1d_small``     0.13M**    the same with 32/64/64 filters, for CPU-sized runs
=====================  ==========  ====================================================

(*) with ``num_classes=10, in_chans=3``; (**) with ``num_classes=4, in_chans=6``
(BasicMotions). :data:`SERIES_MODELS` lists the models that take series ``(B, C, T)``
instead of images; :func:`input_ndim` says which (1 or 2 spatial/temporal dimensions).

Design choices:

* ``cifar_resnet*`` use projection shortcuts (He et al.'s option B: 1x1 conv stride 2 + BN) where
  the shape changes, as in the Keras "CIFAR-10 ResNet v1" example that Fukase et al. build on;
  option A (strided identity + zero channel padding, the paper's CIFAR choice, parameter-free) is
  available with ``shortcut="pad"``. The parameter count barely moves (0.272M vs 0.270M for
  depth 20). Unlike the Keras code, convolutions have no bias (BN follows each one) and the
  projection has a BN.
* No zero-init of the last BN gain in residual branches by default (``zero_init_last=False``),
  matching He et al. and the common CIFAR ResNet-18 recipes; it changes early training dynamics,
  which is what this library measures. Pass ``zero_init_last=True`` to get timm's default.
* The ViTs follow the "ViT-Lite" recipe for small images (Hassani et al. 2021, "Escaping the Big
  Data Paradigm with Compact Transformers"): patch 4 on 32x32, a narrow MLP (ratio 2), head
  dimension 64, a class token. No drop-path by default: regularization is the object of study.
* CNNs are fully convolutional with global average pooling; ``img_size`` is accepted and ignored.
* ``pretrained=True`` raises ``ValueError`` for these names: there are no weights (and no network).
  To start from your own weights file, use :mod:`critical.models.weights` (or
  ``ImageClassifier(weights=...)``).

Any other name that timm knows (``timm.list_models()``) falls through to :func:`timm.create_model`
with ``pretrained=False`` unless asked otherwise.

Example:
    >>> import torch
    >>> from critical.models import create_model, list_models
    >>> "cifar_resnet20" in list_models()
    True
    >>> net = create_model("cifar_resnet20", num_classes=10)
    >>> net(torch.rand(2, 3, 32, 32)).shape
    torch.Size([2, 10])
    >>> sum(p.numel() for p in net.parameters())
    272474

Layout: the architectures live in :mod:`critical.models.resnet` (:class:`CifarResNet`,
:class:`CifarBasicBlock`), :mod:`critical.models.small` (:class:`SmallCNN`) and
:mod:`critical.models.resnet1d` (:class:`ResNet1d`); loading weights files and freezing layers
for fine-tuning in :mod:`critical.models.weights`; the timm
registration helpers in :mod:`critical.models._registry`. The registered entrypoints (one per
name above, including the timm ``ResNet`` and ``VisionTransformer`` builders) and the factory are
defined here, so timm files them under this module.
"""

from __future__ import annotations

from typing import Any, cast

import timm
from timm.models.resnet import BasicBlock, ResNet
from timm.models.vision_transformer import VisionTransformer
from torch import nn

from critical.models._registry import _OUR_MODELS, _entry_kwargs, _register
from critical.models.resnet import CifarBasicBlock, CifarResNet
from critical.models.resnet1d import ResNet1d
from critical.models.small import SmallCNN

__all__ = [
    "SERIES_MODELS",
    "CifarBasicBlock",
    "CifarResNet",
    "ResNet1d",
    "SmallCNN",
    "create_model",
    "input_ndim",
    "list_models",
]

#: Registered models that take time series ``(B, C, T)``; every other model takes images.
SERIES_MODELS: tuple[str, ...] = ("resnet1d", "resnet1d_small")


# ---------------------------------------------------------------------------------------------
# He et al. 2016 CIFAR ResNets
# ---------------------------------------------------------------------------------------------


def _cifar_resnet(name: str, depth: int, pretrained: bool, kwargs: dict[str, Any]) -> CifarResNet:
    kwargs = _entry_kwargs(name, pretrained, kwargs)
    kwargs.pop("img_size", None)
    return CifarResNet(depth=depth, **kwargs)


@_register
def cifar_resnet20(pretrained: bool = False, **kwargs: Any) -> CifarResNet:
    """He et al. 2016 CIFAR ResNet-20 (n = 3, 0.27M parameters)."""
    return _cifar_resnet("cifar_resnet20", 20, pretrained, kwargs)


@_register
def cifar_resnet32(pretrained: bool = False, **kwargs: Any) -> CifarResNet:
    """He et al. 2016 CIFAR ResNet-32 (n = 5, 0.47M parameters)."""
    return _cifar_resnet("cifar_resnet32", 32, pretrained, kwargs)


@_register
def cifar_resnet44(pretrained: bool = False, **kwargs: Any) -> CifarResNet:
    """He et al. 2016 CIFAR ResNet-44 (n = 7, 0.66M parameters)."""
    return _cifar_resnet("cifar_resnet44", 44, pretrained, kwargs)


@_register
def cifar_resnet56(pretrained: bool = False, **kwargs: Any) -> CifarResNet:
    """He et al. 2016 CIFAR ResNet-56 (n = 9, 0.86M parameters)."""
    return _cifar_resnet("cifar_resnet56", 56, pretrained, kwargs)


# ---------------------------------------------------------------------------------------------
# timm ResNet-18 with a CIFAR stem
# ---------------------------------------------------------------------------------------------


@_register
def resnet18_cifar(pretrained: bool = False, **kwargs: Any) -> ResNet:
    """timm ResNet-18 with a CIFAR stem: 3x3 conv stride 1 and no max-pool (11.17M parameters).

    Built with ``timm.models.resnet.ResNet(BasicBlock, [2, 2, 2, 2])``, then ``conv1`` is replaced
    by a 3x3 stride-1 convolution and ``maxpool`` by ``nn.Identity``, so a 32x32 input reaches the
    last stage at 4x4 (as in kuangliu/pytorch-cifar). Keyword arguments go to timm's ``ResNet``
    (``drop_rate``, ``drop_path_rate``, ``norm_layer``, ...); ``zero_init_last`` defaults to False.
    """
    kwargs = _entry_kwargs("resnet18_cifar", pretrained, kwargs)
    kwargs.pop("img_size", None)
    kwargs.setdefault("zero_init_last", False)
    kwargs.setdefault("num_classes", 10)
    # timm annotates `block` as an instance (BasicBlock | Bottleneck) but takes the class
    model = ResNet(BasicBlock, (2, 2, 2, 2), **kwargs)  # type: ignore[arg-type]
    # timm's stem attributes are typed after their deep-stem branch (nn.Sequential); without
    # `stem_type` they are an nn.Conv2d and an nn.MaxPool2d
    old_conv1 = cast(nn.Conv2d, model.conv1)
    stem_chs = old_conv1.out_channels
    in_chans = old_conv1.in_channels
    conv1 = nn.Conv2d(in_chans, stem_chs, kernel_size=3, stride=1, padding=1, bias=False)
    model.conv1 = conv1  # type: ignore[assignment]  # see above: timm types it nn.Sequential
    nn.init.kaiming_normal_(conv1.weight, mode="fan_out", nonlinearity="relu")
    model.maxpool = nn.Identity()  # type: ignore[assignment]  # as conv1
    # The stem no longer downsamples: reductions are 1, 1, 2, 4, 8 instead of 2, 4, 8, 16, 32.
    for info in model.feature_info:
        # timm types feature_info entries as dict[str, object]
        info["reduction"] = (
            max(1, cast(int, info["reduction"]) // 4) if info["module"] != "act1" else 1
        )
    return model


# ---------------------------------------------------------------------------------------------
# Vision Transformers for 32x32 images
# ---------------------------------------------------------------------------------------------


def _vit_cifar(name: str, pretrained: bool, defaults: dict[str, Any], kwargs: dict[str, Any]):
    kwargs = _entry_kwargs(name, pretrained, kwargs)
    args: dict[str, Any] = {
        "img_size": 32,
        "patch_size": 4,
        "num_classes": 10,
        "mlp_ratio": 2.0,
        "class_token": True,
    }
    args.update(defaults)
    args.update(kwargs)
    return VisionTransformer(**args)


@_register
def vit_cifar_tiny(pretrained: bool = False, **kwargs: Any) -> VisionTransformer:
    """ViT for 32x32 images: patch 4 (64 tokens + cls), dim 192, depth 9, 3 heads, mlp_ratio 2.

    About 2.70M parameters. Keyword arguments go to timm's ``VisionTransformer``.
    """
    return _vit_cifar(
        "vit_cifar_tiny", pretrained, {"embed_dim": 192, "depth": 9, "num_heads": 3}, kwargs
    )


@_register
def vit_cifar_small(pretrained: bool = False, **kwargs: Any) -> VisionTransformer:
    """ViT for 32x32 images: patch 4, dim 384, depth 9, 6 heads, mlp_ratio 2 (about 10.7M params).

    Sized to compare with ``resnet18_cifar`` (11.2M). Keyword arguments go to ``VisionTransformer``.
    """
    return _vit_cifar(
        "vit_cifar_small", pretrained, {"embed_dim": 384, "depth": 9, "num_heads": 6}, kwargs
    )


@_register
def vit_cifar_micro(pretrained: bool = False, **kwargs: Any) -> VisionTransformer:
    """ViT small enough for CPU studies: patch 4, dim 96, depth 4, 3 heads, mlp_ratio 2 (about
    0.31M parameters, the size of ``cifar_resnet20``). Keyword arguments go to
    ``VisionTransformer``."""
    return _vit_cifar(
        "vit_cifar_micro", pretrained, {"embed_dim": 96, "depth": 4, "num_heads": 3}, kwargs
    )


# ---------------------------------------------------------------------------------------------
# A very small CNN for the CPU quick start
# ---------------------------------------------------------------------------------------------


@_register
def small_cnn(pretrained: bool = False, **kwargs: Any) -> SmallCNN:
    """:class:`SmallCNN` with widths (32, 64, 128): 0.09M parameters, for the CPU quick start."""
    kwargs = _entry_kwargs("small_cnn", pretrained, kwargs)
    kwargs.pop("img_size", None)
    return SmallCNN(**kwargs)


# ---------------------------------------------------------------------------------------------
# 1-D ResNet for time-series classification
# ---------------------------------------------------------------------------------------------


def _resnet1d(name: str, widths: tuple[int, ...], pretrained: bool, kwargs: dict[str, Any]):
    kwargs = _entry_kwargs(name, pretrained, kwargs)
    kwargs.pop("img_size", None)
    kwargs.setdefault("widths", widths)
    return ResNet1d(**kwargs)


@_register
def resnet1d(pretrained: bool = False, **kwargs: Any) -> ResNet1d:
    """Wang et al. 2017 ResNet for time series (64/128/128 filters, kernels 8/5/3): 0.5M params."""
    return _resnet1d("resnet1d", (64, 128, 128), pretrained, kwargs)


@_register
def resnet1d_small(pretrained: bool = False, **kwargs: Any) -> ResNet1d:
    """:func:`resnet1d` with half the filters (32/64/64): 0.13M params, for CPU-sized runs."""
    return _resnet1d("resnet1d_small", (32, 64, 64), pretrained, kwargs)


# ---------------------------------------------------------------------------------------------
# Factory
# ---------------------------------------------------------------------------------------------


def input_ndim(name: str) -> int:
    """Spatial or temporal dimensions of the model's input: 1 for series ``(B, C, T)``, else 2.

    Example:
        >>> input_ndim("resnet1d"), input_ndim("cifar_resnet20")
        (1, 2)
    """
    return 1 if name in SERIES_MODELS else 2


def list_models() -> list[str]:
    """Names of the models this module registers (all also reachable via ``timm.create_model``).

    Example:
        >>> list_models()[:3]
        ['cifar_resnet20', 'cifar_resnet32', 'cifar_resnet44']
    """
    return sorted(_OUR_MODELS)


def create_model(
    name: str,
    num_classes: int = 10,
    in_chans: int = 3,
    img_size: int = 32,
    pretrained: bool = False,
    **kwargs: Any,
) -> nn.Module:
    """Build a model by name: one of :func:`list_models`, or any name timm knows.

    Args:
        name: model name, e.g. ``"resnet18_cifar"``, ``"cifar_resnet20"``, ``"vit_cifar_tiny"``,
            ``"small_cnn"``, or a timm name such as ``"resnet50"`` / ``"hf-hub:..."``.
        num_classes: classifier outputs.
        in_chans: input channels.
        img_size: input resolution. Used by the ViTs (positional embeddings); ignored by the
            CNNs. For other timm models it is passed when the architecture accepts it.
        pretrained: load pretrained weights (timm names only; our models have none, and nothing
            can be downloaded without network access).
        **kwargs: passed to the model constructor (``drop_rate``, ``shortcut``, ``depth``, ...).

    Raises:
        ValueError: unknown name (the message lists ours), invalid arguments, or
            ``pretrained=True`` for one of our models.

    Example:
        >>> import torch
        >>> net = create_model("small_cnn", num_classes=10, in_chans=1, img_size=8)
        >>> net(torch.rand(2, 1, 8, 8)).shape
        torch.Size([2, 10])
        >>> create_model("resnet_cifar_20")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: unknown model 'resnet_cifar_20'; valid names: ['cifar_resnet20', ...
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"model name must be a non-empty string, got {name!r}")
    if num_classes < 0:
        raise ValueError(f"num_classes must be >= 0, got {num_classes}")
    if in_chans < 1:
        raise ValueError(f"in_chans must be >= 1, got {in_chans}")
    if name in _OUR_MODELS:
        fn = timm.models.model_entrypoint(name)
        return fn(
            pretrained=pretrained,
            num_classes=num_classes,
            in_chans=in_chans,
            img_size=img_size,
            **kwargs,
        )
    is_remote = name.startswith(("hf-hub:", "hf_hub:", "local-dir:"))
    if not is_remote and not timm.models.is_model(name):
        raise ValueError(
            f"unknown model {name!r}; valid names: {list_models()} "
            "(or any timm model name, see timm.list_models())"
        )
    common = dict(pretrained=pretrained, num_classes=num_classes, in_chans=in_chans, **kwargs)
    try:
        return timm.create_model(name, img_size=img_size, **common)
    except TypeError as err:
        if "img_size" not in str(err):
            raise
    return timm.create_model(name, **common)
