"""What changes when training runs on several processes (``train.strategy=ddp``).

Lightning shards the test set across ranks with a DistributedSampler that pads it to equal parts,
so a distributed ``trainer.test`` would report rank 0's share only (or count padded images twice).
The test figures therefore come from rank 0 alone, over the whole test set, once training ends.
"""

from __future__ import annotations

import pytorch_lightning as pl
import torch


@torch.no_grad()
def whole_test_set(module: pl.LightningModule, datamodule: pl.LightningDataModule) -> dict[str, float]:
    """test_acc and test_top5 of ``module`` over every test image, in this process only."""
    module.eval()
    correct = top5 = seen = 0
    for x, y in datamodule.test_dataloader():
        logits = module(x.to(module.device))  # (B, classes)
        y = y.to(module.device)
        correct += int((logits.argmax(1) == y).sum())
        k = min(5, logits.shape[1])
        top5 += int((logits.topk(k, 1).indices == y[:, None]).any(1).sum())
        seen += len(y)
    return {"test_acc": correct / seen, "test_top5": top5 / seen}


def test_metrics(trainer: pl.Trainer, module: pl.LightningModule, datamodule: pl.LightningDataModule) -> dict:
    """The trainer's own test (logged as usual) on one process; rank 0's whole-set test under DDP
    (other ranks get an empty dict: they write nothing)."""
    if trainer.world_size == 1:
        return trainer.test(module, datamodule=datamodule, verbose=False)[0]
    return whole_test_set(module, datamodule) if trainer.is_global_zero else {}
