"""The kernel, bit for bit, against the numpy reference and the float computation it replaces,
on every ISA path this machine has (forced with XNORNET_ISA), with 1 and 2 threads."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from conftest import signed_floats
from xnornet.kernels import (
    BinaryConvWeights,
    available_isas,
    binary_conv2d,
    im2col_bits,
    kernel_isa,
    pack_bits,
    pack_nhwc,
    popcount_peak,
    xnor_gemm,
)
from xnornet.kernels.ops import affine_sign_pack, bn_sign_pack, pool2d_nhwc
from xnornet.kernels.reference import (
    affine_sign_pack_ref,
    binary_conv2d_ref,
    bn_sign_pack_ref,
    im2col_bits_ref,
    pack_bits_ref,
    pool2d_nhwc_ref,
    sign_matmul_ref,
    xnor_gemm_ref,
)

ISAS = available_isas()


def test_forced_isa_is_reported(isa):
    assert kernel_isa() == isa


@pytest.mark.parametrize("k", [1, 63, 64, 65, 127, 500, 2304])
@pytest.mark.parametrize("mn", [(1, 1), (7, 17), (13, 33)])
@pytest.mark.parametrize("threads", [1, 2])
def test_xnor_gemm_equals_reference_and_float(isa, k, mn, threads):
    rng = np.random.default_rng(k * 100 + mn[0])
    a, b = signed_floats(rng, (mn[0], k)), signed_floats(rng, (mn[1], k))
    a_bits, b_bits = pack_bits(a, threads=threads), pack_bits(b, threads=threads)
    np.testing.assert_array_equal(a_bits, pack_bits_ref(a))
    np.testing.assert_array_equal(b_bits, pack_bits_ref(b))
    out = xnor_gemm(a_bits, b_bits, k, threads=threads)
    assert out.dtype == np.int32 and out.shape == mn
    np.testing.assert_array_equal(out, xnor_gemm_ref(a_bits, b_bits, k))
    np.testing.assert_array_equal(out, sign_matmul_ref(a, b).astype(np.int32))


def test_large_gemm_with_threads_matches_reference(isa):
    rng = np.random.default_rng(1)
    a, b = signed_floats(rng, (301, 1153)), signed_floats(rng, (71, 1153))
    out = xnor_gemm(pack_bits(a), pack_bits(b), 1153, threads=2)
    np.testing.assert_array_equal(out, sign_matmul_ref(a, b).astype(np.int32))


def test_pack_bits_keeps_leading_axes(isa):
    x = signed_floats(np.random.default_rng(2), (2, 3, 130))
    bits = pack_bits(x)
    assert bits.shape == (2, 3, 3) and bits.dtype == np.uint64
    np.testing.assert_array_equal(bits, pack_bits_ref(x))
    assert (bits[..., -1] >> np.uint64(2)).max() == 0  # padding bits are 0


CONV_CASES = [
    # (B, H, W, C, Cout, k, stride, padding)
    (2, 12, 12, 20, 50, 5, 1, 0),  # LeNet-5 conv2
    (1, 8, 8, 192, 19, 3, 1, 1),
    (2, 7, 9, 3, 5, 3, 2, 1),
    (1, 5, 6, 65, 17, 3, 1, 2),
    (3, 6, 6, 1, 4, 1, 1, 0),
    (1, 9, 7, 64, 33, 5, 2, 2),
    (1, 4, 4, 7, 3, 3, 3, 1),
]


@pytest.mark.parametrize("case", CONV_CASES)
@pytest.mark.parametrize("threads", [1, 2])
def test_binary_conv2d_equals_reference_and_torch(isa, case, threads):
    b, h, w, c, cout, k, stride, padding = case
    rng = np.random.default_rng(sum(case))
    x = signed_floats(rng, (b, h, w, c))
    weight = signed_floats(rng, (cout, c, k, k))
    packed = BinaryConvWeights.from_float(weight, stride, padding)
    out = binary_conv2d(pack_nhwc(x, threads), packed, threads=threads)
    ref = binary_conv2d_ref(x, weight, stride, padding)
    np.testing.assert_array_equal(out, ref.astype(np.int32))
    signs = lambda a: torch.from_numpy(np.where(a < 0, -1.0, 1.0))  # noqa: E731
    expected = F.conv2d(signs(x).permute(0, 3, 1, 2), signs(weight), stride=stride, padding=padding)
    np.testing.assert_array_equal(out, expected.permute(0, 2, 3, 1).numpy().astype(np.int32))


@pytest.mark.parametrize("case", [*CONV_CASES, (4, 16, 16, 65, 2, 3, 1, 1)])  # last: 2 threads
@pytest.mark.parametrize("threads", [1, 2])
def test_im2col_bits_equals_reference(isa, case, threads):
    b, h, w, c, cout, k, stride, padding = case
    rng = np.random.default_rng(sum(case))
    x = signed_floats(rng, (b, h, w, c))
    packed = BinaryConvWeights.from_float(signed_floats(rng, (cout, c, k, k)), stride, padding)
    cols = im2col_bits(pack_nhwc(x, threads), packed, threads)
    np.testing.assert_array_equal(cols, im2col_bits_ref(x, (k, k), stride, padding))


def test_binary_conv2d_fused_output_transform(isa):
    rng = np.random.default_rng(3)
    x, weight = signed_floats(rng, (2, 8, 8, 20)), signed_floats(rng, (10, 20, 3, 3))
    packed = BinaryConvWeights.from_float(weight, 1, 1)
    alpha = rng.random(10, dtype=np.float32)
    bias = rng.standard_normal(10).astype(np.float32)
    scale = rng.random((2, 8, 8), dtype=np.float32)
    out = binary_conv2d(pack_nhwc(x), packed, alpha, bias, scale)
    dots = binary_conv2d_ref(x, weight, 1, 1).astype(np.float32)
    np.testing.assert_allclose(out, dots * alpha * scale[..., None] + bias, rtol=1e-6, atol=1e-5)


@pytest.mark.parametrize("threads", [1, 2])
def test_binary_conv2d_adds_a_residual_before_the_relu_exactly(isa, threads):
    """The epilogue's order of float32 operations, ((dot·α)·K + bias) + residual, then the ReLU,
    is the one numpy computes here, so the fused ResNet shortcut is bit-exact."""
    rng = np.random.default_rng(5)
    x, weight = signed_floats(rng, (3, 9, 7, 65)), signed_floats(rng, (17, 65, 3, 3))
    packed = BinaryConvWeights.from_float(weight, 1, 1)
    alpha, bias = rng.random(17, dtype=np.float32), rng.standard_normal(17).astype(np.float32)
    scale = rng.random((3, 9, 7), dtype=np.float32)
    residual = rng.standard_normal((3, 9, 7, 17)).astype(np.float32)
    out = binary_conv2d(pack_nhwc(x), packed, alpha, bias, scale, threads, relu=True, residual=residual)
    dots = binary_conv2d_ref(x, weight, 1, 1).astype(np.float32)
    expected = np.maximum(dots * alpha * scale[..., None] + bias + residual, np.float32(0))
    np.testing.assert_array_equal(out, expected)
    with pytest.raises(ValueError, match="residual must have"):
        binary_conv2d(pack_nhwc(x), packed, alpha, bias, residual=residual[:2])


def test_weights_round_trip_through_their_bits():
    weight = signed_floats(np.random.default_rng(4), (6, 20, 5, 5))
    a = BinaryConvWeights.from_float(weight, 1, 2)
    b = BinaryConvWeights.from_bits(a.bits.copy(), 20, (5, 5), 1, 2)
    np.testing.assert_array_equal(a.columns.panels, b.columns.panels)
    np.testing.assert_array_equal(b.offset_sums, np.where(weight < 0, -1, 1).sum(axis=1))


def test_popcount_peak_is_measured(isa):
    assert popcount_peak(iters=200_000, repeats=1) > 1e9


# ---------------------------------------------------------------------------- bad input


def bits(m, w):
    return np.zeros((m, w), dtype=np.uint64)


@pytest.mark.parametrize(
    "call,error,match",
    [
        (lambda: pack_bits(np.zeros((2, 3))), TypeError, "x must have dtype float32"),
        (lambda: pack_bits([1.0, -1.0]), TypeError, "x must be a numpy array"),
        (lambda: pack_bits(np.zeros((4, 6), np.float32)[:, ::2]), ValueError, "C-contiguous"),
        (lambda: pack_bits(np.zeros((2, 0), np.float32)), ValueError, "non-empty last axis"),
        (lambda: xnor_gemm(bits(2, 2), bits(3, 1), 64), ValueError, "words per row"),
        (lambda: xnor_gemm(bits(2, 2), bits(3, 2), 129), ValueError, "k=129 must be between"),
        (lambda: xnor_gemm(bits(2, 2), bits(3, 2), 64), ValueError, "needs 1 words"),
        (lambda: xnor_gemm(bits(2, 2), bits(3, 2), -5), ValueError, "k=-5"),
        (lambda: xnor_gemm(bits(2, 2), bits(3, 2), 100.0), TypeError, "k must be an integer"),
        (lambda: xnor_gemm(bits(2, 2).astype(np.int64), bits(3, 2), 100), TypeError, "a_bits"),
        (lambda: xnor_gemm(bits(2, 4)[:, ::2], bits(3, 2), 100), ValueError, "a_bits must be C"),
        (lambda: xnor_gemm(bits(2, 2)[None], bits(3, 2), 100), ValueError, "a_bits must have 2"),
        (
            lambda: xnor_gemm(bits(2, 2) + np.uint64(1 << 40), bits(3, 2), 64 + 40),
            ValueError,
            "a_bits has nonzero padding bits",
        ),
        (lambda: xnor_gemm(bits(2, 1), bits(3, 1), 64, threads=0), ValueError, "threads"),
    ],
)
def test_bad_input_raises_a_named_error(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_bad_conv_input_raises_a_named_error():
    packed = BinaryConvWeights.from_float(np.ones((4, 3, 3, 3), np.float32), 1, 0)
    with pytest.raises(ValueError, match="x has 5 channels, the weights expect 3"):
        binary_conv2d(pack_nhwc(np.ones((1, 6, 6, 5), np.float32)), packed)
    with pytest.raises(ValueError, match="smaller than the kernel"):
        binary_conv2d(pack_nhwc(np.ones((1, 2, 2, 3), np.float32)), packed)
    with pytest.raises(TypeError, match="PackedActivations"):
        binary_conv2d(np.ones((1, 6, 6, 3), np.float32), packed)
    with pytest.raises(ValueError, match="alpha must have 4 values"):
        binary_conv2d(pack_nhwc(np.ones((1, 6, 6, 3), np.float32)), packed, np.ones(3, np.float32))
    with pytest.raises(ValueError, match="words per filter"):
        BinaryConvWeights.from_bits(bits(4, 5), 3, (3, 3), 1, 0)
    with pytest.raises(ValueError, match="padding bits"):
        BinaryConvWeights.from_bits(bits(4, 3) + np.uint64(1 << 63), 3, (3, 3), 1, 0)


def test_unknown_or_unsupported_isa_is_rejected(monkeypatch):
    monkeypatch.setenv("XNORNET_ISA", "neon")
    with pytest.raises(ValueError, match="XNORNET_ISA='neon' is not one of"):
        kernel_isa()
    if "avx512-vpopcntdq" not in ISAS:
        monkeypatch.setenv("XNORNET_ISA", "avx512-vpopcntdq")
        with pytest.raises(ValueError, match="supports at most"):
            kernel_isa()


# (R, ..., C): bits per row K = 1, 63, 63, 64, 65, 65, 140, 117, 768, 975, 66560 with C = 1, 3, 20,
# 64, 65 channels; the last is big enough for the kernel to split rows over 2 threads.
SIGN_PACK_SHAPES = [
    (3, 1),
    (2, 63, 1),
    (2, 21, 3),
    (2, 1, 64),
    (3, 65),
    (2, 13, 5),
    (2, 7, 20),
    (5, 13, 9),
    (2, 12, 64),
    (2, 3, 5, 65),
    (4, 32, 32, 65),
]


def affine_params(rng, c: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel scale/shift, with zero scales and −0 shifts so that y = ±0 occurs (bit 0)."""
    scale = rng.standard_normal(c).astype(np.float32)
    shift = rng.standard_normal(c).astype(np.float32)
    scale[1::3] = 0.0
    shift[1::4] = -0.0
    return scale, shift


