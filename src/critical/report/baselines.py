"""Comparisons between the groups of one setting: :func:`savings` (against always-k),
:func:`matched_k1` (each cut policy against the k = 1 run with as many optimizer steps),
:func:`compute_check` (measured savings against the FLOPs-based one) and :func:`regret` (the
detector against the fixed cuts and always-k; the oracle cut).

The rules are in the :mod:`critical.report` docstring. Called by
:func:`~critical.report.analysis.summarize`; fills in :class:`~critical.report.stats.Group` values
and returns notes. No matplotlib.
"""

from __future__ import annotations

import math
from typing import Any

from critical.report import costs
from critical.report.runs import CUT_POLICIES, Setting, _finite
from critical.report.stats import Group, Stat, _run_sort_key, compute_stats, per_seed

__all__ = ["compute_check", "matched_k1", "pooled_matched", "regret", "savings"]

_SAVINGS = (
    ("time_saving_pct", "time_s"),
    ("energy_saving_pct", "energy_kwh"),
    ("co2_saving_pct", "co2_kg"),
    ("flops_saving_pct", "flops"),
)
_EPS = 1e-9


def _nan_none(v: float) -> float | None:
    return float(v) if _finite(v) else None


def _pick_baseline(group: Group, always: list[Group]) -> Group | None:
    if not always:
        return None
    same_k = [a for a in always if group.k is not None and a.k == group.k]
    return (same_k or always)[0]


def savings(setting: Setting, groups: list[Group]) -> list[str]:
    """Savings and ΔAcc against the setting's always-k group, and the theoretical saving, per
    run (``*_saving_pct``, ``acc_delta_pts``, ``theoretical_saving_pct``); returns notes."""
    notes: list[str] = []
    always = [g for g in groups if g.policy == "always" and g.complete]
    if not always and any(g.complete for g in groups) and len(groups) > 1:
        notes.append(f"{setting.label}: no complete always-k group; no savings computed")
    for g in groups:
        base = _pick_baseline(g, always)
        if base is None:
            for r in g.complete:
                t = costs.recorded_theoretical_saving(r)
                g.values[r.name]["theoretical_saving_pct"] = None if t is None else 100.0 * t
            compute_stats(g)
            continue
        g.baseline = base.label
        per_seed: dict[int, list[dict[str, float | None]]] = {}
        for r in base.complete:
            if r.seed is not None:
                per_seed.setdefault(r.seed, []).append(base.values[r.name])
        # always-k's compute in k = 1 epochs (k * E when every epoch is complete)
        units = Stat.of(costs.multiplicity_sum(r) for r in base.complete).mean
        if not _finite(units) and base.k and setting.budget:
            units = float(base.k * setting.budget)
        for r in g.complete:
            vals = g.values[r.name]
            for out_key, q in (*_SAVINGS, ("acc_delta_pts", "acc")):
                ref = None
                if r.seed in per_seed:
                    ref = Stat.of(v.get(q) for v in per_seed[r.seed]).mean
                if not _finite(ref):
                    ref = base.mean(q)
                v = vals.get(q)
                if not (_finite(v) and _finite(ref)):
                    vals[out_key] = None
                elif q == "acc":
                    vals[out_key] = 100.0 * (v - ref)
                else:
                    vals[out_key] = 100.0 * (1.0 - v / ref) if ref > 0 else None
            mine = costs.multiplicity_sum(r)
            if mine is not None and _finite(units) and units > 0:
                vals["theoretical_saving_pct"] = 100.0 * (1.0 - mine / units)
            else:
                t = costs.recorded_theoretical_saving(r)
                vals["theoretical_saving_pct"] = None if t is None else 100.0 * t
        compute_stats(g)
    return notes


def _verdict(s: Stat | None) -> tuple[bool | None, str]:
    if s is None or s.n == 0:
        return None, "no matched k = 1 run"
    if s.mean <= 0:
        return False, "no: the saving came from training less"
    if s.n >= 2 and s.mean - 2.0 * s.std / math.sqrt(s.n) > 0:
        return True, "yes"
    return None, "not beyond the noise" + (" (1 seed)" if s.n == 1 else "")


