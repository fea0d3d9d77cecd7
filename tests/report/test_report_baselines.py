"""critical.report: settings (never mixed), matched k = 1 baselines, compute and cost columns,
the measured-vs-compute check, older runs, and the plots' hygiene (#14.6, #12.4)."""

from __future__ import annotations

import csv

import pytest
from report_fixtures import (
    DATASET,
    DETECTOR,
    MAX_EPOCHS,
    MODEL,
    PARAMS,
    TRAIN_FLOPS,
    make_fake_sweep,
    run_name,
    write_run,
)

from critical.report import (
    Setting,
    comparison_plots,
    describe_run,
    load_run,
    load_runs,
    main,
    summarize,
    to_latex,
    to_markdown,
    write_report,
)
from critical.report import plots as plots_module
from critical.report.run_plot import run_figure

SETTING = Setting(DATASET, MODEL, MAX_EPOCHS)


@pytest.fixture(scope="module")
def sweep_dir(tmp_path_factory):
    return make_fake_sweep(tmp_path_factory.mktemp("sweep"))


@pytest.fixture(scope="module")
def summary(sweep_dir):
    return summarize(load_runs(sweep_dir))


def _figures(monkeypatch):
    """Capture the figures the plot functions save (name -> figure)."""
    figs = {}
    real = plots_module._save

    def save(fig, base):
        figs[base.name] = fig
        return real(fig, base)

    monkeypatch.setattr(plots_module, "_save", save)
    monkeypatch.setattr(comparison_plots, "_save", save)
    return figs


# ----------------------------------------------------------------------------------------------
# settings: data set, model, budget
# ----------------------------------------------------------------------------------------------


def _tags(model, label, policy, seed=0, **extra):
    return {"model": model, "label": label, "policy": policy, "seed": seed, "k": 3, **extra}


def test_settings_are_never_mixed(tmp_path, monkeypatch):
    root = tmp_path / "runs"
    # the digits run and the 4-class folder run of #14.6: untagged, same model
    write_run(
        root, "digits-run", tags=None, acc=0.95, time_s=10.0, dataset="digits", model="small_cnn"
    )
    write_run(
        root,
        "folder-run",
        tags=None,
        acc=0.60,
        time_s=30.0,
        dataset="folder",
        model="small_cnn",
        datamodule_hparams={"root": "/data/shapes"},
    )
    # an always-k run of another budget must not be the baseline of a 6-epoch run
    write_run(
        root,
        "a12",
        tags=_tags("small_cnn", "always-k3", "always"),
        acc=0.9,
        time_s=50.0,
        dataset="digits",
        epochs=12,
        max_epochs=12,
    )
    write_run(
        root,
        "f6",
        tags=_tags("small_cnn", "fixed@2", "fixed", cut_at=2),
        acc=0.9,
        time_s=20.0,
        dataset="digits",
        cut_epoch=2,
    )
    s = summarize(load_runs(root))
    assert s.settings == [
        Setting("digits", "small_cnn", 6),
        Setting("digits", "small_cnn", 12),
        Setting("folder:/data/shapes", "small_cnn", 6),
    ]
    f6 = s.group("small_cnn", "fixed@2")
    # its baseline is the untagged 6-epoch digits run (k = 3 throughout: always-k3, inferred
    # from its own files), never the always-k3 run of the 12-epoch budget
    assert f6.baseline == "always-k3"
    base = next(g for g in s.groups if g.label == "always-k3" and g.setting == f6.setting)
    assert [r.name for r in base.runs] == ["digits-run"]
    assert any("3 settings, reported apart" in n for n in s.notes)
    md = to_markdown(s)
    for setting in s.settings:
        assert f"## {setting.label}" in md
    assert "## small_cnn on folder:/data/shapes, 6 epochs" in md
    tex = to_latex(s)
    assert "\\caption{small\\_cnn on digits, 6 epochs. Accuracy:" in tex
    figs = _figures(monkeypatch)
    rep = write_report(s, tmp_path / "out")
    pareto = figs["pareto"]
    titles = sorted(ax.get_title() for ax in pareto.axes if ax.get_visible())
    assert titles == sorted(x.label for x in s.settings)  # one panel (one front) per setting
    # one curve file per setting of the same model
    names = {p.name for p in rep.files}
    assert "curves_small_cnn_digits_E6.png" in names and "curves_small_cnn_digits_E12.png" in names
    with open(tmp_path / "out" / "summary.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert {(r["dataset"], r["budget"]) for r in rows} == {
        ("digits", "6"),
        ("digits", "12"),
        ("folder:/data/shapes", "6"),
    }


