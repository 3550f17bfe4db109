"""The benchmark harness on tiny shapes: rows carry every field, bad configs are named."""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from conftest import compose_config
from xnornet.benchmark.layer import bench_shape, resolve_isas, with_limits
from xnornet.benchmark.shapes import LayerShape
from xnornet.benchmark.suite import run_bench
from xnornet.errors import XnornetError
from xnornet.kernels import available_isas


def test_bench_rows_are_consistent_with_the_work_they_time():
    shape = LayerShape("t", "conv", batch=2, c_in=20, c_out=7, k=3, h=5, w=6, stride=1, padding=1)
    isas = resolve_isas("all", available_isas())
    rows = bench_shape(shape, isas, [1, 2], 0, 2, 0, lambda: None)
    assert len(rows) == 2 * len(isas)
    binary_ops = 2 * (2 * 5 * 6) * 7 * (20 * 3 * 3)  # counted by hand: 2·M·N·K, padding 1 keeps 5×6
    for r in rows:
        assert (r["M"], r["N"], r["K"]) == (60, 7, 180)
        for key in ("torch_conv_ms", "torch_matmul_ms", "binary_layer_ms", "bgemm_ms"):
            assert r[key] > 0
        # the layer's rate and its GEMM's rate describe the same work at their own times (within
        # the rounding of microsecond times to 0.1 µs and rates to 0.1 Gop/s)
        assert r["gops"] * r["binary_layer_ms"] * 1e6 == pytest.approx(binary_ops, rel=0.1)
        assert r["bgemm_gops"] * r["bgemm_ms"] * 1e6 == pytest.approx(binary_ops, rel=0.1)
        assert (r["speedup_vs_conv"] > 1) == (r["torch_conv_ms"] > r["binary_layer_ms"])
        if r["threads"] == 1:
            assert r["thread_speedup"] == 1.0
        # a GEMM running exactly at the per-core limit times its threads is at 100%
        at_limit = with_limits(r, {r["isa"]: r["bgemm_gops"] * 1e9 / r["threads"]})
        assert at_limit["pct_of_limit"] == pytest.approx(100.0, abs=0.1)
        assert with_limits(r, {r["isa"]: 2 * r["bgemm_gops"] * 1e9 / r["threads"]})["pct_of_limit"] == (
            pytest.approx(50.0, abs=0.1)
        )


def test_generic_path_is_only_benchmarked_when_asked():
    assert "generic" not in resolve_isas("all", ["avx2", "scalar", "generic"])
    assert resolve_isas(["generic"], ["avx2", "scalar", "generic"]) == ["generic"]


@pytest.mark.parametrize(
    "override,match",
    [
        ({"isas": ["sse9"]}, "not available here"),
        ({"shapes": [{"name": "x", "kind": "deconv", "batch": 1, "c_in": 1, "c_out": 1}]}, "conv or linear"),
        ({"shapes": [{"name": "x", "kind": "conv", "batch": 0, "c_in": 1, "c_out": 1}]}, "positive"),
        ({"threads": [0]}, "positive integers"),
    ],
)
def test_bad_bench_config_is_one_named_error(override, match):
    cfg = compose_config([]).bench
    cfg = OmegaConf.merge(cfg, override)
    with pytest.raises(XnornetError, match=match):
        run_bench(cfg)
