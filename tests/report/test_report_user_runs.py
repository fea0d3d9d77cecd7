"""`critical report` on a folder of a user's own runs (issue 20, items 5 and 8; issue 25, item 2)."""

from __future__ import annotations

import json

import pytest
from report_fixtures import MODEL, write_run

from critical.report import load_runs, summarize, to_latex, to_markdown, write_report
from critical.report.cli import main as report_main


def test_a_malformed_config_is_listed_and_the_rest_reported(tmp_path, capsys):
    write_run(tmp_path, "good", tags=None, acc=0.8, time_s=10.0)
    bad = write_run(tmp_path, "bad", tags=None, acc=0.7, time_s=10.0)
    config = json.loads((bad / "config.json").read_text())
    config["callbacks"] = 3
    (bad / "config.json").write_text(json.dumps(config))
    runs = {r.name: r for r in load_runs(tmp_path)}
    assert runs["bad"].status == "incomplete"
    assert any("'callbacks' is a int, not a list" in p for p in runs["bad"].problems)
    assert runs["good"].status == "complete"
    assert report_main([str(tmp_path), "--no-plots"]) == 0
    out = capsys.readouterr().out
    assert "good" in out or "always-k3" in out
    assert "callbacks" in out  # the unreadable run is listed with the reason


def _with_cutoff(run_dir, policy, **args):
    config = json.loads((run_dir / "config.json").read_text())
    config["callbacks"].append(
        {"class": "critical.callbacks.augmentation_cutoff.AugmentationCutoff",
         "init_args": {"policy": policy, **args}}
    )  # fmt: skip
    (run_dir / "config.json").write_text(json.dumps(config))


def test_user_runs_policies_and_cuts_are_inferred(tmp_path, monkeypatch):
    # the user's own runs, without sweep tags: named as they like
    _with_cutoff(write_run(tmp_path, "baseline", tags=None, acc=0.80, time_s=30.0), "never")
    _with_cutoff(
        write_run(tmp_path, "early", tags=None, acc=0.78, time_s=20.0, cut_epoch=2), "fixed",
        epoch=2,
    )  # fmt: skip
    _with_cutoff(
        write_run(tmp_path, "late", tags=None, acc=0.79, time_s=25.0, cut_epoch=4), "fixed",
        fraction=0.67,
    )  # fmt: skip
    write_run(tmp_path, "crashed", tags=None, acc=0.5, time_s=5.0, epochs=2, exception="boom")
    s = summarize(load_runs(tmp_path))
    labels = {g.label for g in s.groups}
    assert {"always-k3", "fixed@2", "fixed@4"} <= labels  # not the directory names
    assert s.group(MODEL, "fixed@2").baseline == "always-k3"
    assert s.group(MODEL, "fixed@2").stats["acc_delta_pts"].mean < 0
    # the accuracy-against-cut plot finds the fixed cuts
    import matplotlib

    matplotlib.use("Agg")
    report = write_report(s, tmp_path / "out")
    names = {p.name for p in report.files}
    assert any(n.startswith("accuracy_vs_cut") for n in names), report.messages
    assert not any("no fixed cuts or detector cuts" in m for m in report.messages)


# ----------------------------------------------------------------------------------------------
# issue 25, item 2: a user's runs, seeded, with trainer.test after the fit
# ----------------------------------------------------------------------------------------------


def _user_run(root, name, seed, policy, *, test_acc, cut_epoch=None, **cutoff):
    """A user's run (no tags, no model or data set hparams): its seed as seed_everything left
    it, a CriticalPeriod, an AugmentationCutoff, and trainer.test after the fit."""
    path = write_run(
        root, name, tags=None, acc=0.9, time_s=30.0 if cut_epoch is None else 20.0,
        cut_epoch=cut_epoch, model=None, dataset=None,
    )  # fmt: skip
    config = json.loads((path / "config.json").read_text())
    config["seed"] = seed
    config["callbacks"].append(
        {"class": "critical.callbacks.critical_period.CriticalPeriod",
         "init_args": {"monitor": ["val/loss"]}}
    )  # fmt: skip
    (path / "config.json").write_text(json.dumps(config))
    _with_cutoff(path, policy, **cutoff)
    evaluations = [{"stage": "test", "epoch": 5, "metrics": {"test_acc": test_acc}}]
    (path / "evaluations.json").write_text(json.dumps(evaluations))
    return path


