"""critical.report: loading run directories, statistics, savings, regret, writers and plots."""

from __future__ import annotations

import csv
import json
import math
import shutil

import pytest
from report_fixtures import (
    DATASET,
    DETECTOR,
    MAX_EPOCHS,
    MODEL,
    make_fake_sweep,
    run_name,
    write_run,
)

from critical.report import (
    Setting,
    Stat,
    latex_escape,
    load_run,
    load_runs,
    main,
    pareto_front,
    plot_run,
    summarize,
    to_latex,
    to_markdown,
    write_report,
)

SQRT2 = math.sqrt(2.0)
SETTING = Setting(DATASET, MODEL, MAX_EPOCHS)


@pytest.fixture(scope="module")
def sweep_dir(tmp_path_factory):
    return make_fake_sweep(tmp_path_factory.mktemp("sweep"))


@pytest.fixture(scope="module")
def summary(sweep_dir):
    return summarize(load_runs(sweep_dir))


def _status(runs):
    return {r.name: r.status for r in runs}


# ----------------------------------------------------------------------------------------------
# loading
# ----------------------------------------------------------------------------------------------


def test_load_runs_finds_nested_runs_and_classifies_them(sweep_dir):
    runs = load_runs(sweep_dir)
    status = _status(runs)
    assert len(runs) == 19
    assert status[run_name("k1", 2)] == "failed"
    assert status[run_name("fixed@2", 2)] == "incomplete"
    assert status[run_name(DETECTOR, 2)] == "missing"
    assert sum(s == "complete" for s in status.values()) == 16
    by_name = {r.name: r for r in runs}
    failed = by_name[run_name("k1", 2)]
    assert "boom" in failed.problems[0] and "epoch=2" in failed.problems[0]
    assert any("2/6 epochs" in p for p in failed.problems)
    assert by_name[run_name("fixed@2", 2)].problems == ["no robustness.json"]
    missing = by_name[run_name(DETECTOR, 2)]
    assert "no run directory" in missing.problems[0]
    # a missing run keeps the sweep's tags, so it is counted in its group, in its setting
    assert (missing.model, missing.label, missing.seed) == (MODEL, DETECTOR, 2)
    assert missing.setting == SETTING
    # a matched run trains longer (10 epochs) but belongs to the setting it matches (6 epochs)
    matched = by_name[run_name("matched-k1@2", 0)]
    assert matched.max_epochs == 10 and matched.budget == MAX_EPOCHS and matched.cut_at == 2
    assert {r.setting for r in runs} == {SETTING}
    ok = by_name[run_name("fixed@4", 0)]
    assert ok.problems == [] and len(ok.rows) == 6 and ok.cut_epoch == 4
    assert ok.rows[0]["epoch"] == 0 and ok.rows[-1]["val/acc"] == pytest.approx(0.905)


def test_incomplete_reasons(tmp_path):
    write_run(tmp_path, "short", tags=None, acc=0.5, time_s=10.0, epochs=3)
    write_run(tmp_path, "noenergy", tags=None, acc=0.5, time_s=10.0, energy=False)
    write_run(tmp_path, "norows", tags=None, acc=0.5, time_s=10.0, epochs=0)
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "config.json").write_text("{not json")
    runs = {r.name: r for r in load_runs(tmp_path)}
    assert runs["short"].status == "incomplete" and runs["short"].problems == ["3/6 epochs"]
    assert runs["noenergy"].problems == ["no energy.json"]
    assert "no metric rows" in runs["norows"].problems
    assert runs["broken"].status == "incomplete"
    assert any("config.json unreadable" in p for p in runs["broken"].problems)


