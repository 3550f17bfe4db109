"""The peers of the speed stages: each peer's correctness check runs and rejects a wrong answer,
the worker-process protocol returns well-formed rows, and without OpenVINO the stages say so in
one line and still produce the rest."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
import yaml
from omegaconf import OmegaConf

from conftest import REPO
from xnornet.benchmark.checks import INT8_REL_TOL, PeerCheckError, check_close
from xnornet.benchmark.layer_data import binary_reference, float_reference, layer_data
from xnornet.benchmark.peers import LAYER_PEERS, NETWORK_PEERS, PROTOCOL, run_peers
from xnornet.benchmark.shapes import LayerShape
from xnornet.peers import unavailable_reason

needs_openvino = pytest.mark.skipif(
    unavailable_reason() is not None, reason="the peers extra is not installed"
)
needs_nncf = pytest.mark.skipif(
    unavailable_reason(("openvino", "nncf")) is not None, reason="the peers extra is not installed"
)

CONV = LayerShape("tiny", "conv", batch=2, c_in=20, c_out=9, k=3, h=6, w=6, stride=1, padding=1)
LINEAR = LayerShape("fc", "linear", batch=4, c_in=100, c_out=12)


def one_sign_flipped(w: np.ndarray) -> np.ndarray:
    wrong = w.copy()
    wrong.flat[0] = -wrong.flat[0]
    return wrong


def one_filter_flipped(w: np.ndarray) -> np.ndarray:
    """One output filter negated: what 8-bit rounding cannot hide behind its 5 % tolerance."""
    wrong = w.copy()
    wrong[0] = -wrong[0]
    return wrong


def openvino_check(runtime: str, shape: LayerShape, x, w_model, ref) -> dict:
    """Build the peer from ``w_model``, run it in every layout, and check it against ``ref``."""
    from xnornet.benchmark.openvino_layers import layout_variants
    from xnornet.benchmark.peer_layers import check_openvino, openvino_model, openvino_output

    checks = {}
    for layout, (model, xin) in layout_variants(openvino_model(runtime, shape, x, w_model), x).items():
        _, y, precisions = openvino_output(model, xin, layout, 1, ref.shape)
        checks[layout] = check_openvino(runtime, f"{runtime} {layout}", y, ref, precisions)
    return checks


@needs_openvino
@pytest.mark.parametrize("shape", [CONV, LINEAR], ids=["conv", "linear"])
@pytest.mark.parametrize(
    "runtime,wrong",
    [("openvino_binary", one_sign_flipped), ("openvino_fp32", one_sign_flipped),
     ("openvino_int8", one_filter_flipped)],
)  # fmt: skip
def test_each_openvino_peer_passes_its_check_and_a_wrong_weight_fails_it(runtime, wrong, shape):
    x, w = layer_data(shape, seed=0)
    ref = (binary_reference if runtime == "openvino_binary" else float_reference)(shape, x, w)
    for check in openvino_check(runtime, shape, x, w, ref).values():
        assert check["check"] == "exact" if runtime == "openvino_binary" else check["rel_l2_error"] >= 0
    with pytest.raises(PeerCheckError, match="differ from the exact reference|relative L2 error"):
        openvino_check(runtime, shape, x, wrong(w), ref)


@needs_openvino
def test_an_int8_row_must_have_run_int8_kernels():
    """A float model passed off as the int8 peer is rejected even though its numbers are closer."""
    from xnornet.benchmark.openvino_layers import float_layer_model, layout_variants
    from xnornet.benchmark.peer_layers import check_openvino, openvino_output

    x, w = layer_data(CONV, seed=0)
    ref = float_reference(CONV, x, w)
    model, xin = layout_variants(float_layer_model(CONV, w), x)["nchw"]
    _, y, precisions = openvino_output(model, xin, "nchw", 1, ref.shape)
    with pytest.raises(PeerCheckError, match="expected an int8 convolution"):
        check_openvino("openvino_int8", "fp32 as int8", y, ref, precisions)


@pytest.mark.parametrize("shape", [CONV, LINEAR], ids=["conv", "linear"])
def test_torch_int8_passes_its_check_and_a_wrong_filter_fails_it(shape):
    from xnornet.benchmark.torch_int8 import torch_int8_layer

    x, w = layer_data(shape, seed=0)
    ref = float_reference(shape, x, w)
    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        _, output = torch_int8_layer(shape, x, w, ref)
        assert check_close("torch_int8", output(), ref, INT8_REL_TOL)["rel_l2_error"] < INT8_REL_TOL
        _, wrong_output = torch_int8_layer(shape, x, one_filter_flipped(w), ref)
        with pytest.raises(PeerCheckError, match="relative L2 error"):
            check_close("torch_int8", wrong_output(), ref, INT8_REL_TOL)
    finally:
        torch.set_num_threads(saved)


@pytest.mark.slow
def test_the_worker_protocol_returns_checked_rows_for_every_peer_and_thread_count():
    """Each library in its own process: one row per shape × runtime × thread count, timed, with
    the check it passed; OpenVINO rows only where OpenVINO is installed."""
    job = {"task": "layer", "shapes": [vars(CONV), vars(LINEAR)], "threads": [1, 2], "repeats": 2, "seed": 0}
    rows, status = run_peers(job, LAYER_PEERS, "bench")
    timed = [r for r in LAYER_PEERS if status[r] == "timed"]
    assert "torch_int8" in timed and set(status) == set(LAYER_PEERS)
    assert len(rows) == 2 * 2 * len(timed)
    for r in rows:
        assert r["runtime"] in timed and r["shape"] in ("tiny", "fc") and r["threads"] in (1, 2)
        assert r["ms"] > 0 and r["check"] and r["layout"] in ("nchw", "nhwc", "nc")
        if r["runtime"] == "openvino_binary":
            assert r["check"] == "exact" and r["max_abs_error"] == 0.0
        else:
            assert 0 <= r["rel_l2_error"] <= INT8_REL_TOL
    json.dumps(rows)  # plain JSON all the way


def test_an_error_in_the_worker_fails_the_bench_in_one_line():
    """A shape no peer can build gives the worker's error, not a row."""
    from xnornet.errors import XnornetError

    bad = {**vars(CONV), "c_in": 0}
    job = {"task": "layer", "shapes": [bad], "threads": [1], "repeats": 1, "seed": 0}
    with pytest.raises(XnornetError, match="torch peer: .*sizes must be positive"):
        run_peers(job, ("torch_int8",), "bench")


