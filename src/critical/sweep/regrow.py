"""A finished trunk's first epochs trained again, for a branch whose checkpoint is gone.

A branch resumes from its trunk's checkpoint after the epoch before its cut. Checkpoints are
large, and often gone by the time a sweep grows: deleted to save disk, left on another machine's
scratch, or never copied with the run directories. When ``critical sweep`` (``--run``) reaches a
branch whose checkpoint is missing while its trunk has finished, it trains that trunk's first
epochs again with the trunk's own command into ``OUT/.regrow/<trunk>/`` (hidden: the sweep, the
report and :func:`~critical.sweep.aside.set_aside` pass it by), writing its checkpoints where the branches look for them and stopped by
:class:`~critical.callbacks.StopAfterEpoch` after the last epoch any pending branch needs
(``max_epochs``, so every schedule, unchanged). It then compares the rerun's metric rows with the
finished trunk's, epoch by epoch (``regrow.json``): seeded runs on the same machine and thread
count repeat exactly; on other hardware or thread counts the sums round differently and the
branch starts from a trunk a little different from the one in the report, which is said.

Example:
    >>> rows = [{"epoch": 0, "val/loss": 1.5}, {"epoch": 1, "val/loss": 1.2}]
    >>> rows_agree(rows, rows[:1])
    (True, '1 epoch(s) equal on every metric both rows hold')
    >>> rows_agree(rows, [{"epoch": 0, "val/loss": 1.4}])[0]
    False
"""

from __future__ import annotations

import math
import os
import re
import subprocess
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from critical.io import atomic_write_json
from critical.runfiles import num, read_rows, run_status
from critical.sweep.spec import Run

__all__ = ["REGROW", "missing_checkpoint", "needed", "regrow", "rows_agree"]

#: the folder under a sweep's OUT that holds the reruns
REGROW = ".regrow"
_CKPT = re.compile(r"^--ckpt_path=(?P<path>.*epoch=(?P<epoch>\d+)\.ckpt)$")
#: columns that differ between two runs of the same training (the clock, energy and CO2)
_NOT_COMPARED = re.compile(r"^energy/|time|duration")


def missing_checkpoint(run: Run, out: Path) -> tuple[str, int] | None:
    """``(trunk, epoch)`` when ``run`` has not finished and resumes from the checkpoint after
    ``epoch`` of a finished ``trunk``, and that checkpoint is missing; ``None`` otherwise (a
    trunk still to train writes its own checkpoints)."""
    parent = run.tags.get("parent")
    if not parent or run.alias_of or run_status(out / run.name).complete:
        return None  # a finished run needs no checkpoint
    for arg in run.args:
        m = _CKPT.match(arg)
        if m and not Path(m["path"]).is_file() and run_status(out / str(parent)).complete:
            return str(parent), int(m["epoch"])
    return None


def needed(runs: Iterable[Run], out: Path) -> dict[str, int]:
    """Trunk name -> the last epoch whose checkpoint one of ``runs`` needs and lacks
    (:func:`missing_checkpoint`)."""
    last: dict[str, int] = {}
    for r in runs:
        if (n := missing_checkpoint(r, out)) is not None:
            last[n[0]] = max(last.get(n[0], -1), n[1])
    return last


def rows_agree(
    trunk: Sequence[Mapping[str, Any]], rerun: Sequence[Mapping[str, Any]]
) -> tuple[bool, str]:
    """Whether every epoch of ``rerun`` equals ``trunk``'s on the numeric metrics both hold
    (clocks and energy aside), to a relative 1e-6; and where they first differ."""
    by_epoch = {r.get("epoch"): r for r in trunk}
    for row in rerun:
        old = by_epoch.get(row.get("epoch"))
        if old is None:
            return False, f"epoch {row.get('epoch')} is not among the trunk's rows"
        for key, value in row.items():
            x, y = num(old.get(key)), num(value)
            if x is None or y is None or _NOT_COMPARED.search(key):
                continue
            if not math.isclose(x, y, rel_tol=1e-6, abs_tol=1e-9):
                return False, f"epoch {row.get('epoch')}: {key} {x:g} (trunk) vs {y:g} (rerun)"
    return True, f"{len(rerun)} epoch(s) equal on every metric both rows hold"


def regrow(
    trunk: Run,
    last: int,
    out: Path,
    python: str,
    env: Mapping[str, str],
    stopper: str = "critical.callbacks.StopAfterEpoch",
    folder: str = REGROW,
) -> tuple[bool, str]:
    """Trains ``trunk``'s epochs 0..``last`` again (its checkpoints included); returns whether
    it trained, and what the comparison with the finished trunk found (or why it failed).
    ``stopper``: the class path of the callback that stops the fit (``last=`` its argument);
    ``folder``: where under ``out`` the reruns go."""
    root = out / folder
    rerun = root / trunk.name
    if rerun.exists():  # an earlier rerun: kept aside, never written into
        rerun.rename(root / f".{trunk.name}.{time.strftime('%Y%m%dT%H%M%S')}.{os.getpid()}")
    cmd = [a for a in trunk.command(python) if not a.startswith("--run.root=")]
    cmd += [
        f"--run.root={root}",
        f"--trainer.callbacks+={stopper}",
        f"--trainer.callbacks.last={last}",
    ]
    log = out / "logs" / f"{trunk.name}.regrow.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w") as f:
        rc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, check=False, env=dict(env))
    if rc.returncode:
        return False, f"the rerun failed (exit {rc.returncode}, see {log})"
    agree, how = rows_agree(read_rows(out / trunk.name), read_rows(rerun))
    atomic_write_json(
        rerun / "regrow.json", {"of": trunk.name, "last": last, "agrees": agree, "how": how}
    )
    if agree:
        return True, f"its rows equal the trunk's ({how})"
    return True, f"its rows DIFFER from the trunk's ({how}): the branches start from this rerun"
