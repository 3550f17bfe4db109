"""CIFAR-10 from the official python tarball (MD5-verified), read without trusting its pickles.

The batches are pickled dicts of numpy arrays; a restricted unpickler admits only the globals
numpy needs to rebuild an array, so a tampered tarball cannot run code.
"""

from __future__ import annotations

import pickle
import tarfile
import tempfile
from pathlib import Path

import numpy as np

from xnornet.data.npz import Split
from xnornet.errors import XnornetError
from xnornet.files import download, verify_digest

_ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
}


class _ArrayOnlyUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if (module, name) not in _ALLOWED_GLOBALS:
            raise XnornetError(f"CIFAR-10 batch refers to {module}.{name}: refusing to load it")
        return super().find_class(module, name)


def _read_batch(tar: tarfile.TarFile, member: str, name: str) -> Split:
    try:
        f = tar.extractfile(member)
        batch = _ArrayOnlyUnpickler(f, encoding="bytes").load()
        data = np.asarray(batch[b"data"], dtype=np.uint8)
        labels = np.asarray(batch[b"labels"], dtype=np.int64)
    except (KeyError, pickle.UnpicklingError, EOFError, TypeError, ValueError) as e:
        raise XnornetError(f"{name}: cannot read CIFAR-10 member {member} ({e})") from e
    if data.ndim != 2 or data.shape[1] != 3072 or len(labels) != len(data):
        raise XnornetError(f"{name}: {member} has data {data.shape}, {len(labels)} labels")
    return data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1).copy(), labels


def read_cifar10_tarball(path: Path) -> dict[str, Split]:
    """Train (data_batch_1..5) and test (test_batch) splits of ``cifar-10-python.tar.gz``."""
    try:
        with tarfile.open(path, "r:gz") as tar:
            train = [_read_batch(tar, f"cifar-10-batches-py/data_batch_{i}", path.name) for i in range(1, 6)]
            test = _read_batch(tar, "cifar-10-batches-py/test_batch", path.name)
    except (tarfile.TarError, OSError, EOFError) as e:
        raise XnornetError(f"{path.name}: not a readable CIFAR-10 tarball ({e})") from e
    images = np.concatenate([b[0] for b in train])
    labels = np.concatenate([b[1] for b in train])
    return {"train": (images, labels), "test": test}


def fetch_cifar10(cfg) -> dict[str, Split]:
    """Download the tarball from ``cfg.url``, check the published MD5, read it."""
    with tempfile.TemporaryDirectory() as tmp:
        path = download(cfg.url, Path(tmp) / "cifar-10-python.tar.gz")
        verify_digest(path, cfg.md5, "md5")
        return read_cifar10_tarball(path)