HIDE_OPENVINO = """
import importlib.abc, sys

class NoOpenVINO(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] in ("openvino", "nncf"):
            raise ImportError(f"No module named {name!r}")

sys.meta_path.insert(0, NoOpenVINO())
"""


@pytest.mark.slow
def test_without_openvino_the_layer_bench_says_so_in_one_line_and_keeps_the_rest(tmp_path):
    """The worker runs in a process where openvino cannot be imported (sitecustomize on its path):
    one line names the skipped rows and why, once for two shapes (the peers run shape by shape,
    right after ours); torch int8 and ours are still there for each."""
    hide = tmp_path / "hide"
    hide.mkdir()
    (hide / "sitecustomize.py").write_text(HIDE_OPENVINO)
    config = yaml.safe_load((REPO / "conf" / "bench" / "default.yaml").read_text())
    second = {**vars(CONV), "name": "tiny2", "c_out": 5}
    config.update(shapes=[vars(CONV), second], warmup=0, repeats=2, peak_iters=100_000, threads=[1],
                  isas=["scalar"], former=[])  # fmt: skip
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(config))
    env = {**os.environ, "PYTHONPATH": f"{hide}:{REPO / 'src'}"}
    cmd = [sys.executable, "-m", "xnornet.benchmark", "--config", str(tmp_path / "tiny.yaml"),
           "--out", str(tmp_path / "out")]  # fmt: skip
    out = subprocess.run(cmd, capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr[-2000:]
    lines = [line for line in out.stdout.splitlines() if "skipped" in line]
    assert len(lines) == 1 and "openvino_fp32, openvino_int8, openvino_binary" in lines[0], out.stdout
    assert "openvino is not importable" in lines[0]
    summary = json.loads((tmp_path / "out" / "bench.json").read_text())
    assert summary["protocol"] == PROTOCOL
    assert summary["peers"]["status"]["torch_int8"] == "timed"
    assert summary["peers"]["status"]["openvino_int8"].startswith("skipped: openvino is not importable")
    for name in ("tiny", "tiny2"):
        row = summary["shapes"][name]
        assert row["speedup_vs_torch_int8"] > 0 and row["torch_int8_ms"] > 0
        assert not any(k.startswith(("openvino", "speedup_vs_openvino")) for k in row)


@pytest.mark.slow
@needs_nncf
def test_the_network_peers_run_checked_in_their_worker(tmp_path, capsys):
    """bench_network on a LeNet-5 at 28×28: every OpenVINO peer row checked and timed, the ratios
    in the rows, the checks and the protocol in the summary."""
    from xnornet.benchmark.network_suite import run_bench_network

    cfg = OmegaConf.create({
        "networks": {"lenet5": {"_target_": "xnornet.nn.models.LeNet5", "num_classes": 10, "in_channels": 1}},
        "input_shape": [1, 28, 28], "batches": [1, 2], "threads": [1], "isas": "simd", "warmup": 0,
        "repeats": 1, "calibration": {"batches": 2, "batch_size": 4}, "agreement_inputs": 4, "seed": 0,
    })  # fmt: skip
    rows, summary = run_bench_network(cfg)
    assert summary["protocol"] == PROTOCOL
    assert summary["peers"]["status"] == dict.fromkeys(NETWORK_PEERS, "timed")
    checks = summary["networks"]["lenet5"]["peer_checks"]
    assert (
        checks["openvino_binary"]["rel_l2_error"] <= 1e-3 and checks["openvino_fp32"]["rel_l2_error"] <= 1e-3
    )
    assert checks["openvino_int8"]["rel_l2_error"] <= INT8_REL_TOL
    lenet = summary["networks"]["lenet5"]  # int8 layers by default, against torch's own int8 modules
    assert lenet["float_layers"] == "int8" and lenet["agreement"] == 1.0
    first_path = [r for r in rows if r["isa"] == summary["machine"]["best_isa"]]
    assert len(first_path) == 2  # batches 1 and 2: the fp32-layer engine timed in the same rounds
    for r in first_path:
        assert r["fp32_layers_ms_per_image"] > 0
        assert r["int8_layers_speedup"] == pytest.approx(
            r["fp32_layers_ms_per_image"] / r["engine_ms_per_image"], rel=0.02, abs=0.01
        )
        for peer in NETWORK_PEERS:
            assert r[f"{peer}_ms_per_image"] > 0
            ratio = r[f"{peer}_ms_per_image"] / r["engine_ms_per_image"]
            assert r[f"speedup_vs_{peer}"] == pytest.approx(ratio, rel=0.02, abs=0.01)