def _user_sweep(root):
    for seed, acc in ((0, 0.80), (1, 0.82)):
        _user_run(root, f"always-{seed}", seed, "never", test_acc=acc)
        _user_run(root, f"fixed-{seed}", seed, "fixed", test_acc=acc - 0.002, cut_epoch=2,
                  epoch=2)  # fmt: skip
    _user_run(root, "det-0", 0, "detector", test_acc=0.79, cut_epoch=5)
    _user_run(root, "det-1", 1, "detector", test_acc=0.81, cut_epoch=2)
    return root


def test_user_runs_seed_and_class_names(tmp_path):
    runs = {r.name: r for r in load_runs(_user_sweep(tmp_path))}
    assert runs["det-1"].seed == 1 and runs["always-0"].seed == 0
    assert runs["det-1"].setting.label == "TinyModule on TinyDataModule, 6 epochs"


def test_test_acc_from_evaluations_gives_delta_and_oracle(tmp_path, capsys):
    s = summarize(load_runs(_user_sweep(tmp_path)), accuracy_key="test_acc")
    model = "TinyModule"
    assert s.group(model, "always-k3").stats["acc"].mean == pytest.approx(0.81)
    fixed = s.group(model, "fixed@2")
    assert fixed.baseline == "always-k3"
    assert fixed.stats["acc_delta_pts"].mean == pytest.approx(-0.2)  # per seed: -0.2, -0.2
    (oracle,) = s.oracles.values()
    assert oracle["oracle"] == "fixed@2" and oracle["oracle_reason"] is None
    assert not any("no 'test_acc' accuracy" in n for n in s.notes)
    assert any("evaluations.json (trainer.test after the fit)" in n for n in s.notes)
    assert report_main([str(tmp_path), "--accuracy-key", "test_acc", "--no-plots"]) == 0
    out = capsys.readouterr().out
    assert "oracle cut **fixed@2**" in out and "no oracle cut" not in out
    assert "no 'test_acc' accuracy" not in out


def test_regret_table_shows_cut_epochs_per_seed(tmp_path):
    s = summarize(load_runs(_user_sweep(tmp_path)), accuracy_key="test_acc")
    (row,) = s.regret
    assert row["label"] == "detector:val/loss" and row["n_cut"] == 2
    # seed 0 cut at 5, seed 1 at 2: never averaged into 3.5
    assert row["cut_epochs"] == "5, 2" and row["cut_epoch"] is None
    assert row["cut_deltas"] == "+3, +0"  # against the oracle's cut at 2
    regret = to_markdown(s).split("each detector against the best fixed cut")[1]
    assert "| detector:val/loss | 2/2 | 5, 2 | 80.00 |" in regret
    assert "3.5" not in regret
    assert "5, 2" in to_latex(s)


def test_an_uncut_run_is_plotted_with_where_the_detector_would_have_cut(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    from critical.report.run_plot import detector_verdict, run_figure

    path = write_run(tmp_path, "always", tags=None, acc=0.9, time_s=30.0, model=None)
    rows = json.loads((path / "metrics.json").read_text())
    for r in rows:  # the validation loss flattens after epoch 2
        r["val_loss"] = [2.0, 1.0, 0.6, 0.59, 0.59, 0.59][r["epoch"]]
    (path / "metrics.json").write_text(json.dumps(rows))
    config = json.loads((path / "config.json").read_text())
    rule = {"monitor": ["val/loss"], "mode": "absolute", "threshold": 0.05, "patience": 1,
            "window": 1, "min_epochs": 1, "guard_learning": False, "guard_lr": False}  # fmt: skip
    config["callbacks"].append({"class": "CriticalPeriod", "init_args": rule})
    (path / "config.json").write_text(json.dumps(config))
    _with_cutoff(path, "never")
    run = load_runs(tmp_path)[0]
    assert run.cut_epoch is None
    verdict = detector_verdict(run)
    assert verdict == 3  # replayed on the rows with the run's own settings
    fig = run_figure(run)
    titles = [ax.get_title() for ax in fig.axes]
    assert "val_loss (watched by the detector)" in titles
    marks = [
        ln
        for ax in fig.axes
        for ln in ax.get_lines()
        if ln.get_label() == f"detector would have cut (after epoch {verdict})"
    ]
    assert marks and all(list(ln.get_xdata()) == [verdict + 0.5] * 2 for ln in marks)
