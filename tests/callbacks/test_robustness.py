"""Attacks, corruptions, CIFAR-10-C loading and the RobustnessEvaluator callback (CPU, fast)."""

from __future__ import annotations

import colorsys
import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import TinyDataModule, TinyModule, TinyNet, make_images, read_csv, tiny_trainer
from lightning.pytorch.loggers import CSVLogger
from torch.utils.data import DataLoader, TensorDataset

from critical.callbacks.robustness import RobustnessEvaluator
from critical.robustness import (
    CORRUPTIONS,
    DEFAULT_CORRUPTIONS,
    accuracy,
    adversarial_accuracy,
    cifar10c_accuracy,
    corrupt,
    corruption_accuracy,
    evaluate_robustness,
    fgsm,
    load_cifar10c,
    pgd,
)


@pytest.fixture(scope="module")
def trained():
    """A TinyNet trained to ~90% on held-out images of the same distribution."""
    g = torch.Generator().manual_seed(0)
    x, y = make_images(384, seed=0)
    net = TinyNet()
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    for _ in range(60):
        idx = torch.randint(0, 256, (32,), generator=g)
        loss = torch.nn.functional.cross_entropy(net(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    opt.zero_grad(set_to_none=True)
    return net, x[256:], y[256:]


# ------------------------------------------------------------------------------------ attacks


def test_pgd_le_fgsm_le_clean(trained):
    net, x, y = trained
    r = evaluate_robustness(net, x, y, corruptions=None, batch_size=64)
    assert r["clean_acc"] > 0.7
    assert r["pgd_acc"] <= r["fgsm_acc"] <= r["clean_acc"]
    assert r["pgd_acc"] < r["clean_acc"]
    assert r["attack"] == {
        "norm": "Linf",
        "eps": 8 / 255,
        "pgd_steps": 10,
        "pgd_step_size": 2 / 255,
        "random_start": True,
        "seed": 0,
    }


def test_eps_zero_is_clean_accuracy(trained):
    net, x, y = trained
    clean = accuracy(net, x, y)
    assert adversarial_accuracy(net, x, y, "fgsm", eps=0.0) == clean
    assert adversarial_accuracy(net, x, y, "pgd", eps=0.0) == clean
    assert torch.equal(pgd(net.eval(), x, y, eps=0.0), x)


def test_pgd_stays_in_ball_and_image_range(trained):
    net, x, y = trained
    eps = 8 / 255
    adv = pgd(net.eval(), x, y, eps=eps, steps=3, generator=torch.Generator().manual_seed(1))
    assert adv.shape == x.shape and adv.dtype == x.dtype and not adv.requires_grad
    assert (adv - x).abs().max() <= eps + 1e-6
    assert adv.min() >= 0 and adv.max() <= 1
    f = fgsm(net, x, y, eps=eps)
    assert (f - x).abs().max() <= eps + 1e-6 and f.min() >= 0 and f.max() <= 1


def test_attacks_leave_parameters_modes_and_global_rng_alone(trained):
    net, x, y = trained
    net.train()
    net.bn.eval()  # a mixed-mode model: each module's own flag must come back
    for p in net.parameters():
        p.grad = torch.full_like(p, 0.5)
    params = [p.detach().clone() for p in net.parameters()]
    buffers = [b.clone() for b in net.buffers()]
    rng = torch.random.get_rng_state()
    with torch.inference_mode():  # as inside Lightning's test loop
        r = evaluate_robustness(net, x[:32], y[:32], corruptions=["gaussian_noise"], severities=[2])
    assert torch.equal(torch.random.get_rng_state(), rng)
    assert net.training and not net.bn.training and net.conv.training
    assert all(torch.equal(p.grad, torch.full_like(p, 0.5)) for p in net.parameters())
    assert all(torch.equal(p, q) for p, q in zip(net.parameters(), params))
    assert all(torch.equal(b, c) for b, c in zip(net.buffers(), buffers))  # BN stats not updated
    assert 0 <= r["pgd_acc"] <= 1
    net.eval()
    for p in net.parameters():
        p.grad = None


def test_pgd_is_deterministic_for_a_seed(trained):
    net, x, y = trained
    a = adversarial_accuracy(net, x, y, "pgd", seed=3, steps=3)
    b = adversarial_accuracy(net, x, y, "pgd", seed=3, steps=3)
    assert a == b


def test_invalid_arguments(trained):
    net, x, y = trained
    with pytest.raises(ValueError, match="attack"):
        adversarial_accuracy(net, x, y, "cw")
    with pytest.raises(ValueError, match="eps"):
        fgsm(net, x, y, eps=-1.0)
    with pytest.raises(ValueError, match="float"):
        accuracy(net, (x * 255).to(torch.uint8), y)
    with pytest.raises(ValueError, match="unknown corruption"):
        corrupt(x, "snow")
    with pytest.raises(ValueError, match="severity"):
        corrupt(x, "contrast", severity=6)


# -------------------------------------------------------------------------------- corruptions


@pytest.mark.parametrize("name", sorted(CORRUPTIONS))
def test_corruption_shape_range_and_determinism(name):
    x = torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    for severity in (1, 5):
        a = corrupt(x, name, severity, seed=7)
        b = corrupt(x, name, severity, seed=7)
        assert a.shape == x.shape and a.dtype == x.dtype and a.device == x.device
        assert a.min() >= 0 and a.max() <= 1
        assert torch.equal(a, b)
        assert not torch.equal(a, x)
    if name.endswith("_noise"):
        assert not torch.equal(corrupt(x, name, 3, seed=7), corrupt(x, name, 3, seed=8))


def test_corruption_strength_grows_with_severity():
    x = torch.rand(8, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    for name in ("gaussian_noise", "contrast", "defocus_blur", "pixelate", "jpeg_compression"):
        diffs = [(corrupt(x, name, s, seed=0) - x).abs().mean().item() for s in (1, 3, 5)]
        assert diffs[0] < diffs[1] < diffs[2], (name, diffs)


def _hsv_reference(img: np.ndarray, fn) -> np.ndarray:
    out = np.empty_like(img)
    for i in range(img.shape[0]):
        for j in range(img.shape[1]):
            out[i, j] = colorsys.hsv_to_rgb(*fn(*colorsys.rgb_to_hsv(*img[i, j])))
    return out


def test_corruptions_match_reference_implementations():
    """Against the libraries make_cifar_c.py uses (scipy/skimage filters, HSV maps, PIL)."""
    scipy_ndimage = pytest.importorskip("scipy.ndimage")
    from PIL import Image

    rng = np.random.default_rng(0)
    u8 = rng.integers(0, 256, (2, 32, 32, 3)).astype(np.uint8)
    x = torch.from_numpy(u8).permute(0, 3, 1, 2).float() / 255
    ref = u8 / 255.0

    def ours(name, s):
        return corrupt(x, name, s).permute(0, 2, 3, 1).double().numpy()

    # gaussian_blur = skimage.filters.gaussian(sigma, truncate 4, mode "nearest")
    want = np.stack(
        [scipy_ndimage.gaussian_filter(a, sigma=(1.0, 1.0, 0), mode="nearest") for a in ref]
    )
    np.testing.assert_allclose(ours("gaussian_blur", 5), want.clip(0, 1), atol=1e-5)

    # zoom_blur: clipped_zoom with scipy.ndimage.zoom(order=1)
    def clipped_zoom(img, z):
        ch = int(np.ceil(32 / z))
        top = (32 - ch) // 2
        img = scipy_ndimage.zoom(img[top : top + ch, top : top + ch], (z, z, 1), order=1)
        t = (img.shape[0] - 32) // 2
        return img[t : t + 32, t : t + 32]

    zs = np.arange(1, 1.16, 0.01)
    want = np.stack([(a + sum(clipped_zoom(a, z) for z in zs)) / (len(zs) + 1) for a in ref])
    np.testing.assert_allclose(ours("zoom_blur", 3), want.clip(0, 1), atol=1e-5)

    # brightness / saturate: HSV round trips
    want = np.stack([_hsv_reference(a, lambda h, s, v: (h, s, min(v + 0.3, 1))) for a in ref])
    np.testing.assert_allclose(ours("brightness", 5), want, atol=1e-5)
    want = np.stack(
        [_hsv_reference(a, lambda h, s, v: (h, min(max(s * 2.5 + 0.2, 0), 1), v)) for a in ref]
    )
    np.testing.assert_allclose(ours("saturate", 5), want, atol=1e-5)

    # pixelate (PIL BOX, PIL rounds to uint8 between its passes) and JPEG (PIL, quality 40)
    small = int(32 * 0.65)
    want = (
        np.stack(
            [
                np.asarray(
                    Image.fromarray(a).resize((small, small), Image.BOX).resize((32, 32), Image.BOX)
                )
                for a in u8
            ]
        )
        / 255.0
    )
    np.testing.assert_allclose(ours("pixelate", 5), want, atol=1.01 / 255)
    jpegs = []
    for a in u8:
        buf = io.BytesIO()
        Image.fromarray(a).save(buf, "JPEG", quality=40)
        jpegs.append(np.asarray(Image.open(buf)))
    np.testing.assert_allclose(ours("jpeg_compression", 5), np.stack(jpegs) / 255.0, atol=1e-5)


def test_corruption_accuracy_is_deterministic_and_structured(trained):
    net, x, y = trained
    a = corruption_accuracy(
        net, x, y, corruptions=["shot_noise", "contrast"], severities=[1, 5], seed=1
    )
    b = corruption_accuracy(
        net, x, y, corruptions=["shot_noise", "contrast"], severities=[1, 5], seed=1
    )
    assert a == b
    assert a["source"] == "synthetic" and a["severities"] == [1, 5] and a["num_images"] == len(x)
    assert set(a["per_corruption"]) == {"shot_noise", "contrast"}
    assert set(a["per_corruption"]["contrast"]["by_severity"]) == {"1", "5"}
    means = [v["mean"] for v in a["per_corruption"].values()]
    assert a["mean_acc"] == pytest.approx(sum(means) / 2)
    json.dumps(a, allow_nan=False)
    assert (
        set(DEFAULT_CORRUPTIONS) <= set(CORRUPTIONS) and "speckle_noise" not in DEFAULT_CORRUPTIONS
    )


# ------------------------------------------------------------------------------ CIFAR-10-C files


def _write_cifar10c(root, per=6, names=("gaussian_noise", "contrast")):
    """A tiny CIFAR-10-C: 5 severities x `per` images; severity s images are all s * 40."""
    root.mkdir(parents=True, exist_ok=True)
    labels = np.tile(np.arange(per) % 4, 5).astype(np.uint8)
    for name in names:
        data = np.repeat(np.arange(1, 6, dtype=np.uint8) * 40, per)[:, None, None, None]
        np.save(root / f"{name}.npy", np.broadcast_to(data, (5 * per, 32, 32, 3)).copy())
    np.save(root / "labels.npy", labels)
    return labels


def test_load_cifar10c_blocks(tmp_path):
    labels = _write_cifar10c(tmp_path)
    x, y = load_cifar10c(tmp_path, "contrast", severity=3)
    assert x.shape == (6, 3, 32, 32) and x.dtype == torch.float32
    assert torch.allclose(x, torch.full_like(x, 120 / 255))
    assert y.dtype == torch.int64 and y.tolist() == labels[12:18].tolist()
    x, y = load_cifar10c(tmp_path, "contrast", severity=5, num_images=2)
    assert x.shape[0] == 2 and torch.allclose(x, torch.full_like(x, 200 / 255))
    with pytest.raises(FileNotFoundError, match="contrast"):
        load_cifar10c(tmp_path, "fog", 1)
    np.save(tmp_path / "bad.npy", np.zeros((7, 32, 32, 3), np.uint8))
    with pytest.raises(ValueError, match="5 \\* n"):
        load_cifar10c(tmp_path, "bad", 1)


class _MeanClassifier(torch.nn.Module):
    """Predicts class round(mean pixel * 4) clipped: depends on the severity block only."""

    def __init__(self):
        super().__init__()
        self.dummy = torch.nn.Parameter(torch.zeros(()))

    def forward(self, x):
        k = (x.mean(dim=(1, 2, 3)) * 4).floor().clamp(0, 3).long()
        return torch.nn.functional.one_hot(k, 4).float() + self.dummy


def test_cifar10c_accuracy(tmp_path):
    labels = _write_cifar10c(tmp_path)
    r = cifar10c_accuracy(_MeanClassifier(), tmp_path, batch_size=4)
    assert r["source"] == "cifar10c" and set(r["per_corruption"]) == {"gaussian_noise", "contrast"}
    # severity s: every image has mean s*40/255 -> class floor(s*160/255) = 0, 1, 1, 2, 3
    for s, k in zip(range(1, 6), (0, 1, 1, 2, 3)):
        want = float(np.mean(labels[(s - 1) * 6 : s * 6] == k))
        assert r["per_corruption"]["contrast"]["by_severity"][str(s)] == pytest.approx(want)
    assert r["mean_acc"] == pytest.approx(r["per_corruption"]["contrast"]["mean"])
    # through evaluate_robustness: the files replace the synthetic corruptions
    x, y = make_images(8, size=32)
    e = evaluate_robustness(
        _MeanClassifier(),
        x,
        y,
        attacks=(),
        cifar10c_dir=tmp_path,
        corruptions=["contrast"],
        severities=[2],
    )
    assert e["corruption"]["source"] == "cifar10c" and "fgsm_acc" not in e


# ------------------------------------------------------------------------------------- callback


class _TestModule(TinyModule):
    def test_step(self, batch, batch_idx):
        x, y = batch
        self.log("test/acc", (self(x).argmax(-1) == y).float().mean())


class _TestDataModule(TinyDataModule):
    def test_dataloader(self):
        x, y = make_images(40, seed=0)
        return DataLoader(TensorDataset(x, y), batch_size=16)


_FAST = {
    "num_images": 24,
    "batch_size": 16,
    "pgd_steps": 3,
    "corruptions": ["contrast", "gaussian_noise"],
    "severities": [1, 3],
}


def test_callback_at_fit_end_uses_test_data_and_logs(tmp_path):
    rob = RobustnessEvaluator(log_per_corruption=True, **_FAST)
    logger = CSVLogger(tmp_path, name="csv")
    trainer = tiny_trainer(tmp_path, max_epochs=2, callbacks=[rob], logger=logger)
    model = TinyModule()
    model.train()
    trainer.fit(model, _TestDataModule(n=64))
    r = rob.results
    assert r["stage"] == "fit_end" and r["data"] == "test" and r["num_images"] == 24
    assert r["pgd_acc"] <= r["clean_acc"] and 0 <= r["corruption_acc"] <= 1
    logged = [
        row for row in read_csv(Path(logger.log_dir) / "metrics.csv") if row["robustness/pgd_acc"]
    ]
    assert len(logged) == 1 and int(logged[0]["step"]) == trainer.global_step
    for key in ("clean_acc", "fgsm_acc", "pgd_acc", "corruption_acc", "corruption/contrast"):
        want = r[key] if "/" not in key else r["corruption"]["per_corruption"]["contrast"]["mean"]
        assert float(logged[0][f"robustness/{key}"]) == pytest.approx(want)
    assert not any(k.startswith("robustness/") for k in trainer.callback_metrics)
    json.dumps(r, allow_nan=False)


def test_callback_at_test_end_logs_through_the_module(tmp_path):
    rob = RobustnessEvaluator(when="test_end", attacks=["fgsm"], **_FAST)
    trainer = tiny_trainer(tmp_path, max_epochs=1, callbacks=[rob])
    dm = _TestDataModule(n=64)
    model = _TestModule()
    trainer.fit(model, dm)
    assert rob.results is None  # not at fit end
    out = trainer.test(model, datamodule=dm, verbose=False)[0]
    assert {"robustness/clean_acc", "robustness/fgsm_acc", "robustness/corruption_acc"} <= set(out)
    assert "robustness/pgd_acc" not in out
    assert out["robustness/fgsm_acc"] == pytest.approx(rob.results["fgsm_acc"])
    assert rob.results["stage"] == "test_end" and rob.results["data"] == "test"
    state = rob.state_dict()
    other = RobustnessEvaluator()
    other.load_state_dict(state)
    assert other.results == rob.results and other.all_results == rob.all_results


def test_callback_falls_back_to_val_and_explicit_loader(tmp_path):
    rob = RobustnessEvaluator(attacks=[], corruptions=None, num_images=10)
    trainer = tiny_trainer(tmp_path, max_epochs=1, callbacks=[rob])
    trainer.fit(TinyModule(), TinyDataModule(n=32))
    assert rob.results["data"] == "val" and rob.results["num_images"] == 10
    assert {k for k in rob.results if k.endswith("_acc")} == {"clean_acc"}
    x, y = make_images(12)
    loader = DataLoader(TensorDataset((x * 255).to(torch.uint8), y), batch_size=5)  # uint8 is /255
    rob2 = RobustnessEvaluator(dataloader=loader, attacks=["fgsm"], corruptions=None)
    rob2.evaluate(trainer, trainer.lightning_module, "fit_end")
    assert rob2.results["data"] == "dataloader" and rob2.results["num_images"] == 12


def test_callback_argument_validation(tmp_path):
    with pytest.raises(ValueError, match="when"):
        RobustnessEvaluator(when="epoch_end")
    with pytest.raises(ValueError, match="source"):
        RobustnessEvaluator(source="train")
    with pytest.raises(ValueError, match="num_images"):
        RobustnessEvaluator(num_images=0)
    with pytest.raises(ValueError, match="attacks"):
        RobustnessEvaluator(attacks=["cw"])
    with pytest.raises(ValueError, match="eps"):
        RobustnessEvaluator(eps=8)
    with pytest.raises(ValueError, match="fog"):
        RobustnessEvaluator(corruptions=["fog"])
    with pytest.raises(ValueError, match="severities"):
        RobustnessEvaluator(severities=[0])
    with pytest.raises(ValueError, match="cifar10c_dir"):
        RobustnessEvaluator(cifar10c_dir=tmp_path / "missing")
    # caught here, not after training
    with pytest.raises(ValueError, match="`dataloader` must be None or an iterable"):
        RobustnessEvaluator(dataloader=5)
    with pytest.raises(ValueError, match="random_start"):
        RobustnessEvaluator(random_start="no")
    with pytest.raises(ValueError, match="seed"):
        RobustnessEvaluator(seed=1.5)
    assert RobustnessEvaluator(name="a").state_key != RobustnessEvaluator(name="b").state_key


def test_evaluator_samples_uniformly_from_a_class_sorted_loader():
    from critical.callbacks.robustness import RobustnessEvaluator

    x = torch.rand(400, 3, 8, 8)
    y = torch.arange(10).repeat_interleave(40)  # sorted by class, like a stratified val split
    loader = [(x[i : i + 50], y[i : i + 50]) for i in range(0, 400, 50)]
    ev = RobustnessEvaluator(num_images=100, seed=3)
    xs, ys = ev._collect(loader)
    assert len(xs) == 100 and ys.unique().numel() == 10  # every class, not the first two
    assert all(5 <= int((ys == c).sum()) <= 20 for c in range(10))
    xs2, ys2 = RobustnessEvaluator(num_images=100, seed=3)._collect(loader)
    assert torch.equal(xs, xs2) and torch.equal(ys, ys2)  # seeded
    # each kept image is the one with its label
    idx = [int(torch.nonzero((x == xi).all(dim=(1, 2, 3)))[0]) for xi in xs]
    assert torch.equal(y[idx], ys)
