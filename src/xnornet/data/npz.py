"""The dataset files every stage shares: data/<name>/{train,test}.npz, written whole or not at all."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from xnornet.errors import XnornetError
from xnornet.files import atomic_path

Split = tuple[np.ndarray, np.ndarray]  # (images uint8 (N, H, W[, C]), labels int64 (N,))


def write_splits(splits: dict[str, Split], data_dir: Path) -> None:
    """Write every split as ``<split>.npz`` (images, labels); all of them or none."""
    with atomic_path(data_dir) as tmp:
        tmp.mkdir()
        for split, (images, labels) in splits.items():
            np.savez(tmp / f"{split}.npz", images=images, labels=labels)


def load_npz(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(images uint8 (N, H, W[, C]), labels int64 (N,)), with errors that name the file."""
    if not path.exists():
        raise XnornetError(f"{path}: not found; run `dvc repro fetch` (xnornet fetch)")
    try:
        with np.load(path, allow_pickle=False) as f:
            images, labels = f["images"], f["labels"]
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as e:  # truncated: a bad zip
        raise XnornetError(f"{path}: not a valid dataset file ({e})") from e
    if images.dtype != np.uint8 or images.ndim not in (3, 4) or len(images) != len(labels):
        raise XnornetError(f"{path}: expected uint8 images (N,H,W[,C]) and N labels")
    return images, labels.astype(np.int64)
