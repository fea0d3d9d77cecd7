"""Bank v2's selection script (experiments/bank2/select.py) on a small synthetic bank."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
from helpers import load_script

from critical.detector import replay
from critical.io import atomic_write_csv, atomic_write_json

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def b2() -> Any:
    return load_script(ROOT / "experiments/bank2/select.py", "bank2_select")


E = 40


def cosine(e: int) -> float:
    return 0.001 * (1 + math.cos(math.pi * e / E))


def fake_rows(val: bool, seed: int = 0) -> list[dict[str, Any]]:
    rows = []
    for e in range(E):
        row = {
            "epoch": e,
            "critical/lr": cosine(e),
            "critical/lr_mean": cosine(e + 0.5),
            "critical/train_loss": 1.0 / (1 + e),
            "critical/layer_rotation": 1 - math.exp(-(e + 1 + seed) / 6),
            "critical/aug_gap/aug_loss": 1.2 / (1 + e),
            "critical/gradient_norm": 1.0 + 1.0 / (1 + e),
        }
        if val:
            row["val/loss"] = 1.0 + 1.0 / (1 + e)
            row["val/acc"] = 0.9
        rows.append(row)
    return rows


def mass_cut(rows: list[dict[str, Any]], f: float) -> int:
    """The cut the floor makes, by hand: after the first epoch (from the 3rd) whose LR mass
    left is at most f."""
    rates = [r["critical/lr_mean"] for r in rows]
    total = sum(rates)
    for e in range(2, E):
        if sum(rates[e + 1 :]) / total <= f:
            return e + 1
    return E


def write_run(folder: Path, label: str, acc: float, rows: list[dict[str, Any]], seed: int):
    d = folder / f"m-E{E}-{label.replace('@', '_')}-s{seed}"
    d.mkdir(parents=True)
    tags = {"label": label, "seed": seed, "budget": E}
    atomic_write_json(d / "config.json", {"trainer": {"max_epochs": E}, "tags": tags})
    atomic_write_csv(d / "metrics.csv", rows, fieldnames=list(rows[0]))
    atomic_write_json(d / "robustness.json", {"clean_acc": acc})
    atomic_write_json(d / "summary.json", {"epochs": E})


def write_setting(root: Path, name: str, val: bool, accs: dict[int, float], seeds=(0,)):
    """A setting folder named after a bank-v2 sweep: always-k3, k1 and the fixed cuts."""
    for seed in seeds:
        rows = fake_rows(val, seed)
        write_run(root / name, "always-k3", accs[E], rows, seed)
        write_run(root / name, "k1", accs[0], rows, seed)
        for c in (4, 8, 12, 20, 28):
            write_run(root / name, f"fixed@{c}", accs[c], rows, seed)


FLAT = dict.fromkeys((0, 4, 8, 12, 20, 28, E), 0.9)


def test_floor_family_cuts_where_the_lr_mass_crosses_f(b2, tmp_path):
    rows = fake_rows(val=False)
    for cand in b2.family_f():
        assert cand.params == 1 and not cand.uses_val
        assert cand.fn(rows, E) == mass_cut(rows, cand.floor)
    # constant LR: the mass left after epoch e is (E - 1 - e) / E
    flat = [{**r, "critical/lr_mean": 0.1, "critical/lr": 0.1} for r in rows]
    assert b2.floor_cut(flat, E, 0.3) == 28  # (39 - 27) / 40 = 0.3
    # through the loader and the table: the floor's cuts, and A+F = its own replay
    write_setting(tmp_path, "ipd", False, FLAT)
    (st,) = b2.load([tmp_path / "ipd"])
    cands = b2.grid()
    table = b2.cut_table(cands, [st])
    for cand in cands:
        if cand.family == "F":
            assert table[(cand, "ipd")].cuts == [mass_cut(st.seeds[0].trunk_rows, cand.floor)]
    af = [c for c in cands if c.family == "A+F" and not c.uses_val][::97]
    for cand in af:
        kw = {k: v for k, v in cand.entry.items() if k not in ("learning_signal",)}
        loss_key = b2.v1.GUARD_SIGNALS[b2._guard_of(cand.entry)]
        det = replay(st.seeds[0].trunk_rows, loss_key=loss_key, **kw)
        want = E if det.event is None else min(det.event.epoch + 1, E)
        assert table[(cand, "ipd")].cuts == [want], cand.label


def _setting(b2, name: str, epochs: int = 200, acc: dict[int, float] | None = None):
    curve = dict.fromkeys((0, 20, 40, 60, 100, 140, epochs), 90.0)
    curve.update(acc or {})
    return b2.v1.Setting(name, epochs, False, {0: b2.v1.Seed([{"epoch": 0}], curve)})


def _cand(b2, label: str, params: int, cut: int) -> Any:
    return b2.Cand("X", label, params, False, fn=lambda rows, e, c=cut: c)


def test_tie_break_prefers_fewer_parameters(b2):
    settings = [_setting(b2, "a"), _setting(b2, "b")]
    # oracle cut 20 of 200 (saving 60%): cut 21 loses 0.6 points of share, cut 23 1.7 points
    best4 = _cand(b2, "four", 4, 20)
    near1 = _cand(b2, "one", 1, 21)
    table = b2.cut_table([best4, near1], settings)
    assert b2.select([best4, near1], settings, table).cand is near1
    far1 = _cand(b2, "one, 2 points off", 1, 23)
    table = b2.cut_table([best4, far1], settings)
    assert b2.select([best4, far1], settings, table).cand is best4


def test_robustness_rule(b2):
    # a loses accuracy from cut 60 on, b and c from cut 40 on
    bad = {20: 90.0, 40: 80.0, 60: 80.0, 100: 80.0, 140: 80.0}
    settings = [_setting(b2, n, acc=bad) for n in "bc"] + [_setting(b2, "a")]
    greedy = _cand(b2, "infeasible on two", 1, 40)
    careful = _cand(b2, "infeasible on none", 4, 20)
    table = b2.cut_table([greedy, careful], settings)
    choice = b2.select([greedy, careful], settings, table)
    assert choice.cand is careful and choice.objective[0] == 0


def test_leave_one_out_never_selects_on_the_left_out_setting(b2, monkeypatch):
    # "bold" (cut 20) is best on b and c but loses 10 points on a; "safe" (cut 140) is
    # feasible everywhere: chosen with a, never when a is left out
    settings = [_setting(b2, "a", acc={20: 80.0, 40: 80.0}), _setting(b2, "b"), _setting(b2, "c")]
    bold, safe = _cand(b2, "bold", 4, 20), _cand(b2, "safe", 4, 140)
    table = b2.cut_table([bold, safe], settings)
    assert b2.select([bold, safe], settings, table).cand is safe

    # every selection a fold makes reads only the other settings' scores
    select, seen = b2.select, []

    def spy(cands, train, tab):
        seen.append({s.name for s in train})
        read = _Watch(tab)
        choice = select(cands, train, read)
        assert read.read <= seen[-1]
        return choice

    monkeypatch.setattr(b2, "select", spy)
    b2.left_out([bold, safe], settings, table)
    assert seen == [{"b", "c"}, {"a", "c"}, {"a", "b"}]
    monkeypatch.undo()
    loo = b2.left_out([bold, safe], settings, table)
    assert loo["a"][0].cand is bold  # chosen on b and c only: a's loss never seen
    assert loo["b"][0].cand is safe and loo["c"][0].cand is safe


class _Watch(dict):
    """A score table that records the settings whose scores were read."""

    def __init__(self, table):
        super().__init__(table)
        self.read: set[str] = set()

    def get(self, key, default=None):
        self.read.add(key[1])
        return super().get(key, default)

    def __getitem__(self, key):
        self.read.add(key[1])
        return super().__getitem__(key)


def test_script_on_one_setting_says_there_is_nothing_to_select_on(b2, tmp_path, capsys):
    write_setting(tmp_path, "ipd", False, {**FLAT, 0: 0.85})
    assert b2.main([str(tmp_path / "ipd")]) == 0
    out = capsys.readouterr().out
    assert "no training settings to select on" in out
    for name in ("fixed@50%", "fixed@70%", "Fukase et al.", "Accordion", "v0.2 rule", "v03"):
        assert f"| ipd | {name} |" in out
    assert "oracle cut 4" in out


def test_script_selects_left_out_over_settings_of_a_root(b2, tmp_path, capsys):
    write_setting(tmp_path, "ipd", False, FLAT)
    write_setting(tmp_path, "osu", True, FLAT, seeds=(0, 1))
    write_setting(tmp_path, "r20_noise", True, {**FLAT, 4: 0.8, 8: 0.8})
    settings = b2.load([tmp_path])
    assert {s.name: (s.has_val, len(s.seeds)) for s in settings} == {
        "ipd": (False, 1),
        "osu": (True, 2),
        "r20_noise": (True, 1),
    }
    assert b2.main([str(tmp_path), "--only", "ipd", "osu"]) == 0
    out = capsys.readouterr().out
    assert "| ipd | data-agnostic |" in out
    assert "| osu | data-agnostic |" in out  # no other setting validates
    assert "r20_noise" not in out


def _plan_cut(rows: list[dict[str, Any]], entry: dict[str, Any]) -> int:
    """The cut a sweep's planner makes for a detector entry: its replay on the trunk's rows
    with the library's defaults filling the rest (critical.sweep.plan)."""
    from critical.sweep.plan import _detector_settings

    settings = _detector_settings(entry)
    det = replay(rows, settings.pop("monitor"), **settings)
    return E if det.event is None else min(det.event.epoch + 1, E)


