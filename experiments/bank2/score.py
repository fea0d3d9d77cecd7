"""Phase B of the detector bank, version 2: the trained branches scored (PROTOCOL.md, 5-7).

Per setting, one row per policy: its left-out rule (the reported score), the candidate new
default, fixed@50% and fixed@70%, Fukase et al.'s rule, v0.2 and v03 (all trained branches),
Accordion's rule (not trained: an estimate replayed on the always-k3 rows) and the oracle's
fixed-cut branch; then the settings meeting the goal per policy and section 7's verdict.

    python experiments/bank2/score.py $BANK2_OUT $BANK1_RERUN_OUT
    python experiments/bank2/score.py $BANK2_OUT --only ipd osu

FLOPs saved are measured (``energy.json``'s ``total.flops`` against the same seed's always-k3);
``*`` marks a cell where some seed lacked them and the formula of v1 was used instead. Reuses
bank v2's loader and goal (experiments/bank2/select.py, imported by path: its module name would
clash with the standard library's ``select``) and through it v1's scoring.
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent


def _import_select() -> Any:
    spec = importlib.util.spec_from_file_location("bank2_select", HERE / "select.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while being built
    spec.loader.exec_module(module)
    return module


b2 = _import_select()
v1 = b2.v1
ALWAYS = f"always-k{v1.K}"
TRAINED = ("detector:fukase", "detector:v02", "detector:v03")
ACCORDION = "Accordion (estimate)"


@dataclass
class Result:
    """A policy on a setting: a v1 ``Score`` (loss, saving, share, cuts), or why there is none."""

    policy: str
    sc: Any | None = None
    acc: float | None = None  # seed mean (%)
    formula: bool = False  # some seed's saving from the formula (no FLOPs in energy.json)
    vs_matched: float | None = None  # points above matched k = 1 (every seed has one)
    missing: str = ""


def _cut(label: str, run: Mapping[str, Any], epochs: int) -> int:
    """The branch's cut epoch: its ``cut_at`` tag, a fixed cut's label, else never (E)."""
    cut = run["tags"].get("cut_at")
    if cut is None and label.startswith("fixed@"):
        cut = label.split("@")[1]
    return epochs if cut is None else int(cut)


def trained(st: Any, policy: str, label: str) -> Result:
    """The trained branch ``label`` of every seed against the same seed's always-k3."""
    absent = [s for s in sorted(st.seeds) if label not in st.seeds[s].branches]
    if absent:
        return Result(policy, missing=f"(not trained for seeds {absent})")
    no_acc = [s for s in sorted(st.seeds) if st.seeds[s].branches[label]["acc"] is None]
    if no_acc:
        return Result(policy, missing=f"(no test accuracy for seeds {no_acc})")
    accs, cuts, savings, vs = [], [], [], []
    formula = False
    for s in sorted(st.seeds):
        seed = st.seeds[s]
        run = seed.branches[label]
        cut = _cut(label, run, st.epochs)
        f, f0 = v1._flops(run["dir"]), v1._flops(seed.branches[ALWAYS]["dir"])
        if f is not None and f0:
            savings.append(1 - f / f0)
        else:
            savings.append(v1.saving(cut, st.epochs))
            formula = True
        accs.append(run["acc"])
        cuts.append(cut)
        matched = seed.branches.get(f"matched-k1@{cut}")
        if matched is not None and matched["acc"] is not None:
            vs.append(run["acc"] - matched["acc"])
    acc, saving = statistics.mean(accs), statistics.mean(savings)
    oracle = st.oracle[1]
    share = saving / oracle if oracle >= v1.MIN_ORACLE else None
    sc = v1.Score(st.always - acc, saving, share, cuts)
    vm = statistics.mean(vs) if len(vs) == len(accs) else None
    return Result(policy, sc, acc, formula, vm)


def setting_rows(st: Any, with_default: bool) -> list[Result]:
    """Section 5's rows for one setting, in the report's order."""
    rows = [trained(st, "detector:left_out", "detector:left_out")]
    if with_default:
        rows.append(trained(st, "detector:default", "detector:default"))
    for f in (0.5, 0.7):
        rows.append(trained(st, f"fixed@{f:.0%}", f"fixed@{max(1, round(f * st.epochs))}"))
    rows += [trained(st, label, label) for label in TRAINED]
    sc = v1.score(st, v1.cuts_of(b2.BASELINES["Accordion"], st))
    rows.append(Result(ACCORDION, sc, st.always - sc.loss))
    oc, _ = st.oracle
    if oc is None:
        rows.append(Result("oracle", missing="none (no fixed cut within 0.5 points)"))
    else:
        rows.append(trained(st, "oracle", f"fixed@{oc}"))
    return rows


