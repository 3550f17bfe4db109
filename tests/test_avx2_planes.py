"""The AVX2 GEMM on nibble planes (kernels/xn_avx2_planes.h) and what comes with it: K staged in
chunks, the weights' planes made once and kept by the columns a layer holds, a B operand of the
wrong layout refused before it reaches C, the former AVX2 kernel still selectable (and exact) for
the side-by-side bench, and a forced path checked by the self-test before it runs."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import signed_floats
from xnornet.benchmark.layer import resolve_isas
from xnornet.kernels import (
    BinaryConv2dLayer,
    BinaryConvWeights,
    BinaryLinearLayer,
    PackedColumns,
    _xnor,
    available_isas,
    binary_conv2d,
    gemm_packed,
    kernel_isa,
    pack_bits,
    pack_nhwc,
    xnor_gemm,
)
from xnornet.kernels import isa as isa_module
from xnornet.kernels.reference import binary_conv2d_ref, xnor_gemm_ref

AVX2 = 2  # the C side's code (kernels/xn_dispatch.h)
CHUNK = _xnor.PLANES_CHUNK_WORDS
needs_avx2 = pytest.mark.skipif("avx2" not in available_isas(), reason="this CPU has no AVX2")


def nibble_planes_ref(panels: np.ndarray) -> np.ndarray:
    low = np.uint64(0x0F0F0F0F0F0F0F0F)
    return np.concatenate([panels & low, (panels >> np.uint64(4)) & low], axis=-1)


# K of exactly one chunk, one bit and one word more, several chunks with a short last one, and
# VGG's fc6 (25088 bits, 392 words); N: more panels than a group (8) shares a chunk, a short last
# panel of more than 8 columns; M: a short last row block.
@pytest.mark.parametrize("k", [64 * CHUNK, 64 * CHUNK + 1, 64 * (CHUNK + 1), 64 * 2 * CHUNK + 63, 25088])
@pytest.mark.parametrize("threads", [1, 2])
def test_gemm_over_several_k_chunks_equals_reference(isa, k, threads):
    m, n = 8, 16 * 9 + 13
    rng = np.random.default_rng(k + threads)
    a, b = pack_bits(signed_floats(rng, (m, k))), pack_bits(signed_floats(rng, (n, k)))
    np.testing.assert_array_equal(xnor_gemm(a, b, k, threads=threads), xnor_gemm_ref(a, b, k))


def test_planes_are_the_nibbles_of_the_panels():
    rng = np.random.default_rng(0)
    b = pack_bits(signed_floats(rng, (21, 300)))
    columns = PackedColumns.from_bits(b, 300)
    planes = columns.operand(AVX2)
    assert planes.shape == (2, 5, 32)
    np.testing.assert_array_equal(planes, nibble_planes_ref(columns.panels))
    assert columns.operand(AVX2) is planes  # converted once, then kept
    assert columns.operand(3) is columns.panels and columns.operand(1) is columns.panels


@needs_avx2
def test_layers_keep_their_planes_across_calls(monkeypatch):
    """Built on the AVX2 path, a layer converts its weights once, at construction; its calls
    reuse those planes (a forward pass allocates nothing) and stay exact."""
    monkeypatch.setenv("XNORNET_ISA", "avx2")
    rng = np.random.default_rng(1)
    weight = signed_floats(rng, (40, 24, 3, 3))
    weights = BinaryConvWeights.from_float(weight, 1, 1)
    assert not weights.columns._operands
    layer = BinaryConv2dLayer(weights, threads=1)
    planes = weights.columns._operands[32]
    for batch in (2, 1, 3):
        x = signed_floats(rng, (batch, 6, 5, 24))
        np.testing.assert_array_equal(layer(x), binary_conv2d_ref(x, weight, 1, 1).astype(np.int32))
        assert weights.columns.operand(AVX2) is planes and len(weights.columns._operands) == 1
    w = signed_floats(rng, (19, 130))
    linear = BinaryLinearLayer(PackedColumns.from_bits(pack_bits(w), 130), threads=1)
    planes = linear.columns._operands[32]
    x = signed_floats(rng, (5, 130))
    for _ in range(2):
        np.testing.assert_array_equal(linear(x), xnor_gemm_ref(pack_bits(x), pack_bits(w), 130))
        assert linear.columns.operand(AVX2) is planes


@needs_avx2
def test_a_b_operand_of_the_wrong_layout_is_refused():
    """The C GEMM trusts its B operand's size; the Cython entry points check it against what the
    path reads, so a caller that skips PackedColumns.operand gets a ValueError, not a bad read."""
    rng = np.random.default_rng(2)
    a, b = pack_bits(signed_floats(rng, (7, 200))), pack_bits(signed_floats(rng, (20, 200)))
    columns = PackedColumns.from_bits(b, 200)
    out = np.empty((7, 20), np.int32)
    for wrong, match in [
        (columns.panels, "nibble planes"),  # raw panels on the planes path
        (columns.operand(AVX2)[:1], r"\(2, 4, 32\)"),  # too few panels for N = 20
        (np.ascontiguousarray(columns.operand(AVX2)[:, :3]), "of 4 words"),  # too few words
    ]:
        with pytest.raises(ValueError, match=match):
            _xnor.bgemm_i32(AVX2, a, wrong, 20, 200, None, out, 1)
    with pytest.raises(ValueError, match="this path reads"):
        _xnor.bgemm_i32(3, a, columns.operand(AVX2), 20, 200, None, out, 1)  # planes on AVX-512
    with pytest.raises(ValueError, match="nibble planes"):
        _xnor.LayerCall(AVX2, None, None, None, a.shape, 0, None, None, columns.panels, 20, 200, None,
                        None, None, out, 1)  # fmt: skip
    with pytest.raises(ValueError, match="need shape"):
        _xnor.nibble_planes(columns.panels, np.empty((2, 4, 16), np.uint64))
    _xnor.bgemm_i32(AVX2, a, columns.operand(AVX2), 20, 200, None, out, 1)
    np.testing.assert_array_equal(out, xnor_gemm_ref(a, b, 200))


@needs_avx2
@pytest.mark.parametrize("threads", [1, 2])
def test_former_avx2_kernel_stays_selectable_and_exact(monkeypatch, threads):
    """avx2-lookup: the GEMM before nibble planes, kept for the bench's side-by-side timing."""
    monkeypatch.setenv("XNORNET_ISA", "avx2-lookup")
    assert kernel_isa() == "avx2-lookup"
    assert "avx2-lookup" not in available_isas()  # never a default or an "all" path
    assert resolve_isas(["avx2", "avx2-lookup"], available_isas()) == ["avx2", "avx2-lookup"]
    rng = np.random.default_rng(3)
    for m, n, k in [(7, 13, 65), (13, 50, 1153), (5, 33, 64 * CHUNK + 5)]:
        a, b = pack_bits(signed_floats(rng, (m, k))), pack_bits(signed_floats(rng, (n, k)))
        np.testing.assert_array_equal(xnor_gemm(a, b, k, threads=threads), xnor_gemm_ref(a, b, k))
    x, weight = signed_floats(rng, (2, 7, 7, 64)), signed_floats(rng, (19, 64, 3, 3))
    weights = BinaryConvWeights.from_float(weight, 1, 1)
    expected = binary_conv2d_ref(x, weight, 1, 1).astype(np.int32)
    np.testing.assert_array_equal(BinaryConv2dLayer(weights, threads=threads)(x), expected)
    np.testing.assert_array_equal(binary_conv2d(pack_nhwc(x), weights, threads=threads), expected)
    assert not weights.columns._operands  # the former kernel reads the panels themselves
    alpha, x_bits = rng.random(19, dtype=np.float32), pack_bits(signed_floats(rng, (4, 576)))
    dots = xnor_gemm_ref(x_bits, weights.bits, 576)  # 3×3×64 bits: kernel rows fill whole words
    expected = dots.astype(np.float32) * alpha
    np.testing.assert_array_equal(gemm_packed(x_bits, weights.columns, alpha=alpha), expected)


