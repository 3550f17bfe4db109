"""Cross-layer fusion: a binary layer emits the next binary layer's packed input (the sign of
BatchNorm/threshold of its output) from its output transform. The emitted bits must equal the
numpy sign-pack of the float output it replaces, on every ISA path and thread split, including
splits where two threads write into one word; and an engine with fusion must give the same
logits, bit for bit, as one without."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from conftest import signed_floats
from xnornet.benchmark.network import calibrate_batchnorm
from xnornet.kernels import BinaryConv2dLayer, BinaryConvWeights, BinaryLinearLayer, PackedColumns, pack_bits
from xnornet.kernels.reference import pack_bits_ref
from xnornet.nn.binarization import Binarization
from xnornet.nn.layers import QuantConv2d, QuantLinear
from xnornet.packed.engine import PackedEngine
from xnornet.packed.inference_form import pack_network

XNOR = Binarization(weights=True, inputs=True)


def affine(rng, n: int) -> tuple[np.ndarray, np.ndarray]:
    """A BatchNorm-like scale (both signs, as folded BN can have) and shift."""
    scale = (rng.standard_normal(n) * 0.5).astype(np.float32)
    return scale, (rng.standard_normal(n) * 0.3).astype(np.float32)


def expected_bits(y: np.ndarray, scale: np.ndarray, shift: np.ndarray) -> np.ndarray:
    """sign(y·scale + shift) packed per stream: numpy's float32 mul then add, as the sign-pack."""
    z = (y * scale).astype(np.float32) + shift
    return pack_bits_ref(z.reshape(z.shape[0] * z.shape[1], -1) if z.ndim == 4 else z)


CONV_CASES = [  # (batch, h, w, c_in, c_out, k, stride, pad): streams with padding bits (OR into
    # zeroed words, atomic when threads may share one), and Wo·Cout a multiple of 64 with Cout a
    # multiple of 16 (each panel's bits one plain 16-bit store: 64×3, 256×5), and 48×5 = 240 bits
    (2, 7, 9, 5, 20, 3, 1, 1),
    (2, 6, 5, 8, 48, 3, 1, 1),
    (1, 8, 8, 20, 50, 5, 1, 0),
    (3, 6, 5, 64, 64, 3, 2, 1),
    (2, 9, 9, 16, 130, 3, 1, 1),
    (2, 5, 5, 8, 256, 3, 1, 1),
]


@pytest.mark.parametrize("case", CONV_CASES, ids=lambda c: "x".join(map(str, c)))
@pytest.mark.parametrize("threads", [1, 2, 3, 16])
@pytest.mark.parametrize("relu,residual", [(False, False), (True, False), (True, True)])
def test_a_conv_emits_the_sign_pack_of_its_output(isa, case, threads, relu, residual):
    b, h, w, c, n, k, stride, pad = case
    rng = np.random.default_rng(sum(case) + threads)
    weights = BinaryConvWeights.from_float(signed_floats(rng, (n, c, k, k)), stride, pad)
    alpha, bias = rng.random(n, dtype=np.float32), rng.standard_normal(n).astype(np.float32)
    scale, shift = affine(rng, n)
    plain = BinaryConv2dLayer(weights, alpha, bias, relu=relu, threads=threads)
    fused = BinaryConv2dLayer(weights, alpha, bias, relu=relu, threads=threads, emit_sign=(scale, shift))
    x = signed_floats(rng, (b, h, w, c))
    ho, wo = weights.output_hw(h, w)
    res = signed_floats(rng, (b, ho, wo, n)) if residual else None
    y = plain(x, residual=res).copy()
    packed = fused(x, residual=res)
    assert (packed.batch, packed.height, packed.width, packed.channels) == (b, ho, wo, n)
    np.testing.assert_array_equal(packed.bits, expected_bits(y, scale, shift))
    # the buffer is reused, and refilled from zeros: a second input gives its own bits
    x2 = signed_floats(rng, (b, h, w, c))
    y2 = plain(x2, residual=res).copy()
    np.testing.assert_array_equal(fused(x2, residual=res).bits, expected_bits(y2, scale, shift))


