"""The staged-reduction study's table and verdict (experiments/staged/PROTOCOL.md, section 3).

Per setting and saving level: the seed-mean test accuracy of staged@c, of the one-step cut at
the same FLOPs (fixed@c', this study) and of the one-step cut at the same epoch (fixed@c, bank
v2's), each one's loss against always-k3, the measured FLOPs saving, and the paired per-seed
difference staged@c - fixed@c'; then the verdict at each level by the protocol's rule; on the
settings where this study re-trained fixed@c, whether it matches the bank's.

    python experiments/staged/report.py ../staged_runs ../bank2_runs
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

LEVELS = ((8, 16), (12, 19), (20, 25))  # (staged cut c, one-step cut c' at the same FLOPs)
SETTINGS = ("ipd", "osu", "r20_noise", "r20_ta")
E = 40
MARGIN = 0.3  # points: the mean paired difference over the settings a verdict needs


def _read(run: Path) -> tuple[float, float] | None:
    """(test accuracy in %, FLOPs) of a finished run, else None."""
    try:
        acc = json.loads((run / "robustness.json").read_text())["clean_acc"]
        flops = json.loads((run / "energy.json").read_text())["total"]["flops"]
    except (OSError, KeyError, TypeError, ValueError):
        return None
    if acc is None or not flops or not (run / "summary.json").is_file():
        return None
    return 100.0 * float(acc), float(flops)


def _run(folder: Path, label: str, seed: int) -> tuple[float, float] | None:
    found = sorted(folder.glob(f"*-E{E}-{label.replace('@', '_')}-s{seed}"))
    return _read(found[0]) if found else None


def setting_rows(study: Path, bank: Path, name: str) -> dict[Any, Any] | None:
    """Per level: accuracies and savings per seed; None until every run has finished."""
    seeds = (0, 1, 2)
    always = {s: _run(bank / name, "always-k3", s) for s in seeds}
    if any(v is None for v in always.values()):
        return None
    out: dict[Any, Any] = {"always": statistics.mean(v[0] for v in always.values() if v)}
    for c, c2 in LEVELS:
        got = {
            "staged": {s: _run(study / name, f"staged@{c}", s) for s in seeds},
            "same_flops": {s: _run(study / name, f"fixed@{c2}", s) for s in seeds},
            "same_epoch": {s: _run(bank / name, f"fixed@{c}", s) for s in seeds},
            "retrained": {s: _run(study / name, f"fixed@{c}", s) for s in seeds},
        }
        for key in ("staged", "same_flops", "same_epoch"):
            if any(v is None for v in got[key].values()):
                return None
        out[c] = got
        out[c]["always"] = always
    return out


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("study", type=Path, help="the study's run folder (STAGED_OUT)")
    ap.add_argument("bank", type=Path, help="bank v2's run folder (BANK2_OUT)")
    args = ap.parse_args(argv)

    done = {n: r for n in SETTINGS if (r := setting_rows(args.study, args.bank, n)) is not None}
    missing = [n for n in SETTINGS if n not in done]
    if not done:
        print("no setting has all its runs finished yet", file=sys.stderr)
        return 2
    print("| setting | cut c | policy | acc (%) | loss vs always-k3 (pts) | FLOPs saved |")
    print("|:--|--:|:--|--:|--:|--:|")
    diffs: dict[int, dict[str, list[float]]] = {c: {} for c, _ in LEVELS}
    for name, rows in done.items():
        for c, c2 in LEVELS:
            r = rows[c]
            base = {s: v[1] for s, v in r["always"].items()}
            for key, label in (
                ("staged", f"staged@{c}"),
                ("same_flops", f"fixed@{c2} (same FLOPs)"),
                ("same_epoch", f"fixed@{c} (same epoch; bank)"),
            ):
                accs = [v[0] for v in r[key].values()]
                saving = statistics.mean(1 - v[1] / base[s] for s, v in r[key].items())
                print(
                    f"| {name} | {c} | {label} | {statistics.mean(accs):.2f} | "
                    f"{rows['always'] - statistics.mean(accs):+.2f} | {saving:.1%} |"
                )
            paired = [r["staged"][s][0] - r["same_flops"][s][0] for s in r["staged"]]
            diffs[c][name] = paired
    print("\n## staged@c - fixed@c' (same FLOPs), paired by seed (points)\n")
    for c, c2 in LEVELS:
        means = {n: statistics.mean(d) for n, d in diffs[c].items()}
        cells = ", ".join(
            f"{n} {m:+.2f} [{min(diffs[c][n]):+.2f}, {max(diffs[c][n]):+.2f}]"
            for n, m in means.items()
        )
        overall = statistics.mean(means.values())
        pos = sum(m > 0 for m in means.values())
        neg = sum(m < 0 for m in means.values())
        if len(means) < len(SETTINGS):  # the rule is stated for all four settings
            verdict = f"no verdict yet ({len(means)} of {len(SETTINGS)} settings)"
        elif pos >= 3 and overall > MARGIN:
            verdict = "staged better at equal FLOPs"
        elif neg >= 3 and overall < -MARGIN:
            verdict = "staged worse at equal FLOPs"
        else:
            verdict = "no difference shown"
        print(f"- c = {c} vs c' = {c2}: {cells}; mean {overall:+.2f}: **{verdict}**")

    print("\n## fixed@c re-trained by this study's code against the bank's (2e5571d)\n")
    for name, rows in done.items():
        for c, _ in LEVELS:
            r = rows[c]
            pairs = [(r["retrained"][s], r["same_epoch"][s]) for s in r["retrained"]]
            if any(a is None for a, _ in pairs):
                continue
            same = all(a == b for a, b in pairs)
            worst = max(abs(a[0] - b[0]) for a, b in pairs if a and b)
            print(
                f"- {name} fixed@{c}: {'identical' if same else f'differs (up to {worst:.2f} pts)'}"
            )
    if missing:
        print(f"\n(not finished yet: {', '.join(missing)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
