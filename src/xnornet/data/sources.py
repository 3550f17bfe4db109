"""Which fetcher serves ``data.name``: the one place a new dataset is registered."""

from __future__ import annotations

from collections.abc import Callable

from omegaconf import DictConfig

from xnornet.data.cifar10 import fetch_cifar10
from xnornet.data.mnist import fetch_mnist
from xnornet.data.npz import Split
from xnornet.errors import XnornetError

DATASETS: dict[str, Callable[[DictConfig], dict[str, Split]]] = {
    "mnist": fetch_mnist,
    "cifar10": lambda cfg: fetch_cifar10(cfg.tarball),
}


def fetch_dataset(data: DictConfig) -> dict[str, Split]:
    """Download and verify the dataset ``data`` describes (conf/data/<name>.yaml)."""
    if data.name not in DATASETS:
        raise XnornetError(f"data.name must be one of {sorted(DATASETS)}, got {data.name!r}")
    return DATASETS[data.name](data)
