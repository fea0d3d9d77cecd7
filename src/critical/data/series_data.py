"""Time-series classification data sets bundled with aeon, as ``float32`` tensors (offline).

:func:`load_bundled` reads one of :data:`BUNDLED_DATASETS`, the classification problems of the
UCR/UEA archive that ship inside aeon's wheel (so nothing is downloaded), and returns its
*official* train and test splits as :class:`SeriesData`: ``values`` ``(N, C, T)`` ``float32``,
``labels`` ``(N,)`` ``int64`` and the class names (label ``i`` is ``classes[i]``; numeric class
names are sorted as numbers).

=========================  =====  ========  ======  ======  ===================================
name                       train  test      C       T       what
=========================  =====  ========  ======  ======  ===================================
``BasicMotions``           40     40        6       100     smartwatch accelerometer + gyroscope,
                                                            4 activities
``JapaneseVowels``         270    370       12      25      LPC cepstra of 9 speakers' vowels
                                                            (aeon's equal-length version)
``ArrowHead``              36     175       1       251     arrow-head outlines, 3 classes
``GunPoint``               50     150       1       150     hand motion, 2 classes
``ItalyPowerDemand``       67     1029      1       24      daily power demand, 2 classes
``OSULeaf``                200    242       1       427     leaf outlines, 6 classes
``ACSF1``                  100    100       1       1460    appliance power, 10 classes
``PickupGestureWiimoteZ``  50     50        1       361     Wii remote gestures, 10 classes
                                                            (equal-length version)
``UnitTest``               20     22        1       24      aeon's test data (2 classes)
=========================  =====  ========  ======  ======  ===================================

aeon is an optional dependency (``pip install -e ".[timeseries]"``); :func:`require_aeon` says
so when it is missing. Unequal-length problems are read in aeon's equal-length version; should
a series still differ in length, it is padded at the end with its last value.

Example:
    >>> from critical.data.series_data import SeriesData, check_bundled
    >>> import torch
    >>> d = SeriesData(torch.zeros(4, 6, 100), torch.tensor([0, 1, 2, 3]))
    >>> len(d), d.in_chans, d.length, d.num_classes
    (4, 6, 100, 4)
    >>> check_bundled("Epilepsy")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: unknown time-series data set 'Epilepsy'; the ones bundled with aeon (offline) are ...
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor

from critical.data.image_data import DatasetNotFoundError

__all__ = [
    "AEON_INSTALL",
    "BUNDLED_DATASETS",
    "SeriesData",
    "check_bundled",
    "load_bundled",
    "require_aeon",
]

#: Classification problems whose files ship in aeon's wheel (read offline).
BUNDLED_DATASETS: tuple[str, ...] = (
    "BasicMotions",
    "JapaneseVowels",
    "ArrowHead",
    "GunPoint",
    "ItalyPowerDemand",
    "OSULeaf",
    "ACSF1",
    "PickupGestureWiimoteZ",
    "UnitTest",
)

#: How to install the optional dependency.
AEON_INSTALL = 'pip install -e ".[timeseries]"  (or: pip install "aeon>=1.0")'


@dataclass
class SeriesData:
    """Series as a ``float32`` tensor ``(N, C, T)``, ``int64`` labels ``(N,)``, class names.

    Example:
        >>> d = SeriesData(torch.arange(12.0).view(2, 2, 3), torch.tensor([0, 1]), ["a", "b"])
        >>> d.channel_stats()
        ([4.0, 7.0], [3.1091, 3.1091])
        >>> len(d.subset(torch.tensor([1])))
        1
    """

    values: Tensor
    labels: Tensor
    classes: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not isinstance(self.values, Tensor) or self.values.ndim != 3:
            shape = tuple(self.values.shape) if isinstance(self.values, Tensor) else None
            raise ValueError(f"values must be a (N, C, T) tensor, got {shape}")
        self.values = self.values.to(torch.float32)
        self.labels = torch.as_tensor(self.labels).to(torch.int64)
        if self.labels.shape != (self.values.shape[0],):
            raise ValueError(
                f"labels must have shape ({self.values.shape[0]},), got {tuple(self.labels.shape)}"
            )
        if not self.classes:
            n = int(self.labels.max()) + 1 if len(self.labels) else 0
            self.classes = [str(i) for i in range(n)]
        self.classes = list(self.classes)

    def __len__(self) -> int:
        return int(self.values.shape[0])

    @property
    def num_classes(self) -> int:
        """Number of classes (``len(classes)``)."""
        return len(self.classes)

    @property
    def in_chans(self) -> int:
        """Number of channels (variables) C."""
        return int(self.values.shape[1])

    @property
    def length(self) -> int:
        """Number of time steps T."""
        return int(self.values.shape[2])

    def subset(self, indices: Tensor) -> SeriesData:
        """The series at ``indices`` (a new ``SeriesData`` sharing class names)."""
        idx = torch.as_tensor(indices, dtype=torch.long, device=self.values.device)
        return SeriesData(self.values[idx], self.labels[idx.to(self.labels.device)], self.classes)

    def to(self, device: torch.device | str) -> SeriesData:
        """A copy on ``device`` (no copy if already there)."""
        return SeriesData(self.values.to(device), self.labels.to(device), self.classes)

    def channel_stats(self) -> tuple[list[float], list[float]]:
        """Per-channel mean and std over all series and time steps (for the model's
        normalization layer); a constant channel gets std 1."""
        if len(self) == 0:
            return [0.0] * self.in_chans, [1.0] * self.in_chans
        v = self.values.to(torch.float64).transpose(0, 1).reshape(self.in_chans, -1)
        mean = v.mean(dim=1)
        std = v.std(dim=1, unbiased=False)
        std = torch.where(std > 0, std, torch.ones_like(std))
        return [round(float(m), 4) for m in mean], [round(float(s), 4) for s in std]


def check_bundled(name: str) -> str:
    """``name`` if it is one of :data:`BUNDLED_DATASETS`, else ``ValueError`` listing them."""
    if name not in BUNDLED_DATASETS:
        hint = next((b for b in BUNDLED_DATASETS if b.lower() == str(name).lower()), None)
        did = f" (did you mean {hint!r}?)" if hint else ""
        raise ValueError(
            f"unknown time-series data set {name!r}{did}; the ones bundled with aeon (offline) "
            f"are {list(BUNDLED_DATASETS)}"
        )
    return name


def _aeon_installed() -> bool:
    try:
        return importlib.util.find_spec("aeon") is not None
    except (ImportError, ValueError):
        return False


def require_aeon() -> None:
    """Raise ``ImportError`` with the install command when aeon is not installed."""
    if not _aeon_installed():
        raise ImportError(
            f"the time-series data sets need the optional dependency aeon: {AEON_INSTALL}"
        )


def _label_order(labels: Sequence[Any]) -> list[str]:
    names = sorted({str(v) for v in labels})
    try:
        return sorted(names, key=float)
    except ValueError:
        return names


def _as_array(x: Any, length: int | None = None) -> np.ndarray:
    """aeon's ``(N, C, T)`` array, or its list of ``(C, T_i)`` arrays padded with edge values."""
    if isinstance(x, np.ndarray):
        arr = x
    else:
        items = [np.asarray(s, dtype=np.float64) for s in x]
        t = length if length is not None else max(s.shape[-1] for s in items)
        arr = np.stack([np.pad(s, ((0, 0), (0, t - s.shape[-1])), mode="edge") for s in items])
    if length is not None and arr.shape[-1] != length:
        arr = np.pad(arr, ((0, 0), (0, 0), (0, length - arr.shape[-1])), mode="edge")
    return arr.astype(np.float32)


