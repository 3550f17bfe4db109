"""Shared fixtures: the real composed config, shrunk; small datasets written to tmp_path."""

from __future__ import annotations

import functools
import gzip
import hashlib
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from xnornet.kernels import available_isas

REPO = Path(__file__).resolve().parents[1]
CONF = REPO / "conf"


@pytest.fixture(autouse=True)
def no_inherited_tracking_uri(monkeypatch):
    """mlflow.set_tracking_uri (Lightning's MLFlowLogger calls it) exports MLFLOW_TRACKING_URI into
    this process, and conf/logger reads that variable first: without this, a subprocess a later
    test starts (dvc repro, a sweep) would log to an earlier test's store."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)


@pytest.fixture(autouse=True)
def deterministic_mode_restored():
    """Lightning's ``deterministic=True`` switches torch's deterministic-algorithms mode on for the
    whole process and never back; without this, a training test changes what every later test in
    the same worker may call (torch's own quantized modules refuse to run in that mode)."""
    enabled = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    yield
    torch.use_deterministic_algorithms(enabled, warn_only=warn_only)


@functools.cache
def migrated_store(tmp_dir: Path) -> Path:
    """An empty MLflow sqlite store, created by MLflow itself once per test process."""
    from mlflow.tracking import MlflowClient

    db = tmp_dir / "migrated-template.db"
    MlflowClient(f"sqlite:///{db}").search_experiments()
    return db


@pytest.fixture(autouse=True)
def stores_from_a_template(request, monkeypatch, tmp_path_factory):
    """A new sqlite store that xnornet.tracking opens in this process (every stage's run) starts as
    a copy of one MLflow created and migrated at the first use: MLflow's table creation and
    migrations take 1.3–3 s per store, which dozens of tests would pay for nothing. Tests of store
    creation itself opt out with ``@pytest.mark.fresh_store``; stages run as subprocesses (the slow
    tests) always create theirs."""
    if request.node.get_closest_marker("fresh_store"):
        return
    from xnornet import tracking
    from xnornet.store_lock import sqlite_file

    real = tracking.tracking_client

    def client_on_a_copied_store(uri: str):
        db = sqlite_file(uri)
        if db is not None and not db.exists() and db.parent.is_dir():
            shutil.copyfile(migrated_store(tmp_path_factory.getbasetemp()), db)
        return real(uri)

    monkeypatch.setattr(tracking, "tracking_client", client_on_a_copied_store)


BROWSER_HOW = "the browser tests need Debian's chromium: run `apt-get install -y chromium` as root"


@pytest.fixture(scope="session")
def chromium() -> str:
    """Debian's chromium, installed on first use where apt-get can, so that the README's one test
    command passes on a fresh machine that has only Python, gcc and pip; elsewhere one line says how."""
    found = shutil.which("chromium")
    if found:
        return found
    if shutil.which("apt-get") is None or os.geteuid() != 0:
        pytest.fail(BROWSER_HOW, pytrace=False)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "chromium"]):
        done = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if done.returncode != 0:
            last = (done.stderr.strip() or done.stdout.strip()).splitlines()[-1:]
            pytest.fail(f"{' '.join(cmd)} failed ({': '.join(last)}); {BROWSER_HOW}", pytrace=False)
    return shutil.which("chromium") or pytest.fail(BROWSER_HOW, pytrace=False)


def compose_config(overrides: list[str]) -> DictConfig:
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(config_name="config", overrides=overrides)


