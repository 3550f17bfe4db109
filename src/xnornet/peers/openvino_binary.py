"""One binary layer as OpenVINO's CPU plugin runs it: FakeQuantize(levels=2) → BinaryConvolution.

The public, stable entry points (the layer and network benchmarks import them):

- ``binary_conv_model(weight_signs, stride, padding, input_shape, alpha=None, thresholds=None)``
  → ``openvino.Model``: sign(x) ⊛ sign(W) with zero padding (a padded pixel contributes 0, as in
  the engine and ``kernels.reference.binary_conv2d_ref``), times α per filter when given;
- ``compile_for_latency(model, threads, batch=None)`` → ``openvino.CompiledModel`` with the
  LATENCY hint, ``INFERENCE_NUM_THREADS=threads`` and float32 inference precision;
- the graph pieces ``binary_conv`` / ``binary_linear`` (on a float node, before binarization),
  which the whole-network export (openvino_export) chains.

What the CPU plugin needs, found by testing against the numpy reference (tests/test_openvino_peers.py),
because a wrong choice still runs and gives wrong numbers:

- u1 weights: the plugin's BinaryConvolution reads each byte least significant bit first (bit 1 ⇔
  +1), while OpenVINO's own u1 element order (a Constant built from a list, Convert) is most
  significant bit first; so the weight tensor's bytes are written directly, never from a list.
- input channels: with a channel count that is not a multiple of 8 the plugin's binarized input
  is wrong (or its reorder fails to compile), so channels are padded to a multiple of 8 with +1
  inputs whose weights come in +1/−1 pairs and cancel; an odd remainder leaves one +1·+1 channel,
  whose contribution (the number of in-image positions of each window) is subtracted.
- FakeQuantize(levels=2) maps x > threshold to 1 (⇔ +1); sign(0) = +1 here, so the threshold is
  the largest float32 below the layer's threshold (below 0: the negative denormal nearest 0).
- pad_value 0 makes the plugin exclude padded positions, i.e. a padded pixel contributes 0.
- BinaryConvolution has no dynamic-shape CPU implementation: a model whose batch is -1 compiles
  only once reshaped to a static batch (``compile_for_latency(..., batch=N)``).
- the CPU plugin infers in bf16 on CPUs that have it unless told f32: a binary network's float
  layers and the fp32 peer must stay float32, so the precision hint is always f32.
"""

from __future__ import annotations

import numpy as np
import openvino as ov
import openvino.opset1 as ops1
import openvino.opset13 as ops

from xnornet.errors import XnornetError

CHANNEL_MULTIPLE = 8  # input channels of a BinaryConvolution the CPU plugin binarizes correctly


def u1_weights(weight_signs: np.ndarray) -> ov.Node:
    """(C_out, C_in, kh, kw) ±1 → a u1 Constant in the bit order the CPU BinaryConvolution reads."""
    tensor = ov.Tensor(ov.Type.u1, ov.Shape(list(weight_signs.shape)))
    bits = np.packbits((weight_signs > 0).astype(np.uint8).reshape(-1), bitorder="little")
    tensor.data[:] = bits
    return ov.op.Constant(tensor)


def below(thresholds: np.ndarray) -> np.ndarray:
    """The largest float32 below each threshold: FakeQuantize's ``x > t`` becomes ``x ≥ threshold``."""
    t = np.asarray(thresholds, dtype=np.float32)
    return np.nextafter(t, np.float32(-np.inf)).astype(np.float32)


def static_dims(node: ov.Output, what: str) -> list[int]:
    """Every dimension but the batch, which must be static (the graph is built for one image size)."""
    shape = node.get_partial_shape()
    if shape.rank.is_dynamic or any(d.is_dynamic for d in list(shape)[1:]):
        raise XnornetError(f"{what}: input shape {shape} must be static except the batch")
    return [d.get_length() for d in list(shape)[1:]]


def window_counts(h: int, w: int, kernel: tuple[int, int], stride: int, padding: int) -> np.ndarray:
    """(Ho, Wo) float32: how many of each window's kh·kw positions lie inside the image."""
    (kh, kw), p, s = kernel, padding, stride
    ho, wo = (h + 2 * p - kh) // s + 1, (w + 2 * p - kw) // s + 1
    ih = np.arange(ho)[:, None] * s - p + np.arange(kh)  # (Ho, kh) input rows of each window
    iw = np.arange(wo)[:, None] * s - p + np.arange(kw)
    inside_h, inside_w = ((ih >= 0) & (ih < h)).sum(axis=1), ((iw >= 0) & (iw < w)).sum(axis=1)
    return (inside_h[:, None] * inside_w[None, :]).astype(np.float32)


