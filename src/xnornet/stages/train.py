"""DVC stage `train@<variant>`: xnornet train model=fp|bwn|xnor (a Hydra multirun sweep with -m)."""

from __future__ import annotations

import time

import pytorch_lightning as pl
import torch
from omegaconf import DictConfig

from xnornet.builders import build_datamodule, build_logger, build_module, build_net, build_trainer
from xnornet.files import atomic_path
from xnornet.nn.epoch_history import EpochHistory
from xnornet.nn.layers import count_params
from xnornet.stages import output_root, stage_main, sweep_suffix
from xnornet.tracking import ensure_experiment, flat_params, log_datasets, record


@stage_main(
    "seed",
    "datamodule",
    "net",
    "model",
    "train",
    "paths.models_dir",
    "paths.plots_dir",
    "paths.metrics_dir",
    "logger",
)
def main(cfg: DictConfig) -> None:
    variant, root = cfg.model.name, output_root()
    if cfg.train.threads:
        torch.set_num_threads(int(cfg.train.threads))
    pl.seed_everything(cfg.seed, workers=True)
    datamodule, net = build_datamodule(cfg), build_net(cfg)
    datamodule.setup()
    module = build_module(cfg, net)
    ensure_experiment(cfg)
    logger = build_logger(cfg, f"train-{variant}{sweep_suffix()}", f"train@{variant}", variant=variant)
    logger.log_hyperparams(flat_params(cfg))
    log_datasets(logger.experiment, logger.run_id, datamodule.sources())
    history = EpochHistory()
    trainer = build_trainer(cfg, logger=logger, callbacks=[history])
    start = time.perf_counter()
    trainer.fit(module, datamodule=datamodule)
    train_seconds = time.perf_counter() - start
    test = trainer.test(module, datamodule=datamodule, verbose=False)[0]

    out = {"ckpt": root / cfg.paths.models_dir / f"{variant}.ckpt",
           "curve": root / cfg.paths.plots_dir / f"train_{variant}.csv",
           "metrics": root / cfg.paths.metrics_dir / f"train_{variant}.json"}  # fmt: skip
    with atomic_path(out["ckpt"]) as tmp:  # a crash never leaves a half-written checkpoint
        trainer.save_checkpoint(tmp, weights_only=True)  # the network and loops; no optimizer state
    history.write_csv(out["curve"])
    total, binary = count_params(net)
    epochs = trainer.current_epoch
    metrics = {
        "variant": variant,
        "test_acc": round(float(test["test_acc"]), 6),
        "test_top5": round(float(test["test_top5"]), 6),
        "val_acc": round(history.rows[-1]["val_acc"], 6),
        "epochs": epochs,
        "train_seconds": round(train_seconds, 2),
        "seconds_per_epoch": round(train_seconds / max(epochs, 1), 2),
        "params_total": total,
        "params_binary": binary,
        "threads": torch.get_num_threads(),
    }
    record(logger.experiment, logger.run_id, metrics, out["metrics"], [out["ckpt"], out["curve"]])
    logger.finalize("success")
    print(f"{variant}: test_acc={metrics['test_acc']:.4f} ({epochs} epochs, {train_seconds:.0f} s)")


if __name__ == "__main__":
    main()
