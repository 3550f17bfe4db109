"""The ImageNet path on a tiny generated tree of JPEGs: the datamodule, the experiment configs,
and a real training run of ResNet-18 through the train stage. Nothing is downloaded."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import compose_config
from xnornet.builders import build_datamodule, build_net
from xnornet.errors import XnornetError
from xnornet.stages.train import main as train_stage

CLASSES = ("cat", "dog")


def jpeg_tree(root, sizes=((40, 30), (30, 44), (50, 50))):
    """train/ and val/ with a folder per class; each class a different colour, so it is learnable."""
    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for c, name in enumerate(CLASSES):
            (root / split / name).mkdir(parents=True)
            for i, (w, h) in enumerate(sizes):
                pixels = rng.integers(0, 60, (h, w, 3), dtype=np.uint8)
                pixels[..., c] += 150
                Image.fromarray(pixels).save(root / split / name / f"{i}.jpg", quality=90)
    (root / "train" / "README.txt").write_text("not a class folder")
    return root


def overrides(tmp_path, network: str) -> list[str]:
    return [f"+experiment=imagenet_{network}", "model=xnor", f"data.root={jpeg_tree(tmp_path / 'tree')}",
            "data.image_size=32", "data.resize=36", "data.num_workers=0", "train.batch_size=2",
            "train.max_epochs=1", "train.accelerator=cpu", "train.progress_bar=false",
            "train.trainer.log_every_n_steps=1",  # 3 batches an epoch: Lightning warns below its interval
            f"paths.models_dir={tmp_path}/models", f"paths.metrics_dir={tmp_path}/metrics",
            f"paths.plots_dir={tmp_path}/plots", f"logger.tracking_uri=sqlite:///{tmp_path}/mlflow.db",
            f"logger.artifact_dir={tmp_path}/mlartifacts"]  # fmt: skip


def test_datamodule_reads_the_tree_with_standard_transforms(tmp_path):
    dm = build_datamodule(compose_config(overrides(tmp_path, "resnet18")))
    dm.setup()
    assert dm.classes == list(CLASSES) and len(dm.train_set) == 6 and len(dm.val_set) == 6
    x, y = next(iter(dm.val_dataloader()))
    assert x.shape == (2, 3, 32, 32) and x.dtype == torch.float32 and y.tolist() == [0, 0]
    # normalized with ImageNet's statistics: the red class is bright in channel 0 only
    assert x[:, 0].mean() > 0.5 and x[:, 2].mean() < 0.0
    again, _ = next(iter(dm.val_dataloader()))
    assert torch.equal(x, again)  # evaluation crops are centred, not random


def test_the_imagenet_experiments_pick_the_papers_networks():
    for network in ("alexnet", "resnet18"):
        cfg = compose_config([f"+experiment=imagenet_{network}", "data.root=/nowhere"])
        assert cfg.data.name == "imagefolder" and cfg.net._target_.endswith(
            {"alexnet": "AlexNet", "resnet18": "ResNet18"}[network]
        )
        assert cfg.train.optimizer._target_ == "torch.optim.Adam"


@pytest.mark.slow
def test_resnet18_trains_on_the_tree_through_the_train_stage(tmp_path):
    cfg = compose_config(overrides(tmp_path, "resnet18"))
    assert build_net(cfg).eval()(torch.zeros(1, 3, 32, 32)).shape == (1, 1000)
    train_stage(cfg)
    metrics = json.loads((tmp_path / "metrics" / "train_xnor.json").read_text())
    assert metrics["epochs"] == 1 and 0.0 <= metrics["test_acc"] <= 1.0
    assert (tmp_path / "models" / "xnor.ckpt").stat().st_size > 0


def truncate_first_image(root):
    (root / "train" / "cat" / "0.jpg").write_bytes(b"\xff\xd8 truncated")


def rename_a_val_class(root):
    (root / "val" / "dog").rename(root / "val" / "wolf")


@pytest.mark.parametrize("damage,match", [(rename_a_val_class, "different class folders"),
                                          (truncate_first_image, "0.jpg: not a readable image")])  # fmt: skip
def test_a_bad_tree_is_one_clear_error(tmp_path, damage, match):
    cfg = compose_config(overrides(tmp_path, "resnet18"))
    damage(tmp_path / "tree")
    dm = build_datamodule(cfg)
    with pytest.raises(XnornetError, match=match):
        dm.setup()
        for _ in dm.train_set:
            pass


def test_a_missing_root_is_named(tmp_path):
    cfg = compose_config([*overrides(tmp_path, "resnet18"), f"data.root={tmp_path}/absent"])
    dm = build_datamodule(cfg)
    with pytest.raises(XnornetError, match="absent/train: not found"):
        dm.setup()
