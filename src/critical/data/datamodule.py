"""``ImageDataModule``: a LightningDataModule over ``uint8`` tensors with multiplicity k.

The datamodule implements the multiplicity protocol (:mod:`critical.data.protocol`):

* ``multiplicity`` (int >= 1, validated on assignment) — how many independently augmented
  copies of each training image the *next* ``train_dataloader()`` holds;
* ``augment`` (bool) — whether the next train loader augments (``False``: plain float
  images; with k > 1 the k copies are then identical).

Both are read each time ``train_dataloader()`` runs, so a callback that sets
``datamodule.multiplicity = 1`` at an epoch boundary and makes Lightning rebuild the loader
(``trainer.reload_dataloaders_every_n_epochs``) changes the following epochs, and
``trainer.num_training_batches`` with them. Both are saved in checkpoints
(``state_dict`` / ``load_state_dict``), so a resumed run continues with the k it had.

Data path: the dataset is decoded once into a ``uint8`` tensor (see
:mod:`critical.data.datasets`), split (seeded, stratified) into train / validation, and moved in
``setup()`` to the training device (``trainer.strategy.root_device``; CPU without a trainer;
``data_device`` overrides). The train loader (:class:`~critical.data.loader.AugmentedLoader`)
gathers each batch on the device and augments it there with
:class:`~critical.data.augment.BatchAugment`; batches are ``float32`` in [0, 1] (normalize in
the model with :attr:`ImageDataModule.mean` / :attr:`ImageDataModule.std`). Layouts
``"epoch"`` (k copies spread over a k-times longer epoch) and ``"batch"`` (k views of each
image in the same, k-times larger batch) and their interaction with LR schedules are described
in :mod:`critical.data.loader`. Under DDP each rank gets a disjoint, equally long share of the
epoch; reshuffles are reproducible from ``(seed, epoch)``.

Validation and test loaders are un-augmented. ``test_dataloader()`` uses the official test
split where the dataset has one (CIFAR, synthetic), your own held-out ImageFolder directory
(``dataset="folder", test_root=...``), and otherwise the validation split (folder, digits);
:attr:`ImageDataModule.has_test_split` says which, :attr:`ImageDataModule.split_names` says what
each split is (for reports). ``val_root`` likewise replaces the validation split carved out of
``root`` by a folder of its own.

Example:
    >>> dm = ImageDataModule("synthetic", batch_size=64, multiplicity=2, policy="trivialaugment")
    >>> dm.setup("fit")
    >>> loader = dm.train_dataloader()
    >>> len(loader)  # 2 x 461 training images / 64
    15
    >>> x, y = next(iter(loader))
    >>> x.dtype, tuple(x.shape), dm.num_classes, dm.in_chans
    (torch.float32, (64, 3, 16, 16), 4, 3)
    >>> dm.multiplicity = 1
    >>> len(dm.train_dataloader())
    8
"""

from __future__ import annotations

import os
from typing import Any, TypedDict

import torch
from typing_extensions import override

from critical.choices import AugmentPolicy, Layout, PaddingMode
from critical.choices import Dataset as DatasetName
from critical.data.augment import BatchAugment
from critical.data.datasets import (
    DATASET_INFO,
    DATASETS,
    ImageData,
    default_cache_dir,
    load_cifar,
    load_dataset,
    load_held_out,
    load_image_folder,
    stratified_split,
)
from critical.data.device_module import DeviceDataModule
from critical.data.loader import (
    LAYOUTS,
)
from critical.data.splits import check_size, keeps_all, noisy_labels
from critical.validation import (
    check_bool,
    check_choice,
    check_int,
    check_number,
    check_path,
    check_str,
    check_type,
)

__all__ = ["ImageDataModule"]


class _Splits(TypedDict):
    """A dataset's splits: every dataset has a training and a (possibly empty) validation split;
    only some have an official test split."""

    train: ImageData
    val: ImageData
    test: ImageData | None


