"""The `critical` command: help, version, and a real `critical fit` through LightningCLI."""

import json
from pathlib import Path

import pytest

from critical import __version__
from critical.cli import main

ROOT = Path(__file__).resolve().parents[1]
TINY = [
    "--config",
    str(ROOT / "experiments" / "quickstart.yaml"),
    "--trainer.max_epochs=3",
    "--trainer.enable_progress_bar=false",
    "--trainer.enable_model_summary=false",
    "--robustness.num_images=64",
    "--robustness.corruptions=[contrast]",
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
    with pytest.raises(FileExistsError):  # a run directory is never overwritten
        main(["fit", *TINY, f"--run.root={tmp_path}", "--run.name=r"])


def test_every_config_parses(capsys):
    for cfg in sorted((ROOT / "experiments").glob("*.yaml")):
        if cfg.name.startswith("sweep_"):
            continue
        with pytest.raises(SystemExit) as exc:
            main(["fit", "--config", str(cfg), "--print_config"])
        assert exc.value.code == 0, cfg
        assert "critical_period:" in capsys.readouterr().out
