"""Fine-tuning: ImageClassifier starts from a weights file (Lightning checkpoint, state dict,
safetensors, timm's pretrained_cfg_overlay), with a new head and frozen layers; the metric
callbacks measure from the loaded weights; bad files fail before training."""

from __future__ import annotations

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import Callback
from safetensors.torch import save_file
from torch.utils.data import TensorDataset

from critical.callbacks import AugmentationCutoff, LayerRotation
from critical.data import MultiplicityDataModule
from critical.data.offline import load_digits
from critical.models.weights import read_state_dict
from critical.task import ImageClassifier
from tests.helpers import tiny_trainer

NET = {"widths": [16, 32, 64]}


def _digits(classes: list[int], seed: int = 0) -> tuple[TensorDataset, TensorDataset]:
    """8x8 digits of ``classes`` relabelled 0..len-1, as float images; (train, val) 80/20."""
    d = load_digits(8)
    keep = torch.isin(d.labels, torch.tensor(classes))
    x = d.images[keep].float() / 255
    y = torch.searchsorted(torch.tensor(classes), d.labels[keep])
    perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))
    x, y = x[perm], y[perm]
    n = int(0.8 * len(y))
    return TensorDataset(x[:n], y[:n]), TensorDataset(x[n:], y[n:])


def _noise(x: torch.Tensor) -> torch.Tensor:
    return (x + 0.05 * torch.randn_like(x)).clamp(0, 1)


def _data(classes: list[int], multiplicity: int = 1) -> MultiplicityDataModule:
    train, val = _digits(classes)
    return MultiplicityDataModule(
        train, val, transform=_noise, multiplicity=multiplicity, batch_size=32
    )


def _model(**kwargs) -> ImageClassifier:
    args = dict(num_classes=5, in_chans=1, img_size=8, lr=0.05, model_kwargs=NET)
    args.update(kwargs)
    return ImageClassifier("small_cnn", **args)


class ValAccPerEpoch(Callback):
    def __init__(self) -> None:
        self.acc: list[float] = []

    def on_train_epoch_end(self, trainer, pl_module) -> None:  # after validation
        self.acc.append(float(trainer.callback_metrics["val/acc"]))


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory) -> str:
    """A small CNN trained on digits 0-4, saved as a Lightning checkpoint."""
    L.seed_everything(0)
    tmp = tmp_path_factory.mktemp("pretrain")
    model = _model()
    trainer = tiny_trainer(tmp, max_epochs=2, callbacks=[LayerRotation()])
    trainer.fit(model, _data([0, 1, 2, 3, 4]))
    assert float(trainer.callback_metrics["val/acc"]) > 0.9
    path = tmp / "digits04.ckpt"
    trainer.save_checkpoint(path)  # holds callback state too: not a plain tensor file
    return str(path)


def test_finetune_on_another_task_loads_the_weights_and_cuts_k(pretrained, tmp_path):
    def run(**kwargs) -> tuple[list[float], LayerRotation, AugmentationCutoff, ImageClassifier]:
        L.seed_everything(1)
        model = _model(**kwargs)
        acc, rot = ValAccPerEpoch(), LayerRotation()
        cut = AugmentationCutoff(policy="fixed", epoch=1)
        trainer = tiny_trainer(
            tmp_path, max_epochs=2, limit_train_batches=3, callbacks=[acc, rot, cut]
        )
        trainer.fit(model, _data([5, 6, 7, 8, 9], multiplicity=2))
        return acc.acc, rot, cut, model

    frozen = ["features.conv1", "features.bn1"]
    fine, rot, cut, model = run(weights=pretrained, new_head=True, freeze=frozen)
    fresh, *_ = run(freeze=frozen)
    # after 3 steps, features learnt on digits 0-4 serve digits 5-9 (seen here over three seeds:
    # 0.62-0.66 against 0.21-0.29 from a fresh start)
    assert fine[0] > fresh[0] + 0.2, (fine, fresh)
    assert cut.cut_epoch == 1
    # layer rotation is measured from the fine-tuning start: theta_0 is the loaded backbone
    state = read_state_dict(pretrained)
    layout = rot._layout
    views = dict(zip(layout.params, layout.param_views(rot.theta0)))
    conv3 = model.net.features.conv3.weight
    assert torch.equal(views[conv3], state["features.conv3.weight"])
    assert not torch.equal(conv3.detach(), state["features.conv3.weight"])  # trained since
    conv1 = model.net.features.conv1.weight
    assert conv1 not in views and torch.equal(conv1.detach(), state["features.conv1.weight"])
    trained = [n for n, p in model.net.named_parameters() if p.requires_grad]
    assert trained[0] == "features.conv2.weight" and trained[-1] == "fc.bias"


