"""The layer objects (kernels.layers) and the GEMM's edge tiles, bit for bit against the numpy
reference on every ISA path here and 1 and 2 threads: the fused pack → im2col → GEMM call, its
workspaces reused across calls of different shapes and after a refused call, short row blocks
(M % MR) and short last panels (N % 16, at most 8 columns or more)."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import signed_floats
from xnornet.kernels import (
    BinaryConv2dLayer,
    BinaryConvWeights,
    BinaryLinearLayer,
    PackedColumns,
    _xnor,
    binary_conv2d,
    pack_bits,
    pack_nhwc,
    xnor_gemm,
)
from xnornet.kernels.ops import affine_sign_pack
from xnornet.kernels.reference import (
    affine_sign_pack_ref,
    binary_conv2d_ref,
    pack_bits_ref,
    xnor_gemm_ref,
)


def transform(dots, alpha, bias=None, row_scale=None, residual=None, relu=False):
    """The epilogue's float32 operations in its order: ((dot·α)·row_scale + bias) + residual."""
    y = dots.astype(np.float32) * alpha
    if row_scale is not None:
        y = y * row_scale
    if bias is not None:
        y = y + bias
    if residual is not None:
        y = y + residual
    return np.maximum(y, np.float32(0)) if relu else y


@pytest.mark.parametrize("k", [1, 63, 64, 65, 500, 1153])
@pytest.mark.parametrize("m", [1, 5, 6, 7, 13])
@pytest.mark.parametrize("n", [1, 8, 9, 24, 50])
def test_gemm_edge_tiles_equal_reference(isa, k, m, n):
    rng = np.random.default_rng(k + 10 * m + 1000 * n)
    a, b = pack_bits(signed_floats(rng, (m, k))), pack_bits(signed_floats(rng, (n, k)))
    np.testing.assert_array_equal(xnor_gemm(a, b, k, threads=1), xnor_gemm_ref(a, b, k))


@pytest.mark.parametrize("m", [1, 7, 13, 40])
@pytest.mark.parametrize("threads", [2, 3, 16])
def test_gemm_split_over_rows_and_panels_equals_reference(isa, m, threads):
    """Few row blocks, many panels: the threads also split N (xn_panel_groups), here into uneven
    groups of a 19-panel N with a short last panel; every tile must land where one thread puts it."""
    k, n = 2049, 300
    rng = np.random.default_rng(m + threads)
    a, b = pack_bits(signed_floats(rng, (m, k))), pack_bits(signed_floats(rng, (n, k)))
    np.testing.assert_array_equal(xnor_gemm(a, b, k, threads=threads), xnor_gemm_ref(a, b, k))


CONV_CASES = [
    # (B, H, W, C, Cout, k, stride, padding)
    (2, 12, 12, 20, 50, 5, 1, 0),  # LeNet-5 conv2: unaligned segments, a 2-column last panel
    (1, 8, 8, 64, 19, 3, 1, 1),  # word-aligned segments (copied), border segments
    (2, 9, 7, 65, 17, 3, 2, 2),  # stride 2, padding 2, odd C
    (3, 6, 5, 1, 9, 1, 1, 0),  # 1×1 kernel, one channel
    (1, 5, 5, 128, 40, 3, 1, 1),
    (4, 14, 14, 32, 24, 3, 1, 1),  # large enough for 2 threads
    (1, 7, 7, 512, 512, 3, 1, 1),  # ResNet-18's 7×7 at batch 1: 9 row blocks, N split across threads
    (2, 10, 11, 3, 5, 3, 3, 1),  # stride 3: window-table rows that no output row reads
    (1, 4, 3, 7, 6, 4, 1, 3),  # even kernel, padding wider than the image: whole zero segments
    (1, 3, 3, 7300, 3, 3, 1, 1),  # 1029-word rows: the explicit im2col (xn_conv_implicit)
    # C a multiple of 64: rows read in place in the zero-padded input (xn_conv_in_place)
    (3, 10, 9, 64, 64, 3, 1, 1),  # ResNet-18's K = 576, N = 64, odd batch
    (3, 11, 10, 64, 64, 3, 2, 1),  # stride 2: an input column and row no window reads
    (1, 9, 8, 64, 63, 3, 1, 1),  # N = 63 beside it
    (2, 8, 8, 63, 64, 3, 1, 1),  # C = 63 (K = 567) beside it: the window table
    (2, 5, 6, 128, 17, 3, 1, 2),  # two words a pixel, padding 2
    (1, 4, 3, 64, 6, 4, 1, 3),  # even kernel, padding wider than the image: whole zero segments
]


