"""A user's own run's plot (issue 20, item 7): its class names, its accuracy key, the mean LR."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import torch
from helpers import TinyDataModule, TinyModule, tiny_trainer, v02_period

from critical.callbacks import LayerRotation, RunDirectory
from critical.report.run_plot import run_figure
from critical.report.runs import load_run


class OwnModule(TinyModule):
    """Logs accuracy under its own key; a per-step schedule."""

    def validation_step(self, batch, batch_idx):
        x, y = batch
        self.log("val_accuracy", (self(x).argmax(-1) == y).float().mean())

    def configure_optimizers(self):
        opt = torch.optim.SGD(self.parameters(), lr=0.1)
        total = int(self.trainer.estimated_stepping_batches)
        sched = torch.optim.lr_scheduler.LinearLR(opt, 1.0, 0.1, total_iters=total)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


def test_plot_of_a_users_run(tmp_path):
    run = RunDirectory(root=tmp_path, name="mine", plot=False, print_summary=False)
    cbs = [LayerRotation(), v02_period("layer_rotation", verbose=False), run]
    tiny_trainer(tmp_path, max_epochs=3, callbacks=cbs).fit(OwnModule(), TinyDataModule())
    fig = run_figure(load_run(tmp_path / "mine"))
    title = fig._suptitle.get_text()
    assert "OwnModule on TinyDataModule" in title and "unknown" not in title
    panels = [ax.get_title() for ax in fig.axes if ax.get_visible() and ax.get_title()]
    assert "lr (epoch mean)" in panels and "lr" not in panels
    acc_axes = [ax for ax in fig.axes if ax.get_title().startswith("accuracy")]
    assert acc_axes and "val_accuracy" in [ln.get_label() for ln in acc_axes[0].get_lines()]
    rows = load_run(tmp_path / "mine").rows
    # the mean of a decaying per-step schedule lies below the epoch's starting rate
    assert all(r["critical/lr_mean"] < r["critical/lr"] for r in rows)
