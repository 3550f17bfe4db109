"""Training beyond one process by configuration only: `train.strategy=ddp train.devices=2` on CPU
(gloo) through the real `xnornet train` command, whose further rank Lightning starts itself."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from mlflow.tracking import MlflowClient

from conftest import tiny_overrides


@pytest.mark.slow
def test_ddp_on_two_cpu_processes_trains_on_both_and_only_rank_0_writes(tmp_path, tiny_data_dir):
    cmd = [sys.executable, "-m", "xnornet", "train", *tiny_overrides(tmp_path, "bwn"), "train.max_epochs=2",
           "train.strategy=ddp", "train.devices=2", f"train.checkpoint_dir={tmp_path}/ckpt"]  # fmt: skip
    out = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    log = out.stdout + out.stderr
    assert out.returncode == 0, log[-4000:]
    # both ranks joined one gloo group and trained
    assert "MEMBER: 2/2" in log and "distributed_backend=gloo" in log
    # 300 training images in batches of 50: 6 batches an epoch, 3 on each rank
    ckpt = torch.load(tmp_path / "models" / "bwn.ckpt", weights_only=True)
    assert ckpt["global_step"] == 2 * 3 and ckpt["epoch"] == 2
    # rank 0 alone wrote the outputs and logged one MLflow run
    assert log.count("bwn: test_acc=") == 1
    metrics = json.loads((tmp_path / "metrics" / "train_bwn.json").read_text())
    assert metrics["epochs"] == 2 and 0.0 <= metrics["test_acc"] <= 1.0
    assert (tmp_path / "plots" / "train_bwn.csv").read_text().count("\n") == 3  # header + 2 epochs
    assert not (tmp_path / "ckpt").exists()  # the resume state went with success
    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    (run,) = client.search_runs([client.get_experiment_by_name("xnornet").experiment_id])
    assert run.info.status == "FINISHED" and run.data.metrics["test_acc"] == pytest.approx(
        metrics["test_acc"]
    )
