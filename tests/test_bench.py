"""The benchmark harness on tiny shapes: rows carry every field, bad configs are named."""

from __future__ import annotations

import csv
import json
import subprocess
import sys

import pytest
import yaml
from omegaconf import OmegaConf

from conftest import REPO, compose_config
from xnornet.benchmark.layer import bench_shape, resolve_isas, with_limits
from xnornet.benchmark.shapes import LayerShape
from xnornet.benchmark.suite import run_bench
from xnornet.errors import XnornetError
from xnornet.kernels import available_isas


def test_bench_rows_are_consistent_with_the_work_they_time():
    shape = LayerShape("t", "conv", batch=2, c_in=20, c_out=7, k=3, h=5, w=6, stride=1, padding=1)
    isas = resolve_isas("all", available_isas())
    rows = bench_shape(shape, isas, [1, 2], 0, 2, 0, lambda: None, limit_iters=10_000)
    assert len(rows) == 2 * len(isas)
    for isa in isas:  # one limit per path, from the same rounds, whatever the thread count
        limits = {r["limit_gops_per_core"] for r in rows if r["isa"] == isa}
        assert len(limits) == 1 and limits.pop() > 0, isa
    binary_ops = 2 * (2 * 5 * 6) * 7 * (20 * 3 * 3)  # counted by hand: 2·M·N·K, padding 1 keeps 5×6
    for r in rows:
        assert (r["M"], r["N"], r["K"]) == (60, 7, 180)
        for key in ("torch_conv_ms", "torch_matmul_ms", "binary_layer_ms", "bgemm_ms", "pack_ms"):
            assert r[key] > 0
        assert r["im2col_ms"] > 0  # a conv: its explicit im2col is one of the parts
        # the ratio was taken before the times were rounded to 1e-4 ms: within what that moves it
        parts = r["pack_ms"] + r["im2col_ms"] + r["bgemm_ms"]
        ratio = r["binary_layer_ms"] / parts
        slack = ratio * (5e-5 / r["binary_layer_ms"] + 1.5e-4 / parts) + 0.005
        assert abs(r["layer_over_parts"] - ratio) <= slack, r
        # the layer's rate and its GEMM's rate describe the same work at their own times, to within
        # the rounding of the stored figures (ms to 1e-4, Gop/s to 0.1)
        for rate, ms in (("gops", "binary_layer_ms"), ("bgemm_gops", "bgemm_ms")):
            rounding = 0.05 * r[ms] * 1e6 + r[rate] * 5e-5 * 1e6
            assert abs(r[rate] * r[ms] * 1e6 - binary_ops) <= rounding + 1e-6 * binary_ops, (rate, r)
        assert (r["speedup_vs_conv"] > 1) == (r["torch_conv_ms"] > r["binary_layer_ms"])
        if r["threads"] == 1:
            assert r["thread_speedup"] == 1.0 and r["torch_thread_speedup"] == 1.0
        # both protocols time the same calls: the cold one is a single call after a pause
        assert r["binary_layer_cold_ms"] > 0 and r["torch_conv_cold_ms"] > 0 and r["speedup_cold"] > 0


def test_percent_of_limit_counts_every_thread():
    """A GEMM at 200 Gop/s on 2 threads, against a per-core limit of 100 Gop/s, is at the limit;
    its layer, at 50 Gop/s, at a quarter of it."""
    row = {"isa": "avx2", "threads": 2, "gops": 50.0, "bgemm_gops": 200.0, "limit_gops_per_core": 100.0}
    assert with_limits(row) == {**row, "pct_of_limit": 100.0, "layer_pct_of_limit": 25.0}
    assert with_limits({**row, "threads": 4})["pct_of_limit"] == 50.0


def test_generic_path_is_only_benchmarked_when_asked():
    assert "generic" not in resolve_isas("all", ["avx2", "scalar", "generic"])
    assert resolve_isas(["generic"], ["avx2", "scalar", "generic"]) == ["generic"]
    every = ["avx512-vpopcntdq", "avx2", "scalar", "generic"]
    assert resolve_isas("simd", every) == ["avx512-vpopcntdq", "avx2"]
    assert resolve_isas("simd", ["scalar", "generic"]) == ["scalar"]  # none: the best path still runs


