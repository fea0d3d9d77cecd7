"""Run by tests/callbacks/test_sharded.py: the metric callbacks on a 3-layer MLP trained on the same global
batches in one process and, in 2 processes on CPU (gloo), under DDP (also with a torch.compile'd
model), FSDP (use_orig_params True and False) and FSDP2 (ModelParallelStrategy + fully_shard),
and FSDP2 resumed from a checkpoint.

``python sharded_script.py OUT single`` runs the one-process reference; ``python
sharded_script.py OUT ddp ddp_compile fsdp_orig fsdp_flat fsdp2 fsdp2_resume`` runs the 2-process fits one
after the other in the same pair of processes (Lightning launches the second process at the first
fit). Each rank writes ``OUT/<mode>_rank<r>.json``: every callback's history and what the run
counted (probed steps, collectives issued by the callbacks' hooks).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from lightning.pytorch.strategies import FSDPStrategy, ModelParallelStrategy
from torch import nn
from torch.utils.data import DataLoader, Sampler, TensorDataset

from critical.callbacks import (
    GradientConfusion,
    GradientNorm,
    GradientPredictability,
    LayerRotation,
)

N, GLOBAL_BATCH, EPOCHS = 128, 16, 3


class MLP(L.LightningModule):
    def __init__(self, fsdp2: bool = False, shard_dim: int = 0, compiled: bool = False) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 16), nn.ReLU(), nn.Linear(16, 4)
        )
        if compiled:  # dynamo + AOTAutograd as with inductor, without code generation (fast)
            self.net = torch.compile(self.net, backend="aot_eager")  # type: ignore[assignment]
        self.fsdp2, self.shard_dim = fsdp2, shard_dim

    def configure_model(self) -> None:
        if not self.fsdp2:
            return
        from torch.distributed.fsdp import fully_shard
        from torch.distributed.tensor import Shard

        mesh = self.device_mesh["data_parallel"]
        dim = self.shard_dim

        def placement(p):
            return Shard(dim if p.dim() > dim else 0)

        for m in self.net:
            if isinstance(m, nn.Linear):
                fully_shard(m, mesh=mesh, shard_placement_fn=placement)
        fully_shard(self, mesh=mesh)

    def training_step(self, batch, batch_idx):
        x, y = batch
        return nn.functional.cross_entropy(self.net(x), y)

    def validation_step(self, batch, batch_idx):
        x, y = batch
        self.log("val_loss", nn.functional.cross_entropy(self.net(x), y), sync_dist=True)

    def configure_optimizers(self):
        return torch.optim.SGD(self.trainer.model.parameters(), lr=0.2, momentum=0.9)


class RankRows(Sampler[int]):
    """Rank r of w takes rows [b*G + r*G/w, b*G + (r+1)*G/w) of each global batch b: the ranks'
    batches together are the one-process run's."""

    def __init__(self, rank: int, world: int) -> None:
        self.rank, self.world = rank, world

    def __iter__(self):
        share = GLOBAL_BATCH // self.world
        for b in range(N // GLOBAL_BATCH):
            start = b * GLOBAL_BATCH + self.rank * share
            yield from range(start, start + share)

    def __len__(self) -> int:
        return N // self.world


class Data(L.LightningDataModule):
    def __init__(self) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(1)
        self.x = torch.randn(N, 16, generator=g)
        self.y = (self.x[:, :4].argmax(1) + (self.x[:, 4] > 1).long()) % 4

    def _loader(self):
        world = self.trainer.world_size
        return DataLoader(
            TensorDataset(self.x, self.y),
            batch_size=GLOBAL_BATCH // world,
            sampler=RankRows(self.trainer.global_rank, world),
        )

    def train_dataloader(self):
        return self._loader()

    def val_dataloader(self):
        return self._loader()


class CPUFSDP(FSDPStrategy):
    """Lightning's FSDPStrategy refuses the CPU accelerator; FSDP itself runs on CPU (gloo)."""

    def _setup_model(self, model):
        from torch.distributed.fsdp import FullyShardedDataParallel

        return FullyShardedDataParallel(
            module=model,
            device_id=torch.device("cpu"),
            sharding_strategy=self.sharding_strategy,
            **self.kwargs,
        )


class CountCollectives(Callback):
    """Counts the all_reduce calls issued inside the other callbacks' hooks, per optimizer step
    and at epoch ends (by wrapping torch.distributed.all_reduce while the fit runs)."""

    def __init__(self) -> None:
        self.per_step: list[int] = []
        self.epoch_end = 0
        self._inside = False
        self._n = 0

    def on_fit_start(self, trainer, pl_module):
        import torch.distributed as dist

        self._orig = dist.all_reduce

        def counted(*a, **k):
            if self._inside:
                self._n += 1
            return self._orig(*a, **k)

        dist.all_reduce = counted

    def on_fit_end(self, trainer, pl_module):
        import torch.distributed as dist

        dist.all_reduce = self._orig


def callbacks() -> list[Callback]:
    return [
        GradientConfusion(sketch_dim=64),
        GradientConfusion(mode="exact", name="exact", exact_batches=4),
        GradientPredictability(),
        GradientNorm(),
        LayerRotation(),
        LayerRotation(include="all", name="all"),
    ]


def wrap_hooks(cbs: list[Callback], counter: CountCollectives) -> None:
    """Count the collectives of each optimizer step's hooks (probe reads) and of epoch ends."""
    for cb in cbs:
        for hook in ("on_before_optimizer_step", "on_train_epoch_end"):
            fn = getattr(cb, hook, None)
            if fn is None:
                continue

            def wrapper(*a, __fn=fn, __hook=hook, **k):
                counter._inside = True
                try:
                    return __fn(*a, **k)
                finally:
                    counter._inside = False

            setattr(cb, hook, wrapper)


class StepCounter(Callback):
    def __init__(self, counter: CountCollectives) -> None:
        self.counter = counter

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.counter._n = 0

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.counter.per_step.append(self.counter._n)
        self.counter._n = 0


def strategy(mode: str):
    if mode == "single":
        return "auto"
    if mode in ("ddp", "ddp_compile"):
        return "ddp"
    if mode == "fsdp_orig":  # the root wraps everything: rank 0 holds no part of the last layer
        return CPUFSDP(use_orig_params=True)
    if mode == "fsdp_flat":
        from torch.distributed.fsdp.wrap import ModuleWrapPolicy

        return CPUFSDP(use_orig_params=False, auto_wrap_policy=ModuleWrapPolicy({nn.Linear}))
    return ModelParallelStrategy(data_parallel_size=2, tensor_parallel_size=1)


def fit(
    mode: str,
    out: Path,
    cbs: list[Callback],
    ckpt: str | None = None,
    extra: tuple[Callback, ...] = (),
    **kw,
) -> L.Trainer:
    L.seed_everything(0)
    kw.setdefault("max_epochs", EPOCHS)
    counter = CountCollectives()
    wrap_hooks(cbs, counter)
    trainer = L.Trainer(
        accelerator="cpu",
        devices=1 if mode == "single" else 2,
        strategy=strategy(mode),
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        use_distributed_sampler=False,
        num_sanity_val_steps=0,
        check_val_every_n_epoch=2,
        callbacks=[counter, StepCounter(counter), *cbs, *extra],
        default_root_dir=str(out / mode),
        **kw,
    )
    module = MLP(
        fsdp2=mode.startswith("fsdp2"),
        shard_dim=1 if mode == "fsdp2_dim1" else 0,
        compiled=mode == "ddp_compile",
    )
    trainer.fit(module, Data(), ckpt_path=ckpt)
    trainer.collectives = counter  # type: ignore[attr-defined]
    return trainer


def state_sizes(cbs: list[Callback]) -> dict[str, list[int]]:
    """Per callback with per-element state: (elements this rank keeps, elements of the model)."""
    out = {}
    for cb in cbs:
        layout = cb._layout
        if isinstance(cb, LayerRotation):
            out[cb.state_key] = [cb.theta0.numel(), layout.numel]
        elif isinstance(cb, GradientConfusion) and cb.mode == "stream":
            out[cb.state_key] = [cb._acc.sum_layer.numel(), layout.numel]
        elif isinstance(cb, GradientPredictability):
            out[cb.state_key] = [cb._prev.numel(), layout.numel]
    return out


def dump(mode: str, out: Path, trainer: L.Trainer, cbs: list[Callback]) -> None:
    counter = trainer.collectives  # type: ignore[attr-defined]
    result = {
        "histories": {cb.state_key: cb.history for cb in cbs},
        "layer_names": {cb.state_key: cb.layer_names for cb in cbs},
        "state_sizes": state_sizes(cbs),
        "collectives_per_step": counter.per_step,
    }
    (out / f"{mode}_rank{trainer.global_rank}.json").write_text(json.dumps(result))


def main(out: Path, modes: list[str]) -> None:
    for mode in modes:
        if mode == "fsdp2_resume":
            # stopped after epoch 1, checkpointed after its last step (at its validation end,
            # before its epoch end: the checkpoint holds epoch 1's gradient statistics), resumed
            ck = ModelCheckpoint(dirpath=out / "ck", save_top_k=-1)
            fit(mode, out, callbacks(), extra=(ck,), enable_checkpointing=True, max_epochs=2)
            (path,) = sorted((out / "ck").glob("*.ckpt"))
            cbs = callbacks()
            trainer = fit(mode, out, cbs, ckpt=str(path), enable_checkpointing=False)
        elif mode == "fsdp2_dim1":  # sharded on dimension 1: not supported, a clear error
            try:
                fit(mode, out, callbacks(), enable_checkpointing=False, max_epochs=1)
                message = "no error"
            except ValueError as e:
                message = str(e)
            (out / f"{mode}_rank{torch.distributed.get_rank()}.json").write_text(
                json.dumps({"error": message})
            )
            continue
        else:
            cbs = callbacks()
            trainer = fit(mode, out, cbs, enable_checkpointing=False)
        dump(mode, out, trainer, cbs)


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2:])
