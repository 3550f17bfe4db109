"""LeNet-5's accuracy–speed–size table: every runtime in its own process, on the same images.

A briefly trained float LeNet-5 and packed BWN/XNOR networks on the MNIST-like fixture digits:
each row's accuracy is that runtime's own, and the exported and engine rows of one variant agree.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import few_adam_steps, synthetic_digits
from xnornet import cli
from xnornet.errors import ERROR_LOG_ENV
from xnornet.nn.binarization import Binarization
from xnornet.nn.models import LeNet5
from xnornet.packed.file_format import save_packed
from xnornet.packed.inference_form import pack_network
from xnornet.peers.lenet_table import OPENVINO_RUNTIMES, RUNTIMES, lenet_table, markdown

pytest.importorskip("openvino", reason="the peers extra is not installed")

VARIANTS = {"fp": Binarization(), "bwn": Binarization(weights=True),
            "xnor": Binarization(weights=True, inputs=True)}  # fmt: skip
MEAN, STD = 0.1307, 0.3081  # conf/data/mnist.yaml's normalization


def normalized(images: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(((images.astype(np.float32) / 255.0 - MEAN) / STD)[:, None])


def trained(variant: str, steps: int = 30) -> torch.nn.Module:
    torch.manual_seed(0)
    net = LeNet5(VARIANTS[variant])
    images, labels = synthetic_digits(400, 0)
    return few_adam_steps(
        net, torch.from_numpy(normalized(images)), torch.from_numpy(labels), steps, batch=50
    )


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> Path:
    """models/fp.ckpt (a Lightning-style checkpoint), models/{bwn,xnor}.packed."""
    folder = tmp_path_factory.mktemp("models")
    fp = trained("fp")
    torch.save({"state_dict": {f"net.{k}": v for k, v in fp.state_dict().items()}}, folder / "fp.ckpt")
    for variant in ("bwn", "xnor"):
        save_packed(
            pack_network(trained(variant), (1, 28, 28), variant=variant), folder / f"{variant}.packed"
        )
    return folder


@pytest.mark.slow
def test_every_runtime_gets_a_row_with_its_own_accuracy(models):
    images, labels = synthetic_digits(150, 1)
    x = normalized(images)
    fp = LeNet5(VARIANTS["fp"])
    state = torch.load(models / "fp.ckpt", weights_only=True)["state_dict"]
    fp.load_state_dict({k.removeprefix("net."): v for k, v in state.items()})
    packed = {v: models / f"{v}.packed" for v in ("bwn", "xnor")}
    rows, skipped = lenet_table(fp.eval(), packed, (x, labels), x[:20], [1], 64, 0, 2)
    assert skipped == {}
    by = {r["runtime"]: r for r in rows}
    assert list(by) == list(RUNTIMES)
    with torch.no_grad():
        torch_acc = float((fp(torch.from_numpy(x)).argmax(1).numpy() == labels).mean())
    assert by["torch_fp32"]["test_acc"] == pytest.approx(torch_acc, abs=1e-6)
    assert by["openvino_fp32"]["test_acc"] == pytest.approx(torch_acc, abs=0.01)
    for variant in ("bwn", "xnor"):  # the export predicts what the engine predicts
        assert by[f"openvino_{variant}"]["test_acc"] == pytest.approx(
            by[f"engine_{variant}"]["test_acc"], abs=1e-3
        )
        assert by[f"engine_{variant}"]["file_bytes"] == (models / f"{variant}.packed").stat().st_size
    assert by["engine_xnor"]["file_bytes"] < by["torch_fp32"]["file_bytes"] / 10
    assert all(r["ms_per_batch"] > 0 and r["batch"] == 64 and r["threads"] == 1 for r in rows)
    assert "| openvino_int8 |" in markdown(rows)


@pytest.mark.slow
def test_peers_lenet_stage_writes_metrics_and_plot(models, tiny_data_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(ERROR_LOG_ENV, str(tmp_path / "error.log"))
    monkeypatch.setattr(sys, "argv", list(sys.argv))
    monkeypatch.chdir(tmp_path)
    args = ["peers_lenet", f"paths.data_dir={tiny_data_dir}", f"paths.models_dir={models}",
            f"paths.metrics_dir={tmp_path}/metrics", f"paths.plots_dir={tmp_path}/plots",
            f"logger.tracking_uri=sqlite:///{tmp_path}/mlflow.db", f"logger.artifact_dir={tmp_path}/art",
            "data.val_size=100", "peers_lenet.threads=[1]", "peers_lenet.batch_size=50",
            "peers_lenet.warmup=0", "peers_lenet.repeats=2", "peers_lenet.calibration_images=20"]  # fmt: skip
    cli.main(args)
    metrics = json.loads((tmp_path / "metrics" / "peers_lenet.json").read_text())
    assert metrics["test_images"] == 100 and metrics["batch_size"] == 50 and metrics["threads"] == [1]
    assert {r["runtime"] for r in metrics["rows"]} == set(RUNTIMES)
    for runtime in RUNTIMES:
        assert 0 <= metrics[f"{runtime}/test_acc"] <= 1 and metrics[f"{runtime}/ms_per_batch_t1"] > 0
    assert (
        (tmp_path / "plots" / "peers_lenet.csv")
        .read_text()
        .startswith("runtime,threads,batch,layout,test_acc")
    )
    assert "| engine_xnor |" in capsys.readouterr().out


@pytest.mark.slow
def test_without_the_peers_the_openvino_rows_are_skipped_with_the_reason(models, monkeypatch):
    """The table's own check (not a mock of OpenVINO): a missing package leaves its rows out."""
    import xnornet.peers.lenet_table as table

    monkeypatch.setattr(table, "PEER_PACKAGES", ("xnornet_no_such_package",))
    images, labels = synthetic_digits(20, 1)
    x = normalized(images)
    fp = LeNet5(VARIANTS["fp"]).eval()
    rows, skipped = lenet_table(fp, {"xnor": models / "xnor.packed"}, (x, labels), x[:4], [1], 20, 0, 1)
    assert set(skipped) == set(OPENVINO_RUNTIMES)
    assert all("xnornet_no_such_package is not importable" in why for why in skipped.values())
    assert [r["runtime"] for r in rows] == ["torch_fp32", "engine_xnor"]
