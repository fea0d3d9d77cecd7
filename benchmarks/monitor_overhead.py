"""Overhead of the four metric callbacks at default settings, on CPU or one GPU.

Trains the same model on the same data for the same steps with and without GradientConfusion +
GradientPredictability + GradientNorm + LayerRotation (defaults), in one process, alternating
the two configurations (ABBA) to cancel drift, and prints the ratio of median fit wall times.
Beside it, a hardware-independent figure from ``torch.profiler``: the operators (CPU: top-level
``aten::`` ops) or kernel launches (GPU: CUDA runtime launch / memcpy / memset calls) that the
callbacks' hooks issue per probed step, per unprobed step and per epoch end, and the host-time
share of the hooks in the timed fits (the hooks are clocked without synchronising the device).

The batches are made once, on the training device (a pool of 32 distinct batches, reused): the
data path costs nothing, so the baseline step is as short as it gets and the ratio is the
pessimistic one. ``--sync-debug`` (CUDA) first runs one epoch of the baseline and one of the
monitored fit under ``torch.cuda.set_sync_debug_mode("error")`` from epoch start to epoch end,
so any host synchronisation there raises; the result is part of the summary.

Each configuration ends with one ``SUMMARY`` line. Commands::

    # the GPU run of issue #13 (one H100/H200): cifar_resnet20 32-true batch 128 and
    # resnet18_cifar bf16-mixed batch 256, each at 391 and at 100 steps/epoch, sync check at 391
    python benchmarks/monitor_overhead.py --suite --device cuda --sync-debug
    # one configuration
    python benchmarks/monitor_overhead.py --device cuda --model resnet18_cifar \\
        --precision bf16-mixed --batch-size 256
    # CPU, cifar_resnet20 fp32 batch 128 (1 thread on a shared machine: slow)
    python benchmarks/monitor_overhead.py --threads 1 --steps 100 --repeats 1
    python benchmarks/monitor_overhead.py --no-timing    # the op counts alone (about a minute)
    python benchmarks/monitor_overhead.py --quick        # a smoke run
    # sharded: 2 processes on CPU (gloo), FSDP2 (ModelParallelStrategy + fully_shard), the same
    # model and batches per rank; also prints the collectives per probed step and per epoch end
    python benchmarks/monitor_overhead.py --sharded --threads 1 --steps 48 --batch-size 32

With ``--sharded`` Lightning starts the second process by running this script again: both run
the same fits in step, rank 0 prints.

Budget of the GPU suite: per model one warm-up fit of 8 steps, two one-epoch sync checks, and
for each of 391 and 100 steps a profiled fit of ``2 * stride + 3`` steps and 8 timed fits of two
epochs: about 8,700 steps per model, so 1 to 1.5 minutes per model at 3-5 ms a step, plus
process and CUDA start-up (2-3 minutes in all; ``--repeats 1`` halves the timed fits). The script
prints each configuration's and its total wall time.
"""

from __future__ import annotations

import argparse
import functools
import logging
import math
import os
import statistics
import time
import traceback
import warnings
from typing import Any

import lightning as L
import torch
from hook_counts import (
    Counts,
    StepTracker,
    count_profile,
    label_hooks,
    overridden_hooks,
    summarize_counts,
)
from lightning.pytorch.callbacks import Callback
from torch import nn
from torch.profiler import ProfilerActivity, profile

from critical.callbacks import (
    GradientConfusion,
    GradientNorm,
    GradientPredictability,
    LayerRotation,
)
from critical.callbacks._probe import ProbeSchedule
from critical.models import create_model

#: the two configurations of issue #13: (model, precision, batch size)
SUITE = (("cifar_resnet20", "32-true", 128), ("resnet18_cifar", "bf16-mixed", 256))
POOL = 32  # distinct batches on the device


def monitors() -> list[Callback]:
    """The monitored set: the four metric callbacks at their defaults."""
    return [GradientConfusion(), GradientPredictability(), GradientNorm(), LayerRotation()]


def say(*a: Any, **k: Any) -> None:
    """``print`` on rank 0 only (``--sharded`` runs this script in 2 processes)."""
    if os.environ.get("LOCAL_RANK", "0") == "0":
        print(*a, **k)


