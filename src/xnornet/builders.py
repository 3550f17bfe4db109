"""Objects built from the composed config with ``hydra.utils.instantiate``: the network, the data,
the LightningModule, the trainer and its logger, and a trained network back from its checkpoint.

Every ``_target_`` lives in conf/; a config mistake becomes one XnornetError naming the group.
"""

from __future__ import annotations

from pathlib import Path

import pytorch_lightning as pl
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig
from pytorch_lightning.loggers import MLFlowLogger

from xnornet import quiet
from xnornet.data.datamodule import NpzDataModule
from xnornet.errors import XnornetError
from xnornet.nn.classifier import ClassifierModule
from xnornet.nn.resume import AtomicCheckpointIO
from xnornet.tracking import StageRun, tracking_uri


def _build(node: DictConfig, group: str, **kwargs) -> object:
    """instantiate(node), called with ``kwargs`` (objects the config cannot hold, passed as is)."""
    try:
        return instantiate(node, _partial_=True)(**kwargs) if kwargs else instantiate(node)
    except XnornetError:
        raise
    except Exception as e:  # Hydra wraps config errors in several exception types
        raise XnornetError(f"{group} config invalid: {e}") from e


def build_net(cfg: DictConfig) -> torch.nn.Module:
    """The architecture of conf/net with the binarization of conf/model. ``model.bn`` is passed
    here, not wired by an interpolation in conf/model, which DVC reads as params (and resolves)."""
    binarization = _build(cfg.model.binarization, "model", batchnorm=cfg.model.bn)
    return _build(cfg.net, "model/net", binarization=binarization)


def build_datamodule(cfg: DictConfig) -> NpzDataModule:
    return _build(cfg.datamodule, "datamodule/data")


def build_module(cfg: DictConfig, net: torch.nn.Module) -> ClassifierModule:
    if cfg.train.max_epochs < 1:  # checked before any logger or file exists
        raise XnornetError(f"train.max_epochs must be >= 1, got {cfg.train.max_epochs}")
    optimizer, scheduler = _build(cfg.train.optimizer, "train"), _build(cfg.train.scheduler, "train")
    return ClassifierModule(
        net, optimizer, scheduler, cfg.train.clip_latent_weights, cfg.train.get("label_smoothing", 0.0)
    )


def build_logger(cfg: DictConfig, run: StageRun | None) -> MLFlowLogger:
    """The train stage's Lightning logger on ``run``, the run the stage opened (xnornet.tracking);
    None on a DDP rank other than 0, whose logger never logs."""
    kwargs = {"run_id": run.run_id, "outage": run.outage} if run is not None else {}
    return _build(cfg.logger.lightning, "logger", tracking_uri=tracking_uri(cfg), **kwargs)


def build_trainer(cfg: DictConfig, **kwargs) -> pl.Trainer:
    """conf/train's trainer node; the stage adds the logger and callbacks. Every checkpoint it
    writes goes through a temporary file and a rename, so a kill never leaves a truncated one."""
    quiet.patch_model_summary()
    return _build(cfg.train.trainer, "train", plugins=[AtomicCheckpointIO()], **kwargs)


def load_trained_net(cfg: DictConfig, ckpt: Path) -> torch.nn.Module:
    """The network of ``cfg`` with the weights of a Lightning checkpoint, in eval mode."""
    if not ckpt.is_file():
        raise XnornetError(f"{ckpt}: checkpoint not found (run `dvc repro train@{cfg.model.name}`)")
    try:
        state = torch.load(ckpt, map_location="cpu", weights_only=True)["state_dict"]
    except Exception as e:  # torch raises many types for a bad file
        raise XnornetError(f"{ckpt}: not a readable checkpoint ({e})") from e
    net = build_net(cfg)
    weights = {k.removeprefix("net."): v for k, v in state.items() if k.startswith("net.")}
    try:
        net.load_state_dict(weights)
    except RuntimeError as e:
        raise XnornetError(f"{ckpt}: does not match the {cfg.net._target_} of this config ({e})") from e
    return net.eval()


def input_shape(cfg: DictConfig) -> tuple[int, int, int]:
    """(C, H, W) of one input image: the network's channels, the data's (square) image size."""
    size = cfg.data.image_size
    if not isinstance(size, int) or size < 1:
        raise XnornetError(f"data.image_size must be a positive integer, got {size!r}")
    return (cfg.net.in_channels, size, size)