def test_convs_run_the_implicit_im2col_but_for_1x1_kernels_and_very_long_rows():
    """The workspace is the zero-padded input for a k×k kernel whose pixels are whole words (the
    rows are read in place), the window table (one kw-window per output column of every input
    row, padding rows included) for other k×k kernels, the im2col matrix for 1×1 and over-long
    rows."""
    # (batch, h, c, kh, kw, stride, pad, ho, wo, row_words)
    assert _xnor.conv_workspace_shape(64, 12, 20, 5, 5, 1, 0, 8, 8, 4) == (64 * 12 * 8, 2)
    assert _xnor.conv_workspace_shape(2, 14, 256, 3, 3, 1, 1, 14, 14, 56) == (2 * 16, 16 * 4)
    assert _xnor.conv_workspace_shape(2, 56, 64, 3, 3, 2, 1, 28, 28, 56) == (2 * 58, 58)
    assert _xnor.conv_workspace_shape(2, 14, 63, 3, 3, 1, 1, 14, 14, 14) == (2 * 16 * 14, 3)
    assert _xnor.conv_workspace_shape(3, 6, 1, 1, 1, 1, 0, 6, 5, 1) == (3 * 6 * 5, 1)
    assert _xnor.conv_workspace_shape(1, 3, 7300, 3, 3, 1, 1, 3, 3, 343) == (9, 3 * 343)


@pytest.mark.parametrize("case", CONV_CASES)
@pytest.mark.parametrize("threads", [1, 2])
def test_conv_layer_equals_reference(isa, case, threads):
    b, h, w, c, cout, k, stride, padding = case
    rng = np.random.default_rng(sum(case))
    x, weight = signed_floats(rng, (b, h, w, c)), signed_floats(rng, (cout, c, k, k))
    weights = BinaryConvWeights.from_float(weight, stride, padding)
    dots = binary_conv2d_ref(x, weight, stride, padding)
    np.testing.assert_array_equal(BinaryConv2dLayer(weights, threads=threads)(x), dots.astype(np.int32))
    alpha, bias = rng.random(cout, dtype=np.float32), rng.standard_normal(cout).astype(np.float32)
    ho, wo = weights.output_hw(h, w)
    row_scale = rng.random((b, ho, wo), dtype=np.float32)
    residual = rng.standard_normal((b, ho, wo, cout)).astype(np.float32)
    layer = BinaryConv2dLayer(weights, alpha, bias, relu=True, threads=threads)
    out = layer(x, row_scale=row_scale, residual=residual)
    np.testing.assert_array_equal(out, transform(dots, alpha, bias, row_scale[..., None], residual, True))
    packed = layer.forward_packed(pack_nhwc(x), row_scale=row_scale, residual=residual)
    np.testing.assert_array_equal(packed, binary_conv2d(pack_nhwc(x), weights, alpha, bias, row_scale,
                                                        threads, True, residual))  # fmt: skip


@pytest.mark.parametrize("threads", [1, 2])
def test_conv_layer_packs_the_sign_of_its_affine(isa, threads):
    """sign(x·scale + shift) packed inside the layer: the BatchNorm/threshold the engine fuses."""
    rng = np.random.default_rng(7)
    x, weight = signed_floats(rng, (2, 10, 10, 48)), signed_floats(rng, (20, 48, 3, 3))
    scale, shift = rng.standard_normal(48).astype(np.float32), rng.standard_normal(48).astype(np.float32)
    weights = BinaryConvWeights.from_float(weight, 1, 1)
    alpha = rng.random(20, dtype=np.float32)
    out = BinaryConv2dLayer(weights, alpha, sign=(scale, shift), threads=threads)(x)
    bits = affine_sign_pack_ref(x.reshape(20, 10, 48), scale, shift)
    np.testing.assert_array_equal(bits, affine_sign_pack(x.reshape(20, 10, 48), scale, shift))
    expected = binary_conv2d(pack_nhwc(x * scale + shift), weights, alpha, threads=threads)
    np.testing.assert_array_equal(out, expected)


def test_workspaces_are_reused_across_shapes(isa):
    """Smaller, larger, then smaller batches and image sizes: each call exact, a call that fits
    the buffers already held allocates none, and none writes to a buffer the workspace dropped."""
    rng = np.random.default_rng(8)
    weight = signed_floats(rng, (12, 20, 3, 3))
    weights = BinaryConvWeights.from_float(weight, 1, 1)
    alpha = rng.random(12, dtype=np.float32)
    layer = BinaryConv2dLayer(weights, alpha, threads=2)
    held = []
    for shape in [(3, 9, 9), (1, 9, 9), (5, 11, 7), (2, 4, 4), (5, 11, 7), (3, 9, 9)]:
        x = signed_floats(rng, (shape[0], shape[1], shape[2], 20))
        out = layer(x)
        np.testing.assert_array_equal(out, transform(binary_conv2d_ref(x, weight, 1, 1), alpha))
        # the shape's prepared call was rebuilt after a larger one replaced the buffers: the
        # output is the workspace's current buffer, not one it has dropped
        assert np.shares_memory(out, layer.workspace.get("out", (1,), np.float32))
        held.append(layer.workspace.nbytes)
    assert held[0] == held[1] < held[2] == held[3] == held[4] == held[5]