class Classifier(L.LightningModule):
    def __init__(self, model: str, lr: float = 0.05, fsdp2: bool = False) -> None:
        super().__init__()
        self.net = create_model(model, num_classes=10)
        self.lr = lr
        self.fsdp2 = fsdp2

    def configure_model(self) -> None:
        if not self.fsdp2:
            return
        from torch.distributed.fsdp import fully_shard

        mesh = self.device_mesh["data_parallel"]
        for m in self.net.children():  # one FSDP unit per top-level child, then the rest
            if any(p.requires_grad for p in m.parameters()):
                fully_shard(m, mesh=mesh)
        fully_shard(self, mesh=mesh)

    def training_step(self, batch, batch_idx):
        x, y = batch
        return nn.functional.cross_entropy(self.net(x), y)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=self.lr, momentum=0.9)


class DeviceBatches:
    """``steps`` batches per epoch from a pool made once on the device (no per-step data cost)."""

    def __init__(self, steps: int, batch_size: int, device: str) -> None:
        g = torch.Generator(device=device).manual_seed(0)
        n = min(POOL, steps)
        self.x = torch.rand(n, batch_size, 3, 32, 32, generator=g, device=device)
        self.y = torch.randint(0, 10, (n, batch_size), generator=g, device=device)
        self.steps = steps

    def __len__(self) -> int:
        return self.steps

    def __iter__(self):
        n = len(self.x)
        for i in range(self.steps):
            yield self.x[i % n], self.y[i % n]


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


class SyncDebug(Callback):
    """First in the callback list: host synchronisations raise from epoch start to epoch end."""

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        torch.cuda.set_sync_debug_mode("error")

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        torch.cuda.set_sync_debug_mode("default")

    def on_exception(self, trainer, pl_module, exception) -> None:
        torch.cuda.set_sync_debug_mode("default")


def clock_hooks(cbs: list[Callback], total: list[float]) -> None:
    """Accumulate the host time of the callbacks' own hooks (no device synchronisation)."""
    for cb in cbs:
        for hook in overridden_hooks(cb):
            fn = getattr(cb, hook)

            @functools.wraps(fn)
            def wrapper(*a: Any, __fn: Any = fn, **k: Any) -> Any:
                t = time.perf_counter()
                try:
                    return __fn(*a, **k)
                finally:
                    total[0] += time.perf_counter() - t

            setattr(cb, hook, wrapper)


def make_trainer(args: argparse.Namespace, precision: str, callbacks: list[Callback], **kw: Any):
    kw.setdefault("max_epochs", args.epochs)
    if args.sharded:
        from lightning.pytorch.strategies import ModelParallelStrategy

        kw.update(
            devices=2,
            strategy=ModelParallelStrategy(data_parallel_size=2, tensor_parallel_size=1),
            use_distributed_sampler=False,
        )
    else:
        kw.setdefault("devices", 1)
    return L.Trainer(
        accelerator=args.device,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        callbacks=callbacks,
        precision=precision,
        **kw,
    )


def timed_fit(
    args, model: str, precision: str, data, callbacks: list[Callback], **kw
) -> tuple[float, float]:
    """Wall time and process CPU time of one fit."""
    torch.manual_seed(0)
    module = Classifier(model, fsdp2=args.sharded)
    trainer = make_trainer(args, precision, callbacks, **kw)
    sync(args.device)
    t, c = time.perf_counter(), time.process_time()
    trainer.fit(module, data)
    sync(args.device)
    return time.perf_counter() - t, time.process_time() - c


def probe_stride(steps: int) -> int:
    """The default schedule's stride (the three gradient callbacks share their defaults)."""
    return ProbeSchedule(max_probes=32, every=None, max_share=0.125).stride_for(steps)


def probed_steps_per_epoch(steps: int) -> int:
    """Steps that read gradients in an epoch under the defaults: each probe (shared by confusion,
    norm and the predictability pair it opens) and the step after it (closing the pair)."""
    stride = probe_stride(steps)
    probes = min(32, max(4, math.ceil(0.125 * steps)), math.ceil(steps / stride))
    return probes * (2 if stride > 1 else 1)


