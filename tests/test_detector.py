"""StabilityDetector on scripted sequences."""

import math

import pytest

from critical.detector import CriticalPeriodEvent, StabilityDetector


def run(det, seq, name="m"):
    for e, v in enumerate(seq):
        ev = det.update(e, {name: v})
        if ev is not None:
            return ev
    return None


def test_fires_after_patience_stable_epochs():
    det = StabilityDetector("m", threshold=0.1, patience=2)
    ev = run(det, [0.0, 1.0, 1.5, 1.55, 1.6, 1.62, 1.63])
    # changes: 1.0, 0.5, 0.05 (stable 1), 0.05 (stable 2) -> fires at epoch 4
    assert ev.epoch == 4 and ev.reason == "stable" and ev.metrics == ("m",)
    assert ev.values["m"] == pytest.approx(1.6) and ev.changes["m"] == pytest.approx(0.05)
    assert det.fired and det.update(5, {"m": 9.0}) is None  # fires once
    assert len(det.history) == 6


def test_patience_resets_on_a_large_change():
    det = StabilityDetector("m", threshold=0.1, patience=2)
    ev = run(det, [1.0, 1.01, 2.0, 2.01, 2.02])
    assert ev.epoch == 4


def test_relative_mode():
    det = StabilityDetector("m", threshold=0.05, mode="relative", patience=1)
    # 100 -> 104: 4% (stable); absolute change 4 would not be stable at 0.05
    assert run(det, [50.0, 100.0, 104.0]).epoch == 2


def test_relative_mode_near_zero_is_guarded():
    det = StabilityDetector("m", threshold=0.1, mode="relative", patience=1)
    assert run(det, [0.0, 0.0]).epoch == 1  # 0/eps = 0: no division by zero
    det = StabilityDetector("m", threshold=0.1, mode="relative", patience=1)
    assert run(det, [0.0, 1e-3, -1e-3, 2e-3]) is None  # relative swings near zero never settle


def test_min_epochs_and_deadline():
    det = StabilityDetector("m", threshold=0.1, patience=1, min_epochs=4)
    assert run(det, [1.0, 1.0, 1.0, 1.0, 1.0]).epoch == 3  # 4 completed epochs
    det = StabilityDetector("m", threshold=0.1, patience=1, deadline=3)
    ev = run(det, [0.0, 1.0, 2.0, 3.0, 4.0])
    assert ev.epoch == 2 and ev.reason == "deadline"


def test_combine_any_and_all():
    seqs = {"a": [0.0, 1.0, 1.0, 1.0, 1.0, 1.0], "b": [0.0, 1.0, 2.0, 3.0, 3.0, 3.0]}
    for combine, epoch in (("any", 2), ("all", 4)):
        det = StabilityDetector(["a", "b"], threshold=0.1, patience=1, combine=combine)
        ev = next(
            e for e in (det.update(i, {k: v[i] for k, v in seqs.items()}) for i in range(6)) if e
        )
        assert ev.epoch == epoch
    det = StabilityDetector(["a", "b"], threshold={"a": 0.01, "b": 2.0}, patience=1)
    assert det.update(0, {"a": 0, "b": 0}) is None
    assert det.update(1, {"a": 1, "b": 1}).metrics == ("b",)


def test_window_smoothing_tames_noise():
    noisy = [0.5 + (0.1 if e % 2 else -0.1) for e in range(10)]
    assert run(StabilityDetector("m", threshold=0.05, patience=2), noisy) is None
    ev = run(StabilityDetector("m", threshold=0.05, patience=2, window=2), noisy)
    assert ev is not None and ev.epoch == 3


def test_missing_or_nan_values_reset_the_streak():
    det = StabilityDetector("m", threshold=0.1, patience=2)
    assert det.update(0, {"m": 1.0}) is None
    assert det.update(1, {"m": 1.0}) is None
    assert det.update(2, {"m": math.nan}) is None
    assert det.update(3, {}) is None
    assert det.update(4, {"m": 1.0}) is None  # streak restarted
    assert det.update(5, {"m": 1.0}).epoch == 5
    assert all(math.isfinite(v) for h in det.history for v in h["values"].values())


def test_state_roundtrip_continues_identically():
    seq = [0.0, 1.0, 1.5, 1.55, 1.6, 1.62]
    a = StabilityDetector("m", threshold=0.1, patience=2, window=2)
    for e, v in enumerate(seq[:3]):
        a.update(e, {"m": v})
    b = StabilityDetector("m", threshold=0.1, patience=2, window=2)
    b.load_state_dict(a.state_dict())
    out = [[d.update(e, {"m": v}) for e, v in enumerate(seq) if e >= 3] for d in (a, b)]
    assert out[0] == out[1]
    c = StabilityDetector("m", threshold=0.1)
    c.load_state_dict(a.state_dict())
    assert c.event == a.event and isinstance(c.event, CriticalPeriodEvent)
    with pytest.raises(ValueError, match="same metrics"):
        StabilityDetector("other").load_state_dict(a.state_dict())


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(threshold=0.0), "positive"),
        (dict(threshold=-1.0), "positive"),
        (dict(threshold=float("nan")), "positive"),
        (dict(patience=0), "patience"),
        (dict(mode="percent"), r"\['absolute', 'relative'\]"),
        (dict(combine="most"), r"\['any', 'all'\]"),
        (dict(window=0), "window"),
        (dict(min_epochs=5, deadline=3), "deadline"),
        (dict(threshold={"x": 0.1}), "exactly the watched"),
    ],
)
def test_invalid_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        StabilityDetector("m", **kwargs)
    with pytest.raises(ValueError, match="metrics"):
        StabilityDetector([])
