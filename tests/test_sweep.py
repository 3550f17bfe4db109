"""A parallel Hydra sweep as a researcher runs it: joblib jobs, one MLflow parent run per sweep,
a child run per job named for its overrides, and every job's metrics recorded."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from mlflow.tracking import MlflowClient

from conftest import REPO
from xnornet.machine import usable_cores


@pytest.mark.slow
def test_four_parallel_jobs_are_children_of_one_sweep_run(tmp_path, tiny_data_dir):
    db = tmp_path / "mlflow.db"
    cmd = [sys.executable, "-m", "xnornet", "train", "-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2",
           "model=fp,xnor", "seed=0,1", "train.max_epochs=1", "train.batch_size=50",
           "train.progress_bar=false", "data.val_size=100", f"paths.data_dir={tiny_data_dir}",
           f"logger.tracking_uri=sqlite:///{db}", f"logger.artifact_dir={tmp_path}/mlartifacts",
           f"hydra.sweep.dir={tmp_path}/multirun", f"sweep_summary={tmp_path}/summary.json"]  # fmt: skip
    out = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]

    client = MlflowClient(f"sqlite:///{db}")
    exp = client.get_experiment_by_name("xnornet")
    runs = client.search_runs([exp.experiment_id])
    (parent,) = [r for r in runs if r.data.tags.get("dvc_stage") == "sweep"]
    assert parent.info.status == "FINISHED" and "seed=0,1" in parent.data.tags["sweep_overrides"]
    children = {
        r.info.run_name: r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id
    }
    assert set(children) == {f"train-{v}-seed{s}" for v in ("fp", "xnor") for s in (0, 1)}
    for run in children.values():
        assert run.info.status == "FINISHED" and run.data.tags["sweep_id"] == parent.info.run_id
        assert 0.0 <= run.data.metrics["test_acc"] <= 1.0 and "val_acc" in run.data.metrics
    # each job wrote its own outputs under the sweep directory, with the same numbers
    written = sorted((tmp_path / "multirun").glob("*/metrics/train_*.json"))
    assert len(written) == 4
    # 2 jobs at a time, no train.threads: each job's torch got its share of the cores
    assert {json.loads(p.read_text())["threads"] for p in written} == {max(1, usable_cores() // 2)}
    accs = sorted(json.loads(p.read_text())["test_acc"] for p in written)
    assert accs == pytest.approx(sorted(r.data.metrics["test_acc"] for r in children.values()))

    # the summary groups the jobs by variant: mean ± std over the two seeds of each
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["parent_run_id"] == parent.info.run_id
    rows = {r["group"]: r for r in summary["rows"]}
    assert set(rows) == {"model=fp", "model=xnor"}
    for v in ("fp", "xnor"):
        accs = [children[f"train-{v}-seed{s}"].data.metrics["test_acc"] for s in (0, 1)]
        assert rows[f"model={v}"]["seeds"] == [0, 1]
        assert rows[f"model={v}"]["test_acc_mean"] == pytest.approx(sum(accs) / 2, abs=1e-6)
        assert rows[f"model={v}"]["test_acc_std"] == pytest.approx(abs(accs[0] - accs[1]) / 2**0.5, abs=1e-6)
