"""Overhead of the whole default callback set a user adds, against no callbacks, on CPU.

The set: ``CriticalPeriod()`` (the default detector) with the metric callbacks its default reads
(``AugmentationGap()``, and ``LayerRotation()`` for the rule it falls back on when a fit does not
validate every epoch), ``AugmentationCutoff()``, ``EnergyTracker()`` and
``RunDirectory(root=<tmp>)``. Whether ``CriticalPeriod`` adds its metric callbacks by itself is
detected (``--metrics auto``): the warm-up fit runs it without them, and a fit-start error naming
one (or a fit that ran without them) decides; ``--metrics explicit`` lists them always,
``--metrics implicit`` never.

The setting is a user's: a CIFAR-shaped map-style dataset of ``uint8`` images (generated, with a
class-dependent pattern) behind random torchvision transforms v2 (crop with padding 4,
horizontal flip) in a ``DataLoader`` (``MultiplicityDataModule``, multiplicity k = 3, the main
process's loader), a validation split checked every epoch, ``ImageClassifier("cifar_resnet20")``
(SGD, cosine), Lightning's default logger and checkpointing (into a temporary directory; the
progress bar and model summary are off), 3 epochs per fit.

Fits alternate, without / with (A/B/A/B...), after one short warm-up fit of each (imports, the
allocator; its figures are printed apart, they are what a user's first fit in a process pays).
A tiny timing callback, first in the callback list, stamps each ``on_train_epoch_start`` and the
``on_train_end``: epoch e runs from its start to the next epoch's start (the last epoch to
``on_train_end``), so an epoch's time holds its training, its validation and every callback's
epoch-end work (metric passes, checkpoint, files). Printed separately:

(a) the per-epoch ratio: median epoch wall time with / without, over epochs 1.. (epoch 0 is left
    out: it pays one-off work, e.g. EnergyTracker's FLOP count on the first batch and the first
    passes of the metric callbacks; its own ratio is printed beside);
(b) the fixed per-fit cost: fit wall time (from building the callbacks and the Trainer to the
    return of ``fit``) minus the epochs' time, median with minus median without.

``--profile`` then runs one fit with the set under cProfile, enabled only outside the epochs (from
the Trainer's construction to the first epoch start, and from ``on_train_end`` to the return of
``fit``), and prints the functions by cumulative time: where the fixed cost goes.

Commands::

    python benchmarks/default_set_overhead.py --threads 2                # the default setting
    python benchmarks/default_set_overhead.py --threads 2 --profile      # and the fixed cost's profile
    python benchmarks/default_set_overhead.py --quick                    # a smoke run
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import io
import logging
import os
import platform
import pstats
import statistics
import sys
import tempfile
import time
import warnings
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback
from torch.utils.data import Dataset
from torchvision.transforms import v2

from critical.callbacks import (
    AugmentationCutoff,
    AugmentationGap,
    CriticalPeriod,
    EnergyTracker,
    LayerRotation,
    RunDirectory,
)
from critical.data import MultiplicityDataModule
from critical.data.protocol import get_multiplicity
from critical.task import ImageClassifier

MODEL = "cifar_resnet20"
NUM_CLASSES = 10


class UserImages(Dataset):
    """A map-style dataset as a user has one: ``(uint8 CHW image, label)`` pairs, 32x32 RGB,
    a smooth class template plus per-image noise (learnable, generated once)."""

    def __init__(self, n: int, seed: int) -> None:
        g = torch.Generator().manual_seed(seed)
        templates = torch.rand(NUM_CLASSES, 3, 8, 8, generator=torch.Generator().manual_seed(0))
        templates = torch.nn.functional.interpolate(templates, size=32, mode="bilinear")
        self.labels = torch.arange(n) % NUM_CLASSES
        noise = 0.25 * torch.randn(n, 3, 32, 32, generator=g)
        images = (templates[self.labels] + noise).clamp(0, 1)
        self.images = (images * 255).round().to(torch.uint8)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self.images[i], int(self.labels[i])


def make_data(args: argparse.Namespace) -> MultiplicityDataModule:
    train = v2.Compose(
        [
            v2.RandomCrop(32, padding=4),
            v2.RandomHorizontalFlip(),
            v2.ToDtype(torch.float32, scale=True),
        ]
    )
    clean = v2.ToDtype(torch.float32, scale=True)
    return MultiplicityDataModule(
        UserImages(args.images, seed=1),
        val_dataset=UserImages(args.val_images, seed=2),
        transform=train,
        eval_transform=clean,
        multiplicity=args.k,
        batch_size=args.batch_size,
    )


class EpochClock(Callback):
    """First in the callback list: stamps every epoch start, the train end and k per epoch."""

    def __init__(self, profiler: cProfile.Profile | None = None) -> None:
        self.starts: list[float] = []
        self.ks: list[int | None] = []
        self.train_end: float | None = None
        self.profiler = profiler

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.profiler is not None and not self.starts:
            self.profiler.disable()
        self.starts.append(time.perf_counter())
        self.ks.append(get_multiplicity(trainer))

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.train_end = time.perf_counter()
        if self.profiler is not None:
            self.profiler.enable()

    def epochs(self) -> list[float]:
        assert self.train_end is not None
        ends = [*self.starts[1:], self.train_end]
        return [b - a for a, b in zip(self.starts, ends)]


HOOKS = ("setup", "teardown", "state_dict", "load_state_dict")


def clock_hooks(cbs: list[Callback], clock: EpochClock, table: dict[tuple[str, str, bool], list]):
    """Wrap every hook a callback overrides: ``table[(callback, hook, inside the epochs)]`` gets
    ``[calls, seconds]``."""
    for cb in cbs:
        names = [n for n in dir(Callback) if n.startswith("on_") or n in HOOKS]
        for hook in names:
            if getattr(type(cb), hook) is getattr(Callback, hook, None):
                continue
            fn = getattr(cb, hook)
            key = (type(cb).__name__, hook)

            def wrapper(*a: Any, __fn: Any = fn, __key: Any = key, **k: Any):
                inside = bool(clock.starts) and clock.train_end is None
                t = time.perf_counter()
                try:
                    return __fn(*a, **k)
                finally:
                    row = table.setdefault((*__key, inside), [0, 0.0])
                    row[0] += 1
                    row[1] += time.perf_counter() - t

            setattr(cb, hook, wrapper)


def default_set(root: str, metrics: bool) -> list[Callback]:
    """What a user adds (``metrics``: list the metric callbacks the default detector reads)."""
    extra: list[Callback] = [AugmentationGap(), LayerRotation()] if metrics else []
    return [
        *extra,
        CriticalPeriod(),
        AugmentationCutoff(),
        EnergyTracker(),
        RunDirectory(root=root),
    ]


def fit(
    args: argparse.Namespace,
    with_set: bool,
    workdir: str,
    profiler: cProfile.Profile | None = None,
    hooks: dict[tuple[str, str, bool], list] | None = None,
    **trainer_kw: Any,
) -> tuple[float, EpochClock, L.Trainer]:
    """One fit; its wall time from building the callbacks and the Trainer to ``fit``'s return."""
    torch.manual_seed(0)
    data = make_data(args)
    module = ImageClassifier(MODEL, num_classes=NUM_CLASSES, lr=0.05)
    quiet = contextlib.redirect_stdout(io.StringIO()) if not args.verbose else None
    t0 = time.perf_counter()
    if profiler is not None:
        profiler.enable()
    clock = EpochClock(profiler)
    cbs: list[Callback] = [clock]
    if with_set:
        t = time.perf_counter()
        cbs += default_set(os.path.join(workdir, "runs"), args.explicit)
        if hooks is not None:
            hooks[("(all)", "__init__", False)] = [1, time.perf_counter() - t]
            clock_hooks(cbs[1:], clock, hooks)
    trainer = L.Trainer(
        accelerator="cpu",
        devices=1,
        max_epochs=trainer_kw.pop("max_epochs", args.epochs),
        default_root_dir=workdir,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=cbs,
        **trainer_kw,
    )
    with quiet or contextlib.nullcontext():
        trainer.fit(module, data)
    wall = time.perf_counter() - t0
    if profiler is not None:
        profiler.disable()
    return wall, clock, trainer


