"""Two processes, DDP on CPU with gloo: every rank fires and switches k in the same epoch."""

import json
import math
import os
import subprocess
import sys
from collections import Counter

import pytest

HERE = os.path.dirname(os.path.dirname(__file__))  # tests/, where the scripts are


def _run(tmp_path, *extra):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.run(
        [sys.executable, os.path.join(HERE, "ddp_script.py"), str(tmp_path), *extra],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]


@pytest.mark.slow
def test_ddp_ranks_agree(tmp_path):
    _run(tmp_path)
    r0, r1 = (json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1))
    assert r0["event_epoch"] == r1["event_epoch"] == 3  # rank 0's values decide, for both ranks
    assert r0["k"] == r1["k"] == [3, 3, 3, 3, 1, 1]
    # 64 images x k over 2 ranks, batch 8: 12 batches per rank at k=3, 4 at k=1
    assert r0["planned"] == r1["planned"] == r0["ran"] == r1["ran"] == [12, 12, 12, 12, 4, 4]
    for h0, h1 in zip(r0["metrics"], r1["metrics"]):  # gradients are all-reduced: same metrics
        assert [h["epoch"] for h in h0] == [h["epoch"] for h in h1] == list(range(6))
        for a, b in zip(h0, h1):
            for key in a:
                if key not in ("epoch", "layers", "probes"):
                    assert a[key] == pytest.approx(b[key], abs=1e-4)


@pytest.mark.slow
def test_ddp_fast_path_shards_and_switches_together(tmp_path):
    _run(tmp_path, "imagedm")
    r0, r1 = (json.loads((tmp_path / f"imagedm_rank{r}.json").read_text()) for r in (0, 1))
    n = r0["num_train"]
    assert r0["k"] == r1["k"] == [3, 3, 1, 1]
    assert r0["planned"] == r1["planned"] == r0["ran"] == r1["ran"]
    for epoch, k in enumerate(r0["k"]):
        a, b = r0["orders"][epoch], r1["orders"][epoch]
        share = math.ceil(n * k / 2)  # each rank's equal share of the k*N positions
        assert len(a) == len(b) == share
        assert r0["planned"][epoch] == math.ceil(share / 8)  # batches of 8
        counts = Counter(a + b)
        assert set(counts) == set(range(n))  # together the ranks cover every image...
        assert all(k <= c <= k + 1 for c in counts.values())  # ...k times (+1 wrap-around pad)
    # EnergyTracker: samples and FLOPs are cluster totals, the same on every rank; energy only
    # from local rank 0's tracker, summed
    h0, h1 = r0["energy_history"], r1["energy_history"]
    assert [h["samples"] for h in h0] == [h["samples"] for h in h1]
    assert [h["samples"] for h in h0] == [2 * len(r0["orders"][e]) for e in range(4)]
    assert r0["flops_per_sample"] == r1["flops_per_sample"] > 0
    for a, b in zip(h0, h1):
        assert a["flops"] == b["flops"] == pytest.approx(a["samples"] * r0["flops_per_sample"])
        assert a["energy_kwh"] == pytest.approx(b["energy_kwh"]) and a["energy_kwh"] > 0
    assert r0["flops_saving"] == pytest.approx(1 - (3 * 2 + 2) / (3 * 4), abs=0.02)


@pytest.mark.slow
def test_ddp_ranks_name_a_divergence_alike(tmp_path):
    # the broadcast readings used to lose which float was the training loss (an identity
    # test), so rank 1 named "training loss is nan" twice
    _run(tmp_path, "diverge")
    r0, r1 = (json.loads((tmp_path / f"diverge_rank{r}.json").read_text()) for r in (0, 1))
    assert r0["diverged"] == r1["diverged"] and not r0["fired"] and not r1["fired"]
    assert r0["diverged"]["epoch"] == 1
    assert r0["diverged"]["cause"].count("training loss is nan") == 1