def _line(st: Any, r: Result) -> str:
    if r.sc is None:
        return f"| {st.name} | {r.policy} | {r.missing} | | | | | | | |"
    sc = r.sc
    return (
        f"| {st.name} | {r.policy} | {b2._spread(sc.cuts)} | {r.acc:.2f} | {_pts(sc.loss)} | "
        f"{sc.saving:.1%}{'*' if r.formula else ''} | {st.oracle[1]:.1%} | {b2._share(sc)} | "
        f"{_pts(r.vs_matched)} | {'met' if b2.meets_goal(sc) else 'NOT met'} |"
    )


@dataclass
class Tally:
    """A policy over the settings where it was scored."""

    scores: dict[str, Any] = field(default_factory=dict)  # setting -> Score

    def on(self, names: Sequence[str] | None = None) -> list[Any]:
        return [sc for n, sc in self.scores.items() if names is None or n in names]

    def mean_share(self, names: Sequence[str] | None = None) -> float | None:
        """Mean share (capped at 1, as v1's objective) where the share counts."""
        shares = [min(sc.share, 1.0) for sc in self.on(names) if sc.share is not None]
        return statistics.mean(shares) if shares else None

    def worst(self, names: Sequence[str] | None = None) -> float | None:
        losses = [sc.loss for sc in self.on(names)]
        return max(losses) if losses else None


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{x:.0%}"


def _pts(x: float | None) -> str:
    return "-" if x is None else f"{round(x, 2) + 0.0:+.2f}"  # + 0.0: no "-0.00"


def verdict(tallies: Mapping[str, Tally]) -> str:
    """Section 7: the default ahead of fixed@70% and of Fukase et al.'s rule on mean share at
    no larger worst loss, each compared on the settings where both were scored."""
    d = tallies["detector:default"]
    parts, ahead = [], True
    for other in ("fixed@70%", "detector:fukase"):
        o = tallies[other]
        common = [n for n in d.scores if n in o.scores]
        ds, os_, dw, ow = (
            d.mean_share(common),
            o.mean_share(common),
            d.worst(common),
            o.worst(common),
        )
        ok = bool(
            ds is not None
            and os_ is not None
            and dw is not None
            and ow is not None
            and ds > os_
            and dw <= ow + 1e-9  # float noise is no larger loss
        )
        ahead = ahead and ok
        parts.append(
            f"{other}: {'ahead' if ok else 'not ahead'} on {len(common)} settings (mean share "
            f"{_pct(ds)} vs {_pct(os_)}, worst loss {_pts(dw)} vs {_pts(ow)})"
        )
    return (
        f"- detector:default ahead of fixed@70% and Fukase et al.: {'yes' if ahead else 'no'}; "
        + "; ".join(parts)
    )


def report(settings: Sequence[Any]) -> None:
    with_default = any(
        "detector:default" in seed.branches for st in settings for seed in st.seeds.values()
    )
    print("## Trained branches (phase B; the left-out rule is each setting's reported score)\n")
    print(
        "| setting | policy | cut epochs (spread) | acc (%) | loss vs always-k3 (pts) | FLOPs "
        "saved | oracle saving | share | vs matched k1 (pts) | goal |"
    )
    print("|:--|:--|:--|--:|--:|--:|--:|--:|--:|:--|")
    tallies: dict[str, Tally] = {}
    for st in settings:
        for r in setting_rows(st, with_default):
            print(_line(st, r))
            tally = tallies.setdefault(r.policy, Tally())
            if r.sc is not None:
                tally.scores[st.name] = r.sc
    print(
        "\n(FLOPs saved: measured against the same seed's always-k3; * formula where energy.json "
        "had no FLOPs. Accordion: replayed on the always-k3 rows, v1's estimate.)\n"
        "\n## Settings meeting the goal (section 7; mean share capped at 100%)\n"
    )
    for policy, t in tallies.items():
        met = sum(b2.meets_goal(sc) for sc in t.on())
        counted = sum(sc.share is not None for sc in t.on())
        print(
            f"- {policy}: {met} of {len(t.scores)} settings; mean share {_pct(t.mean_share())} "
            f"(over {counted}); worst loss {_pts(t.worst())}"
        )
    if with_default:
        print("\n" + verdict(tallies))
    else:
        print("\n- detector:default: not trained, no section-7 verdict")


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("roots", type=Path, nargs="+", help="bank run roots (v2's, a v1 re-run)")
    ap.add_argument("--only", nargs="+", metavar="NAME", help="only these settings")
    args = ap.parse_args(argv)
    settings = b2.load(args.roots, args.only)
    if not settings:
        print("no complete settings", file=sys.stderr)
        return 2
    report(settings)
    return 0


if __name__ == "__main__":
    sys.exit(main())
