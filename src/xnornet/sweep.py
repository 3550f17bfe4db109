"""One MLflow parent run per Hydra multirun sweep, so the sweep's jobs are grouped under it.

Registered as a Hydra callback in conf/config.yaml. Before any job starts it creates the store,
the experiment (as every run does, under the store's lock: xnornet.store_lock) and the parent run,
and hands the run's id to every job through the environment (launchers start their workers after
this).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from xnornet.machine import usable_cores
from xnornet.run_owner import owner_tags
from xnornet.sweep_job import JOB_THREADS_ENV, SWEPT_KEYS_ENV
from xnornet.sweep_summary import summarize_sweep
from xnornet.tracking import PARENT_RUN_ENV, ensure_experiment, git_commit, tracking_client, tracking_uri


def swept_keys(overrides: list[str], sweeper_params: dict | None = None) -> list[str]:
    """The keys a sweep varies: those given a list (``seed=0,1,2``) or a sweep function, on the
    command line or in ``hydra.sweeper.params`` (an experiment config's sweep)."""
    keys = []
    params = [f"{k}={v}" for k, v in (sweeper_params or {}).items()]
    for override in [*params, *overrides]:
        key, _, value = override.lstrip("+~").partition("=")
        if "," in value or value.startswith(("range(", "choice(", "glob(", "interval(")):
            keys.append(key)
    return list(dict.fromkeys(keys))


def parallel_jobs(launcher: DictConfig) -> int:
    """How many jobs a launcher runs at once: joblib's ``n_jobs`` (-1 = every core, -2 = all but
    one, as joblib counts), 1 for the launchers that run one job per process or host.

    Examples:
        >>> from omegaconf import OmegaConf
        >>> joblib = "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher"
        >>> parallel_jobs(OmegaConf.create({"_target_": joblib, "n_jobs": 2}))
        2
        >>> parallel_jobs(OmegaConf.create({"_target_": joblib, "n_jobs": -1})) >= 1
        True
        >>> parallel_jobs(OmegaConf.create({"_target_": "hydra._internal.BasicLauncher"}))
        1
    """
    if "joblib" not in str(launcher.get("_target_", "")).lower():
        return 1
    n = int(launcher.get("n_jobs") or 1)
    return n if n > 0 else max(1, usable_cores() + 1 + n)


class SweepParentRun(Callback):
    def on_multirun_start(self, config: DictConfig, **kwargs) -> None:
        experiment = ensure_experiment(config)
        self.client = tracking_client(tracking_uri(config))
        overrides = " ".join(config.hydra.overrides.task)
        run = self.client.create_run(
            experiment, run_name=f"sweep-{time.strftime('%Y%m%d-%H%M%S')}",
            tags={"git_commit": git_commit(), "dvc_stage": "sweep", "sweep_overrides": overrides,
                  "sweep_dir": str(config.hydra.sweep.dir), **owner_tags()},
        )  # fmt: skip
        self.run_id = run.info.run_id
        os.environ[PARENT_RUN_ENV] = self.run_id
        params = config.hydra.sweeper.get("params")
        params = OmegaConf.to_container(params, resolve=True) if params else {}
        os.environ[SWEPT_KEYS_ENV] = ",".join(swept_keys(config.hydra.overrides.task, params))
        parallel = parallel_jobs(config.hydra.launcher)
        if parallel > 1:  # each job's torch gets its share of the cores, unless train.threads says
            os.environ[JOB_THREADS_ENV] = str(max(1, usable_cores() // parallel))

    def on_multirun_end(self, config: DictConfig, **kwargs) -> None:
        if not getattr(self, "run_id", None):
            return
        path = config.get("sweep_summary")
        rows = summarize_sweep(tracking_uri(config), self.run_id, Path(path) if path else None)
        for row in rows:  # the parent run shows each group's mean over seeds
            for metric in ("test_acc_mean", "test_acc_std"):
                if metric in row:
                    name = f"{metric}.{row['group'].replace('=', '-')}"
                    self.client.log_metric(self.run_id, name, row[metric])
        if path:
            self.client.log_artifact(self.run_id, str(path))
            print(f"sweep summary ({len(rows)} rows): {path}")
        self.client.set_terminated(self.run_id)
        os.environ.pop(PARENT_RUN_ENV, None)
        os.environ.pop(SWEPT_KEYS_ENV, None)
        os.environ.pop(JOB_THREADS_ENV, None)
