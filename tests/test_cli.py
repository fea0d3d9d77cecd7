"""The `critical` command: help, version, user errors, and a real `critical fit` through
LightningCLI."""

import inspect
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

import critical
from critical import __version__
from critical.cli import CHOICES, MONITOR_METRICS, command_help, main

ROOT = Path(__file__).resolve().parents[1]
TINY = [
    "--config",
    str(ROOT / "experiments" / "quickstart.yaml"),
    "--trainer.max_epochs=3",
    "--trainer.enable_progress_bar=false",
    "--trainer.enable_model_summary=false",
    "--robustness.num_images=64",
    "--robustness.corruptions=[contrast]",
    "--critical_period.monitor=layer_rotation",
    "--critical_period.window=1",
    "--critical_period.min_epochs=1",
    "--critical_period.patience=1",
    "--critical_period.threshold=0.5",
    "--critical_period.mode=absolute",
    "--critical_period.guard_learning=false",
]


def test_help_version_and_unknown_command(capsys):
    assert main([]) == 0
    out = capsys.readouterr().out
    for cmd in ("fit", "sweep", "report", "version"):
        assert cmd in out
    assert main(["version"]) == 0 and __version__ in capsys.readouterr().out
    assert main(["frobnicate"]) == 2
    assert "unknown command" in capsys.readouterr().err
    assert main(["fitt"]) == 2
    assert "did you mean 'fit'?" in capsys.readouterr().err


