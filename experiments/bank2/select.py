"""Selection and scoring of the detector bank, version 2 (experiments/bank2/PROTOCOL.md, 4-5).

Reads the run directories of one or more bank roots (bank v2's, and a re-run of the v1 bank),
builds each setting's oracle curve, replays every candidate rule (families A, F, A+F, S and
two-signal agreement) on the always-k3 runs, selects each setting's left-out rule on all the
other settings (fewer free parameters first within a 1-point tie band on mean share; the
robustness rule), and prints the left-out rules beside the baselines (estimates).

    python experiments/bank2/select.py $BANK2_OUT $BANK1_RERUN_OUT
    python experiments/bank2/select.py $BANK2_OUT --only ipd osu
    python experiments/bank2/select.py $BANK2_OUT $BANK2_OUT/v1 --write experiments/bank2/selected.yaml

Reuses v1's loader, oracle curve, scoring and objective (experiments/bank/select.py, imported
by path: its module name would clash with the standard library's ``select``).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import importlib.util
import itertools
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from critical.detector import FUKASE_RULE, replay

HERE = Path(__file__).resolve().parent
BANK1 = HERE.parent / "bank"


def _import_v1() -> Any:
    spec = importlib.util.spec_from_file_location("bank1_select", BANK1 / "select.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while being built
    spec.loader.exec_module(module)
    return module


v1 = _import_v1()
Setting, Score = v1.Setting, v1.Score
TOLERANCE, MIN_ORACLE = v1.TOLERANCE, v1.MIN_ORACLE
TIE_BAND = 0.01  # 1 point of mean share (section 5.2)
GOAL_SHARE = 0.7
NEVER = 10**6  # a patience no run reaches: a rule that never fires (family F)

# ------------------------------------------------------------------------------------ runs


@contextlib.contextmanager
def _sweeps_of(here: Path) -> Iterator[None]:
    """v1's ``load_bank`` reads the sweeps next to its module: point it at ``here``'s."""
    saved = v1.HERE
    v1.HERE = here
    try:
        yield
    finally:
        v1.HERE = saved


def load(roots: Sequence[Path], only: Sequence[str] | None = None) -> list[Any]:
    """The settings under ``roots`` (bank v2's sweeps, then v1's, whichever have a folder
    there; a root may also be one setting's folder), each with the seeds whose always-k3, k1
    and every fixed-cut run finished."""
    settings: dict[str, Any] = {}
    for root in roots:
        for here in (HERE, BANK1):
            stems = [p.stem.removeprefix("sweep_") for p in here.glob("sweep_*.yaml")]
            top, names = root, None
            if root.name in stems and not any((root / s).is_dir() for s in stems):
                top, names = root.parent, [root.name]  # a setting's own folder
            if not any((top / s).is_dir() for s in stems):
                continue
            with _sweeps_of(here):
                loaded = v1.load_bank(top)
            for st in loaded:
                base = st.name.rsplit("_e", 1)[0] if st.name not in stems else st.name
                if (only and st.name not in only) or (names and base not in names):
                    continue
                partial = [s for s, seed in st.seeds.items() if not _whole(st, seed)]
                for s in partial:
                    del st.seeds[s]
                if partial:
                    print(
                        f"note: {st.name}: seeds {partial} lack a finished k1, always-k3 or "
                        "fixed-cut run with a test accuracy, left out",
                        file=sys.stderr,
                    )
                if not st.seeds:
                    continue
                if st.name in settings:
                    print(f"note: {st.name} also under {root}: the first kept", file=sys.stderr)
                    continue
                settings[st.name] = st
    return list(settings.values())


def _whole(st: Any, seed: Any) -> bool:
    cuts = [0, *st.fixed_cuts(), st.epochs]
    return all(c in seed.curve and seed.curve[c] is not None for c in cuts)


# ------------------------------------------------------------------------------------ rules

CutFn = Callable[[Sequence[Mapping[str, Any]], int], int]


def _cut(det: Any, epochs: int) -> int:
    return epochs if det.event is None else min(det.event.epoch + 1, epochs)


@dataclass(eq=False)  # hashed by identity: a key of the score table
class Cand:
    """A candidate rule: its family, free parameters, whether it reads validation, and how it
    cuts (``fn``; or, for A+F, the earlier of ``base``'s cut and the floor's)."""

    family: str
    label: str
    params: int
    uses_val: bool
    fn: CutFn | None = None
    base: Cand | None = None
    floor: float | None = None
    floor_key: tuple[str, str] | None = None  # (monitor, guard loss column) of the floor part
    entry: dict[str, Any] = field(default_factory=dict)  # as a sweep's detector entry


def floor_cut(
    rows: Sequence[Mapping[str, Any]],
    epochs: int,
    floor: float,
    monitor: str = "layer_rotation",
    loss_key: str = "critical/train_loss",
) -> int:
    """Family F: ``CriticalPeriod(floor=f)`` with a rule that never fires (divergence still
    stops it, as it does the floor of a rule watching ``monitor``)."""
    det = replay(
        rows,
        monitor,
        loss_key=loss_key,
        patience=NEVER,
        min_epochs=3,
        floor=floor,
        guard_learning=False,
        guard_lr=False,
    )
    return _cut(det, epochs)


def _guard_count(rule: Any) -> int:
    return 4 + (rule.guard is not None)  # monitor, threshold, patience, window (+ the guard)


def family_a() -> list[Cand]:
    """v1's 2,880 rules, unchanged (4-5 free parameters)."""
    return [
        Cand("A", r.label(), _guard_count(r), r.uses_val, fn=r.cut, entry=r.settings())
        for r in v1.grid()
    ]


FLOORS = (0.2, 0.3, 0.4, 0.5)
AF_FLOORS = (0.2, 0.3, 0.4)


def family_f() -> list[Cand]:
    """The floor alone: cut once the learning-rate mass left is at most f (1 parameter)."""
    entry = {
        "monitor": "layer_rotation",
        "patience": NEVER,
        "guard_learning": False,
        "guard_lr": False,
        "fallback": None,
    }
    return [
        Cand(
            "F",
            f"floor {f:g}",
            1,
            False,
            fn=functools.partial(floor_cut, floor=f),
            floor=f,
            entry={**entry, "floor": f},
        )
        for f in FLOORS
    ]


def family_af(a_rules: Sequence[Cand]) -> list[Cand]:
    """Each family-A rule with a floor (whichever fires first; one parameter more)."""
    out = []
    for base, f in itertools.product(a_rules, AF_FLOORS):
        monitor = base.entry["monitor"]
        loss_key = v1.GUARD_SIGNALS[_guard_of(base.entry)]
        out.append(
            Cand(
                "A+F",
                f"{base.label} floor {f:g}",
                base.params + 1,
                base.uses_val,
                base=base,
                floor=f,
                floor_key=(monitor, loss_key),
                entry={**base.entry, "floor": f},
            )
        )
    return out


def _guard_of(entry: Mapping[str, Any]) -> str:
    if not entry.get("guard_learning"):
        return "train"
    return {"train_loss": "train", "val_loss": "val", "aug_loss": "aug"}[entry["learning_signal"]]


SLOPE_MONITORS = ("layer_rotation", "aug_gap/aug_loss", "val/loss")
SLOPE_THRESHOLDS = (0.25, 0.5, 1.0, 2.0)
SLOPE_WINDOWS = (3, 5)
SLOPE_FLOORS = (None, 0.3)


def _slope_cut(rows: Sequence[Mapping[str, Any]], epochs: int, kw: Mapping[str, Any]) -> int:
    return _cut(replay(rows, budget=epochs, **kw), epochs)


def _agree_cut(
    rows: Sequence[Mapping[str, Any]],
    epochs: int,
    pair: Sequence[str],
    kw: Mapping[str, Any],
    loss_key: str,
) -> int:
    return _cut(replay(rows, list(pair), loss_key=loss_key, **kw), epochs)


def family_s() -> list[Cand]:
    """Budget slopes (Fukase et al.'s axis), no guards but divergence as theirs; 2 parameters
    (threshold, window), 3 with a floor."""
    out = []
    for m, t, w, f in itertools.product(
        SLOPE_MONITORS, SLOPE_THRESHOLDS, SLOPE_WINDOWS, SLOPE_FLOORS
    ):
        kw = {
            "monitor": m,
            "mode": "budget",
            "threshold": t,
            "patience": 1,
            "min_epochs": w,
            "window": w,
            "guard_learning": False,
            "guard_lr": False,
            "learning_signal": "train_loss",
            "fallback": None,
            "floor": f,
        }
        label = f"slope {m} t{t:g} w{w}" + ("" if f is None else f" floor {f:g}")
        out.append(
            Cand(
                "S",
                label,
                2 + (f is not None),
                m.startswith("val/"),
                fn=functools.partial(_slope_cut, kw=kw),
                entry=kw,
            )
        )
    return out


AGREE_PAIRS = (("val/loss", "aug_gap/aug_loss"), ("layer_rotation", "aug_gap/aug_loss"))


def family_agree() -> list[Cand]:
    """Two-signal agreement (``combine="all"``) at family A's scaled thresholds, patience and
    windows, with v1's guards (as family A: 4-5 parameters)."""
    guards: list[tuple[str | None, float | None]] = [(None, None)]
    guards += [(g, t) for g in v1.GUARD_SIGNALS for t in v1.LOSS_THRESHOLDS]
    out = []
    for pair, t, p, w, (g, lt) in itertools.product(
        AGREE_PAIRS, v1.THRESHOLDS, v1.PATIENCE, v1.WINDOWS, guards
    ):
        kw = {
            "mode": "scaled",
            "combine": "all",
            "threshold": t,
            "patience": p,
            "min_epochs": 3,
            "window": w,
            "guard_learning": g is not None,
            "loss_window": 3,
            "loss_threshold": lt or 0.5,
            "guard_lr": True,
            "lr_cooldown": 2,
            "fallback": None,
        }
        loss_key = v1.GUARD_SIGNALS[g or "train"]
        gl = "none" if g is None else f"{g}@{lt:g}"
        signal = {None: "train_loss", "train": "train_loss", "val": "val_loss", "aug": "aug_loss"}
        out.append(
            Cand(
                "agree",
                f"all({'+'.join(pair)}) t{t:g} p{p} w{w} guard:{gl}",
                4 + (g is not None),
                pair[0].startswith("val/") or g == "val",
                fn=functools.partial(_agree_cut, pair=pair, kw=kw, loss_key=loss_key),
                entry={"monitor": list(pair), **kw, "learning_signal": signal[g]},
            )
        )
    return out


def grid() -> list[Cand]:
    a = family_a()
    return [*family_f(), *family_s(), *a, *family_af(a), *family_agree()]


# ---------------------------------------------------------------------------------- baselines


def _v03_entry() -> dict[str, Any]:
    """Version 0.3's default as the bank-v2 sweeps spell it (their ``v03`` detector entry)."""
    for path in sorted(HERE.glob("sweep_*.yaml")):
        for d in yaml.safe_load(path.read_text())["policies"].get("detector") or []:
            if d.get("name") == "v03":
                return {k: v for k, v in d.items() if k != "name"}
    raise LookupError("no v03 detector entry in experiments/bank2/sweep_*.yaml")


V03 = _v03_entry()


def fukase(rows: Sequence[Mapping[str, Any]], epochs: int) -> int:
    """Fukase et al.'s rule (``FUKASE_RULE``) replayed with the setting's budget."""
    return _cut(replay(rows, budget=epochs, **FUKASE_RULE), epochs)


def v03(rows: Sequence[Mapping[str, Any]], epochs: int) -> int:
    return _cut(replay(rows, **V03), epochs)


def _fixed(f: float) -> CutFn:
    return lambda rows, epochs: max(1, round(f * epochs))


BASELINES: dict[str, CutFn] = {
    "fixed@50%": _fixed(0.5),
    "fixed@70%": _fixed(0.7),
    "Fukase et al.": fukase,
    "Accordion": v1.accordion,
    "v0.2 rule": v1.v02,
    "v03": v03,
}

# ------------------------------------------------------------------------------------ scoring


def cut_table(cands: Sequence[Cand], settings: Sequence[Any]) -> dict[tuple[Cand, str], Any]:
    """Every candidate's score on every setting it applies to (validation rules: settings
    that validate)."""
    cuts: dict[tuple[int, str], dict[int, int]] = {}
    floors: dict[tuple[str, str, float, str], dict[int, int]] = {}
    table: dict[tuple[Cand, str], Any] = {}
    for c in cands:
        for st in settings:
            if c.uses_val and not st.has_val:
                continue
            if c.base is not None:
                assert c.floor is not None and c.floor_key is not None
                key = (*c.floor_key, c.floor, st.name)
                if key not in floors:
                    floors[key] = {
                        s: floor_cut(seed.trunk_rows, st.epochs, c.floor, *c.floor_key)
                        for s, seed in st.seeds.items()
                    }
                base = cuts[(id(c.base), st.name)]
                got = {s: min(base[s], floors[key][s]) for s in st.seeds}
            else:
                assert c.fn is not None
                got = v1.cuts_of(c.fn, st)
            cuts[(id(c), st.name)] = got
            table[(c, st.name)] = v1.score(st, got)
    return table


def meets_goal(sc: Any) -> bool:
    """Section 7 on an estimate: at most 0.5 points lost, and 70% of the oracle's saving where
    that is at least 20%."""
    return sc.loss <= TOLERANCE and (sc.share is None or sc.share >= GOAL_SHARE)


@dataclass
class Choice:
    cand: Cand
    objective: tuple
    worst: float  # the largest loss over the training settings
    band: int  # rules within the tie band


def select(
    cands: Sequence[Cand], train: Sequence[Any], table: Mapping[tuple[Cand, str], Any]
) -> Choice | None:
    """Section 5: v1's objective on ``train``; robustness (no rule infeasible on more than one
    setting when one infeasible on at most one exists); among rules tied with the best on
    infeasible count and excess and within 1 point of its mean share, the fewest free
    parameters, then v1's order (objective, then grid order). ``None`` without settings."""
    if not train:
        return None
    keyed = []
    for i, c in enumerate(cands):
        got = [table.get((c, s.name)) for s in train]
        scores = [sc for sc in got if sc is not None]
        if len(scores) < len(got):
            continue  # does not apply to every training setting
        keyed.append((v1.objective(scores), i, c, max(sc.loss for sc in scores)))
    if not keyed:
        return None
    robust = [k for k in keyed if k[0][0] <= 1]
    if robust:
        keyed = robust
    best = min(keyed, key=lambda k: (k[0], k[1]))[0]
    band = [k for k in keyed if k[0][:2] == best[:2] and k[0][2] <= best[2] + TIE_BAND + 1e-12]
    obj, _, cand, worst = min(band, key=lambda k: (k[2].params, k[0], k[1]))
    return Choice(cand, obj, worst, len(band))


def left_out(
    cands: Sequence[Cand], settings: Sequence[Any], table: Mapping[tuple[Cand, str], Any]
) -> dict[str, tuple[Choice | None, str]]:
    """Section 5.1: each setting's rule chosen on all the others only (validation-based,
    on the others that validate, where it validates; else data-agnostic on all others)."""
    agnostic = [c for c in cands if not c.uses_val]
    out: dict[str, tuple[Choice | None, str]] = {}
    for st in settings:
        others = [s for s in settings if s is not st]
        with_val = [s for s in others if s.has_val]
        if st.has_val and with_val:
            out[st.name] = (select(cands, with_val, table), "validation-based")
        else:
            out[st.name] = (select(agnostic, others, table), "data-agnostic")
    return out


# ------------------------------------------------------------------------------------ report


def _share(sc: Any) -> str:
    return "-" if sc.share is None else f"{sc.share:.0%}"


def _spread(cuts: Sequence[int]) -> str:
    return f"{cuts} ({max(cuts) - min(cuts)})"


def report(settings: Sequence[Any], cands: Sequence[Cand], table: Mapping[Any, Any]) -> None:
    print("## Oracle curves (seed-mean test accuracy, %, by cut epoch; 0 = k1, E = always-k3)\n")
    for st in settings:
        pts = sorted(set().union(*(s.curve for s in st.seeds.values())))
        curve = ", ".join(f"{c}: {st.mean_at(c):.2f}" for c in pts if st.mean_at(c) is not None)
        oc, os_ = st.oracle
        print(
            f"- {st.name} ({len(st.seeds)} seeds, E={st.epochs}, "
            f"{'validation' if st.has_val else 'no validation'}): {curve}; oracle cut "
            f"{oc if oc is not None else 'none'} (saving {os_:.1%})"
        )

    counts = {f: sum(c.family == f for c in cands) for f in dict.fromkeys(c.family for c in cands)}
    print(f"\n{len(cands)} candidate rules: " + ", ".join(f"{f} {n}" for f, n in counts.items()))

    print("\n## Leave one setting out (estimates; the rule chosen on all other settings)\n")
    loo = left_out(cands, settings, table)
    print(
        "| left out | selection | rule | family (params) | cut epochs (spread) | est. loss "
        "(pts) | saving | oracle saving | share | goal | worst loss on T | tied |"
    )
    print("|:--|:--|:--|:--|:--|--:|--:|--:|--:|:--|--:|--:|")
    met_loo = 0
    for st in settings:
        choice, how = loo[st.name]
        if choice is None:
            print(
                f"| {st.name} | {how} | none: no training settings to select on "
                f"(the bank holds {len(settings)} setting(s)) | | | | | | | | | |"
            )
            continue
        sc = table[(choice.cand, st.name)]
        met_loo += meets_goal(sc)
        print(
            f"| {st.name} | {how} | {choice.cand.label} | {choice.cand.family} "
            f"({choice.cand.params}) | {_spread(sc.cuts)} | {sc.loss:+.2f} | {sc.saving:.1%} "
            f"| {st.oracle[1]:.1%} | {_share(sc)} | {'met' if meets_goal(sc) else 'NOT met'} "
            f"| {choice.worst:+.2f} | {choice.band} |"
        )

    print("\n## Baselines (estimates)\n")
    print("| setting | rule | cut epochs (spread) | est. loss (pts) | saving | share | goal |")
    print("|:--|:--|:--|--:|--:|--:|:--|")
    met: dict[str, int] = dict.fromkeys([*BASELINES, "oracle"], 0)
    for st in settings:
        rows: list[tuple[str, Any]] = [
            (name, v1.score(st, v1.cuts_of(fn, st))) for name, fn in BASELINES.items()
        ]
        oc, _ = st.oracle
        rows.append(("oracle", v1.score(st, dict.fromkeys(st.seeds, oc or st.epochs))))
        for name, sc in rows:
            met[name] += meets_goal(sc)
            print(
                f"| {st.name} | {name} | {_spread(sc.cuts)} | {sc.loss:+.2f} | "
                f"{sc.saving:.1%} | {_share(sc)} | {'met' if meets_goal(sc) else 'NOT met'} |"
            )

    n = len(settings)
    print("\n## Settings meeting the goal (section 7, estimates)\n")
    chosen = sum(loo[s.name][0] is not None for s in settings)
    print(f"- left-out rules: {met_loo} of {chosen} settings with a left-out rule ({n} in all)")
    for name, m in met.items():
        print(f"- {name}: {m} of {n}")

    print("\n## Selection on all settings (in-sample: the candidate new default)\n")
    agnostic = [c for c in cands if not c.uses_val]
    with_val = [s for s in settings if s.has_val]
    for name, pool, on in (
        ("data-agnostic, all settings", agnostic, settings),
        ("validation-based, settings that validate", cands, with_val),
    ):
        ch = select(pool, on, table)
        if ch is None:
            print(f"- {name}: none (no settings)")
        else:
            print(
                f"- {name}: {ch.cand.label} ({ch.cand.family}, {ch.cand.params} params); "
                f"objective {ch.objective}, worst loss {ch.worst:+.2f}, {ch.band} tied"
            )


def _plain(entry: Mapping[str, Any]) -> dict[str, Any]:
    """A candidate's entry as YAML can hold it (tuples as lists)."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in entry.items()}


def selected(
    cands: Sequence[Cand], settings: Sequence[Any], table: Mapping[tuple[Cand, str], Any]
) -> dict[str, Any]:
    """What phase B trains (section 5), as ``selected.yaml``: each setting's left-out rule, and
    the candidate new default chosen on all settings (validation-based where it meets the goal
    on every setting that validates with a larger mean share than the data-agnostic rule, as
    v1; the data-agnostic rule is its fallback without validation)."""
    agnostic = [c for c in cands if not c.uses_val]
    with_val = [s for s in settings if s.has_val]
    da = select(agnostic, settings, table)
    if da is None:
        raise ValueError("no data-agnostic rule applies to every setting")
    va = select(cands, with_val, table) if with_val else None
    da_on_val = v1.objective([table[(da.cand, s.name)] for s in with_val]) if with_val else None
    ship_val = bool(
        va is not None and da_on_val is not None and va.objective[0] == 0
        and va.objective[2] < da_on_val[2]
    )  # fmt: skip
    fallback = {k: v for k, v in _plain(da.cand.entry).items() if k != "fallback"}
    default = _plain((va if ship_val and va else da).cand.entry)
    default["fallback"] = fallback if ship_val else None
    labels = {"default": (va if ship_val and va else da).cand.label, "fallback": da.cand.label}
    loo = left_out(cands, settings, table)
    out: dict[str, Any] = {
        "protocol": "experiments/bank2/PROTOCOL.md",
        "settings": [s.name for s in settings],
        "default": default,
        "fallback_without_validation": fallback,
        "validation_based": ship_val,
        "labels": labels,
        "left_out": {},
        "left_out_labels": {},
    }
    for st in settings:
        choice, _ = loo[st.name]
        if choice is not None:
            out["left_out"][st.name] = _plain(choice.cand.entry)
            out["left_out_labels"][st.name] = choice.cand.label
    return out


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("roots", type=Path, nargs="+", help="bank run roots (v2's, a v1 re-run)")
    ap.add_argument("--only", nargs="+", metavar="NAME", help="only these settings")
    ap.add_argument(
        "--write", type=Path, metavar="YAML",
        help="write the rules phase B trains (experiments/bank2/selected.yaml)",
    )  # fmt: skip
    args = ap.parse_args(argv)

    t0 = time.perf_counter()
    settings = load(args.roots, args.only)
    if not settings:
        print("no complete settings", file=sys.stderr)
        return 2
    cands = grid()
    table = cut_table(cands, settings)
    t1 = time.perf_counter()
    report(settings, cands, table)
    if args.write:
        args.write.write_text(yaml.safe_dump(selected(cands, settings, table), sort_keys=False))
        print(f"\nwrote {args.write}")
    t2 = time.perf_counter()
    seeds = sum(len(s.seeds) for s in settings)
    print(
        f"\n(time: loading and replaying {len(cands)} rules on {len(settings)} settings, "
        f"{seeds} seeds: {t1 - t0:.1f} s; selection and report: {t2 - t1:.1f} s)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