def test_untagged_runs_policy_is_inferred_and_csv_fallback(tmp_path):
    write_run(tmp_path, "adhoc-a", tags=None, acc=0.7, time_s=10.0, metrics_json=False)
    write_run(tmp_path / "deep" / "er", "adhoc-b", tags=None, acc=0.6, time_s=20.0)
    runs = load_runs(tmp_path)
    assert [r.name for r in runs] == ["adhoc-a", "deep/er/adhoc-b"]
    a = runs[0]
    assert a.rows[-1]["val/acc"] == pytest.approx(0.7)  # read from metrics.csv
    assert a.rows[-1]["multiplicity"] == 3
    s = summarize(runs)
    # the model comes from config.json's hparams when there is no tag, the policy from the
    # run's own files (k = 3 throughout, no cut: always-k3), not from the directory name
    assert [(g.model, g.label) for g in s.groups] == [(MODEL, "always-k3")]
    assert s.group(MODEL, "always-k3").stats["acc"].mean == pytest.approx(0.65)
    assert s.regret == [] and s.oracles == {}


# ----------------------------------------------------------------------------------------------
# statistics (numbers computed by hand from report_fixtures.SWEEP)
# ----------------------------------------------------------------------------------------------


def test_group_order_and_counts(summary):
    assert [g.label for g in summary.groups] == [
        "always-k3",
        "k1",
        "matched-k1@2",
        "matched-k1@4",
        "fixed@2",
        "fixed@4",
        DETECTOR,
    ]
    counts = {g.label: (len(g.complete), len(g.runs)) for g in summary.groups}
    assert counts == {
        "always-k3": (2, 2),
        "k1": (2, 3),
        "matched-k1@2": (2, 2),
        "matched-k1@4": (3, 3),
        "fixed@2": (2, 3),
        "fixed@4": (3, 3),
        DETECTOR: (2, 3),
    }


def test_means_and_stds(summary):
    a = summary.group(MODEL, "always-k3").stats
    assert a["acc"].mean == pytest.approx(0.91)
    assert a["acc"].std == pytest.approx(0.02 / SQRT2)  # sample std of (0.90, 0.92)
    assert a["time_s"].mean == pytest.approx(110.0)
    assert a["time_s"].std == pytest.approx(20.0 / SQRT2)
    assert a["energy_kwh"].mean == pytest.approx(0.011)
    assert a["co2_kg"].mean == pytest.approx(0.0044)
    assert a["cost"].mean == pytest.approx(0.011 * 0.13)
    assert a["fgsm_acc"].mean == pytest.approx(0.35) and a["fgsm_acc"].std == pytest.approx(
        0.1 / SQRT2
    )
    assert a["pgd_acc"].mean == pytest.approx(0.175)
    assert a["clean_acc"].mean == pytest.approx(0.91)
    assert a["corruption_acc"].mean == pytest.approx(0.81)
    assert a["cut_epoch"].n == 0 and math.isnan(a["cut_epoch"].mean)
    f4 = summary.group(MODEL, "fixed@4").stats
    assert f4["acc"].mean == pytest.approx(0.908)
    assert f4["acc"].std == pytest.approx(0.003)  # deviations -3e-3, +3e-3, 0; / (3 - 1)
    assert f4["cut_epoch"].mean == 4 and f4["cut_epoch"].std == 0
    d = summary.group(MODEL, DETECTOR)
    assert d.stats["acc"].mean == pytest.approx(0.90)
    assert d.stats["cut_epoch"].mean == pytest.approx(3.0)
    assert d.stats["cut_epoch"].std == pytest.approx(SQRT2)  # cuts 2 and 4
    assert d.n_cut == 2
    # an incomplete (fixed@2 seed 2: acc 0.87, 63 s) or failed run does not enter the numbers
    f2 = summary.group(MODEL, "fixed@2").stats
    assert f2["acc"].mean == pytest.approx(0.87) and f2["time_s"].mean == pytest.approx(63.0)
    assert f2["acc"].n == 2
    assert summary.keys[:6] == [
        "acc",
        "clean_acc",
        "fgsm_acc",
        "pgd_acc",
        "corruption_acc",
        "time_s",
    ]


