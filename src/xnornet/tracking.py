"""MLflow and DVC metrics in one call, so every number a stage reports lands in both places.

MLflow 3 rejects its old file store, so the tracking URI is always explicit (a sqlite database
in the repo root by default) and the database and experiment are created before any run.

A stage opens its run after checking its inputs and before writing its first output: a store
that is down or an experiment that cannot be used then fails the stage in one line with nothing
written. Once the run is open, a store that stops answering costs one bounded wait, the outputs
are still written, and one line lists what MLflow lacks (xnornet.tracking_outage,
docs/reliability.md).
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import mlflow
from mlflow.entities import Dataset, DatasetInput, InputTag, Metric, Param
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from omegaconf import DictConfig, OmegaConf

from xnornet.errors import XnornetError
from xnornet.files import content_digest, write_metrics
from xnornet.run_owner import end_orphaned_runs, owner_tags
from xnornet.store_lock import store_lock
from xnornet.sweep_job import swept_values
from xnornet.tracking_http import bound_requests, unreachable
from xnornet.tracking_outage import Outage


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


def tracking_client(uri: str) -> MlflowClient:
    """A client whose requests to a server give up within xnornet.tracking_http's bounds."""
    bound_requests()
    return MlflowClient(uri)


def ensure_experiment(cfg: DictConfig) -> str:
    """Create the store and the experiment (artifacts beside the database) if missing, tagged as
    model training so that `mlflow ui` opens on its runs. Safe for runs started at once on a fresh
    store: a sqlite store is created under its lock (xnornet.store_lock), and on a server the
    runs that lose the race to create the experiment use the winner's."""
    uri, name = tracking_uri(cfg), cfg.logger.experiment
    if not isinstance(name, str) or not name.strip():
        raise XnornetError(f"logger.experiment={name!r}: expected a non-empty experiment name")
    try:
        with store_lock(uri):
            client = tracking_client(uri)  # MlflowClient opens (and creates) a sqlite store at once
            exp = client.get_experiment_by_name(name) or _create_experiment(cfg, client, name)
            if exp.lifecycle_stage == "deleted":
                raise XnornetError(
                    f"logger.experiment={name}: this experiment is deleted in {uri}; expected a live one "
                    f"(restore it: mlflow experiments restore --experiment-id {exp.experiment_id})"
                )
            for key, value in EXPERIMENT_KIND.items():
                if exp.tags.get(key) != value:
                    client.set_experiment_tag(exp.experiment_id, key, value)
    except MlflowException as e:
        raise unreachable(uri, e) from e
    return exp.experiment_id


def _create_experiment(cfg: DictConfig, client: MlflowClient, name: str):
    # a local store keeps artifacts beside it; a tracking server stores them where it is told
    local = tracking_uri(cfg).startswith(("sqlite:", "file:"))
    artifacts = Path(cfg.logger.artifact_dir).resolve().as_uri() if local else None
    try:
        client.create_experiment(name, artifact_location=artifacts, tags=EXPERIMENT_KIND)
    except MlflowException as e:
        if e.error_code == "INVALID_PARAMETER_VALUE":
            raise XnornetError(f"logger.experiment={name}: {e.message}") from e
        if e.error_code != "RESOURCE_ALREADY_EXISTS":  # else another run created it first
            raise
    return client.get_experiment_by_name(name)


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


def open_run(cfg: DictConfig, run_name: str, stage: str, resume_id: str | None = None,
             datasets: list[tuple[str, Path, str]] = (), **tags: str) -> StageRun:  # fmt: skip
    """The stage's MLflow run, opened before it writes any output: the store reachable, the
    experiment usable, runs of dead processes ended (xnornet.run_owner), and a new run with every
    config value as a param and ``datasets`` as inputs, or ``resume_id``'s run continued if the
    store still has it. A store that fails here fails the stage, in one line naming the URI."""
    uri = tracking_uri(cfg)
    exp_id = ensure_experiment(cfg)
    client = tracking_client(uri)
    try:
        end_orphaned_runs(client, exp_id, keep=resume_id)
        run_id = _reopen(client, resume_id) if resume_id else None
        new = run_id is None
        if new:
            from mlflow.tracking.context.registry import resolve_tags  # source, user: as `mlflow.start_run`

            all_tags = resolve_tags({**run_tags(stage, **tags), **owner_tags()})
            run_id = client.create_run(exp_id, run_name=run_name, tags=all_tags).info.run_id
            params = [Param(k, v) for k, v in flat_params(cfg).items()]
            for i in range(0, len(params), 100):  # MLflow takes at most 100 params a batch
                client.log_batch(run_id, params=params[i : i + 100])
            if datasets:
                log_datasets(client, run_id, list(datasets))
    except MlflowException as e:
        raise unreachable(uri, e) from e
    mlflow.set_tracking_uri(uri)
    return StageRun(client, run_id, new, Outage(uri, run_id))


def _reopen(client: MlflowClient, run_id: str) -> str | None:
    """``run_id`` marked RUNNING again and owned by this process; None if the store lacks it."""
    try:
        run = client.get_run(run_id)
    except MlflowException as e:
        if e.error_code == "RESOURCE_DOES_NOT_EXIST":
            return None
        raise
    for key, value in owner_tags().items():
        client.set_tag(run_id, key, value)
    if run.info.status != "RUNNING":
        client.update_run(run_id, status="RUNNING")
    return run_id


@dataclass(frozen=True)
class StageRun:
    """An open run. Its calls go through ``outage``: after the store stops answering they are
    listed, not retried, and the stage goes on."""

    client: MlflowClient
    run_id: str
    new: bool
    outage: Outage

    def record(self, metrics: dict, json_path: Path | None = None, artifacts: list[Path] = ()) -> None:
        """Write the metrics JSON (if the stage has one), then log its numbers and artifacts."""
        if json_path is not None:
            write_metrics(json_path, metrics)
            artifacts = [json_path, *artifacts]
        now = int(time.time() * 1000)
        batch = [Metric(k, float(v), now, 0) for k, v in metrics.items()
                 if isinstance(v, int | float) and not isinstance(v, bool)]  # fmt: skip
        if batch:
            names = [m.key for m in batch]
            self.outage.call("metrics", names, lambda: self.client.log_batch(self.run_id, metrics=batch))
        for path in artifacts:
            log = functools.partial(self.client.log_artifact, self.run_id, str(path))
            self.outage.call("artifacts", [Path(path).name], log)

    def end(self, status: str = "FINISHED") -> None:
        self.outage.call("other", ["its end status"], lambda: self.client.set_terminated(self.run_id, status))


@contextlib.contextmanager
def ending(run: StageRun | None, stage: str) -> Iterator[None]:
    """End ``run`` FINISHED when the block completes, FAILED (and the error re-raised) when it does
    not; then say in one line what did not reach the store, if anything. No run: nothing to do."""
    if run is None:
        yield
        return
    try:
        yield
    except BaseException:
        run.end("FAILED")
        raise
    run.end()
    run.outage.warn(stage)


@contextlib.contextmanager
def stage_run(cfg: DictConfig, run_name: str, stage: str, **tags: str) -> Iterator[StageRun]:
    """The MLflow run of a stage without a Lightning logger (fetch, pack, evaluate, bench, report),
    opened on entry (so enter it before writing any output) and ended on exit, as ``ending``."""
    run = open_run(cfg, run_name, stage, **tags)
    with ending(run, stage):
        yield run