@pytest.mark.parametrize("m,k,n", [(1, 1, 1), (7, 63, 20), (13, 65, 50), (32, 200, 64), (9, 300, 100)])
@pytest.mark.parametrize("threads", [1, 2, 16])
def test_a_linear_layer_emits_the_sign_pack_of_its_output(isa, m, k, n, threads):
    rng = np.random.default_rng(m * k + n)
    columns = PackedColumns.from_bits(pack_bits(signed_floats(rng, (n, k))), k)
    alpha, bias = rng.random(n, dtype=np.float32), rng.standard_normal(n).astype(np.float32)
    scale, shift = affine(rng, n)
    x = signed_floats(rng, (m, k))
    y = BinaryLinearLayer(columns, alpha, bias, relu=True, threads=threads)(x).copy()
    fused = BinaryLinearLayer(columns, alpha, bias, relu=True, threads=threads, emit_sign=(scale, shift))
    np.testing.assert_array_equal(fused(x), expected_bits(y, scale, shift))


def test_emitted_bits_feed_the_next_layer_as_its_own_sign_pack_would(isa):
    rng = np.random.default_rng(5)
    first = BinaryConvWeights.from_float(signed_floats(rng, (24, 6, 3, 3)), 1, 1)
    second = BinaryConvWeights.from_float(signed_floats(rng, (10, 24, 3, 3)), 1, 1)
    alpha, bn = rng.random(24, dtype=np.float32), affine(rng, 24)
    x = signed_floats(rng, (2, 6, 7, 6))
    unfused = BinaryConv2dLayer(second, threads=2, sign=bn)(BinaryConv2dLayer(first, alpha, threads=2)(x))
    emitted = BinaryConv2dLayer(first, alpha, threads=2, emit_sign=bn)(x)
    np.testing.assert_array_equal(BinaryConv2dLayer(second, threads=2).forward_packed(emitted), unfused)


@pytest.mark.parametrize(
    "emit,match",
    [
        ((np.ones(3, np.float32),), "pair"),
        ((np.ones(3, np.float32), np.zeros(3, np.float32)), "must have 8 values"),
        ((np.ones(8), np.zeros(8, np.float32)), "float32"),
    ],
)
def test_a_wrong_emit_sign_is_refused_by_name(emit, match):
    weights = BinaryConvWeights.from_float(np.ones((8, 2, 3, 3), np.float32))
    with pytest.raises((TypeError, ValueError), match=match):
        BinaryConv2dLayer(weights, np.ones(8, np.float32), emit_sign=emit)
    with pytest.raises(ValueError, match="emit_sign needs alpha"):
        BinaryConv2dLayer(weights, emit_sign=(np.ones(8, np.float32), np.zeros(8, np.float32)))


class Chain(nn.Sequential):
    """conv → ReLU → BN → conv (fusable), a pool, then linear → ReLU → BN → linear (fusable)."""

    def __init__(self) -> None:
        q = XNOR.quantizers()
        super().__init__(
            QuantConv2d(3, 20, 3, padding=1), nn.BatchNorm2d(20), nn.ReLU(),
            nn.BatchNorm2d(20), QuantConv2d(20, 40, 3, padding=1, **q), nn.ReLU(),
            nn.BatchNorm2d(40), QuantConv2d(40, 64, 3, padding=1, **q), nn.ReLU(),
            nn.MaxPool2d(2), nn.Flatten(),
            nn.BatchNorm1d(64 * 5 * 5), QuantLinear(64 * 5 * 5, 100, **q), nn.ReLU(),
            nn.BatchNorm1d(100), QuantLinear(100, 30, **q), nn.ReLU(),
            nn.BatchNorm1d(30), QuantLinear(30, 10),
        )  # fmt: skip


@pytest.mark.parametrize("threads", [1, 2])
def test_an_engine_with_fusion_gives_the_same_logits_bit_for_bit(isa, threads):
    torch.manual_seed(0)
    net = calibrate_batchnorm(Chain(), (3, 10, 10), 3, 16, seed=0)
    model = pack_network(net, (3, 10, 10))
    x = np.random.default_rng(0).standard_normal((32, 3, 10, 10), dtype=np.float32)
    fused, plain = PackedEngine(model, threads), PackedEngine(model, threads, fuse_layers=False)
    names = [s.name for s in fused.steps]
    assert sum(name.endswith("+sign") for name in names) == 2, names  # the 1st conv and the 1st fc
    assert not any("+sign" in s.name for s in plain.steps)
    np.testing.assert_array_equal(fused(x), plain(x))
    with torch.no_grad():
        reference = net(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(fused(x), reference, rtol=1e-4, atol=1e-4)
