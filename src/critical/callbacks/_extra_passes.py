"""Extra forward and backward passes that leave no trace on training: the random number
generators restored (:func:`rng_restored`), and a module's buffers, train mode and torchmetrics
``Metric`` submodules as found (:func:`isolated`). Used by
:class:`~critical.callbacks.GradientConfusion`'s exact mode for its probe batches.

Example:
    >>> import torch
    >>> net = torch.nn.BatchNorm1d(3)
    >>> with isolated(net):
    ...     _ = net(torch.randn(8, 3))
    >>> bool(net.running_mean.eq(0).all())  # the running statistics are restored
    True
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

from critical._rng import rngs_restored

__all__ = ["isolated", "rng_restored"]


@contextmanager
def rng_restored(device: torch.device) -> Iterator[None]:
    """Leave the random number generators (torch CPU and ``device``, NumPy, Python) as found."""
    devices = []
    if device.type == "cuda":
        devices = [device.index if device.index is not None else torch.cuda.current_device()]
    with rngs_restored(devices):
        yield


@contextmanager
def isolated(module: nn.Module) -> Iterator[None]:
    """Extra passes that leave no trace on ``module``: in train mode, with its buffers restored,
    its torchmetrics ``Metric`` submodules swapped for copies, and the random generators
    restored."""
    from torchmetrics import Metric

    saved = {k: v.detach().clone() for k, v in module.named_buffers()}
    swapped: list[tuple[nn.Module, str, nn.Module]] = []
    stack = [module]
    while stack:
        parent = stack.pop()
        for name, child in parent.named_children():
            if isinstance(child, Metric):
                swapped.append((parent, name, child))
            else:
                stack.append(child)
    was_training = module.training
    device = next(iter(module.parameters())).device
    try:
        for parent, name, metric in swapped:
            setattr(parent, name, copy.deepcopy(metric))
        module.train()
        with rng_restored(device):
            yield
    finally:
        for parent, name, metric in swapped:
            setattr(parent, name, metric)
        with torch.no_grad():
            for k, v in module.named_buffers():
                v.copy_(saved[k])
        module.train(was_training)
