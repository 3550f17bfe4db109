"""MLflow and DVC metrics in one call, so every number a stage reports lands in both places.

MLflow 3 rejects its old file store, so the tracking URI is always explicit (a sqlite database
in the repo root by default) and the database and experiment are created before any run.
"""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import mlflow
from mlflow.tracking import MlflowClient
from omegaconf import DictConfig, OmegaConf

from xnornet.files import write_metrics


def tracking_uri(cfg: DictConfig) -> str:
    """The configured URI, with a relative sqlite path made absolute (sweeps may change cwd)."""
    uri = cfg.logger.tracking_uri
    prefix = "sqlite:///"
    if uri.startswith(prefix) and not uri[len(prefix) :].startswith("/"):
        uri = prefix + str(Path(uri[len(prefix) :]).resolve())
    return uri


def ensure_experiment(cfg: DictConfig) -> str:
    """Create the store and the experiment (artifacts beside the database) if missing."""
    client = MlflowClient(tracking_uri(cfg))
    exp = client.get_experiment_by_name(cfg.logger.experiment)
    if exp is not None:
        return exp.experiment_id
    artifacts = Path(cfg.logger.artifact_dir).resolve().as_uri()
    return client.create_experiment(cfg.logger.experiment, artifact_location=artifacts)


def git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True)
    except OSError:
        return "unknown"
    return out.stdout.strip() if out.returncode == 0 else "unknown"


def run_tags(stage: str, **extra: str) -> dict[str, str]:
    return {"git_commit": git_commit(), "dvc_stage": stage, **extra}


def flat_params(cfg: DictConfig) -> dict[str, str]:
    """Every leaf of the composed config as ``group.key`` → value (MLflow params are flat)."""
    flat: dict[str, str] = {}

    def walk(node, prefix: str) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                walk(v, f"{prefix}{k}.")
        else:
            flat[prefix[:-1]] = str(node)[:6000]

    walk(OmegaConf.to_container(cfg, resolve=True), "")
    return flat


def record(client: MlflowClient, run_id: str, metrics: dict, json_path: Path | None,
           artifacts: list[Path] = ()) -> None:  # fmt: skip
    """Write the metrics JSON (if the stage has one), log its numbers and artifacts to MLflow."""
    if json_path is not None:
        write_metrics(json_path, metrics)
        artifacts = [json_path, *artifacts]
    for key, value in metrics.items():
        if isinstance(value, int | float) and not isinstance(value, bool):
            client.log_metric(run_id, key, float(value))
    for path in artifacts:
        client.log_artifact(run_id, str(path))


def start_run(cfg: DictConfig, run_name: str, tags: dict[str, str]) -> tuple[MlflowClient, str]:
    """A plain MLflow run with every config value the stage read as a param."""
    uri = tracking_uri(cfg)
    exp_id = ensure_experiment(cfg)
    client = MlflowClient(uri)
    run = client.create_run(exp_id, run_name=run_name, tags=tags)
    for key, value in flat_params(cfg).items():
        client.log_param(run.info.run_id, key, value)
    mlflow.set_tracking_uri(uri)
    return client, run.info.run_id


@dataclass(frozen=True)
class StageRun:
    client: MlflowClient
    run_id: str

    def record(self, metrics: dict, json_path: Path | None = None, artifacts: list[Path] = ()) -> None:
        record(self.client, self.run_id, metrics, json_path, artifacts)


@contextlib.contextmanager
def stage_run(cfg: DictConfig, run_name: str, stage: str, **tags: str) -> Iterator[StageRun]:
    """The MLflow run of a stage without a Lightning logger (fetch, pack, evaluate, bench, report):
    FINISHED when the block completes, FAILED (and the error re-raised) when it does not."""
    client, run_id = start_run(cfg, run_name, run_tags(stage, **tags))
    try:
        yield StageRun(client, run_id)
    except BaseException:
        client.set_terminated(run_id, "FAILED")
        raise
    client.set_terminated(run_id)
