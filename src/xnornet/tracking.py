"""MLflow and DVC metrics in one call, so every number a stage reports lands in both places.

MLflow 3 rejects its old file store, so the tracking URI is always explicit (a sqlite database
in the repo root by default) and the database and experiment are created before any run.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import mlflow
from mlflow.entities import Dataset, DatasetInput, InputTag
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from omegaconf import DictConfig, OmegaConf

from xnornet.files import content_digest, write_metrics
from xnornet.stages import swept_values


def tracking_uri(cfg: DictConfig) -> str:
    """The configured URI, with a relative sqlite path made absolute (sweeps may change cwd)."""
    uri = cfg.logger.tracking_uri
    prefix = "sqlite:///"
    if uri.startswith(prefix) and not uri[len(prefix) :].startswith("/"):
        uri = prefix + str(Path(uri[len(prefix) :]).resolve())
    return uri


# MLflow 3's UI opens an experiment without this tag on its GenAI overview, not on its runs.
EXPERIMENT_KIND = {"mlflow.experimentKind": "custom_model_development"}
PARENT_RUN_ENV = "XNORNET_PARENT_RUN_ID"  # set by the sweep callback for every job of a sweep


def ensure_experiment(cfg: DictConfig) -> str:
    """Create the store and the experiment (artifacts beside the database) if missing, tagged as
    model training so that `mlflow ui` opens on its runs."""
    client = MlflowClient(tracking_uri(cfg))
    exp = client.get_experiment_by_name(cfg.logger.experiment)
    if exp is None:
        # a local store keeps artifacts beside it; a tracking server stores them where it is told
        local = tracking_uri(cfg).startswith(("sqlite:", "file:"))
        artifacts = Path(cfg.logger.artifact_dir).resolve().as_uri() if local else None
        return client.create_experiment(
            cfg.logger.experiment, artifact_location=artifacts, tags=EXPERIMENT_KIND
        )
    for key, value in EXPERIMENT_KIND.items():
        if exp.tags.get(key) != value:
            client.set_experiment_tag(exp.experiment_id, key, value)
    return exp.experiment_id


def log_datasets(client: MlflowClient, run_id: str, sources: list[tuple[str, Path, str]]) -> None:
    """Each (name, file or folder, context) as an MLflow dataset input: name, digest and source,
    so the UI's Dataset column says what a run trained and was tested on."""
    inputs = []
    for name, path, context in sources:
        dataset = Dataset(name=name, digest=content_digest(path)[:32], source_type="local",
                          source=str(Path(path).resolve()))  # fmt: skip
        inputs.append(DatasetInput(dataset, tags=[InputTag("mlflow.data.context", context)]))
    for attempt in range(5):
        try:
            client.log_inputs(run_id, datasets=inputs)
            return
        except MlflowException as e:
            # parallel jobs race to insert the same dataset row (sqlite UNIQUE constraint); the
            # row the winner wrote is there on the next try
            if "UNIQUE constraint failed" not in str(e) or attempt == 4:
                raise
            time.sleep(0.2 * (attempt + 1))


def git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True)
    except OSError:
        return "unknown"
    return out.stdout.strip() if out.returncode == 0 else "unknown"


def run_tags(stage: str, **extra: str) -> dict[str, str]:
    """Commit and stage of a run; inside a sweep, also its parent run (MLflow nests it there)."""
    tags = {"git_commit": git_commit(), "dvc_stage": stage, **extra}
    parent = os.environ.get(PARENT_RUN_ENV)
    if parent:
        tags.update({"mlflow.parentRunId": parent, "sweep_id": parent})
        tags["sweep_values"] = json.dumps(swept_values())  # what the sweep summary groups by
    return tags


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
