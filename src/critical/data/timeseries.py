"""``TimeSeriesDataModule``: multivariate time-series classification with multiplicity k.

The time-series counterpart of :class:`~critical.data.ImageDataModule`, over the data sets
bundled with aeon (:mod:`critical.data.series_data`; offline; ``pip install -e
".[timeseries]"``). It implements the same multiplicity protocol
(:mod:`critical.data.protocol`: a validated ``multiplicity`` and ``augment``, honoured by the next
``train_dataloader()``, saved in checkpoints) with the same machinery: the series live as one
``float32`` tensor ``(N, C, T)`` on the training device, :class:`~critical.data.loader.MultiplicitySampler`
lays out the epoch (``layout="epoch"``: k copies of every series spread over a k-times longer
epoch; ``"batch"``: the k views of a series in the same batch) and
:class:`~critical.data.loader.AugmentedLoader` gathers each batch on the device and augments it
there with :class:`~critical.data.augment_ts.SeriesAugment` (jitter, scaling, magnitude warp,
time warp, window slice). So :class:`~critical.callbacks.AugmentationCutoff` cuts k to 1 here
exactly as for images.

Splits: ``test`` is the data set's own (official) test split; validation is a seeded, stratified
``val_size`` carved out of the official train split (``val_size=0``: no validation loop; the
tiny BasicMotions train split has only 40 series). Batches are raw ``float32`` values: the
per-channel :attr:`TimeSeriesDataModule.mean` / :attr:`~TimeSeriesDataModule.std` of the training
split are meant for the model's normalization layer (the CLI links them into
:class:`~critical.task.ImageClassifier`, which also takes ``(B, C, T)`` series).

Example:
    >>> dm = TimeSeriesDataModule("BasicMotions", batch_size=16, multiplicity=3, val_size=0)
    >>> dm.num_classes, dm.in_chans, dm.series_length
    (4, 6, 100)
    >>> loader = dm.train_dataloader()
    >>> len(loader)  # 3 x 40 series / 16
    8
    >>> x, y = next(iter(loader))
    >>> x.dtype, tuple(x.shape)
    (torch.float32, (16, 6, 100))
    >>> dm.multiplicity = 1
    >>> len(dm.train_dataloader()), len(dm.test_dataloader())
    (3, 3)
"""

from __future__ import annotations

import torch
from typing_extensions import override

from critical.data.augment_ts import SeriesAugment
from critical.data.device_module import DeviceDataModule
from critical.data.loader import LAYOUTS
from critical.data.series_data import SeriesData, check_bundled, load_bundled, require_aeon
from critical.data.splits import stratified_split

__all__ = ["TimeSeriesDataModule"]


def _check_int(name: str, v: object, low: int = 1) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or v < low:
        raise ValueError(f"{name} must be an int >= {low}, got {v!r}")
    return v


