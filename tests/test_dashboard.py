"""The report run is the dashboard of a commit: after any `dvc repro`, whatever DVC skipped, its
run carries the headline figures as metrics and every metrics JSON and plot PNG as artifacts,
tagged with the commit and the machine that measured them (xnornet.reporting.dashboard)."""

from __future__ import annotations

import json
import subprocess

from mlflow.tracking import MlflowClient

from conftest import REPO, compose_config
from xnornet.reporting.dashboard import flat_headline
from xnornet.stages.report import main as report_stage

PEERS_NONE = {"rows": [], "skipped": "every peer (not installed)", "batch_size": 256, "test_images": 10000,
              "protocol": "none"}  # fmt: skip


def artifact_paths(client: MlflowClient, run_id: str, path: str | None = None) -> set[str]:
    found = set()
    for item in client.list_artifacts(run_id, path):
        found |= artifact_paths(client, run_id, item.path) if item.is_dir else {item.path}
    return found


def committed_copy(repo) -> str:
    """The metrics/ and plots/ committed in this repository (not the working tree, which a running
    stage may be rewriting), committed again in a git repository of their own."""
    archive = subprocess.run(["git", "-C", str(REPO), "archive", "HEAD", "metrics", "plots"],
                             check=True, capture_output=True).stdout  # fmt: skip
    subprocess.run(["tar", "-x", "-C", str(repo)], input=archive, check=True)
    peers = repo / "metrics" / "peers_lenet.json"
    if not peers.exists():  # the peers stage's output, absent from checkouts made before it ran
        peers.write_text(json.dumps(PEERS_NONE))
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t"]
    for args in (["init", "-q"], ["add", "metrics", "plots"], ["commit", "-qm", "measured"]):
        subprocess.run([*git, *args], check=True)
    return subprocess.run(
        [*git, "rev-parse", "HEAD"], check=True, capture_output=True, text=True
    ).stdout.strip()


def test_the_report_run_carries_every_figure_of_the_metrics_it_read(tmp_path, monkeypatch):
    commit = committed_copy(tmp_path)
    metrics, plots = tmp_path / "metrics", tmp_path / "plots"
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    overrides = [f"paths.metrics_dir={metrics}", f"paths.plots_dir={plots}", f"logger.tracking_uri={uri}"]
    monkeypatch.chdir(tmp_path)
    report_stage(compose_config([*overrides, f"logger.artifact_dir={tmp_path}/mlartifacts"]))

    client = MlflowClient(uri)
    (run,) = client.search_runs([client.get_experiment_by_name("xnornet").experiment_id])
    assert run.info.status == "FINISHED"
    headline = flat_headline(metrics)
    assert {"xnor.acc", "xnor.faster", "resnet18.faster", "layer.faster_min"} <= set(headline)
    assert run.data.metrics == headline

    logged = artifact_paths(client, run.info.run_id)
    jsons = {p.relative_to(tmp_path).as_posix() for p in metrics.rglob("*.json")}
    assert {"metrics/train_xnor.json", "metrics/paper/train_xnor.json", "metrics/sweeps/seeds.json"} <= jsons
    assert jsons <= logged
    assert {p.relative_to(tmp_path).as_posix() for p in plots.rglob("*.png")} <= logged
    assert {"results.md", "train_curves.png"} <= logged
    copy = client.download_artifacts(run.info.run_id, "metrics", str(tmp_path / "downloaded"))
    for name in jsons:  # each artifact is the file itself
        assert (tmp_path / "downloaded" / name).read_bytes() == (tmp_path / name).read_bytes(), copy

    tags = run.data.tags
    machine = json.loads((metrics / "machine.json").read_text())
    assert tags["dvc_stage"] == "report" and tags["git_commit"] == commit
    assert tags["metrics_commit"] == commit and tags["metrics_uncommitted"] == "false"
    assert tags["machine_cpu"] == machine["cpu"] and tags["machine_cores"] == str(machine["cores"])
    assert tags["machine_kernel_isa"] == machine["kernel_isa"]
