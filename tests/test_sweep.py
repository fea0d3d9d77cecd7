"""`critical sweep`: the plan, emitted commands, the SLURM script, and a real local sweep."""

import json
import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest
import yaml

from critical.report import main as report_main
from critical.sweep import load_spec, main, plan

ROOT = Path(__file__).resolve().parents[1]
SPEC = {
    "name": "t",
    "config": str(ROOT / "experiments" / "quickstart.yaml"),
    "seeds": [0, 1],
    "k": 3,
    "policies": {
        "always": True,
        "k1": True,
        "fixed": [1, 2],
        "detector": [{"monitor": "layer_rotation", "threshold": 0.5, "patience": 1}],
    },
    "oracle": True,
}


def test_plan_names_stages_and_flags(tmp_path):
    runs = plan(SPEC, tmp_path)
    # detectors are planned once the always-k run they are replayed on has finished
    assert len(runs) == 2 * 4
    assert [r.stage for r in runs] == [1] * 4 + [2] * 4  # branches after their trunks
    by = {r.name: r for r in runs}
    trunk = by["small_cnn-always-k3-s0"]
    assert "--cutoff.policy=never" in trunk.args
    assert "--trainer.callbacks+=ModelCheckpoint" in trunk.args
    assert "--trainer.callbacks.every_n_epochs=1" in trunk.args  # a detector may cut anywhere
    branch = by["small_cnn-fixed_2-s1"]
    assert branch.tags == {
        "sweep": "t",
        "model": "small_cnn",
        "seed": 1,
        "k": 3,
        "policy": "fixed",
        "label": "fixed@2",
        "cut_at": 2,
        "parent": "small_cnn-always-k3-s1",
        "branch_epoch": 2,
    }
    assert f"--ckpt_path={tmp_path}/checkpoints/small_cnn-s1/epoch=1.ckpt" in branch.args
    assert "--data.multiplicity=1" in by["small_cnn-k1-s0"].args
    no_oracle = plan({**SPEC, "oracle": False, "policies": {"fixed": [3]}}, tmp_path)
    assert [r.stage for r in no_oracle] == [1, 1] and "--ckpt_path" not in " ".join(
        no_oracle[0].args
    )
    live = plan({**SPEC, "oracle": False, "policies": {"detector": [{"threshold": 0.5}]}}, tmp_path)
    det = live[0]
    assert det.tags["label"] == "detector:val/loss@0.5"  # the default monitor
    assert "--critical_period.threshold=0.5" in det.args
    assert "--critical_period.mode=scaled" in det.args  # the library default, not the config's


def test_budgets_fractions_and_matched_runs(tmp_path):
    spec = {
        **SPEC,
        "seeds": [0],
        "budgets": [10, 40],
        "policies": {"always": True, "fixed": [0.25, 0.5], "matched": True},
        "validate": "end",
    }
    runs = {r.name: r for r in plan(spec, tmp_path)}
    assert set(runs) == {
        f"small_cnn-E{E}-{label}-s0"
        for E, cuts in ((10, (2, 5)), (40, (10, 20)))
        for label in (
            "always-k3",
            *(f"fixed_{c}" for c in cuts),
            *(f"matched-k1_{c}" for c in cuts),
        )
    }
    m = runs["small_cnn-E40-matched-k1_10-s0"]
    # k = 3 for 10 epochs then k = 1 for 30: 3 * 10 + 30 = 60 epochs of k = 1, same steps
    assert m.tags["matched_epochs"] == 60 and m.tags["cut_at"] == 10 and m.stage == 3
    assert m.args[-2:] == ["--trainer.max_epochs=60", "--trainer.check_val_every_n_epoch=60"]
    assert "--data.multiplicity=1" in m.args
    assert runs["small_cnn-E10-fixed_2-s0"].tags["budget"] == 10


@pytest.mark.parametrize(
    "bad, match",
    [
        ({"policies": {"sometimes": True}}, "valid"),
        ({"policies": {"detector": [5]}}, "mapping"),
        ({"policies": {"detector": [{"monitor": "x", "speed": 1}]}}, "valid"),
        ({"k": 1}, ">= 2"),
        ({"policies": {"fixed": [0]}}, ">= 1"),
        ({"policies": {"fixed": [1.5]}}, "fractions"),
        ({"budgets": [1]}, "budgets"),
        ({"validate": "sometimes"}, "validate"),
        ({"colour": "red"}, "unknown sweep keys"),
    ],
)
def test_invalid_specs(tmp_path, bad, match):
    with pytest.raises(ValueError, match=match):
        plan({**SPEC, **bad}, tmp_path)


