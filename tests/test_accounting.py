"""critical.accounting without codecarbon: the robust counterfactual, FLOPs, the theoretical
saving and the check of measured savings against the compute saving."""

from __future__ import annotations

import pytest

from critical.accounting import (
    QUANTITIES,
    cut_boundary,
    phase_summary,
    saving_check,
    summary_scalars,
    theoretical_saving,
)

FLOPS_PER_SAMPLE = 1e6


def _run(k=3, cut=5, epochs=30, n=100, seconds_per_sample=0.01, overhead_s=0.0, load=None):
    """Per-epoch records of a run cut from k to 1 at `cut`: time and energy proportional to the
    samples (plus a per-epoch overhead), multiplied by `load[e]` in epoch e (other jobs)."""
    load = load or {}
    history = []
    for e in range(epochs):
        kk = k if e < cut else 1
        samples = kk * n
        seconds = (samples * seconds_per_sample + overhead_s) * load.get(e, 1.0)
        history.append(
            {
                "epoch": e,
                "multiplicity": kk,
                "samples": samples,
                "duration_s": seconds,
                "energy_kwh": seconds * 1e-5,  # a constant 36 W
                "co2_kg": seconds * 4e-6,
                "cost": seconds * 1.3e-6,
                "flops": samples * FLOPS_PER_SAMPLE,
            }
        )
    return history


def _summary(history):
    return phase_summary(history, cut_boundary(history))


def test_theoretical_saving_formula():
    # k 3 -> 1 at epoch 5 of 30: 1 - (3*5 + 25) / 90, the README's quick start bound
    assert theoretical_saving(3, 1, 5, 30) == pytest.approx(1 - 40 / 90)
    assert theoretical_saving(4, 2, 10, 20) == pytest.approx(1 - (40 + 20) / 80)
    assert theoretical_saving(3, 1, 0, 10) == pytest.approx(2 / 3)  # k = 1 throughout
    assert theoretical_saving(3, 1, None, 10) == 0.0  # never cut
    assert theoretical_saving(3, 1, 10, 10) == 0.0  # cut at the end of the last epoch
    assert theoretical_saving(3, 1, 12, 10) == 0.0
    assert theoretical_saving(None, 1, 5, 10) is None
    assert theoretical_saving(3, 1, 5, None) is None


def test_flops_are_a_quantity_with_totals_phases_and_saving():
    s = _summary(_run())
    assert "flops" in QUANTITIES
    assert s["total"]["flops"] == pytest.approx((5 * 300 + 25 * 100) * FLOPS_PER_SAMPLE)
    assert s["phases"]["before"]["flops"] == pytest.approx(1500 * FLOPS_PER_SAMPLE)
    assert s["per_sample_before"]["flops"] == pytest.approx(FLOPS_PER_SAMPLE)
    # complete epochs: the FLOPs saving is the theoretical one, and the samples-based one
    assert s["saving_fraction"]["flops"] == pytest.approx(theoretical_saving(3, 1, 5, 30))
    assert s["saving_fraction"]["samples"] == pytest.approx(s["saving_fraction"]["flops"])
    assert s["saving"]["flops"] == pytest.approx(25 * 200 * FLOPS_PER_SAMPLE)
    scalars = summary_scalars({**s, "theoretical_saving": 0.5}, "energy/")
    assert scalars["energy/saving_fraction_flops"] == pytest.approx(1 - 40 / 90)
    assert scalars["energy/before_flops"] == pytest.approx(1500 * FLOPS_PER_SAMPLE)
    assert scalars["energy/theoretical_saving"] == 0.5