@pytest.mark.parametrize("shape", SIGN_PACK_SHAPES)
@pytest.mark.parametrize("threads", [1, 2])
def test_affine_sign_pack_equals_reference(isa, shape, threads):
    rng = np.random.default_rng(sum(shape))
    x = signed_floats(rng, shape)
    scale, shift = affine_params(rng, shape[-1])
    out = affine_sign_pack(x, scale, shift, threads=threads)
    np.testing.assert_array_equal(out, affine_sign_pack_ref(x, scale, shift))


@pytest.mark.parametrize("shape", SIGN_PACK_SHAPES)
@pytest.mark.parametrize("threads", [1, 2])
def test_bn_sign_pack_equals_reference(shape, threads):
    rng = np.random.default_rng(sum(shape))
    x = signed_floats(rng, shape)
    scale, shift = affine_params(rng, shape[-1])
    bits, absmean = bn_sign_pack(x, scale, shift, with_absmean=True, threads=threads)
    ref_bits, ref_absmean = bn_sign_pack_ref(x, scale, shift)
    np.testing.assert_array_equal(bits, ref_bits)
    np.testing.assert_array_equal(absmean.view(np.uint32), ref_absmean.view(np.uint32))
    no_absmean_bits, none = bn_sign_pack(x, scale, shift, threads=threads)
    assert none is None
    np.testing.assert_array_equal(no_absmean_bits, ref_bits)
    # the float computation it replaces: mean |BN(x)| in float64
    y = x.astype(np.float64) * scale + shift
    np.testing.assert_allclose(absmean, np.abs(y).reshape(shape[0], -1, shape[-1]).mean(-1), rtol=1e-5)


