"""(#21) The metric callbacks under DDP (also with a torch.compile'd model), FSDP (use_orig_params True and False) and FSDP2 on 2 CPU
processes (gloo) give the values of one process training on the same global batches; one
collective per probed step and none otherwise; FSDP2 resumes from a checkpoint with its state.

One 2-process launch runs every strategy one after the other (tests/sharded_script.py); the
one-process reference runs here."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).parent.parent  # tests/, where the scripts are
MODES = ("ddp", "ddp_compile", "fsdp_orig", "fsdp_flat", "fsdp2", "fsdp2_resume")


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> Path:
    import sharded_script

    out = tmp_path_factory.mktemp("sharded")
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(  # the 2-process runs, while the reference runs here
        [sys.executable, str(HERE / "sharded_script.py"), str(out), *MODES, "fsdp2_dim1"],
        cwd=out,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    sharded_script.main(out, ["single"])
    log, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, log[-4000:]
    return out


def load(out: Path, mode: str, rank: int = 0) -> dict:
    return json.loads((out / f"{mode}_rank{rank}.json").read_text())


def assert_same_history(ref: list[dict], got: list[dict], what: str) -> None:
    assert [h["epoch"] for h in got] == [h["epoch"] for h in ref], what
    for a, b in zip(ref, got):
        assert set(a) == set(b), (what, a["epoch"])  # e.g. no "partial" marker after a resume
        for key, v in a.items():
            if key == "layers":
                assert set(v) == set(b[key])
                for name, values in v.items():
                    assert b[key][name] == pytest.approx(values, abs=1e-5), (what, name)
            elif isinstance(v, float):
                assert b[key] == pytest.approx(v, abs=1e-5), (what, a["epoch"], key)
            else:
                assert b[key] == v, (what, a["epoch"], key)


@pytest.mark.slow
@pytest.mark.parametrize("mode", MODES)
def test_every_metric_equals_the_one_process_run(runs, mode):
    ref = load(runs, "single")
    for rank in (0, 1):
        got = load(runs, mode, rank)
        assert set(got["histories"]) == set(ref["histories"])
        for key, history in ref["histories"].items():
            assert len(history) == 3, key
            assert_same_history(history, got["histories"][key], f"{mode} rank {rank} {key}")
        assert got["layer_names"] == ref["layer_names"]  # wrapper names stripped
    # the gradient statistics are not trivial: probes taken, values away from 0
    (confusion,) = [h for k, h in ref["histories"].items() if "'stream'" in k]
    assert all(h["probes"] == 4 for h in confusion)
    assert all(abs(h["gradient_confusion/mean"]) > 1e-3 for h in confusion)


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["fsdp_orig", "fsdp_flat", "fsdp2"])
def test_each_rank_keeps_its_share_of_the_per_element_state(runs, mode):
    sizes = [load(runs, mode, r)["state_sizes"] for r in (0, 1)]
    assert sizes[0]
    for key, (local0, whole) in sizes[0].items():
        local1, whole1 = sizes[1][key]
        assert whole1 == whole and local0 + local1 == whole, key
        assert max(local0, local1) < whole, key  # O(P / world size), not O(P)


@pytest.mark.slow
def test_one_collective_per_probed_step_and_none_at_other_steps(runs):
    # 8 steps per epoch, 4 probes: steps 0, 2, 4, 6 (predictability closes its pairs at 1, 3, 5,
    # 7 from partial sums, summed at epoch end: no collective there)
    for mode in ("fsdp_orig", "fsdp_flat", "fsdp2"):
        for rank in (0, 1):
            assert load(runs, mode, rank)["collectives_per_step"] == [1, 0] * 12, mode
    assert load(runs, "ddp")["collectives_per_step"] == [0] * 24  # DDP: nothing to sum


@pytest.mark.slow
def test_an_unsupported_sharding_is_a_clear_error_before_training(runs):
    message = load(runs, "fsdp2_dim1")["error"]
    assert "Shard(dim=1)" in message and "sharded on dimension 0" in message
