"""StabilityDetector on scripted sequences."""

import math

import pytest
from helpers import v02_detector, v02_replay

from critical.detector import DEFAULTS, CriticalPeriodEvent


def StabilityDetector_(*args, **kwargs):
    kwargs.setdefault("mode", "absolute")
    kwargs.setdefault("min_epochs", 0)
    kwargs.setdefault("guard_learning", False)
    kwargs.setdefault("guard_lr", False)
    kwargs.setdefault("guard_finite", False)
    return v02_detector(*args, **kwargs)


def run(det, seq, name="m"):
    for e, v in enumerate(seq):
        ev = det.update(e, {name: v})
        if ev is not None:
            return ev
    return None


def test_fires_after_patience_stable_epochs():
    det = StabilityDetector_("m", threshold=0.1, patience=2)
    ev = run(det, [0.0, 1.0, 1.5, 1.55, 1.6, 1.62, 1.63])
    # changes: 1.0, 0.5, 0.05 (stable 1), 0.05 (stable 2) -> fires at epoch 4
    assert ev.epoch == 4 and ev.reason == "stable" and ev.metrics == ("m",)
    assert ev.values["m"] == pytest.approx(1.6) and ev.changes["m"] == pytest.approx(0.05)
    assert det.fired and det.update(5, {"m": 9.0}) is None  # fires once
    assert len(det.history) == 6


def test_patience_resets_on_a_large_change():
    det = StabilityDetector_("m", threshold=0.1, patience=2)
    ev = run(det, [1.0, 1.01, 2.0, 2.01, 2.02])
    assert ev.epoch == 4


def test_relative_mode():
    det = StabilityDetector_("m", threshold=0.05, mode="relative", patience=1)
    # 100 -> 104: 4% (stable); absolute change 4 would not be stable at 0.05
    assert run(det, [50.0, 100.0, 104.0]).epoch == 2


def test_relative_mode_near_zero_is_guarded():
    det = StabilityDetector_("m", threshold=0.1, mode="relative", patience=1)
    assert run(det, [0.0, 0.0]).epoch == 1  # 0/eps = 0: no division by zero
    det = StabilityDetector_("m", threshold=0.1, mode="relative", patience=1)
    assert run(det, [0.0, 1e-3, -1e-3, 2e-3]) is None  # relative swings near zero never settle


def test_min_epochs_and_deadline():
    det = StabilityDetector_("m", threshold=0.1, patience=1, min_epochs=4)
    assert run(det, [1.0, 1.0, 1.0, 1.0, 1.0]).epoch == 3  # 4 completed epochs
    det = StabilityDetector_("m", threshold=0.1, patience=1, deadline=3)
    ev = run(det, [0.0, 1.0, 2.0, 3.0, 4.0])
    assert ev.epoch == 2 and ev.reason == "deadline"


def test_combine_any_and_all():
    seqs = {"a": [0.0, 1.0, 1.0, 1.0, 1.0, 1.0], "b": [0.0, 1.0, 2.0, 3.0, 3.0, 3.0]}
    for combine, epoch in (("any", 2), ("all", 4)):
        det = StabilityDetector_(["a", "b"], threshold=0.1, patience=1, combine=combine)
        ev = next(
            e for e in (det.update(i, {k: v[i] for k, v in seqs.items()}) for i in range(6)) if e
        )
        assert ev.epoch == epoch
    det = StabilityDetector_(["a", "b"], threshold={"a": 0.01, "b": 2.0}, patience=1)
    assert det.update(0, {"a": 0, "b": 0}) is None
    assert det.update(1, {"a": 1, "b": 1}).metrics == ("b",)


def test_window_smoothing_tames_noise():
    noisy = [0.5 + (0.1 if e % 2 else -0.1) for e in range(10)]
    assert run(StabilityDetector_("m", threshold=0.05, patience=2), noisy) is None
    ev = run(StabilityDetector_("m", threshold=0.05, patience=2, window=2), noisy)
    assert ev is not None and ev.epoch == 3


