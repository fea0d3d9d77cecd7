"""Multiplicity-aware data: device-resident uint8 datasets, batched augmentation, datamodules.

* :mod:`critical.data.augment` — batched tensor augmentation (crop, flip, cutout,
  TrivialAugment, RandAugment) and :class:`BatchAugment`; float output in [0, 1], no
  normalization.
* :mod:`critical.data.datasets` — CIFAR-10/100, ImageFolder (cached), digits, synthetic, as
  ``uint8`` tensors; :func:`stratified_split`.
* :mod:`critical.data.loader` — samplers and loaders for the ``"epoch"`` / ``"batch"`` layouts
  of multiplicity k, DDP sharding; how k interacts with LR schedules.
* :mod:`critical.data.datamodule` — :class:`ImageDataModule`.
* :mod:`critical.data.multiplicity` — :class:`MultiplicityDataset` /
  :class:`MultiplicityDataModule` for users' own data, and the protocol for their own
  datamodules.
* :mod:`critical.data.protocol` — how callbacks find and change k.
* :mod:`critical.data.probe` — a fixed, seeded probe of a user's own training data (what
  :class:`~critical.callbacks.AugmentationGap` re-reads every epoch).
* :mod:`critical.data.timeseries` — :class:`TimeSeriesDataModule`, time-series classification
  on aeon's bundled data sets (:mod:`critical.data.series_data`; optional extra
  ``pip install -e ".[timeseries]"``) with the batched time-series augmentation of
  :mod:`critical.data.augment_ts`.

Example:
    >>> from critical.data import ImageDataModule, supports_multiplicity
    >>> dm = ImageDataModule("digits", batch_size=128, multiplicity=3)
    >>> supports_multiplicity(dm), dm.num_classes, dm.in_chans, dm.image_size
    (True, 10, 1, 16)
"""

from __future__ import annotations

from critical.data.augment import (
    POLICIES,
    BatchAugment,
    cutout,
    rand_augment,
    random_crop,
    random_flip,
    to_float,
    trivial_augment,
)
from critical.data.augment_ts import SeriesAugment
from critical.data.datamodule import ImageDataModule
from critical.data.datasets import (
    DATASETS,
    DatasetNotFoundError,
    ImageData,
    default_cache_dir,
    load_cifar,
    load_dataset,
    load_digits,
    load_image_folder,
    make_synthetic,
    stratified_split,
)
from critical.data.loader import (
    LAYOUTS,
    AugmentedLoader,
    MultiplicitySampler,
    TensorLoader,
    epoch_order,
    shard_indices,
)
from critical.data.multiplicity import MultiplicityDataModule, MultiplicityDataset
from critical.data.protocol import find_multiplicity_target, get_multiplicity, supports_multiplicity
from critical.data.series_data import BUNDLED_DATASETS, SeriesData, load_bundled
from critical.data.timeseries import TimeSeriesDataModule

__all__ = [
    "BUNDLED_DATASETS",
    "DATASETS",
    "LAYOUTS",
    "POLICIES",
    "AugmentedLoader",
    "BatchAugment",
    "DatasetNotFoundError",
    "ImageData",
    "ImageDataModule",
    "MultiplicityDataModule",
    "MultiplicityDataset",
    "MultiplicitySampler",
    "SeriesAugment",
    "SeriesData",
    "TensorLoader",
    "TimeSeriesDataModule",
    "cutout",
    "default_cache_dir",
    "epoch_order",
    "find_multiplicity_target",
    "get_multiplicity",
    "load_bundled",
    "load_cifar",
    "load_dataset",
    "load_digits",
    "load_image_folder",
    "make_synthetic",
    "rand_augment",
    "random_crop",
    "random_flip",
    "shard_indices",
    "stratified_split",
    "supports_multiplicity",
    "to_float",
    "trivial_augment",
]