def profile_fit(args, model: str, precision: str, data) -> tuple[Counts, int]:
    """One monitored fit of ``2 * stride + 3`` steps under the profiler (probes at steps 0,
    stride, 2 * stride and their successors), its epoch end included."""
    window = min(args.steps, 2 * probe_stride(args.steps) + 3)
    tracker = StepTracker()
    cbs = monitors()
    label_hooks(cbs, tracker)
    torch.manual_seed(0)
    module = Classifier(model, fsdp2=args.sharded)
    trainer = make_trainer(args, precision, [tracker, *cbs], max_epochs=1, max_steps=window)
    activities = [ProfilerActivity.CPU]
    if args.device == "cuda":
        activities.append(ProfilerActivity.CUDA)
    with profile(activities=activities) as prof:
        trainer.fit(module, data)
        sync(args.device)
    return count_profile(prof.events(), args.device), window


def sync_check(args, model: str, precision: str, data) -> str:
    out = []
    for what, cbs in (("baseline", []), ("monitored", monitors())):
        try:
            timed_fit(args, model, precision, data, [SyncDebug(), *cbs], max_epochs=1)
            out.append(f"{what} ok")
        except RuntimeError as exc:
            torch.cuda.set_sync_debug_mode("default")
            frames = traceback.extract_tb(exc.__traceback__)
            ours = [f for f in frames if "/critical/" in f.filename]
            where = ours[-1] if ours else frames[-1]
            out.append(f"{what} FAILED at {where.filename}:{where.lineno} ({where.name})")
            print(f"sync-debug {what}: {type(exc).__name__}: {exc}")
            print("".join(traceback.format_list(frames[-8:])))
    return "; ".join(out)