def test_threshold_pack_is_the_exact_test_x_below_t(isa):
    t = np.array([0.1, -3.0, 7.5], dtype=np.float32)
    x = np.stack([t, np.nextafter(t, -np.inf), np.nextafter(t, np.inf)] * 30).astype(np.float32)
    x = x.reshape(1, -1, 3)
    ones = np.ones(3, np.float32)
    bits = affine_sign_pack(x, ones, -t)
    expected = pack_bits_ref(np.where(x < t, -1.0, 1.0).reshape(1, -1))
    np.testing.assert_array_equal(bits, expected)
    np.testing.assert_array_equal(affine_sign_pack_ref(x, ones, -t), expected)


POOL_GEOMETRIES = [(2, 2, 0), (3, 2, 1), (3, 1, 1), (1, 1, 0), (8, 1, 0)]  # (kernel, stride, padding)


def torch_pool_nhwc(x: np.ndarray, kind: str, k: int, stride: int, pad: int) -> np.ndarray:
    xt = torch.from_numpy(x).permute(0, 3, 1, 2)
    if kind == "max":
        out = F.max_pool2d(xt, k, stride, pad)
    else:
        out = F.avg_pool2d(xt, k, stride, pad, count_include_pad=True)
    return out.permute(0, 2, 3, 1).numpy()


