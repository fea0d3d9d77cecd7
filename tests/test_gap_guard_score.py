"""The augmentation-gap guard's replay (experiments/gap_guard/score.py)."""

from __future__ import annotations

from pathlib import Path

from helpers import load_script

ROOT = Path(__file__).resolve().parents[1]
gg = load_script(ROOT / "experiments/gap_guard/score.py", "gap_guard_score")


def rows(gaps):
    return [{"epoch": e, "critical/aug_gap": g} for e, g in enumerate(gaps)]


def test_the_guard_waits_for_a_small_trailing_mean_of_the_gap():
    gaps = [0.4, 0.3, 0.2, 0.1, 0.05, 0.0, 0.0, 0.0]
    # the base rule fires after epoch 1 (cut 2); the 3-epoch mean first falls to 0.1 at epoch 4
    assert gg.guarded_cut(rows(gaps), 8, base_cut=2, tau=0.12) == 5
    assert gg.guarded_cut(rows(gaps), 8, base_cut=2, tau=1.0) == 2  # nothing held back
    assert gg.guarded_cut(rows(gaps), 8, base_cut=8, tau=1.0) == 8  # the base never fired
    assert gg.guarded_cut(rows([0.5] * 8), 8, base_cut=2, tau=0.1) == 8  # held to the end


def test_missing_or_non_finite_gaps_are_skipped():
    gaps = [0.5, float("nan"), None, 0.0, 0.0]
    assert gg.guarded_cut(rows(gaps), 5, base_cut=2, tau=0.1) == 4  # epoch 3: mean of [0.0]
    assert gg.guarded_cut(rows([None] * 5), 5, base_cut=2, tau=0.1) == 5  # no reading: held


def test_a_guarded_rule_composes_with_its_base():
    rule = gg.gap_rule(lambda rows, epochs: 2, tau=0.12)
    assert rule(rows([0.4, 0.3, 0.2, 0.1, 0.05, 0.0]), 6) == 5
