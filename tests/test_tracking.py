"""Where runs go: the local sqlite store by default, a tracking server when MLFLOW_TRACKING_URI says."""

from __future__ import annotations

from mlflow.tracking import MlflowClient

from conftest import compose_config
from xnornet.tracking import EXPERIMENT_KIND, ensure_experiment, tracking_uri


def test_mlflow_tracking_uri_moves_every_stage(monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert compose_config([]).logger.tracking_uri == "sqlite:///mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://tracking-host:5000")
    assert tracking_uri(compose_config([])) == "http://tracking-host:5000"


def test_a_local_store_keeps_artifacts_beside_it_and_opens_on_runs(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    cfg = compose_config(
        [f"logger.tracking_uri=sqlite:///{tmp_path}/m.db", f"logger.artifact_dir={tmp_path}/art"]
    )
    exp = MlflowClient(tracking_uri(cfg)).get_experiment(ensure_experiment(cfg))
    assert exp.artifact_location == (tmp_path / "art").as_uri()
    assert all(exp.tags.get(k) == v for k, v in EXPERIMENT_KIND.items())
