"""A sweep's YAML spec: reading and checking it, and the :class:`Run` it expands into."""

from __future__ import annotations

import itertools
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml

from critical.detector import DEFAULTS

__all__ = [
    "DETECTOR_KEYS",
    "POLICY_KEYS",
    "SPEC_KEYS",
    "STAGED_KEYS",
    "Run",
    "check_spec",
    "load_spec",
]

POLICY_KEYS = ("always", "k1", "matched", "fixed", "staged", "detector")
#: a staged entry: the multiplicities between k and 1, and its cut epochs (as ``fixed``)
STAGED_KEYS = ("stages", "fixed")
#: a detector entry: any of the detector's settings, plus an optional `name` for its label
DETECTOR_KEYS = (*DEFAULTS, "name")
SPEC_KEYS = (
    "name",
    "config",
    "models",
    "seeds",
    "k",
    "budgets",
    "policies",
    "oracle",
    "validate",
    "args",
)


@dataclass
class Run:
    """One run of a sweep: a ``critical fit`` command, or (``alias_of``) a copy of another run
    whose training it shares exactly (a detector that never fired is the always-k run; two
    policies that cut at the same epoch share one branch)."""

    name: str
    stage: int
    tags: dict[str, Any]
    args: list[str] = field(default_factory=list)  # after `critical fit`
    alias_of: str | None = None

    def command(self, python: str | None = None) -> list[str]:
        exe = [python, "-m", "critical.cli"] if python else ["critical"]
        return [*exe, "fit", *self.args]


def load_spec(path: str | os.PathLike) -> dict[str, Any]:
    """Read and check a sweep YAML file."""
    if not os.path.isfile(path):
        raise ValueError(f"no sweep spec at {os.fspath(path)!r}")
    with open(path) as f:
        spec = yaml.safe_load(f)
    if not isinstance(spec, Mapping):
        raise ValueError(f"{path}: a sweep spec is a YAML mapping")
    spec = dict(spec)
    check_spec(spec)
    return spec


def _is_epoch_or_fraction(e: Any) -> bool:
    if isinstance(e, bool):
        return False
    if isinstance(e, int):
        return e >= 1
    return isinstance(e, float) and 0 < e < 1


def check_spec(spec: Mapping[str, Any]) -> None:
    """Raise ``ValueError`` naming what is wrong with a spec (and the valid choices)."""
    for key in ("name", "config"):
        if not spec.get(key):
            raise ValueError(f"sweep spec needs `{key}`")
    unknown = set(spec) - set(SPEC_KEYS)
    if unknown:
        raise ValueError(f"unknown sweep keys {sorted(unknown)}; valid: {', '.join(SPEC_KEYS)}")
    pol = spec.get("policies") or {}
    bad = set(pol) - set(POLICY_KEYS)
    if bad:
        raise ValueError(f"unknown policies {sorted(bad)}; valid: {list(POLICY_KEYS)}")
    for d in pol.get("detector") or []:
        if not isinstance(d, Mapping):
            raise ValueError(f"each detector entry is a mapping of detector settings, got {d!r}")
        extra = set(d) - set(DETECTOR_KEYS)
        if extra:
            raise ValueError(f"unknown detector keys {sorted(extra)}; valid: {list(DETECTOR_KEYS)}")
    k = spec.get("k", 3)
    if isinstance(k, bool) or not isinstance(k, int) or k < 2:
        raise ValueError(
            f"`k` must be an integer >= 2 (the multiplicity before the cut), got {k!r}"
        )
    for e in pol.get("fixed") or []:
        if not _is_epoch_or_fraction(e):
            raise ValueError(
                f"fixed cuts are epochs (integers >= 1) or fractions of the budget in (0, 1), "
                f"got {e!r}"
            )
    if pol.get("staged") is not None:
        _check_staged(pol["staged"], k)
    for b in spec.get("budgets") or []:
        if isinstance(b, bool) or not isinstance(b, int) or b < 2:
            raise ValueError(f"budgets are epoch counts (integers >= 2), got {b!r}")
    if spec.get("validate", "config") not in ("config", "end", "trunk"):
        raise ValueError(
            f"`validate` must be 'config' (as the config says), 'end' (once, after the last "
            f"epoch of each run) or 'trunk' (every epoch in the always-k run, whose logged "
            f"validation metrics detectors may read; once at the end elsewhere), got "
            f"{spec.get('validate')!r}"
        )
    if pol.get("matched") not in (None, True, False, "detectors"):
        raise ValueError(
            f"`matched` must be true (a k = 1 run per cut epoch), 'detectors' (per detector cut "
            f"epoch only) or false, got {pol.get('matched')!r}"
        )