def binary_conv(
    x: ov.Output | ov.Node, weight_signs: np.ndarray, stride: int, padding: int,
    thresholds: np.ndarray | None = None,
) -> ov.Node:  # fmt: skip
    """The ±1 dot products (B, C_out, Ho, Wo) float32 of sign(x − threshold) ⊛ sign(W), zero padded.

    ``x``: a float (B, C_in, H, W) node; ``thresholds``: per input channel, +1 ⇔ x ≥ threshold
    (None: 0, i.e. sign(x) with sign(0) = +1)."""
    x = x.output(0) if isinstance(x, ov.Node) else x
    c, h, w = static_dims(x, "binary_conv")
    cout, cin, kh, kw = weight_signs.shape
    if cin != c:
        raise XnornetError(f"binary_conv: weights expect {cin} input channels, the input has {c}")
    thr = below(np.zeros(c, np.float32) if thresholds is None else thresholds)
    extra = -c % CHANNEL_MULTIPLE
    signs = np.asarray(weight_signs, dtype=np.float32)
    if extra:  # +1 inputs; their weights alternate +1, −1 so that each pair adds 0
        zero, pad_end = np.zeros(4, np.int64), np.array([0, extra, 0, 0], np.int64)
        x = ops.pad(x, zero, pad_end, "constant", np.float32(1.0)).output(0)
        pairs = np.where(np.arange(extra) % 2 == 0, 1.0, -1.0).astype(np.float32)
        signs = np.concatenate([signs, np.broadcast_to(pairs[None, :, None, None], (cout, extra, kh, kw))], 1)
        thr = np.concatenate([thr, below(np.zeros(extra, np.float32))])
    level = thr.reshape(1, -1, 1, 1)
    zero, one = np.zeros((1, 1, 1, 1), np.float32), np.ones((1, 1, 1, 1), np.float32)
    bits = ops.fake_quantize(x, ops.constant(level), ops.constant(level), ops.constant(zero),
                             ops.constant(one), 2)  # fmt: skip
    pads = [padding, padding]
    dot = ops1.binary_convolution(bits, u1_weights(signs), [stride, stride], pads, pads, [1, 1],
                                  "xnor-popcount", 0.0)  # fmt: skip
    if extra % 2:  # the unpaired +1·+1 channel added one per in-image window position
        counts = window_counts(h, w, (kh, kw), stride, padding)[None, None]
        dot = ops.subtract(dot, ops.constant(counts))
    return dot


def binary_linear(
    x: ov.Output | ov.Node, weight_signs: np.ndarray, thresholds: np.ndarray | None = None
) -> ov.Node:
    """(B, out) ±1 dot products of sign(x − threshold) · sign(W)ᵀ for a (B, in) node: a 1×1
    BinaryConvolution on a 1×1 image."""
    cout, cin = weight_signs.shape
    image = ops.unsqueeze(x, ops.constant(np.array([2, 3], np.int64)))  # (B, in, 1, 1)
    dot = binary_conv(image, np.asarray(weight_signs).reshape(cout, cin, 1, 1), 1, 0, thresholds)
    return ops.squeeze(dot, ops.constant(np.array([2, 3], np.int64)))  # (B, out)


def per_channel(values: np.ndarray, rank: int) -> ov.Node:
    """A (C,) vector as a constant that broadcasts over channel axis 1 of a rank-``rank`` tensor."""
    return ops.constant(np.asarray(values, np.float32).reshape(1, -1, *[1] * (rank - 2)))


def binary_conv_model(
    weight_signs: np.ndarray,
    stride: int,
    padding: int,
    input_shape: tuple[int, int, int, int] | list[int],
    alpha: np.ndarray | None = None,
    thresholds: np.ndarray | None = None,
) -> ov.Model:
    """One binary conv layer, float32 NCHW in and out: conv(sign(x), sign(W)) with zero padding,
    times ``alpha`` (C_out,) when given. ``input_shape``: (B, C_in, H, W); B may be -1 (dynamic)."""
    signs = np.asarray(weight_signs, dtype=np.float32)
    if signs.ndim != 4 or not np.isin(signs, (-1.0, 1.0)).all():
        raise XnornetError(f"weight_signs: expected a (C_out, C_in, kh, kw) array of ±1, got {signs.shape}")
    x = ops.parameter(list(input_shape), np.float32, name="x")
    y = binary_conv(x, signs, int(stride), int(padding), thresholds)
    if alpha is not None:
        y = ops.multiply(y, per_channel(alpha, 4))
    return ov.Model([y], [x], "binary_conv")


def compile_for_latency(
    model: ov.Model, threads: int, batch: int | None = None, precision: str = "f32"
) -> ov.CompiledModel:
    """Compile for the CPU as a latency-minded user would: LATENCY hint, ``threads`` inference
    threads (the same count as ours), float32 unless told otherwise (no silent bf16 on a CPU that
    has it); ``batch`` fixes a dynamic batch."""
    shape = model.input(0).get_partial_shape()
    if batch is not None:
        shape[0] = int(batch)
        model = model.clone()
        model.reshape({model.input(0): shape})
    elif shape.is_dynamic:
        raise XnornetError(f"compile_for_latency: input shape {shape} is dynamic; pass batch=N")
    config = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": int(threads),
              "INFERENCE_PRECISION_HINT": precision}  # fmt: skip
    return ov.Core().compile_model(model, "CPU", config)