def test_savings_against_always_k(summary):
    a = summary.group(MODEL, "always-k3").stats
    assert a["time_saving_pct"].mean == 0 and a["acc_delta_pts"].mean == 0
    k1 = summary.group(MODEL, "k1")
    assert k1.baseline == "always-k3"  # k tag 1 != 3: the model's only always group
    # per seed: 1 - 40/100 = 60 %, 1 - 48/120 = 60 %
    assert k1.stats["time_saving_pct"].mean == pytest.approx(60.0)
    assert k1.stats["time_saving_pct"].std == pytest.approx(0.0, abs=1e-9)
    assert k1.stats["acc_delta_pts"].mean == pytest.approx(-10.0)
    assert k1.stats["acc_delta_pts"].std == pytest.approx(0.0, abs=1e-9)
    d = summary.group(MODEL, DETECTOR).stats
    # 1 - 70/100 = 30 %, 1 - 90/120 = 25 %
    assert d["time_saving_pct"].mean == pytest.approx(27.5)
    assert d["time_saving_pct"].std == pytest.approx(5 / SQRT2)
    assert d["energy_saving_pct"].mean == pytest.approx(27.5)
    assert d["co2_saving_pct"].mean == pytest.approx(27.5)
    assert d["acc_delta_pts"].mean == pytest.approx(-1.0)
    # fixed@4 seed 2 has no baseline seed: against the baseline mean (110 s): 1 - 88/110 = 20 %
    f4 = summary.group(MODEL, "fixed@4")
    vals = {r.seed: f4.values[r.name] for r in f4.complete}
    assert [vals[s]["time_saving_pct"] for s in (0, 1, 2)] == pytest.approx([20, 20, 20])
    assert [vals[s]["acc_delta_pts"] for s in (0, 1, 2)] == pytest.approx([0.5, -0.9, -0.2])
    assert f4.stats["time_saving_pct"].std == pytest.approx(0.0, abs=1e-9)


def test_regret_and_oracle_cut(summary):
    o = summary.oracles[SETTING]
    assert o["baseline"] == "always-k3" and o["baseline_acc"] == pytest.approx(0.91)
    assert o["best_fixed"] == "fixed@4" and o["best_fixed_acc"] == pytest.approx(0.908)
    # always-k 91.0 % - 0.5 pts = 90.5 %: fixed@2 (87.0) no, fixed@4 (90.8) yes
    assert o["oracle"] == "fixed@4" and o["oracle_cut"] == 4
    assert o["oracle_energy_kwh"] == pytest.approx(0.0088)
    (r,) = summary.regret
    assert r["label"] == DETECTOR and r["n_cut"] == 2 and r["n"] == 2
    assert r["accuracy_regret_pts"] == pytest.approx(0.8)  # 90.8 - 90.0
    # cut epochs of different seeds are shown per seed, never averaged (issue 25)
    assert r["cut_epoch"] is None and r["cut_epochs"] == "2, 4"
    assert r["cut_delta_epochs"] is None and r["cut_deltas"] == "-2, +0"  # vs oracle 4
    assert r["acc_vs_oracle_pts"] == pytest.approx(-0.8)
    assert r["energy_vs_oracle_pct"] == pytest.approx(100 * (0.008 / 0.0088 - 1))  # -9.09 %
    assert r["time_vs_oracle_pct"] == pytest.approx(100 * (80 / 88 - 1))
    # the share of the oracle's FLOPs saving the detector captured (cuts at 3 vs 4 of 6, k 3 -> 1)
    oracle_saving = 100 * 2 * (6 - 4) / (3 * 6)
    assert o["oracle_saving_pct"] == pytest.approx(oracle_saving)
    assert r["flops_saving_pct"] == pytest.approx(100 * 2 * (6 - 3) / (3 * 6))
    assert r["oracle_share_pct"] == pytest.approx(100 * r["flops_saving_pct"] / oracle_saving)