def test_setting_from_train_size_and_tags(tmp_path):
    write_run(
        tmp_path,
        "sub",
        tags=None,
        acc=0.5,
        time_s=1.0,
        dataset="cifar10",
        datamodule_hparams={"train_size": 5000, "image_size": 16},
    )
    write_run(
        tmp_path,
        "old",
        tags={"model": "m", "dataset": "cifar100", "budget": 6},
        acc=0.5,
        time_s=1.0,
        dataset=None,
        model=None,
    )
    runs = {r.name: r for r in load_runs(tmp_path)}
    assert runs["sub"].dataset == "cifar10[train_size=5000,image_size=16]"
    assert runs["old"].setting == Setting("cifar100", "m", 6)  # tags where the config lacks it


# ----------------------------------------------------------------------------------------------
# matched k = 1
# ----------------------------------------------------------------------------------------------


def test_cut_policies_against_matched_k1(summary):
    rows = {m["label"]: m for m in summary.matched}
    assert set(rows) == {"fixed@2", "fixed@4", DETECTOR}
    # fixed@2: 86 vs 87 and 88 vs 89: -1 pt each
    f2 = rows["fixed@2"]
    assert f2["acc_vs_matched_pts"] == pytest.approx(-1.0) and f2["n_matched"] == 2
    assert f2["beats_matched"] is False
    assert f2["verdict"] == "no: the saving came from training less"
    # fixed@4: +0.5, +0.6, +0.8: mean 0.633, 2 SE = 0.176 -> beats it
    f4 = rows["fixed@4"]
    assert f4["acc_vs_matched_pts"] == pytest.approx(0.6333, abs=1e-4)
    assert f4["acc_vs_matched_std"] == pytest.approx(0.1528, abs=1e-4)
    assert f4["beats_matched"] is True and f4["verdict"] == "yes"
    assert f4["matched_acc"] == pytest.approx((0.90 + 0.905 + 0.90) / 3)
    # the detector cut at 2 (seed 0) and 4 (seed 1): each against the matched run of its cut
    d = rows[DETECTOR]
    assert d["acc_vs_matched_pts"] == pytest.approx((2.0 + 0.5) / 2)  # 89-87, 91-90.5
    assert d["beats_matched"] is None and d["verdict"] == "not beyond the noise"
    g = summary.group(MODEL, DETECTOR)
    assert g.values[run_name(DETECTOR, 0)]["acc_vs_matched_pts"] == pytest.approx(2.0)
    assert "acc_vs_matched_pts" in summary.keys
    (reg,) = summary.regret
    assert reg["beats_matched"] == "not beyond the noise"
    assert reg["accuracy_regret_vs_always_pts"] == pytest.approx(1.0)  # 91.0 - 90.0
    # a detector that never cut has nothing to match
    never = summarize([*summary.runs, *_never_cut_runs(summary)]).group(MODEL, "detector:never")
    assert never.matched["verdict"] == "never cut: nothing to match"
    assert never.matched["beats_matched"] is None
    # a matched group's own row: its saving against always-k, no matched comparison
    m2 = summary.group(MODEL, "matched-k1@2")
    assert m2.policy == "matched" and m2.cut_at == 2 and m2.matched is None
    assert m2.stats["flops_saving_pct"].mean == pytest.approx(100 * 4 / 9)


def _never_cut_runs(summary):
    """Copies of the always-k runs relabelled as a detector that never fired."""
    import copy

    out = []
    for r in summary.group(MODEL, "always-k3").runs:
        c = copy.copy(r)
        c.name = r.name + "-never"
        c.tags = {**r.tags, "policy": "detector", "label": "detector:never"}
        out.append(c)
    return out


