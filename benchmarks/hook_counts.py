"""Counting, with ``torch.profiler``, what the metric callbacks' hooks issue: top-level ``aten::``
operators on CPU, CUDA runtime launch / memcpy / memset calls (and synchronisations) on GPU, and
collectives (``c10d::`` operators: all-reduce, broadcast, ...), per optimizer step and per epoch
boundary. Used by ``monitor_overhead.py``."""

from __future__ import annotations

import bisect
import functools
import re
import statistics
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from lightning.pytorch.callbacks import Callback
from torch.profiler import record_function

STEP_HOOKS = (
    "on_train_batch_start",
    "on_before_zero_grad",
    "on_before_backward",
    "on_after_backward",
    "on_before_optimizer_step",
    "on_train_batch_end",
)
RUNTIME_LAUNCH = re.compile(
    r"^(cuda|cu)(LaunchKernel\w*|LaunchCooperativeKernel\w*|GraphLaunch|Memcpy\w*Async|"
    r"Memset\w*Async)$"
)
RUNTIME_SYNC = re.compile(r"^(cuda|cu)(\w*Synchronize|Memcpy|Memcpy2D|MemcpyDtoH|MemcpyHtoD)$")
COLLECTIVE = re.compile(r"^c10d::")


def overridden_hooks(cb: Callback) -> list[str]:
    return [
        name
        for name in dir(Callback)
        if name.startswith("on_") and getattr(type(cb), name) is not getattr(Callback, name)
    ]


class StepTracker(Callback):
    """First in the callback list: which batch of the epoch the hooks belong to."""

    def __init__(self) -> None:
        self.batch = -1

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self.batch = -1

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.batch = batch_idx


def label_hooks(cbs: list[Callback], tracker: StepTracker) -> None:
    """Wrap every hook in a profiler range named ``critical|<batch or hook>|<callback>``."""
    for cb in cbs:
        name = type(cb).__name__
        for hook in overridden_hooks(cb):
            fn = getattr(cb, hook)

            @functools.wraps(fn)
            def wrapper(
                *a: Any, __fn: Any = fn, __hook: str = hook, __name: str = name, **k: Any
            ) -> Any:
                phase = f"b{tracker.batch}" if __hook in STEP_HOOKS else __hook
                with record_function(f"critical|{phase}|{__name}"):
                    return __fn(*a, **k)

            setattr(cb, hook, wrapper)


# ---------------------------------------------------------------------------- op counting
@dataclass
class Counts:
    """Per profiler range ``critical|<phase>|<callback>``: ops (CPU) or launches (GPU)."""

    per_phase: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    per_callback: dict[str, list[int]] = field(default_factory=lambda: defaultdict(list))
    collectives: dict[str, int] = field(default_factory=lambda: defaultdict(int))  # per phase
    syncs: int = 0
    hook_device_us: float = 0.0
    all_device_us: float = 0.0
    window_ops: int = 0  # everything in the profiled steps, hooks included (for scale)


def _top_ops(evt: Any) -> list[Any]:
    out = []
    for c in evt.cpu_children:
        if c.name.startswith("aten::"):
            out.append(c)
        else:
            out.extend(_top_ops(c))
    return out


def _descendants(evt: Any) -> list[Any]:
    out = []
    for c in evt.cpu_children:
        out.append(c)
        out.extend(_descendants(c))
    return out


def count_profile(events: Any, device: str) -> Counts:
    counts = Counts()
    ranges = [e for e in events if e.name.startswith("critical|")]
    runtime: dict[Any, list[Any]] = defaultdict(list)  # CUDA runtime calls per thread, by start
    for e in events:
        if RUNTIME_LAUNCH.match(e.name) or RUNTIME_SYNC.match(e.name):
            runtime[e.thread].append(e)
    starts = {}
    for thread, evts in runtime.items():
        evts.sort(key=lambda e: e.time_range.start)
        starts[thread] = [e.time_range.start for e in evts]
    for r in ranges:
        _, phase, cb = r.name.split("|")
        if device == "cuda":
            evts, st = runtime[r.thread], starts.get(r.thread, [])
            lo = bisect.bisect_left(st, r.time_range.start)
            hi = bisect.bisect_right(st, r.time_range.end)
            inside = evts[lo:hi]
            n = sum(1 for e in inside if RUNTIME_LAUNCH.match(e.name))
            counts.syncs += sum(1 for e in inside if RUNTIME_SYNC.match(e.name))
            counts.hook_device_us += sum(
                k.duration for e in _descendants(r) for k in getattr(e, "kernels", [])
            )
        else:
            n = len(_top_ops(r))
        counts.per_phase[phase] += n
        counts.collectives[phase] += sum(1 for e in _descendants(r) if COLLECTIVE.match(e.name))
        if n:
            key = "probe" if phase.startswith("b") else phase.removeprefix("on_train_")
            counts.per_callback[f"{cb} {key}"].append(n)
    if device == "cuda":
        counts.all_device_us = sum(k.duration for e in events for k in getattr(e, "kernels", []))
        counts.window_ops = sum(1 for e in events if RUNTIME_LAUNCH.match(e.name))
    else:
        counts.window_ops = sum(
            1
            for e in events
            if e.name.startswith("aten::")
            and (e.cpu_parent is None or not e.cpu_parent.name.startswith("aten::"))
        )
    return counts


def summarize_counts(counts: Counts, window: int) -> dict[str, Any]:
    steps = [counts.per_phase.get(f"b{i}", 0) for i in range(window)]
    probed = [n for n in steps if n]
    unprobed = [n for n in steps if not n]
    coll = [counts.collectives.get(f"b{i}", 0) for i in range(window)]
    coll_probed = [c for c, n in zip(coll, steps) if n]
    return {
        "collectives_per_probed": statistics.mean(coll_probed) if coll_probed else 0.0,
        "collectives_max_step": max(coll, default=0),
        "collectives_unprobed": sum(c for c, n in zip(coll, steps) if not n),
        "collectives_epoch_end": counts.collectives.get("on_train_epoch_end", 0),
        "probed": len(probed),
        "per_probed": statistics.mean(probed) if probed else 0.0,
        "max_probed": max(probed, default=0),
        "per_unprobed": statistics.mean(unprobed) if unprobed else float("nan"),
        "epoch_start": counts.per_phase.get("on_train_epoch_start", 0),
        "epoch_end": counts.per_phase.get("on_train_epoch_end", 0),
        "per_step_all": counts.window_ops / window,
    }


# ---------------------------------------------------------------------------- sync check
