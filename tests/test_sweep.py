"""`critical sweep`: the plan, emitted commands, the SLURM script, and a real local sweep."""

import json
import os
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
    assert len(runs) == 2 * 5
    assert [r.stage for r in runs] == [1] * 6 + [2] * 4  # branches after their trunks
    by = {r.name: r for r in runs}
    trunk = by["small_cnn-always-k3-s0"]
    assert "--cutoff.policy=never" in trunk.args
    assert "--trainer.callbacks+=ModelCheckpoint" in trunk.args
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
    det = by["small_cnn-detector_layer_rotation_0.5-s0"]
    assert "--critical_period.threshold=0.5" in det.args
    assert det.tags["label"] == "detector:layer_rotation@0.5"
    no_oracle = plan({**SPEC, "oracle": False, "policies": {"fixed": [3]}}, tmp_path)
    assert [r.stage for r in no_oracle] == [1, 1] and "--ckpt_path" not in " ".join(
        no_oracle[0].args
    )


@pytest.mark.parametrize(
    "bad, match",
    [
        ({"policies": {"sometimes": True}}, "valid"),
        ({"policies": {"detector": [{"threshold": 0.1}]}}, "monitor"),
        ({"policies": {"detector": [{"monitor": "x", "speed": 1}]}}, "valid"),
        ({"k": 1}, ">= 2"),
        ({"policies": {"fixed": [0]}}, ">= 1"),
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
    assert text.count("critical fit") == 10 and "# stage 2" in text
    manifest = json.loads((out / "sweep.json").read_text())
    assert len(manifest["runs"]) == 10

    # the SLURM script, run against a fake sbatch that executes each array task, and a fake
    # `critical` that records its arguments: every run is launched exactly once, stage 2 after 1
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "sbatch").write_text(
        "#!/usr/bin/env bash\n"
        'for a in "$@"; do case $a in --array=*) arr=${a#--array=};; --wrap=*) wrap=${a#--wrap=};;'
        ' --dependency=*) echo "$a" >> "$LOG";; esac; done\n'
        'for i in $(seq ${arr%-*} ${arr#*-}); do SLURM_ARRAY_TASK_ID=$i bash -c "$wrap"; done\n'
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
    assert len(fits) == 10 and len(set(fits)) == 10
    assert sum(c.startswith("--dependency=afterok:") for c in calls) == 1
    assert all("--ckpt_path" not in c for c in fits[:6]) and all(
        "--ckpt_path" in c for c in fits[6:]
    )


@pytest.mark.slow
def test_local_sweep_with_oracle_then_report(tmp_path, capsys):
    spec = {
        **SPEC,
        "seeds": [0],
        "policies": {
            "always": True,
            "fixed": [2],
            "detector": [{"monitor": "layer_rotation", "threshold": 0.5, "patience": 1}],
        },
        # validation every 2 epochs: the checkpoint after epoch 1 must still hold epoch 1's row
        "args": [
            "--trainer.max_epochs=3",
            "--trainer.check_val_every_n_epoch=2",
            "--robustness.num_images=32",
            "--robustness.corruptions=[contrast]",
            "--trainer.enable_progress_bar=false",
            "--data.batch_size=256",
        ],
    }
    spec_file = tmp_path / "s.yaml"
    spec_file.write_text(yaml.safe_dump(spec))
    out = tmp_path / "sweep"
    assert main([str(spec_file), "--out", str(out)]) == 0
    branch = json.loads((out / "small_cnn-fixed_2-s0" / "metrics.json").read_text())
    assert [(r["epoch"], r["multiplicity"]) for r in branch] == [(0, 3), (1, 3), (2, 1)]
    trunk = json.loads((out / "small_cnn-always-k3-s0" / "metrics.json").read_text())
    assert branch[1]["val/acc"] == trunk[1]["val/acc"]  # the branch shares the trunk's epochs 0-1
    assert branch[1]["train/loss"] == trunk[1]["train/loss"]
    energy = json.loads((out / "small_cnn-fixed_2-s0" / "energy.json").read_text())
    assert [h["epoch"] for h in energy["history"]] == [0, 1, 2]
    assert main([str(spec_file), "--out", str(out)]) == 0  # complete runs are skipped
    assert capsys.readouterr().out.count("complete, skipped") == 3
    assert report_main([str(out)]) == 0
    summary = (out / "report" / "summary.md").read_text()
    for label in ("always-k3", "fixed@2", "detector:layer_rotation@0.5"):
        assert label in summary
