"""`critical sweep`'s `staged` policy (k = 3 -> 2 -> 1 from a cut): the plan, the spec's errors,
and a tiny real oracle sweep with a fixed and a staged branch off the same checkpoint."""

import csv
import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml
from helpers import TINY_FIT_ARGS, fit_in_process

from critical.report import Run, describe_run
from critical.report import main as report_main
from critical.sweep import main, plan
from critical.sweep import runner as sweep_runner

ROOT = Path(__file__).resolve().parents[1]
SPEC = {
    "name": "t",
    "config": str(ROOT / "experiments" / "quickstart.yaml"),
    "seeds": [0],
    "k": 3,
    "budgets": [12],
    "policies": {
        "always": True,
        "fixed": [4],
        "matched": True,
        "staged": {"stages": [2], "fixed": [0.5, 4]},
    },
    "oracle": True,
}


def test_plan_staged_branches(tmp_path):
    runs = {r.name: r for r in plan(SPEC, tmp_path)}
    assert set(runs) == {
        f"small_cnn-E12-{label}-s0"
        for label in ("always-k3", "fixed_4", "staged_4", "staged_6", "matched-k1_4")
    }  # no matched k = 1 run for a staged cut
    trunk = runs["small_cnn-E12-always-k3-s0"]
    # the trunk checkpoints every gcd(4, 4, 6) = 2 epochs: the staged cut at 6 needs epoch 5's
    assert "--trainer.callbacks.every_n_epochs=2" in trunk.args
    staged = runs["small_cnn-E12-staged_6-s0"]
    assert staged.stage == 2 and staged.alias_of is None
    assert staged.tags == {
        "sweep": "t",
        "model": "small_cnn",
        "seed": 0,
        "k": 3,
        "budget": 12,
        "policy": "staged",
        "label": "staged@6",
        "cut_at": 6,
        "stages": [2],
        "parent": trunk.name,
        "branch_epoch": 6,
    }
    for f in (
        "--cutoff.policy=fixed",
        "--cutoff.epoch=6",
        "--cutoff.stages=[2]",
        f"--ckpt_path={tmp_path}/checkpoints/small_cnn-E12-s0/epoch=5.ckpt",
    ):
        assert f in staged.args
    # the staged cut at 4 is its own branch off the checkpoint fixed@4 resumes from
    s4, f4 = runs["small_cnn-E12-staged_4-s0"], runs["small_cnn-E12-fixed_4-s0"]
    assert s4.alias_of is None and f4.alias_of is None
    assert "--cutoff.stages=[2]" in s4.args and not any("stages" in a for a in f4.args)
    ckpt = [a for a in s4.args if a.startswith("--ckpt_path=")]
    assert ckpt == [a for a in f4.args if a.startswith("--ckpt_path=")]
    assert runs["small_cnn-E12-matched-k1_4-s0"].tags["cut_at"] == 4

    # staged cuts alone set the trunk's rhythm; without oracle they train from scratch
    only = {**SPEC, "policies": {"staged": {"stages": [2], "fixed": [3, 9]}}}
    assert "--trainer.callbacks.every_n_epochs=3" in plan(only, tmp_path)[0].args
    scratch = plan({**only, "oracle": False}, tmp_path)
    assert [(r.tags["label"], r.stage) for r in scratch] == [("staged@3", 1), ("staged@9", 1)]
    assert not any(a.startswith("--ckpt_path") or "ModelCheckpoint" in a for a in scratch[0].args)
    assert "parent" not in scratch[0].tags and scratch[0].tags["stages"] == [2]


@pytest.mark.parametrize(
    "staged, match",
    [
        ([2], "is a mapping"),
        ({"stages": [2], "fixed": [4], "at": 3}, "unknown staged keys"),
        ({"stages": [2, 2], "fixed": [4]}, "strictly decreasing"),
        ({"stages": [3], "fixed": [4]}, "between 1 and k = 3"),  # not below k
        ({"stages": [1], "fixed": [4]}, "between 1 and k = 3"),  # the target is not a stage
        ({"stages": [], "fixed": [4]}, "non-empty list"),
        ({"stages": 2, "fixed": [4]}, "non-empty list"),
        ({"stages": [True], "fixed": [4]}, "integers"),
        ({"fixed": [4]}, "stages"),
        ({"stages": [2]}, "non-empty list of cut epochs"),
        ({"stages": [2], "fixed": []}, "non-empty list of cut epochs"),
        ({"stages": [2], "fixed": [0]}, "staged cuts are epochs"),
        ({"stages": [2], "fixed": [1.5]}, "staged cuts are epochs"),
        ({"stages": [2], "fixed": ["4"]}, "staged cuts are epochs"),
        ({"stages": [2], "fixed": [11]}, "1 epoch"),  # 12 - 11 epochs left for two steps
    ],
)
def test_invalid_staged_specs(tmp_path, staged, match):
    with pytest.raises(ValueError, match=match):
        plan({**SPEC, "policies": {"staged": staged}}, tmp_path)


