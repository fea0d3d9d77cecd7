"""Planning a sweep: the runs of a spec, including those that can only be planned once others
have finished (a detector's branch needs the always-k run it is replayed on; a matched k = 1
run needs the cut epoch it matches). :func:`plan` is idempotent: call it again after runs finish
and it returns the same runs plus the newly plannable ones."""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from critical.detector import DEFAULTS, replay
from critical.runfiles import cut_epoch, read_json, read_rows, run_status
from critical.sweep.spec import (
    Run,
    check_spec,
    config_value,
    detector_label,
    fixed_epoch,
    flag,
    matched_epochs,
    run_name,
)

__all__ = ["followups_pending", "plan"]


def _detector_settings(d: Mapping[str, Any]) -> dict[str, Any]:
    """Every setting of a detector entry, the library's defaults filling the rest (so a live run
    and a replay use the same detector whatever the fit config says)."""
    return {**DEFAULTS, **{k: v for k, v in d.items() if k != "name"}}


def _max_epochs(config: str, extra: list[str]) -> int:
    """``trainer.max_epochs`` as the runs will see it: the last flag in ``args``, else the
    config's (0 when unknown)."""
    value: Any = config_value(config, "trainer", "max_epochs")
    for i, a in enumerate(extra):
        if a.startswith("--trainer.max_epochs="):
            value = a.split("=", 1)[1]
        elif a == "--trainer.max_epochs" and i + 1 < len(extra):
            value = extra[i + 1]
    try:
        return int(value or 0)
    except (TypeError, ValueError):
        return 0


def _complete(path: Path) -> bool:
    return run_status(path).complete


class _Group:
    """The runs of one model, budget and seed."""

    def __init__(
        self, spec: Mapping[str, Any], out: Path, model: str, budget: int | None, seed: Any
    ):
        self.spec, self.out, self.model, self.budget, self.seed = spec, out, model, budget, seed
        self.config = str(spec["config"])
        self.k = int(spec.get("k", 3))
        self.extra = [str(a) for a in spec.get("args") or []]
        self.epochs = budget or _max_epochs(self.config, self.extra)
        self.tags: dict[str, Any] = {
            "sweep": spec["name"],
            "model": model,
            "seed": seed,
            "k": self.k,
        }
        if budget is not None:
            self.tags["budget"] = budget
        self.runs: list[Run] = []
        self.by_cut: dict[int, str] = {}  # cut epoch -> the run that trains that branch

    def name(self, label: str) -> str:
        return run_name(self.model, label, self.seed, self.budget)

    def make(
        self,
        label: str,
        policy: str,
        stage: int,
        flags: list[str],
        epochs: int | None = None,
        trunk: bool = False,
        **tags: Any,
    ) -> Run:
        epochs = epochs or self.epochs or None
        t = {**self.tags, "policy": policy, "label": label, **tags}
        tail = []
        if self.budget is not None or epochs != self.epochs:
            tail.append(f"--trainer.max_epochs={epochs}")
        validate = self.spec.get("validate", "config")
        if epochs and (validate == "end" or (validate == "trunk" and not trunk)):
            tail.append(f"--trainer.check_val_every_n_epoch={epochs}")
        args = [
            f"--config={self.config}",
            f"--seed_everything={self.seed}",
            f"--model.model={self.model}",
            f"--data.multiplicity={self.k}",
            *flags,
            f"--run.root={self.out}",
            f"--run.name={self.name(label)}",
            flag("run.tags", t),
            *self.extra,
            *tail,
        ]
        run = Run(self.name(label), stage, t, args)
        self.runs.append(run)
        return run

    def alias(self, label: str, source: Run, **tags: Any) -> Run:
        t = {**self.tags, "label": label, **tags}
        run = Run(self.name(label), source.stage, t, alias_of=source.name)
        self.runs.append(run)
        return run

    def ckpt_dir(self) -> Path:
        middle = f"-E{self.budget}" if self.budget is not None else ""
        return self.out / "checkpoints" / f"{self.model}{middle}-s{self.seed}"


def _cut_epochs(cuts: Any, E: int) -> list[int]:
    """The distinct cut epochs of a ``fixed`` list in ``(0, E)`` (fractions of the budget
    rounded), sorted; none when E is unknown (0)."""
    if not E:
        return []
    return sorted(e for e in {fixed_epoch(c, E) for c in cuts or []} if 0 < e < E)


