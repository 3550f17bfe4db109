"""LightningDataModule over the fetched ``{train,test}.npz``: seeded val split, whole batches."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch.utils.data import BatchSampler, DataLoader, Dataset, RandomSampler, SequentialSampler

from xnornet.data.npz import load_npz
from xnornet.errors import XnornetError


def to_tensor(images: np.ndarray, mean, std) -> torch.Tensor:
    """uint8 (N, H, W[, C]) → normalized float32 (N, C, H, W), channels-last in memory.

    Channels-last lets oneDNN skip layout conversions: about 15% faster LeNet-5 steps on CPU.
    """
    x = torch.from_numpy(images).float().div_(255.0)
    x = x.unsqueeze(1) if x.dim() == 3 else x.permute(0, 3, 1, 2)
    mean = torch.tensor(mean).view(1, -1, 1, 1)
    std = torch.tensor(std).view(1, -1, 1, 1)
    return ((x - mean) / std).contiguous(memory_format=torch.channels_last)


def random_shift(x: torch.Tensor, max_shift: int, fill: torch.Tensor | float = 0.0) -> torch.Tensor:
    """Translate each image by up to ``max_shift`` pixels, filling with ``fill`` (per channel):
    a random crop of the padded batch, drawn from torch's global generator so a seed repeats it."""
    b, _, h, w = x.shape
    padded = F.pad(x - fill, (max_shift,) * 4) + fill  # (B, C, H+2s, W+2s)
    oy, ox = torch.randint(0, 2 * max_shift + 1, (2, b, 1))
    rows = (oy + torch.arange(h)).view(b, 1, h, 1).expand(b, x.shape[1], h, w + 2 * max_shift)
    out = padded.gather(2, rows)  # (B, C, H, W+2s)
    cols = (ox + torch.arange(w)).view(b, 1, 1, w).expand(b, x.shape[1], h, w)
    return out.gather(3, cols).contiguous(memory_format=torch.channels_last)


class InMemoryBatches(Dataset):
    """Indexed by a list of indices, so the DataLoader gathers a whole batch in one tensor op."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, shift: int = 0, fill=0.0) -> None:
        self.x, self.y, self.shift, self.fill = x, y, shift, fill

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, idx: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.x[idx]
        return (random_shift(x, self.shift, self.fill) if self.shift else x), self.y[idx]


def batch_loader(ds: InMemoryBatches, batch_size: int, shuffle: bool) -> DataLoader:
    sampler = RandomSampler(ds) if shuffle else SequentialSampler(ds)
    return DataLoader(ds, batch_size=None, sampler=BatchSampler(sampler, batch_size, False))


class NpzDataModule(pl.LightningDataModule):
    def __init__(
        self,
        data_dir: str | Path,
        mean: list[float],
        std: list[float],
        batch_size: int = 128,
        val_size: int = 5000,
        split_seed: int = 0,
        limit_train: int | None = None,
        limit_test: int | None = None,
        augment_shift: int = 0,
        val_in_train: bool = False,
    ) -> None:
        super().__init__()
        self.data_dir = Path(data_dir)
        self.mean, self.std = list(mean), list(std)
        self.batch_size, self.val_size, self.split_seed = batch_size, val_size, split_seed
        self.limit_train, self.limit_test = limit_train, limit_test
        if augment_shift < 0:
            raise XnornetError(f"data.augment_shift must be >= 0, got {augment_shift}")
        self.augment_shift = augment_shift
        self.val_in_train = bool(val_in_train)

    def setup(self, stage: str | None = None) -> None:
        if hasattr(self, "train_set"):
            return
        images, labels = load_npz(self.data_dir / "train.npz")
        images, labels = images[: self.limit_train], labels[: self.limit_train]
        if not 0 < self.val_size < len(labels):
            raise XnornetError(f"data.val_size={self.val_size} must be between 1 and {len(labels) - 1}")
        perm = torch.randperm(len(labels), generator=torch.Generator().manual_seed(self.split_seed))
        x, y = to_tensor(images, self.mean, self.std), torch.from_numpy(labels)
        val, train = perm[: self.val_size], perm[self.val_size :]
        if self.val_in_train:  # every training image learns; the split then only monitors
            train = perm
        background = (0.0 - torch.tensor(self.mean)) / torch.tensor(self.std)  # a black pixel, normalized
        self.train_set = InMemoryBatches(x[train], y[train], self.augment_shift, background.view(1, -1, 1, 1))
        self.val_set = InMemoryBatches(x[val], y[val])
        images, labels = load_npz(self.data_dir / "test.npz")
        images, labels = images[: self.limit_test], labels[: self.limit_test]
        self.test_set = InMemoryBatches(to_tensor(images, self.mean, self.std), torch.from_numpy(labels))

    def sources(self) -> list[tuple[str, Path, str]]:
        """(name, file, context) of what this module reads, for the run's dataset inputs."""
        name = self.data_dir.name
        return [(f"{name}/train.npz", self.data_dir / "train.npz", "training"),
                (f"{name}/test.npz", self.data_dir / "test.npz", "testing")]  # fmt: skip

    def train_dataloader(self) -> DataLoader:
        return batch_loader(self.train_set, self.batch_size, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return batch_loader(self.val_set, 1000, shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return batch_loader(self.test_set, 1000, shuffle=False)
