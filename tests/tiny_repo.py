"""A throwaway copy of this repository shrunk to a tiny config, and DVC run in it: what the tests
of the real pipeline (test_pipeline, test_reliability) share."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from conftest import REPO


def copy_repo(dest: Path) -> None:
    """The files git would ship (tracked, or new and not ignored): what a fresh clone has."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=REPO, capture_output=True, text=True, check=True,
    ).stdout.split("\0")  # fmt: skip
    for rel in filter(None, listed):
        src = REPO / rel
        if src.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)


# ResNet-18 alone, one small batch, one thread, one round: the bench_network stage in seconds.
NETWORK_BENCH_EDITS = [
    ("  - /net@networks.alexnet: alexnet\n", ""),
    ("batches: [1, 16]", "batches: [2]"),
    ("threads: [1, all]", "threads: [1]"),
    ("repeats: 3", "repeats: 1"),
    ("batch_size: 16", "batch_size: 2"),
    ("agreement_inputs: 64", "agreement_inputs: 2"),
    ("peers: all", "peers: []"),  # NNCF on ResNet-18 is a minute; tests/test_bench_peers.py covers them
]


def shrink_config(repo: Path, mirror: dict) -> None:
    def edit(rel: str, **changes) -> None:
        path = repo / rel
        cfg = yaml.safe_load(path.read_text())
        cfg.update(changes)
        path.write_text(yaml.safe_dump(cfg))

    edit("conf/data/mnist.yaml", source="idx", idx=mirror["idx"], val_size=100)
    edit("conf/train/default.yaml", max_epochs=1, batch_size=50, progress_bar=False)
    xnor = repo / "conf" / "model" / "xnor.yaml"  # text edit: keeps its `# @package _global_` line
    xnor.write_text(xnor.read_text().replace("max_epochs: 8", "max_epochs: 1"))
    tiny_shapes = [
        {"name": "tiny_conv", "kind": "conv", "batch": 2, "c_in": 20, "c_out": 17, "k": 3, "h": 6, "w": 6,
         "stride": 1, "padding": 1},
        {"name": "tiny_fc", "kind": "linear", "batch": 8, "c_in": 100, "c_out": 9},
    ]  # fmt: skip
    edit("conf/bench/default.yaml", shapes=tiny_shapes, warmup=1, repeats=2, peak_iters=100000)
    network = repo / "conf" / "bench_network" / "default.yaml"  # text edit: keeps its defaults list
    text = network.read_text()
    for old, new in NETWORK_BENCH_EDITS:
        assert old in text, f"conf/bench_network/default.yaml no longer has {old!r}: update shrink_config"
        text = text.replace(old, new)
    network.write_text(text)
    tiny_nin = {"enabled": True, "batch_size": 2, "repeats": 1}
    edit("conf/evaluate/default.yaml", warmup=1, repeats=2, nin=tiny_nin)


def dvc(repo: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Stages run the installed xnornet (its compiled kernel) with the copy's conf/ (cwd)."""
    env = {**os.environ, **(env or {})}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    return subprocess.run([sys.executable, "-m", "dvc", *args], cwd=repo, env=env,
                          capture_output=True, text=True, timeout=1800)  # fmt: skip
