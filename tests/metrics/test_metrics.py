"""critical.metrics against brute-force float64 references and analytic cases."""

import itertools
import math

import pytest
import torch
from torch import nn

from critical.metrics import (
    StreamingConfusion,
    StreamingCosine,
    cosine,
    gradient_confusion,
    gradient_layout,
    gradient_predictability,
    layer_rotation,
    pairwise_cosine,
    segment_sum,
    weight_layout,
)


def ref_cos(a, b):
    a, b = a.double().flatten(), b.double().flatten()
    na, nb = a.norm().item(), b.norm().item()
    return 0.0 if na == 0 or nb == 0 else (a @ b).item() / (na * nb)


def ref_confusion(grads, lengths=None):
    """Every pair, one at a time, in float64."""
    segs = [(0, grads.shape[1])]
    if lengths is not None:
        bounds = [0, *itertools.accumulate(lengths)]
        segs = list(itertools.pairwise(bounds))
    out = []
    for s, e in segs:
        vals = [
            ref_cos(grads[i, s:e], grads[j, s:e])
            for i in range(len(grads))
            for j in range(len(grads))
            if i != j
        ]
        out.append((sum(vals) / len(vals), min(vals), max(vals)))
    return out


@pytest.mark.parametrize("seed", range(3))
def test_gradient_confusion_matches_brute_force(seed):
    g = torch.Generator().manual_seed(seed)
    lengths = [5, 1, 17, 3]
    grads = torch.randn(6, sum(lengths), generator=g) + 0.3
    grads[2, 5] = 0.0  # a zero layer segment (the 1-element layer)
    r = gradient_confusion(grads, lengths)
    ((whole_mean, whole_min, whole_max),) = ref_confusion(grads)
    assert r.mean.item() == pytest.approx(whole_mean, abs=1e-6)
    assert r.min.item() == pytest.approx(whole_min, abs=1e-6)
    assert r.max.item() == pytest.approx(whole_max, abs=1e-6)
    for li, (m, mn, mx) in enumerate(ref_confusion(grads, lengths)):
        assert r.layer_mean[li].item() == pytest.approx(m, abs=1e-6)
        assert r.layer_min[li].item() == pytest.approx(mn, abs=1e-6)
        assert r.layer_max[li].item() == pytest.approx(mx, abs=1e-6)


def test_analytic_cosines():
    e1, e2 = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 3.0])
    assert cosine(e1, e1 * 5).item() == pytest.approx(1.0)
    assert cosine(e1, e2).item() == 0.0
    assert cosine(e1, -2 * e1).item() == pytest.approx(-1.0)
    assert cosine(e1, torch.zeros(2)).item() == 0.0  # zero vector: 0, not NaN
    assert cosine(torch.zeros(2), torch.zeros(2)).item() == 0.0
    r = gradient_confusion(torch.stack([e1, e1 * 2, e1 * 3]))
    assert r.mean.item() == pytest.approx(1.0) and r.min.item() == pytest.approx(1.0)
    r = gradient_confusion(torch.stack([e1, -e1]))
    assert r.mean.item() == pytest.approx(-1.0) and r.min.item() == pytest.approx(-1.0)
    r = gradient_confusion(torch.stack([e1, torch.zeros(2)]))
    assert r.mean.item() == 0.0 and not torch.isnan(r.mean)
    with pytest.raises(ValueError, match="N >= 2"):
        gradient_confusion(e1[None])


def test_predictability_and_rotation_match_reference():
    g = torch.Generator().manual_seed(1)
    lengths = [4, 9, 2]
    a, b = torch.randn(15, generator=g), torch.randn(15, generator=g)
    r = gradient_predictability(a, b, lengths)
    assert r.value.item() == pytest.approx(ref_cos(a, b), abs=1e-6)
    s = 0
    for li, n in enumerate(lengths):
        assert r.layers[li].item() == pytest.approx(ref_cos(a[s : s + n], b[s : s + n]), abs=1e-6)
        rot = layer_rotation(a, b, lengths)[li].item()
        assert rot == pytest.approx(1 - ref_cos(a[s : s + n], b[s : s + n]), abs=1e-6)
        s += n
    assert layer_rotation(a, a).item() == pytest.approx(0.0, abs=1e-6)
    assert layer_rotation(a, -a).item() == pytest.approx(2.0)
    assert layer_rotation(a, 3 * a, lengths).abs().max().item() < 1e-6  # scale is not rotation


def test_segment_sum_and_pairwise():
    x = torch.arange(10.0).reshape(2, 5)
    assert segment_sum(x, [2, 3]).tolist() == [[1.0, 9.0], [11.0, 24.0]]
    with pytest.raises(ValueError, match="sum to"):
        segment_sum(x, [2, 2])
    p = pairwise_cosine(torch.tensor([[1.0, 0.0], [0.0, 0.0]]))
    assert p.tolist() == [[1.0, 0.0], [0.0, 0.0]]


