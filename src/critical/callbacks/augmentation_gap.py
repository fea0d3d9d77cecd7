"""The augmentation gap: how much worse the model does on fresh augmented views of training
samples than on the same samples un-augmented (a candidate end-of-critical-period signal that
needs no validation data)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import lightning.pytorch as pl
import torch
from torch import nn
from typing_extensions import override

from critical.callbacks._base import EpochValues, MetricCallback
from critical.data.protocol import find_multiplicity_target
from critical.validation import check_int

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


class AugmentationGap(MetricCallback):
    """Logs, every epoch, the loss on a fixed probe of training samples un-augmented and under
    fresh augmentations, and the gap between them.

    At each epoch end the module (in eval mode, without gradients) classifies ``num_samples``
    fixed training samples as they are and ``views`` freshly augmented copies of them (new
    random draws every epoch). While augmentation still teaches the model something, the
    augmented views cost more than the clean ones; how that gap evolves is a signal of whether
    the augmentation still matters that reads no validation data. Cost: ``(1 + views) *
    num_samples`` forward passes per epoch (512 with the defaults, against 135,000 training
    samples per epoch of CIFAR-10 at k = 3) and no state but the probe's indices.

    The training data must offer ``probe_views(num, views, seed) -> (clean, [augmented, ...],
    labels)``: :class:`~critical.data.ImageDataModule`, :class:`~critical.data.TimeSeriesDataModule`,
    :class:`~critical.data.MultiplicityDataset` and :class:`~critical.data.MultiplicityDataModule`
    do; it is found as :func:`critical.data.find_multiplicity_target` finds the multiplicity,
    and fit start raises a clear error when it is missing. The module's ``forward`` must return
    class logits (``loss_fn(logits, labels)`` replaces the default cross-entropy).

    Logged (prefix ``critical/``): ``aug_gap`` (augmented minus clean loss), ``aug_gap/aug_loss``,
    ``aug_gap/clean_loss``, ``aug_gap/aug_acc`` and ``aug_gap/clean_acc`` (accuracies in [0, 1]).

    Args:
        num_samples: probe size (>= 1).
        views: augmented copies per epoch (>= 1).
        seed: seeds the augmentation draws (mixed with the epoch).
        loss_fn: ``loss_fn(logits, labels) -> loss`` (default: mean cross-entropy).
        batch_size: forward passes are run in chunks of this many samples.
        name: distinguishes two instances in checkpoints.

    Example:
        >>> import lightning as L
        >>> from critical.callbacks import AugmentationGap
        >>> trainer = L.Trainer(callbacks=[AugmentationGap(num_samples=128)], logger=False)
    """

    metric_names = (
        "aug_gap",
        "aug_gap/aug_loss",
        "aug_gap/clean_loss",
        "aug_gap/aug_acc",
        "aug_gap/clean_acc",
    )

    def __init__(
        self,
        num_samples: int = 256,
        views: int = 1,
        seed: int = 0,
        loss_fn: LossFn | None = None,
        batch_size: int = 256,
        name: str | None = None,
    ) -> None:
        super().__init__(log_layers=False, name=name)
        self.num_samples = check_int("num_samples", num_samples, 1)
        self.views = check_int("views", views, 1)
        self.seed = check_int("seed", seed, 0)
        self.batch_size = check_int("batch_size", batch_size, 1)
        if loss_fn is not None and not callable(loss_fn):
            raise ValueError(f"`loss_fn` must be callable, got {loss_fn!r}")
        self.loss_fn = loss_fn
        self._source: Any = None

    @override
    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        source = find_multiplicity_target(trainer, pl_module)
        if source is None or not callable(getattr(source, "probe_views", None)):
            found = "no training data" if source is None else type(source).__name__
            raise ValueError(
                f"AugmentationGap needs training data with a `probe_views(num, views, seed)` "
                f"method (found {found}): use critical.data.MultiplicityDataset (with an "
                "`eval_transform`) or MultiplicityDataModule around your dataset, or add the "
                "method to your datamodule"
            )
        self._source = source

    @torch.no_grad()
    def _measure(
        self, pl_module: pl.LightningModule, x: torch.Tensor, y: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Summed loss and correct count of ``x`` (in chunks)."""
        loss_fn = self.loss_fn or nn.functional.cross_entropy
        total = torch.zeros((), device=pl_module.device)
        correct = torch.zeros((), device=pl_module.device)
        for i in range(0, x.shape[0], self.batch_size):
            xb = x[i : i + self.batch_size].to(pl_module.device)
            yb = y[i : i + self.batch_size].to(pl_module.device)
            logits = pl_module(xb)
            total += loss_fn(logits.float(), yb) * yb.shape[0]
            correct += (logits.argmax(-1) == yb).sum()
        return total, correct

    @override
    def _compute_epoch(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> EpochValues:
        assert self._source is not None  # on_fit_start
        seed = self.seed * 1_000_003 + trainer.current_epoch
        clean, views, labels = self._source.probe_views(self.num_samples, self.views, seed)
        was_training = pl_module.training
        pl_module.eval()
        try:
            with trainer.precision_plugin.forward_context():  # as validation runs
                c_loss, c_ok = self._measure(pl_module, clean, labels)
                a_loss = torch.zeros_like(c_loss)
                a_ok = torch.zeros_like(c_ok)
                for v in views:
                    loss, ok = self._measure(pl_module, v, labels)
                    a_loss, a_ok = a_loss + loss, a_ok + ok
        finally:
            pl_module.train(was_training)
        n = float(labels.shape[0])
        m = n * len(views)
        values = torch.stack([c_loss / n, a_loss / m, c_ok / n, a_ok / m]).tolist()  # one sync
        clean_loss, aug_loss, clean_acc, aug_acc = values
        scalars = {
            "aug_gap": aug_loss - clean_loss,
            "aug_gap/aug_loss": aug_loss,
            "aug_gap/clean_loss": clean_loss,
            "aug_gap/aug_acc": aug_acc,
            "aug_gap/clean_acc": clean_acc,
        }
        return scalars, {}, {"samples": int(n)}