def test_oracle_depends_on_tolerance(sweep_dir):
    runs = load_runs(sweep_dir)
    tight = summarize(runs, tolerance=0.1)  # 90.8 < 91.0 - 0.1
    assert tight.oracles[SETTING]["oracle"] is None
    assert "no fixed cut within 0.1" in tight.oracles[SETTING]["oracle_reason"]
    assert tight.regret[0]["accuracy_regret_pts"] == pytest.approx(0.8)
    assert tight.regret[0]["cut_deltas"] is None
    loose = summarize(runs, tolerance=5.0)  # 87.0 >= 86.0: the earlier fixed@2 qualifies
    assert loose.oracles[SETTING]["oracle"] == "fixed@2"
    assert loose.regret[0]["cut_deltas"] == "+0, +2"
    with pytest.raises(ValueError, match="tolerance"):
        summarize(runs, tolerance=-1)


def test_accuracy_key(sweep_dir):
    s = summarize(load_runs(sweep_dir), accuracy_key="train/loss")
    assert s.group(MODEL, "always-k3").stats["acc"].mean == pytest.approx(2.0 / 6)


def test_stat():
    s = Stat.of([1.0, None, float("nan"), 3.0])
    assert (s.mean, s.std, s.n) == (2.0, SQRT2, 2)
    one = Stat.of([5.0])
    assert one.mean == 5.0 and math.isnan(one.std)
    assert Stat.of([]).n == 0


def test_pareto_front():
    assert pareto_front([3.0, 1.0, 2.0], [0.9, 0.5, 0.8]) == [1, 2, 0]
    assert pareto_front([1.0, 1.0, 2.0], [0.5, 0.6, 0.6]) == [1]
    assert pareto_front([], []) == []


# ----------------------------------------------------------------------------------------------
# writers
# ----------------------------------------------------------------------------------------------


def test_markdown(summary):
    md = to_markdown(summary)
    # the fixture's robustness.json is on the validation split: no test split, val/acc it is
    assert "Accuracy: `val/acc` on the validation split" in md
    assert "| Policy | n | Val acc (%) |" in md
    assert "| always-k3 | 2/2 | 91.00 ± 1.41 |" in md
    assert "Energy, partly estimated (Wh)" in md and "Time (s)" in md and "CO2 (g)" in md
    assert "Cost (mUSD)" in md  # thousandths of a dollar, never 7 decimals
    assert "| fixed@4 | 3/3 | 90.80 ± 0.30 |" in md
    assert "## Runs not complete (3)" in md
    for label, seed in (("k1", 2), ("fixed@2", 2), (DETECTOR, 2)):
        assert f"`{run_name(label, seed)}`" in md
    assert "**failed** — crashed: RuntimeError: boom" in md
    assert "**incomplete** — no robustness.json" in md
    assert "**missing** — no run directory" in md
    assert "oracle cut **fixed@4** (epoch 4" in md
    assert "+0.80" in md  # regret


def test_latex_escapes(summary):
    assert latex_escape("a_b & 5% #1 $x$ ~ ^ \\") == (
        r"a\_b \& 5\% \#1 \$x\$ \textasciitilde{} \textasciicircum{} \textbackslash{}"
    )
    tex = to_latex(summary)
    assert "\\toprule" in tex and "\\midrule" in tex and "\\bottomrule" in tex
    assert "always-k3 & 2/2 & 91.00 $\\pm$ 1.41" in tex
    assert "detector:layer\\_rotation@0.01" in tex
    body = [ln for ln in tex.splitlines() if not ln.startswith("%")]
    assert not any("tiny_cnn" in ln or "layer_rotation" in ln for ln in body)
    assert "Val acc (\\%)" in tex and "CO$_2$" in tex and "$\\Delta$Acc" in tex


