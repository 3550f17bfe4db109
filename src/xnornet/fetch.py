"""DVC stage `fetch`: download and verify the dataset, write data/<name>/{train,test}.npz."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from omegaconf import DictConfig

from xnornet.cifar10_source import fetch_cifar10
from xnornet.cli import stage_main
from xnornet.errors import XnornetError
from xnornet.files import atomic_path
from xnornet.mnist_sources import fetch_mnist
from xnornet.tracking import record, run_tags, start_run

DATASETS = {"mnist": fetch_mnist, "cifar10": lambda cfg: fetch_cifar10(cfg.tarball)}


def write_splits(splits: dict, data_dir: Path) -> None:
    """Write every split as ``<split>.npz`` (images, labels); all of them or none."""
    with atomic_path(data_dir) as tmp:
        tmp.mkdir()
        for split, (images, labels) in splits.items():
            np.savez(tmp / f"{split}.npz", images=images, labels=labels)


@stage_main
def main(cfg: DictConfig) -> None:
    if cfg.data.name not in DATASETS:
        raise XnornetError(f"data.name must be one of {sorted(DATASETS)}, got {cfg.data.name!r}")
    splits = DATASETS[cfg.data.name](cfg.data)
    write_splits(splits, Path(cfg.paths.data_dir))
    client, run_id = start_run(cfg, "fetch", run_tags("fetch", dataset=cfg.data.name))
    record(client, run_id, {f"n_{split}": len(labels) for split, (_, labels) in splits.items()}, None)
    client.set_terminated(run_id)
    for split, (images, labels) in splits.items():
        print(f"{split}: {images.shape} images, class counts {np.bincount(labels).tolist()}")


if __name__ == "__main__":
    main()
