"""Overhead of the three metric callbacks at default settings.

Trains the same model on the same data for the same number of steps with and without
GradientConfusion + GradientPredictability + LayerRotation, in one process, alternating the two
configurations (ABBA) to cancel drift, and prints the wall-time ratio. It also times the
callbacks' own hooks inside the monitored runs, a less noisy estimate of their share.

    python benchmarks/monitor_overhead.py                 # cifar_resnet20, batch 128, CPU
    python benchmarks/monitor_overhead.py --quick         # a smoke run
    python benchmarks/monitor_overhead.py --model resnet18_cifar --device cuda
"""

from __future__ import annotations

import argparse
import functools
import statistics
import time
import warnings

import lightning as L
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from critical.callbacks import GradientConfusion, GradientPredictability, LayerRotation
from critical.models import create_model

HOOKS = (
    "on_before_optimizer_step",
    "on_train_epoch_end",
    "on_train_epoch_start",
    "on_fit_start",
    "on_train_start",
)


class Classifier(L.LightningModule):
    def __init__(self, model: str, lr: float = 0.05) -> None:
        super().__init__()
        self.net = create_model(model, num_classes=10)
        self.lr = lr

    def training_step(self, batch, batch_idx):
        x, y = batch
        return nn.functional.cross_entropy(self.net(x), y)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=self.lr, momentum=0.9)


def timed_callbacks(cbs, totals):
    """Wrap each callback hook to accumulate its wall time (synchronising the device)."""
    for cb in cbs:
        for hook in HOOKS:
            fn = getattr(cb, hook)

            @functools.wraps(fn)
            def wrapper(*a, __fn=fn, **k):
                if torch.cuda.is_available():
                    torch.cuda.synchronize()
                t = time.perf_counter()
                out = __fn(*a, **k)
                if torch.cuda.is_available():
                    torch.cuda.synchronize()
                totals[0] += time.perf_counter() - t
                return out

            setattr(cb, hook, wrapper)
    return cbs


def run(args, loader, monitored: bool, hook_totals=None) -> float:
    torch.manual_seed(0)
    module = Classifier(args.model)
    cbs = []
    if monitored:
        cbs = [GradientConfusion(), GradientPredictability(), LayerRotation()]
        if hook_totals is not None:
            timed_callbacks(cbs, hook_totals)
    trainer = L.Trainer(
        accelerator=args.device,
        devices=1,
        max_epochs=args.epochs,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=cbs,
        precision=args.precision,
    )
    if args.device == "cuda":
        torch.cuda.synchronize()
    t = time.perf_counter()
    trainer.fit(module, loader)
    if args.device == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--model", default="cifar_resnet20")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--steps", type=int, default=100, help="optimizer steps per epoch")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--repeats", type=int, default=2, help="ABBA rounds")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--precision", default="32-true")
    p.add_argument("--quick", action="store_true", help="tiny smoke run")
    args = p.parse_args()
    if args.quick:
        args.steps, args.epochs, args.repeats, args.batch_size = 10, 1, 1, 32
    warnings.filterwarnings("ignore")
    n = args.steps * args.batch_size
    g = torch.Generator().manual_seed(0)
    x = torch.rand(n, 3, 32, 32, generator=g)
    y = torch.randint(0, 10, (n,), generator=g)
    loader = DataLoader(TensorDataset(x, y), batch_size=args.batch_size, shuffle=True)
    torch.set_float32_matmul_precision("high")

    run(args, loader, monitored=True)  # warm-up: allocator, kernels, imports
    base, mon, hooks = [], [], [0.0]
    for r in range(args.repeats):
        order = (False, True) if r % 2 == 0 else (True, False)
        for monitored in order + order[::-1]:
            t = run(args, loader, monitored, hooks if monitored else None)
            (mon if monitored else base).append(t)
    params = sum(p.numel() for p in Classifier(args.model).parameters())
    device = (
        torch.cuda.get_device_name()
        if args.device == "cuda"
        else f"CPU x{torch.get_num_threads()} threads"
    )
    ratio = statistics.median(mon) / statistics.median(base)
    print(
        f"model={args.model} params={params:,} batch={args.batch_size} steps/epoch={args.steps} "
        f"epochs={args.epochs} device={device} precision={args.precision}"
    )
    print(f"baseline fit  s: {' '.join(f'{t:.2f}' for t in base)}")
    print(f"monitored fit s: {' '.join(f'{t:.2f}' for t in mon)}")
    print(f"hook time share: {hooks[0] / sum(mon):.4%} of monitored fit time")
    print(f"time ratio (monitored / baseline, medians): {ratio:.4f}")


if __name__ == "__main__":
    main()
