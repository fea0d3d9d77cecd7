"""The bank's cost (PROTOCOL.md section 10): the wall time of every trained run, from the runs'
own records (``energy.json["fit_duration_s"]``; runs copied from another run cost nothing).

    python experiments/bank/cost.py runs/bank
"""

from __future__ import annotations

import sys
from collections import defaultdict
from pathlib import Path

from critical.runfiles import read_json


def main(root: Path) -> int:
    per: dict[str, list[float]] = defaultdict(list)
    copies = 0
    for cfg_path in sorted(root.glob("*/*/config.json")):
        run = cfg_path.parent
        cfg = read_json(cfg_path, problems=[]) or {}
        if cfg.get("alias_of"):
            copies += 1
            continue
        energy = read_json(run / "energy.json", problems=[]) or {}
        if energy.get("fit_duration_s") is not None:
            per[run.parent.name].append(float(energy["fit_duration_s"]))
    print("| sweep folder | trained runs | wall time (h, one core each) |")
    print("|:--|--:|--:|")
    for name, ts in sorted(per.items()):
        print(f"| {name} | {len(ts)} | {sum(ts) / 3600:.2f} |")
    total = sum(sum(ts) for ts in per.values())
    n = sum(len(ts) for ts in per.values())
    print(f"| all | {n} | {total / 3600:.2f} |")
    print(f"\n{copies} runs were copies of another run (no training); two runs at a time on the "
          f"2 cores: about {total / 7200:.1f} h of wall time")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1] if len(sys.argv) > 1 else "runs/bank")))
