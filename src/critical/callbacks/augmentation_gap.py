"""The augmentation gap: how much worse the model does on fresh augmented views of training
samples than on the same samples un-augmented (a candidate end-of-critical-period signal that
needs no validation data)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.utilities import rank_zero_info
from torch import nn
from typing_extensions import override

from critical.callbacks._base import EpochValues, MetricCallback
from critical.data.probe import find_probe_source
from critical.validation import check_bool, check_int

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

    The probe is read from the training data wherever they are reachable
    (:func:`critical.data.probe.find_probe_source`, at train start): the library's datamodules
    and :class:`~critical.data.MultiplicityDataset` offer ``probe_views`` (with a clean,
    un-augmented side); any other map-style training dataset — a datamodule's, a loader passed
    to ``fit``, a module's ``train_dataloader()``, through ``Subset`` or a ``ConcatDataset`` of k
    copies — is re-read at a fixed, seeded set of indices spread over the whole set, each read a
    fresh random view through the dataset's own transforms. Its clean view is known where its
    ``transform`` is a torchvision ``Compose`` whose augmentation steps can be taken out
    (:mod:`critical.data.clean_view`: random crops become centre crops, other random steps are
    dropped; kept only if it reads the same view twice), said once at train start; elsewhere
    only the augmented-view loss and accuracy are logged. The probe's random draws are seeded
    and leave the training's RNGs untouched. Data from which no probe can be drawn (an iterable
    dataset), or a module whose ``forward`` does not return class logits for the probe's inputs,
    is an error before the first training step (when :class:`~critical.callbacks.CriticalPeriod`
    added this callback by itself for its learning guard, it says once that the guard reads the
    training loss instead). ``loss_fn(logits, labels)`` replaces the default cross-entropy.

    Logged (prefix ``critical/``): ``aug_gap/aug_loss`` and ``aug_gap/aug_acc`` (accuracy in
    [0, 1]); where the clean view is known, also ``aug_gap`` (augmented minus clean loss),
    ``aug_gap/clean_loss`` and ``aug_gap/clean_acc``.

    Args:
        num_samples: probe size (>= 1).
        views: augmented copies per epoch (>= 1).
        seed: seeds the augmentation draws (mixed with the epoch).
        loss_fn: ``loss_fn(logits, labels) -> loss`` (default: mean cross-entropy).
        batch_size: forward passes are run in chunks of this many samples.
        name: distinguishes two instances in checkpoints.
        clean: also classify the clean side, where the data know it (``aug_gap`` and the clean
            metrics); ``False`` halves the forward passes and logs the augmented side only (what
            :class:`~critical.callbacks.CriticalPeriod` adds for its learning guard).

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
        clean: bool = True,
    ) -> None:
        super().__init__(log_layers=False, name=name)
        self.num_samples = check_int("num_samples", num_samples, 1)
        self.views = check_int("views", views, 1)
        self.seed = check_int("seed", seed, 0)
        self.batch_size = check_int("batch_size", batch_size, 1)
        self.clean = check_bool("clean", clean)
        if loss_fn is not None and not callable(loss_fn):
            raise ValueError(f"`loss_fn` must be callable, got {loss_fn!r}")
        self.loss_fn = loss_fn
        self._source: Any = None
        #: why no probe could be drawn in this fit (``None``: it could, or not resolved yet)
        self.unavailable: str | None = None
        self._resolved = False
        #: whether the probe's data know an un-augmented view (``aug_gap`` and the clean side)
        self.has_clean: bool | None = None
        #: how a user dataset's clean view was inferred, or why none is known
        self.clean_how: str | None = None
        #: set by :class:`~critical.callbacks.CriticalPeriod` on an instance it added itself:
        #: data without a probe then make the detector read another signal instead of failing
        self.optional = False

    @override
    def _reset_fit(self) -> None:
        super()._reset_fit()
        self._source, self.unavailable, self._resolved = None, None, False
        self.has_clean, self.clean_how = None, None

    def resolve(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> str | None:
        """Find the probe's data and try it once (two samples through the module); returns why
        no probe can be drawn (``None`` when one can). Raises ``ValueError`` instead unless
        :attr:`optional`. Idempotent within a fit; called at train start at the latest."""
        if self._resolved:
            return self.unavailable
        self._resolved = True
        source, how = find_probe_source(trainer, clean=self.clean)
        problem = None if source is not None else how
        if source is not None:
            try:
                clean, views, labels = source.probe_views(min(2, self.num_samples), 1, self.seed)
                self._evaluate(trainer, pl_module, clean, views, labels)
                self.has_clean = clean is not None
                self.clean_how = getattr(source, "clean_how", None)
                if self.clean_how is not None:
                    known = "known" if clean is not None else "not known"
                    rank_zero_info(
                        f"[critical] AugmentationGap: the clean view is {known}: {self.clean_how}"
                    )
            except Exception as e:  # noqa: BLE001 - any failure means: no probe here
                problem = (
                    f"a probe of the training data ({how}) could not be classified by the "
                    f"module: {type(e).__name__}: {e}"
                )
        if problem is not None and not self.optional:
            raise ValueError(
                f"AugmentationGap cannot draw a probe from the training data: {problem}. It "
                "reads a map-style training dataset yielding (input, label) samples, or data "
                "offering `probe_views(num, views, seed)` (critical.data.MultiplicityDataset, "
                "the library's datamodules), and calls the module's forward for class logits"
            )
        self._source, self.unavailable = (None, problem) if problem else (source, None)
        return self.unavailable

    @override
    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.resolve(trainer, pl_module)

    @override
    def finalize_epoch(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule
    ) -> dict[str, float]:
        if self.unavailable is not None:
            return {}
        return super().finalize_epoch(trainer, pl_module)

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

    def _evaluate(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        clean: torch.Tensor | None,
        views: list[torch.Tensor],
        labels: torch.Tensor,
    ) -> tuple[torch.Tensor, ...]:
        """Summed losses and correct counts of the clean side (zeros without one) and of all
        views, in eval mode as validation runs (the module's mode is restored)."""
        was_training = pl_module.training
        pl_module.eval()
        try:
            with trainer.precision_plugin.forward_context():
                zero = torch.zeros((), device=pl_module.device)
                c_loss, c_ok = (
                    (zero, zero) if clean is None else self._measure(pl_module, clean, labels)
                )
                a_loss, a_ok = zero, zero
                for v in views:
                    loss, ok = self._measure(pl_module, v, labels)
                    a_loss, a_ok = a_loss + loss, a_ok + ok
        finally:
            pl_module.train(was_training)
        return c_loss, c_ok, a_loss, a_ok

    @override
    def _compute_epoch(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> EpochValues:
        self.resolve(trainer, pl_module)
        assert self._source is not None  # resolved (finalize_epoch skips an unavailable probe)
        seed = self.seed * 1_000_003 + trainer.current_epoch
        clean, views, labels = self._source.probe_views(self.num_samples, self.views, seed)
        if not self.clean:
            clean = None
        c_loss, c_ok, a_loss, a_ok = self._evaluate(trainer, pl_module, clean, views, labels)
        n = float(labels.shape[0])
        m = n * len(views)
        values = torch.stack([a_loss / m, a_ok / m, c_loss / n, c_ok / n]).tolist()  # one sync
        aug_loss, aug_acc, clean_loss, clean_acc = values
        scalars = {"aug_gap/aug_loss": aug_loss, "aug_gap/aug_acc": aug_acc}
        if clean is not None:
            scalars.update(
                {
                    "aug_gap": aug_loss - clean_loss,
                    "aug_gap/clean_loss": clean_loss,
                    "aug_gap/clean_acc": clean_acc,
                }
            )
        return scalars, {}, {"samples": int(n)}
