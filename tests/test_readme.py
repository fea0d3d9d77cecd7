"""The README's and the docs' snippets, run as written, and the commands they name."""

import os
import re
from pathlib import Path

import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))
MARKER = re.compile(
    r"<!-- example: ([^(]+?) \(tests/test_readme\.py runs this block as written\) -->"
)


def _block(marker: str, path: Path = README) -> str:
    """The python block after ``marker`` in ``path`` (the README unless given)."""
    text = path.read_text()
    m = re.search(re.escape(marker) + r".*?\n```python\n(.*?)```", text, re.S)
    assert m, f"{path.name} has no python block after {marker!r}"
    return m.group(1)


def _run(code: str, cwd: Path, filename: str = "README.md") -> dict:
    """Execute a block in ``cwd`` (where its files go) and return its namespace."""
    before = os.getcwd()
    os.chdir(cwd)
    try:
        namespace: dict = {}
        exec(compile(code, filename, "exec"), namespace)
    finally:
        os.chdir(before)
    return namespace


def _lines(code: str) -> int:
    return len([line for line in code.splitlines() if line.strip()])


def _image_folder(root: Path, classes: int = 4, per_class: int = 16, size: int = 32) -> None:
    """A tiny ImageFolder tree: ``classes`` folders of ``per_class`` RGB images (PNG and JPEG),
    each class a different colour plus noise, so a small CNN can learn something."""
    import numpy as np

    rng = np.random.default_rng(0)
    for c in range(classes):
        folder = root / f"class_{c}"
        folder.mkdir(parents=True)
        colour = np.array([255 * (c & 1), 255 * ((c >> 1) & 1), 128], dtype=np.float64)
        for i in range(per_class):
            pixels = np.clip(colour + rng.normal(0, 40, (size, size, 3)), 0, 255)
            ext = "png" if i % 2 else "jpg"
            Image.fromarray(pixels.astype(np.uint8)).save(folder / f"{i}.{ext}")


def test_every_marked_block_is_run_by_a_test():
    """Each ``<!-- example: NAME ... -->`` in the README and docs/ has a test below, and every
    python block of the README is marked."""
    names = set()
    for path in [README, *DOCS]:
        names |= {(path.name, n) for n in MARKER.findall(path.read_text())}
    assert names == {
        ("README.md", "folders"),
        ("callbacks.md", "trainer"),
        ("callbacks.md", "own module"),
    }
    text = README.read_text()
    assert text.count("```python") == len(MARKER.findall(text))


def test_front_door_example_runs_as_written(tmp_path):
    from critical.callbacks import (
        AugmentationCutoff,
        AugmentationGap,
        CriticalPeriod,
        LayerRotation,
    )

    code = _block("<!-- example: folders")
    assert _lines(code) <= 13
    _image_folder(tmp_path / "data" / "train")
    namespace = _run(code, tmp_path)
    trainer = namespace["trainer"]
    by_type = {type(cb): cb for cb in trainer.callbacks}
    cp, cut = by_type[CriticalPeriod], by_type[AugmentationCutoff]
    # the detector added what its default rules read, and read the user's ImageFolder through
    # the ConcatDataset of k copies: the augmented-view loss every epoch
    gap, rotation = by_type[AugmentationGap], by_type[LayerRotation]
    epochs = trainer.current_epoch
    assert epochs == 20
    assert len(gap.history) == epochs and len(rotation.history) == epochs
    assert all("aug_gap/aug_loss" in row for row in gap.history)
    # no validation in this example: the data-agnostic fallback decides
    assert cp.active == "fallback" and cp.detector.metrics == ["layer_rotation"]
    assert cut.multiplicity_before == 3
    assert cp.fired == (cut.cut_epoch is not None)
    data = trainer.datamodule
    assert data.multiplicity == (1 if cut.cut_epoch is not None else 3)


def test_add_it_to_your_trainer_example_runs_as_written(tmp_path):
    from critical.callbacks import AugmentationGap

    code = _block("<!-- example: trainer", ROOT / "docs" / "callbacks.md")
    assert _lines(code) <= 12
    namespace = _run(code, tmp_path, "docs/callbacks.md")
    trainer, callbacks = namespace["trainer"], namespace["callbacks"]
    cp, cut, energy = callbacks[0], callbacks[1], callbacks[2]
    gap = next(cb for cb in trainer.callbacks if isinstance(cb, AugmentationGap))
    # the guard reads the augmented side only (the added gap skips the clean side: half the cost)
    assert len(gap.history) == 10 and "aug_gap/aug_loss" in gap.history[-1]
    assert not gap.clean and "aug_gap" not in gap.history[-1]
    assert cp.active == "primary" and cp.detector.metrics == ["val/loss"]  # the default rule
    assert cut.multiplicity_before == 3
    assert cp.fired == (cut.cut_epoch is not None)
    summary = energy.summary()
    assert summary["total"]["epochs"] == 10 and summary["total"]["duration_s"] > 0


def test_own_module_example_ends_its_schedule_on_time(tmp_path):
    code = _block("<!-- example: own module", ROOT / "docs" / "callbacks.md")
    namespace = _run(code, tmp_path, "docs/callbacks.md")
    trainer, cut = namespace["trainer"], namespace["cut"]
    assert cut.cut_epoch == 2 and namespace["data"].multiplicity == 1
    sched = trainer.lr_scheduler_configs[0].scheduler
    # the uncut run's total: 5 epochs x 24 steps at k = 3; the cut run took 2 x 24 + 3 x 8 steps
    assert sched.total_steps == 120 and sched.last_epoch == 120
    assert trainer.global_step == 2 * 24 + 3 * 8


@pytest.mark.parametrize("path", [README, *DOCS], ids=lambda p: p.name)
def test_commands_exist(path):
    """Every config, sweep and benchmark script a page names is in the repository."""
    text = path.read_text()
    for found in re.findall(r"--config (experiments/\S+\.yaml)", text):
        assert (ROOT / found).is_file(), found
    for found in re.findall(r"critical sweep (experiments/\S+\.yaml)", text):
        assert (ROOT / found).is_file(), found
    for found in re.findall(r"python (benchmarks/\S+\.py)", text):
        assert (ROOT / found).is_file(), found


def test_readme_commands_exist():
    text = README.read_text()
    first_screen = text[: text.index("\n## ")]
    for command in (
        'pip install -e ".[dev,timeseries]"',
        "critical fit --config experiments/quickstart.yaml",
        "python -m pytest",
        "CriticalPeriod(), AugmentationCutoff()",
    ):
        assert command in first_screen, command


def test_relative_links_resolve():
    """Every relative link of the README and the docs pages names a file that exists."""
    for path in [README, ROOT / "CONTRIBUTING.md", *DOCS]:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", path.read_text()):
            if "://" in target:
                continue
            assert (path.parent / target).exists(), f"{path.name}: {target}"