def test_output_buffer_is_overwritten_and_may_be_the_residual(isa):
    rng = np.random.default_rng(9)
    weight = signed_floats(rng, (16, 16, 3, 3))
    weights = BinaryConvWeights.from_float(weight, 1, 1)
    alpha = rng.random(16, dtype=np.float32)
    layer = BinaryConv2dLayer(weights, alpha, threads=1)
    x = signed_floats(rng, (1, 6, 6, 16))
    first = layer(x).copy()
    again = layer(x, residual=layer(x))  # the residual is the buffer the call writes
    np.testing.assert_array_equal(again, first + first)


def test_layer_refuses_bad_input_and_stays_usable(isa):
    rng = np.random.default_rng(10)
    weight = signed_floats(rng, (8, 4, 3, 3))
    weights = BinaryConvWeights.from_float(weight, 1, 0)
    alpha = rng.random(8, dtype=np.float32)
    layer = BinaryConv2dLayer(weights, alpha, threads=2)
    x = signed_floats(rng, (2, 6, 6, 4))
    expected = transform(binary_conv2d_ref(x, weight, 1, 0), alpha)
    np.testing.assert_array_equal(layer(x), expected)
    bad = [
        (lambda: layer(x[..., :3].copy()), ValueError, "channels"),
        (lambda: layer(x.astype(np.float64)), TypeError, "float32"),
        (lambda: layer(x[:, ::2]), ValueError, "C-contiguous"),
        (lambda: layer(x[:, :2, :2].copy()), ValueError, "smaller than the kernel"),
        (lambda: layer(x, residual=np.zeros(3, np.float32)), ValueError, "residual must have"),
        (lambda: layer(x, row_scale=np.zeros(3, np.float32)), ValueError, "row_scale must have"),
        (lambda: layer.forward_packed(x), TypeError, "PackedActivations"),
    ]
    for call, error, match in bad:
        with pytest.raises(error, match=match):
            call()
        np.testing.assert_array_equal(layer(x), expected)
    with pytest.raises(ValueError, match="need alpha"):
        BinaryConv2dLayer(weights, relu=True)
    with pytest.raises(ValueError, match="alpha must have"):
        BinaryConv2dLayer(weights, alpha[:3])
    with pytest.raises(ValueError, match="sign scale must have"):
        BinaryConv2dLayer(weights, alpha, sign=(alpha, alpha))
    with pytest.raises(TypeError, match="BinaryConvWeights"):
        BinaryConv2dLayer(weights.columns, alpha)


@pytest.mark.parametrize("mnk", [(1, 1, 1), (7, 50, 500), (256, 20, 800), (5, 17, 65)])
@pytest.mark.parametrize("threads", [1, 2])
def test_linear_layer_equals_reference(isa, mnk, threads):
    m, n, k = mnk
    rng = np.random.default_rng(m + n + k)
    x, w = signed_floats(rng, (m, k)), signed_floats(rng, (n, k))
    columns = PackedColumns.from_bits(pack_bits_ref(w), k)
    dots = xnor_gemm_ref(pack_bits_ref(x), pack_bits_ref(w), k)
    np.testing.assert_array_equal(BinaryLinearLayer(columns, threads=threads)(x), dots)
    alpha, bias = rng.random(n, dtype=np.float32), rng.standard_normal(n).astype(np.float32)
    beta = rng.random(m, dtype=np.float32)
    layer = BinaryLinearLayer(columns, alpha, bias, relu=True, threads=threads)
    expected = transform(dots, alpha, bias, beta[:, None], relu=True)
    np.testing.assert_array_equal(layer(x, row_scale=beta), expected)
    np.testing.assert_array_equal(layer.forward_packed(pack_bits(x), row_scale=beta), expected)
    shift = rng.standard_normal(k).astype(np.float32)
    signed = BinaryLinearLayer(columns, alpha, threads=threads, sign=(np.ones(k, np.float32), shift))
    shifted = xnor_gemm_ref(pack_bits_ref(x + shift), pack_bits_ref(w), k)
    np.testing.assert_array_equal(signed(x), transform(shifted, alpha))
    with pytest.raises(ValueError, match="x must have shape"):
        layer(x[:, :-1].copy() if k > 1 else np.zeros((m, 2), np.float32))
    with pytest.raises(ValueError, match="padding bits"):
        layer.forward_packed(np.full_like(pack_bits(x), np.uint64(2**64 - 1)))
