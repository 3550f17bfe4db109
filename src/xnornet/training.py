"""Build the network, data and trainer from the composed config; train, test, save, record."""

from __future__ import annotations

import time
from pathlib import Path

import pytorch_lightning as pl
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig
from pytorch_lightning.loggers import MLFlowLogger

from xnornet.data import NpzDataModule
from xnornet.errors import XnornetError
from xnornet.files import atomic_path
from xnornet.history import EpochHistory
from xnornet.layers import binary_layers
from xnornet.module import ClassifierModule
from xnornet.tracking import ensure_experiment, flat_params, record, run_tags, tracking_uri


def build_net(cfg: DictConfig) -> torch.nn.Module:
    """The architecture of conf/net with the binarization of conf/model."""
    try:
        binarization = instantiate(cfg.model.binarization)
        return instantiate(cfg.net, _partial_=True)(binarization=binarization)
    except Exception as e:  # Hydra wraps config errors in several exception types
        raise XnornetError(f"model/net config invalid: {e}") from e


def build_datamodule(cfg: DictConfig) -> NpzDataModule:
    d = cfg.data
    return NpzDataModule(
        cfg.paths.data_dir, d.mean, d.std, cfg.train.batch_size, d.val_size, d.split_seed,
        d.limit_train, d.limit_test, d.augment_shift,
    )  # fmt: skip


def build_module(cfg: DictConfig, net: torch.nn.Module) -> ClassifierModule:
    t = cfg.train
    return ClassifierModule(net, t.lr, t.weight_decay, t.lr_step_epochs, t.lr_gamma, t.clip_latent_weights)


def count_params(net: torch.nn.Module) -> tuple[int, int]:
    """(all parameters, weights that are binarized)."""
    total = sum(p.numel() for p in net.parameters())
    binary = sum(layer.weight.numel() for layer in binary_layers(net))
    return total, binary


def train_variant(cfg: DictConfig, out_root: Path = Path(".")) -> dict:
    """Train one variant end to end; returns the metrics also written to metrics/train_<v>.json."""
    variant = cfg.model.name
    if cfg.train.max_epochs < 1:
        raise XnornetError(f"train.max_epochs must be >= 1, got {cfg.train.max_epochs}")
    if cfg.train.threads:
        torch.set_num_threads(int(cfg.train.threads))
    pl.seed_everything(cfg.seed, workers=True)
    datamodule = build_datamodule(cfg)
    datamodule.setup()
    net = build_net(cfg)
    module = build_module(cfg, net)

    ensure_experiment(cfg)
    logger = MLFlowLogger(
        experiment_name=cfg.logger.experiment,
        run_name=f"train-{variant}",
        tracking_uri=tracking_uri(cfg),
        tags=run_tags(f"train@{variant}", variant=variant),
    )
    logger.log_hyperparams(flat_params(cfg))
    history = EpochHistory()
    t = cfg.train
    trainer = pl.Trainer(
        max_epochs=t.max_epochs, accelerator=t.accelerator, devices=t.devices,
        strategy=t.strategy, num_nodes=t.num_nodes, logger=logger, callbacks=[history],
        deterministic=True, enable_checkpointing=False, num_sanity_val_steps=0,
        enable_progress_bar=t.progress_bar, enable_model_summary=True, log_every_n_steps=20,
    )  # fmt: skip
    start = time.perf_counter()
    trainer.fit(module, datamodule=datamodule)
    train_seconds = time.perf_counter() - start
    test = trainer.test(module, datamodule=datamodule, verbose=False)[0]

    models_dir = out_root / cfg.paths.models_dir
    ckpt = models_dir / f"{variant}.ckpt"
    with atomic_path(ckpt) as tmp:  # a crash never leaves a half-written checkpoint
        trainer.save_checkpoint(tmp)
    history.write_csv(out_root / cfg.paths.plots_dir / f"train_{variant}.csv")
    total, binary = count_params(net)
    metrics = {
        "variant": variant,
        "test_acc": round(float(test["test_acc"]), 6),
        "test_top5": round(float(test["test_top5"]), 6),
        "val_acc": round(history.rows[-1]["val_acc"], 6),
        "epochs": trainer.current_epoch,
        "train_seconds": round(train_seconds, 2),
        "seconds_per_epoch": round(train_seconds / max(trainer.current_epoch, 1), 2),
        "params_total": total,
        "params_binary": binary,
        "threads": torch.get_num_threads(),
    }
    record(logger.experiment, logger.run_id, metrics,
           out_root / cfg.paths.metrics_dir / f"train_{variant}.json",
           [ckpt, out_root / cfg.paths.plots_dir / f"train_{variant}.csv"])  # fmt: skip
    logger.finalize("success")
    return metrics
