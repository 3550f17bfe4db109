"""ImageNet-style data: a folder per class of image files (``root/train/<class>/*.jpg`` and
``root/val/<class>/*.jpg``), decoded by Pillow, for users who have ImageNet.

Nothing here downloads anything. The transforms are the usual ones: shorter side resized to
``resize``, then a random ``image_size`` crop and horizontal flip for training, the centre crop
for evaluation, normalized per channel. (torchvision's ImageFolder would do the same; its PyPI
build does not load beside the CPU build of torch this project pins.)
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import DataLoader, Dataset

from xnornet.errors import XnornetError

EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}


def scan(split_dir: Path) -> tuple[list[str], list[tuple[Path, int]]]:
    """(class names sorted, [(file, class index)]) of a folder-per-class tree."""
    if not split_dir.is_dir():
        raise XnornetError(f"{split_dir}: not found; data.root must hold train/ and val/ class folders")
    classes = sorted(p.name for p in split_dir.iterdir() if p.is_dir())
    samples = [(f, i) for i, c in enumerate(classes) for f in sorted((split_dir / c).iterdir())
               if f.suffix.lower() in EXTENSIONS]  # fmt: skip
    if not samples:
        raise XnornetError(f"{split_dir}: no images in class folders ({', '.join(sorted(EXTENSIONS))})")
    return classes, samples


class ImageFolderDataset(Dataset):
    def __init__(self, samples: list[tuple[Path, int]], image_size: int, resize: int, mean, std,
                 train: bool, seed: int = 0) -> None:  # fmt: skip
        self.samples, self.image_size, self.resize, self.train = samples, image_size, resize, train
        self.mean = torch.tensor(mean, dtype=torch.float32).view(-1, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(-1, 1, 1)
        self.rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        path, label = self.samples[i]
        try:
            with Image.open(path) as img:
                img = img.convert("RGB")
        except (OSError, UnidentifiedImageError) as e:
            raise XnornetError(f"{path}: not a readable image ({e})") from e
        w, h = img.size
        scale = self.resize / min(w, h)
        img = img.resize((max(self.resize, round(w * scale)), max(self.resize, round(h * scale))),
                         Image.Resampling.BILINEAR)  # fmt: skip
        w, h = img.size
        s = self.image_size
        if self.train:
            left, top = int(self.rng.integers(0, w - s + 1)), int(self.rng.integers(0, h - s + 1))
        else:
            left, top = (w - s) // 2, (h - s) // 2
        img = img.crop((left, top, left + s, top + s))
        if self.train and self.rng.random() < 0.5:
            img = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        x = torch.from_numpy(np.asarray(img, dtype=np.float32) / 255.0).permute(2, 0, 1)  # (3, S, S)
        return (x - self.mean) / self.std, label


class ImageFolderDataModule(pl.LightningDataModule):
    """Train on ``root/train``, validate and test on ``root/val`` (ImageNet's usual test split)."""

    def __init__(
        self,
        root: str | Path,
        mean: list[float],
        std: list[float],
        batch_size: int = 256,
        image_size: int = 224,
        resize: int = 256,
        num_workers: int = 0,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if image_size < 1 or resize < image_size:
            raise XnornetError(
                f"data.image_size={image_size} must be positive and at most data.resize={resize}"
            )
        self.root, self.mean, self.std = Path(root), list(mean), list(std)
        self.batch_size, self.image_size, self.resize = batch_size, image_size, resize
        self.num_workers, self.seed = num_workers, seed

    def setup(self, stage: str | None = None) -> None:
        if hasattr(self, "train_set"):
            return
        classes, train = scan(self.root / "train")
        val_classes, val = scan(self.root / "val")
        if val_classes != classes:
            raise XnornetError(f"{self.root}: train/ and val/ have different class folders")
        self.classes = classes
        args = (self.image_size, self.resize, self.mean, self.std)
        self.train_set = ImageFolderDataset(train, *args, train=True, seed=self.seed)
        self.val_set = self.test_set = ImageFolderDataset(val, *args, train=False)

    def sources(self) -> list[tuple[str, Path, str]]:
        """(name, folder, context) of what this module reads, for the run's dataset inputs."""
        return [(f"{self.root.name}/train", self.root / "train", "training"),
                (f"{self.root.name}/val", self.root / "val", "testing")]  # fmt: skip

    def _loader(self, ds: Dataset, shuffle: bool) -> DataLoader:
        return DataLoader(ds, batch_size=self.batch_size, shuffle=shuffle, num_workers=self.num_workers,
                          persistent_workers=self.num_workers > 0)  # fmt: skip

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_set, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_set, shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.test_set, shuffle=False)