def _plan_group(g: _Group, pol: Mapping[str, Any], oracle: bool) -> None:
    k, E = g.k, g.epochs
    fixed = _cut_epochs(pol.get("fixed"), E)
    staged = pol.get("staged") or {}
    stages = [int(s) for s in staged.get("stages") or []]
    staged_cuts = _cut_epochs(staged.get("fixed"), E)
    for e in staged_cuts:
        if E - e < len(stages) + 1:
            raise ValueError(
                f"staged cut at epoch {e} of {E}: {E - e} epoch(s) left for the "
                f"{len(stages) + 1} steps {' -> '.join(map(str, [*stages, 1]))} (each needs one "
                "at least): cut earlier or give fewer stages"
            )
    detectors = list(pol.get("detector") or [])
    branching = oracle and bool(fixed or staged_cuts or detectors)

    trunk = None
    if pol.get("always") or branching:
        flags = ["--cutoff.policy=never"]
        if branching:
            every = 1 if detectors else math.gcd(*fixed, *staged_cuts)
            flags += [
                "--trainer.enable_checkpointing=true",
                "--trainer.callbacks+=ModelCheckpoint",
                f"--trainer.callbacks.dirpath={g.ckpt_dir()}",
                "--trainer.callbacks.filename={epoch}",
                "--trainer.callbacks.save_top_k=-1",
                # saved after every callback's epoch end, so the checkpoint holds the whole
                # epoch (metrics, energy, detector state) a branch resumes from
                f"--trainer.callbacks.every_n_epochs={every}",
                "--trainer.callbacks.save_on_train_epoch_end=true",
            ]
        trunk = g.make(f"always-k{k}", "always", 1, flags, trunk=True)
    if pol.get("k1"):
        g.make("k1", "k1", 1, ["--data.multiplicity=1", "--cutoff.policy=never"])

    cuts: dict[int, None] = {}  # every cut epoch (for matched k = 1 runs)
    detector_cuts: dict[int, None] = {}
    for e in fixed:
        flags = ["--cutoff.policy=fixed", f"--cutoff.epoch={e}"]
        if oracle:
            assert trunk is not None
            ckpt = g.ckpt_dir() / f"epoch={e - 1}.ckpt"
            run = g.make(
                f"fixed@{e}",
                "fixed",
                2,
                [*flags, f"--ckpt_path={ckpt}"],
                cut_at=e,
                parent=trunk.name,
                branch_epoch=e,
            )
            g.by_cut[e] = run.name
        else:
            g.make(f"fixed@{e}", "fixed", 1, flags, cut_at=e)
        cuts[e] = None

    # staged cuts: branches of their own (never shared with a one-step cut at the same epoch:
    # the training differs), not cut epochs a matched k = 1 run is planned for
    for e in staged_cuts:
        flags = ["--cutoff.policy=fixed", f"--cutoff.epoch={e}", flag("cutoff.stages", stages)]
        branch: dict[str, Any] = {}
        if oracle:
            assert trunk is not None
            ckpt = g.ckpt_dir() / f"epoch={e - 1}.ckpt"
            flags.append(f"--ckpt_path={ckpt}")
            branch = {"parent": trunk.name, "branch_epoch": e}
        g.make(
            f"staged@{e}", "staged", 2 if oracle else 1, flags, cut_at=e, stages=stages, **branch
        )

    for d in detectors:
        label = detector_label(d)
        settings = _detector_settings(d)
        if not oracle:
            flags = ["--cutoff.policy=detector"]
            flags += [flag(f"critical_period.{key}", v) for key, v in settings.items()]
            run = g.make(label, "detector", 1, flags, detector=dict(d))
            path = g.out / run.name
            if _complete(path):
                c = cut_epoch(read_json(path / "cut_event.json"), None, read_rows(path))
                if c is not None and 0 < c < E:
                    cuts[c] = None
                    detector_cuts[c] = None
            continue
        assert trunk is not None
        trunk_dir = g.out / trunk.name
        if not _complete(trunk_dir):
            continue  # planned once the trunk it is replayed on has finished
        monitor = settings.pop("monitor")
        det = replay(read_rows(trunk_dir), monitor, **settings)
        ev = det.event
        tags: dict[str, Any] = {
            "policy": "detector",
            "detector": dict(d),
            "fired": ev is not None,
            "replay": {
                "of": trunk.name,
                "event": None if ev is None else ev.to_dict(),
                "diverged": det.diverged,
            },
        }
        c = None if ev is None else ev.epoch + 1
        if c is None or c >= E:
            g.alias(label, trunk, **tags)  # never cut: this run *is* the always-k run
            continue
        tags.update(cut_at=c, parent=trunk.name, branch_epoch=c)
        cuts[c] = None
        detector_cuts[c] = None
        if c in g.by_cut:
            source = next(r for r in g.runs if r.name == g.by_cut[c])
            g.alias(label, source, **tags)
            continue
        ckpt = g.ckpt_dir() / f"epoch={c - 1}.ckpt"
        flags = ["--cutoff.policy=fixed", f"--cutoff.epoch={c}", f"--ckpt_path={ckpt}"]
        run = g.make(
            label, "detector", 2, flags, **{k: v for k, v in tags.items() if k != "policy"}
        )
        g.by_cut[c] = run.name

    if pol.get("matched") and E:
        for c in sorted(detector_cuts if pol.get("matched") == "detectors" else cuts):
            em = matched_epochs(k, c, E)
            g.make(
                f"matched-k1@{c}",
                "matched",
                3,
                ["--data.multiplicity=1", "--cutoff.policy=never"],
                epochs=em,
                cut_at=c,
                matched_epochs=em,
            )


