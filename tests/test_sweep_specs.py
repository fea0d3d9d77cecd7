"""Every sweep and config in experiments/ runs what its comments say (issue 28, item 2): each
detector entry pins its rule (every setting the library's defaults could change) or is the
default with the version named; a named rule's settings match the rule; epoch counts and the
docs section a sweep points to agree with what runs."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from critical.sweep.spec import load_spec

ROOT = Path(__file__).resolve().parents[1]
SWEEPS = sorted((ROOT / "experiments").rglob("sweep_*.yaml"))
CONFIGS = sorted(p for p in (ROOT / "experiments").rglob("*.yaml") if p not in SWEEPS)

#: the settings that make a rule (beyond them, `deadline`, `combine` and `fallback` matter only
#: with several monitors or a validation monitor)
RULE_KEYS = ("monitor", "mode", "threshold", "window", "patience", "min_epochs")
GUARD_KEYS = ("guard_finite", "guard_learning", "guard_lr")
#: version 0.1's rule (docs/results.md sections 3 and 4)
V01 = dict(monitor="layer_rotation", mode="absolute", threshold=0.01, window=1, patience=2,
           min_epochs=3, guard_finite=False, guard_learning=False, guard_lr=False)  # fmt: skip
#: version 0.2's defaults (committed in 7348f71 before the CPU study; the bank's V02_RULE)
V02 = dict(monitor="layer_rotation", mode="scaled", threshold=0.3, window=1, patience=2,
           min_epochs=3, guard_finite=True, guard_learning=True, loss_window=3,
           loss_threshold=0.5, learning_signal="train_loss", guard_lr=True, lr_cooldown=2)  # fmt: skip


def _comments(path: Path) -> str:
    return "\n".join(ln for ln in path.read_text().splitlines() if ln.lstrip().startswith("#"))


def _detectors(spec) -> list[dict]:
    return list((spec.get("policies") or {}).get("detector") or [])


@pytest.mark.parametrize("path", SWEEPS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_detector_entry_pins_its_rule_or_names_the_default_version(path):
    spec = load_spec(path)
    for d in _detectors(spec):
        if not d:
            assert "DEFAULTS" in _comments(path) and re.search(
                r"version \d+\.\d+", _comments(path)
            ), f"{path.name}: a default entry ({{}}) must say which version's DEFAULTS it means"
            continue
        missing = [k for k in (*RULE_KEYS, *GUARD_KEYS) if k not in d]
        if d.get("guard_learning"):
            missing += [
                k for k in ("loss_window", "loss_threshold", "learning_signal") if k not in d
            ]
        if d.get("guard_lr"):
            missing += [k for k in ("lr_cooldown",) if k not in d]
        assert not missing, (
            f"{path.name}: {d.get('name') or d}: rule settings left to the defaults: {missing}"
        )


@pytest.mark.parametrize("path", SWEEPS, ids=lambda p: str(p.relative_to(ROOT)))
def test_named_rules_match_their_comments(path):
    spec = load_spec(path)
    text = _comments(path)
    entries = _detectors(spec)
    if re.search(r"version 0\.1|v0\.1", text, re.I):
        v01 = [d for d in entries if d.get("monitor") == "layer_rotation"]
        assert v01, path.name
        for d in v01:
            assert {k: d.get(k) for k in V01} == V01, f"{path.name}: not version 0.1's rule"
    if re.search(r"v0\.2|7348f71", text):
        for d in entries:
            if d.get("name") in ("default", "v02"):
                assert {k: d.get(k) for k in V02} == V02, f"{path.name}: not the v0.2 rule"
            elif d.get("name") in ("gradient_norm", "predictability", "confusion"):
                rest = {k: v for k, v in V02.items() if k != "monitor"}
                assert {k: d.get(k) for k in rest} == rest, f"{path.name}: {d['name']}"
    if "absolute threshold 0.01" in text:
        assert any(d.get("mode") == "absolute" and d.get("threshold") == 0.01 for d in entries)
    if "smoothed over 3 epochs" in text:
        assert any(d.get("window") == 3 for d in entries)
        assert all(d.get("window") == 1 for d in entries if d.get("monitor") == "layer_rotation")


@pytest.mark.parametrize("path", SWEEPS, ids=lambda p: str(p.relative_to(ROOT)))
def test_the_docs_section_a_sweep_names_describes_it(path):
    docs = (ROOT / "docs" / "results.md").read_text()
    for n in re.findall(r"docs/results\.md section (\d+)", _comments(path)):
        section = re.search(rf"^## {n}\. .*?(?=^## \d+\. |\Z)", docs, re.M | re.S)
        assert section and path.name in section.group(0), f"{path.name}: section {n}"


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: str(p.relative_to(ROOT)))
def test_a_configs_epoch_count_is_what_runs(path):
    config = yaml.safe_load(path.read_text()) or {}
    max_epochs = (config.get("trainer") or {}).get("max_epochs")
    if max_epochs is None:
        return
    claimed = {int(n) for n in re.findall(r"\b(\d+) epochs\b", _comments(path))}
    if claimed:
        assert max_epochs in claimed, f"{path.name}: comments say {sorted(claimed)} epochs"
    rel = path.relative_to(ROOT).as_posix()
    for sweep in SWEEPS:
        spec = load_spec(sweep)
        if spec["config"] == rel and len(spec.get("budgets") or []) == 1:
            assert spec["budgets"] == [max_epochs], f"{sweep.name} runs {spec['budgets']} epochs"