@pytest.mark.skipif("avx2" not in available_isas(), reason="the former AVX2 kernel needs an AVX2 CPU")
def test_a_former_kernel_is_timed_beside_its_successor():
    """bench.former: the lookup AVX2 GEMM timed in the same rounds as the nibble planes, and the
    summary's ratio is the two GEMM times of those rows."""
    config = {**OmegaConf.to_container(compose_config([]).bench), "threads": [1], "warmup": 0, "repeats": 2,
              "peak_iters": 100_000, "isas": ["avx2"], "former": ["avx2-lookup"], "peers": [],
              "shapes": [{"name": "t", "kind": "conv", "batch": 2, "c_in": 64, "c_out": 32, "k": 3,
                          "h": 6, "w": 6, "stride": 1, "padding": 1}]}  # fmt: skip
    rows, summary = run_bench(config)
    ms = {r["isa"]: r["bgemm_ms"] for r in rows}
    assert set(ms) == {"avx2", "avx2-lookup"}
    former = summary["former_kernels"]["avx2-lookup"]
    assert former["replaced_by"] == "avx2"
    assert former["gemm_speedup_1_thread"]["t"] == pytest.approx(ms["avx2-lookup"] / ms["avx2"], abs=0.01)
    # not asked, or its successor not measured: no comparison rows
    assert run_bench({**config, "former": []})[1]["former_kernels"] == {}
    assert "avx2-lookup" not in {r["isa"] for r in run_bench({**config, "isas": ["scalar"]})[0]}


@pytest.mark.parametrize(
    "override,match",
    [
        ({"isas": ["sse9"]}, "not available here"),
        ({"former": ["avx1-lookup"]}, "not a former kernel"),
        ({"shapes": [{"name": "x", "kind": "deconv", "batch": 1, "c_in": 1, "c_out": 1}]}, "conv or linear"),
        ({"shapes": [{"name": "x", "kind": "conv", "batch": 0, "c_in": 1, "c_out": 1}]}, "positive"),
        ({"threads": [0]}, "positive integers"),
        ({"peers": ["openvino_fp64"]}, "bench.peers: .*unknown"),
    ],
)
def test_bad_bench_config_is_one_named_error(override, match):
    cfg = compose_config([]).bench
    cfg = OmegaConf.merge(cfg, override)
    with pytest.raises(XnornetError, match=match):
        run_bench(cfg)


BARE_HOST = """
import importlib.abc, runpy, sys

class NoFramework(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] in ("hydra", "omegaconf", "mlflow", "dvc", "matplotlib"):
            raise ImportError(f"{name} is not installed on this host")

sys.meta_path.insert(0, NoFramework())
sys.argv = ["python -m xnornet.benchmark", *sys.argv[1:]]
runpy.run_module("xnornet.benchmark", run_name="__main__")
"""


@pytest.mark.slow
def test_the_bench_runs_on_a_bare_host_without_hydra_mlflow_or_dvc(tmp_path):
    """python -m xnornet.benchmark needs only torch, numpy, PyYAML and the kernel."""
    config = yaml.safe_load((REPO / "conf" / "bench" / "default.yaml").read_text())
    config.update(shapes=[{"name": "tiny", "kind": "conv", "batch": 2, "c_in": 20, "c_out": 9, "k": 3,
                           "h": 6, "w": 6, "stride": 1, "padding": 1}],
                  warmup=1, repeats=2, peak_iters=100_000, threads=[1, 2, 4, 8, 16, "all"])  # fmt: skip
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(config))
    out = subprocess.run([sys.executable, "-c", BARE_HOST, "--config", str(tmp_path / "tiny.yaml"),
                          "--out", str(tmp_path / "out")], capture_output=True, text=True)  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    summary = json.loads((tmp_path / "out" / "bench.json").read_text())
    row = summary["shapes"]["tiny"]
    assert row["threads"] == 1 and row["speedup_cold"] > 0 and row["speedup_vs_conv"] > 0
    # the peers ran in their own processes, and the protocol that says so is in the JSON
    assert summary["protocol"] and row["speedup_vs_torch_int8"] > 0
    cores = summary["machine"]["cores"]
    thread_counts = {r["threads"] for r in csv.DictReader(open(tmp_path / "out" / "bench.csv"))}
    assert thread_counts == {str(t) for t in (1, 2, 4, 8, 16, cores) if t <= cores}
