"""DVC stage `train@<variant>`: xnornet train model=fp|bwn|xnor (a Hydra multirun sweep with -m).

A run killed midway resumes from its last epoch when rerun, to the same result (xnornet.nn.resume).
"""

from __future__ import annotations

import pytorch_lightning as pl
import torch
from omegaconf import DictConfig
from pytorch_lightning.utilities import rank_zero_only

from xnornet.builders import build_datamodule, build_logger, build_module, build_net, build_trainer
from xnornet.nn.distributed import test_metrics
from xnornet.nn.epoch_history import EpochHistory
from xnornet.nn.layers import count_params
from xnornet.nn.resume import ResumeState, config_digest, discard, resumable
from xnornet.stages import stage_main
from xnornet.sweep_job import output_root, sweep_suffix, torch_threads
from xnornet.tracking import ending, open_run


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
    writes=("paths.models_dir", "paths.metrics_dir", "paths.plots_dir"),
)
def main(cfg: DictConfig) -> float | None:
    """Train one variant; returns its validation accuracy, the objective of an Optuna search."""
    variant, root = cfg.model.name, output_root()
    threads = torch_threads(cfg.train.threads)
    if threads:
        torch.set_num_threads(threads)
    pl.seed_everything(cfg.seed, workers=True)
    datamodule, net = build_datamodule(cfg), build_net(cfg)
    datamodule.setup()
    module = build_module(cfg, net)
    # the last end-of-epoch state, outside the DVC outputs (DVC deletes those before rerunning)
    resume_path = root / cfg.train.checkpoint_dir / variant / "last.ckpt"
    digest = config_digest(cfg, [path for _, path, _ in datamodule.sources()])
    resume = resumable(resume_path, digest) if cfg.train.resume else None
    run_name, stage = f"train-{variant}{sweep_suffix()}", f"train@{variant}"
    # the run opens before any output is written; on DDP only rank 0 has one
    run = None
    if rank_zero_only.rank == 0:
        resume_id = resume["mlflow_run_id"] if resume else None
        run = open_run(cfg, run_name, stage, resume_id, datamodule.sources(), variant=variant)
    logger = build_logger(cfg, run)
    history = EpochHistory()
    resume_state = [ResumeState(resume_path, digest)] if cfg.train.resume else []
    trainer = build_trainer(cfg, logger=logger, callbacks=[history, *resume_state])
    with ending(run, stage):
        ckpt_path = resume_path if resume else None
        trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=True)
        test = test_metrics(trainer, module, datamodule)
        out = {"ckpt": root / cfg.paths.models_dir / f"{variant}.ckpt",
               "curve": root / cfg.paths.plots_dir / f"train_{variant}.csv",
               "metrics": root / cfg.paths.metrics_dir / f"train_{variant}.json"}  # fmt: skip
        # the network and loops, no optimizer; atomic. Every rank calls it (a barrier), rank 0 writes
        trainer.save_checkpoint(out["ckpt"], weights_only=True)
        if not trainer.is_global_zero:  # DDP: rank 0 alone writes outputs and logs
            return None
        history.write_csv(out["curve"])
        total, binary = count_params(net)
        epochs = trainer.current_epoch
        metrics = {
            "variant": variant,
            "test_acc": round(float(test["test_acc"]), 6),
            "test_top5": round(float(test["test_top5"]), 6),
            "val_acc": round(history.rows[-1]["val_acc"], 6),
            "epochs": epochs,
            "train_seconds": round(history.seconds, 2),
            "seconds_per_epoch": round(history.seconds / max(epochs, 1), 2),
            "params_total": total,
            "params_binary": binary,
            "threads": torch.get_num_threads(),
        }
        run.record(metrics, out["metrics"], [out["ckpt"], out["curve"]])
    discard(resume_path)  # the run is complete: a rerun trains afresh rather than resuming a finished run
    print(f"{variant}: test_acc={metrics['test_acc']:.4f} ({epochs} epochs, {history.seconds:.0f} s)")
    return metrics["val_acc"]


if __name__ == "__main__":
    main()
