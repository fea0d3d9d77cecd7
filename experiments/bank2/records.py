"""Keeps the bank's finished runs across sessions, in the repository.

The machines that run the bank are fresh each session: whatever the runs wrote outside the
repository (``$BANK2_OUT``) is gone when a session ends. This script packs every finished run
not kept yet into ``experiments/bank2/records/<sweep folder>/<group>[.<n>].tar.xz`` (one archive
per group, i.e. model, budget and seed, and call; the run folders without checkpoints or
TensorBoard files: a few tens of kB), and unpacks them into ``$BANK2_OUT`` at the start of the
next session (``run_all.sh`` does), where ``critical sweep`` finds them finished and skips them.

Trunk checkpoints are not kept (megabytes each): where a branch still to run needs one of a
restored trunk, ``prefix.py`` trains that trunk's first epochs again (``run_all.sh`` calls it
before each sweep), which costs less than the whole trunk.

    python experiments/bank2/records.py save $BANK2_OUT      # pack the groups finished since
    python experiments/bank2/records.py restore $BANK2_OUT   # unpack what is not there yet
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tarfile
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "src"))

from critical.runfiles import run_status

RECORDS = Path(os.environ.get("BANK2_RECORDS") or Path(__file__).resolve().parent / "records")
_SKIP = ("checkpoints", "events.out.tfevents", "plot.png", "plot.pdf")  # derivable, large


def _sweeps(out: Path) -> Iterator[Path]:
    for manifest in sorted(out.glob("**/sweep.json")):
        if ".set_aside" not in manifest.parts:
            yield manifest.parent


def _runs(folder: Path) -> Iterator[str]:
    """The finished runs in a sweep folder, as paths relative to it (trunk reruns of
    ``prefix.py`` under ``.prefix/`` included)."""
    for d in [*sorted(folder.iterdir()), *sorted((folder / ".prefix").glob("*"))]:
        if d.is_dir() and not d.name.startswith(".") and d.name not in ("logs", "checkpoints"):
            if run_status(d).complete:
                yield str(d.relative_to(folder))


def _group(folder: Path, run: str) -> str:
    """``<model>-E<budget>-s<seed>`` from the run's tags (``prefix`` for trunk reruns)."""
    if run.startswith(".prefix/"):
        return "prefix"
    tags = (json.loads((folder / run / "config.json").read_text()).get("tags")) or {}
    return f"{tags.get('model')}-E{tags.get('budget')}-s{tags.get('seed')}"


def _members(path: Path) -> set[str]:
    """The runs an archive holds (paths relative to its sweep folder)."""
    with tarfile.open(path) as tar:
        names = [m.name for m in tar.getmembers() if m.name.endswith("/config.json")]
    return {n.rsplit("/", 1)[0] for n in names}


def save(out: Path) -> list[Path]:
    """Packs the finished runs not yet kept, one archive per group and call."""
    written = []
    for folder in _sweeps(out):
        dest = RECORDS / folder.relative_to(out)
        kept = set().union(*(_members(p) for p in dest.glob("*.tar.xz")))
        new: dict[str, list[str]] = {}
        for run in _runs(folder):
            if run not in kept:
                new.setdefault(_group(folder, run), []).append(run)
        for group, runs in new.items():
            dest.mkdir(parents=True, exist_ok=True)
            n = len(list(dest.glob(f"{group}.*tar.xz")))
            path = dest / (f"{group}.tar.xz" if n == 0 else f"{group}.{n}.tar.xz")
            tmp = path.with_suffix(".tmp")
            with tarfile.open(tmp, "w:xz") as tar:
                for run in sorted(runs):
                    tar.add(
                        folder / run,
                        arcname=run,
                        filter=lambda t: None if any(s in t.name for s in _SKIP) else t,
                    )
            tmp.replace(path)
            written.append(path)
    return written


def restore(out: Path) -> list[Path]:
    """Unpacks every kept run that ``out`` does not hold yet."""
    restored = []
    for path in sorted(RECORDS.glob("**/*.tar.xz")):
        folder = out / path.parent.relative_to(RECORDS)
        missing = {r for r in _members(path) if not (folder / r).exists()}
        if not missing:
            continue
        with tarfile.open(path) as tar:
            members = [
                m
                for m in tar.getmembers()
                if any(m.name.startswith(f"{r}/") for r in missing) or m.name in missing
            ]
            tar.extractall(folder, members=members, filter="data")
        restored.append(path)
    return restored


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("action", choices=["save", "restore"])
    p.add_argument("out", type=Path, help="the bank's output folder ($BANK2_OUT)")
    args = p.parse_args(argv)
    done = save(args.out) if args.action == "save" else restore(args.out)
    for path in done:
        print(f"{args.action}d: {path.relative_to(RECORDS)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
