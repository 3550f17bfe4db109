"""Optuna search over the learning rate and weight decay (`+hparams_search=mnist_optuna`): the
config composes to a maximizing Optuna sweeper, the train stage returns the objective, and a real
two-trial search on tiny data hands every trial's validation accuracy to Optuna."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest
import yaml
from hydra import compose, initialize_config_dir
from hydra.utils import get_class
from mlflow.tracking import MlflowClient

from conftest import CONF, REPO
from xnornet.stages.train import main as train_stage


def search_override() -> str:
    """``hparams_search=mnist_optuna`` where conf/config.yaml lists the group (``hparams_search:
    null``), ``+hparams_search=mnist_optuna`` (appended, as ``+experiment=``) where it does not."""
    defaults = yaml.safe_load((CONF / "config.yaml").read_text())["defaults"]
    listed = any(isinstance(d, dict) and "hparams_search" in d for d in defaults)
    return f"{'' if listed else '+'}hparams_search=mnist_optuna"


def search_config(*overrides: str):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(config_name="config", overrides=[search_override(), *overrides],
                       return_hydra_config=True)  # fmt: skip


def test_search_space_is_log_lr_and_weight_decay_maximized():
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra_plugins.hydra_optuna_sweeper._impl import create_optuna_distribution_from_override

    sweeper = search_config().hydra.sweeper
    assert get_class(sweeper._target_).__name__ == "OptunaSweeper"
    assert sweeper.direction == "maximize" and sweeper.storage is None and sweeper.sampler.seed == 0
    assert set(sweeper.params) == {"train.lr", "train.weight_decay"}
    parser = OverridesParser.create()
    for key, (low, high) in {"train.lr": (1e-4, 1e-1), "train.weight_decay": (1e-7, 1e-3)}.items():
        (override,) = parser.parse_overrides([f"{key}={sweeper.params[key]}"])
        dist = create_optuna_distribution_from_override(override)
        assert type(dist).__name__ == "LogUniformDistribution"
        assert (dist.low, dist.high) == pytest.approx((low, high))
    # the rest of the recipe is untouched, and the command line still wins over the search file
    assert search_config("hydra.sweeper.n_trials=2").hydra.sweeper.n_trials == 2


def test_train_stage_returns_validation_accuracy(tmp_path, tiny_data_dir, cfg_train):
    val_acc = train_stage(cfg_train("fp"))
    saved = json.loads((tmp_path / "metrics" / "train_fp.json").read_text())
    assert isinstance(val_acc, float) and val_acc == saved["val_acc"]


@pytest.mark.slow
def test_two_trial_search_reports_the_best_validation_accuracy(tmp_path, tiny_data_dir):
    db, sweep_dir = tmp_path / "mlflow.db", tmp_path / "multirun"
    cmd = [sys.executable, "-m", "xnornet", "train", "-m", search_override(),
           "hydra.sweeper.n_trials=2", "model=fp", "train.threads=1", "train.max_epochs=1",
           "train.batch_size=50", "train.progress_bar=false", "data.val_size=100",
           f"paths.data_dir={tiny_data_dir}", f"logger.tracking_uri=sqlite:///{db}",
           f"logger.artifact_dir={tmp_path}/mlartifacts", f"hydra.sweep.dir={sweep_dir}"]  # fmt: skip
    out = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]

    trials = [json.loads(p.read_text()) for p in sorted(sweep_dir.glob("*/metrics/train_fp.json"))]
    assert len(trials) == 2
    result = yaml.safe_load((sweep_dir / "optimization_results.yaml").read_text())
    assert result["best_value"] == pytest.approx(max(t["val_acc"] for t in trials))
    assert 1e-4 <= result["best_params"]["train.lr"] <= 1e-1
    assert 1e-7 <= result["best_params"]["train.weight_decay"] <= 1e-3

    # every trial is a child run of the sweep, logged with the values Optuna drew
    client = MlflowClient(f"sqlite:///{db}")
    runs = client.search_runs([client.get_experiment_by_name("xnornet").experiment_id])
    (parent,) = [r for r in runs if r.data.tags.get("dvc_stage") == "sweep"]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert len(children) == 2 and len({r.info.run_name for r in children}) == 2  # named apart
    drawn = {float(r.data.params["train.lr"]) for r in children}
    assert len(drawn) == 2 and all(1e-4 <= lr <= 1e-1 for lr in drawn)
    best = [float(r.data.params["train.lr"]) for r in children
            if r.data.metrics["val_acc"] == pytest.approx(result["best_value"])]  # fmt: skip
    assert any(math.isclose(lr, result["best_params"]["train.lr"]) for lr in best)