def _max_length(x: Any) -> int:
    if isinstance(x, np.ndarray):
        return int(x.shape[-1])
    return max(int(np.asarray(s).shape[-1]) for s in x)


def _loader() -> Callable[..., Any]:
    require_aeon()
    from aeon.datasets import load_classification  # type: ignore[import-untyped]

    return load_classification


def load_bundled(name: str) -> tuple[SeriesData, SeriesData]:
    """The official ``(train, test)`` splits of the bundled problem ``name``.

    Raises ``ValueError`` for a name not in :data:`BUNDLED_DATASETS`, ``ImportError`` (naming
    the pip command) without aeon, :class:`DatasetNotFoundError` if this aeon version lacks the
    files, and ``ValueError`` for missing values.
    """
    check_bundled(name)
    load_classification = _loader()
    try:
        x_tr, y_tr = load_classification(name, split="train", load_equal_length=True)
        x_te, y_te = load_classification(name, split="test", load_equal_length=True)
    except Exception as err:
        import aeon  # type: ignore[import-untyped]

        raise DatasetNotFoundError(
            f"aeon {aeon.__version__} did not load the bundled data set {name!r} offline "
            f"({type(err).__name__}: {err}); bundled: {list(BUNDLED_DATASETS)}"
        ) from err
    length = max(_max_length(x_tr), _max_length(x_te))
    classes = _label_order([*list(y_tr), *list(y_te)])
    index = {c: i for i, c in enumerate(classes)}
    splits = []
    for x, y in ((x_tr, y_tr), (x_te, y_te)):
        arr = _as_array(x, length)
        if not np.isfinite(arr).all():
            raise ValueError(f"{name}: the series hold missing or non-finite values")
        labels = torch.tensor([index[str(v)] for v in y], dtype=torch.int64)
        splits.append(SeriesData(torch.from_numpy(arr), labels, classes))
    return splits[0], splits[1]