def test_emit_and_slurm_script(tmp_path, capsys):
    spec_file = tmp_path / "s.yaml"
    spec_file.write_text(yaml.safe_dump(SPEC))
    assert load_spec(spec_file)["name"] == "t"
    out = tmp_path / "out"
    assert main([str(spec_file), "--out", str(out), "--emit"]) == 0
    text = capsys.readouterr().out
    assert text.count("critical fit") == 8 and "# stage 2" in text
    assert "when these have finished" in text and "critical sweep" in text  # detectors wait
    assert not (out / "sweep.json").exists()  # --emit only prints

    # the SLURM script, run against a fake sbatch that executes each array task, and a fake
    # `critical` that records its arguments: every run is launched exactly once, stage 2 after 1
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "sbatch").write_text(
        "#!/usr/bin/env bash\n"
        'for a in "$@"; do case $a in --array=*) arr=${a#--array=};; --wrap=*) wrap=${a#--wrap=};;'
        ' --dependency=*) echo "$a" >> "$LOG";; esac; done\n'
        'if [ -n "${arr:-}" ]; then for i in $(seq ${arr%-*} ${arr#*-}); do'
        ' SLURM_ARRAY_TASK_ID=$i bash -c "$wrap"; done; else bash -c "$wrap"; fi\n'
        "echo $RANDOM\n"
    )
    (bin_dir / "critical").write_text('#!/usr/bin/env bash\necho "$*" >> "$LOG"\n')
    for f in bin_dir.iterdir():
        f.chmod(f.stat().st_mode | stat.S_IEXEC)
    script = tmp_path / "submit.sh"
    assert (
        main(
            [
                str(spec_file),
                "--out",
                str(out),
                "--slurm",
                str(script),
                "--sbatch-arg=--time=01:00:00",
            ]
        )
        == 0
    )
    log = tmp_path / "calls.log"
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "LOG": str(log)}
    subprocess.run(["bash", str(script)], check=True, env=env, capture_output=True)
    calls = log.read_text().splitlines()
    fits = [c for c in calls if c.startswith("fit ")]
    assert len(fits) == 8 and len(set(fits)) == 8
    # stage 2 after stage 1, and the job that plans the detectors' runs after stage 2
    assert sum(c.startswith("--dependency=afterok:") for c in calls) == 2
    assert all("--ckpt_path" not in c for c in fits[:4]) and all(
        "--ckpt_path" in c for c in fits[4:]
    )
    assert any(c.startswith("sweep ") and "--slurm" in c for c in calls)
    assert len(json.loads((out / "sweep.json").read_text())["runs"]) == 8


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_local_sweep_with_replayed_detectors_matched_runs_and_report(tmp_path, capsys):
    fires = {  # settles after epoch 1 -> cuts at 2, the same branch as fixed@2
        "name": "fires",
        "monitor": "layer_rotation",
        "window": 1,
        "mode": "absolute",
        "threshold": 0.5,
        "patience": 1,
        "min_epochs": 1,
        "guard_learning": False,
        "guard_lr": False,
    }
    never = {"name": "never", "mode": "absolute", "threshold": 1e-9}
    spec = {
        **SPEC,
        "seeds": [0],
        "policies": {"always": True, "fixed": [2], "matched": True, "detector": [fires, never]},
        # validation every 2 epochs: the checkpoint after epoch 1 must still hold epoch 1's row
        "args": [
            "--trainer.max_epochs=3",
            "--trainer.check_val_every_n_epoch=2",
            "--robustness.when=never",
            "--trainer.enable_progress_bar=false",
            "--data.batch_size=256",
        ],
    }
    spec_file = tmp_path / "s.yaml"
    spec_file.write_text(yaml.safe_dump(spec))
    out = tmp_path / "sweep"
    assert main([str(spec_file), "--out", str(out)]) == 0
    trained = capsys.readouterr().out
    branch = json.loads((out / "small_cnn-fixed_2-s0" / "metrics.json").read_text())
    assert [(r["epoch"], r["multiplicity"]) for r in branch] == [(0, 3), (1, 3), (2, 1)]
    trunk = json.loads((out / "small_cnn-always-k3-s0" / "metrics.json").read_text())
    assert branch[1]["val/acc"] == trunk[1]["val/acc"]  # the branch shares the trunk's epochs 0-1
    assert branch[1]["train/loss"] == trunk[1]["train/loss"]
    energy = json.loads((out / "small_cnn-fixed_2-s0" / "energy.json").read_text())
    assert [h["epoch"] for h in energy["history"]] == [0, 1, 2]

    # the replayed detectors: one shares the fixed@2 branch, one never fired (= the trunk)
    cfg = json.loads((out / "small_cnn-detector_fires-s0" / "config.json").read_text())
    assert cfg["alias_of"] == "small_cnn-fixed_2-s0" and cfg["tags"]["cut_at"] == 2
    assert cfg["tags"]["replay"]["event"]["epoch"] == 1 and cfg["tags"]["fired"] is True
    cfg = json.loads((out / "small_cnn-detector_never-s0" / "config.json").read_text())
    assert cfg["alias_of"] == "small_cnn-always-k3-s0" and cfg["tags"]["fired"] is False
    assert "copied, no training" in trained
    # one matched k = 1 run for the one cut epoch: 3 * 2 + 1 = 7 epochs of k = 1
    matched = json.loads((out / "small_cnn-matched-k1_2-s0" / "metrics.json").read_text())
    assert len(matched) == 7 and {r["multiplicity"] for r in matched} == {1}

    assert main([str(spec_file), "--out", str(out)]) == 0  # finished runs are not run again
    assert " ok in " not in capsys.readouterr().out

    # the sweep grows after its checkpoints were deleted: the trunk's epoch 0 is trained again
    shutil.rmtree(out / "checkpoints")
    spec["policies"]["fixed"] = [1, 2]
    spec_file.write_text(yaml.safe_dump(spec))
    assert main([str(spec_file), "--out", str(out)]) == 0
    said = capsys.readouterr().out
    assert "small_cnn-always-k3-s0's checkpoints are gone; training its epochs 0-0 again" in said
    regrown = json.loads((out / ".regrow/small_cnn-always-k3-s0/regrow.json").read_text())
    assert regrown["agrees"] is True, regrown["how"]  # seeded, one thread: the same epoch
    assert (out / "checkpoints/small_cnn-s0/epoch=0.ckpt").is_file()
    assert not (out / "checkpoints/small_cnn-s0/epoch=1.ckpt").exists()  # stopped after 0
    one = json.loads((out / "small_cnn-fixed_1-s0" / "metrics.json").read_text())
    assert [(r["epoch"], r["multiplicity"]) for r in one] == [(0, 3), (1, 1), (2, 1)]
    assert one[0]["train/loss"] == trunk[0]["train/loss"]
    assert report_main([str(out)]) == 0
    summary = (out / "report" / "summary.md").read_text()
    for label in ("always-k3", "fixed@2", "detector:fires", "detector:never", "matched-k1@2"):
        assert label in summary


