r"""FLOPs of a training sample, counted once per model and input shape for
:class:`~critical.callbacks.EnergyTracker`.

How: :class:`torch.utils.flop_counter.FlopCounterMode` around one forward pass of the model on
the first 2 samples of a training batch, and around ``torch.autograd.grad`` of the sum of its
output with respect to the trainable parameters (the backward pass training pays, without the
input gradient); both divided by the sample count. The pass leaves the module as it was: every
submodule in eval mode during the pass (no batch-norm running-statistics update, no dropout)
and restored afterwards, ``.grad`` untouched (``autograd.grad``, never ``.backward()``), the RNG
state forked. FlopCounterMode counts the matrix products and convolutions (``mm``, ``addmm``,
``bmm``, ``convolution``, attention), 2 FLOPs per multiply-add; element-wise operations,
normalisation and the optimizer step are not counted. It counts ``forward`` of the
LightningModule: a ``training_step`` that does more (several forward passes, mixup) is
under-counted.

The model input is the batch itself (a tensor) or the first element of a tuple / list batch;
anything else (a dict, a tensor-less first element) cannot be counted, nor can a module whose
forward fails on the first 2 samples: :meth:`FlopCounter.per_sample` then returns ``None`` and
the caller warns once.

``torch.compile``: the count runs the module eagerly (``torch.compiler.set_stance("force_eager")``:
the 2-sample input compiles nothing new, no recompilation) and without FlopCounterMode's module
tracker, whose global module hooks make a compiled module warn ("global hooks on modules") and
are not needed for a total.

Example:
    >>> import torch
    >>> counter = FlopCounter()
    >>> net = torch.nn.Linear(8, 4)
    >>> batch = (torch.rand(16, 8), torch.zeros(16))
    >>> counter.count(net, batch)  # forward 2 x 8 x 4 per sample, backward (weight) as much
    >>> counter.info["flops_per_sample"], counter.info["params"], counter.info["input_shape"]
    ({'train': 128.0, 'forward': 64.0}, 36, [8])
    >>> counter.batch_flops(batch, 16)
    2048.0
"""

from __future__ import annotations

import contextlib
from typing import Any

import torch
from torch import nn

__all__ = ["FLOPS_METHOD", "FlopCounter", "model_input"]

FLOPS_METHOD = (
    "torch.utils.flop_counter.FlopCounterMode on the first 2 samples of the first training batch "
    "of each input shape, eval mode: forward, plus torch.autograd.grad w.r.t. the trainable "
    "parameters for training; matrix products and convolutions only, 2 FLOPs per multiply-add; "
    "validation not counted"
)
SAMPLES = 2


def model_input(batch: Any) -> torch.Tensor | None:
    """The model input of a training batch: the batch (a tensor with a batch dimension) or the
    first element of a tuple / list batch; ``None`` otherwise."""
    x = batch[0] if isinstance(batch, (tuple, list)) and batch else batch
    if isinstance(x, torch.Tensor) and x.ndim > 0 and x.shape[0] > 0:
        return x
    return None


def _output_sum(out: Any) -> torch.Tensor | None:
    """The sum of every floating-point tensor in a model output (a scalar to differentiate)."""
    if isinstance(out, torch.Tensor):
        return out.float().sum() if out.is_floating_point() else None
    items = out.values() if isinstance(out, dict) else out if isinstance(out, (list, tuple)) else []
    parts = [s for s in (_output_sum(o) for o in items) if s is not None]
    return torch.stack(parts).sum() if parts else None


class _NoModuleTracking:
    """Stands for FlopCounterMode's ModuleTracker: every FLOP counts towards the total only, and
    no global module hook is registered."""

    parents = ("Global",)

    def __enter__(self) -> _NoModuleTracking:
        return self

    def __exit__(self, *args: object) -> None:
        return None


