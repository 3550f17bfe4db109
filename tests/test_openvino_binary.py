"""OpenVINO's binary convolution, as the peers build it, against the numpy reference: exactly.

A wrong u1 bit order, channel count or threshold still compiles and runs, and gives wrong
numbers, so every odd shape is held to ``binary_conv2d_ref`` bit for bit.
"""

from __future__ import annotations

import numpy as np
import pytest

from conftest import signed_floats
from xnornet.errors import XnornetError
from xnornet.kernels.reference import binary_conv2d_ref, sign
from xnornet.peers import require, skip_line, unavailable_reason

ov_binary = pytest.importorskip("xnornet.peers.openvino_binary", reason="the peers extra is not installed")

SHAPES = [  # (C_in, C_out, k, stride, padding, H, W): K = C_in·k² of 1, 63, 64, 65, odd channels
    (1, 3, 1, 1, 0, 5, 5),
    (63, 8, 1, 1, 0, 4, 4),
    (64, 5, 1, 2, 0, 6, 7),
    (65, 9, 1, 2, 0, 6, 7),
    (7, 5, 3, 1, 1, 9, 8),
    (3, 10, 3, 2, 1, 11, 11),
    (13, 4, 5, 2, 1, 10, 9),
    (20, 50, 5, 1, 0, 12, 12),
    (64, 64, 3, 1, 1, 8, 8),
    (256, 24, 3, 2, 1, 7, 7),
]


def random_signs(rng, shape) -> np.ndarray:
    return sign(rng.standard_normal(shape)).astype(np.float32)


@pytest.mark.parametrize(("cin", "cout", "k", "stride", "pad", "h", "w"), SHAPES)
def test_binary_conv_equals_the_reference_exactly(cin, cout, k, stride, pad, h, w):
    rng = np.random.default_rng(cin * 1000 + cout)
    signs = random_signs(rng, (cout, cin, k, k))
    x = signed_floats(rng, (3, cin, h, w))
    x.flat[5::13], x.flat[6::13] = 1e-42, -1e-42  # denormals keep their sign
    want = binary_conv2d_ref(x.transpose(0, 2, 3, 1), signs, stride, pad).transpose(0, 3, 1, 2)
    model = ov_binary.binary_conv_model(signs, stride, pad, [-1, cin, h, w])
    np.testing.assert_array_equal(ov_binary.compile_for_latency(model, threads=1, batch=3)(x)[0], want)
    alpha = rng.random(cout).astype(np.float32) + 0.5  # α·dot, which the plugin may fuse with the count
    model = ov_binary.binary_conv_model(signs, stride, pad, [3, cin, h, w], alpha)
    got = ov_binary.compile_for_latency(model, threads=1)(x)[0]
    np.testing.assert_allclose(got, want * alpha.reshape(1, -1, 1, 1), rtol=1e-6, atol=1e-5)


def test_thresholds_binarize_at_x_at_least_the_threshold():
    rng = np.random.default_rng(1)
    signs = random_signs(rng, (4, 9, 3, 3))
    thr = rng.standard_normal(9).astype(np.float32)
    x = np.repeat(thr.reshape(1, 9, 1, 1), 6, axis=2).repeat(6, axis=3)  # exactly at the threshold …
    x[:, :, ::2] = np.nextafter(x[:, :, ::2], np.float32(-np.inf))  # … or just below it
    model = ov_binary.binary_conv_model(signs, 1, 1, [1, 9, 6, 6], thresholds=thr)
    got = ov_binary.compile_for_latency(model, threads=1)(x)[0]
    want = binary_conv2d_ref((x - thr.reshape(1, 9, 1, 1)).transpose(0, 2, 3, 1), signs, 1, 1)
    np.testing.assert_array_equal(got, want.transpose(0, 3, 1, 2))


def test_binary_linear_equals_the_sign_matmul():
    import openvino as ov
    import openvino.opset13 as ops

    rng = np.random.default_rng(2)
    signs = random_signs(rng, (10, 65))
    x = signed_floats(rng, (4, 65))
    param = ops.parameter([-1, 65], np.float32)
    model = ov.Model([ov_binary.binary_linear(param, signs)], [param])
    got = ov_binary.compile_for_latency(model, threads=1, batch=4)(x)[0]
    np.testing.assert_array_equal(got, sign(x) @ signs.T)


def test_bad_weights_and_shapes_are_one_line():
    with pytest.raises(XnornetError, match="weight_signs"):
        ov_binary.binary_conv_model(np.zeros((2, 3, 3, 3)), 1, 0, [1, 3, 8, 8])
    with pytest.raises(XnornetError, match="input channels"):
        ov_binary.binary_conv_model(np.ones((2, 3, 3, 3)), 1, 0, [1, 4, 8, 8])
    with pytest.raises(XnornetError, match="static"):
        ov_binary.binary_conv_model(np.ones((2, 3, 3, 3)), 1, 0, [1, 3, -1, 8])


def test_without_the_extra_the_peers_say_why_in_one_line():
    missing = ("xnornet_no_such_package",)
    assert unavailable_reason() is None
    line = skip_line("OpenVINO rows", missing)
    assert line.startswith("OpenVINO rows skipped: xnornet_no_such_package is not importable")
    assert "\n" not in line and "xnornet[peers]" in line
    with pytest.raises(XnornetError, match="export needs the OpenVINO peers"):
        require("export", missing)


def test_a_dynamic_batch_needs_a_batch_to_compile():
    model = ov_binary.binary_conv_model(np.ones((2, 8, 1, 1), np.float32), 1, 0, [-1, 8, 2, 2])
    with pytest.raises(XnornetError, match="pass batch=N"):
        ov_binary.compile_for_latency(model, threads=1)
    assert ov_binary.compile_for_latency(model, threads=1, batch=2)(np.ones((2, 8, 2, 2), np.float32))[
        0
    ].shape == (2, 2, 2, 2)