def warm_up(args: argparse.Namespace, workdir: str) -> dict[str, float]:
    """One short fit of each (imports, allocator); decides ``args.explicit`` under ``auto``."""
    short: dict[str, Any] = dict(max_epochs=1, limit_train_batches=2, limit_val_batches=2)
    out = {}
    wall, clock, _ = fit(args, False, workdir, **short)
    out["without"] = wall - sum(clock.epochs())
    if args.metrics == "auto":
        args.explicit = False
        try:
            wall, clock, trainer = fit(args, True, workdir, **short)
        except Exception as e:  # the default detector refuses a missing metric
            if "AugmentationGap" not in str(e) and "LayerRotation" not in str(e):
                raise
            args.explicit = True
            args.detected = f"CriticalPeriod() alone refused at fit start ({type(e).__name__})"
        else:
            names = {type(cb).__name__ for cb in getattr(trainer, "callbacks", [])}
            if "AugmentationGap" not in names:
                args.explicit = True
                args.detected = "CriticalPeriod() added no AugmentationGap"
            else:
                args.detected = "CriticalPeriod() added " + ", ".join(
                    n for n in ("AugmentationGap", "LayerRotation") if n in names
                )
                out["with"] = wall - sum(clock.epochs())
    else:
        args.explicit = args.metrics == "explicit"
        args.detected = f"--metrics {args.metrics}"
    if "with" not in out:
        wall, clock, _ = fit(args, True, workdir, **short)
        out["with"] = wall - sum(clock.epochs())
    return out