def test_an_entry_trains_the_cut_its_estimate_scored(b2, tmp_path):
    """selected.yaml holds entries, not labels: each must make, as a sweep's detector entry,
    the cut the selection scored (a mismatch would train another rule than the one chosen)."""
    write_setting(tmp_path, "osu", True, FLAT, seeds=(0, 1))
    (st,) = b2.load([tmp_path / "osu"])
    cands = b2.grid()
    table = b2.cut_table(cands, [st])
    by_family: dict[str, list[Any]] = {}
    for c in cands:
        by_family.setdefault(c.family, []).append(c)
    checked = 0
    for family, group in by_family.items():
        for cand in group[:: max(1, len(group) // 40)]:
            plain = b2._plain(cand.entry)
            for s, seed in st.seeds.items():
                want = table[(cand, "osu")].cuts[s]
                assert _plan_cut(seed.trunk_rows, plain) == want, (family, cand.label)
                checked += 1
    assert set(by_family) == {"F", "S", "A", "A+F", "agree"} and checked > 300


def test_write_then_phase_b_specs(b2, tmp_path, capsys):
    import yaml

    from critical.sweep.spec import check_spec

    pb = load_script(ROOT / "experiments/bank2/phase_b.py", "bank2_phase_b")

    runs = tmp_path / "runs"
    write_setting(runs, "ipd", False, {**FLAT, 4: 0.8})
    write_setting(runs, "osu", True, {**FLAT, 4: 0.85, 8: 0.89})
    write_setting(runs / "v1", "bm", False, FLAT)
    selected = tmp_path / "selected.yaml"
    assert b2.main([str(runs), str(runs / "v1"), "--write", str(selected)]) == 0
    capsys.readouterr()
    got = yaml.safe_load(selected.read_text())
    assert got["settings"] == ["ipd", "osu", "bm"]
    assert set(got["left_out"]) == {"ipd", "osu", "bm"}
    assert got["validation_based"] is False  # one setting validates: nothing to pick it on
    assert got["default"]["fallback"] is None
    # the left-out rule of ipd is chosen on osu and bm only: replayed, it cuts where scored
    settings = b2.load([runs, runs / "v1"])
    cands = b2.grid()
    table = b2.cut_table(cands, settings)
    loo = b2.left_out(cands, settings, table)
    for st in settings:
        choice, _ = loo[st.name]
        assert got["left_out_labels"][st.name] == choice.cand.label
        for s, seed in st.seeds.items():
            cut = _plan_cut(seed.trunk_rows, got["left_out"][st.name])
            assert cut == table[(choice.cand, st.name)].cuts[s]

    out = tmp_path / "phase_b"
    assert pb.main(["--selected", str(selected), "--out", str(out)]) == 0
    assert sorted(p.name for p in out.glob("*.yaml")) == ["bm.yaml", "ipd.yaml", "osu.yaml"]
    for name in ("ipd", "osu", "bm"):
        made = yaml.safe_load((out / f"{name}.yaml").read_text())
        check_spec(made)  # the sweep's own validation
        names = [d["name"] for d in made["policies"]["detector"]]
        assert names[-2:] == ["default", "left_out"]
        # v1 settings gain the two baselines their v1 sweeps lack; v2's have them already
        assert (names.count("v03"), names.count("fukase"), names.count("v02")) == (1, 1, 1)
    lines = [x for x in (out / "queue.txt").read_text().splitlines() if not x.startswith("#")]
    assert len(lines) == 6
    assert lines[0].split()[1] == "ipd" and "--only detector:left_out" in lines[0]
    bm = next(x for x in lines if x.split()[1] == "v1/bm")
    assert "--only detector:v03" in bm and "--only detector:fukase" in bm
    assert lines[3:] == [x.split(" --only")[0] for x in lines[:3]]
    assert pb.main(["--selected", str(tmp_path / "none.yaml"), "--out", str(out)]) == 2
