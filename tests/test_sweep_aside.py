"""critical.sweep.aside: a stop's half-finished runs are moved aside, not deleted."""

from __future__ import annotations

from pathlib import Path

from critical.io import atomic_write_csv, atomic_write_json
from critical.sweep.aside import set_aside, unfinished


def run(folder: Path, name: str, epochs: int, finished: bool) -> Path:
    d = folder / name
    d.mkdir(parents=True)
    atomic_write_json(d / "config.json", {"trainer": {"max_epochs": 4}, "tags": {}})
    rows = [{"epoch": e, "critical/train_loss": 1.0} for e in range(epochs)]
    atomic_write_csv(d / "metrics.csv", rows, fieldnames=list(rows[0]))
    if finished:
        atomic_write_json(d / "summary.json", {"epochs": epochs})
    return d


def test_unfinished_runs_and_a_trunks_checkpoints_move_aside(tmp_path):
    done = run(tmp_path, "m-E4-always-k3-s0", 4, True)
    killed_trunk = run(tmp_path, "m-E4-always-k3-s1", 2, False)
    killed_branch = run(tmp_path, "m-E4-fixed_2-s0", 3, False)
    for seed in (0, 1):
        ckpt = tmp_path / "checkpoints" / f"m-E4-s{seed}"
        ckpt.mkdir(parents=True)
        (ckpt / "epoch=0.ckpt").write_bytes(b"x")
    (tmp_path / "logs").mkdir()

    assert unfinished(tmp_path) == [killed_trunk, killed_branch]
    assert unfinished(tmp_path / "not-started") == []
    assert set_aside(tmp_path, stamp="t") == [killed_trunk, killed_branch]
    aside = tmp_path / ".set_aside" / "t"
    assert sorted(p.name for p in aside.iterdir()) == sorted(
        ["checkpoints", killed_trunk.name, killed_branch.name]
    )
    assert (aside / "checkpoints" / "m-E4-s1" / "epoch=0.ckpt").read_bytes() == b"x"
    # the finished trunk, its checkpoints and the logs stay; a second call moves nothing
    assert done.is_dir() and (tmp_path / "checkpoints" / "m-E4-s0").is_dir()
    assert not killed_trunk.exists() and not (tmp_path / "checkpoints" / "m-E4-s1").exists()
    assert set_aside(tmp_path) == []


def test_only_the_named_runs(tmp_path):
    a = run(tmp_path, "m-E4-fixed_2-s0", 1, False)
    b = run(tmp_path, "m-E4-fixed_2-s1", 1, False)
    assert set_aside(tmp_path, names=[b.name], stamp="t") == [b]
    assert a.is_dir() and (tmp_path / ".set_aside" / "t" / b.name).is_dir()


def test_sweep_retry_unfinished_trains_a_killed_run_again(tmp_path, monkeypatch, capsys):
    import subprocess
    import sys
    from types import SimpleNamespace

    import yaml
    from helpers import TINY_FIT_ARGS, fit_in_process

    from critical.sweep import main
    from critical.sweep import runner as sweep_runner

    monkeypatch.setattr(
        sweep_runner, "subprocess", SimpleNamespace(run=fit_in_process, STDOUT=subprocess.STDOUT)
    )
    monkeypatch.setattr(sys, "argv", ["critical"])  # LightningCLI reads args, not pytest's argv
    root = Path(__file__).resolve().parents[1]
    spec = {
        "name": "retry",
        "config": str(root / "experiments" / "quickstart.yaml"),
        "seeds": [0],
        "k": 3,
        "policies": {"always": True},
        "args": ["--trainer.max_epochs=2", "--data.train_size=100", *TINY_FIT_ARGS],
    }
    spec_file = tmp_path / "s.yaml"
    spec_file.write_text(yaml.safe_dump(spec))
    out = tmp_path / "sweep"
    killed = run(out, "small_cnn-always-k3-s0", 1, False)  # a stop killed it after an epoch

    assert main([str(spec_file), "--out", str(out)]) == 1
    assert "--retry-unfinished" in capsys.readouterr().out  # the message says how
    assert main([str(spec_file), "--out", str(out), "--retry-unfinished", "--emit"]) == 2
    assert killed.is_dir()

    assert main([str(spec_file), "--out", str(out), "--retry-unfinished"]) == 0
    assert "set aside (unfinished" in capsys.readouterr().out
    assert unfinished(out) == [] and (out / killed.name / "summary.json").is_file()
    (aside,) = (out / ".set_aside").iterdir()
    assert (aside / killed.name / "metrics.csv").is_file()  # the killed run's files, kept
    # a hidden folder: the report reads the sweep's runs, not the ones set aside
    from critical.report.runs import load_runs

    assert [r.name for r in load_runs(out)] == [killed.name]
