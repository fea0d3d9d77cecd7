"""Phase B of bank v2 (experiments/bank2/PROTOCOL.md, section 5): sweep specs that train, per
setting and seed, the branches of the candidate new default and of the setting's left-out rule
(with matched k = 1 for their cuts), from the rules in ``selected.yaml``; on the v1 settings
also the two baselines their v1 sweeps lack (version 0.3's default, ``v03``, and Fukase et al.'s
rule, ``fukase``, as the bank-v2 sweeps spell them).

Each spec is the setting's phase-A sweep restricted to its budget plus those detector entries;
run into the phase-A folder it finds phase A's runs finished and trains only the new branches
(a rule that cuts where another policy already cut shares that branch: no training).

    python experiments/bank2/select.py $BANK2_OUT $BANK2_OUT/v1 --write experiments/bank2/selected.yaml
    python experiments/bank2/phase_b.py          # writes experiments/bank2/phase_b/
    BANK2_TREE=../bank2_wt BANK2_OUT=../bank2_runs bash experiments/bank2/run_all.sh \\
        experiments/bank2/phase_b/queue.txt
    python experiments/bank2/score.py $BANK2_OUT $BANK2_OUT/v1    # the goal, on trained branches
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent
BANK1 = HERE.parent / "bank"
ROOT = HERE.parent.parent
BASELINES = ("v03", "fukase")  # trained in phase A on the new settings only


def _baselines() -> list[dict[str, Any]]:
    """The bank-v2 sweeps' ``v03`` and ``fukase`` detector entries (the same in every sweep)."""
    found: dict[str, dict[str, Any]] = {}
    for path in sorted(HERE.glob("sweep_*.yaml")):
        for d in yaml.safe_load(path.read_text())["policies"].get("detector") or []:
            if d.get("name") in BASELINES:
                found.setdefault(d["name"], dict(d))
    missing = set(BASELINES) - set(found)
    if missing:
        raise LookupError(f"no {sorted(missing)} detector entry in {HERE}/sweep_*.yaml")
    return [found[n] for n in BASELINES]


def specs(selected: Mapping[str, Any]) -> dict[str, tuple[str, dict[str, Any]]]:
    """Setting name -> (its phase-A folder under the run root, phase-B spec), for every
    setting ``selected`` has a left-out rule for."""
    default = dict(selected["default"])
    out: dict[str, tuple[str, dict[str, Any]]] = {}
    for bank in (HERE, BANK1):
        for path in sorted(bank.glob("sweep_*.yaml")):
            stem = path.stem.removeprefix("sweep_")
            spec = yaml.safe_load(path.read_text())
            for budget in spec["budgets"]:
                name = stem if len(spec["budgets"]) == 1 else f"{stem}_e{budget}"
                left_out = selected["left_out"].get(name)
                if left_out is None:
                    continue
                policies = dict(spec["policies"])
                extra = _baselines() if bank == BANK1 else []
                policies["detector"] = [
                    *(policies.get("detector") or []),
                    *extra,
                    {"name": "default", **default},
                    {"name": "left_out", **left_out},
                ]
                b = dict(spec, name=f"{spec['name']}_b_e{budget}", budgets=[budget])
                b["policies"] = policies
                folder = stem if bank == HERE else f"v1/{stem}"
                out[name] = (folder, b)
    return out


def queue(made: Mapping[str, tuple[str, dict[str, Any]]], out: Path) -> list[str]:
    """``run_all.sh`` queue lines for the specs written to ``out``: every setting's new detector
    branches first (``--only``), then the whole specs, which add matched k = 1 for their cuts
    (the rest is finished)."""
    first, then = [], []
    for name, (folder, _) in made.items():
        spec = (out / f"{name}.yaml").resolve()
        path = spec.relative_to(ROOT) if spec.is_relative_to(ROOT) else spec
        new = ["default", "left_out", *(BASELINES if folder.startswith("v1/") else ())]
        first.append(f"{path} {folder} " + " ".join(f"--only detector:{n}" for n in new))
        then.append(f"{path} {folder}")
    return first + then


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--selected", type=Path, default=HERE / "selected.yaml")
    ap.add_argument("--out", type=Path, default=HERE / "phase_b")
    args = ap.parse_args(argv)
    if not args.selected.is_file():
        print(f"{args.selected} not found: run select.py --write first", file=sys.stderr)
        return 2
    made = specs(yaml.safe_load(args.selected.read_text()))
    args.out.mkdir(parents=True, exist_ok=True)
    for name, (_, spec) in made.items():
        header = f"# Phase B of bank v2, setting {name} (written by experiments/bank2/phase_b.py)\n"
        (args.out / f"{name}.yaml").write_text(header + yaml.safe_dump(spec, sort_keys=False))
    head = "# run_all.sh's queue for phase B (written by experiments/bank2/phase_b.py)\n"
    (args.out / "queue.txt").write_text(head + "\n".join(queue(made, args.out)) + "\n")
    print(f"wrote {len(made)} settings' specs and queue.txt to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
