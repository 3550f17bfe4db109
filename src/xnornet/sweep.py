"""One MLflow parent run per Hydra multirun sweep, so the sweep's jobs are grouped under it.

Registered as a Hydra callback in conf/config.yaml. Before any job starts it creates the store,
the experiment and the parent run (parallel jobs then never race to create them), and hands the
run's id to every job through the environment (launchers start their workers after this).
"""

from __future__ import annotations

import os
import time

from hydra.experimental.callback import Callback
from mlflow.tracking import MlflowClient
from omegaconf import DictConfig

from xnornet.stages import SWEPT_KEYS_ENV
from xnornet.tracking import PARENT_RUN_ENV, ensure_experiment, git_commit, tracking_uri


def swept_keys(overrides: list[str]) -> list[str]:
    """The keys a sweep varies: those given a list (``seed=0,1,2``) or a sweep function."""
    keys = []
    for override in overrides:
        key, _, value = override.lstrip("+~").partition("=")
        if "," in value or value.startswith(("range(", "choice(", "glob(", "interval(")):
            keys.append(key)
    return keys


class SweepParentRun(Callback):
    def on_multirun_start(self, config: DictConfig, **kwargs) -> None:
        experiment = ensure_experiment(config)
        self.client = MlflowClient(tracking_uri(config))
        overrides = " ".join(config.hydra.overrides.task)
        run = self.client.create_run(
            experiment, run_name=f"sweep-{time.strftime('%Y%m%d-%H%M%S')}",
            tags={"git_commit": git_commit(), "dvc_stage": "sweep", "sweep_overrides": overrides,
                  "sweep_dir": str(config.hydra.sweep.dir)},
        )  # fmt: skip
        self.run_id = run.info.run_id
        os.environ[PARENT_RUN_ENV] = self.run_id
        os.environ[SWEPT_KEYS_ENV] = ",".join(swept_keys(config.hydra.overrides.task))

    def on_multirun_end(self, config: DictConfig, **kwargs) -> None:
        if getattr(self, "run_id", None):
            self.client.set_terminated(self.run_id)
            os.environ.pop(PARENT_RUN_ENV, None)
            os.environ.pop(SWEPT_KEYS_ENV, None)
