"""One LightningModule for every variant: the network (fp, BWN or XNOR) is injected."""

from __future__ import annotations

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import nn

from xnornet.layers import binary_layers


class ClassifierModule(pl.LightningModule):
    """Cross-entropy classification with Adam, a step lr schedule and latent-weight clipping.

    The paper keeps real-valued latent weights for the update and clips them to [-1, 1]
    afterwards; outside that range the straight-through gradient is zero, so they would freeze.
    """

    def __init__(
        self,
        net: nn.Module,
        lr: float = 0.01,
        weight_decay: float = 1e-5,
        lr_step_epochs: int = 3,
        lr_gamma: float = 0.1,
        clip_latent_weights: bool = True,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["net"])
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def _step(self, batch, stage: str) -> torch.Tensor:
        x, y = batch
        logits = self(x)  # (B, classes)
        loss = F.cross_entropy(logits, y)
        on_step = stage == "train"
        self.log(f"{stage}_loss", loss, on_step=on_step, on_epoch=True, prog_bar=on_step)
        acc = (logits.argmax(1) == y).float().mean()
        self.log(f"{stage}_acc", acc, on_step=False, on_epoch=True, prog_bar=stage == "val")
        if stage == "test":
            top5 = (logits.topk(min(5, logits.shape[1]), 1).indices == y[:, None]).any(1)
            self.log("test_top5", top5.float().mean(), on_epoch=True)
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
        opt = torch.optim.Adam(self.parameters(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay)
        sched = torch.optim.lr_scheduler.StepLR(
            opt, step_size=self.hparams.lr_step_epochs, gamma=self.hparams.lr_gamma
        )
        return {"optimizer": opt, "lr_scheduler": sched}
