"""Keeps the bank's finished runs across sessions, in the repository.

The machines that run the bank are fresh each session: whatever the runs wrote outside the
repository (``$BANK2_OUT``) is gone when a session ends, and with it every finished sweep. This
script packs each *finished group* of a sweep (one model, budget and seed: its always-k trunk,
its branches and its matched runs) into ``experiments/bank2/records/<sweep folder>/<group>.tar.xz``
(the run folders without checkpoints or TensorBoard files: a few tens of kB), and unpacks them
into ``$BANK2_OUT`` at the start of the next session, where ``critical sweep`` finds them finished
and skips them. A group counts as finished when all its planned runs are complete and the sweep
has moved past it (a folder of a later group exists) or ended (its ``done`` line in
``progress.log``): a group whose matched runs are not planned yet is never packed.

A group's trunk checkpoints are not kept (megabytes each): a run that branches off a restored
trunk later (phase B) trains its trunk's epochs again.

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
_SKIP = ("checkpoints", "events.out.tfevents")


def _sweeps(out: Path) -> Iterator[Path]:
    for manifest in sorted(out.glob("**/sweep.json")):
        if ".set_aside" not in manifest.parts:
            yield manifest.parent


def _key(tags: dict) -> tuple[str, str, str]:
    return (str(tags.get("model")), str(tags.get("budget")), str(tags.get("seed")))


def _group_name(key: tuple[str, str, str]) -> str:
    return f"{key[0]}-E{key[1]}-s{key[2]}"


def _sweep_ended(out: Path, folder: Path) -> bool:
    log = out / "progress.log"
    sub = str(folder.relative_to(out))
    if not log.is_file():
        return False
    return any(
        line.split()[2:3] == [sub] and " done (exit " in line
        for line in log.read_text().splitlines()
        if len(line.split()) > 2
    )


def finished_groups(out: Path, folder: Path) -> dict[str, list[str]]:
    """The finished groups of the sweep in ``folder``: group name -> its run names."""
    runs = json.loads((folder / "sweep.json").read_text())["runs"]
    groups: dict[tuple[str, str, str], list[str]] = {}
    for r in runs:
        groups.setdefault(_key(r["tags"]), []).append(r["name"])
    started = [k for k, names in groups.items() if any((folder / n).exists() for n in names)]
    ended = _sweep_ended(out, folder)
    done = {}
    for key, names in groups.items():
        later = any(k > key for k in started)
        if (later or ended) and all(run_status(folder / n).complete for n in names):
            done[_group_name(key)] = names
    return done


def save(out: Path) -> list[Path]:
    written = []
    for folder in _sweeps(out):
        dest = RECORDS / folder.relative_to(out)
        for group, names in finished_groups(out, folder).items():
            path = dest / f"{group}.tar.xz"
            if path.exists():
                continue
            dest.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp")
            with tarfile.open(tmp, "w:xz") as tar:
                for name in sorted(names):
                    tar.add(
                        folder / name,
                        arcname=name,
                        filter=lambda t: None if any(s in t.name for s in _SKIP) else t,
                    )
            tmp.replace(path)
            written.append(path)
    return written


def restore(out: Path) -> list[Path]:
    restored = []
    for path in sorted(RECORDS.glob("**/*.tar.xz")):
        folder = out / path.parent.relative_to(RECORDS)
        with tarfile.open(path) as tar:
            tops = {m.name.split("/")[0] for m in tar.getmembers()}
            if all((folder / t).exists() for t in tops):
                continue
            folder.mkdir(parents=True, exist_ok=True)
            members = [m for m in tar.getmembers() if not (folder / m.name.split("/")[0]).exists()]
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
