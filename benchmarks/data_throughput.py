"""Augmented images per second: batched tensor fast path vs torchvision per-image PIL transforms.

Both pipelines do the same augmentation: random crop 32 with 4 pixels of zero padding, random
horizontal flip, a strong policy (TrivialAugment-Wide by default, or RandAugment), conversion to
float in [0, 1]. Both start from decoded images in memory (the fast path from the ``uint8``
tensor, the baseline from PIL images made once from it), so JPEG decoding is not measured.

* fast path: :class:`critical.data.AugmentedLoader` + :class:`critical.data.BatchAugment` on
  the device (index_select, crop, flip, policy, all batched);
* baseline: ``torch.utils.data.DataLoader`` over a Dataset applying
  ``Compose([RandomCrop(32, padding=4), RandomHorizontalFlip(), TrivialAugmentWide(),
  ToTensor()])`` per image, with ``--workers`` worker processes (default: every CPU this process
  may use). With ``--device cuda`` the baseline's batches are also moved to the GPU the usual
  way (``pin_memory=True``, ``.to(device, non_blocking=True)``), as a training loop would.

Rates are steady-state: the clock starts after the first batch (worker start-up and warm-up
excluded) and stops after the last. Data: the CIFAR-10 ImageFolder given by ``--data`` (default
``../shared/data/cifar10/train`` relative to the repository root; decoded once into the
``~/.cache/critical`` cache), or generated 32 x 32 images when the folder is absent.

Without the CIFAR-10 folder (e.g. on a GPU machine that has only the repository) it uses
generated images: the cost of these augmentations hardly depends on the pixels.

Usage::

    python benchmarks/data_throughput.py                  # full run, CPU
    python benchmarks/data_throughput.py --quick          # a few seconds
    python benchmarks/data_throughput.py --device cuda    # fast path on the GPU (~1 minute)

The last line (``SUMMARY ...``) holds the figures.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Dataset

from critical.data import (
    AugmentedLoader,
    BatchAugment,
    MultiplicitySampler,
    load_image_folder,
    make_synthetic,
)

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO / ".." / "shared" / "data" / "cifar10" / "train"


def load_images(path: Path, n: int) -> tuple[torch.Tensor, str]:
    """Up to ``n`` uint8 images (N, 3, 32, 32) and a description of where they came from."""
    if path.is_dir():
        t = time.perf_counter()
        data = load_image_folder(path)
        src = f"{path.resolve()} ({len(data)} images, loaded in {time.perf_counter() - t:.1f} s)"
        perm = torch.randperm(len(data), generator=torch.Generator().manual_seed(0))[:n]
        return data.images[perm].contiguous(), src
    data = make_synthetic(n=n, num_classes=10, image_size=32, channels=3)
    return data.images, f"generated ({path} not found)"


def bench_fast(
    images: torch.Tensor, batch_size: int, policy: str, device: str, min_images: int
) -> float:
    x = images.to(device)
    y = torch.zeros(len(x), dtype=torch.long, device=device)
    aug = BatchAugment(crop_padding=4, flip=True, policy=policy)
    sync = torch.cuda.synchronize if x.is_cuda else (lambda: None)
    done, start, epoch = 0, None, 0
    while True:
        sampler = MultiplicitySampler(len(x), batch_size, multiplicity=1, seed=0)
        sampler.set_epoch(epoch)
        for xb, _ in AugmentedLoader(x, y, sampler, aug, seed=0):
            if start is None:  # first batch is the warm-up
                sync()
                start = time.perf_counter()
                continue
            done += xb.shape[0]
        epoch += 1
        if done >= min_images:
            break
    sync()
    return done / (time.perf_counter() - start)


class PILDataset(Dataset):
    """Per-image torchvision transforms on PIL images (the classic CIFAR pipeline)."""

    def __init__(self, images: torch.Tensor, policy: str) -> None:
        import torchvision.transforms as T
        from PIL import Image

        self.pil = [Image.fromarray(a) for a in images.permute(0, 2, 3, 1).numpy()]
        strong = T.TrivialAugmentWide() if policy == "trivialaugment" else T.RandAugment()
        self.transform = T.Compose(
            [T.RandomCrop(32, padding=4), T.RandomHorizontalFlip(), strong, T.ToTensor()]
        )

    def __len__(self) -> int:
        return len(self.pil)

    def __getitem__(self, i: int):
        return self.transform(self.pil[i]), 0


def bench_baseline(
    images: torch.Tensor, batch_size: int, policy: str, workers: int, min_images: int, device: str
) -> float:
    ds = PILDataset(images, policy)
    cuda = device.startswith("cuda")
    loader = DataLoader(
        ds,
        batch_size=batch_size,
        shuffle=True,
        num_workers=workers,
        persistent_workers=workers > 0,
        pin_memory=cuda,
    )
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    done, start = 0, None
    while True:
        for xb, _ in loader:
            if cuda:
                xb = xb.to(device, non_blocking=True)
            if start is None:
                sync()
                start = time.perf_counter()
                continue
            done += xb.shape[0]
        if done >= min_images:
            break
    sync()
    return done / (time.perf_counter() - start)


def usable_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=DEFAULT_DATA, help="ImageFolder of 32x32 images")
    p.add_argument("--quick", action="store_true", help="short run (a few seconds)")
    p.add_argument("--policy", default="trivialaugment", choices=["trivialaugment", "randaugment"])
    p.add_argument("--batch-size", type=int, default=512)
    p.add_argument(
        "--workers",
        type=int,
        default=usable_cpus(),
        help="DataLoader workers of the baseline (default: the CPUs this process may use)",
    )
    p.add_argument("--device", default="cpu", help="device of the fast path (cpu, cuda)")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.add_argument("--repeats", type=int, default=None, help="measurements (default 3, quick 1)")
    p.add_argument(
        "--images",
        type=int,
        default=None,
        help="images per measurement (default 50000, --quick 6000)",
    )
    args = p.parse_args()

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    n_fast = args.images or (6000 if args.quick else 50000)
    n_base = args.images or (3000 if args.quick else 15000)
    pool = 6000 if args.quick else 50000
    repeats = args.repeats or (1 if args.quick else 3)
    images, src = load_images(args.data, pool)
    device = (
        torch.cuda.get_device_name(torch.device(args.device))
        if args.device.startswith("cuda")
        else "CPU"
    )
    print(
        f"machine: {platform.machine()} {platform.processor() or ''}, {os.cpu_count()} CPUs "
        f"({usable_cpus()} usable), {device}, torch {torch.__version__} "
        f"({torch.get_num_threads()} threads), load average {os.getloadavg()[0]:.2f}"
    )
    print(f"data: {src}; {len(images)} images in the pool")
    print(f"augmentation: RandomCrop(32, padding=4) + HorizontalFlip + {args.policy} + to float")
    print(f"{repeats} repeat(s), alternating; median [min - max] images/s")

    fast, base = [], []
    for _ in range(repeats):  # alternate so that a burst of load on a shared machine hits both
        fast.append(bench_fast(images, args.batch_size, args.policy, args.device, n_fast))
        base.append(
            bench_baseline(images, args.batch_size, args.policy, args.workers, n_base, args.device)
        )
    f_med, b_med = statistics.median(fast), statistics.median(base)
    print(f"fast path (batched tensors, {args.device}): {_fmt(fast)}")
    print(f"torchvision DataLoader + PIL ({args.workers} workers): {_fmt(base)}")
    print(f"ratio fast / baseline (medians): {f_med / b_med:.1f}x")
    print(
        f"SUMMARY policy={args.policy} batch={args.batch_size} device={device} "
        f"fast={f_med:.0f}/s baseline={b_med:.0f}/s (PIL, {args.workers} workers"
        f"{', pinned, to GPU' if args.device.startswith('cuda') else ''}) "
        f"ratio={f_med / b_med:.1f}x torch={torch.__version__} load={os.getloadavg()[0]:.2f}"
    )


def _fmt(rates: list[float]) -> str:
    return f"{statistics.median(rates):8.0f} [{min(rates):.0f} - {max(rates):.0f}] images/s"


if __name__ == "__main__":
    main()
