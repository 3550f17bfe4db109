"""The real `dvc repro` in a temporary copy of the repo, on a tiny config and a local IDX mirror."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from conftest import make_idx_mirror
from tiny_repo import copy_repo, dvc, shrink_config

VARIANTS = ("fp", "bwn", "xnor")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def assert_mlflow_ui_lists(repo: Path, run_names: set[str], chromium: str) -> None:
    """Start the real `mlflow ui` on the pipeline's store and find every run through its REST API."""
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", f"sqlite:///{repo}/mlflow.db",
         "--host", "127.0.0.1", "--port", str(port)],
        cwd=repo, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                with urllib.request.urlopen(f"{base}/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise AssertionError("mlflow ui did not come up") from None
                time.sleep(0.5)
        query = urllib.parse.urlencode({"experiment_name": "xnornet"})
        with urllib.request.urlopen(f"{base}/api/2.0/mlflow/experiments/get-by-name?{query}") as r:
            exp_id = json.load(r)["experiment"]["experiment_id"]
        body = json.dumps({"experiment_ids": [exp_id], "max_results": 100}).encode()
        request = urllib.request.Request(f"{base}/api/2.0/mlflow/runs/search", data=body,
                                         headers={"Content-Type": "application/json"})  # fmt: skip
        with urllib.request.urlopen(request) as r:
            runs = json.load(r)["runs"]
        names = {run["info"]["run_name"] for run in runs}
        assert run_names <= names
        with urllib.request.urlopen(base + "/") as r:
            assert r.status == 200 and b"MLflow" in r.read()
        assert_the_browser_shows(base, exp_id, runs, repo, chromium)
    finally:
        server.terminate()
        server.wait(timeout=30)


CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--virtual-time-budget=30000", "--window-size=1500,5000"]  # fmt: skip


def rendered_dom(url: str, profile: Path, chromium: str) -> str:
    """The page as Debian's Chromium renders it, scripts run (the MLflow UI is a single-page app)."""
    out = subprocess.run([chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--dump-dom", url],
                         capture_output=True, text=True, timeout=120)  # fmt: skip
    return out.stdout


def assert_the_browser_shows(base: str, exp_id: str, runs: list[dict], repo: Path, chromium: str) -> None:
    """The runs table lists the pipeline's runs, and a training run's page shows its test accuracy."""
    runs_url = f"{base}/#/experiments/{exp_id}/runs"
    table = rendered_dom(f"{runs_url}?workflowType=machine_learning", repo / ".chr1", chromium)
    assert "matching runs" in table
    for name in ("train-xnor", "evaluate-xnor", "bench_network", "report"):
        assert f">{name}<" in table, name
    train = next(r for r in runs if r["info"]["run_name"] == "train-xnor")
    page = rendered_dom(
        f"{runs_url}/{train['info']['run_id']}?workflowType=machine_learning", repo / ".chr2", chromium
    )
    shown = [float(v) for v in re.findall(r">(\d+\.\d+)<", page)]
    acc = json.loads((repo / "metrics" / "train_xnor.json").read_text())["test_acc"]
    assert "test_acc" in page and any(abs(v - acc) < 1e-6 for v in shown), (acc, shown)
    assert "mnist/train.npz" in page  # the dataset input


@pytest.mark.slow
def test_dvc_repro_runs_every_stage_and_tracks_them(tmp_path, chromium):
    repo = tmp_path / "repo"
    mirror_dir = tmp_path / "mirror"
    mirror_dir.mkdir()
    copy_repo(repo)
    shrink_config(repo, make_idx_mirror(mirror_dir, n_train=400, n_test=100))
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)

    first = dvc(repo, "repro")
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    assert (repo / "dvc.lock").exists()
    for v in VARIANTS:
        m = json.loads((repo / "metrics" / f"train_{v}.json").read_text())
        assert m["epochs"] == 1 and 0.0 <= m["test_acc"] <= 1.0
        assert (repo / "models" / f"{v}.ckpt").stat().st_size > 0
        assert (repo / "plots" / f"train_{v}.csv").read_text().startswith("epoch,")

    for v in ("bwn", "xnor"):
        packed = json.loads((repo / "metrics" / f"packed_{v}.json").read_text())
        assert packed["agreement"] == 1.0 or packed["disagreements"] == packed["tie_disagreements"]
        assert packed["packed_bytes"] == (repo / "models" / f"{v}.packed").stat().st_size
        assert packed["compression"] > 15 and packed["binary_weight_compression"] > 31.9
        for key in ("test_acc", "engine_ms_per_batch", "torch_ms_per_batch", "speedup", "nin_speedup"):
            assert key in packed
        assert (repo / "reports" / f"memory_{v}.md").read_text().startswith("| layer |")

    bench = json.loads((repo / "metrics" / "bench.json").read_text())
    for name in ("tiny_conv", "tiny_fc"):
        row = bench["shapes"][name]
        for key in ("torch_conv_ms", "binary_layer_ms", "speedup_vs_conv", "gops", "pct_of_limit", "isa"):
            assert key in row
        assert row["threads"] == 1
    assert (repo / "plots" / "bench.png").read_bytes()[:4] == b"\x89PNG"

    results = (repo / "reports" / "results.md").read_text()
    assert "| xnor |" in results and "62.3" not in results  # tiny shapes, not ResNet's
    assert (repo / "reports" / "train_curves.png").read_bytes()[:4] == b"\x89PNG"

    client = MlflowClient(f"sqlite:///{repo}/mlflow.db")
    exp = client.get_experiment_by_name("xnornet")
    runs = {r.info.run_name: r for r in client.search_runs([exp.experiment_id])}
    network = json.loads((repo / "metrics" / "bench_network.json").read_text())["networks"]
    assert set(network) == {"resnet18"} and network["resnet18"]["agreement"] == 1.0
    assert network["resnet18"]["compression"] > 10 and network["resnet18"]["binary_weight_compression"] > 31.9
    assert "resnet18" in results
    headline = json.loads((repo / "metrics" / "headline.json").read_text())  # the DVC metrics
    train_xnor = json.loads((repo / "metrics" / "train_xnor.json").read_text())
    assert headline["xnor"]["acc"] == train_xnor["test_acc"]
    assert headline["resnet18"]["smaller"] == network["resnet18"]["compression"]
    assert sum(len(group) for group in headline.values()) <= 25

    expected = {"fetch", "bench", "bench_network", "report", *(f"train-{v}" for v in VARIANTS)}
    expected |= {f"{stage}-{v}" for stage in ("pack", "evaluate") for v in ("bwn", "xnor")}
    assert expected <= set(runs)
    for v in VARIANTS:
        assert runs[f"train-{v}"].data.metrics["test_acc"] == pytest.approx(
            json.loads((repo / "metrics" / f"train_{v}.json").read_text())["test_acc"]
        )

    assert_mlflow_ui_lists(repo, expected, chromium)

    machine = json.loads((repo / "metrics" / "machine.json").read_text())
    assert machine["kernel_isa"] == bench["machine"]["best_isa"] and machine["cores"] >= 1

    # same machine: only the always-run fingerprint stage runs, and nothing follows it
    second = dvc(repo, "repro")
    assert second.returncode == 0, second.stdout[-3000:]
    assert ran_stages(second.stdout) == ["machine"]

    # another machine (here: the kernel limited to its scalar path): exactly the speed stages rerun
    third = dvc(repo, "repro", env={"XNORNET_ISA": "scalar"})
    assert third.returncode == 0, third.stdout[-3000:] + third.stderr[-3000:]
    speed = {"evaluate@bwn", "evaluate@xnor", "peers_lenet", "bench", "bench_network"}
    assert set(ran_stages(third.stdout)) == {"machine", *speed, "report", "headline"}
    assert json.loads((repo / "metrics" / "machine.json").read_text())["kernel_isa"] == "scalar"


def ran_stages(dvc_stdout: str) -> list[str]:
    return re.findall(r"Running stage '([^']+)'", dvc_stdout)