def test_matched_in_markdown_csv_latex(summary, tmp_path):
    md = to_markdown(summary)
    assert "| fixed@2 | 2/2 | 2 | 87.00 | 88.00 | -1.00 ± 0.00 | -4.00 | no: the saving came " in md
    assert "| fixed@4 | 3/3 | 4 | 90.80 | 90.17 | +0.63 ± 0.15 | -0.20 | yes |" in md
    assert "ΔAcc vs matched k=1 (pts)" in md
    assert "Regret vs always-k (pts)" in md
    tex = to_latex(summary)
    assert "Matched k=1 (\\%)" in tex and "no: the saving came from training less" in tex
    write_report(summary, tmp_path, plots=False)
    with open(tmp_path / "matched.csv", newline="") as f:
        rows = {r["label"]: r for r in csv.DictReader(f)}
    assert rows["fixed@4"]["beats_matched"] == "True" and rows["fixed@4"]["verdict"] == "yes"
    with open(tmp_path / "summary.csv", newline="") as f:
        summ = {r["label"]: r for r in csv.DictReader(f)}
    assert summ["fixed@2"]["beats_matched"] == "no: the saving came from training less"
    assert float(summ["fixed@4"]["acc_vs_matched_pts_mean"]) == pytest.approx(0.6333, abs=1e-4)


# ----------------------------------------------------------------------------------------------
# compute and cost
# ----------------------------------------------------------------------------------------------


def test_flops_params_and_savings(summary):
    a = summary.group(MODEL, "always-k3").stats
    assert a["flops"].mean == pytest.approx(6 * 300 * TRAIN_FLOPS)
    assert a["params"].mean == PARAMS
    assert a["flops_saving_pct"].mean == pytest.approx(0.0)
    assert a["theoretical_saving_pct"].mean == pytest.approx(0.0)
    f4 = summary.group(MODEL, "fixed@4").stats
    # 1 - (3*4 + 2) / (3*6) = 22.2 %, from FLOPs and from the epochs at each k alike
    assert f4["flops_saving_pct"].mean == pytest.approx(100 * 4 / 18)
    assert f4["theoretical_saving_pct"].mean == pytest.approx(100 * 4 / 18)
    k1 = summary.group(MODEL, "k1").stats
    assert k1["theoretical_saving_pct"].mean == pytest.approx(100 * 2 / 3)
    # measured (time) minus FLOPs-based saving, per run
    assert f4["time_vs_compute_pts"].mean == pytest.approx(20.0 - 100 * 4 / 18)


def test_measured_vs_compute_check(summary):
    k1 = summary.group(MODEL, "k1")
    # 60 % measured vs 66.7 % FLOPs-based in both seeds: -6.7 pts, beyond 5 pts
    assert k1.check["time"]["agrees"] is False and k1.check["energy"]["agrees"] is False
    assert k1.check["flag"] == "time -6.7 pts, energy -6.7 pts" and k1.check["basis"] == "FLOPs"
    assert any("k1: measured time saving 60.0%" in n for n in summary.notes)
    f4 = summary.group(MODEL, "fixed@4")
    assert f4.check["time"]["agrees"] and f4.check["flag"] == ""
    # the detector: -14.4 and +2.8 pts; 2 SE = 17.2 pts: within the noise; but its seed-0 run's
    # own energy.json check disagrees
    d = summary.group(MODEL, DETECTOR)
    assert d.check["time"]["agrees"] and d.check["time"]["limit_pts"] > 5
    assert d.check["runs_disagree"] == 1
    assert any("energy.json saving check" in n and "s0" in n for n in summary.notes)
    assert summary.group(MODEL, "always-k3").check is None
    # a looser tolerance clears k1
    loose = summarize(summary.runs, saving_tolerance=10.0)
    assert loose.group(MODEL, "k1").check["flag"] == ""


def test_cost_table(summary):
    md = to_markdown(summary)
    assert (
        "| Policy | n | Time (s) | Energy, partly estimated (Wh) | CO2 (g) | Cost (mUSD) "
        "| Params (M) | FLOPs (GFLOP) |"
    ) in md
    assert (
        "| Policy | n | FLOPs saved (%) | Theoretical saving (%) | Time saved (%) "
        "| Energy saved (%) | CO2 saved (%) | Measured vs compute |"
    ) in md
    assert "| always-k3 | 2/2 | 0.0 ± 0.0 | 0.0 ± 0.0 | 0.0 ± 0.0 |" in md
    assert "| always-k3 | 2/2 | 110 ± 14 | 11.0 ± 1.4 |" in md
    assert "time -6.7 pts, energy -6.7 pts |" in md
    # estimates are never called measured
    assert "Energy measured by" not in md
    assert "How the energy was obtained: CPU measured (RAPL energy counters); RAM estimated" in md
    assert "energy: partly estimated" in md
    # the accuracy table keeps its columns; FLOPs are in the cost table only
    header = next(ln for ln in md.splitlines() if ln.startswith("| Policy | n | Val acc"))
    assert "FLOPs" not in header and "Params" not in header
    tex = to_latex(summary)
    assert "Measured vs compute" in tex and "FLOPs (GFLOP)" in tex


