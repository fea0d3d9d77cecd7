r"""Robustness evaluator: clean, adversarial (FGSM, PGD) and corruption accuracy of the model.

Runs :func:`critical.robustness.evaluate_robustness` on a seeded uniform sample of
``num_images`` images of an evaluation dataloader at the end of training (``when="fit_end"``,
in ``on_train_end`` while the model is still on its device), at the end of ``trainer.test`` (``when="test_end"``, in
``on_test_epoch_end``), or both.

Data: ``dataloader`` if given; else, with ``source="auto"`` (default), the test data if there is
one (at test end the trainer's test dataloader; at fit end the datamodule's ``test_dataloader()``
if it implements one, calling its ``setup("test")`` first if needed) and otherwise the
validation data; ``source="test"`` / ``"val"`` force one.
Batches are ``(images, labels, ...)`` tuples/lists; images float in ``[0, 1]`` (uint8 images are
divided by 255).

Corruptions: synthetic CIFAR-10-C-style corruptions of those images (see
:mod:`critical.robustness`; reported with ``"source": "synthetic"``), or, with ``cifar10c_dir``,
the official CIFAR-10-C ``.npy`` files (first ``num_images`` images of every corruption and
severity; ``"source": "cifar10c"``).

Logged: ``robustness/clean_acc``, ``robustness/fgsm_acc``, ``robustness/pgd_acc``,
``robustness/corruption_acc`` and, with ``log_per_corruption``, ``robustness/corruption/<name>``
(mean over severities). At test end they are logged with ``pl_module.log`` (they appear in the
results of ``trainer.test``); at fit end Lightning forbids ``self.log`` (``on_train_end``), so
they go straight to the trainer's loggers (step ``trainer.global_step``; not into
``trainer.callback_metrics``, which holds per-epoch values). Everything is also in
:attr:`results` (a JSON-serialisable dict, with ``stage``, ``epoch`` and ``global_step``; with
``when="both"``, the latest evaluation; :attr:`all_results` keeps one per stage).

The model runs in eval mode (submodule modes restored afterwards); parameter gradients are not
touched; the global RNG state is saved and restored, so evaluating does not change the training
run's randomness. Under distributed training only global rank 0 evaluates (the others wait):
this is correct for data-parallel strategies (DDP) but not for sharded ones (FSDP, DeepSpeed
stage 3), which need every rank in the forward pass.

Example::

    >>> import lightning as L
    >>> from critical.callbacks.robustness import RobustnessEvaluator
    >>> rob = RobustnessEvaluator(num_images=500, batch_size=250, corruptions=["contrast"])
    >>> trainer = L.Trainer(max_epochs=2, callbacks=[rob])  # doctest: +SKIP
    >>> trainer.fit(model, datamodule)  # doctest: +SKIP
    >>> rob.results["pgd_acc"] <= rob.results["clean_acc"]  # doctest: +SKIP
    True
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, get_args

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn
from lightning.pytorch.utilities.model_helpers import is_overridden
from typing_extensions import override

from critical.choices import RobustnessSource, RobustnessWhen
from critical.robustness import ATTACKS, CORRUPTIONS, SEVERITIES, evaluate_robustness
from critical.validation import (
    check_bool,
    check_choice,
    check_int,
    check_number,
    check_path,
    check_str,
    check_subset,
    check_type,
)

__all__ = ["RobustnessEvaluator"]

WHEN = get_args(RobustnessWhen)
SOURCES = get_args(RobustnessSource)
_PREFIX = "robustness/"


class RobustnessEvaluator(Callback):
    r"""Evaluate clean, FGSM, PGD and corruption accuracy at fit end and/or test end.

    Args:
        when: ``"fit_end"`` (default), ``"test_end"``, ``"both"`` or ``"never"`` (off: the CLI
            always adds this callback, `--robustness.when never` turns it off).
        source: ``"auto"``, ``"test"`` or ``"val"`` (see the module docstring).
        dataloader: an iterable of ``(images, labels)`` batches to use instead (checked here,
            not after training).
        num_images: how many images to evaluate (>= 1): a uniform sample of the evaluation data,
            seeded by ``seed``.
        batch_size: evaluation batch size (>= 1).
        attacks: any of ``"fgsm"``, ``"pgd"`` (empty: no attack).
        eps: L-infinity radius in [0, 1] pixel units (default 8/255).
        pgd_steps: PGD iterations (>= 1, default 10).
        pgd_step_size: PGD step (default 2/255).
        random_start: PGD starts at a uniform random point of the eps-ball.
        corruptions: ``"default"`` (the implemented corruptions of the CIFAR-10-C benchmark),
            ``"all"``, a list of CIFAR-10-C names, or ``None`` (no corruption accuracy).
        severities: severities in 1..5 to average over.
        cifar10c_dir: directory with the official CIFAR-10-C ``.npy`` files (optional).
        log_per_corruption: also log ``robustness/corruption/<name>``.
        seed: seed of the PGD random start and of the synthetic corruptions.
        name: distinguishes the checkpoint state of several instances.

    Attributes:
        results: the latest results dict, or ``None`` before the first evaluation.
        all_results: ``{"fit_end": ..., "test_end": ...}`` for the evaluations done.
    """

    def __init__(
        self,
        when: RobustnessWhen = "fit_end",
        source: RobustnessSource = "auto",
        dataloader: Iterable | None = None,
        num_images: int = 1000,
        batch_size: int = 256,
        attacks: Sequence[str] = ATTACKS,
        eps: float = 8 / 255,
        pgd_steps: int = 10,
        pgd_step_size: float = 2 / 255,
        random_start: bool = True,
        corruptions: str | Sequence[str] | None = "default",
        severities: Sequence[int] = SEVERITIES,
        cifar10c_dir: str | os.PathLike | None = None,
        log_per_corruption: bool = False,
        seed: int = 0,
        name: str | None = None,
    ) -> None:
        check_choice("when", when, WHEN)
        check_choice("source", source, SOURCES)
        if dataloader is not None and (
            not isinstance(dataloader, Iterable) or isinstance(dataloader, (str, bytes, Mapping))
        ):
            raise ValueError(
                "`dataloader` must be None or an iterable of (images, labels) batches (e.g. a "
                f"torch DataLoader), got {dataloader!r}"
            )
        for arg, value in (
            ("num_images", num_images),
            ("batch_size", batch_size),
            ("pgd_steps", pgd_steps),
        ):
            check_int(arg, value, 1)
        check_number("eps", eps, minimum=0, maximum=1)
        check_number("pgd_step_size", pgd_step_size, minimum=0, maximum=1)
        attacks = check_subset("attacks", attacks, ATTACKS)
        if cifar10c_dir is None and corruptions not in (None, "default", "all"):
            check_subset("corruptions", corruptions, [*sorted(CORRUPTIONS), "default", "all"])
        severities = check_subset("severities", severities, SEVERITIES, allow_empty=False)
        check_path("cifar10c_dir", cifar10c_dir, allow_none=True)
        if cifar10c_dir is not None and not os.path.isdir(cifar10c_dir):
            raise ValueError(f"`cifar10c_dir` {os.fspath(cifar10c_dir)!r} is not a directory")
        check_bool("random_start", random_start)
        check_bool("log_per_corruption", log_per_corruption)
        check_type("seed", seed, int, "an integer")
        check_str("name", name, allow_none=True)
        self.when = when
        self.source = source
        self.dataloader = dataloader
        self.num_images = num_images
        self.batch_size = batch_size
        self.attacks = attacks
        self.eps = float(eps)
        self.pgd_steps = pgd_steps
        self.pgd_step_size = float(pgd_step_size)
        self.random_start = random_start
        self.corruptions = corruptions
        self.severities = severities
        self.cifar10c_dir = cifar10c_dir
        self.log_per_corruption = log_per_corruption
        self.seed = seed
        self.name = name
        self.results: dict[str, Any] | None = None
        self.all_results: dict[str, dict[str, Any]] = {}

    @property
    @override
    def state_key(self) -> str:
        return self._generate_state_key(name=self.name)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(when={self.when!r}, source={self.source!r}, "
            f"num_images={self.num_images}, attacks={self.attacks}, eps={self.eps:.6g}, "
            f"pgd_steps={self.pgd_steps}, pgd_step_size={self.pgd_step_size:.6g}, "
            f"random_start={self.random_start}, corruptions={self.corruptions!r}, "
            f"severities={self.severities}, cifar10c_dir={self.cifar10c_dir!r}, seed={self.seed}, "
            f"name={self.name!r})"
        )

    # ------------------------------------------------------------------ data
    def _loader(self, trainer: pl.Trainer, stage: str) -> tuple[Iterable | None, str]:
        if self.dataloader is not None:
            return self.dataloader, "dataloader"
        order = {"auto": ("test", "val"), "test": ("test",), "val": ("val",)}[self.source]
        for kind in order:
            loader = self._trainer_loader(trainer, stage, kind)
            if loader is not None:
                return loader, kind
        return None, ""

    @staticmethod
    def _first(loaders: Any) -> Any:
        if isinstance(loaders, (list, tuple)):
            return loaders[0] if loaders else None
        if isinstance(loaders, dict):
            return next(iter(loaders.values()), None)
        return loaders

    def _trainer_loader(self, trainer: pl.Trainer, stage: str, kind: str) -> Iterable | None:
        if kind == "test" and stage == "test_end":
            loader = self._first(trainer.test_dataloaders)
            if loader is not None:
                return loader
        if kind == "val":
            loader = self._first(trainer.val_dataloaders)
            if loader is not None:
                return loader
        dm = trainer.datamodule  # type: ignore[attr-defined]  # undeclared: Lightning sets it on the Trainer
        method = f"{kind}_dataloader"
        if dm is None or not is_overridden(method, dm, parent=pl.LightningDataModule):
            return None
        try:
            return self._first(getattr(dm, method)())
        except Exception:  # noqa: BLE001 - e.g. the split is only built by setup("test")
            pass
        try:
            dm.setup("test" if kind == "test" else "validate")
            return self._first(getattr(dm, method)())
        except Exception as e:  # noqa: BLE001
            rank_zero_warn(f"RobustnessEvaluator: the datamodule's {method}() failed ({e!r})")
            return None

    def _collect(self, loader: Iterable) -> tuple[torch.Tensor, torch.Tensor]:
        """A seeded uniform sample of ``num_images`` images of the whole loader (streaming: the
        images with the smallest random keys are kept), so a loader sorted by class, such as a
        stratified validation split of an ImageFolder, still gives a representative sample."""
        g = torch.Generator().manual_seed(self.seed)
        kept: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None
        for batch in loader:
            if not isinstance(batch, (list, tuple)) or len(batch) < 2:
                raise ValueError(
                    "RobustnessEvaluator needs (images, labels, ...) batches, got "
                    f"{type(batch).__name__}; pass `dataloader=` with such batches"
                )
            x, y = batch[0].detach().cpu(), torch.as_tensor(batch[1]).detach().cpu()
            if x.dtype == torch.uint8:
                x = x.float() / 255
            keys = torch.rand(len(x), generator=g)
            if kept is not None:
                kx, ky, kk = kept
                x, y, keys = torch.cat([kx, x]), torch.cat([ky, y]), torch.cat([kk, keys])
            if len(keys) > self.num_images:
                keep = torch.topk(keys, self.num_images, largest=False).indices
                x, y, keys = x[keep], y[keep], keys[keep]
            kept = x, y, keys
        if kept is None or len(kept[0]) == 0:
            raise ValueError("RobustnessEvaluator: the evaluation dataloader is empty")
        kx, ky, kk = kept
        order = torch.argsort(kk)
        return kx[order], ky[order].long()

    # ------------------------------------------------------------------ evaluation
    def evaluate(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str
    ) -> dict[str, Any] | None:
        """Run the evaluation now (global rank 0 only; returns ``None`` on other ranks)."""
        if trainer.global_rank != 0:
            return None
        loader, kind = self._loader(trainer, stage)
        if loader is None:
            rank_zero_warn(
                f"RobustnessEvaluator: no {'test/val' if self.source == 'auto' else self.source}"
                " data to evaluate on; skipped. Pass `dataloader=` or give the datamodule a "
                "test_dataloader() / val_dataloader()."
            )
            return None
        devices = [pl_module.device] if pl_module.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices), torch.inference_mode(False):
            x, y = self._collect(loader)
            results = evaluate_robustness(
                pl_module,
                x,
                y,
                attacks=self.attacks,
                eps=self.eps,
                pgd_steps=self.pgd_steps,
                pgd_step_size=self.pgd_step_size,
                random_start=self.random_start,
                corruptions=self.corruptions,
                severities=self.severities,
                cifar10c_dir=self.cifar10c_dir,
                cifar10c_num_images=self.num_images,
                batch_size=self.batch_size,
                seed=self.seed,
            )
        results = {
            "stage": stage,
            "epoch": trainer.current_epoch,
            "global_step": trainer.global_step,
            "data": kind,
            **results,
        }
        self.results = results
        self.all_results[stage] = results
        rank_zero_info(
            "RobustnessEvaluator: "
            + ", ".join(
                f"{k}={results[k]:.4f}" for k in self._metric_names() if results.get(k) is not None
            )
        )
        return results

    def _metric_names(self) -> list[str]:
        names = ["clean_acc"] + [f"{a}_acc" for a in self.attacks]
        if self.corruptions is not None:
            names.append("corruption_acc")
        return names

    def _metrics(self, results: dict[str, Any]) -> dict[str, float]:
        metrics = {
            _PREFIX + k: results[k] for k in self._metric_names() if results.get(k) is not None
        }
        if self.log_per_corruption and "corruption" in results:
            for cname, v in results["corruption"]["per_corruption"].items():
                metrics[f"{_PREFIX}corruption/{cname}"] = v["mean"]
        return {k: float(v) for k, v in metrics.items()}

    # ------------------------------------------------------------------ hooks
    @override
    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.when not in ("fit_end", "both"):
            return
        results = self.evaluate(trainer, pl_module, "fit_end")
        if results is None:
            return
        metrics = self._metrics(results)
        for logger in trainer.loggers:
            logger.log_metrics(metrics, step=trainer.global_step)

    @override
    def on_test_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.when not in ("test_end", "both"):
            return
        results = self.evaluate(trainer, pl_module, "test_end")
        if results is None:
            return
        pl_module.log_dict(
            self._metrics(results), on_step=False, on_epoch=True, rank_zero_only=True, batch_size=1
        )

    # ------------------------------------------------------------------ checkpoint state
    @override
    def state_dict(self) -> dict[str, Any]:
        return {"results": self.results, "all_results": dict(self.all_results)}

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.results = state_dict.get("results")
        self.all_results = dict(state_dict.get("all_results", {}))
