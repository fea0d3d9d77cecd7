"""The README's front-door snippets, run as written."""

import os
import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def _block(marker: str) -> str:
    text = README.read_text()
    m = re.search(re.escape(marker) + r".*?\n```python\n(.*?)```", text, re.S)
    assert m, f"README has no python block after {marker!r}"
    return m.group(1)


def _run(code: str, cwd: Path) -> dict:
    """Execute a README block in ``cwd`` (where its files go) and return its namespace."""
    before = os.getcwd()
    os.chdir(cwd)
    try:
        namespace: dict = {}
        exec(compile(code, "README.md", "exec"), namespace)
    finally:
        os.chdir(before)
    return namespace


def test_add_it_to_your_trainer_example_runs_as_written(tmp_path):
    code = _block("<!-- example: trainer")
    assert len([line for line in code.splitlines() if line.strip()]) <= 12
    namespace = _run(code, tmp_path)
    callbacks = namespace["callbacks"]
    cp, cut = callbacks[2], callbacks[3]
    assert all(len(cb.history) == 10 for cb in callbacks[:2])
    assert cp.active == "primary" and cp.detector.metrics == ["val/loss"]  # the default rule
    assert cut.multiplicity_before == 3
    assert cp.fired == (cut.cut_epoch is not None)
    energy = callbacks[4].summary()
    assert energy["total"]["epochs"] == 10 and energy["total"]["duration_s"] > 0


def test_own_module_example_ends_its_schedule_on_time(tmp_path):
    code = _block("<!-- example: own module")
    namespace = _run(code, tmp_path)
    trainer, cut = namespace["trainer"], namespace["cut"]
    assert cut.cut_epoch == 2 and namespace["data"].multiplicity == 1
    sched = trainer.lr_scheduler_configs[0].scheduler
    # the uncut run's total: 5 epochs x 24 steps at k = 3; the cut run took 2 x 24 + 3 x 8 steps
    assert sched.total_steps == 120 and sched.last_epoch == 120
    assert trainer.global_step == 2 * 24 + 3 * 8


def test_readme_commands_exist():
    text = README.read_text()
    for path in re.findall(r"--config (experiments/\S+\.yaml)", text):
        assert (README.parent / path).is_file(), path
    for path in re.findall(r"critical sweep (experiments/\S+\.yaml)", text):
        assert (README.parent / path).is_file(), path
    assert "python -m pytest" in text and 'pip install -e ".[dev,timeseries]"' in text
