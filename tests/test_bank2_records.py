"""Bank v2's runs kept across sessions (experiments/bank2/records.py) and a restored trunk's
first epochs trained again (prefix.py, stop_after.py)."""

from __future__ import annotations

import inspect
import json
import sys
from pathlib import Path
from typing import Any

import pytest
from helpers import load_script

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture()
def rec(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("BANK2_RECORDS", str(tmp_path / "records"))
    return load_script(ROOT / "experiments/bank2/records.py", "bank2_records")


def run(folder: Path, name: str, seed: int, finished: bool = True) -> None:
    d = folder / name
    d.mkdir(parents=True)
    tags = {"model": "m", "budget": 4, "seed": seed, "label": name}
    (d / "config.json").write_text(json.dumps({"tags": tags, "trainer": {"max_epochs": 4}}))
    (d / "metrics.csv").write_text("epoch,val/loss\n0,1.5\n")
    (d / "events.out.tfevents.1").write_text("large")
    if finished:
        (d / "summary.json").write_text("{}")


def test_finished_runs_kept_incrementally_and_restored(rec: Any, tmp_path: Path) -> None:
    out = tmp_path / "out"
    folder = out / "v1" / "s"
    folder.mkdir(parents=True)
    (folder / "sweep.json").write_text("{}")
    run(folder, "trunk-s0", 0)
    run(folder, "fixed-s0", 0, finished=False)  # still training: not kept
    run(folder, "trunk-s1", 1)
    (folder / "checkpoints").mkdir()
    first = rec.save(out)
    assert sorted(p.name for p in first) == ["m-E4-s0.tar.xz", "m-E4-s1.tar.xz"]
    assert rec.save(out) == []  # nothing new
    (folder / "fixed-s0" / "summary.json").write_text("{}")
    run(folder / ".prefix", "trunk-s0", 0)  # prefix.py's rerun of a trunk's first epochs
    new = sorted(p.name for p in rec.save(out))
    assert new == ["m-E4-s0.1.tar.xz", "prefix.tar.xz"]  # only the new runs

    fresh = tmp_path / "fresh"
    assert len(rec.restore(fresh)) == 4
    got = fresh / "v1" / "s"
    assert sorted(p.name for p in got.iterdir()) == [".prefix", "fixed-s0", "trunk-s0", "trunk-s1"]
    assert (got / ".prefix" / "trunk-s0" / "summary.json").is_file()
    assert not list(got.glob("*/events.out.tfevents*"))  # TensorBoard files are not kept
    (got / "trunk-s1" / "metrics.csv").write_text("changed")
    assert rec.restore(fresh) == []  # what is there is never overwritten
    assert (got / "trunk-s1" / "metrics.csv").read_text() == "changed"


def test_the_bank_uses_the_librarys_stopper_and_regrow() -> None:
    """The frozen tree's runs import ``stop_after.StopAfterEpoch``: the library's class."""
    stop_after = load_script(ROOT / "experiments/bank2/stop_after.py", "stop_after")
    library = ROOT / "src/critical/callbacks/stop_after_epoch.py"
    assert inspect.getsourcefile(stop_after.StopAfterEpoch.__mro__[1]) == str(library)
    assert stop_after.StopAfterEpoch(3).last == 3
    sys.path.insert(0, str(ROOT / "experiments/bank2"))
    try:
        prefix = load_script(ROOT / "experiments/bank2/prefix.py", "bank2_prefix")
    finally:
        sys.path.remove(str(ROOT / "experiments/bank2"))
    assert prefix.regrow.rows_agree(
        [{"epoch": 0, "val/loss": 1.0}], [{"epoch": 0, "val/loss": 1.0}]
    )[0]
