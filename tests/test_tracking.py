"""Where runs go: the local sqlite store by default, a tracking server when MLFLOW_TRACKING_URI says."""

from __future__ import annotations

import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from conftest import compose_config, tiny_overrides
from mlflow_server import fetch_command, start_together
from xnornet.errors import XnornetError
from xnornet.run_owner import OWNER_HOST, OWNER_PID
from xnornet.stages.train import main as train_stage
from xnornet.store_lock import store_lock
from xnornet.tracking import EXPERIMENT_KIND, ensure_experiment, open_run, tracking_uri


def test_mlflow_tracking_uri_moves_every_stage(monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert compose_config([]).logger.tracking_uri == "sqlite:///mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://tracking-host:5000")
    assert tracking_uri(compose_config([])) == "http://tracking-host:5000"


@pytest.mark.fresh_store  # ensure_experiment on no store at all: MLflow creates it here
def test_a_local_store_keeps_artifacts_beside_it_and_opens_on_runs(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    cfg = compose_config(
        [f"logger.tracking_uri=sqlite:///{tmp_path}/m.db", f"logger.artifact_dir={tmp_path}/art"]
    )
    exp = MlflowClient(tracking_uri(cfg)).get_experiment(ensure_experiment(cfg))
    assert exp.artifact_location == (tmp_path / "art").as_uri()
    assert all(exp.tags.get(k) == v for k, v in EXPERIMENT_KIND.items())


# ---------------------------------------------------------------- a fresh store, runs of dead processes


def test_the_store_lock_is_held_across_processes_and_names_its_file(tmp_path):
    uri = f"sqlite:///{tmp_path}/m.db"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time\nfrom xnornet.store_lock import store_lock\n"
         "with store_lock(sys.argv[1]):\n    print('held', flush=True); time.sleep(60)\n", uri],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "held"
        with (
            pytest.raises(XnornetError, match=f"{tmp_path}/m.db.lock: another process held"),
            store_lock(uri, 0.5),
        ):
            pass
    finally:
        holder.kill()
        holder.wait()
    with store_lock(uri, 5):  # the kernel dropped the dead holder's lock
        pass


def test_a_bad_or_deleted_experiment_fails_in_one_line_before_any_run(tmp_path):
    store = [f"logger.tracking_uri=sqlite:///{tmp_path}/m.db", f"logger.artifact_dir={tmp_path}/art"]
    with pytest.raises(XnornetError, match="logger.experiment='': expected a non-empty experiment name"):
        ensure_experiment(compose_config([*store, "logger.experiment=''"]))
    cfg = compose_config(store)
    client = MlflowClient(tracking_uri(cfg))
    client.delete_experiment(ensure_experiment(cfg))
    with pytest.raises(XnornetError, match="logger.experiment=xnornet: this experiment is deleted"):
        open_run(cfg, "pack-xnor", "pack@xnor")


def dead_pid() -> int:
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    return gone.pid


def test_a_run_whose_process_is_gone_is_ended_killed_when_the_next_run_opens(tmp_path):
    cfg = compose_config(
        [f"logger.tracking_uri=sqlite:///{tmp_path}/m.db", f"logger.artifact_dir={tmp_path}/a"]
    )
    client = MlflowClient(tracking_uri(cfg))
    exp = ensure_experiment(cfg)
    here = socket.gethostname()
    owners = {
        "dead": (dead_pid(), here),
        "alive": (os.getpid(), here),
        "elsewhere": (dead_pid(), "other-host"),
    }
    ids = {
        name: client.create_run(exp, tags={OWNER_PID: str(pid), OWNER_HOST: host}).info.run_id
        for name, (pid, host) in owners.items()
    }
    run = open_run(cfg, "fetch", "fetch")
    status = {name: client.get_run(run_id).info.status for name, run_id in ids.items()}
    assert status == {"dead": "KILLED", "alive": "RUNNING", "elsewhere": "RUNNING"}
    assert client.get_run(run.run_id).data.tags[OWNER_PID] == str(os.getpid())


@pytest.mark.slow
def test_a_training_killed_before_its_first_checkpoint_is_ended_killed_by_the_next(
    tmp_path, tiny_data_dir, cfg_train
):
    out, db = tmp_path / "killed", tmp_path / "mlflow.db"
    overrides = [o for o in tiny_overrides(out, "xnor") if not o.startswith(("paths.data_dir", "logger."))]
    cmd = [sys.executable, "-m", "xnornet", "train", *overrides, f"paths.data_dir={tiny_data_dir}",
           f"logger.tracking_uri=sqlite:///{db}", f"logger.artifact_dir={tmp_path}/mlartifacts",
           f"train.checkpoint_dir={out}/checkpoints", "train.max_epochs=50", "train.threads=1"]  # fmt: skip
    training = subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and training.poll() is None and not running_runs(db):
        time.sleep(0.1)
    os.kill(training.pid, signal.SIGKILL)
    assert training.wait() == -signal.SIGKILL, "the run ended before it could be killed"
    assert not (out / "checkpoints" / "xnor" / "last.ckpt").exists()  # killed before its first checkpoint
    (orphan,) = running_runs(db)

    train_stage(cfg_train("xnor"))  # the next run of the stage, in the same store
    client = MlflowClient(f"sqlite:///{db}")
    assert client.get_run(orphan).info.status == "KILLED"
    runs = client.search_runs([client.get_experiment_by_name("xnornet").experiment_id])
    assert sorted(r.info.status for r in runs) == ["FINISHED", "KILLED"]


def running_runs(db: Path) -> list[str]:
    if not db.exists():
        return []
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1) as con:
            return [row[0] for row in con.execute("select run_uuid from runs where status = 'RUNNING'")]
    except sqlite3.OperationalError:  # the tables are still being created
        return []


@pytest.mark.slow
def test_eight_runs_started_at_once_on_a_fresh_sqlite_store_are_all_recorded(tmp_path):
    db = tmp_path / "store" / "mlflow.db"
    uri = f"sqlite:///{db}"
    commands = [
        fetch_command(tmp_path / "mirror", tmp_path / f"data{i}", uri, tmp_path / "art") for i in range(8)
    ]
    assert not db.exists()
    for done in start_together(commands, tmp_path):
        assert done.returncode == 0, done.stderr[-3000:]
    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("xnornet").experiment_id])
    assert len(runs) == 8 and {r.info.status for r in runs} == {"FINISHED"}
    assert {r.data.params["paths.data_dir"] for r in runs} == {str(tmp_path / f"data{i}") for i in range(8)}
    assert all(r.data.metrics == {"n_train": 30.0, "n_test": 10.0} for r in runs)
