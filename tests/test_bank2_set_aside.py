"""experiments/bank2/set_aside.py: a stop's half-finished runs are moved aside, not deleted."""

from __future__ import annotations

from pathlib import Path

from helpers import load_script

from critical.io import atomic_write_csv, atomic_write_json

ROOT = Path(__file__).resolve().parents[1]


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
    sa = load_script(ROOT / "experiments/bank2/set_aside.py", "bank2_set_aside")
    done = run(tmp_path, "m-E4-always-k3-s0", 4, True)
    killed_trunk = run(tmp_path, "m-E4-always-k3-s1", 2, False)
    killed_branch = run(tmp_path, "m-E4-fixed_2-s0", 3, False)
    for seed in (0, 1):
        ckpt = tmp_path / "checkpoints" / f"m-E4-s{seed}"
        ckpt.mkdir(parents=True)
        (ckpt / "epoch=0.ckpt").write_bytes(b"x")
    (tmp_path / "logs").mkdir()

    assert sa.unfinished(tmp_path) == [killed_trunk, killed_branch]
    assert sa.main([str(tmp_path), str(tmp_path / "not-started")]) == 0
    aside = next((tmp_path / "_set_aside").iterdir())
    assert sorted(p.name for p in aside.iterdir()) == sorted(
        ["checkpoints", killed_trunk.name, killed_branch.name]
    )
    assert (aside / "checkpoints" / "m-E4-s1" / "epoch=0.ckpt").read_bytes() == b"x"
    # the finished trunk, its checkpoints and the logs stay; a second call moves nothing
    assert done.is_dir() and (tmp_path / "checkpoints" / "m-E4-s0").is_dir()
    assert not killed_trunk.exists() and not (tmp_path / "checkpoints" / "m-E4-s1").exists()
    assert sa.set_aside(tmp_path) == []