class ImageDataModule(DeviceDataModule):
    """Image classification data as device-resident ``uint8`` tensors, with multiplicity k.

    Args:
        dataset: ``"cifar10"``, ``"cifar100"``, ``"folder"`` (an ImageFolder directory given by
            ``root``), ``"digits"`` (scikit-learn, offline) or ``"synthetic"`` (generated).
        root: CIFAR root folder (default ``~/.cache/critical/datasets``) or the image folder.
        download: let torchvision download CIFAR when missing.
        batch_size: training batch size: samples per batch (``layout="epoch"``) or images per
            batch (``layout="batch"``, the batch then holds ``batch_size * multiplicity``).
        eval_batch_size: validation / test batch size (default: ``batch_size``).
        multiplicity: k >= 1, augmented copies of each training image per epoch.
        layout: ``"epoch"`` or ``"batch"`` (see :mod:`critical.data.loader`).
        augment: augment the training data (``False``: plain float images).
        crop_padding, padding_mode, flip, cutout, policy, num_ops, magnitude: the
            :class:`~critical.data.augment.BatchAugment` configuration (``policy`` in
            ``"none"``, ``"trivialaugment"``, ``"randaugment"``).
        val_size: validation images carved out of the training set (stratified, seeded): an
            int count or a float fraction (0 disables validation).
        train_size: optionally keep only this many (int) or this fraction (float) of the
            remaining training images (stratified, seeded); ``None`` keeps all.
        seed: seed of the split, the shuffles and the augmentation.
        drop_last: drop the last incomplete training batch.
        image_size: folder: resize to this size; digits: 8 or upsampled size (default 16);
            synthetic: image side (default 16). Ignored for CIFAR.
        cache_dir: where the ImageFolder cache lives (default ``~/.cache/critical``).
        data_device: where to keep the data (``"cpu"``, ``"cuda"``...); default: the trainer's
            root device, CPU without a trainer.
        val_root: folder only: an ImageFolder directory with the same class sub-folders (all or
            some of them) used as the validation split; ``val_size`` is then ignored and all of
            ``root`` trains.
        test_root: folder only: an ImageFolder directory used as the test split (accuracy on
            your own held-out images).
        test_size: for data sets without a test split (folder, digits): carve a seeded,
            stratified test split of this many (int) or this share (float) of the training
            images, disjoint from the validation and training splits (carved first, with seed
            ``seed + 2``), so that a detector may read the validation split while accuracy is
            reported on images nothing was tuned on. ``None``: no carved test split.
        label_noise: replace this share of the *training* labels (seeded with ``seed + 3``) by
            another class drawn uniformly; validation and test keep their true labels.

    Example:
        >>> ImageDataModule("mnist")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: `dataset` must be one of ['cifar10', 'cifar100', 'folder', ...], got 'mnist'
    """

    def __init__(
        self,
        dataset: DatasetName = "cifar10",
        root: str | None = None,
        download: bool = False,
        batch_size: int = 128,
        eval_batch_size: int | None = None,
        multiplicity: int = 1,
        layout: Layout = "epoch",
        augment: bool = True,
        crop_padding: int = 4,
        padding_mode: PaddingMode = "zeros",
        flip: bool = True,
        cutout: int = 0,
        policy: AugmentPolicy = "none",
        num_ops: int = 2,
        magnitude: int = 9,
        val_size: int | float = 0.1,
        train_size: int | float | None = None,
        seed: int = 0,
        drop_last: bool = False,
        image_size: int | None = None,
        cache_dir: str | None = None,
        data_device: str | None = None,
        val_root: str | None = None,
        test_root: str | None = None,
        test_size: int | float | None = None,
        label_noise: float = 0.0,
    ) -> None:
        super().__init__()
        check_choice("dataset", dataset, DATASETS)
        if dataset == "folder" and not root:
            raise ValueError("dataset='folder' needs root=<path of an ImageFolder directory>")
        check_path("root", root, allow_none=True)
        for name, folder in (("val_root", val_root), ("test_root", test_root)):
            if folder and dataset != "folder":
                raise ValueError(f"{name} is an option of dataset='folder', not {dataset!r}")
            if folder and not os.path.isdir(os.path.expanduser(folder)):
                raise ValueError(f"{name} {folder!r} is not a directory")
        check_choice("layout", layout, LAYOUTS)
        check_int("batch_size", batch_size, 1)
        check_int("eval_batch_size", eval_batch_size, 1, allow_none=True)
        check_size("val_size", val_size, allow_none=False)
        check_size("train_size", train_size, allow_none=True)
        check_size("test_size", test_size, allow_none=True)
        if test_size is not None and (DATASET_INFO[dataset]["has_test"] or test_root):
            raise ValueError(
                f"test_size carves a test split for data sets without one; {dataset!r} "
                + ("has test_root" if test_root else "has an official test split")
            )
        check_int("image_size", image_size, 1, allow_none=True)
        for flag, value in (("download", download), ("drop_last", drop_last)):
            check_bool(flag, value)
        check_type("seed", seed, int, "an integer")
        check_path("cache_dir", cache_dir, allow_none=True)
        check_str("data_device", data_device, allow_none=True)
        self.dataset = dataset
        self.root = root
        self.download = download
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size or batch_size
        self.layout = layout
        self.val_size = val_size
        self.train_size = train_size
        self.label_noise = check_number("label_noise", label_noise, minimum=0, maximum=1)
        self.seed = seed
        self.drop_last = drop_last
        self.image_size_option = image_size
        self.cache_dir = cache_dir
        self.data_device = data_device
        self.val_root = val_root or None
        self.test_root = test_root or None
        self.test_size = test_size
        self.augmentation = BatchAugment(
            crop_padding=crop_padding,
            padding_mode=padding_mode,
            flip=flip,
            cutout=cutout,
            policy=policy,
            num_ops=num_ops,
            magnitude=magnitude,
        )
        self.multiplicity = multiplicity
        self.augment = augment  # validated by the setter
        # the constructor's arguments, recorded in checkpoints and in a run's config.json
        self.save_hyperparameters()
        self._splits: _Splits | None = None
        self._stats: tuple[list[float], list[float]] | None = None
        self._prepared: tuple[ImageData, ImageData | None] | None = None

    # ---------------------------------------------------------------- dataset facts
    def _static(self, key: str) -> Any:
        info = DATASET_INFO[self.dataset]
        if (
            key == "image_size"
            and self.dataset in ("digits", "synthetic", "folder")
            and self.image_size_option is not None
        ):
            return self.image_size_option
        return info.get(key)

    @property
    def num_classes(self) -> int:
        """Number of classes (loads the data when it cannot be known in advance)."""
        v = self._static("num_classes")
        return int(v) if v is not None else self._load()["train"].num_classes

    @property
    def in_chans(self) -> int:
        """Image channels (3 for RGB, 1 for digits)."""
        if self._splits is not None or self.dataset == "folder":
            return self._load()["train"].in_chans
        return int(self._static("in_chans"))

    @property
    def image_size(self) -> int:
        """Image side in pixels."""
        v = self._static("image_size")
        return int(v) if v is not None else self._load()["train"].image_size

    @property
    def classes(self) -> list[str]:
        """Class names (label ``i`` is ``classes[i]``); loads the data."""
        return list(self._load()["train"].classes)

    @property
    def mean(self) -> tuple[float, ...]:
        """Per-channel pixel mean of the training split on the [0, 1] scale (loads the data)."""
        return tuple(self._channel_stats()[0])

    @property
    def std(self) -> tuple[float, ...]:
        """Per-channel pixel std of the training split on the [0, 1] scale (loads the data)."""
        return tuple(self._channel_stats()[1])

    @property
    def has_test_split(self) -> bool:
        """Whether ``test_dataloader()`` uses a test split (official or ``test_root``; else:
        validation)."""
        return (
            bool(DATASET_INFO[self.dataset]["has_test"])
            or self.test_root is not None
            or self.test_size is not None
        )

    @property
    def split_names(self) -> dict[str, str]:
        """What each split is, for reports: ``{"train": ..., "val": ..., "test": ...}``
        (loads the data)."""
        s = self._load()
        n = {k: len(v) if isinstance(v, ImageData) else 0 for k, v in s.items()}
        name = f"folder {self.root}" if self.dataset == "folder" else self.dataset
        carved = f"seeded stratified {n['val']} images of the {name} training images"
        test = (
            f"held-out folder {self.test_root} ({n['test']} images)"
            if self.test_root
            else f"seeded stratified {n['test']} images of the {name} training images, "
            "disjoint from training and validation"
            if self.test_size is not None
            else f"{self.dataset} official test split ({n['test']} images)"
            if s["test"] is not None
            else f"the validation split ({carved}; no test split)"
        )
        less = "" if self.val_root else " less validation"
        return {
            "train": f"{name} training images{less} ({n['train']} images"
            + (f", {self.label_noise:.0%} of the labels flipped)" if self.label_noise else ")"),
            "val": f"held-out folder {self.val_root} ({n['val']} images)"
            if self.val_root
            else carved,
            "test": test,
        }

    @property
    def train_data(self) -> ImageData:
        """The training split (on the data device after ``setup``)."""
        return self._current()["train"]

    @property
    def val_data(self) -> ImageData:
        """The validation split (possibly empty)."""
        return self._current()["val"]

    @property
    def test_data(self) -> ImageData | None:
        """The official test split, or ``None``."""
        return self._current()["test"]

    def _channel_stats(self) -> tuple[list[float], list[float]]:
        if self._stats is None:
            self._stats = self._load()["train"].channel_stats()
        return self._stats

    # ---------------------------------------------------------------- loading
    def _root(self) -> str | None:
        return os.path.expanduser(self.root) if self.root else None

    @override
    def prepare_data(self) -> None:
        """Download CIFAR (``download=True``) or build the ImageFolder cache, once per node."""
        if self.dataset in ("cifar10", "cifar100") and self.download:
            root = self._root() or str(default_cache_dir() / "datasets")
            load_cifar(self.dataset, root, train=True, download=True)
            load_cifar(self.dataset, root, train=False, download=True)
        elif self.dataset == "folder":
            for folder in (self._root(), self.val_root, self.test_root):
                if folder:
                    load_image_folder(
                        os.path.expanduser(folder),
                        cache_dir=self.cache_dir,
                        image_size=self.image_size_option,
                    )

    def _load(self) -> _Splits:
        if self._splits is not None:
            return self._splits
        train_full, test = load_dataset(
            self.dataset,
            root=self._root(),
            download=self.download,
            cache_dir=self.cache_dir,
            image_size=self.image_size_option,
            seed=self.seed,
        )
        if self.test_root:
            test = load_held_out(
                "test_root", self.test_root, train_full, self.cache_dir, self.image_size_option
            )
        elif self.test_size is not None:
            rest, test_idx = stratified_split(train_full.labels, self.test_size, self.seed + 2)
            train_full, test = train_full.subset(rest), train_full.subset(test_idx)
        if self.val_root:
            train, val = (
                train_full,
                load_held_out(
                    "val_root", self.val_root, train_full, self.cache_dir, self.image_size_option
                ),
            )
        else:
            train_idx, val_idx = stratified_split(train_full.labels, self.val_size, self.seed)
            train, val = train_full.subset(train_idx), train_full.subset(val_idx)
        if self.train_size is not None and not keeps_all(self.train_size, len(train)):
            _, keep = stratified_split(train.labels, self.train_size, self.seed + 1)
            train = train.subset(keep)
        if self.label_noise > 0:
            labels = noisy_labels(train.labels, self.label_noise, train.num_classes, self.seed + 3)
            train = ImageData(train.images, labels, train.classes)
        self._splits = {"train": train, "val": val, "test": test}
        return self._splits

    @staticmethod
    @override
    def _tensors(data: ImageData) -> tuple[torch.Tensor, torch.Tensor]:
        return data.images, data.labels