def plan(spec: Mapping[str, Any], out: str | Path) -> list[Run]:
    """Every run of the sweep that can be planned now, stage by stage.

    Stage 1: the always-k run (with a checkpoint after every epoch the branches need), k = 1,
    and, without ``oracle``, the fixed, staged and detector runs trained from scratch. Stage 2
    (oracle): the branches, resumed from the always-k run's checkpoints with k = 1 from their
    cut: fixed cuts at once, detectors once the always-k run has finished and the detector has
    been replayed on its logged metrics. Stage 3: matched k = 1 runs, one per distinct cut epoch,
    with as many optimizer steps as the cut run (its cosine schedule spread over that budget).

    A staged cut (``policies.staged``: ``stages`` and its own ``fixed`` list) at epoch e is a
    run ``staged@e`` (policy ``"staged"``, tags ``cut_at`` and ``stages``) that steps k down
    through the stages to 1 from epoch e, the epochs left split evenly among them
    (``--cutoff.stages``); with ``oracle``, a branch off the same checkpoint as ``fixed@e``, but
    never sharing its training. Staged cuts get no matched k = 1 run: its step count would
    differ from that of ``matched-k1@e`` (planned for one-step cuts only) and is not planned.
    """
    check_spec(spec)
    out = Path(out)
    config = str(spec["config"])
    models = list(spec.get("models") or [str(config_value(config, "model", "model") or "model")])
    seeds = list(spec.get("seeds") or [0])
    budgets: list[int | None] = list(spec.get("budgets") or [None])
    pol = spec.get("policies") or {"always": True, "k1": True}
    oracle = bool(spec.get("oracle", False))
    runs: list[Run] = []
    for model in models:
        for budget in budgets:
            for seed in seeds:
                g = _Group(spec, out, model, budget, seed)
                _plan_group(g, pol, oracle)
                runs += g.runs
    runs.sort(key=lambda r: r.stage)
    return runs


def followups_pending(spec: Mapping[str, Any], out: str | Path) -> bool:
    """Whether some runs cannot be planned yet (detectors or matched runs waiting for runs that
    have not finished): a scheduler should plan again once the current runs are done."""
    out = Path(out)
    runs = plan(spec, out)
    if any(r.alias_of and not _complete(out / r.name) for r in runs):
        return True  # copies are made once their source has finished
    pol = spec.get("policies") or {}
    if not (pol.get("detector") or pol.get("matched")):
        return False
    waiting_on = [r for r in runs if r.stage == 1 and r.tags["policy"] in ("always", "detector")]
    return any(not _complete(out / r.name) for r in waiting_on)
