"""Per schedule kind, what the detector's guards said and where it fired on the bank's always-k3
runs (issue 18: the decision must depend on the metrics and the loss, not on the anneal).

    python experiments/bank/schedules.py runs/bank [--rule experiments/bank/selected.yaml]

For each setting and seed: the epochs in which the live run's LR guard objected (logged
``critical/guard/lr``), and, replayed on the logged rows, the epoch the v0.2 rule and the
selected default (``selected.yaml``'s ``default``) fire at, with what held them back before.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from critical.detector import V02_RULE, epoch_ranges, explain, replay
from critical.runfiles import read_json, read_rows

KINDS = {
    "r20": "SGD, cosine per epoch",
    "vit": "AdamW, 2 warm-up epochs + cosine per epoch",
    "r20_onecycle": "SGD, OneCycle per step (30% warm-up)",
    "vit_step": "AdamW, warm-up 2 epochs + cosine, per step",
    "r20_long": "SGD, cosine per epoch (100 epochs)",
    "digits": "SGD, cosine per epoch",
    "jv": "AdamW, cosine per epoch",
    "bm": "AdamW, cosine per epoch",
}


def _fire(rows: list[dict[str, Any]], settings: dict[str, Any]) -> str:
    s = dict(settings)
    det = replay(rows, s.pop("monitor"), **s)
    held = "; ".join(f"{h['by']} {h['epochs']}" for h in explain(det)["held_back"])
    if det.event is not None:
        return f"after epoch {det.event.epoch} (before: {held or '-'})"
    return f"never ({held})"


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("root", type=Path)
    ap.add_argument("--rule", type=Path, default=Path(__file__).parent / "selected.yaml")
    args = ap.parse_args(argv)
    default = None
    if args.rule.is_file():
        default = (yaml.safe_load(args.rule.read_text()) or {}).get("default")
    print(
        "| setting | schedule | seed | LR guard objected (epochs) | v0.2 rule fires | default fires |"
    )
    print("|:--|:--|--:|:--|:--|:--|")
    for sub in sorted(p for p in args.root.iterdir() if p.is_dir() and p.name in KINDS):
        for trunk in sorted(sub.glob("*-always-k3-s*")):
            cfg = read_json(trunk / "config.json", problems=[]) or {}
            tags = cfg.get("tags") or {}
            rows = read_rows(trunk)
            if not rows:
                continue
            lr = [int(r["epoch"]) for r in rows if r.get("critical/guard/lr")]
            name = sub.name + (f"_e{tags['budget']}" if sub.name in ("r20", "vit") else "")
            fires = _fire(rows, default) if default else "-"
            print(f"| {name} | {KINDS[sub.name]} | {tags.get('seed')} | "
                  f"{epoch_ranges(lr) or 'none'} | {_fire(rows, V02_RULE)} | {fires} |")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