def test_the_warm_up_epoch_is_left_out_and_the_median_resists_a_loaded_epoch():
    # epoch 0 pays a 3x warm-up, epoch 3 was slowed 2x by another job
    s = _summary(_run(load={0: 3.0, 3: 2.0}))
    assert s["per_sample_epochs"] == [1, 2, 3, 4]
    assert s["per_sample_before"]["duration_s"] == pytest.approx(0.01)
    # the saved time is then exact: 25 epochs x 200 samples x 0.01 s; the fraction's baseline
    # holds what the pre-cut epochs really cost (9 + 3 + 3 + 6 + 3 s)
    assert s["saving"]["duration_s"] == pytest.approx(50.0)
    assert s["saving_fraction"]["duration_s"] == pytest.approx(50 / (24 + 75))
    # a single pre-cut epoch is used as it is
    one = _summary(_run(cut=1, load={0: 3.0}))
    assert one["per_sample_epochs"] == [0]
    assert one["per_sample_before"]["duration_s"] == pytest.approx(0.03)
    assert one["per_sample_spread"]["duration_s"] is None


def test_a_quiet_run_agrees_with_the_compute_saving():
    check = _summary(_run(load={2: 1.05, 4: 0.97}))["saving_check"]
    assert check["reference"] == "flops" and check["agrees"] is True
    assert check["compute_fraction"] == pytest.approx(1 - 40 / 90)
    assert set(check["checks"]) == {"duration_s", "energy_kwh"}
    assert "agrees" in check["message"] and "55.6%" in check["message"]


def test_a_machine_busy_before_the_cut_is_flagged():
    # the case: another job loads the machine through the whole pre-cut phase, so the
    # counterfactual is priced at the loaded cost and the measured saving exceeds the bound
    busy = {e: 1.8 + 0.02 * (e % 2) for e in range(5)}
    s = _summary(_run(load=busy))
    assert s["saving_fraction"]["duration_s"] > theoretical_saving(3, 1, 5, 30) + 0.1
    check = s["saving_check"]
    assert check["agrees"] is False
    assert not check["checks"]["duration_s"]["agrees"]
    assert not check["checks"]["energy_kwh"]["agrees"]
    assert "exceeds" in check["message"] and "overstated" in check["message"]
    assert check["message"].count("\n") == 0


def test_noise_widens_the_tolerance_and_overhead_shows_as_a_shortfall():
    # noisy pre-cut epochs: the same excess is within the noise
    noisy = {1: 1.0, 2: 1.6, 3: 0.7, 4: 1.3}
    check = _summary(_run(load=noisy))["saving_check"]
    assert check["checks"]["duration_s"]["noise"] > 0.2
    assert check["checks"]["duration_s"]["tolerance"] > 0.05
    # a per-epoch overhead as large as a k=1 epoch's compute: time saves much less than FLOPs
    low = _summary(_run(overhead_s=3.0))["saving_check"]
    assert low["agrees"] is False and "falls short" in low["message"]


def test_without_flops_the_samples_are_the_reference():
    history = _run()
    for h in history:
        h["flops"] = None
    s = _summary(history)
    assert s["saving_fraction"]["flops"] is None and s["total"]["flops"] is None
    check = s["saving_check"]
    assert check["reference"] == "samples"
    assert check["compute_fraction"] == pytest.approx(1 - 40 / 90)
    assert "samples-based" in check["message"]


def test_no_check_without_a_counterfactual():
    s = _summary(_run(cut=30))  # never cut
    assert s["saving"] is None and s["saving_check"] is None
    assert saving_check({"saving_fraction": None}) is None
    # time only (no energy): the check covers what was measured
    history = _run()
    for h in history:
        h["energy_kwh"] = None
    check = _summary(history)["saving_check"]
    assert set(check["checks"]) == {"duration_s"}


def test_a_band_too_wide_cannot_check():
    """Issue 20 item 9: "agrees within the noise (time 48.4% ±125.9%)" checked nothing."""
    wild = {1: 0.3, 2: 3.0, 3: 0.4, 4: 2.5}
    check = _summary(_run(load=wild))["saving_check"]
    assert check["agrees"] is None
    assert check["message"].startswith("cannot check the measured saving")
    assert "too noisy" in check["message"] and "wider than ±25%" in check["message"]
    assert all(c["agrees"] is None and c["tolerance"] > 0.25 for c in check["checks"].values())
