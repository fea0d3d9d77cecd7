"""A plain image-classification ``LightningModule`` used by the experiments.

:class:`ImageClassifier` wraps a model from :mod:`critical.models` (or any timm name), normalizes
its input inside ``forward`` (so it takes images in ``[0, 1]``, or ``uint8`` in ``[0, 255]``, as
adversarial attacks and our tensor datamodules expect), trains with SGD + Nesterov momentum (or
AdamW) under an epoch-based learning-rate schedule (or a per-step one: ``schedule_interval="step"``,
``schedule="onecycle"``), and logs ``train/loss``, ``train/acc``,
``val/loss``, ``val/acc``, ``test/loss``, ``test/acc`` once per epoch. It also classifies time
series ``(B, C, T)`` with the 1-D models of :mod:`critical.models` (``resnet1d``), and can start
from a weights file for fine-tuning (``weights=``, ``new_head=``, ``freeze=``; see
:mod:`critical.models.weights`). ``example_input_array`` is set, so Lightning's model summary
reports the model's FLOPs as well as its parameters.

Why the schedule is epoch-based by default, and how per-step ones stay on course across a cut:
:mod:`critical.schedules`.

Example:
    >>> import torch
    >>> from critical.task import ImageClassifier
    >>> task = ImageClassifier(model="small_cnn", num_classes=10, in_chans=1, img_size=8)
    >>> task(torch.rand(2, 1, 8, 8)).shape
    torch.Size([2, 10])
    >>> task(torch.randint(0, 256, (2, 1, 8, 8), dtype=torch.uint8)).shape
    torch.Size([2, 10])
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast, get_args

import lightning as L
import torch
from lightning.fabric.utilities.data import AttributeDict
from lightning.pytorch.utilities.types import OptimizerLRSchedulerConfig
from torch import nn
from torchmetrics.classification import MulticlassAccuracy
from typing_extensions import override

from critical.choices import Interval, Optimizer, Schedule
from critical.models import create_model, input_ndim
from critical.models.weights import freeze as freeze_layers
from critical.models.weights import load_weights, read_state_dict
from critical.schedules import INTERVALS, SCHEDULES, EpochSchedule, StepSchedule, build_scheduler

__all__ = [
    "CIFAR10_MEAN",
    "CIFAR10_STD",
    "INTERVALS",
    "OPTIMIZERS",
    "SCHEDULES",
    "EpochSchedule",
    "ImageClassifier",
    "StepSchedule",
]

#: Per-channel statistics of the CIFAR-10 training set (pixel values scaled to [0, 1]).
CIFAR10_MEAN: tuple[float, float, float] = (0.4914, 0.4822, 0.4465)
CIFAR10_STD: tuple[float, float, float] = (0.2470, 0.2435, 0.2616)

OPTIMIZERS = get_args(Optimizer)


def _channel_stats(
    values: Sequence[float] | None, default: Sequence[float], fill: float, in_chans: int, what: str
) -> list[float]:
    """Per-channel ``mean``/``std``: None -> CIFAR-10 stats for 3 channels, else ``fill``."""
    if values is None:
        values = list(default) if in_chans == len(default) else [fill] * in_chans
    values = [float(v) for v in values]
    if len(values) == 1 and in_chans > 1:
        values = values * in_chans
    if len(values) != in_chans:
        raise ValueError(
            f"{what} must have 1 or in_chans={in_chans} values, got {len(values)}: {values}"
        )
    return values


class ImageClassifier(L.LightningModule):
    """Image classification with a timm/critical model, normalization inside ``forward``.

    Args:
        model: a name from :func:`critical.models.list_models` (``"resnet18_cifar"``,
            ``"cifar_resnet20"``, ``"vit_cifar_tiny"``, ``"small_cnn"``, ``"resnet1d"``, ...) or
            any timm name.
        num_classes: number of classes (>= 2).
        in_chans: image channels, or the variables of a series.
        img_size: image side (used by ViTs), or the series length T for series models (used by
            ``example_input_array``, the input of the model summary's FLOP count).
        model_kwargs: extra constructor arguments for the model (``drop_rate``, ``shortcut``, ...).
        mean: per-channel mean subtracted in ``forward`` (one value is broadcast). ``None``: the
            CIFAR-10 mean when ``in_chans == 3``, else 0.5 (series models: 0). Stored as the
            buffer ``mean``.
        std: per-channel std, as ``mean``. ``None``: CIFAR-10 std for 3 channels, else 0.5
            (series models: 1).
        optimizer: ``"sgd"`` (momentum, optionally Nesterov) or ``"adamw"`` (use a small ``lr``,
            e.g. 1e-3, and a larger ``weight_decay``, e.g. 0.05, typically for ViTs).
        lr: peak learning rate (> 0).
        momentum: SGD momentum in [0, 1).
        nesterov: Nesterov momentum (SGD; needs ``momentum > 0``).
        weight_decay: decoupled for AdamW, L2 for SGD (>= 0).
        decay_norm_and_bias: also decay 1-D parameters (norm gains, biases) and the parameters the
            model lists in ``no_weight_decay()`` (ViT position embedding and class token). Off by
            default, as in Keras' kernel-only L2 regularization and most modern recipes.
        label_smoothing: label smoothing of the training loss in [0, 1); ``val``/``test`` losses
            are plain cross-entropy.
        schedule: ``"cosine"``, ``"multistep"``, ``"constant"`` (see :class:`EpochSchedule`) or
            ``"onecycle"`` (torch's ``OneCycleLR`` with ``max_lr=lr``, stepped per optimizer step
            and sized from ``trainer.estimated_stepping_batches``; its warm-up is
            ``warmup_epochs`` of the epochs, or 30% without).
        schedule_interval: ``"epoch"`` (default: one scheduler step per epoch, see the module
            docstring) or ``"step"`` (the schedule evaluated at every optimizer step, sized from
            ``trainer.estimated_stepping_batches``). ``"onecycle"`` is always per step.
        warmup_epochs: epochs of linear LR warmup.
        min_lr_factor: final LR of the cosine, as a fraction of ``lr``.
        milestones: multistep milestones: epochs (ints) or fractions (floats in (0, 1)) of the
            schedule's epochs.
        gamma: multistep decay factor.
        schedule_epochs: the epochs the schedule spans; ``None`` takes ``trainer.max_epochs``.
        channels_last: run the model in channels-last memory format (faster convs on GPU).
        compile: ``torch.compile`` the model in ``configure_model`` (in place; the state-dict keys
            do not change).
        weights: start from this local file: a Lightning checkpoint (of an ``ImageClassifier``
            or of any module whose network keys match), a state dict or a ``.safetensors`` file
            of the network (:func:`~critical.models.weights.read_state_dict`). Names and shapes
            must match exactly; a mismatch raises ``ValueError`` naming the first mismatching
            key. The metric callbacks then measure from these weights (layer rotation from the
            fine-tuning start).
        new_head: with ``weights``, keep a freshly initialized classifier for ``num_classes``
            instead of loading the file's one (fine-tuning to another task).
        freeze: ``"backbone"`` (everything but the classifier) or module paths of the network
            (``["blocks.0", "blocks.1"]``) whose parameters are not trained.
        pretrained: timm's pretrained weights (timm names only). For a local file through timm,
            also pass ``model_kwargs={"pretrained_cfg_overlay": {"file": path}}``; timm then
            drops the file's classifier when ``num_classes`` differs.

    Inputs: ``forward(x)`` takes images ``x`` of shape (B, C, H, W), float in [0, 1] or uint8
    in [0, 255], or series (B, C, T) for series models; batches are ``(x, y)`` with integer
    labels ``y``.

    Example:
        >>> import torch
        >>> from torch.utils.data import DataLoader, TensorDataset
        >>> import lightning as L
        >>> x, y = torch.rand(32, 1, 8, 8), torch.arange(32) % 10
        >>> task = ImageClassifier("small_cnn", num_classes=10, in_chans=1, img_size=8)
        >>> trainer = L.Trainer(max_epochs=2, accelerator="cpu", logger=False,
        ...                     enable_checkpointing=False, enable_progress_bar=False,
        ...                     enable_model_summary=False)
        >>> trainer.fit(task, DataLoader(TensorDataset(x, y), batch_size=16))
        >>> sorted(k for k in trainer.callback_metrics if k.startswith("train/"))
        ['train/acc', 'train/loss']
    """

    # buffers (``register_buffer`` in ``__init__``)
    mean: torch.Tensor
    std: torch.Tensor

    def __init__(
        self,
        model: str = "resnet18_cifar",
        num_classes: int = 10,
        in_chans: int = 3,
        img_size: int = 32,
        model_kwargs: dict[str, Any] | None = None,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        optimizer: Optimizer = "sgd",
        lr: float = 0.1,
        momentum: float = 0.9,
        nesterov: bool = True,
        weight_decay: float = 5e-4,
        decay_norm_and_bias: bool = False,
        label_smoothing: float = 0.0,
        schedule: Schedule = "cosine",
        schedule_interval: Interval = "epoch",
        warmup_epochs: int = 0,
        min_lr_factor: float = 0.0,
        milestones: Sequence[float] = (0.5, 0.75),
        gamma: float = 0.1,
        schedule_epochs: int | None = None,
        channels_last: bool = False,
        compile: bool = False,
        weights: str | None = None,
        new_head: bool = False,
        freeze: str | list[str] | None = None,
        pretrained: bool = False,
    ) -> None:
        super().__init__()
        if num_classes < 2:
            raise ValueError(f"num_classes must be >= 2, got {num_classes}")
        if optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {list(OPTIMIZERS)}, got {optimizer!r}")
        if not lr > 0:
            raise ValueError(f"lr must be > 0, got {lr}")
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"momentum must be in [0, 1), got {momentum}")
        if optimizer == "sgd" and nesterov and momentum == 0:
            raise ValueError("nesterov=True needs momentum > 0")
        if weight_decay < 0:
            raise ValueError(f"weight_decay must be >= 0, got {weight_decay}")
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing}")
        if schedule_epochs is not None and schedule_epochs < 1:
            raise ValueError(f"schedule_epochs must be >= 1 or None, got {schedule_epochs}")
        if new_head and weights is None:
            raise ValueError("new_head=True needs weights=<file> to start from")
        if schedule_interval not in INTERVALS:
            raise ValueError(
                f"schedule_interval must be one of {list(INTERVALS)}, got {schedule_interval!r}"
            )
        # Validate the schedule arguments now (fail before training starts); the schedule that is
        # used is rebuilt in configure_optimizers, once trainer.max_epochs is known.
        EpochSchedule(
            "cosine" if schedule == "onecycle" else schedule,
            schedule_epochs or max(warmup_epochs, 0) + 1,
            warmup_epochs,
            min_lr_factor,
            milestones,
            gamma,
        )
        self.save_hyperparameters()

        ndim = input_ndim(model)
        series = ndim == 1
        mean_values = _channel_stats(
            mean, () if series else CIFAR10_MEAN, 0.0 if series else 0.5, in_chans, "mean"
        )
        std_values = _channel_stats(
            std, () if series else CIFAR10_STD, 1.0 if series else 0.5, in_chans, "std"
        )
        if any(s <= 0 for s in std_values):
            raise ValueError(f"std must be > 0, got {std_values}")
        self.register_buffer("mean", torch.tensor(mean_values).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std_values).view(1, -1, 1, 1))

        self.net = create_model(
            model,
            num_classes=num_classes,
            in_chans=in_chans,
            img_size=img_size,
            pretrained=pretrained,
            **(model_kwargs or {}),
        )
        if weights is not None:
            try:
                load_weights(self.net, read_state_dict(weights), new_head=new_head)
            except ValueError as err:
                raise ValueError(f"ImageClassifier(weights={weights!r}): {err}") from None
        if freeze:
            freeze_layers(self.net, freeze)
        # one input of the right shape: Lightning's model summary counts the FLOPs with it
        self.example_input_array = torch.zeros(1, in_chans, *([img_size] * ndim))
        if channels_last:
            self.net = self.net.to(memory_format=torch.channels_last)
        self._compiled = False

        self.train_acc = MulticlassAccuracy(num_classes=num_classes, average="micro")
        self.val_acc = MulticlassAccuracy(num_classes=num_classes, average="micro")
        self.test_acc = MulticlassAccuracy(num_classes=num_classes, average="micro")

    @property
    def _hp(self) -> AttributeDict:
        """``self.hparams``, as ``save_hyperparameters`` stores them (Lightning types the property
        as a plain ``MutableMapping``, without attribute access)."""
        return cast(AttributeDict, self.hparams)

    # ------------------------------------------------------------------ model
    @override
    def configure_model(self) -> None:
        """Compile the network in place when ``compile=True`` (once)."""
        if self._hp.compile and not self._compiled:
            self.net.compile()
            self._compiled = True

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """Map images in [0, 1] (float) or [0, 255] (uint8), or float series, to normalized
        float tensors (per channel)."""
        if x.dtype == torch.uint8:
            x = x.to(self.mean.dtype).div_(255.0)
        elif not x.is_floating_point():
            raise TypeError(f"images must be float in [0, 1] or uint8, got dtype {x.dtype}")
        shape = (1, -1) + (1,) * (x.dim() - 2)  # (1, C, 1, 1) for images, (1, C, 1) for series
        x = (x - self.mean.view(shape)) / self.std.view(shape)
        if self._hp.channels_last and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    @override
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits for images ``x`` (B, C, H, W) in [0, 1] (float) or [0, 255] (uint8), or for
        series (B, C, T)."""
        return self.net(self.normalize(x))

    # ------------------------------------------------------------------ steps
    def _step(self, batch: Any, stage: str) -> torch.Tensor:
        x, y = batch[0], batch[1]
        logits = self(x)
        smoothing = self._hp.label_smoothing if stage == "train" else 0.0
        loss = nn.functional.cross_entropy(logits, y, label_smoothing=smoothing)
        acc = getattr(self, f"{stage}_acc")
        acc(logits.detach(), y)
        n = y.shape[0]
        # The loss is a tensor: Lightning averages it over the epoch (weighted by batch size) and,
        # with sync_dist, reduces it across ranks once at epoch end (on_step=False: no per-step
        # sync). The accuracy is a torchmetrics Metric: it syncs its own state, so no sync_dist.
        self.log(
            f"{stage}/loss",
            loss,
            on_step=False,
            on_epoch=True,
            sync_dist=True,
            batch_size=n,
            prog_bar=stage != "test",
        )
        self.log(
            f"{stage}/acc", acc, on_step=False, on_epoch=True, batch_size=n, prog_bar=stage == "val"
        )
        return loss

    @override
    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        return self._step(batch, "train")

    @override
    def validation_step(self, batch: Any, batch_idx: int) -> None:
        self._step(batch, "val")

    @override
    def test_step(self, batch: Any, batch_idx: int) -> None:
        self._step(batch, "test")

    @override
    def predict_step(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> torch.Tensor:
        x = batch[0] if isinstance(batch, (tuple, list)) else batch
        return self(x)

    # ------------------------------------------------------------------ optimization
    def _schedule_epochs(self) -> int | None:
        if self._hp.schedule_epochs is not None:
            return int(self._hp.schedule_epochs)
        trainer = self._trainer
        max_epochs = getattr(trainer, "max_epochs", None) if trainer is not None else None
        if max_epochs is None or max_epochs < 1:
            return None
        return int(max_epochs)

    def param_groups(self) -> list[dict[str, Any]]:
        """Parameter groups: weight decay off for 1-D and ``no_weight_decay()`` parameters.

        Unless ``decay_norm_and_bias=True`` or ``weight_decay == 0``, in which case it is one
        group.
        """
        wd = float(self._hp.weight_decay)
        params = [(n, p) for n, p in self.net.named_parameters() if p.requires_grad]
        if self._hp.decay_norm_and_bias or wd == 0:
            return [{"params": [p for _, p in params], "weight_decay": wd}]
        skip: set[str] = set()
        no_weight_decay = getattr(self.net, "no_weight_decay", None)  # timm models may have it
        if no_weight_decay is not None:
            skip = set(no_weight_decay())
        decay = [p for n, p in params if p.ndim > 1 and n not in skip]
        no_decay = [p for n, p in params if p.ndim <= 1 or n in skip]
        groups = [{"params": decay, "weight_decay": wd}, {"params": no_decay, "weight_decay": 0.0}]
        return [g for g in groups if g["params"]]

    @override
    def configure_optimizers(self) -> OptimizerLRSchedulerConfig:
        hp = self._hp
        if hp.optimizer == "sgd":
            opt: torch.optim.Optimizer = torch.optim.SGD(
                self.param_groups(), lr=hp.lr, momentum=hp.momentum, nesterov=hp.nesterov
            )
        else:
            opt = torch.optim.AdamW(self.param_groups(), lr=hp.lr)
        interval = "step" if hp.schedule == "onecycle" else hp.get("schedule_interval", "epoch")
        scheduler = build_scheduler(
            opt,
            hp.schedule,
            interval,
            self._schedule_epochs(),
            warmup_epochs=hp.warmup_epochs,
            min_factor=hp.min_lr_factor,
            milestones=hp.milestones,
            gamma=hp.gamma,
            lr=hp.lr,
            trainer=self.trainer if interval == "step" else None,
        )
        return {
            "optimizer": opt,
            "lr_scheduler": {
                "scheduler": scheduler,
                "interval": interval,
                "frequency": 1,
                "name": "lr",
            },
        }