class TimeSeriesDataModule(DeviceDataModule):
    """Time-series classification data as device-resident ``float32`` tensors, with multiplicity k.

    Args:
        dataset: one of :data:`~critical.data.series_data.BUNDLED_DATASETS` (``"BasicMotions"``,
            ``"JapaneseVowels"``, ...).
        batch_size: training batch size: samples per batch (``layout="epoch"``) or series per
            batch (``layout="batch"``, the batch then holds ``batch_size * multiplicity``).
        eval_batch_size: validation / test batch size (default: ``batch_size``).
        multiplicity: k >= 1, augmented copies of each training series per epoch.
        layout: ``"epoch"`` or ``"batch"`` (see :mod:`critical.data.loader`).
        augment: augment the training data (``False``: raw values).
        jitter, scaling, magnitude_warp, time_warp, window_slice, knots, p: the
            :class:`~critical.data.augment_ts.SeriesAugment` configuration (0 turns a
            transform off).
        val_size: validation series carved out of the official train split (stratified,
            seeded): an int count or a float fraction; 0 (default) disables validation.
        seed: seed of the split, the shuffles and the augmentation.
        drop_last: drop the last incomplete training batch.
        data_device: where to keep the data; default: the trainer's root device, CPU without one.

    Raises (at construction, before any training): ``ValueError`` for an unknown data set
    (listing the bundled ones) or invalid options, ``ImportError`` naming the pip command when
    aeon is not installed.

    Example:
        >>> TimeSeriesDataModule("basicmotions")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: unknown time-series data set 'basicmotions' (did you mean 'BasicMotions'?); ...
    """

    def __init__(
        self,
        dataset: str = "BasicMotions",
        batch_size: int = 16,
        eval_batch_size: int | None = None,
        multiplicity: int = 1,
        layout: str = "epoch",
        augment: bool = True,
        jitter: float = 0.03,
        scaling: float = 0.1,
        magnitude_warp: float = 0.2,
        time_warp: float = 0.2,
        window_slice: float = 0.1,
        knots: int = 4,
        p: float = 0.5,
        val_size: int | float = 0,
        seed: int = 0,
        drop_last: bool = False,
        data_device: str | None = None,
    ) -> None:
        super().__init__()
        check_bundled(dataset)
        require_aeon()
        if layout not in LAYOUTS:
            raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
        _check_int("batch_size", batch_size)
        if eval_batch_size is not None:
            _check_int("eval_batch_size", eval_batch_size)
        if isinstance(val_size, bool) or not isinstance(val_size, (int, float)):
            raise ValueError(f"val_size must be an int count or a float fraction, got {val_size!r}")
        if isinstance(val_size, float) and not 0.0 <= val_size < 1.0:
            raise ValueError(f"a float val_size must be a fraction in [0, 1), got {val_size!r}")
        if isinstance(val_size, int) and val_size < 0:
            raise ValueError(f"an int val_size must be >= 0, got {val_size!r}")
        self.dataset = dataset
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size or batch_size
        self.layout = layout
        self.val_size = val_size
        self.seed = int(seed)
        self.drop_last = bool(drop_last)
        self.data_device = data_device
        self.augmentation = SeriesAugment(
            jitter=jitter,
            scaling=scaling,
            magnitude_warp=magnitude_warp,
            time_warp=time_warp,
            window_slice=window_slice,
            knots=knots,
            p=p,
        )
        self.multiplicity = multiplicity
        self.augment = augment  # validated by the setter
        self.save_hyperparameters()
        self._splits: dict[str, SeriesData | None] | None = None

    # ---------------------------------------------------------------- data facts
    def _train(self) -> SeriesData:
        train = self._load()["train"]
        assert train is not None
        return train

    @property
    def num_classes(self) -> int:
        """Number of classes (loads the data)."""
        return self._train().num_classes

    @property
    def in_chans(self) -> int:
        """Channels (variables) per series (loads the data)."""
        return self._train().in_chans

    @property
    def series_length(self) -> int:
        """Time steps per series (loads the data)."""
        return self._train().length

    @property
    def classes(self) -> list[str]:
        """Class names (label ``i`` is ``classes[i]``)."""
        return list(self._train().classes)

    @property
    def mean(self) -> tuple[float, ...]:
        """Per-channel mean of the training split (for the model's normalization)."""
        return tuple(self._train().channel_stats()[0])

    @property
    def std(self) -> tuple[float, ...]:
        """Per-channel std of the training split (for the model's normalization)."""
        return tuple(self._train().channel_stats()[1])

    @property
    def has_test_split(self) -> bool:
        """Always true: every bundled problem has its official test split."""
        return True

    @property
    def split_names(self) -> dict[str, str]:
        """What each split is, for reports: ``{"train": ..., "val": ..., "test": ...}``."""
        s = self._load()
        n = {k: len(v) if v is not None else 0 for k, v in s.items()}
        return {
            "train": f"{self.dataset} official TRAIN split less validation ({n['train']} series)",
            "val": f"seeded stratified {n['val']} series of the {self.dataset} TRAIN split"
            if n["val"]
            else "none (val_size=0)",
            "test": f"{self.dataset} official TEST split ({n['test']} series)",
        }

    # ---------------------------------------------------------------- loading
    @override
    def prepare_data(self) -> None:
        """Nothing to download: the data ship with aeon."""

    def _load(self) -> dict[str, SeriesData | None]:
        if self._splits is None:
            train_full, test = load_bundled(self.dataset)
            train_idx, val_idx = stratified_split(train_full.labels, self.val_size, self.seed)
            self._splits = {
                "train": train_full.subset(train_idx),
                "val": train_full.subset(val_idx),
                "test": test,
            }
        return self._splits

    @staticmethod
    @override
    def _tensors(data: SeriesData) -> tuple[torch.Tensor, torch.Tensor]:
        return data.values, data.labels