def test_threads_per_run(tmp_path, monkeypatch):
    """`critical sweep --threads N` gives each run N CPU threads (OMP/MKL); the default is the
    caller's OMP_NUM_THREADS, else 1; 0 leaves torch's default (issue 28, item 5)."""
    from critical.sweep.runner import run_local, thread_env

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert thread_env(None)["OMP_NUM_THREADS"] == "1"
    assert thread_env(3)["MKL_NUM_THREADS"] == "3"
    assert "OMP_NUM_THREADS" not in thread_env(0, {"OMP_NUM_THREADS": "2"})
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    assert thread_env(None)["OMP_NUM_THREADS"] == "2"
    # a fake interpreter records the environment each run gets
    record = tmp_path / "threads.txt"
    fake = tmp_path / "python"
    fake.write_text(f'#!/bin/sh\necho "$OMP_NUM_THREADS" >> {record}\nexit 1\n')
    fake.chmod(0o755)
    spec = {"name": "t", "config": "experiments/quickstart.yaml", "seeds": [0], "k": 3,
            "policies": {"always": True}}  # fmt: skip
    run_local(spec, tmp_path / "out", python=str(fake), threads=4)
    assert record.read_text().split() == ["4"]


def test_emitted_and_slurm_commands_carry_the_threads(tmp_path, capsys):
    spec_file = tmp_path / "s.yaml"
    spec_file.write_text(yaml.safe_dump(SPEC))
    out = tmp_path / "out"
    assert main([str(spec_file), "--out", str(out), "--emit", "--threads", "2"]) == 0
    lines = [ln for ln in capsys.readouterr().out.splitlines() if "critical fit" in ln]
    assert lines and all(ln.startswith("OMP_NUM_THREADS=2 MKL_NUM_THREADS=2 ") for ln in lines)
    script = tmp_path / "submit.sh"
    assert main([str(spec_file), "--out", str(out), "--slurm", str(script), "--threads", "2"]) == 0
    text = script.read_text()
    assert "export OMP_NUM_THREADS=2 MKL_NUM_THREADS=2" in text and "--threads 2" in text
