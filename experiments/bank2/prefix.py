"""Trains a restored trunk's first epochs again, so that branches off it can run.

``records.py`` keeps the bank's finished runs across sessions but not its trunks' per-epoch
checkpoints (megabytes each). For each branch of ``SPEC`` (or of the ``--only`` labels) whose
checkpoint is missing while its trunk has finished, this script does what ``critical sweep``
does since :mod:`critical.sweep.regrow` (loaded from this checkout: the frozen tree that runs
the bank predates it): it runs the trunk's own command again into ``FOLDER/.prefix/`` (hidden:
the sweep and the report pass it by), its checkpoints where the branches look for them, stopped
after the last epoch a branch needs (``stop_after.StopAfterEpoch``; ``max_epochs``, so the
schedule, unchanged), and compares the rerun's metric rows with the kept trunk's
(``regrow.json``; one CPU thread, seeded: equal to the last digit).

Runs with the frozen tree's ``critical`` (``PYTHONPATH=$BANK2_TREE/src``, as ``run_all.sh``
does), so that it plans exactly as the sweep does:

    python experiments/bank2/prefix.py SPEC FOLDER [--only LABEL ...]
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
from pathlib import Path

from critical.sweep.plan import plan
from critical.sweep.spec import load_spec

HERE = Path(__file__).resolve().parent
_FILE = HERE.parents[1] / "src/critical/sweep/regrow.py"
_spec = importlib.util.spec_from_file_location("bank2_regrow", _FILE)
assert _spec is not None and _spec.loader is not None
regrow = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(regrow)


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
    pending = [r for r in runs.values() if not args.only or r.tags.get("label") in args.only]
    for trunk, last in regrow.needed(pending, args.folder).items():
        print(f"{trunk}: training epochs 0-{last} again for their checkpoints", flush=True)
        trained, how = regrow.regrow(
            runs[trunk],
            last,
            args.folder,
            sys.executable,
            env,
            "stop_after.StopAfterEpoch",
            ".prefix",
        )
        print(f"{trunk}: {how}", flush=True)
        failures += not trained
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