class Opaque:
    """A plain Python object in a checkpoint: torch.load(weights_only=True) refuses it."""


def test_weights_formats_all_load_the_same_tensors(pretrained, tmp_path):
    ref = read_state_dict(pretrained)
    module_state = torch.load(pretrained, weights_only=False)["state_dict"]  # keys "net.*"
    assert all(k.startswith("net.") for k in module_state if "." in k and k not in ("mean", "std"))
    torch.save(module_state, tmp_path / "module.pt")
    net_state = {k[len("net.") :]: v for k, v in module_state.items() if k.startswith("net.")}
    torch.save({f"_orig_mod.{k}": v for k, v in net_state.items()}, tmp_path / "compiled.pth")
    save_file({k: v.contiguous() for k, v in net_state.items()}, tmp_path / "w.safetensors")
    torch.save({"state_dict": module_state, "extra": Opaque()}, tmp_path / "opaque.ckpt")
    for name in ("module.pt", "compiled.pth", "w.safetensors", "opaque.ckpt"):
        got = read_state_dict(tmp_path / name)
        assert got.keys() == ref.keys() and all(torch.equal(got[k], ref[k]) for k in ref), name
        model = _model(weights=str(tmp_path / name))  # same head: loads everything
        assert torch.equal(model.net.fc.weight.detach(), ref["fc.weight"])


def test_timm_pretrained_cfg_overlay_file(tmp_path):
    import timm

    src = timm.create_model("test_resnet", num_classes=1000)  # the cfg's classifier
    path = tmp_path / "test_resnet.safetensors"
    save_file({k: v.contiguous() for k, v in src.state_dict().items()}, path)
    model = ImageClassifier(
        "test_resnet",
        num_classes=3,
        img_size=32,
        pretrained=True,
        model_kwargs={"pretrained_cfg_overlay": {"file": str(path)}},
    )
    key = next(iter(src.state_dict()))
    assert torch.equal(model.net.state_dict()[key], src.state_dict()[key])
    assert model.net.get_classifier().out_features == 3  # timm dropped the 1000-class head
    with pytest.raises(ValueError, match=r"weights=<file>"):
        ImageClassifier("small_cnn", pretrained=True)


def test_bad_weights_fail_before_training_naming_the_first_mismatch(pretrained, tmp_path):
    with pytest.raises(ValueError, match=r"'fc.weight' differs: \(5, 64\) .* \(3, 64\).*new_head"):
        _model(num_classes=3, weights=pretrained)
    with pytest.raises(ValueError, match=r"'features.conv1.weight' differs: \(16, 1, 3, 3\)"):
        _model(in_chans=3, weights=pretrained, new_head=True)
    with pytest.raises(ValueError, match=r"lack .* key\(s\) of the model, first 'features.conv4"):
        _model(weights=pretrained, model_kwargs={"widths": [16, 32, 64, 64]})
    with pytest.raises(FileNotFoundError, match="does not exist"):
        _model(weights=str(tmp_path / "nope.ckpt"))
    torch.save({"epoch": 3}, tmp_path / "empty.pt")
    with pytest.raises(ValueError, match="holds no tensors"):
        _model(weights=str(tmp_path / "empty.pt"))
    with pytest.raises(ValueError, match="new_head=True needs weights"):
        _model(new_head=True)
    with pytest.raises(ValueError, match=r"freeze: no parameter .* under 'trunk'.*'features'"):
        _model(freeze=["trunk"])


def test_cli_exposes_the_fine_tuning_options(pretrained, monkeypatch):
    from lightning.pytorch.cli import LightningCLI

    monkeypatch.setattr("sys.argv", ["critical"])
    cli = LightningCLI(
        ImageClassifier,
        run=False,
        args=[
            "--model.model=small_cnn",
            "--model.num_classes=3",
            "--model.in_chans=1",
            f"--model.model_kwargs={NET}",
            f"--model.weights={pretrained}",
            "--model.new_head=true",
            "--model.freeze=[features.conv1, features.bn1]",
        ],
        trainer_defaults={"logger": False},
    )
    net = cli.model.net
    assert not net.features.conv1.weight.requires_grad and net.features.conv2.weight.requires_grad
    assert torch.equal(
        net.features.conv2.weight.detach(), read_state_dict(pretrained)["features.conv2.weight"]
    )