def test_fit_writes_a_complete_run_directory_and_summary(tmp_path, capsys):
    main(["fit", *TINY, f"--run.root={tmp_path}", "--run.name=r"])
    out = capsys.readouterr().out
    run = tmp_path / "r"
    for name in (
        "config.json",
        "metrics.csv",
        "metrics.json",
        "cut_event.json",
        "energy.json",
        "robustness.json",
        "config.yaml",
        "plot.png",
    ):
        assert (run / name).is_file(), name
    assert "run summary" in out and str(run) in out and "validation accuracy" in out
    cut = json.loads((run / "cut_event.json").read_text())
    assert cut["fired"] and cut["cut_epoch"] == 2  # threshold 0.5: fires after epoch 1
    rows = json.loads((run / "metrics.json").read_text())
    assert [r["multiplicity"] for r in rows] == [3, 3, 1]
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["module"]["hparams"]["in_chans"] == 1  # linked from the data
    assert cfg["module"]["hparams"]["num_classes"] == 10
    # a run directory is never overwritten: one line (raised in set-up, before training)
    assert main(["fit", *TINY, f"--run.root={tmp_path}", "--run.name=r"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and "already exists" in err[0] and "Traceback" not in "".join(err)
    with pytest.raises(FileExistsError):  # --debug: the exception itself
        main(["fit", *TINY, f"--run.root={tmp_path}", "--run.name=r", "--debug"])


def test_every_config_parses(capsys):
    for cfg in sorted((ROOT / "experiments").glob("*.yaml")):
        if cfg.name.startswith("sweep_"):
            continue
        with pytest.raises(SystemExit) as exc:
            main(["fit", "--config", str(cfg), "--print_config"])
        assert exc.value.code == 0, cfg
        assert "critical_period:" in capsys.readouterr().out


# ----------------------------------------------------------------------------------------------
# help (#14.4): fast, short, with the choices
# ----------------------------------------------------------------------------------------------

SRC = str(Path(critical.__file__).resolve().parents[1])


def _critical(*args, cwd=ROOT, timeout=300):
    env = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", "")}
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "critical.cli", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    return proc, time.perf_counter() - t0


@pytest.mark.parametrize("args", [["--help"], ["fit", "--help"], ["test", "-h"]])
def test_help_is_fast_and_short_and_imports_no_lightning(args):
    code = (
        "import sys; from critical.cli import main; main(sys.argv[1:]); "
        "assert 'lightning' not in sys.modules and 'torch' not in sys.modules, 'imported'"
    )
    env = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", "")}
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", code, *args], env=env, capture_output=True, text=True, timeout=60
    )
    elapsed = time.perf_counter() - t0
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert 5 < len(lines) < 64
    assert elapsed < 5.0  # about 0.1 s; generous for a loaded machine
    if args[0] != "--help":
        out = proc.stdout
        assert "--help-all" in out
        for key in ("cutoff.policy", "data.policy", "critical_period.mode", "data.dataset"):
            assert "{" + "|".join(CHOICES[key]) + "}" in out, key
        for key in ("data.crop_padding", "data.flip", "data.cutout", "cutoff.epoch"):
            assert f"--{key} " in out, key
        assert all(m in out.replace("\n", " ").replace(" " * 38, "") for m in MONITOR_METRICS)


def test_help_choices_match_the_code():
    """CHOICES and MONITOR_METRICS are derived (so the help needs no Lightning): from the Literal
    types of critical.choices and the detector's constants, and from the metric callbacks'
    declarations; they must equal what the constructors accept and what the registry holds."""
    from typing import get_args, get_type_hints

    from critical import choices
    from critical._registry import metric_entries
    from critical.callbacks import (
        GradientConfusion,
        LayerRotation,
        RobustnessEvaluator,
        augmentation_cutoff,
        energy,
        gradient_confusion,
        layer_rotation,
        robustness,
    )
    from critical.callbacks._providers import known_metric_names
    from critical.cli_help import METRIC_KEYS
    from critical.data import augment, augment_basic, datamodule
    from critical.detector import COMBINES, LEARNING_SIGNALS, MODES
    from critical.metrics.layers import INCLUDE_CHOICES
    from critical.task import INTERVALS, OPTIMIZERS, SCHEDULES

    code = {
        "model.optimizer": OPTIMIZERS,
        "model.schedule": SCHEDULES,
        "model.schedule_interval": INTERVALS,
        "data.dataset": datamodule.DATASETS,
        "data.layout": datamodule.LAYOUTS,
        "data.padding_mode": augment_basic.PADDING_MODES,
        "data.policy": augment.POLICIES,
        "gradient_confusion.mode": gradient_confusion.MODES,
        "layer_rotation.aggregate": layer_rotation.AGGREGATES,
        "layer_rotation.include": INCLUDE_CHOICES,
        "critical_period.mode": MODES,
        "critical_period.combine": COMBINES,
        "critical_period.learning_signal": LEARNING_SIGNALS,
        "cutoff.policy": augmentation_cutoff.POLICIES,
        "energy.tracking_mode": energy.TRACKING_MODES,
        "robustness.when": robustness.WHEN,
        "robustness.source": robustness.SOURCES,
    }
    assert {k: tuple(v) for k, v in code.items()} == CHOICES
    # the constructors are annotated with the Literal types the choices come from
    for cls, arg, literal in (
        (GradientConfusion, "mode", choices.ConfusionMode),
        (LayerRotation, "aggregate", choices.Aggregate),
        (LayerRotation, "include", choices.Include),
        (RobustnessEvaluator, "when", choices.RobustnessWhen),
        (RobustnessEvaluator, "source", choices.RobustnessSource),
    ):
        assert get_args(get_type_hints(cls.__init__)[arg]) == get_args(literal), (cls, arg)
    # the metric names: the source's declarations (read without Lightning) are the registry's
    entries = metric_entries()
    assert set(MONITOR_METRICS) == set(known_metric_names())
    assert METRIC_KEYS == tuple(e.key for e in entries)
    assert MONITOR_METRICS == tuple(n for e in entries for n in e.names)
    # the defaults the short help prints
    from critical.callbacks import AugmentationCutoff
    from critical.data import ImageDataModule
    from critical.task import ImageClassifier

    text = command_help("fit")
    for cls, key in ((ImageDataModule, "data"), (AugmentationCutoff, "cutoff")):
        for name, param in inspect.signature(cls).parameters.items():
            line = next((ln for ln in text.splitlines() if f"--{key}.{name} " in ln), None)
            if line is not None and param.default not in (None, inspect.Parameter.empty):
                default = (
                    str(param.default).lower() if isinstance(param.default, bool) else param.default
                )
                assert (
                    f"(default: {default})" in text.split(f"--{key}.{name} ", 1)[1].split("--")[0]
                )
    model = inspect.signature(ImageClassifier).parameters
    assert f"(default: {model['model'].default})" in text


# ----------------------------------------------------------------------------------------------
# user errors (#14.3): two lines, the closest match, exit status 2, no traceback
# ----------------------------------------------------------------------------------------------

QUICK = str(ROOT / "experiments" / "quickstart.yaml")


def _assert_user_error(proc, *needles):
    err = proc.stderr.strip().splitlines()
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert len(err) <= 2, proc.stderr
    assert "Traceback" not in proc.stderr and "usage:" not in proc.stderr
    for needle in needles:
        assert needle in err[0], (needle, err)


@pytest.mark.slow
def test_fit_user_errors_in_a_subprocess(tmp_path):
    proc, _ = _critical("fit", "--config", QUICK, "--critical_period.threshhold", "0.1")
    _assert_user_error(
        proc,
        "unknown option --critical_period.threshhold",
        "did you mean --critical_period.threshold?",
    )
    proc, _ = _critical("fit", "--config", str(ROOT / "experiments" / "quickstart.yml"))
    _assert_user_error(proc, "no such file", "did you mean", "quickstart.yaml")
    proc, _ = _critical(
        "fit", "--config", QUICK, "--cutoff.policy", "detecter", f"--run.root={tmp_path}"
    )
    _assert_user_error(proc, "--cutoff.policy", "'detecter'", "did you mean 'detector'?")
    assert not any(tmp_path.iterdir())  # nothing written
    # --debug: the traceback, for a bug report
    # (a constructor's error: a wrong choice is now refused by the parser, from the Literal type)
    proc, _ = _critical("fit", "--config", QUICK, "--cutoff.fraction", "1.5", "--debug")
    assert proc.returncode != 0 and "Traceback" in proc.stderr and "ValueError" in proc.stderr


def test_fit_user_errors_in_process(tmp_path, capsys):
    def error(*args):
        assert main(["fit", "--config", QUICK, f"--run.root={tmp_path}", *args]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 2 and err[0].startswith("critical fit: error: "), err
        return err[0]

    assert "--data.multiplicity" in error("--data.multiplicity=-2")
    msg = error("--data.dataset=folder", "--data.root=/no/such/folder")
    assert "/no/such/folder" in msg
    assert "did you mean 'digits'?" in error("--data.dataset=digit")
    # an option typed with a Literal: jsonargparse refuses the value, the closest one is named
    assert "did you mean 'exact'?" in error("--gradient_confusion.mode=exat")
    assert "--trainer.max_epochs: invalid value 'abc' (expected int" in error(
        "--trainer.max_epochs=abc"
    )
    assert "--data.flip: invalid value 'maybe' (expected bool)" in error("--data.flip=maybe")
    bad = tmp_path / "bad.yaml"
    bad.write_text("trainer:\n  max_epoch: 2\n")
    assert "unknown option trainer.max_epoch" in error("--config", str(bad))
    assert "did you mean trainer.max_epochs?" in error("--config", str(bad))
    assert not any(p.name != "bad.yaml" for p in tmp_path.iterdir())


def test_sweep_and_report_user_errors(tmp_path):
    proc, _ = _critical("sweep", "nope.yaml")
    _assert_user_error(proc, "no sweep spec at nope.yaml", "sweep_cifar10_cpu.yaml")
    proc, _ = _critical("sweep", str(ROOT / "experiments" / "sweep_cifar10_cpu.yml"))
    _assert_user_error(proc, "did you mean", "sweep_cifar10_cpu.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed\n")
    proc, _ = _critical("sweep", str(bad))
    _assert_user_error(proc, "critical sweep: error:")
    proc, _ = _critical("sweep", str(bad), "--emitt")
    _assert_user_error(proc, "unknown option --emitt; did you mean --emit?")
    proc, _ = _critical("report", str(tmp_path), "--tolerence", "1")
    _assert_user_error(proc, "unknown option --tolerence; did you mean --tolerance?")
    proc, _ = _critical("report", str(tmp_path / "nope"))
    _assert_user_error(proc, "not a directory")
    proc, _ = _critical("fitt")
    _assert_user_error(proc, "did you mean 'fit'?")


def test_help_all_is_lightnings_full_help_with_the_choices(capsys):
    assert main(["fit", "--help-all"]) == 0
    out = capsys.readouterr().out
    assert len(out.splitlines()) > 500  # every Trainer, model, data and callback option
    assert "--cutoff.policy {detector,fixed,never}" in out
    assert "--data.policy {none,trivialaugment,randaugment}" in out
    flat = " ".join(out.split())
    assert "random-crop padding in pixels (0: no crop)" in flat
    assert "Known: " + ", ".join(MONITOR_METRICS) in flat
