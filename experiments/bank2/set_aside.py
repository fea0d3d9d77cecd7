"""Sets aside the unfinished runs of a sweep folder, so that the sweep trains them again.

`critical sweep` skips finished runs and refuses to overwrite an unfinished one ("an incomplete
directory exists ... remove it to run again"): a run killed with its session (a stop, a kill)
would block itself and every branch off it. This moves each unfinished run folder, and for an
always-k trunk its per-epoch checkpoints (a rerun must not find a killed run's files), into
``FOLDER/_set_aside/<time>/``: nothing is deleted. Call it only while no sweep runs in FOLDER
(``run_all.sh`` holds the folder's lock).

    python experiments/bank2/set_aside.py $BANK2_OUT/osu
"""

from __future__ import annotations

import argparse
import re
import shutil
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from critical.runfiles import run_status

SKIP = ("logs", "checkpoints")
TRUNK = re.compile(r"^(?P<head>.+)-always-k\d+-(?P<seed>s[^-]+)$")


def unfinished(folder: Path) -> list[Path]:
    """The run folders under ``folder`` that are not finished (``run_status``)."""
    return [
        d
        for d in sorted(folder.iterdir())
        if d.is_dir()
        and d.name not in SKIP
        and not d.name.startswith(("_", "."))
        and not run_status(d).complete
    ]


def set_aside(folder: Path, stamp: str | None = None) -> list[Path]:
    """Moves the unfinished runs (and a trunk's checkpoints) aside; returns the runs moved."""
    runs = unfinished(folder)
    if not runs:
        return []
    dest = folder / "_set_aside" / (stamp or time.strftime("%Y%m%dT%H%M%S"))
    dest.mkdir(parents=True, exist_ok=True)
    for run in runs:
        m = TRUNK.match(run.name)
        ckpt = folder / "checkpoints" / f"{m['head']}-{m['seed']}" if m else None
        if ckpt is not None and ckpt.is_dir():
            (dest / "checkpoints").mkdir(exist_ok=True)
            shutil.move(ckpt, dest / "checkpoints" / ckpt.name)
        shutil.move(run, dest / run.name)
    return runs


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folders", type=Path, nargs="+")
    args = ap.parse_args(argv)
    for folder in args.folders:
        if not folder.is_dir():
            continue  # a sweep not started yet
        for run in set_aside(folder):
            print(f"set aside (unfinished): {run}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