def _check_staged(staged: Any, k: int) -> None:
    """``policies.staged``: ``{stages: [...], fixed: [...]}``, the stages strictly decreasing
    integers between k and 1 (both excluded), the cut epochs as ``fixed``'s."""
    if not isinstance(staged, Mapping):
        raise ValueError(
            f"`staged` is a mapping {{stages: [2], fixed: [0.3, 12]}} (the multiplicities between "
            f"k and 1, and the cut epochs), got {staged!r}"
        )
    extra = set(staged) - set(STAGED_KEYS)
    if extra:
        raise ValueError(f"unknown staged keys {sorted(extra)}; valid: {list(STAGED_KEYS)}")
    stages = staged.get("stages")
    if (
        not isinstance(stages, list)
        or not stages
        or any(isinstance(s, bool) or not isinstance(s, int) or not 1 < s < k for s in stages)
        or any(a <= b for a, b in itertools.pairwise(stages))
    ):
        raise ValueError(
            f"staged `stages` must be a non-empty list of strictly decreasing integers between "
            f"1 and k = {k}, both excluded (e.g. [2] for k = 3 -> 2 -> 1), got {stages!r}"
        )
    cuts = staged.get("fixed")
    if not isinstance(cuts, list) or not cuts:
        raise ValueError(
            f"staged `fixed` must be a non-empty list of cut epochs (integers >= 1) or fractions "
            f"of the budget in (0, 1), got {cuts!r}"
        )
    for e in cuts:
        if not _is_epoch_or_fraction(e):
            raise ValueError(
                f"staged cuts are epochs (integers >= 1) or fractions of the budget in (0, 1), "
                f"got {e!r}"
            )


def flag(key: str, value: Any) -> str:
    """``--key=value`` as LightningCLI parses it."""
    if isinstance(value, (list, dict)):
        value = json.dumps(value)
    elif isinstance(value, bool):
        value = str(value).lower()
    elif value is None:
        value = "null"
    return f"--{key}={value}"


def config_value(config: str, *keys: str) -> Any:
    """A value of the ``critical fit`` YAML config (``None`` when absent or unreadable)."""
    try:
        with open(config) as f:
            node: Any = yaml.safe_load(f) or {}
    except OSError:
        return None
    for key in keys:
        node = node.get(key) if isinstance(node, Mapping) else None
    return node


def fixed_epoch(e: int | float, budget: int) -> int:
    """A fixed cut as an epoch: integers as given, fractions of the budget rounded (>= 1)."""
    return int(e) if isinstance(e, int) else max(1, round(e * budget))


def detector_label(d: Mapping[str, Any]) -> str:
    """``detector:<name>`` or a label built from the non-default settings
    (``detector:default`` for the library's defaults)."""
    if d.get("name"):
        return f"detector:{d['name']}"
    monitor = d.get("monitor", DEFAULTS["monitor"])
    monitor = "+".join(monitor) if isinstance(monitor, (list, tuple)) else str(monitor)
    rest = {k: v for k, v in d.items() if k not in ("monitor", "threshold", "mode", "window")}
    if not rest and set(d) <= {"monitor"} and monitor == DEFAULTS["monitor"]:
        return "detector:default"
    label = f"detector:{monitor}"
    if "mode" in d:
        label += f"/{d['mode']}"
    label += f"@{d.get('threshold', 'default')}"
    if d.get("window", DEFAULTS["window"]) != DEFAULTS["window"]:
        label += f"/w{d['window']}"
    return label


def run_name(model: str, label: str, seed: Any, budget: int | None) -> str:
    """A directory-safe run name: ``<model>[-E<budget>]-<label>-s<seed>``."""
    middle = f"-E{budget}" if budget is not None else ""
    return re.sub(r"[^A-Za-z0-9._=+-]", "_", f"{model}{middle}-{label}-s{seed}")


def matched_epochs(k: int, cut_epoch: int, budget: int) -> int:
    """Epochs of k = 1 with as many optimizer steps as a run that trained ``cut_epoch`` epochs
    at k and the rest of ``budget`` at 1 (epoch layout: an epoch at k has k times the steps)."""
    return k * cut_epoch + (budget - cut_epoch)