def test_a_forced_path_runs_only_after_its_self_test(monkeypatch):
    """Only the best path is checked up front; a lower one forced with XNORNET_ISA is checked on
    first use, so forcing a path that fails it is refused rather than trusted."""
    isas = available_isas()
    if len(isas) < 3:
        pytest.skip("no path below the best one but generic")
    forced = isas[1]
    isa_module._code_for.cache_clear()  # an earlier test may have run the forced path already
    monkeypatch.setattr(isa_module, "_self_test", lambda code: code != isa_module.ISAS.index(forced))
    monkeypatch.setenv("XNORNET_ISA", forced)
    with pytest.raises(ValueError, match="failed its self-test"):
        kernel_isa()
    monkeypatch.setenv("XNORNET_ISA", "generic")  # the portable C path has nothing to mis-detect
    assert kernel_isa() == "generic"


@pytest.mark.skipif("avx2" not in available_isas(), reason="needs an AVX2 CPU")
def test_few_rows_on_streamed_weights_take_the_lookup_kernel_on_the_panels(monkeypatch):
    """PackedColumns.path: planes past STREAMING_BYTES (lowered here, so the test stays small)
    with fewer than STREAMING_ROWS rows run the former lookup kernel on the plain panels (half
    the bytes to stream), exactly."""

    rng = np.random.default_rng(3)
    k, n = 1000, 200
    b_f = rng.standard_normal((n, k), dtype=np.float32)
    cols = PackedColumns.from_bits(pack_bits(b_f), k)
    small = PackedColumns.from_bits(pack_bits(b_f[:20]), k)
    monkeypatch.setattr(isa_module, "STREAMING_BYTES", cols.panels.nbytes)  # cols' planes are past it
    assert 2 * small.panels.nbytes < isa_module.STREAMING_BYTES
    code, operand = cols.path(isa_module.AVX2_CODE, 1)
    assert code == isa_module.AVX2_LOOKUP_CODE and operand is cols.panels
    code, operand = cols.path(isa_module.AVX2_CODE, isa_module.STREAMING_ROWS)
    assert code == isa_module.AVX2_CODE and operand is cols.operand(isa_module.AVX2_CODE)
    assert small.path(isa_module.AVX2_CODE, 1)[0] == isa_module.AVX2_CODE
    avx512 = isa_module.ISAS.index("avx512-vpopcntdq")
    assert cols.path(avx512, 1) == (avx512, cols.panels)  # other paths: unchanged
    monkeypatch.setenv("XNORNET_ISA", "avx2")
    for m in (1, 3, isa_module.STREAMING_ROWS + 1):
        a_f = rng.standard_normal((m, k), dtype=np.float32)
        expected = xnor_gemm_ref(pack_bits(a_f), pack_bits(b_f), k)
        np.testing.assert_array_equal(gemm_packed(pack_bits(a_f), cols), expected)
        layer = BinaryLinearLayer(cols, threads=1)
        np.testing.assert_array_equal(layer(a_f), expected)
