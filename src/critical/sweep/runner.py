"""Running a sweep: here in sequence, as printed commands, or as SLURM job arrays; and the
``critical sweep`` command line."""

from __future__ import annotations

import difflib
import os
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import yaml

from critical.io import atomic_write_json, atomic_write_text
from critical.runfiles import CONFIG, read_json, run_status
from critical.sweep.aside import set_aside
from critical.sweep.plan import followups_pending, plan
from critical.sweep.regrow import REGROW, missing_checkpoint, needed, regrow
from critical.sweep.spec import Run, load_spec

__all__ = ["emit", "main", "materialize_alias", "run_local", "slurm_script", "write_manifest"]


def _complete(path: Path) -> bool:
    return run_status(path).complete


def write_manifest(spec: Mapping[str, Any], runs: Sequence[Run], out: Path) -> Path:
    """``OUT/sweep.json``: every run planned so far, so the report lists missing ones."""
    out.mkdir(parents=True, exist_ok=True)
    manifest = {
        "name": spec["name"],
        "spec": dict(spec),
        "runs": [{**asdict(r), "command": None if r.alias_of else r.command()} for r in runs],
    }
    path = out / "sweep.json"
    atomic_write_json(path, manifest)
    return path


def materialize_alias(run: Run, out: Path) -> None:
    """Write ``run`` as a copy of the finished run it shares its training with (its files, with
    its own name and tags in ``config.json``; checkpoints and TensorBoard files are not copied)."""
    assert run.alias_of is not None
    src, dst = out / run.alias_of, out / run.name
    tmp = out / f".{run.name}.tmp"
    if tmp.exists():
        shutil.rmtree(tmp)
    shutil.copytree(
        src, tmp, ignore=shutil.ignore_patterns("events.out.tfevents*", "checkpoints", "*.ckpt")
    )
    config = read_json(tmp / CONFIG) or {}
    config.update(name=run.name, path=str(dst), tags=run.tags, alias_of=run.alias_of)
    atomic_write_json(tmp / CONFIG, config)
    os.replace(tmp, dst)


def _group_key(r: Run) -> tuple[str, str, str]:
    return (str(r.tags.get("model")), str(r.tags.get("budget")), str(r.tags.get("seed")))


def _ready(r: Run, out: Path) -> bool:
    deps = [r.alias_of] if r.alias_of else []
    if r.tags.get("parent"):
        deps.append(r.tags["parent"])
    return all(_complete(out / d) for d in deps)


#: the variables that size torch's (OpenMP's, MKL's) CPU thread pools
THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")