def synthetic_digits(n: int, seed: int = 0, size: int = 28) -> tuple[np.ndarray, np.ndarray]:
    """Learnable toy 'digits': class c lights up a bar at row 2c, plus noise."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, n).astype(np.int64)
    images = rng.integers(0, 60, (n, size, size)).astype(np.uint8)
    for i, c in enumerate(labels):
        images[i, 2 * c + 3 : 2 * c + 6, 4:24] = 255
    return images, labels


def few_adam_steps(
    net: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, steps: int, batch: int
) -> torch.nn.Module:
    """``net`` after ``steps`` Adam steps (lr 0.01) over 8 batches of ``x``: BatchNorm statistics
    and weights that are not trivial, in a second, without a Trainer."""
    opt = torch.optim.Adam(net.parameters(), lr=0.01)
    for step in range(steps):
        part = slice(batch * (step % 8), batch * (step % 8 + 1))
        opt.zero_grad()
        torch.nn.functional.cross_entropy(net(x[part]), y[part]).backward()
        opt.step()
    return net.eval()


@pytest.fixture
def tiny_data_dir(tmp_path: Path) -> Path:
    d = tmp_path / "data" / "mnist"
    d.mkdir(parents=True)
    for split, n, seed in (("train", 400, 0), ("test", 100, 1)):
        images, labels = synthetic_digits(n, seed)
        np.savez(d / f"{split}.npz", images=images, labels=labels)
    return d


def tiny_overrides(tmp_path: Path, variant: str) -> list[str]:
    return [
        f"model={variant}",
        f"paths.data_dir={tmp_path}/data/mnist",
        f"paths.models_dir={tmp_path}/models",
        f"paths.metrics_dir={tmp_path}/metrics",
        f"paths.plots_dir={tmp_path}/plots",
        f"logger.tracking_uri=sqlite:///{tmp_path}/mlflow.db",
        f"logger.artifact_dir={tmp_path}/mlartifacts",
        "data.val_size=100",
        "train.max_epochs=1",
        "train.batch_size=50",
        "train.progress_bar=false",
        "train.trainer.log_every_n_steps=1",  # 6 batches an epoch: Lightning warns below its interval
    ]


@pytest.fixture
def cfg_train(tmp_path: Path):
    """The real composed config shrunk to a one-epoch run on tiny data under ``tmp_path``:
    ``cfg_train("xnor", "train.lr=1.0")``."""

    def make(variant: str, *overrides: str) -> DictConfig:
        return compose_config([*tiny_overrides(tmp_path, variant), *overrides])

    return make


def write_idx(path: Path, array: np.ndarray, magic: int) -> None:
    """A gzipped big-endian IDX file, as the classic MNIST distribution ships them."""
    header = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in array.shape)
    path.write_bytes(gzip.compress(header + array.astype(np.uint8).tobytes()))


def make_idx_mirror(root: Path, n_train: int = 30, n_test: int = 10) -> dict:
    """Four gzipped IDX files in ``root`` and the matching ``data.idx`` config."""
    files = {}
    for split, n, seed in (("train", n_train, 0), ("test", n_test, 1)):
        images, labels = synthetic_digits(n, seed)
        prefix = "train" if split == "train" else "t10k"
        for kind, array, magic in (("images", images, 2051), ("labels", labels, 2049)):
            name = f"{prefix}-{kind}-idx{3 if kind == 'images' else 1}-ubyte.gz"
            write_idx(root / name, array, magic)
            md5 = hashlib.md5((root / name).read_bytes()).hexdigest()
            files[f"{split}_{kind}"] = {"name": name, "md5": md5}
    return {"source": "idx", "idx": {"base_url": root.as_uri(), "files": files}}


def quiet_trainer(**kwargs) -> pl.Trainer:
    """A Lightning trainer for unit tests: no logger, bar, summary or checkpoints."""
    return pl.Trainer(logger=False, enable_progress_bar=False, enable_model_summary=False,
                      enable_checkpointing=False, accelerator="cpu", **kwargs)  # fmt: skip


@pytest.fixture(params=available_isas())
def isa(request, monkeypatch):
    """Each popcount path this CPU runs, forced through XNORNET_ISA."""
    monkeypatch.setenv("XNORNET_ISA", request.param)
    return request.param


def signed_floats(rng, shape) -> np.ndarray:
    """Random float32 with exact zeros and negative zeros mixed in (sign(±0) = +1)."""
    x = rng.standard_normal(shape).astype(np.float32)
    x.flat[::7] = 0.0
    x.flat[3::11] = -0.0
    return x
