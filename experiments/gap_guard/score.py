"""The augmentation-gap guard (experiments/gap_guard/PROTOCOL.md): tau chosen on the 8 seen
settings (``choose``, writes ``chosen.yaml``), then tested on the 8 held-out ones (``test``).

    python experiments/gap_guard/score.py choose $BANK2_OUT $BANK2_OUT/v1 [--write]
    python experiments/gap_guard/score.py test $BANK2_OUT $BANK2_OUT/v1

Estimates only, replayed on the always-k3 rows and scored from each setting's oracle curve with
bank v2's loader and goal (experiments/bank2/select.py, imported by path: its module name would
clash with the standard library's ``select``) and through it v1's scoring.
"""

from __future__ import annotations

import argparse
import importlib.util
import math
import statistics
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent
SEEN = ("ipd", "osu", "r20_noise", "r20_ta", "bm", "digits", "jv", "vit_step")
HELD_OUT = (
    "c10_8k",
    "r32_ms",
    "vit_e15",
    "vit_e40",
    "r20_onecycle",
    "r20_long",
    "r20_e15",
    "r20_e40",
)
TAUS = (0.025, 0.05, 0.1, 0.15, 0.2)
GAP = "critical/aug_gap"
CutFn = Callable[[Sequence[Mapping[str, Any]], int], int]


def _import_bank2() -> Any:
    path = HERE.parent / "bank2" / "select.py"
    spec = importlib.util.spec_from_file_location("bank2_select", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while being built
    spec.loader.exec_module(module)
    return module


b2 = _import_bank2()
v1 = b2.v1


def guarded_cut(rows: Sequence[Mapping[str, Any]], epochs: int, base_cut: int, tau: float) -> int:
    """Section 2: from the base rule's firing epoch (``base_cut - 1``; ``base_cut == epochs``:
    it never fired) wait for the first epoch whose 3-epoch trailing mean of the gap is at most
    ``tau``; returns the cut epoch (``epochs``: no cut).

    Example:
        >>> rows = [{"critical/aug_gap": g} for g in (0.3, 0.3, 0.2, 0.1, 0.0, 0.0)]
        >>> guarded_cut(rows, 6, base_cut=2, tau=0.1), guarded_cut(rows, 6, base_cut=6, tau=0.1)
        (5, 6)
    """
    if base_cut >= epochs:
        return epochs
    gaps = [r.get(GAP) for r in rows]
    for e in range(base_cut - 1, min(len(rows), epochs)):
        window = [
            g
            for g in gaps[max(0, e - 2) : e + 1]
            if isinstance(g, (int, float)) and math.isfinite(g)
        ]
        if window and statistics.mean(window) <= tau:
            return min(e + 1, epochs)
    return epochs


def gap_rule(base: CutFn, tau: float) -> CutFn:
    return lambda rows, epochs: guarded_cut(rows, epochs, base(rows, epochs), tau)


BASES: dict[str, CutFn] = {"v03": b2.v03, "Fukase et al.": b2.fukase}


def _spread(cuts: Sequence[int]) -> str:
    return f"{cuts} ({max(cuts) - min(cuts)})"


def _row(name: str, label: str, sc: Any) -> str:
    share = "-" if sc.share is None else f"{sc.share:.0%}"
    goal = "met" if b2.meets_goal(sc) else "NOT met"
    return (
        f"| {name} | {label} | {_spread(sc.cuts)} | {sc.loss:+.2f} | {sc.saving:.1%} | "
        f"{share} | {goal} |"
    )


def table(settings: Sequence[Any], rules: Mapping[str, CutFn]) -> dict[str, list[Any]]:
    """Every rule's score on every setting (printed as a table); rule label -> scores."""
    print("| setting | rule | cut epochs (spread) | est. loss (pts) | saving | share | goal |")
    print("|:--|:--|:--|--:|--:|--:|:--|")
    scores: dict[str, list[Any]] = {label: [] for label in rules}
    for st in settings:
        for label, fn in rules.items():
            sc = v1.score(st, v1.cuts_of(fn, st))
            scores[label].append(sc)
            print(_row(st.name, label, sc))
    return scores


def _summary(scores: Mapping[str, list[Any]]) -> None:
    print()
    for label, scs in scores.items():
        met = sum(b2.meets_goal(s) for s in scs)
        worst = max(s.loss for s in scs)
        print(f"- {label}: goal met on {met} of {len(scs)}; worst loss {worst:+.2f}")


def choose(settings: Sequence[Any], write: bool) -> float:
    """Section 3: tau by the bank objective on the seen settings, ties to the larger tau."""
    rules = {"v03": b2.v03, **{f"gap(v03, {t})": gap_rule(b2.v03, t) for t in TAUS}}
    scores = table(settings, rules)
    _summary(scores)
    objective = {t: v1.objective(scores[f"gap(v03, {t})"]) for t in TAUS}
    tau = min(TAUS, key=lambda t: (objective[t], -t))
    print(f"\nchosen tau = {tau} (objective {objective[tau]})")
    if write:
        out = HERE / "chosen.yaml"
        out.write_text(
            yaml.safe_dump(
                {
                    "protocol": "experiments/gap_guard/PROTOCOL.md",
                    "seen": [st.name for st in settings],
                    "tau": tau,
                    "objective": {t: [float(x) for x in objective[t]] for t in TAUS},
                },
                sort_keys=False,
            )
        )
        print(f"wrote {out}")
    return tau


def evaluate(settings: Sequence[Any], tau: float) -> str:
    """Section 4: the verdict on the held-out settings."""
    rules: dict[str, CutFn] = {}
    for name, fn in BASES.items():
        rules[name] = fn
        rules[f"gap({name}, {tau})"] = gap_rule(fn, tau)
    scores = table(settings, rules)
    _summary(scores)
    base, guarded = scores["v03"], scores[f"gap(v03, {tau})"]
    met_b, met_g = sum(map(b2.meets_goal, base)), sum(map(b2.meets_goal, guarded))
    worst_b, worst_g = max(s.loss for s in base), max(s.loss for s in guarded)
    if met_g > met_b and worst_g <= worst_b:
        verdict = "transfers"
    elif met_g < met_b:
        verdict = "hurts"
    else:
        verdict = "no difference shown"
    print(f"\nverdict (section 4): the guard {verdict} ({met_g} against {met_b} settings met)")
    return verdict


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("step", choices=["choose", "test"])
    ap.add_argument("roots", type=Path, nargs="+", help="bank v2 run roots ($BANK2_OUT, /v1)")
    ap.add_argument("--write", action="store_true", help="choose: write chosen.yaml")
    args = ap.parse_args(argv)
    names = SEEN if args.step == "choose" else HELD_OUT
    settings = b2.load(args.roots, list(names))
    missing = sorted(set(names) - {st.name for st in settings})
    if missing:
        print(f"missing (phase A incomplete): {', '.join(missing)}\n")
    if not settings:
        return 2
    if args.step == "choose":
        choose(settings, args.write)
    else:
        tau = float(yaml.safe_load((HERE / "chosen.yaml").read_text())["tau"])
        evaluate(settings, tau)
    return 0


if __name__ == "__main__":
    sys.exit(main())
