"""Fuzzing (hypothesis) of the two places untrusted bytes and arrays enter: the packed-model loader
and the kernels' argument validation. Each test is bounded (max_examples, a per-example deadline,
no example database written to the repo) and derandomized, so CI reruns the same examples.

- Packed files: truncated, bit-flipped, overwritten, spliced copies of a real LeNet-5 XNOR file
  must be refused with XnornetError, or, if one still loads, predict exactly what the original
  does. Copies whose architecture is edited and whose digest is recomputed (a deliberate edit,
  not corruption) must be refused cleanly or run: never crash the process.
- Kernels: random dtypes, shapes and memory layouts into every public entry point raise the
  documented TypeError/ValueError, or give the numpy reference's result exactly.
"""

from __future__ import annotations

import json
from datetime import timedelta

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from safetensors.numpy import save_file

import xnornet.kernels as K
from conftest import compose_config
from xnornet.builders import build_net, input_shape
from xnornet.errors import XnornetError
from xnornet.kernels import reference as R
from xnornet.kernels.ops import affine_sign_pack, bn_sign_pack, pool2d_nhwc
from xnornet.packed import file_format
from xnornet.packed.engine import PackedEngine, load_engine
from xnornet.packed.file_format import digest, load_packed, save_packed
from xnornet.packed.inference_form import pack_network

