"""Sweeps beyond the local machine: the SLURM launcher configs compose with the values a user
gives (nothing is submitted here), and submitit's local executor runs a real sweep, jobs in their
own processes as on a cluster, with every job an MLflow child run of the sweep."""

from __future__ import annotations

import subprocess
import sys

import pytest
from hydra import compose, initialize_config_dir
from hydra.utils import get_class
from mlflow.tracking import MlflowClient

from conftest import CONF, REPO


def launcher(*overrides: str):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(config_name="config", overrides=list(overrides), return_hydra_config=True)
    return cfg.hydra.launcher


def test_submitit_slurm_takes_partition_cpus_and_time():
    conf = launcher("hydra/launcher=submitit_slurm", "hydra.launcher.partition=cpu",
                    "hydra.launcher.cpus_per_task=4", "hydra.launcher.timeout_min=30",
                    "+hydra.launcher.additional_parameters.mail-type=END")  # fmt: skip
    assert get_class(conf._target_).__name__ == "SlurmLauncher"
    assert (conf.partition, conf.cpus_per_task, conf.timeout_min) == ("cpu", 4, 30)
    assert conf.additional_parameters == {"mail-type": "END"}


def test_slurm_cpu_extends_submitit_slurm():
    conf = launcher("hydra/launcher=slurm_cpu", "hydra.launcher.partition=short")
    assert get_class(conf._target_).__name__ == "SlurmLauncher"
    assert (conf.partition, conf.cpus_per_task, conf.mem_gb, conf.timeout_min) == ("short", 8, 16, 120)
    assert conf.array_parallelism == 16 and conf.gpus_per_node is None
    # the job logs go under the sweep's own directory, beside the jobs' outputs
    assert conf.submitit_folder.endswith("/.submitit/%j")


@pytest.mark.slow
def test_submitit_local_jobs_are_children_of_one_sweep_run(tmp_path, tiny_data_dir):
    db = tmp_path / "mlflow.db"
    cmd = [sys.executable, "-m", "xnornet", "train", "-m", "hydra/launcher=submitit_local",
           "hydra.launcher.timeout_min=10", "model=fp", "seed=0,1", "train.threads=1",
           "train.max_epochs=1", "train.batch_size=50", "train.progress_bar=false", "data.val_size=100",
           f"paths.data_dir={tiny_data_dir}", f"logger.tracking_uri=sqlite:///{db}",
           f"logger.artifact_dir={tmp_path}/mlartifacts", f"hydra.sweep.dir={tmp_path}/multirun"]  # fmt: skip
    out = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]

    client = MlflowClient(f"sqlite:///{db}")
    runs = client.search_runs([client.get_experiment_by_name("xnornet").experiment_id])
    (parent,) = [r for r in runs if r.data.tags.get("dvc_stage") == "sweep"]
    children = {
        r.info.run_name: r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id
    }
    assert set(children) == {"train-fp-seed0", "train-fp-seed1"}
    assert all(r.info.status == "FINISHED" and "test_acc" in r.data.metrics for r in children.values())
    assert len(list((tmp_path / "multirun" / ".submitit").glob("*/*_result.pkl"))) == 2
