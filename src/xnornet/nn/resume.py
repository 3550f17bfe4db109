"""Resume an interrupted training run exactly: an end-of-epoch checkpoint outside the DVC outputs
that also carries the random-number state and a digest of the config that wrote it.

Lightning restores the network, optimizer, scheduler and loop counters from its checkpoint but not
the global random generators, which draw the shuffle order, the augmentation shifts and dropout.
:class:`ResumeState` saves them with each checkpoint and puts them back on resume, so a run killed
mid-epoch and rerun redoes that epoch with the same draws and ends with the same weights as a run
never interrupted. Saving the state (rather than reseeding per epoch) leaves the random stream of
an uninterrupted run as it always was, so earlier results stay reproducible.

The checkpoint is resumed only by the config that wrote it (:func:`config_digest`); any other is
reported in one line and overwritten, never silently continued.
"""

from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from lightning_fabric.plugins.io.torch_io import TorchCheckpointIO
from omegaconf import DictConfig, OmegaConf

from xnornet.files import atomic_path, content_digest

# config keys that change where a run keeps its state, where it reports or how it looks, not
# what it computes
NOT_RESULT_KEYS = (
    "paths",
    "logger",
    "train.resume",
    "train.checkpoint_dir",
    "train.progress_bar",
    "train.trainer.enable_progress_bar",
    "train.trainer.enable_model_summary",
)


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint writer, through a temporary file and a rename: a kill while a
    checkpoint is written leaves the previous one intact, never a truncated file."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Any = None) -> None:
        with atomic_path(path) as tmp:
            super().save_checkpoint(checkpoint, tmp, storage_options)


def config_digest(cfg: DictConfig, data_files: list[Path]) -> str:
    """SHA-256 of everything that decides a run's result: the resolved config the train stage
    reads (``cfg`` is cut to its declared reads: a key it starts reading is in the digest without
    an edit here), less its output locations, tracking and progress display (NOT_RESULT_KEYS),
    plus the data files' contents."""
    node = OmegaConf.create({k: resolved(v) for k, v in cfg.items()})
    for key in NOT_RESULT_KEYS:
        parent, _, leaf = key.rpartition(".")
        sub = OmegaConf.select(node, parent) if parent else node
        if sub is not None and leaf in sub:
            del sub[leaf]
    payload = {"config": OmegaConf.to_container(node), "data": [content_digest(f) for f in data_files]}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def resolved(value: Any) -> Any:
    """A config node as plain containers with its interpolations resolved (against its root)."""
    return OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value


def rng_state() -> dict[str, Any]:
    """Every global generator's state in types ``torch.load(weights_only=True)`` accepts."""
    # numpy's legacy global generator is the one seed_everything seeds, so it is the one to keep
    kind, keys, pos, has_gauss, gauss = np.random.get_state()  # noqa: NPY002
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": [kind, keys.tolist(), pos, has_gauss, gauss],
        "python": random.getstate(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    kind, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, gauss))  # noqa: NPY002
    version, internal, gauss_next = state["python"]
    random.setstate((version, tuple(internal), gauss_next))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class ResumeState(pl.Callback):
    """Writes ``path`` at the end of every training epoch (after the curve callback has recorded
    it) with the config digest, the MLflow run and the random-number state, and puts the random
    state back when Lightning resumes from it."""

    def __init__(self, path: Path, digest: str) -> None:
        self.path, self.digest = Path(path), digest
        self.run_id: str | None = None

    def state_dict(self) -> dict[str, Any]:
        return {"config_digest": self.digest, "mlflow_run_id": self.run_id, "rng": rng_state()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        set_rng_state(state_dict["rng"])

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self.run_id = getattr(trainer.logger, "run_id", None)  # None on ranks other than 0

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # every rank calls it, the strategy writes on rank 0; the full state (resume loads it weights_only)
        trainer.save_checkpoint(self.path, weights_only=False)


def resumable(path: Path, digest: str) -> dict[str, Any] | None:
    """The :class:`ResumeState` saved in ``path`` when it exists and was written by the config of
    ``digest``; else None, saying in one line why it is not resumed."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        state = ckpt["callbacks"][ResumeState.__qualname__]
        epoch = int(ckpt["epoch"])
    except Exception as e:  # a foreign or damaged file: torch raises many types
        reason = (str(e).strip().splitlines() or [""])[0][:200]
        print(f"{path}: not a resumable checkpoint ({type(e).__name__}: {reason}); training from scratch")
        return None
    if state.get("config_digest") != digest:
        theirs = str(state.get("config_digest"))[:12]
        print(f"{path}: written by a different config or data (digest {theirs}, this run "
              f"{digest[:12]}); training from scratch, it will be replaced")  # fmt: skip
        return None
    print(f"{path}: resuming after epoch {epoch + 1}")
    return {**state, "epoch": epoch}


def discard(path: Path) -> None:
    """Remove the resume checkpoint once the run's outputs are written, and its folder and the
    checkpoint folder above it when they are left empty."""
    path = Path(path)
    path.unlink(missing_ok=True)
    for folder in (path.parent, path.parent.parent):
        try:
            folder.rmdir()
        except OSError:  # not empty: another variant's checkpoint is there
            break
