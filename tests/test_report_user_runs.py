"""`critical report` on a folder of a user's own runs (issue 20, items 5 and 8)."""

from __future__ import annotations

import json

from report_fixtures import MODEL, write_run

from critical.report import load_runs, summarize, write_report
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