def assert_pool_matches(x: np.ndarray, kind: str, geometry: tuple[int, int, int], threads: int) -> None:
    """Bit-exact against the numpy twin (same visiting order, same float32 reciprocal); against
    torch exact for max, which picks a value, and to 1e-6 for avg, where torch sums in its own
    order and divides by k² instead of multiplying by 1/k²."""
    out = pool2d_nhwc(x, kind, *geometry, threads=threads)
    np.testing.assert_array_equal(out.view(np.uint32), pool2d_nhwc_ref(x, kind, *geometry).view(np.uint32))
    expected = torch_pool_nhwc(x, kind, *geometry)
    if kind == "max":
        np.testing.assert_array_equal(out, expected)
    else:
        np.testing.assert_allclose(out, expected, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("kind", ["max", "avg"])
@pytest.mark.parametrize("geometry", POOL_GEOMETRIES)
@pytest.mark.parametrize("c", [1, 3, 20, 64, 65])
def test_pool2d_nhwc_equals_reference_and_torch(kind, geometry, c):
    x = signed_floats(np.random.default_rng(geometry[0] * 100 + c), (3, 8, 9, c))
    assert_pool_matches(x, kind, geometry, threads=2)


@pytest.mark.parametrize("kind", ["max", "avg"])
@pytest.mark.parametrize("threads", [1, 2])
def test_large_pool2d_with_threads_equals_reference_and_torch(kind, threads):
    x = signed_floats(np.random.default_rng(5), (2, 33, 31, 65))
    assert_pool_matches(x, kind, (3, 2, 1), threads)


def test_pool2d_rejects_bad_geometry():
    x = np.zeros((1, 4, 4, 2), np.float32)
    with pytest.raises(ValueError, match="kind must be"):
        pool2d_nhwc(x, "min", 2, 2)
    with pytest.raises(ValueError, match="padding"):
        pool2d_nhwc(x, "max", 2, 2, padding=2)
    with pytest.raises(ValueError, match="smaller than the pooling window"):
        pool2d_nhwc(x, "max", 5, 1)
    with pytest.raises(TypeError, match="float32"):
        pool2d_nhwc(x.astype(np.float64), "max", 2, 2)