def _counter() -> Any:
    """A FlopCounterMode that registers no global module hooks (see the module docstring)."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    if hasattr(counter, "mod_tracker"):  # torch >= 2.4: per-module attribution, not needed here
        # duck-typed stand-in: FlopCounterMode reads only `parents` and enters / exits it
        counter.mod_tracker = _NoModuleTracking()  # type: ignore[assignment]
    return counter


def _eager() -> Any:
    """Compiled code runs eagerly inside (no compilation for the counting pass)."""
    set_stance = getattr(torch.compiler, "set_stance", None)
    return set_stance("force_eager") if set_stance is not None else contextlib.nullcontext()


def count_flops(module: nn.Module, x: torch.Tensor) -> tuple[float, float]:
    """``(training, forward)`` FLOPs per sample of ``module`` on the first 2 samples of ``x``,
    leaving the module's state untouched (see the module docstring). Raises on failure."""
    x = x[:SAMPLES].detach()
    n = int(x.shape[0])
    params = [p for p in module.parameters() if p.requires_grad]
    modes = [(m, m.training) for m in module.modules()]
    devices = [x.device] if x.device.type == "cuda" else []
    module.eval()
    try:
        with torch.random.fork_rng(devices=devices), torch.enable_grad(), _eager():
            forward = _counter()
            with forward:
                out = module(x)
            backward_flops = 0
            total = _output_sum(out)
            if params and total is not None and total.requires_grad:
                backward = _counter()
                with backward:
                    torch.autograd.grad(total, params, allow_unused=True)
                backward_flops = backward.get_total_flops()
    finally:
        for m, mode in modes:
            m.training = mode
    forward_flops = forward.get_total_flops()
    return (forward_flops + backward_flops) / n, forward_flops / n


class FlopCounter:
    """Per-sample training FLOPs by input shape, counted on first sight of each shape.

    Attributes:
        info: ``params``, ``trainable_params``, ``flops_per_sample`` (``train``, ``forward``)
            and ``input_shape`` of the first shape counted, ``flops_method``; ``None`` before.
        failure: why counting failed (then FLOPs are ``None`` from then on), or ``None``.
    """

    def __init__(self) -> None:
        self.info: dict[str, Any] | None = None
        self.failure: str | None = None
        self._by_shape: dict[tuple, float] = {}

    def known(self, batch: Any) -> bool:
        """Whether this batch's input shape was counted (or counting failed for good)."""
        if self.failure is not None:
            return True
        x = model_input(batch)
        return x is not None and (tuple(x.shape[1:]), x.dtype) in self._by_shape

    def count(self, module: nn.Module, batch: Any) -> None:
        """Count the per-sample FLOPs of this batch's input shape (if not known yet); on failure
        ``failure`` says why and FLOPs are ``None`` from then on."""
        if self.known(batch):
            return
        x = model_input(batch)
        if x is None:
            self.failure = (
                f"no model input found in a training batch of type {type(batch).__name__} "
                "(a tensor, or a tuple / list whose first element is a tensor, is needed)"
            )
            return
        try:
            train, forward = count_flops(module, x)
        except Exception as e:  # noqa: BLE001 - any module: counting must never fail training
            self.failure = f"counting failed: {type(e).__name__}: {e}"
            return
        self._by_shape[(tuple(x.shape[1:]), x.dtype)] = train
        if self.info is None:
            self.info = {
                "params": sum(p.numel() for p in module.parameters()),
                "trainable_params": sum(p.numel() for p in module.parameters() if p.requires_grad),
                "flops_per_sample": {"train": train, "forward": forward},
                "input_shape": list(x.shape[1:]),
                "flops_method": FLOPS_METHOD,
            }

    def batch_flops(self, batch: Any, samples: int) -> float | None:
        """Training FLOPs of a batch of ``samples`` samples whose shape was counted, else
        ``None``."""
        if self.failure is not None:
            return None
        x = model_input(batch)
        if x is None:
            return None
        per = self._by_shape.get((tuple(x.shape[1:]), x.dtype))
        return None if per is None else per * samples
