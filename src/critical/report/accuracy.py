"""Which accuracy the report compares, and on which split: :func:`resolve_accuracy` and
:class:`AccuracySource`.

The primary accuracy is on the split nothing tuned on. Without ``accuracy_key``, the first of
these that every complete run recorded:

1. a test accuracy: a :data:`~critical.runfiles.TEST_ACCURACY_KEYS` column or metric of
   ``evaluations.json`` (``trainer.test`` after the fit), else ``robustness.json``'s
   ``clean_acc`` when it was measured on the test split (``"data": "test"``: a carved
   ``test_size`` or the data set's own test split);
2. a validation accuracy (:data:`~critical.runfiles.ACCURACY_KEYS`), with a note when a
   detector of these runs read the validation split (its numbers are then not held out);
3. a test accuracy only some runs recorded, ``clean_acc`` on the validation split, else
   ``val/acc``.

Any key the runs recorded can be chosen (``critical report --accuracy-key``): a metrics column,
a metric of ``evaluations.json``, or a ``*_acc`` of ``robustness.json`` (``clean_acc``); its
split is read from where it came from (a ``test``/``val`` name, the evaluation's stage,
``robustness.json["data"]``). The split's size (images or series) is ``robustness.json
["num_images"]`` when the accuracy came from there, else the datamodule's ``test_size`` /
``val_size``. No matplotlib.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from critical.report.runs import Run
from critical.report.tags import _int
from critical.runfiles import ACCURACY_KEYS, TEST_ACCURACY_KEYS, configured_callbacks

__all__ = ["AccuracySource", "reads_validation", "resolve_accuracy", "split_of"]

_SPLIT_NAMES = {"test": "test", "val": "validation", "validation": "validation"}


@dataclass(frozen=True)
class AccuracySource:
    """The accuracy the report compares: its ``key``, ``split`` (``"test"``, ``"validation"``
    or ``"unknown"``), where it was read (``origin``), the split's ``size`` (images or series,
    ``None`` when unknown) and whether a detector of these runs read that split
    (``tuned_on``: the detector's watched metrics, e.g. ``val/loss``).

    Example:
        >>> a = AccuracySource("clean_acc", "test", "robustness.json", 360)
        >>> a.header, a.describe()
        ('Test acc', '`clean_acc` on the test split (360 images; robustness.json)')
        >>> round(a.point_value, 3)
        0.278
    """

    key: str
    split: str
    origin: str = "metrics"
    size: int | None = None
    tuned_on: tuple[str, ...] = ()

    @property
    def header(self) -> str:
        """The accuracy column's name: ``Test acc``, ``Val acc`` or ``Acc``."""
        return {"test": "Test acc", "validation": "Val acc"}.get(self.split, "Acc")

    @property
    def split_name(self) -> str:
        return f"the {self.split} split" if self.split != "unknown" else "an unknown split"

    @property
    def point_value(self) -> float | None:
        """Accuracy points one image (or series) of the split is worth."""
        return 100.0 / self.size if self.size else None

    def describe(self) -> str:
        size = f"{self.size} images; " if self.size else ""
        return f"`{self.key}` on {self.split_name} ({size}{self.origin})"

    def warning(self) -> str | None:
        """What makes these numbers not held out, when something does."""
        if self.split == "validation" and self.tuned_on:
            return (
                f"the accuracy `{self.key}` is on the validation split, which the detector read "
                f"({', '.join(f'`{m}`' for m in self.tuned_on)}): not a held-out figure; record "
                "a test split (data.test_size with robustness.source: test, or trainer.test "
                "after the fit) to report one"
            )
        if self.split == "unknown":
            return f"the split of the accuracy `{self.key}` is not recorded"
        return None


def split_of(run: Run, key: str) -> tuple[str, str]:
    """``(split, origin)`` of accuracy ``key`` in ``run`` (see the module docstring)."""
    if key in run.columns():
        return _split_from_name(key), "metrics"
    for entry in reversed(run.evaluations):
        metrics = entry.get("metrics")
        if isinstance(metrics, dict) and key in metrics:
            stage = str(entry.get("stage") or "")
            split = "test" if stage == "test" else "validation" if stage == "validate" else None
            return split or _split_from_name(key), f"evaluations.json, trainer.{stage or '?'}"
    if key in run.robust_accuracies():
        data = str((run.robustness or {}).get("data") or "")
        return _SPLIT_NAMES.get(data, "unknown"), "robustness.json"
    return _split_from_name(key), "metrics"


def _split_from_name(key: str) -> str:
    head = key.split("/")[0].split("_")[0].lower()
    if key in TEST_ACCURACY_KEYS or head == "test":
        return "test"
    if key in ACCURACY_KEYS or head in ("val", "valid", "validation"):
        return "validation"
    return "unknown"


def _size(run: Run, split: str, origin: str) -> int | None:
    if origin == "robustness.json":
        n = _int((run.robustness or {}).get("num_images"))
        if n:
            return n
    node = run.config.get("datamodule") if isinstance(run.config, dict) else None
    hp = node.get("hparams") if isinstance(node, dict) else None
    key = {"test": "test_size", "validation": "val_size"}.get(split)
    n = _int(hp.get(key)) if isinstance(hp, dict) and key else None
    return n if n and n > 1 else None


def reads_validation(run: Run) -> list[str]:
    """The validation metrics run's detector read: those of its event (or of the replay it was
    branched from), else its configured ``monitor`` (the default: ``val/loss``)."""
    names: list[str] = []
    for ev in ((run.cut_event or {}).get("event"), (run.tags.get("replay") or {}).get("event")):
        if isinstance(ev, dict) and isinstance(ev.get("metrics"), list):
            names += [str(m) for m in ev["metrics"]]
    if not names:
        cp = configured_callbacks(run.config).get("CriticalPeriod")
        if cp is not None and run.policy == "detector":
            monitor = cp.get("monitor") or "val/loss"
            names = [monitor] if isinstance(monitor, str) else [str(m) for m in monitor]
    return [m for m in dict.fromkeys(names) if _split_from_name(m) == "validation"]


def resolve_accuracy(runs: Sequence[Run], key: str | None = None) -> AccuracySource:
    """The accuracy to compare (``key``, else chosen as the module docstring says), with its
    split, origin and size, read from the complete runs."""
    complete = [r for r in runs if r.status == "complete"]
    if key is None:
        key = _default_key(complete)
    splits: dict[tuple[str, str], int] = {}
    sizes: dict[int, int] = {}
    for r in complete:
        if r.accuracy(key) is None:
            continue
        split, origin = split_of(r, key)
        splits[(split, origin)] = splits.get((split, origin), 0) + 1
        n = _size(r, split, origin)
        if n:
            sizes[n] = sizes.get(n, 0) + 1
    if splits:
        (split, origin), _ = max(splits.items(), key=lambda kv: kv[1])
        if len({s for s, _ in splits}) > 1:
            split = "mixed: " + "/".join(sorted({s for s, _ in splits}))
    else:
        split, origin = _split_from_name(key), "metrics"
    size = max(sizes, key=lambda n: sizes[n]) if len(sizes) == 1 else None
    tuned: dict[str, None] = {}
    if split == "validation":
        for r in complete:
            if r.policy == "detector":
                tuned.update(dict.fromkeys(reads_validation(r)))
    return AccuracySource(key, split, origin, size, tuple(tuned))


def _default_key(complete: list[Run]) -> str:
    def count(k: str, split: str | None = None) -> int:
        return sum(
            r.accuracy(k) is not None and (split is None or split_of(r, k)[0] == split)
            for r in complete
        )

    test = [(k, count(k)) for k in TEST_ACCURACY_KEYS]
    test.append(("clean_acc", count("clean_acc", "test")))
    everywhere = [k for k, n in test if complete and n == len(complete)]
    if everywhere:
        return everywhere[0]
    columns = {c for r in complete for c in r.columns()}
    val = next((k for k in ACCURACY_KEYS if k in columns), None)
    if val is not None:
        return val
    some = max(test, key=lambda kn: kn[1])
    if some[1]:
        return some[0]
    if count("clean_acc"):
        return "clean_acc"
    return "val/acc"