def test_invalid_staged_spec_stops_the_sweep_before_any_run(tmp_path, capsys):
    spec_file = tmp_path / "s.yaml"
    spec_file.write_text(yaml.safe_dump({**SPEC, "policies": {"staged": {"stages": [4]}}}))
    assert main([str(spec_file), "--out", str(tmp_path / "out")]) == 2
    assert "between 1 and k = 3" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_real_sweep_trains_a_staged_branch_between_the_fixed_cut_and_always_k(
    tmp_path, monkeypatch, capsys
):
    """k = 3, 4 epochs, oracle: fixed@2 trains k = 3, 3, 1, 1; staged@2 (stages [2]) resumes
    from the same checkpoint and trains 3, 3, 2, 1 (the 2 epochs left split between k = 2 and
    k = 1); its FLOPs lie strictly between the fixed cut's and always-k's."""
    # the runner's runs only: codecarbon and the rest keep the real subprocess.run
    monkeypatch.setattr(
        sweep_runner, "subprocess", SimpleNamespace(run=fit_in_process, STDOUT=subprocess.STDOUT)
    )
    monkeypatch.setattr(sys, "argv", ["critical"])  # LightningCLI reads args, not pytest's argv
    spec = {
        "name": "staged",
        "config": str(ROOT / "experiments" / "quickstart.yaml"),
        "seeds": [0],
        "k": 3,
        "oracle": True,
        "validate": "end",
        "policies": {"always": True, "fixed": [2], "staged": {"stages": [2], "fixed": [2]}},
        "args": [
            "--trainer.max_epochs=4",
            "--data.batch_size=256",
            "--data.train_size=150",
            *TINY_FIT_ARGS,
        ],
    }
    spec_file = tmp_path / "s.yaml"
    spec_file.write_text(yaml.safe_dump(spec))
    out = tmp_path / "sweep"
    assert main([str(spec_file), "--out", str(out)]) == 0
    assert "3 runs planned" in capsys.readouterr().out

    def read(label, name):
        return json.loads((out / f"small_cnn-{label}-s0" / name).read_text())

    ks = {
        label: [(r["epoch"], r["multiplicity"]) for r in read(label, "metrics.json")]
        for label in ("always-k3", "fixed_2", "staged_2")
    }
    assert ks == {
        "always-k3": [(0, 3), (1, 3), (2, 3), (3, 3)],
        "fixed_2": [(0, 3), (1, 3), (2, 1), (3, 1)],
        "staged_2": [(0, 3), (1, 3), (2, 2), (3, 1)],
    }
    trunk, staged = read("always-k3", "metrics.json"), read("staged_2", "metrics.json")
    assert staged[1]["train/loss"] == trunk[1]["train/loss"]  # the trunk's epochs 0-1
    assert read("staged_2", "config.json")["tags"]["stages"] == [2]
    assert read("staged_2", "cut_event.json")["cut_epoch"] == 2
    flops = {
        label: read(label, "energy.json")["total"]["flops"]
        for label in ("always-k3", "fixed_2", "staged_2")
    }
    assert flops["fixed_2"] < flops["staged_2"] < flops["always-k3"]
    # the samples trained: 3 + 3 + 2 + 1 of 12 epoch-multiples, against 3 + 3 + 1 + 1
    assert flops["staged_2"] / flops["always-k3"] == pytest.approx(9 / 12)
    assert flops["fixed_2"] / flops["always-k3"] == pytest.approx(8 / 12)
    energy = read("staged_2", "energy.json")
    assert energy["theoretical_saving"] == pytest.approx(0.25)  # not the one-step cut's 1/3
    summary = read("staged_2", "summary.json")
    assert summary["cut"]["plan"] == [[2, 2], [3, 1]]
    assert "from k=3 to k=2 -> 1 (at most 25.0%" in summary["saving_note"]
    log = (out / "logs" / "small_cnn-staged_2-s0.log").read_text()
    assert "multiplicity: k=3 -> 2 from epoch 2 -> 1 from epoch 3 (a staged fixed cut)" in log

    # the report lists it as a cut of its own: never the oracle's fixed cut
    assert report_main([str(out), "--no-plots"]) == 0
    text = (out / "report" / "summary.md").read_text()
    assert "| staged@2 | 1/1 |" in text and "best fixed cut fixed@2" in text
    with open(out / "report" / "summary.csv") as f:
        rows = {r["label"]: r for r in csv.DictReader(f)}
    assert rows["staged@2"]["policy"] == "staged" and float(rows["staged@2"]["cut_at"]) == 2
    assert float(rows["staged@2"]["flops_saving_pct_mean"]) == pytest.approx(25.0)
    assert float(rows["staged@2"]["theoretical_saving_pct_mean"]) == pytest.approx(25.0)
    regret = (out / "report" / "regret.csv").read_text()
    assert "staged@2" not in regret


def test_the_report_reads_a_staged_run_by_its_label_or_its_cutoff():
    tagged = Run(name="r", path=Path("r"), tags={"label": "staged@5"})
    assert (tagged.policy, tagged.cut_at) == ("staged", 5)
    cutoff = "critical.callbacks.augmentation_cutoff.AugmentationCutoff"
    config = {
        "trainer": {"max_epochs": 4},
        "callbacks": [
            {"class": cutoff, "init_args": {"policy": "fixed", "epoch": 2, "stages": [2]}}
        ],
    }
    rows = [{"epoch": e, "multiplicity": k} for e, k in enumerate([3.0, 3.0, 2.0, 1.0])]
    own = Run(name="mine", path=Path("mine"), config=config, rows=rows)  # a user's, no tags
    assert (own.policy, own.label, own.cut_at, own.cut_epoch) == ("staged", "staged@2", 2, 2)
    text = describe_run(own)
    assert "k = 3 → 2 → 1 from epoch 2" in text and "policy staged at epoch 2" in text
    one_step = {
        **config,
        "callbacks": [{"class": cutoff, "init_args": {"policy": "fixed", "epoch": 2}}],
    }
    assert Run(name="f", path=Path("f"), config=one_step, rows=rows).label == "fixed@2"
