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


def test_bench_shape_rows_have_every_field():
    shape = LayerShape("t", "conv", batch=2, c_in=20, c_out=7, k=3, h=5, w=6, stride=1, padding=1)
    isas = resolve_isas("all", available_isas())
    rows = [
        with_limits(r, {i: 1e11 for i in isas})
        for r in bench_shape(shape, isas, [1, 2], 0, 2, 0, lambda: None)
    ]
    assert len(rows) == 2 * len(isas)
    for r in rows:
        assert r["M"] == 2 * 5 * 6 and r["N"] == 7 and r["K"] == 180
        for key in ("torch_conv_ms", "torch_matmul_ms", "binary_layer_ms", "bgemm_ms"):
            assert r[key] > 0
        assert r["speedup_vs_conv"] == pytest.approx(r["torch_conv_ms"] / r["binary_layer_ms"], rel=0.02)
        assert r["pct_of_limit"] == pytest.approx(r["bgemm_gops"] / r["threads"], rel=0.02, abs=0.1)


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
