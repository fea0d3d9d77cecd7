"""critical.models: registration in timm, shapes, parameter counts, errors."""

from __future__ import annotations

import pytest
import timm
import torch

from critical import models
from critical.models import CifarResNet, ResNet1d, SmallCNN, create_model, list_models

EXPECTED_PARAMS = {  # (low, high) with num_classes=10, in_chans=3
    "resnet18_cifar": (11.1e6, 11.25e6),
    "cifar_resnet20": (0.26e6, 0.28e6),
    "cifar_resnet32": (0.45e6, 0.48e6),
    "cifar_resnet44": (0.65e6, 0.67e6),
    "cifar_resnet56": (0.84e6, 0.87e6),
    "vit_cifar_tiny": (2.5e6, 2.9e6),
    "vit_cifar_small": (10.0e6, 11.5e6),
    "vit_cifar_micro": (0.30e6, 0.32e6),
    "small_cnn": (0.05e6, 0.15e6),
}


def _n_params(m: torch.nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def test_list_models_is_ours_and_sorted():
    names = list_models()
    assert names == sorted(names)
    assert set(names) == set(EXPECTED_PARAMS) | set(models.SERIES_MODELS)


@pytest.mark.parametrize("name", sorted(EXPECTED_PARAMS))
def test_builds_shape_and_param_count(name):
    small = name == "small_cnn"
    size = 8 if small else 32
    net = create_model(name, num_classes=10, in_chans=3, img_size=size).eval()
    lo, hi = EXPECTED_PARAMS[name]
    assert lo <= _n_params(net) <= hi
    with torch.no_grad():
        out = net(torch.rand(2, 3, size, size))
    assert out.shape == (2, 10)
    assert torch.isfinite(out).all()


def test_exact_param_counts_of_reference_models():
    assert _n_params(create_model("cifar_resnet20")) == 272_474
    # Option A (zero-padding shortcuts) has no shortcut parameters: 0.27M as in He et al.
    assert _n_params(create_model("cifar_resnet20", shortcut="pad")) == 269_722
    assert _n_params(create_model("resnet18_cifar")) == 11_173_962


@pytest.mark.parametrize("size", [8, 16])
def test_small_cnn_digits_sizes(size):
    net = create_model("small_cnn", num_classes=10, in_chans=1, img_size=size)
    assert net(torch.rand(4, 1, size, size)).shape == (4, 10)


def test_resnet18_cifar_has_cifar_stem():
    net = create_model("resnet18_cifar")
    assert net.conv1.kernel_size == (3, 3) and net.conv1.stride == (1, 1)
    assert isinstance(net.maxpool, torch.nn.Identity)
    assert isinstance(net, timm.models.resnet.ResNet)
    # 32x32 reaches the last stage at 4x4.
    assert net.forward_features(torch.rand(1, 3, 32, 32)).shape == (1, 512, 4, 4)
    assert net.feature_info[-1]["reduction"] == 8


def test_vit_cifar_tokens():
    net = create_model("vit_cifar_tiny")
    assert net.patch_embed.num_patches == 64
    assert net.pos_embed.shape[1] == 65  # 64 patches + cls token
    assert net.embed_dim == 192


def test_cifar_resnet_pad_shortcut_and_timm_api():
    net = create_model("cifar_resnet32", shortcut="pad", num_classes=100)
    assert net(torch.rand(2, 3, 32, 32)).shape == (2, 100)
    assert net.forward_head(
        net.forward_features(torch.rand(2, 3, 32, 32)), pre_logits=True
    ).shape == (2, 64)
    net.reset_classifier(5)
    assert net(torch.rand(1, 3, 32, 32)).shape == (1, 5)
    assert len(net.layer1) == 5  # n = (32 - 2) / 6


def test_timm_create_model_sees_our_models():
    for name in list_models():
        assert timm.models.is_model(name)
    net = timm.create_model("cifar_resnet20", num_classes=7)
    assert isinstance(net, CifarResNet)
    assert net(torch.rand(1, 3, 32, 32)).shape == (1, 7)
    assert isinstance(timm.create_model("small_cnn", in_chans=1), SmallCNN)


def test_registering_again_does_not_warn(recwarn):
    before = list_models()
    models._register(models.cifar_resnet20)  # what a reload of the module does
    assert not [w for w in recwarn if "Overwriting" in str(w.message)]
    assert list_models() == before
    assert timm.models.is_model("cifar_resnet20")


def test_unknown_name_lists_valid_ones():
    with pytest.raises(ValueError, match="unknown model 'resnet_cifar_20'") as err:
        create_model("resnet_cifar_20")
    for name in list_models():
        assert name in str(err.value)


def test_pretrained_refused_for_our_models():
    with pytest.raises(ValueError, match="no pretrained weights"):
        create_model("cifar_resnet20", pretrained=True)
    with pytest.raises(ValueError, match="no pretrained weights"):
        timm.create_model("small_cnn", pretrained=True)


def test_invalid_arguments():
    with pytest.raises(ValueError, match="6n \\+ 2"):
        CifarResNet(depth=21)
    with pytest.raises(ValueError, match="projection"):
        create_model("cifar_resnet20", shortcut="identity")
    with pytest.raises(ValueError, match="in_chans"):
        create_model("small_cnn", in_chans=0)


def test_falls_through_to_timm():
    net = create_model("resnet10t", num_classes=5, in_chans=1, img_size=32).eval()  # no img_size
    assert net(torch.rand(1, 1, 32, 32)).shape == (1, 5)
    vit = create_model("vit_tiny_patch16_224", num_classes=3, img_size=32)  # takes img_size
    assert vit.patch_embed.img_size == (32, 32)


# ------------------------------------------------------------------ 1-D ResNet (time series)
def test_resnet1d_wang_et_al_shapes_params_and_timm_api():
    net = timm.create_model("resnet1d", num_classes=4, in_chans=6)
    assert isinstance(net, ResNet1d)
    assert _n_params(net) == 506_244  # 64/128/128 filters, kernels 8/5/3
    assert _n_params(create_model("resnet1d_small", num_classes=4, in_chans=6)) == 128_196
    assert [b.conv1.kernel_size for b in net.blocks] == [(8,)] * 3
    for t in (100, 7):  # any length; the length is kept through the blocks
        assert net.forward_features(torch.randn(2, 6, t)).shape == (2, 128, t)
        assert net(torch.randn(2, 6, t)).shape == (2, 4)
    net.reset_classifier(9)
    assert net(torch.randn(1, 6, 25)).shape == (1, 9)
    assert models.input_ndim("resnet1d") == 1 and models.input_ndim("small_cnn") == 2
    with pytest.raises(ValueError, match=r"\(B, C, T\)"):
        net(torch.randn(1, 6, 8, 8))


def test_model_summary_reports_flops_and_params_for_series_and_image_models():
    from lightning.pytorch.utilities.model_summary import ModelSummary

    from critical.task import ImageClassifier

    series = ImageClassifier("resnet1d", num_classes=4, in_chans=6, img_size=100)
    image = ImageClassifier("cifar_resnet20", num_classes=10, in_chans=3, img_size=32)
    assert tuple(series.example_input_array.shape) == (1, 6, 100)
    assert tuple(image.example_input_array.shape) == (1, 3, 32, 32)
    flops = {}
    for name, module in (("series", series), ("image", image)):
        summary = ModelSummary(module)
        assert summary.total_parameters == _n_params(module.net)
        flops[name] = summary.total_flops
        assert flops[name] > 0
    # forward FLOPs of one sample: about 2 x MACs of the convolutions (a few tens of millions)
    assert 5e7 < flops["series"] < 2e8 and 5e7 < flops["image"] < 1e9