def matched_k1(groups: list[Group]) -> list[str]:
    """Each complete run of a cut policy against the matched k = 1 run of its seed and cut
    epoch (``acc_vs_matched_pts``); sets ``Group.matched`` of the cut-policy groups when the
    setting has matched runs; returns notes."""
    notes: list[str] = []
    matched = [g for g in groups if g.policy == "matched"]
    if not matched:
        return notes
    by: dict[tuple[int | None, int], list[float]] = {}
    for g in matched:
        for r in g.complete:
            acc = g.values[r.name].get("acc")
            if r.cut_at is not None and _finite(acc):
                by.setdefault((r.seed, r.cut_at), []).append(float(acc))
    for g in groups:
        if g.policy not in CUT_POLICIES:
            continue
        mine, theirs, lacking = [], [], []
        for r in g.complete:
            vals = g.values[r.name]
            cut = r.cut_at if r.cut_at is not None else r.cut_epoch
            accs = by.get((r.seed, cut)) if cut is not None else None
            acc = vals.get("acc")
            vals["acc_vs_matched_pts"] = None
            if cut is None or not _finite(acc):
                continue
            if not accs:
                lacking.append(f"seed {r.seed} (cut {cut})")
                continue
            m = sum(accs) / len(accs)
            vals["acc_vs_matched_pts"] = 100.0 * (acc - m)
            mine.append(acc)
            theirs.append(m)
        compute_stats(g)
        if lacking:
            notes.append(
                f"{g.setting.label} / {g.label}: no matched k = 1 run for " + ", ".join(lacking)
            )
        s = g.stats.get("acc_vs_matched_pts")
        beats, verdict = _verdict(s)
        if g.n_cut == 0:
            verdict = "never cut: nothing to match"
        g.matched = {
            "dataset": g.dataset,
            "model": g.model,
            "budget": g.budget,
            "label": g.label,
            "policy": g.policy,
            "n": len(g.complete),
            "n_matched": 0 if s is None else s.n,
            "cut_epoch": _common(g.cut_epochs),
            "cut_epochs": per_seed(g.cut_epochs),
            "acc": _nan_none(Stat.of(mine).mean),
            "matched_acc": _nan_none(Stat.of(theirs).mean),
            "acc_vs_matched_pts": None if s is None else _nan_none(s.mean),
            "acc_vs_matched_std": None if s is None else _nan_none(s.std),
            "acc_delta_pts": _nan_none(g.mean("acc_delta_pts")),
            "beats_matched": beats,
            "verdict": verdict,
        }
    return notes


def compute_check(groups: list[Group], tolerance: float) -> list[str]:
    """Measured time and energy savings against the compute saving (FLOPs-based, else the
    theoretical one), per run (``time_vs_compute_pts``, ``energy_vs_compute_pts``) and per
    group (``Group.check``), plus the runs whose own ``saving_check`` disagrees; returns notes."""
    notes: list[str] = []
    names = {"time": "time", "energy": "energy"}
    for g in groups:
        if g.policy == "always":
            continue
        bases: set[str] = set()
        for r in g.complete:
            v = g.values[r.name]
            ref, basis = v.get("flops_saving_pct"), "FLOPs"
            if not _finite(ref):
                ref, basis = v.get("theoretical_saving_pct"), "theoretical"
            for q in names:
                m = v.get(f"{q}_saving_pct")
                ok = _finite(m) and _finite(ref)
                v[f"{q}_vs_compute_pts"] = m - ref if ok else None  # type: ignore[operator]
                if ok:
                    bases.add(basis)
        compute_stats(g)
        check: dict[str, Any] = {}
        for q in names:
            s = g.stats.get(f"{q}_vs_compute_pts")
            if s is None or s.n == 0:
                continue
            se = s.std / math.sqrt(s.n) if s.n >= 2 else 0.0
            limit = max(tolerance, 2.0 * se)
            check[q] = {"diff_pts": s.mean, "limit_pts": limit, "agrees": abs(s.mean) <= limit}
        runs_off = []
        for r in g.complete:
            c = costs.saving_check(r)
            if c is not None and c.get("agrees") is False:
                runs_off.append(r)
                notes.append(f"{r.name}: energy.json saving check: {c.get('message') or '?'}")
        if not check and not runs_off:
            g.check = None
            continue
        basis_text = "/".join(sorted(bases)) or None
        flagged = [q for q, c in check.items() if not c["agrees"]]
        g.check = {
            "basis": basis_text,
            **check,
            "flag": ", ".join(f"{q} {check[q]['diff_pts']:+.1f} pts" for q in flagged),
            "runs_disagree": len(runs_off),
        }
        for q in flagged:
            c = check[q]
            notes.append(
                f"{g.setting.label} / {g.label}: measured {q} saving "
                f"{g.mean(f'{q}_saving_pct'):.1f}% differs from the {basis_text}-based saving by "
                f"{c['diff_pts']:+.1f} pts, beyond the noise (±{c['limit_pts']:.1f} pts)"
            )
    return notes