def thread_env(threads: int | None, env: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of a sweep's runs: ``threads`` (>= 1) CPU threads per run (OpenMP and
    MKL), ``0`` for torch's default (one per core: right for a run alone on the machine, up to
    several times slower when runs or other jobs share the cores), ``None``: the caller's
    ``OMP_NUM_THREADS`` when set, else 1.

    Example:
        >>> thread_env(None, {})["OMP_NUM_THREADS"], thread_env(4, {})["MKL_NUM_THREADS"]
        ('1', '4')
        >>> "OMP_NUM_THREADS" in thread_env(0, {})
        False
    """
    out = dict(os.environ if env is None else env)
    if threads is None:
        threads = int(out.get("OMP_NUM_THREADS") or 1)
    if threads == 0:
        for var in THREAD_VARS:
            out.pop(var, None)
    else:
        out.update({var: str(threads) for var in THREAD_VARS})
    return out


def run_local(
    spec: Mapping[str, Any],
    out: Path,
    python: str = sys.executable,
    only: Sequence[str] = (),
    threads: int | None = None,
) -> int:
    """Run the sweep here, group by group (a model, budget and seed: its always-k run, then its
    branches, then its matched runs), planning again after each run so replays and matched runs
    appear as soon as they can. Finished run directories are skipped. Each run gets
    ``threads`` CPU threads (:func:`thread_env`). Returns the failures."""
    env = thread_env(threads)
    logs = out / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    print(f"logs: {logs}", flush=True)
    attempted: set[str] = set()
    failures = 0
    while True:
        planned = plan(spec, out)
        runs = [r for r in planned if r.tags["label"] in only] if only else planned
        write_manifest(spec, runs, out)
        todo = [r for r in runs if r.name not in attempted and not _complete(out / r.name)]
        ready = [r for r in todo if _ready(r, out)]
        if not ready:
            for r in todo:
                print(f"{r.name}: skipped (what it depends on did not finish)", flush=True)
            return failures + len(todo)
        first = min(_group_key(r) for r in ready)
        run = min((r for r in ready if _group_key(r) == first), key=lambda r: r.stage)
        attempted.add(run.name)
        run_dir = out / run.name
        done = sum(_complete(out / r.name) for r in runs)
        prefix = f"[{done + 1}/{len(runs)}] {run.name}"
        if run_dir.exists():
            print(
                f"{prefix}: an incomplete directory exists ({run_dir}); remove it, or run again "
                "with --retry-unfinished (moves it aside), to train it again"
            )
            failures += 1
            continue
        if run.alias_of:
            materialize_alias(run, out)
            print(f"{prefix}: same training as {run.alias_of} (copied, no training)", flush=True)
            continue
        need = missing_checkpoint(run, out)
        if need is not None:  # the trunk finished, its checkpoint is gone: train it again
            trunk = need[0]
            last = needed(todo, out)[trunk]
            print(
                f"{prefix}: {trunk}'s checkpoints are gone; training its epochs 0-{last} again "
                f"into {out / REGROW}",
                flush=True,
            )
            trained, how = regrow(
                next(r for r in planned if r.name == trunk), last, out, python, env
            )
            print(f"{prefix}: {'the rerun of ' + trunk + ': ' if trained else ''}{how}", flush=True)
            if not trained:
                failures += 1
                continue
        log = logs / f"{run.name}.log"
        t0 = time.perf_counter()
        print(f"{prefix} ...", end=" ", flush=True)
        with open(log, "w") as f:
            proc = subprocess.run(
                run.command(python), stdout=f, stderr=subprocess.STDOUT, check=False, env=env
            )
        ok = proc.returncode == 0
        failures += not ok
        status = "ok" if ok else f"FAILED (exit {proc.returncode}, see {log})"
        print(f"{status} in {time.perf_counter() - t0:.0f} s", flush=True)


def _thread_prefix(threads: int | None) -> str:
    """``OMP_NUM_THREADS=N MKL_NUM_THREADS=N `` for ``threads`` >= 1, else nothing."""
    return "".join(f"{v}={threads} " for v in THREAD_VARS) if threads else ""


def emit(runs: Sequence[Run], continue_cmd: str | None = None, threads: int | None = None) -> str:
    """One shell command per run, stage by stage (aliases as comments); with ``threads``, each
    command sets that many CPU threads (as ``--threads`` does for runs started here)."""
    prefix = _thread_prefix(threads)
    lines = []
    for stage in sorted({r.stage for r in runs}):
        lines.append(f"# stage {stage}")
        for r in runs:
            if r.stage != stage:
                continue
            if r.alias_of:
                lines.append(
                    f"# {r.name}: a copy of {r.alias_of} (same training), made by `critical sweep`"
                )
            else:
                lines.append(prefix + shlex.join(r.command()))
    if continue_cmd:
        lines.append(
            f"# when these have finished, plan the runs that depend on them: {continue_cmd}"
        )
    return "\n".join(lines) + "\n"


def slurm_script(
    runs: Sequence[Run],
    out: Path,
    sbatch_args: Sequence[str] = (),
    continue_cmd: str | None = None,
    threads: int | None = None,
) -> str:
    """A bash script submitting each stage as one SLURM job array (stage N waits for stage N - 1
    with ``--dependency=afterok``); array task i runs line i + 1 of ``OUT/stage<N>.cmds``. With
    ``continue_cmd``, a last job plans and submits what depends on these runs; with ``threads``,
    the jobs inherit that many CPU threads (exported before they are submitted)."""
    extra = "".join(f" {shlex.quote(a)}" for a in sbatch_args)
    logs = shlex.quote(str(out / "logs"))
    lines = [
        "#!/usr/bin/env bash",
        "# Generated by `critical sweep --slurm`: one job array per stage.",
        "set -euo pipefail",
        f"cd {shlex.quote(os.getcwd())}",
        f"mkdir -p {logs}",
    ]
    if threads:
        lines.append("export " + _thread_prefix(threads).strip())
    prev = None
    for stage in sorted({r.stage for r in runs if not r.alias_of}):
        cmds = [shlex.join(r.command()) for r in runs if r.stage == stage and not r.alias_of]
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
    if continue_cmd:
        dep = f" --dependency=afterok:${{JOB{prev}}}" if prev is not None else ""
        lines.append(
            f"sbatch --parsable{dep}{extra} --job-name=critical-continue "
            f"--output={logs}/continue.log --wrap={shlex.quote(continue_cmd)}"
        )
    return "\n".join(lines) + "\n"


def _closest_spec(path: str) -> str:
    """``; did you mean X?`` among the YAML files next to ``path`` and in ``experiments/``, else
    the sweep specs there."""
    p = Path(path)
    folders = [f for f in dict.fromkeys((p.parent, Path("experiments"))) if f.is_dir()]
    for folder in folders:
        names = [f.name for f in folder.glob("*.y*ml")]
        close = difflib.get_close_matches(p.name, names, n=1, cutoff=0.6)
        if close:
            return f"; did you mean {folder / close[0]}?"
    for folder in folders:
        sweeps = sorted(str(f) for f in folder.glob("sweep_*.y*ml"))
        if sweeps:
            return f" (sweep specs: {', '.join(sweeps)})"
    return ""


def main(argv: Sequence[str] | None = None) -> int:
    from critical.cli_errors import ArgumentParser

    p = ArgumentParser(
        prog="critical sweep",
        description="Run, or emit commands for, a grid of cut policies x models x budgets x seeds.",
    )
    p.add_argument("spec", help="sweep YAML file")
    p.add_argument("--out", help="sweep directory (default runs/<name>)")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--run", action="store_true", help="run here, in sequence (default)")
    mode.add_argument("--emit", action="store_true", help="print one command per run")
    mode.add_argument("--slurm", metavar="FILE", help="write a SLURM submission script")
    p.add_argument("--sbatch-arg", action="append", default=[], help="extra sbatch option")
    p.add_argument("--only", action="append", default=[], help="run only runs whose label is this")
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        metavar="N",
        help="CPU threads per run (OMP_NUM_THREADS, MKL_NUM_THREADS; default: OMP_NUM_THREADS "
        "if set, else 1: a sweep's runs usually share the machine with each other or other "
        "jobs, where torch's default of one thread per core ran several times slower); 0: "
        "torch's default",
    )
    p.add_argument(
        "--retry-unfinished",
        action="store_true",
        help="first move every unfinished run folder in OUT (a run a stop or a time limit "
        "killed) to OUT/.set_aside/<time>/, so that it is trained again; only while no other "
        "sweep runs in OUT (local runs only)",
    )
    args = p.parse_args(argv)
    if args.retry_unfinished and (args.emit or args.slurm):
        print("critical sweep: error: --retry-unfinished runs here only (not with --emit or "
              "--slurm: their jobs may still be running)", file=sys.stderr)  # fmt: skip
        return 2
    if not os.path.isfile(args.spec):
        print(
            f"critical sweep: error: no sweep spec at {args.spec}{_closest_spec(args.spec)}",
            file=sys.stderr,
        )
        return 2
    try:
        spec = load_spec(args.spec)
        out = Path(args.out or Path("runs") / str(spec.get("name", "sweep")))
        if args.retry_unfinished:
            for moved in set_aside(out):
                print(f"set aside (unfinished, to be trained again): {moved}", flush=True)
        runs = plan(spec, out)
    except (ValueError, OSError, yaml.YAMLError) as err:
        print(f"critical sweep: error: {' '.join(str(err).split())}", file=sys.stderr)
        return 2
    if args.only:
        runs = [r for r in runs if r.tags["label"] in args.only]
    cont = None
    if followups_pending(spec, out):
        cont = shlex.join(["critical", "sweep", args.spec, "--out", str(out)])
    if args.threads is not None and args.threads < 0:
        print("critical sweep: error: --threads must be >= 0", file=sys.stderr)
        return 2
    if cont and args.threads is not None:
        cont += f" --threads {args.threads}"
    if args.emit:
        todo = [r for r in runs if not _complete(out / r.name)]
        sys.stdout.write(emit(todo, cont, args.threads))
        return 0
    if args.slurm:
        todo = [r for r in runs if not _complete(out / r.name)]
        nxt = None
        if cont:
            script = shlex.quote(str(out / "continue.sh"))
            nxt = f"{cont} --slurm {script} && bash {script}"
        for r in todo:
            if r.alias_of and _complete(out / r.alias_of):
                materialize_alias(r, out)
        write_manifest(spec, runs, out)
        script_text = slurm_script(todo, out, args.sbatch_arg, nxt, args.threads)
        atomic_write_text(Path(args.slurm), script_text)
        os.chmod(args.slurm, 0o755)
        print(f"wrote {args.slurm} ({len(todo)} runs); manifest {out / 'sweep.json'}")
        return 0
    print(f"sweep {spec['name']}: {len(runs)} runs planned so far into {out}", flush=True)
    failures = run_local(spec, out, only=args.only, threads=args.threads)
    print(f"done ({failures} not finished); report: critical report {out}")
    return 1 if failures else 0