@pytest.mark.parametrize("sketch_dim", [0, 4, 64])
def test_streaming_confusion_matches_exact(sketch_dim):
    g = torch.Generator().manual_seed(3)
    lengths = [3, 40, 1, 7]
    grads = torch.randn(8, sum(lengths), generator=g) + 0.2
    grads[4, 43] = 0.0  # zero 1-element layer in one probe
    acc = StreamingConfusion(lengths, sketch_dim=sketch_dim)
    for row in grads:
        acc.update(row.clone())
    out = acc.compute()
    exact = gradient_confusion(grads.double(), lengths)
    assert out["count"] == 8 and out["skipped"] == 0
    assert out["mean"] == pytest.approx(exact.mean.item(), abs=1e-5)
    assert out["layer_mean"] == pytest.approx(exact.layer_mean.tolist(), abs=1e-5)
    if sketch_dim == 0:
        assert math.isnan(out["min"])
    elif sketch_dim >= max(lengths):  # every layer fits its sketch: exact
        assert out["min"] == pytest.approx(exact.min.item(), abs=1e-5)
        assert out["layer_min"] == pytest.approx(exact.layer_min.tolist(), abs=1e-5)
        assert out["max"] == pytest.approx(exact.max.item(), abs=1e-5)
        assert out["layer_max"] == pytest.approx(exact.layer_max.tolist(), abs=1e-5)
    else:  # layers that fit are exact, others are estimates within [-1, 1]
        for li, n in enumerate(lengths):
            if n <= sketch_dim:
                assert out["layer_min"][li] == pytest.approx(exact.layer_min[li].item(), abs=1e-5)
            assert -1.0 <= out["layer_min"][li] <= 1.0


def test_streaming_confusion_sketch_estimate_is_close_for_large_layers():
    g = torch.Generator().manual_seed(0)
    base = torch.randn(20000, generator=g)
    grads = torch.stack([base + 1.5 * torch.randn(20000, generator=g) for _ in range(6)])
    acc = StreamingConfusion([20000], sketch_dim=1024)
    for row in grads:
        acc.update(row.clone())
    exact = gradient_confusion(grads.double())
    assert acc.compute()["min"] == pytest.approx(exact.min.item(), abs=0.1)


def test_streaming_skips_non_finite_and_handles_zero():
    acc = StreamingConfusion([2, 2], sketch_dim=8)
    acc.update(torch.tensor([1.0, 0.0, 1.0, 0.0]))
    acc.update(torch.tensor([float("inf"), 0.0, 1.0, 0.0]))
    acc.update(torch.tensor([float("nan"), 0.0, 1.0, 0.0]))
    acc.update(torch.zeros(4))
    acc.update(torch.tensor([1.0, 0.0, 1.0, 0.0]))
    out = acc.compute()
    assert out["count"] == 3 and out["skipped"] == 2
    # pairs: (a, 0)=0, (a, a)=1, (0, a)=0 -> mean 1/3 over the 3 unordered pairs
    assert out["mean"] == pytest.approx(1 / 3)
    assert all(math.isfinite(v) for v in out["layer_mean"] + out["layer_min"])
    assert out["min"] == pytest.approx(0.0)


def test_streaming_confusion_reset_and_state_roundtrip():
    g = torch.Generator().manual_seed(5)
    grads = torch.randn(5, 12, generator=g)
    a = StreamingConfusion([5, 7], sketch_dim=8)
    for row in grads[:3]:
        a.update(row.clone())
    b = StreamingConfusion([5, 7], sketch_dim=8)
    b.load_state_dict(a.state_dict())
    for acc in (a, b):
        for row in grads[3:]:
            acc.update(row.clone())
    assert a.compute() == b.compute()
    a.reset()
    assert a.compute()["count"] == 0


def test_streaming_cosine():
    g = torch.Generator().manual_seed(2)
    vs = torch.randn(5, 9, generator=g)
    acc = StreamingCosine([4, 5])
    for i in range(4):
        acc.update(vs[i], vs[i + 1])
    acc.update(vs[0], torch.full((9,), float("nan")))
    out = acc.compute()
    assert out["count"] == 4 and out["skipped"] == 1
    assert out["mean"] == pytest.approx(
        sum(ref_cos(vs[i], vs[i + 1]) for i in range(4)) / 4, abs=1e-6
    )
    l0 = sum(ref_cos(vs[i, :4], vs[i + 1, :4]) for i in range(4)) / 4
    assert out["layer_mean"][0] == pytest.approx(l0, abs=1e-6)


def test_layouts():
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(4, 2))
    mha = nn.MultiheadAttention(8, 2)
    assert gradient_layout(net).names == ["0", "1", "3"]
    assert gradient_layout(net).numel == sum(p.numel() for p in net.parameters())
    assert weight_layout(net).names == ["0.weight", "3.weight"]
    assert len(weight_layout(net, include="all").names) == 6
    assert weight_layout(mha).names == ["in_proj_weight", "out_proj.weight"]
    net[0].weight.requires_grad_(False)
    assert weight_layout(net).names == ["3.weight"]
    with pytest.raises(ValueError, match="weights"):
        weight_layout(net, include="bogus")
    frozen = nn.Linear(2, 2).requires_grad_(False)
    with pytest.raises(ValueError, match="no trainable parameters"):
        gradient_layout(frozen)
    # views write through to the flat buffer
    lay = gradient_layout(net)
    buf = lay.new_buffer()
    torch._foreach_copy_(lay.param_views(buf), [torch.ones_like(p) for p in lay.params])
    assert buf.sum().item() == lay.numel
