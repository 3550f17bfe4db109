"""Per-epoch training curve, kept as rows for the DVC plot CSV and the MLflow artifact.

The rows and the training time travel in every checkpoint (``state_dict``), so a resumed run
still writes the whole curve and the time of every epoch, not only those since the restart.
"""

from __future__ import annotations

import csv
import time
from pathlib import Path
from typing import Any

import pytorch_lightning as pl

from xnornet.files import atomic_path

COLUMNS = ["epoch", "train_loss", "val_loss", "val_acc", "lr"]


class EpochHistory(pl.Callback):
    def __init__(self) -> None:
        self.rows: list[dict[str, float]] = []
        self.seconds = 0.0  # wall time of the finished epochs (training and validation)
        self._epoch_start = 0.0

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._epoch_start = time.perf_counter()

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        m = trainer.callback_metrics
        self.rows.append({
            "epoch": trainer.current_epoch + 1,
            "train_loss": float(m.get("train_loss_epoch", float("nan"))),
            "val_loss": float(m.get("val_loss", float("nan"))),
            "val_acc": float(m.get("val_acc", float("nan"))),
            "lr": trainer.optimizers[0].param_groups[0]["lr"],
        })  # fmt: skip
        self.seconds += time.perf_counter() - self._epoch_start

    def state_dict(self) -> dict[str, Any]:
        return {"rows": self.rows, "seconds": self.seconds}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.rows, self.seconds = list(state_dict["rows"]), float(state_dict["seconds"])

    def write_csv(self, path: Path) -> None:
        with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=COLUMNS)
            writer.writeheader()
            writer.writerows(self.rows)
