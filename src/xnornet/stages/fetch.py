"""DVC stage `fetch`: download and verify the dataset, write data/<name>/{train,test}.npz."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from omegaconf import DictConfig

from xnornet.data.npz import write_splits
from xnornet.data.sources import fetch_dataset
from xnornet.stages import stage_main
from xnornet.tracking import stage_run


@stage_main("data", "paths.data_dir", "logger", writes=("paths.data_dir",))
def main(cfg: DictConfig) -> None:
    splits = fetch_dataset(cfg.data)
    with stage_run(cfg, "fetch", "fetch", dataset=cfg.data.name) as run:  # before the output
        write_splits(splits, Path(cfg.paths.data_dir))
        run.record({f"n_{split}": len(labels) for split, (_, labels) in splits.items()})
    for split, (images, labels) in splits.items():
        print(f"{split}: {images.shape} images, class counts {np.bincount(labels).tolist()}")


if __name__ == "__main__":
    main()