def regret(
    groups: list[Group], tolerance: float
) -> tuple[dict[Setting, dict[str, Any]], list[dict[str, Any]]]:
    """Per setting, the best fixed cut and the oracle cut; per detector group, its regret
    against them and against always-k, and its matched k = 1 verdict."""
    oracles: dict[Setting, dict[str, Any]] = {}
    rows: list[dict[str, Any]] = []
    for setting in dict.fromkeys(g.setting for g in groups):
        sgroups = [g for g in groups if g.setting == setting]
        fixed = [
            g
            for g in sgroups
            if g.policy == "fixed" and _finite(g.mean("acc")) and g.cut_at is not None
        ]
        detectors = [g for g in sgroups if g.policy == "detector" and g.complete]
        if not fixed and not detectors:
            continue
        base = next((g for g in sgroups if g.policy == "always" and _finite(g.mean("acc"))), None)
        info: dict[str, Any] = {
            "model": setting.model,
            "tolerance_pts": tolerance,
            "baseline": None if base is None else base.label,
            "baseline_acc": None if base is None else base.mean("acc"),
            "best_fixed": None,
            "best_fixed_cut": None,
            "best_fixed_acc": None,
            "oracle": None,
            "oracle_cut": None,
            "oracle_acc": None,
            "oracle_time_s": None,
            "oracle_energy_kwh": None,
            "oracle_reason": None,
            "oracle_saving_pct": 0.0 if base is not None else None,
            "dataset": setting.dataset,
            "budget": setting.budget,
        }
        fixed.sort(key=lambda g: (g.cut_at, g.label))
        best = None
        for g in fixed:  # by cut: strict > keeps the earlier cut on ties
            if best is None or g.mean("acc") > best.mean("acc"):
                best = g
        oracle = None
        if best is not None:
            info.update(best_fixed=best.label, best_fixed_cut=best.cut_at)
            info["best_fixed_acc"] = best.mean("acc")
        if base is None:
            info["oracle_reason"] = "no always-k baseline"
        elif not fixed:
            info["oracle_reason"] = "no fixed cuts"
        else:
            ok = [g for g in fixed if 100 * (g.mean("acc") - base.mean("acc")) >= -tolerance - _EPS]
            if ok:
                oracle = ok[0]
                info.update(oracle=oracle.label, oracle_cut=oracle.cut_at)
                info["oracle_acc"] = oracle.mean("acc")
                info["oracle_saving_pct"] = _nan_none(oracle.mean("flops_saving_pct"))
                info["oracle_time_s"] = _nan_none(oracle.mean("time_s"))
                info["oracle_energy_kwh"] = _nan_none(oracle.mean("energy_kwh"))
            else:
                info["oracle_reason"] = f"no fixed cut within {tolerance:g} pts of {base.label}"
        oracles[setting] = info
        for d in detectors:
            rows.append(_regret_row(d, info, best, oracle, base))
    return oracles, rows


def _common(cuts: list[int | None]) -> int | None:
    """The cut epoch every seed shares, else ``None`` (cut epochs are never averaged)."""
    return cuts[0] if cuts and cuts[0] is not None and len(set(cuts)) == 1 else None


