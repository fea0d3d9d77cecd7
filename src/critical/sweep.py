"""``critical sweep``: a grid of cut policies x models x seeds, run here or spread over a cluster.

A sweep is a YAML file::

    name: cifar10_cpu
    config: experiments/cifar10_cpu.yaml   # the `critical fit` config every run starts from
    models: [cifar_resnet20]               # optional: values of --model.model
    seeds: [0, 1, 2]                       # --seed_everything (the data split seed stays fixed)
    k: 3                                   # multiplicity before the cut
    policies:
      always: true                         # k throughout (cutoff never)
      k1: true                             # k = 1 throughout
      fixed: [4, 8, 16]                    # cut after E epochs
      detector:                            # cut when the detector fires
        - {monitor: layer_rotation, threshold: 0.01}
    oracle: true                           # fixed cuts branch off the always-k run (see below)
    args: ["--trainer.max_epochs=40"]      # extra flags for every run

Every run is one ``critical fit`` command with its own run directory ``OUT/<run name>`` and tags
(``model``, ``seed``, ``policy``, ``label``, ``k``, ``cut_at``, ``parent``, ``branch_epoch``) in
its ``config.json``; ``OUT/sweep.json`` lists every expected run, so ``critical report OUT``
shows missing runs as missing.

The cheap oracle (``oracle: true``, as in Fukase et al.'s experiments): the always-k run of each
model and seed saves a checkpoint every ``gcd(fixed)`` epochs, at the very end of the epoch (after
validation and every callback, so the checkpoint holds the epoch's metrics and energy), and each
fixed cut at E is a *branch* resumed from
the checkpoint taken after epoch E - 1 with k = 1 from there (``AugmentationCutoff(policy="fixed")``
applies a due cut on resume). A branch pays only for the epochs after its cut, and all branches
share the same first E epochs, which is what makes accuracy-versus-cut-epoch curves affordable.
Branches depend on their trunk: they form stage 2.

Modes: ``--run`` (default) runs everything here, in sequence, stage 1 first, skipping runs whose
directory is already complete; ``--emit`` prints one shell command per run (stage by stage) for
any scheduler; ``--slurm FILE`` writes a SLURM script submitting stage 1 as a job array and stage
2 as a second array that starts after it (``--dependency=afterok``). No scheduler of our own.

Example:
    >>> spec = {"name": "demo", "config": "experiments/quickstart.yaml", "seeds": [0],
    ...         "k": 3, "policies": {"always": True, "fixed": [2]}, "oracle": True}
    >>> runs = plan(spec, out="runs/demo")
    >>> [(r.name, r.stage) for r in runs]
    [('small_cnn-always-k3-s0', 1), ('small_cnn-fixed_2-s0', 2)]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import shlex
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from critical.detector import DEFAULTS
from critical.io import atomic_write_json, atomic_write_text
from critical.runfiles import run_status

__all__ = ["Run", "load_spec", "main", "plan"]

POLICY_KEYS = ("always", "k1", "fixed", "detector")
DETECTOR_KEYS = tuple(DEFAULTS)


@dataclass
class Run:
    """One ``critical fit`` run of a sweep."""

    name: str
    stage: int
    tags: dict[str, Any]
    args: list[str] = field(default_factory=list)  # after `critical fit`

    def command(self, python: str | None = None) -> list[str]:
        exe = [python, "-m", "critical.cli"] if python else ["critical"]
        return [*exe, "fit", *self.args]


def load_spec(path: str | os.PathLike) -> dict[str, Any]:
    """Read and check a sweep YAML file."""
    with open(path) as f:
        spec = yaml.safe_load(f)
    if not isinstance(spec, Mapping):
        raise ValueError(f"{path}: a sweep spec is a YAML mapping")
    return dict(spec)


def _check(spec: Mapping[str, Any]) -> None:
    for key in ("name", "config"):
        if not spec.get(key):
            raise ValueError(f"sweep spec needs `{key}`")
    unknown = set(spec) - {"name", "config", "models", "seeds", "k", "policies", "oracle", "args"}
    if unknown:
        raise ValueError(
            f"unknown sweep keys {sorted(unknown)}; valid: name, config, models, "
            "seeds, k, policies, oracle, args"
        )
    pol = spec.get("policies") or {}
    bad = set(pol) - set(POLICY_KEYS)
    if bad:
        raise ValueError(f"unknown policies {sorted(bad)}; valid: {list(POLICY_KEYS)}")
    for d in pol.get("detector") or []:
        if not isinstance(d, Mapping) or "monitor" not in d:
            raise ValueError(f"each detector entry needs `monitor`, got {d!r}")
        extra = set(d) - set(DETECTOR_KEYS)
        if extra:
            raise ValueError(f"unknown detector keys {sorted(extra)}; valid: {list(DETECTOR_KEYS)}")
    k = spec.get("k", 3)
    if not isinstance(k, int) or k < 2:
        raise ValueError(
            f"`k` must be an integer >= 2 (the multiplicity before the cut), got {k!r}"
        )
    for e in pol.get("fixed") or []:
        if not isinstance(e, int) or e < 1:
            raise ValueError(f"fixed cut epochs must be integers >= 1, got {e!r}")


def _default_model(config: str) -> str:
    try:
        with open(config) as f:
            cfg = yaml.safe_load(f) or {}
        return str((cfg.get("model") or {}).get("model") or "model")
    except OSError:
        return "model"


def _flag(key: str, value: Any) -> str:
    if isinstance(value, (list, dict)):
        value = json.dumps(value)
    elif isinstance(value, bool):
        value = str(value).lower()
    elif value is None:
        value = "null"
    return f"--{key}={value}"


def plan(spec: Mapping[str, Any], out: str | os.PathLike) -> list[Run]:
    """The runs of a sweep, in order (stage 1 before stage 2)."""
    _check(spec)
    out = Path(out)
    config = str(spec["config"])
    models = list(spec.get("models") or [_default_model(config)])
    seeds = list(spec.get("seeds") or [0])
    k = int(spec.get("k", 3))
    pol = spec.get("policies") or {"always": True, "k1": True}
    oracle = bool(spec.get("oracle", False))
    extra = [str(a) for a in spec.get("args") or []]
    fixed = list(pol.get("fixed") or [])
    detectors = list(pol.get("detector") or [])
    runs: list[Run] = []
    for model in models:
        for seed in seeds:
            base_tags = {"sweep": spec["name"], "model": model, "seed": seed, "k": k}

            def make(
                label: str,
                policy: str,
                stage: int,
                flags: list[str],
                *,
                model: str = model,
                seed: int = seed,
                base_tags: dict[str, Any] = base_tags,
                **tags: Any,
            ) -> Run:
                name = re.sub(r"[^A-Za-z0-9._=+-]", "_", f"{model}-{label}-s{seed}")
                t = {**base_tags, "policy": policy, "label": label, **tags}
                args = [
                    f"--config={config}",
                    f"--seed_everything={seed}",
                    f"--model.model={model}",
                    f"--data.multiplicity={k}",
                    *flags,
                    f"--run.root={out}",
                    f"--run.name={name}",
                    _flag("run.tags", t),
                    *extra,
                ]
                return Run(name, stage, t, args)

            trunk = None
            if pol.get("always") or (oracle and fixed):
                flags = ["--cutoff.policy=never"]
                if oracle and fixed:
                    flags += [
                        "--trainer.enable_checkpointing=true",
                        "--trainer.callbacks+=ModelCheckpoint",
                        f"--trainer.callbacks.dirpath={out / 'checkpoints' / f'{model}-s{seed}'}",
                        "--trainer.callbacks.filename={epoch}",
                        "--trainer.callbacks.save_top_k=-1",
                        # only the epochs the branches resume from (and their multiples), saved
                        # after every callback's epoch end so the checkpoint holds the whole epoch
                        # (by default ModelCheckpoint saves at validation end when validation
                        # runs every n > 1 epochs, before the epoch's metrics and energy are in)
                        f"--trainer.callbacks.every_n_epochs={math.gcd(*fixed)}",
                        "--trainer.callbacks.save_on_train_epoch_end=true",
                    ]
                trunk = make(f"always-k{k}", "always", 1, flags)
                runs.append(trunk)
            if pol.get("k1"):
                runs.append(make("k1", "k1", 1, ["--data.multiplicity=1", "--cutoff.policy=never"]))
            for e in fixed:
                flags = ["--cutoff.policy=fixed", f"--cutoff.epoch={e}"]
                if oracle:
                    assert trunk is not None  # oracle with fixed cuts always plans the trunk
                    ckpt = out / "checkpoints" / f"{model}-s{seed}" / f"epoch={e - 1}.ckpt"
                    runs.append(
                        make(
                            f"fixed@{e}",
                            "fixed",
                            2,
                            [*flags, f"--ckpt_path={ckpt}"],
                            cut_at=e,
                            parent=trunk.name,
                            branch_epoch=e,
                        )
                    )
                else:
                    runs.append(make(f"fixed@{e}", "fixed", 1, flags, cut_at=e))
            for d in detectors:
                label = f"detector:{d['monitor']}@{d.get('threshold', 'default')}"
                if d.get("window", 1) != 1:
                    label += f"/w{d['window']}"
                flags = ["--cutoff.policy=detector"]
                flags += [_flag(f"critical_period.{key}", v) for key, v in d.items()]
                runs.append(make(label, "detector", 1, flags, detector=dict(d)))
    runs.sort(key=lambda r: r.stage)
    return runs


def _complete(run_dir: Path) -> bool:
    return run_status(run_dir).complete


def write_manifest(spec: Mapping[str, Any], runs: Sequence[Run], out: Path) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    manifest = {
        "name": spec["name"],
        "spec": dict(spec),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "runs": [{**asdict(r), "command": r.command()} for r in runs],
    }
    path = out / "sweep.json"
    atomic_write_json(path, manifest)
    return path


def run_local(runs: Sequence[Run], out: Path, python: str = sys.executable) -> int:
    """Run the sweep here, in sequence; a complete run directory is skipped. Returns failures."""
    logs = out / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    failures = 0
    # seed by seed (a trunk's branches right after it), so an interrupted sweep leaves whole seeds
    runs = sorted(runs, key=lambda r: (str(r.tags.get("model")), str(r.tags.get("seed")), r.stage))
    for i, run in enumerate(runs, 1):
        run_dir = out / run.name
        if run_dir.exists():
            if _complete(run_dir):
                print(f"[{i}/{len(runs)}] {run.name}: complete, skipped", flush=True)
                continue
            print(
                f"[{i}/{len(runs)}] {run.name}: an incomplete directory exists ({run_dir}); "
                "remove it to run again",
                flush=True,
            )
            failures += 1
            continue
        if run.tags.get("parent") and not _complete(out / run.tags["parent"]):
            print(
                f"[{i}/{len(runs)}] {run.name}: its trunk {run.tags['parent']} is not complete; "
                "skipped",
                flush=True,
            )
            failures += 1
            continue
        log = logs / f"{run.name}.log"
        t0 = time.perf_counter()
        print(f"[{i}/{len(runs)}] {run.name} ...", end=" ", flush=True)
        with open(log, "w") as f:
            proc = subprocess.run(run.command(python), stdout=f, stderr=subprocess.STDOUT)
        took = time.perf_counter() - t0
        status = "ok" if proc.returncode == 0 else f"FAILED (exit {proc.returncode}, see {log})"
        failures += proc.returncode != 0
        print(f"{status} in {took:.0f} s", flush=True)
    return failures


def emit(runs: Sequence[Run]) -> str:
    lines = []
    for stage in sorted({r.stage for r in runs}):
        lines.append(
            f"# stage {stage}"
            + (" (after stage 1: branches resume its checkpoints)" if stage == 2 else "")
        )
        lines += [shlex.join(r.command()) for r in runs if r.stage == stage]
    return "\n".join(lines) + "\n"


def slurm_script(runs: Sequence[Run], out: Path, sbatch_args: Sequence[str] = ()) -> str:
    """A bash script submitting each stage as one SLURM job array; stage 2 waits for stage 1
    (``--dependency=afterok``). Array task i runs line i + 1 of ``OUT/stage<N>.cmds``, which this
    function writes."""
    extra = "".join(f" {shlex.quote(a)}" for a in sbatch_args)
    logs = shlex.quote(str(out / "logs"))
    lines = [
        "#!/usr/bin/env bash",
        "# Generated by `critical sweep --slurm`: one job array per stage.",
        "set -euo pipefail",
        f"cd {shlex.quote(os.getcwd())}",
        f"mkdir -p {logs}",
    ]
    prev = None
    for stage in sorted({r.stage for r in runs}):
        cmds = [shlex.join(r.command()) for r in runs if r.stage == stage]
        cmd_file = out / f"stage{stage}.cmds"
        atomic_write_text(cmd_file, "\n".join(cmds) + "\n")
        dep = f" --dependency=afterok:${{JOB{prev}}}" if prev is not None else ""
        wrap = f'sed -n "$((SLURM_ARRAY_TASK_ID + 1))p" {shlex.quote(str(cmd_file))} | bash'
        lines.append(
            f"JOB{stage}=$(sbatch --parsable{dep}{extra} --array=0-{len(cmds) - 1} "
            f"--job-name=critical-stage{stage} --output={logs}/stage{stage}-%a.log "
            f"--wrap={shlex.quote(wrap)})"
        )
        lines.append(f'echo "stage {stage}: job array $JOB{stage} ({len(cmds)} runs)"')
        prev = stage
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="critical sweep",
        description="Run, or emit commands for, a grid of cut policies x models x seeds.",
    )
    p.add_argument("spec", help="sweep YAML file")
    p.add_argument("--out", help="sweep directory (default runs/<name>)")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--run", action="store_true", help="run here, in sequence (default)")
    mode.add_argument("--emit", action="store_true", help="print one command per run")
    mode.add_argument("--slurm", metavar="FILE", help="write a SLURM submission script")
    p.add_argument("--sbatch-arg", action="append", default=[], help="extra sbatch option")
    p.add_argument("--only", action="append", default=[], help="run only runs whose label is this")
    args = p.parse_args(argv)
    spec = load_spec(args.spec)
    out = Path(args.out or Path("runs") / str(spec.get("name", "sweep")))
    try:
        runs = plan(spec, out)
    except ValueError as err:
        print(f"critical sweep: {err}", file=sys.stderr)
        return 2
    if args.only:
        runs = [r for r in runs if r.tags["label"] in args.only]
    manifest = write_manifest(spec, runs, out)
    if args.emit:
        sys.stdout.write(emit(runs))
        return 0
    if args.slurm:
        atomic_write_text(Path(args.slurm), slurm_script(runs, out, args.sbatch_arg))
        os.chmod(args.slurm, 0o755)
        print(f"wrote {args.slurm} ({len(runs)} runs); manifest {manifest}")
        return 0
    print(f"sweep {spec['name']}: {len(runs)} runs into {out} (manifest {manifest})", flush=True)
    failures = run_local(runs, out)
    print(f"done: {len(runs) - failures} ok, {failures} not; report: critical report {out}")
    return 1 if failures else 0