def test_write_report_writes_every_file(summary, tmp_path):
    rep = write_report(summary, tmp_path / "out")
    names = {p.name for p in rep.files}
    expected = {"summary.md", "summary.csv", "regret.csv", "matched.csv", "runs.csv"}
    expected.add("summary.tex")
    for base in ("curves_tiny_cnn", "pareto", "accuracy_vs_cut"):
        expected |= {f"{base}.png", f"{base}.pdf"}
    assert names == expected, rep.messages
    for p in rep.files:
        assert p.is_file() and p.stat().st_size > 0
    assert (tmp_path / "out" / "pareto.png").read_bytes()[:4] == b"\x89PNG"
    assert (tmp_path / "out" / "pareto.pdf").read_bytes()[:4] == b"%PDF"
    with open(tmp_path / "out" / "summary.csv", newline="") as f:
        rows = {r["label"]: r for r in csv.DictReader(f)}
    a = rows["always-k3"]
    assert float(a["acc_mean"]) == pytest.approx(0.91)
    assert float(a["acc_std"]) == pytest.approx(0.02 / SQRT2)
    assert float(a["time_s_mean"]) == pytest.approx(110.0) and a["n_complete"] == "2"
    assert rows["k1"]["n_runs"] == "3" and rows["k1"]["baseline"] == "always-k3"
    assert float(rows[DETECTOR]["time_saving_pct_mean"]) == pytest.approx(27.5)
    assert rows["always-k3"]["cut_epoch_mean"] == ""  # no value: empty cell
    with open(tmp_path / "out" / "runs.csv", newline="") as f:
        runs = {r["name"]: r for r in csv.DictReader(f)}
    assert len(runs) == 19 and runs[run_name(DETECTOR, 2)]["status"] == "missing"
    with open(tmp_path / "out" / "regret.csv", newline="") as f:
        (reg,) = list(csv.DictReader(f))
    assert float(reg["accuracy_regret_pts"]) == pytest.approx(0.8) and reg["oracle"] == "fixed@4"


def test_plots_are_skipped_without_data(tmp_path):
    # runs without accuracy, energy or cuts: the curve plot is drawn, the others skipped
    write_run(tmp_path / "runs", "a", tags=None, acc=0.5, time_s=10.0)
    runs = load_runs(tmp_path / "runs")
    s = summarize(runs, accuracy_key="no/such")
    rep = write_report(s, tmp_path / "out")
    names = {p.name for p in rep.files}
    assert f"curves_{MODEL}.png" in names and "pareto.png" not in names
    assert any(m.startswith("pareto:") for m in rep.messages)
    assert any(m.startswith("accuracy_vs_cut:") for m in rep.messages)
    assert any("no 'no/such' accuracy" in n for n in s.notes)


# ----------------------------------------------------------------------------------------------
# CLI
# ----------------------------------------------------------------------------------------------


def test_main_exit_codes(sweep_dir, tmp_path, capsys):
    out = tmp_path / "rep"
    assert main([str(sweep_dir), "--out", str(out), "--tolerance", "0.5"]) == 0
    printed = capsys.readouterr().out
    assert "| always-k3 | 2/2 |" in printed and "## Runs not complete (3)" in printed
    assert str(out / "summary.md") in printed
    assert (out / "summary.tex").is_file() and (out / "accuracy_vs_cut.pdf").is_file()

    empty = tmp_path / "empty"
    empty.mkdir()
    assert main([str(empty)]) == 2
    assert "no run directories" in capsys.readouterr().err
    assert main([str(tmp_path / "nope")]) == 2
    only_missing = tmp_path / "only_missing"
    only_missing.mkdir()
    (only_missing / "sweep.json").write_text(json.dumps({"name": "s", "runs": [{"name": "x"}]}))
    assert main([str(only_missing)]) == 2
    assert "none of them exists" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main([str(sweep_dir), "--tolerance", "-1"])
    assert exc.value.code == 2


def test_main_default_out_and_no_plots(tmp_path, capsys):
    root = make_fake_sweep(tmp_path / "runs")
    shutil.rmtree(root / run_name("always-k3", 0))  # now missing too
    assert main([str(root), "--no-plots", "--accuracy-key", "val/acc"]) == 0
    assert (root / "report" / "summary.md").is_file()
    assert not (root / "report" / "pareto.png").exists()
    assert "## Runs not complete (4)" in capsys.readouterr().out
    # the report directory is not taken for a run the second time round
    assert len(load_runs(root)) == 19