def _regret_row(
    d: Group, info: dict[str, Any], best: Group | None, oracle: Group | None, base: Group | None
) -> dict[str, Any]:
    acc, cuts = d.mean("acc"), d.cut_epochs
    row: dict[str, Any] = {
        "model": d.model,
        "label": d.label,
        "n": len(d.complete),
        "n_cut": d.n_cut,
        "acc": _nan_none(acc),
        "cut_epoch": _common(cuts),
        "cut_epochs": per_seed(cuts),
        "time_s": _nan_none(d.mean("time_s")),
        "energy_kwh": _nan_none(d.mean("energy_kwh")),
        "best_fixed": info["best_fixed"],
        "best_fixed_acc": info["best_fixed_acc"],
        "accuracy_regret_pts": None,
        "oracle": info["oracle"],
        "oracle_cut": info["oracle_cut"],
        "cut_delta_epochs": None,
        "cut_deltas": None,
        "acc_vs_oracle_pts": None,
        "time_vs_oracle_pct": None,
        "energy_vs_oracle_pct": None,
        "dataset": d.dataset,
        "budget": d.budget,
        "accuracy_regret_vs_always_pts": None,
        "flops_saving_pct": _nan_none(d.mean("flops_saving_pct")),
        "oracle_saving_pct": info.get("oracle_saving_pct"),
        "oracle_share_pct": None,
        "acc_vs_matched_pts": None if d.matched is None else d.matched["acc_vs_matched_pts"],
        "beats_matched": None if d.matched is None else d.matched["verdict"],
    }
    if best is not None and _finite(acc):
        row["accuracy_regret_pts"] = 100.0 * (best.mean("acc") - acc)
    if base is not None and _finite(acc):
        row["accuracy_regret_vs_always_pts"] = 100.0 * (base.mean("acc") - acc)
    saved, oracle_saved = row["flops_saving_pct"], row["oracle_saving_pct"]
    if _finite(saved) and _finite(oracle_saved) and oracle_saved > 0:
        row["oracle_share_pct"] = 100.0 * saved / oracle_saved
    if oracle is not None:
        oracle_cut = oracle.cut_at
        assert oracle_cut is not None  # the oracle is one of `fixed`: it has a cut
        deltas = [None if c is None else round(c - oracle_cut) for c in cuts]
        if any(c is not None for c in deltas):
            row["cut_deltas"] = per_seed(deltas, "+d")
            common = _common(cuts)
            row["cut_delta_epochs"] = None if common is None else common - oracle_cut
        if _finite(acc):
            row["acc_vs_oracle_pts"] = 100.0 * (acc - oracle.mean("acc"))
        for q, out_key in (
            ("time_s", "time_vs_oracle_pct"),
            ("energy_kwh", "energy_vs_oracle_pct"),
        ):
            mine, theirs = d.mean(q), oracle.mean(q)
            if _finite(mine) and _finite(theirs) and theirs > 0:
                row[out_key] = 100.0 * (mine / theirs - 1.0)
    return row


def pooled_matched(groups: list[Group]) -> list[Group]:
    """Per detector group with matched k = 1 runs, one group ``matched k=1 (<detector>)`` of
    the matched run of each of its seeds (same setting, seed and cut epoch; the seeds' cut
    epochs may differ): the detector's matched row, one per policy, instead of one row per cut
    epoch. Values (savings included) are the matched runs' own."""
    out: list[Group] = []
    for d in groups:
        if d.policy != "detector" or not d.complete:
            continue
        matched = [g for g in groups if g.policy == "matched" and g.setting == d.setting]
        by = {(r.seed, r.cut_at): (g, r) for g in matched for r in g.complete}
        chosen = []
        for r in d.complete:
            cut = r.cut_at if r.cut_at is not None else r.cut_epoch
            if cut is not None and (r.seed, cut) in by:
                chosen.append(by[(r.seed, cut)])
        if not chosen:
            continue
        p = Group(
            setting=d.setting,
            label=f"matched k=1 ({d.label})",
            policy="matched",
            runs=sorted((r for _, r in chosen), key=_run_sort_key),
            baseline=chosen[0][0].baseline,
        )
        p.values = {r.name: dict(g.values[r.name]) for g, r in chosen}
        compute_stats(p)
        p.check = chosen[0][0].check if len({id(g) for g, _ in chosen}) == 1 else None
        out.append(p)
    return out
