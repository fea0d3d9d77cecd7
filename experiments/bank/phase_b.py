"""Phase B of the detector bank (experiments/bank/PROTOCOL.md, section 8): sweep specs that train,
per setting and seed, the branches of the shipped default and of the setting's left-out rule
(and matched k = 1 for their cuts), from the rules written to ``selected.yaml``.

Each spec is the setting's phase-A sweep restricted to its budget, plus two detector entries
(``default``, ``left_out``); run into the same directory, it finds phase A's runs finished and
trains only the new branches (a detector that cuts where another policy already cut shares
that branch, no training).

    python experiments/bank/phase_b.py                       # writes experiments/bank/phase_b/
    bash experiments/bank/phase_b/run.sh                     # 2 lanes, 1 thread each, nice
                                                             # (branches first, then matched k1)
    python experiments/bank/select.py runs/bank --score      # the goal, scored on real branches
"""

from __future__ import annotations

import sys
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
OUT = HERE / "phase_b"


def specs(selected: dict) -> dict[str, tuple[str, dict]]:
    """Setting name -> (phase-A sweep stem, phase-B spec)."""
    default = dict(selected["default"])
    if selected.get("validation_based"):
        default["fallback"] = dict(selected["fallback_without_validation"])
    out = {}
    for path in sorted(HERE.glob("sweep_*.yaml")):
        stem = path.stem.removeprefix("sweep_")
        spec = yaml.safe_load(path.read_text())
        for budget in spec["budgets"]:
            name = stem if len(spec["budgets"]) == 1 else f"{stem}_e{budget}"
            left_out = selected["left_out"].get(name)
            if left_out is None:
                continue
            b = dict(spec, name=f"{spec['name']}_b_e{budget}", budgets=[budget])
            policies = dict(b["policies"])
            policies["detector"] = [
                *policies.get("detector", []),
                {"name": "default", **default},
                {"name": "left_out", **left_out},
            ]
            b["policies"] = policies
            out[name] = (stem, b)
    return out


def main() -> int:
    selected = yaml.safe_load((HERE / "selected.yaml").read_text())
    OUT.mkdir(exist_ok=True)
    made = specs(selected)
    for name, (_, spec) in made.items():
        header = f"# Phase B, setting {name} (written by experiments/bank/phase_b.py from selected.yaml)\n"
        (OUT / f"{name}.yaml").write_text(header + yaml.safe_dump(spec, sort_keys=False))
    # every setting's detector branches first (the sweep's --only), then the whole specs, which
    # add matched k = 1 for their cuts (phase A's runs are finished and skipped)
    first = "--only detector:default --only detector:left_out"
    jobs = [(name, stem, first) for name, (stem, _) in made.items()]
    jobs += [(name, stem, "") for name, (stem, _) in made.items()]
    lines = [
        "#!/usr/bin/env bash",
        "# Phase B of the bank (written by experiments/bank/phase_b.py): two lanes, 1 thread each;",
        "# every setting's detector branches first (--only), then the whole specs (matched k = 1).",
        'set -uo pipefail\ncd "$(dirname "$0")/../../.."',
        "export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1",
        "out=${BANK_OUT:-runs/bank}",
        "job() {",
        '  nice -n 10 critical sweep "experiments/bank/phase_b/$1.yaml" --out "$out/$2" "${@:4}" \\',
        '    >> "$out/lane_b.$3.log" 2>&1',
        '  echo "$(date -Is) phase B $1 ${*:4} done (exit $?)" >> "$out/progress.log"',
        "}",
    ]
    lanes: tuple[list[str], list[str]] = ([], [])
    for i, (name, sub, extra) in enumerate(jobs):
        lanes[i % 2].append(f"  job {name} {sub} {i % 2} {extra}".rstrip())
    lines += ["(", *lanes[0], ") &", "(", *lanes[1], ") &", "wait"]
    (OUT / "run.sh").write_text("\n".join(lines) + "\n")
    print(f"wrote {len(made)} settings' specs and run.sh to {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
