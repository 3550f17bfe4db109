"""One LightningModule for every variant: the network (fp, BWN or XNOR) is injected."""

from __future__ import annotations

import inspect
from collections.abc import Callable

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from pytorch_lightning.utilities import _pytree as lightning_pytree
from torch import nn
from torch.utils import _pytree as torch_pytree

from xnornet.nn.layers import binary_layers

# Lightning 2.6's CombinedLoader flattens the data loaders with its own copy of torch's
# tree_flatten, which builds each leaf's spec as `LeafSpec()`: torch 2.13 deprecates constructing
# that class, a FutureWarning on every fit, validate and test. torch's own leaf spec,
# `treespec_leaf()`, is the same (shared, immutable) spec made without it.
if hasattr(torch_pytree, "treespec_leaf") and hasattr(lightning_pytree, "LeafSpec"):
    lightning_pytree.LeafSpec = torch_pytree.treespec_leaf


class ClassifierModule(pl.LightningModule):
    """Cross-entropy classification with an injected optimizer and lr schedule, and latent-weight
    clipping.

    The optimizer and scheduler arrive as partials (Hydra ``_partial_: true`` in conf/train), so a
    recipe changes in config, not here. The paper keeps real-valued latent weights for the update
    and clips them to [-1, 1] afterwards; outside that range the straight-through gradient is zero,
    so they would freeze. ``label_smoothing`` spreads that share of each training target over
    every class (validation and test losses are the plain cross-entropy).
    """

    def __init__(
        self,
        net: nn.Module,
        optimizer: Callable[..., torch.optim.Optimizer],
        scheduler: Callable[..., torch.optim.lr_scheduler.LRScheduler] | None = None,
        clip_latent_weights: bool = True,
        label_smoothing: float = 0.0,
    ) -> None:
        super().__init__()
        # only plain values go into the checkpoint, so it loads with torch.load(weights_only=True)
        self.save_hyperparameters(ignore=["net", "optimizer", "scheduler"])
        self.net = net
        self.make_optimizer, self.make_scheduler = optimizer, scheduler

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def _step(self, batch, stage: str) -> torch.Tensor:
        x, y = batch
        logits = self(x)  # (B, classes)
        smoothing = self.hparams.label_smoothing if stage == "train" else 0.0  # held-out losses stay plain
        loss = F.cross_entropy(logits, y, label_smoothing=smoothing)
        on_step = stage == "train"
        sync = not on_step  # DDP: validation and test figures over every rank's share, not rank 0's
        self.log(f"{stage}_loss", loss, on_step=on_step, on_epoch=True, prog_bar=on_step, sync_dist=sync)
        acc = (logits.argmax(1) == y).float().mean()
        self.log(f"{stage}_acc", acc, on_step=False, on_epoch=True, prog_bar=stage == "val", sync_dist=sync)
        if stage == "test":
            top5 = (logits.topk(min(5, logits.shape[1]), 1).indices == y[:, None]).any(1)
            self.log("test_top5", top5.float().mean(), on_epoch=True, sync_dist=True)
        return loss

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        return self._step(batch, "train")

    def validation_step(self, batch, batch_idx: int) -> None:
        self._step(batch, "val")

    def test_step(self, batch, batch_idx: int) -> None:
        self._step(batch, "test")

    def on_train_batch_end(self, outputs, batch, batch_idx: int) -> None:
        if self.hparams.clip_latent_weights:
            with torch.no_grad():
                for layer in binary_layers(self.net):
                    layer.weight.clamp_(-1.0, 1.0)

    def configure_optimizers(self):
        opt = self.make_optimizer(self.parameters())
        if self.make_scheduler is None:
            return opt
        # a per-batch schedule (nn.schedules) needs the run's length, known only to the trainer
        takes_steps = "total_steps" in inspect.signature(self.make_scheduler).parameters
        extra = {"total_steps": int(self.trainer.estimated_stepping_batches)} if takes_steps else {}
        scheduler = self.make_scheduler(opt, **extra)
        interval = getattr(scheduler, "interval", "epoch")
        return {"optimizer": opt, "lr_scheduler": {"scheduler": scheduler, "interval": interval}}