def machine() -> str:
    model = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    return f"{model}, {os.cpu_count()} logical CPUs, {platform.system()} {platform.release()}"


def load() -> str:
    with contextlib.suppress(OSError):
        return " ".join(f"{v:.1f}" for v in os.getloadavg())
    return "?"


def fmt(xs: list[float]) -> str:
    return " ".join(f"{x:.2f}" for x in xs)


def run(args: argparse.Namespace) -> None:
    params = sum(p.numel() for p in ImageClassifier(MODEL, num_classes=NUM_CLASSES).parameters())
    steps = -(-args.images * args.k // args.batch_size)
    print(
        f"model={MODEL} (ImageClassifier, SGD, cosine) params={params:,} "
        f"train_images={args.images} val_images={args.val_images} k={args.k} "
        f"batch={args.batch_size} steps/epoch={steps} epochs={args.epochs} "
        f"data=map-style uint8 3x32x32 + torchvision v2 RandomCrop(pad 4)+Flip in a DataLoader "
        f"(main process), validation every epoch; torch threads={torch.get_num_threads()}\n"
        f"machine: {machine()}; torch {torch.__version__}, lightning {L.__version__}, "
        f"python {platform.python_version()}; load average at start {load()}",
        flush=True,
    )
    with tempfile.TemporaryDirectory(prefix="critical-bench-") as workdir:
        t0 = time.perf_counter()
        first = warm_up(args, workdir)
        print(
            f"metric callbacks: {'listed explicitly' if args.explicit else 'added by CriticalPeriod'}"
            f" ({args.detected})\n"
            f"warm-up (first fit of each in this process, 1 epoch of 2 batches): fixed cost "
            f"without {first['without']:.2f} s, with {first['with']:.2f} s",
            flush=True,
        )
        walls: dict[bool, list[float]] = {False: [], True: []}
        fixed: dict[bool, list[float]] = {False: [], True: []}
        epochs: dict[bool, list[list[float]]] = {False: [], True: []}
        ks: dict[bool, list[list[int | None]]] = {False: [], True: []}
        for r in range(args.repeats):
            for with_set in (False, True):
                wall, clock, _ = fit(args, with_set, workdir)
                ep = clock.epochs()
                walls[with_set].append(wall)
                fixed[with_set].append(wall - sum(ep))
                epochs[with_set].append(ep)
                ks[with_set].append(clock.ks)
                print(
                    f"  {'with   ' if with_set else 'without'} fit {r + 1}: {wall:6.2f} s, "
                    f"epochs {fmt(ep)} s (k {clock.ks}), outside the epochs "
                    f"{wall - sum(ep):.2f} s; load {load()}",
                    flush=True,
                )
        later = {w: [e for fit_eps in epochs[w] for e in fit_eps[1:]] for w in (False, True)}
        first_ep = {w: [fit_eps[0] for fit_eps in epochs[w]] for w in (False, True)}
        same_k = all(
            k == ks[False][0] for k in ks[True] + ks[False]
        )  # a cut inside the fits would change the work per epoch
        ratio = statistics.median(later[True]) / statistics.median(later[False])
        ratio0 = statistics.median(first_ep[True]) / statistics.median(first_ep[False])
        cost = statistics.median(fixed[True]) - statistics.median(fixed[False])
        fit_ratio = statistics.median(walls[True]) / statistics.median(walls[False])
        # one-off work inside epoch 0 (its excess over the later epochs), with minus without
        oneoff = {w: statistics.median(first_ep[w]) - statistics.median(later[w]) for w in walls}
        print(
            f"(a) per-epoch ratio, epochs 1-{args.epochs - 1}: {ratio:.3f} (median epoch "
            f"{statistics.median(later[True]):.3f} s with / {statistics.median(later[False]):.3f} "
            f"s without; goal <= 1.02); epoch 0 (left out, one-off work): {ratio0:.3f}\n"
            f"(b) fixed per-fit cost: {cost:.2f} s (outside the epochs, medians: with "
            f"{statistics.median(fixed[True]):.2f} s, without {statistics.median(fixed[False]):.2f}"
            f" s; goal < 1 s); per fit: with {fmt(fixed[True])}, without {fmt(fixed[False])}\n"
            f"    beside (b): one-off work inside epoch 0 (epoch 0 minus the later epochs' median), "
            f"with minus without: {oneoff[True] - oneoff[False]:.2f} s\n"
            f"whole fits: ratio {fit_ratio:.3f} (medians {statistics.median(walls[True]):.2f} s / "
            f"{statistics.median(walls[False]):.2f} s); k per epoch "
            f"{'the same in every fit' if same_k else 'DIFFERS between fits (a cut): see above'}; "
            f"load average at end {load()}; benchmark wall time {time.perf_counter() - t0:.0f} s",
            flush=True,
        )
        if args.profile:
            profile_fixed(args, workdir)


def profile_fixed(args: argparse.Namespace, workdir: str) -> None:
    prof = cProfile.Profile()
    hooks: dict[tuple[str, str, bool], list] = {}
    wall, clock, _ = fit(args, True, workdir, profiler=prof, hooks=hooks)
    print(
        f"\none fit with the set under cProfile (outside the epochs only) and with its callbacks'"
        f" hooks clocked: fit {wall:.2f} s, epochs {fmt(clock.epochs())} s, outside the epochs "
        f"{wall - sum(clock.epochs()):.2f} s. Hooks (calls, seconds), > 5 ms:"
    )
    for inside in (False, True):
        rows = sorted(
            ((k, v) for k, v in hooks.items() if k[2] == inside and v[1] > 0.005),
            key=lambda kv: -kv[1][1],
        )
        print(f"  {'inside the epochs' if inside else 'outside the epochs'}:")
        for (cb, hook, _), (n, sec) in rows:
            print(f"    {cb}.{hook}: {n} calls, {sec:.3f} s")
    print("by cumulative time (cProfile, outside the epochs):")
    out = io.StringIO()
    stats = pstats.Stats(prof, stream=out)
    stats.sort_stats("cumulative").print_stats(args.profile_lines)
    print(out.getvalue())


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--images", type=int, default=2048, help="training images")
    p.add_argument("--val-images", type=int, default=512)
    p.add_argument("--k", type=int, default=3, help="multiplicity")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--repeats", type=int, default=4, help="fits of each configuration")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    p.add_argument(
        "--metrics",
        choices=["auto", "explicit", "implicit"],
        default="auto",
        help="list AugmentationGap and LayerRotation (explicit), rely on CriticalPeriod adding "
        "them (implicit), or detect which (auto)",
    )
    p.add_argument("--profile", action="store_true", help="cProfile the fixed cost of one fit")
    p.add_argument("--profile-lines", type=int, default=45)
    p.add_argument("--verbose", action="store_true", help="let the fits print (summaries)")
    p.add_argument("--quick", action="store_true", help="a smoke run")
    args = p.parse_args()
    if args.quick:
        args.images, args.val_images, args.repeats, args.epochs = 256, 128, 1, 2
    if args.epochs < 2:
        p.error("--epochs must be >= 2 (epoch 0 is left out of the per-epoch ratio)")
    if args.threads:
        torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")
    for name in ("lightning.pytorch", "lightning.fabric", "codecarbon"):
        logging.getLogger(name).setLevel(logging.ERROR)
    print(f"$ python {' '.join(sys.argv)}")
    run(args)


if __name__ == "__main__":
    main()