# ---------------------------------------------------------------------------- one configuration
def run_config(args, model: str, precision: str, batch_size: int, steps: int) -> None:
    args.steps = steps
    data = DeviceBatches(steps, batch_size, args.device)
    unit = "kernels" if args.device == "cuda" else "ops"
    device = (
        torch.cuda.get_device_name()
        if args.device == "cuda"
        else f"CPU x{torch.get_num_threads()} threads"
    )
    params = sum(p.numel() for p in Classifier(model).parameters())
    head = (
        f"{'sharded=fsdp2x2 ' if args.sharded else ''}"
        f"model={model} params={params:,} precision={precision} batch={batch_size} "
        f"steps/epoch={steps} epochs={args.epochs} device={device!r} "
        f"torch={torch.__version__} lightning={L.__version__}"
    )
    say(f"\n=== {head}", flush=True)
    t0 = time.perf_counter()
    # warm-up (allocator, kernels, lazy imports): a probe, its successor and an epoch end
    timed_fit(args, model, precision, data, monitors(), max_epochs=1, max_steps=min(steps, 8))

    sync_result = "not-run"
    if args.sync_debug and steps == args.steps_list[0]:
        sync_result = sync_check(args, model, precision, data)
        say(f"sync-debug (epoch start to end): {sync_result}", flush=True)

    counts, window = profile_fit(args, model, precision, data)
    c = summarize_counts(counts, window)
    per_epoch = probed_steps_per_epoch(steps)
    avg = (per_epoch * c["per_probed"] + c["epoch_start"] + c["epoch_end"]) / steps
    say(
        f"profiled {window} steps: {c['probed']} probed steps, {c['per_probed']:.1f} {unit} "
        f"added per probed step (max {c['max_probed']}), {c['per_unprobed']:.1f} per unprobed "
        f"step; epoch start {c['epoch_start']}, epoch end {c['epoch_end']}; {per_epoch} probed "
        f"steps per epoch, {avg:.2f} {unit} added per step on average; a monitored step issues "
        f"{c['per_step_all']:.0f} {unit} in all"
    )
    for key, ns in sorted(counts.per_callback.items()):
        say(f"  {key}: {statistics.mean(ns):.1f} {unit} (x{len(ns)})")
    say(
        f"collectives in the hooks: {c['collectives_per_probed']:.2f} per probed step (at most "
        f"{c['collectives_max_step']} in a step), {c['collectives_unprobed']} at unprobed steps, "
        f"{c['collectives_epoch_end']} at the epoch end (logging included)"
    )
    if args.device == "cuda":
        share = counts.hook_device_us / counts.all_device_us if counts.all_device_us else 0.0
        say(
            f"  host syncs in hooks: {counts.syncs}; kernel time of the hooks: "
            f"{counts.hook_device_us:.0f} us of {counts.all_device_us:.0f} us ({share:.2%})"
        )

    ratio = hook_share = float("nan")
    if not args.no_timing:
        base: list[float] = []
        mon: list[float] = []
        base_cpu: list[float] = []
        mon_cpu: list[float] = []
        hooks = [0.0]
        for r in range(args.repeats):
            order = (False, True) if r % 2 == 0 else (True, False)
            for monitored in order + order[::-1]:
                cbs = monitors() if monitored else []
                if monitored:
                    clock_hooks(cbs, hooks)
                wall, cpu = timed_fit(args, model, precision, data, cbs)
                (mon if monitored else base).append(wall)
                (mon_cpu if monitored else base_cpu).append(cpu)
                what = "monitored" if monitored else "baseline "
                say(f"  {what} fit {wall:7.2f} s (process CPU {cpu:7.2f} s)", flush=True)
        ratio = statistics.median(mon) / statistics.median(base)
        hook_share = hooks[0] / sum(mon)
        say(f"baseline fit  s: {' '.join(f'{t:.2f}' for t in base)}")
        say(f"monitored fit s: {' '.join(f'{t:.2f}' for t in mon)}")
        cpu_ratio = statistics.median(mon_cpu) / statistics.median(base_cpu)
        say(
            f"time ratio {ratio:.4f} (medians; min/min {min(mon) / min(base):.4f}; process CPU "
            f"time {cpu_ratio:.4f}); hooks' host time {hook_share:.3%} of the monitored fits"
        )
    say(f"config wall time {time.perf_counter() - t0:.0f} s")
    say(
        f"SUMMARY {head} {unit}/probed_step={c['per_probed']:.1f} "
        f"{unit}/unprobed_step={c['per_unprobed']:.1f} {unit}/epoch_end={c['epoch_end']} "
        f"probed_steps/epoch={per_epoch} avg_{unit}/step={avg:.2f} hook_share={hook_share:.2%} "
        f"ratio={ratio:.4f} collectives/probed_step={c['collectives_per_probed']:.2f} "
        f"collectives/epoch_end={c['collectives_epoch_end']} sync_debug={sync_result}",
        flush=True,
    )


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--model", default="cifar_resnet20")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--precision", default="32-true")
    p.add_argument(
        "--steps",
        default="391",
        help="steps per epoch, or a comma-separated list (391: CIFAR-10 at batch 128)",
    )
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--repeats", type=int, default=2, help="ABBA rounds (4 fits each)")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument(
        "--suite", action="store_true", help="both models of issue #13 at 391 and 100 steps"
    )
    p.add_argument("--sync-debug", action="store_true", help="CUDA: check for host syncs")
    p.add_argument("--no-timing", action="store_true", help="op counts only")
    p.add_argument("--threads", type=int, default=None, help="torch threads (CPU)")
    p.add_argument("--quick", action="store_true", help="tiny smoke run")
    p.add_argument(
        "--sharded",
        action="store_true",
        help="2 processes on CPU (gloo), FSDP2: ModelParallelStrategy + fully_shard",
    )
    args = p.parse_args()
    if args.suite and args.steps == "391":
        args.steps = "391,100"
    args.steps_list = [int(v) for v in str(args.steps).split(",")]
    if args.quick:
        args.steps_list, args.epochs, args.repeats, args.batch_size = [24], 1, 1, 16
    if args.sync_debug and args.device != "cuda":
        p.error("--sync-debug needs --device cuda")
    if args.sharded and (args.device != "cpu" or args.suite):
        p.error("--sharded runs 2 CPU processes (gloo); not with --device cuda or --suite")
    if args.threads:
        torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    torch.set_float32_matmul_precision("high")
    configs = SUITE if args.suite else ((args.model, args.precision, args.batch_size),)
    t0 = time.perf_counter()
    for model, precision, batch_size in configs:
        for steps in args.steps_list:
            run_config(args, model, precision, args.batch_size if args.quick else batch_size, steps)
    say(f"total wall time {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