# ----------------------------------------------------------------------------------------------
# plot_run
# ----------------------------------------------------------------------------------------------


def test_plot_run_on_a_fixture_run(sweep_dir, tmp_path):
    src = sweep_dir / run_name(DETECTOR, 0)
    dst = tmp_path / "run"
    shutil.copytree(src, dst)
    paths = plot_run(dst)
    assert paths == [dst / "plot.png", dst / "plot.pdf"]
    assert all(p.stat().st_size > 0 for p in paths)
    empty = tmp_path / "empty"
    write_run(tmp_path, "empty", tags=None, acc=0.5, time_s=1.0, epochs=0)
    with pytest.raises(ValueError, match="no metric rows"):
        plot_run(empty)
    with pytest.raises(FileNotFoundError):
        plot_run(tmp_path / "nope")


# ----------------------------------------------------------------------------------------------
# a real run directory: guards against drift between the writers and the reader
# ----------------------------------------------------------------------------------------------


def test_real_run_directory(tmp_path):
    from helpers import TinyDataModule, TinyModule, tiny_trainer

    from critical.callbacks import EnergyTracker, LayerRotation, RobustnessEvaluator, RunDirectory

    tags = {"model": "tiny", "policy": "always", "label": "always-k2", "seed": 0, "k": 2}
    run = RunDirectory(root=tmp_path / "runs", name="r", tensorboard=False, tags=tags)
    rob = RobustnessEvaluator(num_images=16, attacks=("fgsm",), corruptions=None)
    callbacks = [run, EnergyTracker(), LayerRotation(), rob]
    trainer = tiny_trainer(tmp_path, max_epochs=2, callbacks=callbacks)
    trainer.fit(TinyModule(), TinyDataModule(n=32, multiplicity=2))

    (r,) = load_runs(tmp_path / "runs")
    assert r.name == "r" and r.status == "complete", r.problems
    assert r.max_epochs == 2 and [row["epoch"] for row in r.rows] == [0, 1]
    assert r.rows[0]["multiplicity"] == 2
    assert r.final("val/acc") is not None and r.final("critical/layer_rotation") is not None
    assert r.total("duration_s") > 0
    assert r.cut_epoch is None and r.cut_event == {"fired": False}
    assert (r.model, r.label, r.policy, r.seed, r.k) == ("tiny", "always-k2", "always", 0, 2)
    vals = summarize([r]).group("tiny", "always-k2").values["r"]
    assert vals["clean_acc"] is not None and vals["fgsm_acc"] is not None
    assert vals["time_s"] > 0
    paths = plot_run(r.path)
    assert [p.name for p in paths] == ["plot.png", "plot.pdf"]
    assert load_run(r.path).status == "complete"


def test_detector_that_never_cuts(tmp_path):
    def tags(label, policy, seed):
        return {"model": "m", "label": label, "policy": policy, "seed": seed, "k": 3}

    for seed, acc in ((0, 0.8), (1, 0.9)):
        write_run(tmp_path, f"a{seed}", tags=tags("always-k3", "always", seed), acc=acc, time_s=10)
        write_run(tmp_path, f"d{seed}", tags=tags("det", "detector", seed), acc=acc, time_s=10)
    s = summarize(load_runs(tmp_path))
    (r,) = s.regret
    assert r["n_cut"] == 0 and r["cut_epoch"] is None and r["accuracy_regret_pts"] is None
    assert s.oracles[Setting(DATASET, "m", MAX_EPOCHS)]["oracle_reason"] == "no fixed cuts"
    assert s.group("m", "det").stats["time_saving_pct"].mean == pytest.approx(0.0)
    rep = write_report(s, tmp_path / "out")
    assert any("m on synthetic, 6 epochs / det never cut" in m for m in rep.messages)
    assert "no oracle cut (no fixed cuts)" in to_markdown(s)