def test_missing_or_nan_values_reset_the_streak():
    det = StabilityDetector_("m", threshold=0.1, patience=2)
    assert det.update(0, {"m": 1.0}) is None
    assert det.update(1, {"m": 1.0}) is None
    assert det.update(2, {"m": math.nan}) is None
    assert det.update(3, {}) is None
    assert det.update(4, {"m": 1.0}) is None  # streak restarted
    assert det.update(5, {"m": 1.0}).epoch == 5
    assert all(math.isfinite(v) for h in det.history for v in h["values"].values())


def test_state_roundtrip_continues_identically():
    seq = [0.0, 1.0, 1.5, 1.55, 1.6, 1.62]
    a = StabilityDetector_("m", threshold=0.1, patience=2, window=2)
    for e, v in enumerate(seq[:3]):
        a.update(e, {"m": v})
    b = StabilityDetector_("m", threshold=0.1, patience=2, window=2)
    b.load_state_dict(a.state_dict())
    out = [[d.update(e, {"m": v}) for e, v in enumerate(seq) if e >= 3] for d in (a, b)]
    assert out[0] == out[1]
    c = StabilityDetector_("m", threshold=0.1)
    c.load_state_dict(a.state_dict())
    assert c.event == a.event and isinstance(c.event, CriticalPeriodEvent)
    with pytest.raises(ValueError, match="same metrics"):
        v02_detector("other").load_state_dict(a.state_dict())


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(threshold=0.0), "> 0"),
        (dict(threshold=-1.0), "> 0"),
        (dict(threshold=float("nan")), "> 0"),
        (dict(patience=0), "patience"),
        (dict(mode="percent"), r"\['scaled', 'absolute', 'relative', 'budget'\]"),
        (dict(combine="most"), r"\['any', 'all'\]"),
        (dict(window=0), "window"),
        (dict(min_epochs=5, deadline=3), "deadline"),
        (dict(threshold={"x": 0.1}), "exactly the watched"),
    ],
)
def test_invalid_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        StabilityDetector_("m", **kwargs)
    with pytest.raises(ValueError, match="metrics"):
        StabilityDetector_([])


# ------------------------------------------------------------------ the scaled rule (default)


def _scaled(**kwargs):
    kwargs.setdefault("guard_learning", False)
    kwargs.setdefault("guard_lr", False)
    return v02_detector("m", **kwargs)


def test_defaults_are_the_scaled_rule_with_every_guard_on():
    det = v02_detector("m")
    assert det.mode == "scaled" and det.guard_finite and det.guard_learning and det.guard_lr
    assert det.settings()["threshold"] == DEFAULTS["threshold"]


def test_scaled_rule_fires_at_the_knee_of_a_saturating_curve():
    knee = [1 - 0.5**e for e in range(12)]  # halves its remaining distance every epoch
    assert run(_scaled(), knee).epoch == 5


def test_scaled_rule_never_calls_a_straight_line_flat():
    """A first-epoch jump then a steady drift (layer rotation at a large learning rate) is not
    a flat metric, however small the drift is in absolute terms."""
    jump_then_drift = [0.686 + 0.0013 * e for e in range(30)]
    assert run(_scaled(), jump_then_drift) is None
    assert run(StabilityDetector_("m", threshold=0.01), jump_then_drift).epoch == 2  # the old rule


@pytest.mark.parametrize("scale", [1e-3, 1.0, 250.0])
def test_scaled_rule_ignores_the_metric_s_units(scale):
    curve = [scale * (3 - 2 * 0.6**e) for e in range(20)]
    assert run(_scaled(), curve).epoch == run(_scaled(), [3 - 2 * 0.6**e for e in range(20)]).epoch


# ------------------------------------------------------------------ guards


