"""The global random number generators (torch's CPU and CUDA ones, NumPy's, Python's) left as
they were found, around work that must neither draw from nor disturb a training's streams.

Example:
    >>> import random
    >>> random.seed(1); a = random.random(); random.seed(1)
    >>> with seeded_rngs(5):
    ...     _ = random.random()
    >>> random.random() == a
    True
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import numpy as np
import torch

__all__ = ["rngs_restored", "seeded_rngs"]


@contextmanager
def rngs_restored(cuda_devices: Sequence[int] = ()) -> Iterator[None]:
    """Leave torch's CPU generator (and those of ``cuda_devices``), NumPy's and Python's as
    found."""
    py_state, np_state = random.getstate(), np.random.get_state()
    try:
        with torch.random.fork_rng(devices=list(cuda_devices)):
            yield
    finally:
        random.setstate(py_state)
        np.random.set_state(np_state)


@contextmanager
def seeded_rngs(seed: int) -> Iterator[None]:
    """Run a block under torch's, Python's and NumPy's global generators seeded with ``seed``,
    and put all three back as they were afterwards (what a transform may draw from)."""
    with rngs_restored():
        torch.manual_seed(int(seed))
        random.seed(int(seed))
        np.random.seed(int(seed) % 2**32)
        yield
