"""Runs a stop killed half-way, set aside so that a sweep trains them again.

A sweep skips finished runs and never writes into an unfinished run's folder (``an incomplete
directory exists``): a run killed with its job (a time limit, a stop, a crash of the machine)
would block itself and every branch off it. :func:`set_aside` moves each unfinished run folder,
and for an always-k run (a trunk) its per-epoch checkpoints too (a rerun must not find a killed
run's files), into ``OUT/.set_aside/<time>/``: nothing is deleted. Only while no sweep runs in
``OUT`` (``critical sweep --retry-unfinished`` calls it before it plans).

    >>> import tempfile
    >>> from pathlib import Path
    >>> out = Path(tempfile.mkdtemp())
    >>> (out / "m-E4-always-k3-s0").mkdir()      # a run folder without its files: unfinished
    >>> [p.name for p in set_aside(out)]
    ['m-E4-always-k3-s0']
    >>> [p.name for p in (out / ".set_aside").glob("*/*")]
    ['m-E4-always-k3-s0']
"""

from __future__ import annotations

import re
import shutil
import time
from collections.abc import Iterable
from pathlib import Path

from critical.runfiles import run_status

__all__ = ["set_aside", "unfinished"]

_NOT_RUNS = ("logs", "checkpoints")
_TRUNK = re.compile(r"^(?P<head>.+)-always-k\d+-(?P<seed>s[^-]+)$")


def unfinished(out: Path, names: Iterable[str] | None = None) -> list[Path]:
    """The run folders under ``out`` (or only those named ``names``) that are not finished."""
    if not out.is_dir():
        return []
    wanted = None if names is None else set(names)
    return [
        d
        for d in sorted(out.iterdir())
        if d.is_dir()
        and d.name not in _NOT_RUNS
        and not d.name.startswith(("_", "."))
        and (wanted is None or d.name in wanted)
        and not run_status(d).complete
    ]


def set_aside(
    out: Path, names: Iterable[str] | None = None, stamp: str | None = None
) -> list[Path]:
    """Moves the unfinished runs under ``out`` (or of ``names``), with a trunk's checkpoints,
    to ``out/.set_aside/<stamp>/``; returns the run folders moved (where they were)."""
    runs = unfinished(out, names)
    if not runs:
        return []
    dest = out / ".set_aside" / (stamp or time.strftime("%Y%m%dT%H%M%S"))
    dest.mkdir(parents=True, exist_ok=True)
    for run in runs:
        m = _TRUNK.match(run.name)
        ckpt = out / "checkpoints" / f"{m['head']}-{m['seed']}" if m else None
        if ckpt is not None and ckpt.is_dir():
            (dest / "checkpoints").mkdir(exist_ok=True)
            shutil.move(ckpt, dest / "checkpoints" / ckpt.name)
        shutil.move(run, dest / run.name)
    return runs