def test_a_diverged_run_is_never_stable_nor_cut_by_the_deadline():
    det = v02_detector("m", deadline=5, guard_learning=False)
    flat = [1.0] * 10
    for e, v in enumerate(flat):
        assert det.update(e, {"m": v}, loss=math.nan if e >= 1 else 2.0) is None
    assert det.diverged == {"epoch": 1, "cause": "training loss is nan"}
    assert all("finite" in h["blocked"] for h in det.history[1:])
    det = v02_detector("m", guard_learning=False)
    assert run(det, [1.0, 1.0, math.inf, 1.0, 1.0, 1.0, 1.0]) is None
    assert det.diverged["epoch"] == 2
    det = v02_detector("m", guard_learning=False)
    det.update(0, {"m": 1.0}, finite=False, cause="the weights are not finite")
    assert det.diverged == {"epoch": 0, "cause": "the weights are not finite"}


def test_still_learning_guard_blocks_while_the_loss_falls_steadily():
    """The failure the guard exists for: a metric flat from epoch 1 while the loss still falls
    steadily (about 0.09 per epoch after a first-epoch drop from 6.33)."""
    steady = [6.33, 2.16, 2.07, 1.98, 1.89, 1.80, 1.71, 1.62, 1.53, 1.44, 1.35, 1.26]
    det = v02_detector("m", mode="absolute", threshold=0.01, guard_lr=False)
    for e, lv in enumerate(steady):
        assert det.update(e, {"m": 0.7}, loss=lv) is None
    assert all("learning" in h["blocked"] for h in det.history)


def test_still_learning_guard_lets_a_bent_loss_through_even_if_it_creeps_to_zero():
    bent = [2.0] + [1.5 * 0.6**e + 0.05 * 0.97**e for e in range(15)]  # fast, then creeping
    det = v02_detector("m", mode="absolute", threshold=0.01, guard_lr=False)
    fired = None
    for e, lv in enumerate(bent):
        fired = fired or det.update(e, {"m": 0.7}, loss=lv)
    open_from = next(h["epoch"] for h in det.history if "learning" not in h["blocked"])
    assert open_from == 7 and fired is not None and fired.epoch == 8  # patience 2
    with pytest.raises(ValueError, match="loss_threshold"):
        v02_detector("m", loss_threshold=0)


def test_lr_guard_blocks_warmup_and_the_epochs_after_a_step_drop():
    lrs = [0.01, 0.05, 0.1, 0.1, 0.1, 0.1, 0.01, 0.01, 0.01, 0.01]
    det = v02_detector("m", mode="absolute", threshold=0.5, min_epochs=0, guard_learning=False)
    blocked = []
    for e, lr in enumerate(lrs):
        det.update(e, {"m": 1.0}, lr=lr)
        blocked.append("lr" in det.history[-1]["blocked"])
        det.event = None  # keep watching every epoch
    assert blocked == [False, True, True, False, False, False, True, True, False, False]


def test_replay_on_logged_rows_matches_the_live_detector():
    rows = [
        {
            "epoch": e,
            "critical/m": 1 - 0.7**e,
            "critical/train_loss": 1 + 0.8**e,
            "critical/lr": 0.1,
        }
        for e in range(30)
    ]
    live = v02_detector("m")
    event = None
    for r in rows:
        event = event or live.update(
            r["epoch"], {"m": r["critical/m"]}, loss=r["critical/train_loss"], lr=0.1
        )
    replayed = v02_replay(rows, "critical/m")
    assert replayed.event == event and event is not None
    assert v02_replay(rows, "m", threshold=1e-6).event is None


def test_state_roundtrip_keeps_the_guards_state():
    a = v02_detector("m")
    for e in range(4):
        a.update(e, {"m": e}, loss=1.0 / (e + 1), lr=0.1)
    b = v02_detector("m")
    b.load_state_dict(a.state_dict())
    for e in range(4, 20):
        x = a.update(e, {"m": 4}, loss=0.2, lr=0.1)
        y = b.update(e, {"m": 4}, loss=0.2, lr=0.1)
        assert x == y
    assert a.event is not None and a.history == b.history
