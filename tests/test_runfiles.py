"""critical.runfiles: one definition of a run's files, its completeness and its cut epoch."""

from __future__ import annotations

import json

import pytest

from critical.accounting import cut_boundary, phase_summary
from critical.runfiles import (
    configured_callbacks,
    cut_epoch,
    cut_from_multiplicities,
    read_rows,
    run_status,
)


def _write_run(path, *, epochs=3, max_epochs=3, callbacks=(), files=(), exception=False):
    path.mkdir(parents=True)
    config = {"trainer": {"max_epochs": max_epochs}, "callbacks": list(callbacks)}
    (path / "config.json").write_text(json.dumps(config))
    rows = [{"epoch": e, "multiplicity": 3 if e < 2 else 1} for e in range(epochs)]
    (path / "metrics.json").write_text(json.dumps(rows))
    for name in files:
        (path / name).write_text("{}")
    if exception:
        (path / "exception.txt").write_text("x\nRuntimeError: boom\n")
    return path


def _cb(name, **init_args):
    return {"class": f"critical.callbacks.{name}", "init_args": init_args}


def test_a_run_is_complete_with_whatever_callbacks_it_had(tmp_path):
    # no energy and no robustness callback: nothing more to expect
    assert run_status(_write_run(tmp_path / "bare")).complete
    # robustness switched off: no robustness.json expected
    run = _write_run(
        tmp_path / "rob_never",
        callbacks=[_cb("EnergyTracker"), _cb("RobustnessEvaluator", when="never")],
        files=["energy.json"],
    )
    assert run_status(run).complete
    # robustness at fit end, file missing: incomplete, and it says why
    run = _write_run(
        tmp_path / "rob_missing",
        callbacks=[_cb("EnergyTracker"), _cb("RobustnessEvaluator", when="fit_end")],
        files=["energy.json"],
    )
    st = run_status(run)
    assert st.status == "incomplete" and st.problems == ["no robustness.json"]


def test_old_runs_with_callback_reprs_are_understood(tmp_path):
    config = {
        "callbacks": [
            "EnergyTracker(country_iso_code='USA')",
            "RobustnessEvaluator(when='never', x=1)",
        ]
    }
    assert configured_callbacks(config) == {
        "EnergyTracker": {},
        "RobustnessEvaluator": {"when": "never"},
    }


@pytest.mark.parametrize(
    ("kwargs", "status", "problem"),
    [
        ({"epochs": 2, "max_epochs": 3}, "incomplete", "2/3 epochs"),
        ({"exception": True}, "failed", None),
        ({"epochs": 0}, "incomplete", "no metric rows"),
    ],
)
def test_unfinished_runs(tmp_path, kwargs, status, problem):
    st = run_status(_write_run(tmp_path / "r", **kwargs))
    assert st.status == status
    assert problem is None or problem in st.problems
    assert run_status(tmp_path / "absent").status == "missing"


def test_cut_epoch_sources_in_order(tmp_path):
    rows = read_rows(_write_run(tmp_path / "r"))
    assert [r["multiplicity"] for r in rows] == [3.0, 3.0, 1.0]
    assert cut_epoch({"fired": True, "cut_epoch": 1}, None, rows) == 1  # the cut event first
    assert cut_epoch(None, {"cut": {"cut_epoch": 5}}, rows) == 5  # then energy.json
    assert cut_epoch({"fired": False}, None, rows) == 2  # then the multiplicity column
    assert cut_epoch(None, None, [{"epoch": 0, "multiplicity": 3}]) is None
    assert cut_from_multiplicities([(0, None), (1, 3), (2, 3)]) is None


def test_energy_accounting_without_codecarbon():
    history = [
        {
            "epoch": e,
            "multiplicity": k,
            "samples": 100 * k,
            "duration_s": 1.0 * k,
            "energy_kwh": 0.5 * k,
        }
        for e, k in enumerate([3, 3, 1, 1])
    ]
    boundary = cut_boundary(history)
    assert boundary["cut_epoch"] == 2 and boundary["multiplicity_before"] == 3
    s = phase_summary(history, boundary)
    # the two k=1 epochs would have cost as much as the two k=3 epochs
    assert s["counterfactual_after"]["samples"] == pytest.approx(600)
    assert s["saving"]["duration_s"] == pytest.approx(4.0)
    assert s["saving_fraction"]["energy_kwh"] == pytest.approx(4.0 / 12.0)
    assert s["saving"]["co2_kg"] is None  # not measured: not invented
    # an explicit cut that has not happened yet: everything is "before"
    s = phase_summary(history, cut_boundary(history, {"cut_epoch": None}))
    assert s["phases"]["after"]["epochs"] == 0 and s["saving"] is None