def test_older_runs_degrade_gracefully(tmp_path, capsys):
    root = tmp_path / "runs"
    for seed in (0, 1):
        write_run(
            root,
            f"a{seed}",
            tags=_tags(MODEL, "always-k3", "always", seed),
            acc=0.9,
            time_s=100.0,
            new_energy=False,
        )
        write_run(
            root,
            f"f{seed}",
            tags=_tags(MODEL, "fixed@2", "fixed", seed, cut_at=2),
            acc=0.88,
            time_s=60.0,
            cut_epoch=2,
            new_energy=False,
        )
    s = summarize(load_runs(root))
    assert "flops" not in s.keys and "params" not in s.keys
    f = s.group(MODEL, "fixed@2")
    # the theoretical saving still comes from the epochs at each k; the check falls back to it
    assert f.stats["theoretical_saving_pct"].mean == pytest.approx(100 * 4 / 9)
    assert f.check["basis"] == "theoretical"
    assert f.energy_method == "not recorded"
    md = to_markdown(s)
    assert "| fixed@2 | 2/2 | +44.4 ± 0.0 | +40.0 ± 0.0 | +40.0 ± 0.0 |" in md
    assert main([str(root), "--out", str(tmp_path / "out")]) == 0
    assert "not recorded" in capsys.readouterr().out


# ----------------------------------------------------------------------------------------------
# plots
# ----------------------------------------------------------------------------------------------


def test_curves_in_percent_with_the_cut_of_a_single_run(tmp_path, monkeypatch):
    write_run(tmp_path / "runs", "one", tags=None, acc=0.9, time_s=10.0, cut_epoch=3)
    s = summarize(load_runs(tmp_path / "runs"))
    figs = _figures(monkeypatch)
    plots_module.plot_curves(s, tmp_path / "out")
    (fig,) = figs.values()
    axes = {ax.get_title(): ax for ax in fig.axes if ax.get_visible()}
    acc = axes["val/acc (%)"]
    ys = [y for line in acc.get_lines() for y in line.get_ydata() if len(line.get_ydata()) > 2]
    assert max(ys) == pytest.approx(90.0)  # %, like the other plots
    for ax in axes.values():  # the run's own cut, at the boundary before epoch 3
        assert any(list(line.get_xdata()) == [2.5, 2.5] for line in ax.get_lines())


def test_plot_run_title_and_legends_outside_the_data(sweep_dir):
    run = load_run(sweep_dir / run_name("fixed@2", 0))
    text = describe_run(run)
    assert text == (
        f"{MODEL} on {DATASET}, k = 3 → 1 from epoch 2, policy fixed, {MAX_EPOCHS} epochs"
    )
    fig = run_figure(run)
    assert text in fig._suptitle.get_text()
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(fig)
    canvas.draw()  # lays the figure out
    renderer = canvas.get_renderer()
    # every panel with its tick labels and axis labels (the twin loss axis too)
    panels = [ax.get_tightbbox(renderer) for ax in fig.axes if ax.get_visible()]
    legends = [*fig.legends, *(ax.get_legend() for ax in fig.axes if ax.get_legend())]
    assert legends
    for leg in legends:
        box = leg.get_window_extent(renderer)
        for panel in panels:
            overlap_w = min(box.x1, panel.x1) - max(box.x0, panel.x0)
            overlap_h = min(box.y1, panel.y1) - max(box.y0, panel.y0)
            assert overlap_w <= 1 or overlap_h <= 1, "a legend covers a panel"
    labels = [t.get_text() for leg in legends for t in leg.get_texts()]
    assert "train/loss" in labels and "val/acc" in labels and any("cut" in x for x in labels)
