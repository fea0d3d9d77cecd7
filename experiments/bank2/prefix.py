"""Trains a restored trunk's first epochs again, so that branches off it can run.

``records.py`` keeps a finished group's runs across sessions but not its trunk's per-epoch
checkpoints (megabytes each). Phase B's new branches resume from those checkpoints: for each
branch of ``SPEC`` (or of the ``--only`` labels) whose checkpoint is missing, this script runs
the trunk's own command again, into ``FOLDER/_prefix/`` (a folder ``critical sweep`` ignores),
with its checkpoints into the trunk's checkpoint folder, stopped after the last epoch a branch
needs (``stop_after.StopAfterEpoch``; ``max_epochs`` and so the schedule unchanged). The runs
are deterministic on one CPU thread, seeded: the script then compares the rerun's metric rows
with the restored trunk's and says whether they agree (``prefix.json`` in the rerun's folder).

Runs with the frozen tree's ``critical`` (``PYTHONPATH=$BANK2_TREE/src``, as ``run_all.sh``
does), so that it plans exactly as the sweep does:

    python experiments/bank2/prefix.py SPEC FOLDER [--only LABEL ...]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

from critical.runfiles import read_rows, run_status
from critical.sweep.plan import plan
from critical.sweep.spec import load_spec

HERE = Path(__file__).resolve().parent
_CKPT = re.compile(r"^--ckpt_path=(?P<path>.+/epoch=(?P<epoch>\d+)\.ckpt)$")
#: compared between a trunk and its rerun, where logged
COMPARED = ("train/loss", "val/loss", "val/acc", "critical/layer_rotation")


def needed(spec: dict, folder: Path, only: list[str]) -> dict[str, int]:
    """Trunk run name -> the last epoch whose checkpoint a pending branch needs and lacks."""
    out: dict[str, int] = {}
    for r in plan(spec, folder):
        if only and r.tags.get("label") not in only:
            continue
        if r.alias_of or run_status(folder / r.name).complete:
            continue
        for a in r.args:
            m = _CKPT.match(a)
            parent = str(r.tags.get("parent"))
            # a trunk still to train (or training) writes its own checkpoints
            if m and not Path(m["path"]).is_file() and run_status(folder / parent).complete:
                out[parent] = max(out.get(parent, -1), int(m["epoch"]))
    return out


def agree(a: list[dict], b: list[dict]) -> tuple[bool, str]:
    """Whether the rerun's rows ``b`` equal the trunk's ``a`` over ``b``'s epochs."""
    by_epoch = {int(r["epoch"]): r for r in a}
    for row in b:
        old = by_epoch.get(int(row["epoch"]))
        if old is None:
            return False, f"epoch {row['epoch']} missing from the trunk"
        for key in COMPARED:
            x, y = old.get(key), row.get(key)
            if x in (None, "") or y in (None, ""):
                continue
            if not math.isclose(float(x), float(y), rel_tol=1e-6, abs_tol=1e-9):
                return False, f"epoch {row['epoch']}: {key} {x} (trunk) vs {y} (rerun)"
    return True, f"{len(b)} epochs equal on {', '.join(COMPARED)} where logged"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("spec")
    ap.add_argument("folder", type=Path)
    ap.add_argument("--only", action="append", default=[])
    args, _ = ap.parse_known_args(argv)
    spec = load_spec(args.spec)
    runs = {r.name: r for r in plan(spec, args.folder)}
    env = dict(os.environ)
    # the threads of the sweep's own runs (its default: the caller's OMP_NUM_THREADS, else 1):
    # a run on another number of threads is not the same run (the sums round differently)
    threads = env.get("OMP_NUM_THREADS") or "1"
    env.update(OMP_NUM_THREADS=threads, MKL_NUM_THREADS=threads)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(HERE), env.get("PYTHONPATH")]))
    failures = 0
    for trunk, last in needed(spec, args.folder, args.only).items():
        root = args.folder / "_prefix"
        cmd = [a for a in runs[trunk].command(sys.executable) if not a.startswith("--run.root=")]
        cmd += [
            f"--run.root={root}",
            "--trainer.callbacks+=stop_after.StopAfterEpoch",
            f"--trainer.callbacks.last={last}",
        ]
        print(f"{trunk}: training epochs 0-{last} again for their checkpoints", flush=True)
        rerun = root / trunk
        if rerun.exists():
            rerun.rename(root / f".{trunk}.{os.getpid()}")
        rc = subprocess.run(cmd, env=env, check=False).returncode
        if rc:
            print(f"{trunk}: the rerun failed (exit {rc})", flush=True)
            failures += 1
            continue
        ok, how = agree(read_rows(args.folder / trunk), read_rows(rerun))
        (rerun / "prefix.json").write_text(json.dumps({"agrees": ok, "how": how}, indent=1))
        print(f"{trunk}: the rerun {'agrees with' if ok else 'DIFFERS from'} the trunk: {how}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
