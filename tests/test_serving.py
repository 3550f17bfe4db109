"""The packed network as a registered MLflow model: the pack stage logs and registers it, the alias
loads it, and a real `mlflow models serve` answers HTTP requests with the engine's predictions."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import urllib.request

import mlflow
import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from conftest import compose_config, tiny_overrides
from mlflow_server import MLFLOW, free_port, wait_until_answering
from xnornet.builders import build_net
from xnornet.model_registry import ALIAS, example_images, log_packed_model
from xnornet.packed.engine import load_engine
from xnornet.packed.file_format import save_packed
from xnornet.packed.inference_form import pack_network
from xnornet.stages.pack import main as pack_stage
from xnornet.stages.train import main as train_stage
from xnornet.tracking import stage_run

MODEL_URI = "models:/xnornet-lenet5-xnor@" + ALIAS


def test_the_logged_model_loads_by_its_alias_and_predicts_what_the_engine_predicts(tmp_path, tiny_data_dir):
    cfg = compose_config(tiny_overrides(tmp_path, "xnor"))
    packed = tmp_path / "xnor.packed"
    save_packed(pack_network(build_net(cfg).eval(), (1, 28, 28), variant="xnor"), packed)
    with stage_run(cfg, "pack-xnor", "pack@xnor") as run:
        name = log_packed_model(run, cfg, packed)
    assert name == "xnornet-lenet5-xnor"
    assert not run.outage.cause

    model = mlflow.pyfunc.load_model(MODEL_URI)
    x = example_images(cfg)
    out = model.predict(x)
    logits = load_engine(packed)(x)
    np.testing.assert_array_equal(out["logits"], logits)
    np.testing.assert_array_equal(out["label"], logits.argmax(1))
    assert model.metadata.get_input_schema().inputs[0].shape == (-1, 1, 28, 28)
    assert model.metadata.run_id == run.run_id  # a model of the pack run, not a run of its own
    client = MlflowClient(cfg.logger.tracking_uri)
    logged = client.get_logged_model(model.metadata.model_id)  # MLflow 3's "logged model"
    assert logged.source_run_id == run.run_id
    assert logged.experiment_id == client.get_run(run.run_id).info.experiment_id
    assert "MLFLOW_EXPERIMENT_ID" not in os.environ  # no active experiment exported to subprocesses

    with stage_run(cfg, "pack-xnor", "pack@xnor") as again:  # the next pack moves the alias
        log_packed_model(again, cfg, packed)
    assert int(client.get_model_version_by_alias(name, ALIAS).version) == 2


@pytest.mark.slow
def test_mlflow_models_serve_answers_with_the_engines_predictions(
    tmp_path, tiny_data_dir, cfg_train, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    cfg = cfg_train("xnor")
    train_stage(cfg)
    pack_stage(cfg)
    images = np.load(tiny_data_dir / "test.npz")["images"][:16]
    x = ((images.astype(np.float32) / 255 - 0.1307) / 0.3081)[:, None]  # as the datamodule normalizes
    expected = load_engine(tmp_path / "models" / "xnor.packed")(x)

    port = free_port()
    env = {**os.environ, "MLFLOW_TRACKING_URI": cfg.logger.tracking_uri}
    cmd = [
        MLFLOW,
        "models",
        "serve",
        "-m",
        MODEL_URI,
        "--env-manager",
        "local",
        "-h",
        "127.0.0.1",
        "-p",
        str(port),
    ]
    with open(tmp_path / "serve.log", "wb") as log:
        server = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    try:
        wait_until_answering(server, f"http://127.0.0.1:{port}/ping", tmp_path / "serve.log", 120.0)
        body = json.dumps({"inputs": x.tolist()}).encode()
        request = urllib.request.Request(f"http://127.0.0.1:{port}/invocations", body,
                                         {"Content-Type": "application/json"})  # fmt: skip
        with urllib.request.urlopen(request, timeout=60) as answer:
            predictions = json.load(answer)["predictions"]
    finally:
        os.killpg(server.pid, signal.SIGTERM)  # the server's own process group (it forks workers)
        server.wait(timeout=30)
    assert predictions["label"] == expected.argmax(1).tolist()
    np.testing.assert_allclose(np.array(predictions["logits"], np.float32), expected, rtol=0, atol=1e-6)
