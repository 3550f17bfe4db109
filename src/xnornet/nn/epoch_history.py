"""Per-epoch training curve, kept as rows for the DVC plot CSV and the MLflow artifact."""

from __future__ import annotations

import csv
from pathlib import Path

import pytorch_lightning as pl

from xnornet.files import atomic_path

COLUMNS = ["epoch", "train_loss", "val_loss", "val_acc", "lr"]


class EpochHistory(pl.Callback):
    def __init__(self) -> None:
        self.rows: list[dict[str, float]] = []

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        m = trainer.callback_metrics
        self.rows.append({
            "epoch": trainer.current_epoch + 1,
            "train_loss": float(m.get("train_loss_epoch", float("nan"))),
            "val_loss": float(m.get("val_loss", float("nan"))),
            "val_acc": float(m.get("val_acc", float("nan"))),
            "lr": trainer.optimizers[0].param_groups[0]["lr"],
        })  # fmt: skip

    def write_csv(self, path: Path) -> None:
        with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=COLUMNS)
            writer.writeheader()
            writer.writerows(self.rows)
