"""Selection and scoring of the detector bank (experiments/bank/PROTOCOL.md, sections 5-9).

Reads the bank's run directories, builds each setting's oracle curve, replays every candidate
rule on the always-k3 runs, selects the default and each setting's left-out rule, and (phase B)
scores the trained branches of those rules.

    python experiments/bank/select.py runs/bank                # selection (phase A) -> stdout
    python experiments/bank/select.py runs/bank --write experiments/bank/selected.yaml
    python experiments/bank/select.py runs/bank --score        # phase B: real branches
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import statistics
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from critical.detector import V02_RULE, StabilityDetector, replay
from critical.runfiles import read_json, read_rows, run_status

K = 3
TOLERANCE = 0.5  # accuracy points
MIN_ORACLE = 0.20  # oracle saving from which the share counts
FRACTIONS = (0.1, 0.2, 0.3, 0.5, 0.7)
HERE = Path(__file__).resolve().parent

# ------------------------------------------------------------------------------------ runs


@dataclass
class Seed:
    trunk_rows: list[dict[str, Any]]
    curve: dict[int, float]  # cut epoch -> accuracy (%); 0: k1, E: always-k3
    branches: dict[str, dict[str, Any]] = field(default_factory=dict)  # label -> run info


@dataclass
class Setting:
    name: str
    epochs: int
    has_val: bool
    seeds: dict[int, Seed]

    @property
    def always(self) -> float:
        return statistics.mean(s.curve[self.epochs] for s in self.seeds.values())

    def mean_at(self, cut: int) -> float | None:
        vals = [s.curve.get(cut) for s in self.seeds.values()]
        return None if any(v is None for v in vals) else statistics.mean(vals)  # type: ignore[arg-type]

    def fixed_cuts(self) -> list[int]:
        return sorted({max(1, round(f * self.epochs)) for f in FRACTIONS})

    @property
    def oracle(self) -> tuple[int | None, float]:
        """(oracle cut, oracle saving)."""
        for c in self.fixed_cuts():
            m = self.mean_at(c)
            if m is not None and m >= self.always - TOLERANCE:
                return c, saving(c, self.epochs)
        return None, 0.0


def saving(cut: int, epochs: int) -> float:
    """FLOPs saving of a cut from k = 3 to 1 at epoch ``cut`` of ``epochs`` (epoch layout)."""
    return (K - 1) * (epochs - cut) / (K * epochs)


def _accuracy(run_dir: Path) -> float | None:
    rob = read_json(run_dir / "robustness.json", problems=[]) or {}
    acc = rob.get("clean_acc")
    return None if acc is None else 100.0 * float(acc)


def load_bank(root: Path) -> list[Setting]:
    settings = []
    for spec_path in sorted(HERE.glob("sweep_*.yaml")):
        spec = yaml.safe_load(spec_path.read_text())
        sub = root / spec_path.stem.removeprefix("sweep_")
        config = yaml.safe_load((HERE.parent.parent / spec["config"]).read_text())
        data = config["data"].get("init_args", config["data"])
        has_val = bool(data.get("val_size", 0))
        for budget in spec["budgets"]:
            name = spec_path.stem.removeprefix("sweep_")
            if len(spec["budgets"]) > 1:
                name += f"_e{budget}"
            seeds: dict[int, Seed] = {}
            for seed in spec["seeds"]:
                runs = {}
                for d in sub.glob(f"*-E{budget}-*-s{seed}"):
                    cfg = read_json(d / "config.json", problems=[]) or {}
                    tags = cfg.get("tags") or {}
                    if not run_status(d).complete:
                        continue
                    runs[tags.get("label")] = {"dir": d, "tags": tags, "acc": _accuracy(d)}
                trunk = runs.get(f"always-k{K}")
                if trunk is None or "k1" not in runs:
                    continue
                curve = {0: runs["k1"]["acc"], budget: trunk["acc"]}
                for label, r in runs.items():
                    if label.startswith("fixed@"):
                        curve[int(label.split("@")[1])] = r["acc"]
                seeds[seed] = Seed(read_rows(trunk["dir"]), curve, runs)
            settings.append(Setting(name, budget, has_val, seeds))
    return settings


# ------------------------------------------------------------------------------------ rules

MONITORS = (
    "layer_rotation",
    "gradient_norm",
    "gradient_predictability",
    "gradient_confusion/mean",
    "aug_gap",
    "aug_gap/aug_loss",
    "val/loss",
    "val/acc",
)
THRESHOLDS = (0.1, 0.2, 0.3, 0.5, 0.75, 1.0)
PATIENCE = (1, 2, 3)
WINDOWS = (1, 3)
GUARD_SIGNALS = {
    "train": "critical/train_loss",
    "val": "val/loss",
    "aug": "critical/aug_gap/aug_loss",
}
LOSS_THRESHOLDS = (0.25, 0.5, 1.0)


@dataclass(frozen=True)
class Rule:
    """A family-A rule (PROTOCOL.md section 6)."""

    monitor: str
    threshold: float
    patience: int
    window: int
    guard: str | None  # None, "train", "val", "aug"
    loss_threshold: float | None

    @property
    def uses_val(self) -> bool:
        return self.monitor.startswith("val/") or self.guard == "val"

    def settings(self) -> dict[str, Any]:
        """As detector settings (a sweep's detector entry; `learning_signal` for the guard)."""
        out: dict[str, Any] = {
            "monitor": self.monitor,
            "mode": "scaled",
            "threshold": self.threshold,
            "patience": self.patience,
            "min_epochs": 3,
            "window": self.window,
            "guard_finite": True,
            "guard_learning": self.guard is not None,
            "loss_window": 3,
            "loss_threshold": self.loss_threshold or 0.5,
            "guard_lr": True,
            "lr_cooldown": 2,
        }
        out["learning_signal"] = {None: "train_loss", "train": "train_loss", "val": "val_loss",
                                  "aug": "aug_loss"}[self.guard]  # fmt: skip
        return out

    def label(self) -> str:
        g = "none" if self.guard is None else f"{self.guard}@{self.loss_threshold:g}"
        return f"{self.monitor} t{self.threshold:g} p{self.patience} w{self.window} guard:{g}"

    def cut(self, rows: Sequence[Mapping[str, Any]], epochs: int) -> int:
        det = replay(
            rows,
            self.monitor,
            loss_key=GUARD_SIGNALS[self.guard or "train"],
            mode="scaled",
            threshold=self.threshold,
            patience=self.patience,
            min_epochs=3,
            window=self.window,
            guard_learning=self.guard is not None,
            loss_window=3,
            loss_threshold=self.loss_threshold or 0.5,
            guard_lr=True,
            lr_cooldown=2,
        )
        return epochs if det.event is None else min(det.event.epoch + 1, epochs)


def grid() -> list[Rule]:
    guards: list[tuple[str | None, float | None]] = [(None, None)]
    guards += [(g, t) for g in GUARD_SIGNALS for t in LOSS_THRESHOLDS]
    return [
        Rule(m, t, p, w, g, lt)
        for m, t, p, w, (g, lt) in itertools.product(
            MONITORS, THRESHOLDS, PATIENCE, WINDOWS, guards
        )
    ]


# family B (baselines)
def accordion(rows: Sequence[Mapping[str, Any]], epochs: int) -> int:
    det = replay(rows, "gradient_norm", mode="relative", threshold=0.5, patience=1, window=1,
                 min_epochs=1, guard_learning=False, guard_lr=False)  # fmt: skip
    return epochs if det.event is None else det.event.epoch + 1


def v02(rows: Sequence[Mapping[str, Any]], epochs: int) -> int:
    det = replay(rows, **V02_RULE)
    return epochs if det.event is None else det.event.epoch + 1


def fukase(rows: Sequence[Mapping[str, Any]], epochs: int, interval: int = 10) -> int:
    """Fukase et al.'s rule: every `interval` epochs after the first `interval`, fire when the
    epoch's largest pairwise gradient cosine is below Q1 - 1.5 IQR of all earlier values."""
    past: list[float] = []
    for row in sorted(rows, key=lambda r: r["epoch"]):
        v = row.get("critical/gradient_confusion/max")
        if v is None or not math.isfinite(v):
            continue
        e = int(row["epoch"])
        if (e + 1) % interval == 0 and len(past) > 1:
            q = statistics.quantiles(past, n=4, method="inclusive")
            if v < q[0] - 1.5 * (q[2] - q[0]):
                return min(e + 1, epochs)
        past.append(float(v))
    return epochs


def fisher_peak(rows: Sequence[Mapping[str, Any]], epochs: int, rho: float) -> int:
    """Fisher-trace proxy (squared gradient norm): fire once it has peaked and fallen below rho
    of its running maximum, unless the LR guard objects (warm-up or a step drop)."""
    det = StabilityDetector("x", mode="absolute", threshold=1.0, min_epochs=3,
                            guard_learning=False)  # fmt: skip  # used for its LR guard only
    peak = 0.0
    for row in sorted(rows, key=lambda r: r["epoch"]):
        e = int(row["epoch"])
        det.update(e, {"x": 0.0}, lr=row.get("critical/lr"),
                   lr_rose=_flag(row, "critical/lr_rose"), lr_jump=_flag(row, "critical/lr_jump"))  # fmt: skip
        det.event = None
        g = row.get("critical/gradient_norm")
        if g is None or not math.isfinite(g):
            continue
        f = g * g
        if f > peak:
            peak = f
            continue
        if e + 1 >= 3 and f < rho * peak and "lr" not in det.history[-1]["blocked"]:
            return min(e + 1, epochs)
    return epochs


def _flag(row: Mapping[str, Any], key: str) -> bool | None:
    v = row.get(key)
    return None if v is None else bool(v)


BASELINES: dict[str, Callable[[Sequence[Mapping[str, Any]], int], int]] = {
    "v0.2 rule": v02,
    "Accordion": accordion,
    "Fukase et al.": fukase,
    **{
        f"Fisher peak {r:g}": (lambda rows, e, r=r: fisher_peak(rows, e, r))
        for r in (0.5, 0.7, 0.9)
    },
}

# ------------------------------------------------------------------------------------ scoring


def interpolate(curve: Mapping[int, float], cut: int) -> float:
    xs = sorted(curve)
    if cut <= xs[0]:
        return curve[xs[0]]
    for a, b in itertools.pairwise(xs):
        if a <= cut <= b:
            return curve[a] + (curve[b] - curve[a]) * (cut - a) / (b - a)
    return curve[xs[-1]]


@dataclass
class Score:
    loss: float  # accuracy points lost against always-k3 (seed mean)
    saving: float  # FLOPs saving (seed mean)
    share: float | None  # of the oracle saving (None: oracle < 20%)
    cuts: list[int]


def score(setting: Setting, cuts: Mapping[int, int]) -> Score:
    est = [interpolate(setting.seeds[s].curve, c) for s, c in cuts.items()]
    loss = setting.always - statistics.mean(est)
    sav = statistics.mean(saving(c, setting.epochs) for c in cuts.values())
    _, oracle = setting.oracle
    share = sav / oracle if oracle >= MIN_ORACLE else None
    return Score(loss, sav, share, [cuts[s] for s in sorted(cuts)])


def cuts_of(fn: Callable[[Sequence[Mapping[str, Any]], int], int], st: Setting) -> dict[int, int]:
    return {s: fn(seed.trunk_rows, st.epochs) for s, seed in st.seeds.items()}


def objective(scores: Sequence[Score]) -> tuple:
    """Sort key (smaller is better), PROTOCOL.md section 8."""
    infeasible = [s for s in scores if s.loss > TOLERANCE]
    excess = sum(s.loss - TOLERANCE for s in infeasible)
    shares = [min(s.share, 1.0) for s in scores if s.share is not None]
    mean_share = statistics.mean(shares) if shares else 0.0
    mean_saving = statistics.mean(s.saving for s in scores)
    return (len(infeasible), round(excess, 9), -round(mean_share, 9), -round(mean_saving, 9))


def select(
    rules: Sequence[Rule], settings: Sequence[Setting], table: Mapping[tuple[Rule, str], Score]
) -> Rule:
    keyed = [(objective([table[(r, s.name)] for s in settings]), i, r) for i, r in enumerate(rules)]
    return min(keyed)[2]


def _flops(run_dir: Path) -> float | None:
    energy = read_json(run_dir / "energy.json", problems=[]) or {}
    return (energy.get("total") or {}).get("flops")


def score_branches(settings: Sequence[Setting], labels: Sequence[str]) -> None:
    """Phase B: the trained branches of the detectors ``labels`` against always-k3 (accuracy on
    the test split, FLOPs counted) and against matched k = 1 (PROTOCOL.md section 9)."""
    print("\n## Trained detector branches (phase B)\n")
    print("| setting | detector | cut epochs | acc (%) | loss vs always-k3 (pts) | FLOPs saved "
          "| oracle saving | share | vs matched k1 (pts) | goal |")  # fmt: skip
    print("|:--|:--|:--|--:|--:|--:|--:|--:|--:|:--|")
    for st in settings:
        _, oracle = st.oracle
        for label in labels:
            accs, savings, cuts, vs_matched = [], [], [], []
            for seed in st.seeds.values():
                run = seed.branches.get(label)
                trunk = seed.branches.get(f"always-k{K}")
                if run is None or trunk is None or run["acc"] is None:
                    break
                accs.append(run["acc"])
                cut = run["tags"].get("cut_at")
                cuts.append(cut if cut is not None else st.epochs)
                f, f0 = _flops(run["dir"]), _flops(trunk["dir"])
                savings.append(1 - f / f0 if f and f0 else 0.0)
                m = seed.branches.get(f"matched-k1@{cut}") if cut is not None else None
                if m is not None and m["acc"] is not None:
                    vs_matched.append(run["acc"] - m["acc"])
            else:
                loss = st.always - statistics.mean(accs)
                saving_ = statistics.mean(savings)
                share = saving_ / oracle if oracle >= MIN_ORACLE else None
                ok = loss <= TOLERANCE and (share is None or share >= 0.7)
                vm = f"{statistics.mean(vs_matched):+.2f}" if len(vs_matched) == len(accs) else "-"
                print(f"| {st.name} | {label} | {cuts} | {statistics.mean(accs):.2f} | "
                      f"{loss:+.2f} | {saving_:.1%} | {oracle:.1%} | "
                      f"{'-' if share is None else f'{share:.0%}'} | {vm} | "
                      f"{'met' if ok else 'NOT met'} |")  # fmt: skip
                continue
            print(f"| {st.name} | {label} | (branches not all trained) | | | | | | | |")


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("root", type=Path)
    ap.add_argument("--write", type=Path, help="write the selected rules (selected.yaml)")
    ap.add_argument("--json", type=Path, help="write every estimate as JSON")
    ap.add_argument(
        "--score", nargs="*", metavar="LABEL",
        help="phase B: score the trained branches of these detector labels "
        "(default: detector:default detector:left_out)",
    )  # fmt: skip
    args = ap.parse_args(argv)

    settings = [s for s in load_bank(args.root) if s.seeds]
    if not settings:
        print("no complete settings", file=sys.stderr)
        return 2
    if args.score is not None:
        score_branches(settings, args.score or ["detector:default", "detector:left_out"])
        return 0
    print("## Oracle curves (seed-mean test accuracy, %, by cut epoch; 0 = k1, E = always-k3)\n")
    for st in settings:
        pts = sorted(set().union(*(s.curve for s in st.seeds.values())))
        curve = ", ".join(f"{c}: {st.mean_at(c):.2f}" for c in pts if st.mean_at(c) is not None)
        oc, os_ = st.oracle
        print(f"- {st.name} ({len(st.seeds)} seeds, E={st.epochs}): {curve}; oracle cut "
              f"{oc if oc is not None else 'none'} (saving {os_:.1%})")  # fmt: skip

    rules = grid()
    table: dict[tuple[Rule, str], Score] = {}
    for r in rules:
        for st in settings:
            if r.uses_val and not st.has_val:
                continue
            table[(r, st.name)] = score(st, cuts_of(r.cut, st))
    agnostic = [r for r in rules if not r.uses_val]
    with_val = [s for s in settings if s.has_val]

    def pick(name: str, rset: Sequence[Rule], sset: Sequence[Setting]) -> Rule:
        r = select(rset, sset, table)
        print(f"\n{name}: {r.label()}  objective {objective([table[(r, s.name)] for s in sset])}")
        return r

    print("\n## Selection on all settings")
    da_all = pick("data-agnostic (all settings)", agnostic, settings)
    va_all = pick("validation-based (settings with validation)", rules, with_val)
    va_obj, da_obj = (objective([table[(r, s.name)] for s in with_val]) for r in (va_all, da_all))
    ship_val = va_obj[0] == 0 and va_obj[2] < da_obj[2]
    print(f"\nshipped default: {'validation-based' if ship_val else 'data-agnostic'}"
          f" (fallback without validation: data-agnostic)")  # fmt: skip

    print("\n## Leave one setting out (estimates)\n")
    print("| left out | rule | cut epochs | est. loss (pts) | saving | oracle saving | share |")
    print("|:--|:--|:--|--:|--:|--:|--:|")
    loso: dict[str, Rule] = {}
    for st in settings:
        others = [s for s in settings if s is not st]
        if st.has_val and ship_val:
            r = select(rules, [s for s in others if s.has_val], table)
        else:
            r = select(agnostic, others, table)
        loso[st.name] = r
        sc = table[(r, st.name)]
        share = "-" if sc.share is None else f"{sc.share:.0%}"
        print(f"| {st.name} | {r.label()} | {sc.cuts} | {sc.loss:+.2f} | {sc.saving:.1%} | "
              f"{st.oracle[1]:.1%} | {share} |")  # fmt: skip

    print("\n## Baselines (estimates)\n")
    print("| rule | " + " | ".join(s.name for s in settings) + " |")
    print("|:--|" + "--:|" * len(settings))
    for name, fn in BASELINES.items():
        cells = []
        for st in settings:
            sc = score(st, cuts_of(fn, st))
            cells.append(f"{sc.loss:+.2f} / {sc.saving:.0%}")
        print(f"| {name} | " + " | ".join(cells) + " |")
    for name, r in (("selected data-agnostic", da_all), ("selected validation-based", va_all)):
        cells = []
        for st in settings:
            sc = table.get((r, st.name)) or table[(da_all, st.name)]
            cells.append(f"{sc.loss:+.2f} / {sc.saving:.0%}")
        print(f"| {name} | " + " | ".join(cells) + " |")
    print("\n(cells: estimated loss against always-k3 in points / FLOPs saved)")

    if args.json:
        args.json.write_text(
            json.dumps({f"{r.label()}|{s}": vars(sc) for (r, s), sc in table.items()})
        )
    if args.write:
        out = {
            "protocol": "experiments/bank/PROTOCOL.md",
            "default": (va_all if ship_val else da_all).settings(),
            "fallback_without_validation": da_all.settings(),
            "validation_based": ship_val,
            "left_out": {name: r.settings() for name, r in loso.items()},
        }
        args.write.write_text(yaml.safe_dump(out, sort_keys=False))
        print(f"\nwrote {args.write}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