FUZZ = settings(
    max_examples=1000,
    deadline=timedelta(seconds=2),  # an example takes milliseconds; this only stops a hang
    database=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


# ---------------------------------------------------------------- the packed-model loader


@pytest.fixture(scope="module")
def original(tmp_path_factory):
    """(file bytes, header length, predictions on fixed inputs, scratch path) of a real file."""
    root = tmp_path_factory.mktemp("fuzz")
    torch.manual_seed(0)
    cfg = compose_config(["model=xnor"])
    net = build_net(cfg).eval()
    path = root / "xnor.packed"
    save_packed(pack_network(net, input_shape(cfg), variant="xnor", network=cfg.net._target_), path)
    data = path.read_bytes()
    x = np.random.default_rng(0).standard_normal((4, 1, 28, 28)).astype(np.float32)
    logits = PackedEngine(load_packed(path), threads=1)(x)
    model = load_packed(path)
    return data, int.from_bytes(data[:8], "little"), x, logits, root / "mutant.packed", model


def mutate(data: bytes, header_len: int, draw) -> bytes:
    """One random corruption; half of them aimed at the 8-byte length and the JSON header, where a
    byte matters most (a flip in the tensor bytes is the checksum's easy case)."""
    n = len(data)
    span = draw(st.sampled_from([n, 8 + header_len]))  # anywhere, or only the header
    kind = draw(st.sampled_from(["truncate", "flip", "overwrite", "insert", "delete", "zero_tail"]))
    b = bytearray(data)
    if kind == "truncate":
        return bytes(b[: draw(st.integers(0, n - 1))])
    if kind == "flip":
        flips = st.lists(st.tuples(st.integers(0, span - 1), st.integers(0, 7)), min_size=1, max_size=8)
        for pos, bit in draw(flips):
            b[pos] ^= 1 << bit
        return bytes(b)
    pos = draw(st.integers(0, span - 1))
    if kind == "overwrite":
        chunk = draw(st.binary(min_size=1, max_size=32))
        b[pos : pos + len(chunk)] = chunk
        return bytes(b[:n])
    if kind == "insert":
        return bytes(b[:pos] + draw(st.binary(min_size=1, max_size=32)) + b[pos:])
    if kind == "delete":
        return bytes(b[:pos] + b[pos + draw(st.integers(1, 64)) :])
    return bytes(b[:pos] + bytes(n - pos))  # zero_tail: a file whose end never reached the disk


@FUZZ
@given(data=st.data())
def test_corrupt_packed_file_is_refused_or_predicts_the_same(original, data):
    raw, header_len, x, logits, path, _ = original
    mutant = mutate(raw, header_len, data.draw)
    path.write_bytes(mutant)
    try:
        engine = load_engine(path, threads=1)
    except XnornetError:
        event("refused")
        return
    np.testing.assert_array_equal(engine(x), logits)  # it loaded: it must be the same model
    event("loaded, same predictions")


SPEC_EDITS = {  # field → values a deliberate edit might put there
    "op": ["conv", "linear", "relu", "maxpool", "add", "flatten", "threshold", "lstm", 3],
    "in": [0, 1, 20, 799, 800, 10**9, -1, "20", None],
    "out": [0, 1, 10, 50, 501, -3, 2.5],
    "kernel": [[5, 5], [3, 3], [0, 0], [40, 40], [2], 2, None],
    "stride": [0, 1, 2, -1, 100, "1"],
    "padding": [0, 1, 3, -1, 50],
    "inputs": [[], [-1], [0], [99], [-2], [0, 1], "x", None],
    "binary": [True, False, 1, None],
    "binary_input": [True, False],
    "bias": [True, False],
    "channels": [0, 1, 20, 50, -1],
    "scale_activations": [True, False],
}


@settings(FUZZ, max_examples=200)
@given(data=st.data())
def test_edited_and_resealed_architecture_never_crashes(original, data):
    """A valid digest over an edited architecture: refused by name, or it builds and runs."""
    _, _, x, _, path, model = original
    arch = [spec.to_json() for spec in model.architecture]
    for _ in range(data.draw(st.integers(1, 3))):
        layer = data.draw(st.integers(0, len(arch) - 1))
        field = data.draw(st.sampled_from(sorted(SPEC_EDITS)))
        arch[layer][field] = data.draw(st.sampled_from(SPEC_EDITS[field]))
    arch_json, info = json.dumps(arch, sort_keys=True), json.dumps(model.info, sort_keys=True)
    meta = {"format": file_format.FORMAT, "version": str(file_format.VERSION), "architecture": arch_json,
            "info": info, "sha256": digest(arch_json, info, model.tensors)}  # fmt: skip
    save_file(model.tensors, str(path), metadata=meta)
    try:
        engine = load_engine(path, threads=1)
        engine(x)
    except (XnornetError, ValueError, TypeError) as e:
        event(f"refused: {type(e).__name__}")
        return
    event("ran")


# ---------------------------------------------------------------- the kernels' argument validation

DTYPES = [np.float64, np.float16, np.uint64, np.int64, np.int32, np.uint8, bool, np.float32]
FAULTS = ["none", "none", "none", "none", "none", "none", "dtype", "layout", "ndim", "shape", "empty"]


@st.composite
def spoiled(draw, a: np.ndarray) -> np.ndarray:
    """``a`` (a valid argument) as is, or with one fault: another dtype, a non-C-contiguous layout
    (Fortran, strided, transposed), one axis more or fewer, one element fewer, or no elements."""
    fault = draw(st.sampled_from(FAULTS))
    if fault == "dtype":
        return a.astype(draw(st.sampled_from([d for d in DTYPES if np.dtype(d) != a.dtype])))
    if fault == "layout":
        kind = draw(st.sampled_from(["F", "strided", "transposed"]))
        if kind == "F":
            return np.asfortranarray(a)
        return np.repeat(a, 2, axis=-1)[..., ::2] if kind == "strided" else a.T
    if fault == "ndim":
        return a[None] if draw(st.booleans()) else a.reshape(-1)
    if fault == "shape":
        return a.reshape(-1)[:-1].copy() if a.ndim == 1 else np.ascontiguousarray(a[..., :-1])
    if fault == "empty":
        return a[:0]
    return a


def floats(draw, *shape: int) -> np.ndarray:
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    return rng.standard_normal(shape).astype(np.float32)


DIM = st.integers(1, 6)
BAD_INT = st.sampled_from([0, -1, 2.0, True, None, "1"])


def maybe_bad_int(draw, good: int):
    return good if draw(st.integers(0, 3)) else draw(BAD_INT)


def check_pack_bits(d):
    x = d.draw(spoiled(floats(d.draw, *d.draw(st.lists(DIM, min_size=1, max_size=3)))))
    out = K.pack_bits(x)
    np.testing.assert_array_equal(out, R.pack_bits_ref(x.reshape(-1, x.shape[-1])).reshape(out.shape))


def check_pack_nhwc(d):
    x = d.draw(spoiled(floats(d.draw, d.draw(DIM), d.draw(DIM), d.draw(DIM), d.draw(DIM))))
    packed = K.pack_nhwc(x)
    b, h, w, c = x.shape
    np.testing.assert_array_equal(packed.bits, R.pack_bits_ref(x.reshape(b * h, w * c)))


def check_xnor_gemm(d):
    m, n, k = d.draw(DIM), d.draw(DIM), d.draw(st.integers(1, 200))
    a = d.draw(spoiled(K.pack_bits(floats(d.draw, m, k))))
    b = d.draw(spoiled(K.pack_bits(floats(d.draw, n, k))))
    k = d.draw(st.sampled_from([k, k, k, k + 64, k - 64, 0, -1, float(k), True]))
    out = K.xnor_gemm(a, b, k, threads=d.draw(st.sampled_from([1, 2, 0, None])))
    np.testing.assert_array_equal(out, R.xnor_gemm_ref(a, b, k))


def check_gemm_packed(d):
    m, n, k = d.draw(DIM), d.draw(st.integers(1, 20)), d.draw(st.integers(1, 200))
    a_f, b_f = floats(d.draw, m, k), floats(d.draw, n, k)
    a = d.draw(spoiled(K.pack_bits(a_f)))
    cols = K.PackedColumns.from_bits(K.pack_bits(b_f), k)
    alpha, bias = d.draw(spoiled(np.abs(floats(d.draw, n)))), d.draw(spoiled(floats(d.draw, n)))
    row_scale = d.draw(spoiled(np.abs(floats(d.draw, m))))
    out = K.gemm_packed(a, cols, alpha=alpha, bias=bias, row_scale=row_scale, relu=d.draw(st.booleans()))
    dots = R.xnor_gemm_ref(K.pack_bits(a_f), K.pack_bits(b_f), k).astype(np.float64)
    want = alpha.reshape(1, -1) * dots * row_scale.reshape(-1, 1) + bias.reshape(1, -1)
    assert out.shape == (m, n)
    assert np.all((out == np.maximum(want, 0)) | (out == want) | np.isclose(out, want, rtol=1e-5, atol=1e-4)
                  | np.isclose(out, np.maximum(want, 0), rtol=1e-5, atol=1e-4))  # fmt: skip


def check_conv(d):
    cout, c, kh, kw = d.draw(DIM), d.draw(DIM), d.draw(st.integers(1, 3)), d.draw(st.integers(1, 3))
    stride, padding = d.draw(st.integers(1, 3)), d.draw(st.integers(0, 2))
    w = d.draw(spoiled(floats(d.draw, cout, c, kh, kw)))
    weights = K.BinaryConvWeights.from_float(w, maybe_bad_int(d.draw, stride), maybe_bad_int(d.draw, padding))
    x = d.draw(spoiled(floats(d.draw, d.draw(DIM), d.draw(st.integers(1, 8)), d.draw(st.integers(1, 8)), c)))
    out = K.binary_conv2d(K.pack_nhwc(x), weights)
    np.testing.assert_array_equal(out, R.binary_conv2d_ref(x, w, weights.stride, weights.padding))


def check_sign_pack(d):
    r, p, c = d.draw(DIM), d.draw(DIM), d.draw(DIM)
    x = d.draw(spoiled(floats(d.draw, r, p, c)))
    scale, shift = d.draw(spoiled(floats(d.draw, c))), d.draw(spoiled(floats(d.draw, c)))
    if d.draw(st.booleans()):
        np.testing.assert_array_equal(
            affine_sign_pack(x, scale, shift), R.affine_sign_pack_ref(x, scale, shift)
        )
    else:
        bits, absmean = bn_sign_pack(x, scale, shift, with_absmean=True)
        want_bits, want_absmean = R.bn_sign_pack_ref(x, scale, shift)
        np.testing.assert_array_equal(bits, want_bits)
        np.testing.assert_allclose(absmean, want_absmean, rtol=1e-5, atol=1e-6)


def check_pool(d):
    x = d.draw(
        spoiled(
            floats(d.draw, d.draw(DIM), d.draw(st.integers(1, 8)), d.draw(st.integers(1, 8)), d.draw(DIM))
        )
    )
    kind = d.draw(st.sampled_from(["max", "avg", "max", "avg", "min", 0]))
    kernel = maybe_bad_int(d.draw, d.draw(st.integers(1, 3)))
    stride = maybe_bad_int(d.draw, d.draw(st.integers(1, 3)))
    padding = d.draw(st.integers(0, 1))
    out = pool2d_nhwc(x, kind, kernel, stride, padding)
    np.testing.assert_allclose(out, R.pool2d_nhwc_ref(x, kind, kernel, stride, padding), rtol=1e-6, atol=1e-6)


ENTRY_POINTS = [check_pack_bits, check_pack_nhwc, check_xnor_gemm, check_gemm_packed, check_conv,
                check_sign_pack, check_pool]  # fmt: skip


@FUZZ
@given(data=st.data())
def test_kernel_arguments_are_refused_by_name_or_computed_exactly(data):
    check = data.draw(st.sampled_from(ENTRY_POINTS), label="entry point")
    try:
        check(data)
    except (TypeError, ValueError) as e:  # the documented refusal: it names an argument
        assert str(e), f"{check.__name__}: an empty message"
        event(f"{check.__name__}: refused")
    else:
        event(f"{check.__name__}: computed")
